#include "core/metrics.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <set>
#include <typeinfo>

#include "core/log.h"

namespace infermesh::metrics {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool IsLower(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLabelStart(char c) { return IsLower(c) || (c >= 'A' && c <= 'Z'); }

constexpr std::string_view kPrefix = "infermesh_";

Status ValidateBounds(const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) return InvalidArgument("histogram bounds must be finite");
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return InvalidArgument("histogram bounds must be strictly increasing");
    }
  }
  return OkStatus();
}

// Shared between the one-sample families (counter, gauge, callbacks).
void AppendSample(std::string* out, const std::string& name, const std::string& open_labels,
                  double value) {
  out->append(name);
  if (!open_labels.empty()) {
    out->append(open_labels);
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(FormatValue(value));
  out->push_back('\n');
}

void AppendChild(std::string* out, const std::string& name, const std::string& open,
                 const Counter& c) {
  AppendSample(out, name, open, c.Value());
}
void AppendChild(std::string* out, const std::string& name, const std::string& open,
                 const Gauge& g) {
  AppendSample(out, name, open, g.Value());
}
void AppendChild(std::string* out, const std::string& name, const std::string& open,
                 const Histogram& h) {
  HistogramSnapshot snap = h.Snapshot();
  std::string le_open = open.empty() ? std::string("{le=\"") : open + ",le=\"";
  for (size_t i = 0; i <= snap.upper_bounds.size(); ++i) {
    out->append(name).append("_bucket").append(le_open);
    out->append(i < snap.upper_bounds.size() ? FormatValue(snap.upper_bounds[i]) : "+Inf");
    out->append("\"} ").append(std::to_string(snap.cumulative[i])).push_back('\n');
  }
  AppendSample(out, name + "_sum", open, snap.sum);
  out->append(name).append("_count");
  if (!open.empty()) out->append(open).push_back('}');
  out->append(" ").append(std::to_string(snap.count)).push_back('\n');
}

}  // namespace

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void AtomicAdd(std::atomic<double>& target, double delta) {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + delta, std::memory_order_relaxed)) {
  }
}

void Counter::Add(double delta) {
  assert(delta >= 0 && "counters only go up");
  if (!(delta >= 0)) return;  // negative or NaN: dropped in release builds
  AtomicAdd(value_, delta);
}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_->size() + 1)) {}

void Histogram::Observe(double v) {
  // NaN compares false with every bound and so lands in +Inf, as in client_golang.
  size_t i = std::isnan(v)
                 ? bounds_->size()
                 : static_cast<size_t>(std::lower_bound(bounds_->begin(), bounds_->end(), v) -
                                       bounds_->begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot s;
  s.upper_bounds = *bounds_;
  s.cumulative.resize(bounds_->size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  assert(start > 0 && factor > 1 && count >= 1);
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  assert(width > 0 && count >= 1);
  std::vector<double> b;
  for (int i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

// ---- families ---------------------------------------------------------------

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

void FamilyBase::Render(std::string* out) const {
  out->append("# HELP ").append(name_).append(" ").append(EscapeHelp(help_)).push_back('\n');
  out->append("# TYPE ").append(name_).append(" ").append(MetricTypeName(type_)).push_back('\n');
  RenderSamples(out);
}

std::string FamilyBase::OpenLabels(const std::vector<std::string>& values) const {
  std::string s;
  for (size_t i = 0; i < label_names_.size() && i < values.size(); ++i) {
    s.append(i == 0 ? "{" : ",").append(label_names_[i]).append("=\"");
    s.append(EscapeLabelValue(values[i])).push_back('"');
  }
  return s;
}

bool FamilyBase::CheckArity(size_t n) const {
  if (n == label_names_.size()) return true;
  assert(false && "wrong number of label values");
  log::Error("metrics: wrong number of label values (bug)",
             {{"metric", name_},
              {"want", static_cast<int64_t>(label_names_.size())},
              {"got", static_cast<int64_t>(n)}});
  return false;
}

template <typename T>
T& Family<T>::WithLabels(const std::vector<std::string>& values) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!CheckArity(values.size())) {
    if (invalid_child_ == nullptr) invalid_child_ = make_child_();
    return *invalid_child_;
  }
  auto it = children_.find(values);
  if (it == children_.end()) it = children_.emplace(values, make_child_()).first;
  return *it->second;
}

template <typename T>
void Family<T>::RenderSamples(std::string* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, child] : children_)
    AppendChild(out, name(), OpenLabels(values), *child);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

CallbackBinding& CallbackBinding::operator=(CallbackBinding&& other) noexcept {
  if (this != &other) {
    Reset();
    family_ = std::exchange(other.family_, nullptr);
    values_ = std::move(other.values_);
    id_ = other.id_;
  }
  return *this;
}

void CallbackBinding::Reset() {
  if (family_ != nullptr) family_->Unbind(values_, id_);
  family_ = nullptr;
}

CallbackBinding CallbackFamily::Bind(const std::vector<std::string>& values,
                                     std::function<double()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!CheckArity(values.size())) return CallbackBinding();
  uint64_t id = next_id_++;
  series_[values] = Bound{id, std::move(fn)};
  return CallbackBinding(this, values, id);
}

