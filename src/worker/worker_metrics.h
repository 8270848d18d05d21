// WorkerMetrics: every metric the worker exports, registered once in the process
// registry (Prometheus text at /metrics, `infermesh_` prefix).
//
// Requests by route and status and their durations; rejections by reason; queue
// depth, queue time, tokenization and inference time per model; batch-size and
// batch-token histograms; the cache; thread pools; model load time, readiness and
// resident weight bytes.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "core/lru_cache.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "http/request_metrics.h"
#include "worker/batcher_common.h"

namespace infermesh::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(metrics::Registry& registry);

  void ObserveRequest(const std::string& route, int status, std::chrono::nanoseconds d);
  // Histograms for every batch; a failed one (!b.ok) also counts in batch_failures
  // under b.failure.
  void ObserveBatch(const std::string& model, const BatchRecord& b);
  // Scrape-time gauges; `cache` may be empty when the cache is off. Each pool is
  // labelled with the name its Stats() reports.
  void BindGauges(std::function<LruCacheStats()> cache,
                  const std::vector<std::function<ThreadPoolStats()>>& pools,
                  std::function<double()> in_flight);
  void BindQueue(const std::string& model, std::function<double()> depth);
  // The model's batcher's callback_exceptions, read at scrape time.
  void BindCompletionExceptions(const std::string& model, std::function<double()> thrown);
  // infermesh_model_weight_bytes{model}: the weights the model holds in memory now, read
  // at scrape time (the runtime may release a copy after load, e.g. the fused path).
  void BindModelWeightBytes(const std::string& model, std::function<double()> bytes);
  // Drops every scrape-time binding (before the objects they read are destroyed).
  void Unbind();

  http::RequestMetrics http_requests;  // infermesh_http_requests_total, _duration_seconds
  metrics::CounterFamily& rejected;
  metrics::HistogramFamily& queue_seconds;
  metrics::HistogramFamily& tokenization_seconds;
  metrics::HistogramFamily& inference_seconds;
  metrics::HistogramFamily& batch_size;
  metrics::HistogramFamily& batch_tokens;
  metrics::CounterFamily& batch_failures;
  metrics::GaugeFamily& model_ready;
  metrics::GaugeFamily& model_load_seconds;
  metrics::GaugeFamily& ready;

 private:
  metrics::Registry& registry_;
  std::vector<metrics::CallbackBinding> bindings_;
};

}  // namespace infermesh::worker
