#include "worker/worker_metrics.h"

namespace infermesh::worker {
namespace {

std::vector<double> LatencyBuckets() { return metrics::ExponentialBuckets(0.0005, 2, 16); }

}  // namespace

WorkerMetrics::WorkerMetrics(metrics::Registry& r)
    : http_requests(r),
      rejected(r.Counter("infermesh_requests_rejected_total",
                         "Requests refused before compute, by reason", {"reason"})),
      queue_seconds(r.Histogram("infermesh_queue_time_seconds",
                                "Time from enqueue to the start of the batch", {"model"},
                                LatencyBuckets())),
      tokenization_seconds(r.Histogram("infermesh_tokenization_seconds",
                                       "Tokenization time per request", {"model"},
                                       LatencyBuckets())),
      inference_seconds(r.Histogram("infermesh_inference_seconds", "Backend time per batch",
                                    {"model"}, LatencyBuckets())),
      batch_size(r.Histogram("infermesh_batch_size", "Rows per batch", {"model"},
                             metrics::ExponentialBuckets(1, 2, 10))),
      batch_tokens(r.Histogram("infermesh_batch_tokens", "Real tokens per text batch", {"model"},
                               metrics::ExponentialBuckets(16, 2, 12))),
      batch_failures(r.Counter("infermesh_batch_failures_total",
                               "Batches whose requests were answered with an error, by reason "
                               "(backend_error, bad_output, out_of_memory, exception)",
                               {"model", "reason"})),
      model_ready(
          r.Gauge("infermesh_model_ready", "1 when the model is loaded and warmed", {"model"})),
      model_load_seconds(
          r.Gauge("infermesh_model_load_seconds", "Time to load and warm the model", {"model"})),
      ready(r.Gauge("infermesh_worker_ready", "1 while the worker accepts requests")),
      registry_(r) {}

void WorkerMetrics::ObserveRequest(const std::string& route, int status,
                                   std::chrono::nanoseconds d) {
  http_requests.Observe(route, status, d);
}

void WorkerMetrics::ObserveBatch(const std::string& model, const BatchRecord& b) {
  batch_size.WithLabels({model}).Observe(double(b.rows));
  if (b.tokens > 0) batch_tokens.WithLabels({model}).Observe(double(b.tokens));
  inference_seconds.WithLabels({model}).Observe(std::chrono::duration<double>(b.inference).count());
  if (!b.ok) batch_failures.WithLabels({model, b.failure.empty() ? "unknown" : b.failure}).Inc();
}

void WorkerMetrics::BindGauges(std::function<LruCacheStats()> cache,
                               const std::vector<std::function<ThreadPoolStats()>>& pools,
                               std::function<double()> in_flight) {
  if (cache) {
    auto stat = [cache](uint64_t LruCacheStats::*field) {
      return [cache, field] { return double(cache().*field); };
    };
    bindings_.push_back(registry_.CallbackCounter("infermesh_cache_hits_total", "Cache hits")
                            .Bind(stat(&LruCacheStats::hits)));
    bindings_.push_back(registry_.CallbackCounter("infermesh_cache_misses_total", "Cache misses")
                            .Bind(stat(&LruCacheStats::misses)));
    bindings_.push_back(
        registry_.CallbackCounter("infermesh_cache_evictions_total", "Cache evictions")
            .Bind(stat(&LruCacheStats::evictions)));
    bindings_.push_back(
        registry_.CallbackGauge("infermesh_cache_bytes", "Bytes charged to the cache")
            .Bind(stat(&LruCacheStats::bytes)));
    bindings_.push_back(registry_.CallbackGauge("infermesh_cache_entries", "Entries in the cache")
                            .Bind(stat(&LruCacheStats::entries)));
  }
  for (const auto& stats : pools) {
    const std::string name = stats().name;
    auto field = [stats](auto member) {
      return [stats, member] { return double(stats().*member); };
    };
    bindings_.push_back(
        registry_.CallbackGauge("infermesh_thread_pool_workers", "Threads in the pool", {"pool"})
            .Bind({name}, field(&ThreadPoolStats::workers)));
    bindings_.push_back(
        registry_
            .CallbackGauge("infermesh_thread_pool_active", "Tasks running in the pool", {"pool"})
            .Bind({name}, field(&ThreadPoolStats::active)));
    bindings_.push_back(
        registry_
            .CallbackGauge("infermesh_thread_pool_queued", "Tasks waiting in the pool", {"pool"})
            .Bind({name}, field(&ThreadPoolStats::queued)));
    bindings_.push_back(
        registry_
            .CallbackCounter("infermesh_thread_pool_task_failures_total",
                             "Pool tasks that threw (caught and logged; the pool went on)",
                             {"pool"})
            .Bind({name}, field(&ThreadPoolStats::failed)));
  }
  bindings_.push_back(
      registry_.CallbackGauge("infermesh_requests_in_flight", "Admitted requests not yet answered")
          .Bind(std::move(in_flight)));
}

void WorkerMetrics::BindQueue(const std::string& model, std::function<double()> depth) {
  bindings_.push_back(registry_
                          .CallbackGauge("infermesh_queue_requests",
                                         "Requests waiting in the model's batcher", {"model"})
                          .Bind({model}, std::move(depth)));
}

void WorkerMetrics::BindCompletionExceptions(const std::string& model,
                                             std::function<double()> thrown) {
  bindings_.push_back(registry_
                          .CallbackCounter("infermesh_completion_exceptions_total",
                                           "Completion callbacks that threw on the model's "
                                           "inference thread (caught; the batch went on)",
                                           {"model"})
                          .Bind({model}, std::move(thrown)));
}

void WorkerMetrics::BindModelWeightBytes(const std::string& model, std::function<double()> bytes) {
  bindings_.push_back(registry_
                          .CallbackGauge("infermesh_model_weight_bytes",
                                         "Bytes of weights the model holds in memory", {"model"})
                          .Bind({model}, std::move(bytes)));
}

void WorkerMetrics::Unbind() { bindings_.clear(); }

}  // namespace infermesh::worker