void CallbackFamily::Unbind(const std::vector<std::string>& values, uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = series_.find(values);
  if (it != series_.end() && it->second.id == id) series_.erase(it);  // not if rebound
}

void CallbackFamily::RenderSamples(std::string* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, bound] : series_) {
    AppendSample(out, name(), OpenLabels(values), bound.fn());
  }
}

// ---- registry ---------------------------------------------------------------

Registry& Registry::Global() {
  static Registry* const registry = new Registry();  // leaked on purpose
  return *registry;
}

Result<FamilyBase*> Registry::Register(std::unique_ptr<FamilyBase> family,
                                       const std::vector<double>* bounds) {
  const std::string& name = family->name();
  IM_RETURN_IF_ERROR(ValidateMetricName(name, family->type()).WithContext(name));
  IM_RETURN_IF_ERROR(ValidateLabelNames(family->label_names(), family->type()).WithContext(name));
  if (family->help().empty()) return InvalidArgument(name + ": help text is empty");
  if (bounds != nullptr) IM_RETURN_IF_ERROR(ValidateBounds(*bounds).WithContext(name));

  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    const FamilyBase& have = *it->second;
    const FamilyBase& want = *family;
    bool same = typeid(have) == typeid(want) && have.type() == family->type() &&
                have.label_names() == family->label_names() &&
                (bounds == nullptr || histogram_bounds_[name] == *bounds);
    if (!same) {
      return Status(StatusCode::kAlreadyExists,
                    name + ": already registered with a different type, labels or buckets");
    }
    return it->second.get();
  }
  if (bounds != nullptr) histogram_bounds_[name] = *bounds;
  FamilyBase* raw = family.get();
  families_.emplace(name, std::move(family));
  return raw;
}

FamilyBase* Registry::Detach(std::unique_ptr<FamilyBase> family) {
  std::lock_guard<std::mutex> lock(mu_);
  detached_.push_back(std::move(family));
  return detached_.back().get();
}

namespace {

template <typename F>
Result<F*> Downcast(Result<FamilyBase*> r) {
  if (!r.ok()) return r.status();
  return static_cast<F*>(*r);  // Register checked the dynamic type
}

template <typename F>
F& OrDetached(Result<F*> r, const std::function<std::unique_ptr<F>()>& make,
              const std::function<FamilyBase*(std::unique_ptr<FamilyBase>)>& detach) {
  if (r.ok()) return **r;
  assert(false && "invalid metric registration");
  log::Error("metrics: registration rejected (bug); the metric is not exported",
             {{"error", r.status().ToString()}});
  return *static_cast<F*>(detach(make()));
}

}  // namespace

Result<CounterFamily*> Registry::TryCounter(std::string_view name, std::string_view help,
                                            std::vector<std::string> label_names) {
  return Downcast<CounterFamily>(
      Register(std::make_unique<CounterFamily>(std::string(name), std::string(help),
                                               MetricType::kCounter, std::move(label_names),
                                               [] { return std::make_unique<metrics::Counter>(); }),
               nullptr));
}

Result<GaugeFamily*> Registry::TryGauge(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names) {
  return Downcast<GaugeFamily>(
      Register(std::make_unique<GaugeFamily>(std::string(name), std::string(help),
                                             MetricType::kGauge, std::move(label_names),
                                             [] { return std::make_unique<metrics::Gauge>(); }),
               nullptr));
}

Result<HistogramFamily*> Registry::TryHistogram(std::string_view name, std::string_view help,
                                                std::vector<std::string> label_names,
                                                std::vector<double> upper_bounds) {
  auto bounds = std::make_shared<const std::vector<double>>(upper_bounds);
  return Downcast<HistogramFamily>(Register(
      std::make_unique<HistogramFamily>(
          std::string(name), std::string(help), MetricType::kHistogram, std::move(label_names),
          [bounds] { return std::make_unique<metrics::Histogram>(bounds); }),
      &upper_bounds));
}

Result<CallbackFamily*> Registry::TryCallback(MetricType type, std::string_view name,
                                              std::string_view help,
                                              std::vector<std::string> label_names) {
  if (type == MetricType::kHistogram) {
    return InvalidArgument(std::string(name) + ": callbacks are counters or gauges");
  }
  return Downcast<CallbackFamily>(
      Register(std::make_unique<CallbackFamily>(std::string(name), std::string(help), type,
                                                std::move(label_names)),
               nullptr));
}

