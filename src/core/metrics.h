// Metrics: counters, gauges, histograms and scrape-time callbacks, grouped into
// labelled families in a registry that renders the Prometheus text format 0.0.4.
//
//   auto& requests = metrics::Registry::Global().Counter(
//       "infermesh_http_requests_total", "HTTP requests by route and status",
//       {"route", "status"});
//   metrics::Counter& ok = requests.WithLabels({"/embed", "200"});  // cache this
//   ok.Inc();                                                      // lock-free
//
// Hot path: Inc/Add/Set/Observe are relaxed atomics (doubles by CAS); WithLabels
// takes a family lock and may allocate, so callers look a child up once and keep
// the reference, which stays valid for the registry's lifetime.
//
// Registration is idempotent: the same name with the same type, label names (and
// buckets) returns the existing family. A name that breaks the naming rules, or
// that is already taken by a different shape, is a bug: Try*() returns the Status;
// Counter()/Gauge()/Histogram() assert in debug builds and, in release, log the
// error and return a detached family that works but is never exported.
//
// Naming rules (enforced): names match [a-z_][a-z0-9_]* and start with
// "infermesh_"; counters end in "_total" and nothing else does; no name ends in
// "_bucket", "_sum" or "_count" (histogram series use those); help is non-empty;
// label names match [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__", are unique, and
// histograms may not use "le".
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infermesh::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };
std::string_view MetricTypeName(MetricType type);  // "counter", "gauge", "histogram"

inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Adds to an atomic double with a CAS loop (relaxed).
void AtomicAdd(std::atomic<double>& target, double delta);

class Counter {
 public:
  void Inc() { AtomicAdd(value_, 1.0); }
  void Add(double delta);  // delta must be >= 0; a negative delta is dropped (bug)
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Inc() { AtomicAdd(value_, 1.0); }
  void Dec() { AtomicAdd(value_, -1.0); }
  void Add(double delta) { AtomicAdd(value_, delta); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

struct HistogramSnapshot {
  std::vector<double> upper_bounds;  // finite bounds; +Inf is implied
  std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
  double sum = 0;
  uint64_t count = 0;
};

class Histogram {
 public:
  // `upper_bounds` must be strictly increasing and finite (validated by the registry).
  explicit Histogram(std::shared_ptr<const std::vector<double>> upper_bounds);

  // A value v lands in the first bucket whose bound is >= v (Prometheus "le").
  void Observe(double v);
  // Consistent per bucket; count is derived from the buckets, so it always equals
  // the +Inf bucket even while other threads observe.
  HistogramSnapshot Snapshot() const;

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_->size() + 1 (last: +Inf)
  std::atomic<double> sum_{0.0};
};

// `count` bounds: start, start*factor, ... (start > 0, factor > 1, count >= 1).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// `count` bounds: start, start+width, ... (width > 0, count >= 1).
std::vector<double> LinearBuckets(double start, double width, int count);

// What every family shares: identity and rendering.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends "# HELP", "# TYPE" and the samples of this family.
  void Render(std::string* out) const;

 protected:
  virtual void RenderSamples(std::string* out) const = 0;
  // `{a="x",b="y"` without the closing brace (empty string when unlabelled), so
  // histograms can append `,le="..."`.
  std::string OpenLabels(const std::vector<std::string>& values) const;
  bool CheckArity(size_t n) const;  // logs and returns false on a mismatch (bug)

  mutable std::mutex mu_;

 private:
  std::string name_, help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

// A family of Counter, Gauge or Histogram children, one per label-value tuple.
template <typename T>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> labels,
         std::function<std::unique_ptr<T>()> make_child)
      : FamilyBase(std::move(name), std::move(help), type, std::move(labels)),
        make_child_(std::move(make_child)) {}

  // The child for these label values (created on first use). The reference is
  // stable. A wrong number of values is a bug: it returns an unexported child.
  T& WithLabels(const std::vector<std::string>& values);
  T& WithLabels(std::initializer_list<std::string_view> values) {
    return WithLabels(std::vector<std::string>(values.begin(), values.end()));
  }
  // The one child of an unlabelled family.
  T& Get() { return WithLabels(std::vector<std::string>{}); }

 private:
  void RenderSamples(std::string* out) const override;

