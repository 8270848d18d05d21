#include "core/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace infermesh::metrics {
namespace {

TEST(MetricsTest, CounterAndGaugeRender) {
  Registry r;
  auto& req = r.Counter("infermesh_http_requests_total", "HTTP requests by route and status",
                        {"route", "status"});
  req.WithLabels({"/embed", "200"}).Inc();
  req.WithLabels({"/embed", "200"}).Add(2);
  req.WithLabels({"/health", "200"}).Inc();
  auto& up = r.Gauge("infermesh_up", "Whether the process is up");
  up.Get().Set(1);
  EXPECT_EQ(r.RenderText(),
            "# HELP infermesh_http_requests_total HTTP requests by route and status\n"
            "# TYPE infermesh_http_requests_total counter\n"
            "infermesh_http_requests_total{route=\"/embed\",status=\"200\"} 3\n"
            "infermesh_http_requests_total{route=\"/health\",status=\"200\"} 1\n"
            "# HELP infermesh_up Whether the process is up\n"
            "# TYPE infermesh_up gauge\n"
            "infermesh_up 1\n");
}

TEST(MetricsTest, WithLabelsReturnsAStableReference) {
  Registry r;
  auto& f = r.Counter("infermesh_things_total", "Things", {"kind"});
  Counter* first = &f.WithLabels({"a"});
  for (int i = 0; i < 100; ++i) f.WithLabels({"k" + std::to_string(i)});
  EXPECT_EQ(first, &f.WithLabels({"a"}));
  EXPECT_EQ(first, &f.WithLabels(std::vector<std::string>{"a"}));
}

TEST(MetricsTest, GaugeArithmetic) {
  Registry r;
  Gauge& g = r.Gauge("infermesh_queue_depth", "Queued requests").Get();
  g.Inc();
  g.Inc();
  g.Dec();
  g.Add(2.5);
  EXPECT_DOUBLE_EQ(g.Value(), 3.5);
  g.Set(-1);
  EXPECT_DOUBLE_EQ(g.Value(), -1);
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInf) {
  Registry r;
  auto& h = r.Histogram("infermesh_request_duration_seconds", "Request latency", {"route"},
                        {0.1, 0.5, 1});
  Histogram& e = h.WithLabels({"/embed"});
  for (double v : {0.05, 0.1, 0.3, 0.7, 2.0}) e.Observe(v);
  HistogramSnapshot s = e.Snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 3, 4, 5}));
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.sum, 3.15);
  EXPECT_EQ(r.RenderText(),
            "# HELP infermesh_request_duration_seconds Request latency\n"
            "# TYPE infermesh_request_duration_seconds histogram\n"
            "infermesh_request_duration_seconds_bucket{route=\"/embed\",le=\"0.1\"} 2\n"
            "infermesh_request_duration_seconds_bucket{route=\"/embed\",le=\"0.5\"} 3\n"
            "infermesh_request_duration_seconds_bucket{route=\"/embed\",le=\"1\"} 4\n"
            "infermesh_request_duration_seconds_bucket{route=\"/embed\",le=\"+Inf\"} 5\n"
            "infermesh_request_duration_seconds_sum{route=\"/embed\"} 3.15\n"
            "infermesh_request_duration_seconds_count{route=\"/embed\"} 5\n");
}