CounterFamily& Registry::Counter(std::string_view name, std::string_view help,
                                 std::vector<std::string> label_names) {
  auto r = TryCounter(name, help, label_names);
  return OrDetached<CounterFamily>(
      std::move(r),
      [&] {
        return std::make_unique<CounterFamily>(std::string(name), std::string(help),
                                               MetricType::kCounter, label_names,
                                               [] { return std::make_unique<metrics::Counter>(); });
      },
      [this](std::unique_ptr<FamilyBase> f) { return Detach(std::move(f)); });
}

GaugeFamily& Registry::Gauge(std::string_view name, std::string_view help,
                             std::vector<std::string> label_names) {
  auto r = TryGauge(name, help, label_names);
  return OrDetached<GaugeFamily>(
      std::move(r),
      [&] {
        return std::make_unique<GaugeFamily>(std::string(name), std::string(help),
                                             MetricType::kGauge, label_names,
                                             [] { return std::make_unique<metrics::Gauge>(); });
      },
      [this](std::unique_ptr<FamilyBase> f) { return Detach(std::move(f)); });
}

HistogramFamily& Registry::Histogram(std::string_view name, std::string_view help,
                                     std::vector<std::string> label_names,
                                     std::vector<double> upper_bounds) {
  auto r = TryHistogram(name, help, label_names, upper_bounds);
  return OrDetached<HistogramFamily>(
      std::move(r),
      [&] {
        // Bounds may be invalid here; sort and dedupe so the detached child is usable.
        std::sort(upper_bounds.begin(), upper_bounds.end());
        upper_bounds.erase(std::unique(upper_bounds.begin(), upper_bounds.end()),
                           upper_bounds.end());
        std::erase_if(upper_bounds, [](double b) { return !std::isfinite(b); });
        auto bounds = std::make_shared<const std::vector<double>>(upper_bounds);
        return std::make_unique<HistogramFamily>(
            std::string(name), std::string(help), MetricType::kHistogram, label_names,
            [bounds] { return std::make_unique<metrics::Histogram>(bounds); });
      },
      [this](std::unique_ptr<FamilyBase> f) { return Detach(std::move(f)); });
}

CallbackFamily& Registry::CallbackGauge(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names) {
  auto r = TryCallback(MetricType::kGauge, name, help, label_names);
  return OrDetached<CallbackFamily>(
      std::move(r),
      [&] {
        return std::make_unique<CallbackFamily>(std::string(name), std::string(help),
                                                MetricType::kGauge, label_names);
      },
      [this](std::unique_ptr<FamilyBase> f) { return Detach(std::move(f)); });
}

CallbackFamily& Registry::CallbackCounter(std::string_view name, std::string_view help,
                                          std::vector<std::string> label_names) {
  auto r = TryCallback(MetricType::kCounter, name, help, label_names);
  return OrDetached<CallbackFamily>(
      std::move(r),
      [&] {
        return std::make_unique<CallbackFamily>(std::string(name), std::string(help),
                                                MetricType::kCounter, label_names);
      },
      [this](std::unique_ptr<FamilyBase> f) { return Detach(std::move(f)); });
}

std::string Registry::RenderText() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) family->Render(&out);
  return out;
}

// ---- validation and text helpers --------------------------------------------

Status ValidateMetricName(std::string_view name, MetricType type) {
  if (name.size() <= kPrefix.size() || name.substr(0, kPrefix.size()) != kPrefix) {
    return InvalidArgument("metric names start with \"infermesh_\" and name something");
  }
  for (char c : name) {
    if (!IsLower(c) && !IsDigit(c)) {
      return InvalidArgument("metric names are lowercase snake_case: [a-z0-9_]");
    }
  }
  bool total = EndsWith(name, "_total");
  if (type == MetricType::kCounter && !total) return InvalidArgument("counters end in _total");
  if (type != MetricType::kCounter && total) {
    return InvalidArgument("only counters end in _total");
  }
  for (std::string_view reserved : {"_bucket", "_sum", "_count"}) {
    if (EndsWith(name, reserved)) {
      return InvalidArgument("metric names may not end in " + std::string(reserved));
    }
  }
  return OkStatus();
}

Status ValidateLabelNames(const std::vector<std::string>& label_names, MetricType type) {
  std::set<std::string_view> seen;
  for (const std::string& l : label_names) {
    if (l.empty() || !IsLabelStart(l[0]) ||
        !std::all_of(l.begin(), l.end(), [](char c) { return IsLabelStart(c) || IsDigit(c); })) {
      return InvalidArgument("invalid label name \"" + l + "\"");
    }
    if (l.starts_with("__")) return InvalidArgument("label names starting __ are reserved");
    if (type == MetricType::kHistogram && l == "le") {
      return InvalidArgument("histograms reserve the label \"le\"");
    }
    if (!seen.insert(l).second) return InvalidArgument("duplicate label name \"" + l + "\"");
  }
  return OkStatus();
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '"') {
      out.append("\\\"");
    } else if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

}  // namespace infermesh::metrics