  std::function<std::unique_ptr<T>()> make_child_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;  // mu_
  std::unique_ptr<T> invalid_child_;                                 // mu_
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;
using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class CallbackFamily;

// Keeps one callback series alive; destroying (or Reset) removes it. Must not
// outlive the registry.
class CallbackBinding {
 public:
  CallbackBinding() = default;
  CallbackBinding(CallbackFamily* family, std::vector<std::string> values, uint64_t id)
      : family_(family), values_(std::move(values)), id_(id) {}
  CallbackBinding(CallbackBinding&& other) noexcept { *this = std::move(other); }
  CallbackBinding& operator=(CallbackBinding&& other) noexcept;
  ~CallbackBinding() { Reset(); }
  void Reset();

 private:
  CallbackFamily* family_ = nullptr;
  std::vector<std::string> values_;
  uint64_t id_ = 0;
};

// Series whose value is computed at scrape time, e.g. queue depth or cache bytes.
// Callbacks run under the family lock on the scraping thread: keep them cheap and
// never register metrics from inside one.
class CallbackFamily final : public FamilyBase {
 public:
  using FamilyBase::FamilyBase;

  // Binds `fn` to these label values, replacing any earlier binding of them.
  [[nodiscard]] CallbackBinding Bind(const std::vector<std::string>& values,
                                     std::function<double()> fn);
  [[nodiscard]] CallbackBinding Bind(std::function<double()> fn) { return Bind({}, std::move(fn)); }

 private:
  friend class CallbackBinding;
  void Unbind(const std::vector<std::string>& values, uint64_t id);
  void RenderSamples(std::string* out) const override;

  struct Bound {
    uint64_t id;
    std::function<double()> fn;
  };
  std::map<std::vector<std::string>, Bound> series_;  // mu_
  uint64_t next_id_ = 1;                              // mu_
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry (never destroyed, so callbacks may run at exit).
  static Registry& Global();

  Result<CounterFamily*> TryCounter(std::string_view name, std::string_view help,
                                    std::vector<std::string> label_names = {});
  Result<GaugeFamily*> TryGauge(std::string_view name, std::string_view help,
                                std::vector<std::string> label_names = {});
  Result<HistogramFamily*> TryHistogram(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> upper_bounds);
  // type is kCounter or kGauge.
  Result<CallbackFamily*> TryCallback(MetricType type, std::string_view name, std::string_view help,
                                      std::vector<std::string> label_names = {});

  CounterFamily& Counter(std::string_view name, std::string_view help,
                         std::vector<std::string> label_names = {});
  GaugeFamily& Gauge(std::string_view name, std::string_view help,
                     std::vector<std::string> label_names = {});
  HistogramFamily& Histogram(std::string_view name, std::string_view help,
                             std::vector<std::string> label_names,
                             std::vector<double> upper_bounds);
  CallbackFamily& CallbackGauge(std::string_view name, std::string_view help,
                                std::vector<std::string> label_names = {});
  CallbackFamily& CallbackCounter(std::string_view name, std::string_view help,
                                  std::vector<std::string> label_names = {});

  // Prometheus text format 0.0.4, families sorted by name, children by labels.
  std::string RenderText() const;

 private:
  // Adds `family` or returns the existing one of the same shape.
  Result<FamilyBase*> Register(std::unique_ptr<FamilyBase> family,
                               const std::vector<double>* bounds);
  // Keeps a family that failed registration alive without exporting it.
  FamilyBase* Detach(std::unique_ptr<FamilyBase> family);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>, std::less<>> families_;  // mu_
  std::map<std::string, std::vector<double>, std::less<>> histogram_bounds_;  // mu_
  std::vector<std::unique_ptr<FamilyBase>> detached_;                         // mu_
};

// Validation, exposed for tests and for code that builds names dynamically.
Status ValidateMetricName(std::string_view name, MetricType type);
Status ValidateLabelNames(const std::vector<std::string>& label_names, MetricType type);

// Text-format helpers (exposed for tests).
std::string EscapeHelp(std::string_view help);         // \ and newline
std::string EscapeLabelValue(std::string_view value);  // \, " and newline
std::string FormatValue(double v);                     // shortest round-trip; +Inf, NaN

}  // namespace infermesh::metrics