TEST(MetricsTest, UnlabelledHistogramAndNaN) {
  Registry r;
  Histogram& h = r.Histogram("infermesh_batch_size", "Batch sizes", {}, {1, 2}).Get();
  h.Observe(std::numeric_limits<double>::quiet_NaN());
  h.Observe(1);
  EXPECT_EQ(h.Snapshot().cumulative, (std::vector<uint64_t>{1, 1, 2}));  // NaN → +Inf only
  std::string text = r.RenderText();
  EXPECT_NE(text.find("infermesh_batch_size_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("infermesh_batch_size_sum NaN\n"), std::string::npos);
  EXPECT_NE(text.find("infermesh_batch_size_count 2\n"), std::string::npos);
}

TEST(MetricsTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(0.001, 2, 4), (std::vector<double>{0.001, 0.002, 0.004, 0.008}));
  EXPECT_EQ(LinearBuckets(1, 2, 3), (std::vector<double>{1, 3, 5}));
  Registry r;
  EXPECT_FALSE(r.TryHistogram("infermesh_a_seconds", "h", {}, {1, 1}).ok());
  EXPECT_FALSE(r.TryHistogram("infermesh_b_seconds", "h", {}, {2, 1}).ok());
  EXPECT_FALSE(r.TryHistogram("infermesh_c_seconds", "h", {}, {1, INFINITY}).ok());
  EXPECT_TRUE(r.TryHistogram("infermesh_d_seconds", "h", {}, {}).ok());  // +Inf only
}

TEST(MetricsTest, EscapesHelpAndLabelValues) {
  EXPECT_EQ(EscapeHelp("a\\b\nc\"d"), "a\\\\b\\nc\"d");  // quotes stay in help
  EXPECT_EQ(EscapeLabelValue("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
  Registry r;
  r.Counter("infermesh_odd_total", "line one\nline \\two", {"path"})
      .WithLabels({"C:\\x \"q\"\n"})
      .Inc();
  EXPECT_EQ(r.RenderText(),
            "# HELP infermesh_odd_total line one\\nline \\\\two\n"
            "# TYPE infermesh_odd_total counter\n"
            "infermesh_odd_total{path=\"C:\\\\x \\\"q\\\"\\n\"} 1\n");
}

TEST(MetricsTest, FormatValue) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(NAN), "NaN");
}

TEST(MetricsTest, NamingRulesAreEnforced) {
  Registry r;
  EXPECT_FALSE(r.TryCounter("http_requests_total", "no prefix").ok());
  EXPECT_FALSE(r.TryCounter("infermesh_", "nothing after the prefix").ok());
  EXPECT_FALSE(r.TryCounter("infermesh_requests", "counter without _total").ok());
  EXPECT_FALSE(r.TryGauge("infermesh_requests_total", "gauge with _total").ok());
  EXPECT_FALSE(r.TryGauge("infermesh_Bytes", "uppercase").ok());
  EXPECT_FALSE(r.TryGauge("infermesh_a-b", "dash").ok());
  EXPECT_FALSE(r.TryGauge("infermesh_a:b", "colon (recording rules only)").ok());
  EXPECT_FALSE(r.TryGauge("infermesh_items_count", "reserved suffix").ok());
  EXPECT_FALSE(r.TryHistogram("infermesh_x_bucket", "reserved suffix", {}, {1}).ok());
  EXPECT_FALSE(r.TryGauge("infermesh_no_help", "").ok());
  EXPECT_FALSE(r.TryGauge("infermesh_l1", "bad label", {"1abc"}).ok());
  EXPECT_FALSE(r.TryGauge("infermesh_l2", "bad label", {"a-b"}).ok());
  EXPECT_FALSE(r.TryGauge("infermesh_l3", "reserved label", {"__name"}).ok());
  EXPECT_FALSE(r.TryGauge("infermesh_l4", "duplicate label", {"a", "a"}).ok());
  EXPECT_FALSE(r.TryHistogram("infermesh_l5", "le label", {"le"}, {1}).ok());
  EXPECT_FALSE(r.TryCallback(MetricType::kCounter, "infermesh_cb", "counter no _total").ok());
  EXPECT_FALSE(r.TryCallback(MetricType::kHistogram, "infermesh_cb2", "histogram cb").ok());
  EXPECT_TRUE(r.TryGauge("infermesh_l6", "fine", {"Route", "_x", "a1"}).ok());
  EXPECT_TRUE(r.TryGauge("infermesh_cache_bytes", "fine").ok());
  EXPECT_EQ(r.RenderText().find("infermesh_requests"), std::string::npos);
}

TEST(MetricsTest, DuplicateRegistration) {
  Registry r;
  auto a = r.TryCounter("infermesh_x_total", "X", {"a"});
  auto b = r.TryCounter("infermesh_x_total", "X", {"a"});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(&r.Counter("infermesh_x_total", "X", {"a"}), *a);

  auto labels = r.TryCounter("infermesh_x_total", "X", {"b"});
  ASSERT_FALSE(labels.ok());
  EXPECT_EQ(labels.status().code(), StatusCode::kAlreadyExists);
  EXPECT_FALSE(r.TryCallback(MetricType::kCounter, "infermesh_x_total", "X", {"a"}).ok());

  ASSERT_TRUE(r.TryHistogram("infermesh_h_seconds", "H", {}, {1, 2}).ok());
  EXPECT_TRUE(r.TryHistogram("infermesh_h_seconds", "H", {}, {1, 2}).ok());
  EXPECT_FALSE(r.TryHistogram("infermesh_h_seconds", "H", {}, {1, 3}).ok());
  EXPECT_FALSE(r.TryGauge("infermesh_h_seconds", "H").ok());
  // One family in the output, once.
  std::string text = r.RenderText();
  EXPECT_EQ(text.find("# TYPE infermesh_x_total"), text.rfind("# TYPE infermesh_x_total"));
}

#ifdef NDEBUG
TEST(MetricsTest, InvalidRegistrationInReleaseIsDetachedNotExported) {
  Registry r;
  auto& bad = r.Counter("bad_name", "missing prefix and suffix", {"a"});
  bad.WithLabels({"x"}).Inc();              // usable, not exported
  bad.WithLabels({"x", "too many"}).Inc();  // arity bug: unexported child
  EXPECT_EQ(r.RenderText(), "");
}
#endif

TEST(MetricsTest, FamiliesAreSortedByName) {
  Registry r;
  r.Gauge("infermesh_zeta", "z").Get().Set(1);
  r.Gauge("infermesh_alpha", "a").Get().Set(1);
  r.Counter("infermesh_mid_total", "m").Get().Inc();
  std::string t = r.RenderText();
  size_t a = t.find("infermesh_alpha"), m = t.find("infermesh_mid_total"),
         z = t.find("infermesh_zeta");
  EXPECT_LT(a, m);
  EXPECT_LT(m, z);
}

TEST(MetricsTest, CallbackGaugesEvaluateAtScrapeAndUnbind) {
  Registry r;
  double bytes = 10;
  auto& fam = r.CallbackGauge("infermesh_cache_bytes", "Cache bytes", {"tier"});
  {
    CallbackBinding local = fam.Bind({"local"}, [&] { return bytes; });
    bytes = 123;
    EXPECT_NE(r.RenderText().find("infermesh_cache_bytes{tier=\"local\"} 123\n"),
              std::string::npos);
    CallbackBinding moved = std::move(local);
    EXPECT_NE(r.RenderText().find("tier=\"local\""), std::string::npos);
  }
  EXPECT_EQ(r.RenderText().find("tier=\"local\""), std::string::npos);

  // A rebind replaces; the stale binding's destruction leaves the new one alone.
  CallbackBinding first = fam.Bind({"redis"}, [] { return 1.0; });
  CallbackBinding second = fam.Bind({"redis"}, [] { return 2.0; });
  first.Reset();
  EXPECT_NE(r.RenderText().find("infermesh_cache_bytes{tier=\"redis\"} 2\n"), std::string::npos);

  auto& done = r.CallbackCounter("infermesh_pool_tasks_completed_total", "Tasks");
  CallbackBinding b = done.Bind([] { return 7.0; });
  EXPECT_NE(r.RenderText().find("# TYPE infermesh_pool_tasks_completed_total counter\n"
                                "infermesh_pool_tasks_completed_total 7\n"),
            std::string::npos);
}

TEST(MetricsTest, GlobalIsOneRegistry) { EXPECT_EQ(&Registry::Global(), &Registry::Global()); }

TEST(MetricsTest, ConcurrentUpdatesAreExact) {
  Registry r;
  auto& counters = r.Counter("infermesh_conc_total", "c", {"worker"});
  auto& gauge = r.Gauge("infermesh_conc_gauge", "g").Get();
  auto& hist = r.Histogram("infermesh_conc_seconds", "h", {}, {0.5, 1.5}).Get();
  constexpr int kThreads = 8;
  constexpr int kIters = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& shared = counters.WithLabels({"shared"});
      for (int i = 0; i < kIters; ++i) {
        shared.Inc();
        counters.WithLabels({"w" + std::to_string(t % 2)}).Add(0.5);  // lookup path too
        gauge.Add(t % 2 == 0 ? 1 : -1);
        hist.Observe(i % 3);  // 0, 1, 2 → one bucket each
      }
    });
  }
  std::thread scraper([&] {
    for (int i = 0; i < 20; ++i) (void)r.RenderText();
  });
  for (auto& th : threads) th.join();
  scraper.join();
  EXPECT_EQ(counters.WithLabels({"shared"}).Value(), double{kThreads} * kIters);
  EXPECT_EQ(counters.WithLabels({"w0"}).Value(), double{kThreads} / 2 * kIters * 0.5);
  EXPECT_EQ(gauge.Value(), 0);
  HistogramSnapshot s = hist.Snapshot();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads) * kIters);
  uint64_t per = static_cast<uint64_t>(kThreads) * ((kIters + 2) / 3);
  EXPECT_EQ(s.cumulative[0], per);
  uint64_t ones = static_cast<uint64_t>(kThreads) * ((kIters + 1) / 3);
  uint64_t twos = static_cast<uint64_t>(kThreads) * (kIters / 3);
  EXPECT_EQ(s.cumulative[1], per + ones);
  EXPECT_EQ(s.sum, static_cast<double>(ones + 2 * twos));
}

std::string FindOnPath(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + tool;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Checks the exposition with Prometheus's own parser and linter. promtool comes
// from the Debian package `prometheus`, which scripts/install-deps.sh installs, so
// a missing promtool is a broken environment, not a reason to skip.
TEST(MetricsTest, PromtoolAcceptsTheExposition) {
  std::string promtool = FindOnPath("promtool");
  ASSERT_FALSE(promtool.empty())
      << "promtool not found on PATH: run scripts/install-deps.sh (Debian package prometheus)";

  Registry r;
  auto& req = r.Counter("infermesh_http_requests_total", "HTTP requests by route and status",
                        {"route", "status"});
  req.WithLabels({"/embed", "200"}).Inc();
  req.WithLabels({"/v2/models/{m}/infer", "429"}).Add(3);
  req.WithLabels({"we\"ird\\path\n", "500"}).Inc();
  r.Gauge("infermesh_inflight_requests", "Requests in flight \\ with a\nnewline").Get().Set(2);
  auto& lat = r.Histogram("infermesh_request_duration_seconds", "Request latency", {"route"},
                          ExponentialBuckets(0.001, 2, 12));
  for (double v : {0.0005, 0.01, 0.2, 7.0}) lat.WithLabels({"/embed"}).Observe(v);
  r.Histogram("infermesh_batch_tokens", "Tokens per batch", {}, LinearBuckets(64, 64, 4))
      .Get()
      .Observe(100);
  auto& pool = r.CallbackGauge("infermesh_thread_pool_queued", "Queued tasks", {"pool"});
  CallbackBinding b1 = pool.Bind({"tokenize"}, [] { return 4.0; });
  auto& done = r.CallbackCounter("infermesh_thread_pool_completed_total", "Done", {"pool"});
  CallbackBinding b2 = done.Bind({"tokenize"}, [] { return 1e6; });
  r.Gauge("infermesh_cache_bytes", "Bytes held by the cache").Get().Set(1.5e9);

  namespace fs = std::filesystem;
  fs::path file =
      fs::temp_directory_path() / ("infermesh_metrics_" + std::to_string(::getpid()) + ".prom");
  std::ofstream(file) << r.RenderText();
  std::string cmd = promtool + " check metrics < '" + file.string() + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  int rc = ::pclose(pipe);
  fs::remove(file);
  EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << output << "\ninput:\n" << r.RenderText();
  EXPECT_EQ(output, "") << output;
}

}  // namespace
}  // namespace infermesh::metrics
