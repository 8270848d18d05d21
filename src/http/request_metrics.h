// The request metrics every HTTP role exports, defined once: infermesh_http_requests_total
// {route, status} and infermesh_http_request_duration_seconds{route} (0.5 ms doubling to
// about 16 s). The worker and the gateway feed them from ServerOptions::on_complete, so a
// dashboard (or the gateway's /ui) reads the same series from either.
//
//   http::RequestMetrics rm(metrics::Registry::Global());
//   so.on_complete = [&rm](const Request& q, int status, std::chrono::nanoseconds d) {
//     rm.Observe(q.route, status, d);
//   };
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/metrics.h"

namespace infermesh::http {

// The latency histogram's bucket bounds, in seconds.
std::vector<double> RequestLatencyBuckets();

class RequestMetrics {
 public:
  explicit RequestMetrics(metrics::Registry& registry);
  // `route` is the matched pattern ("/v2/models/{model}/infer"); "" becomes "unmatched".
  void Observe(const std::string& route, int status, std::chrono::nanoseconds duration);

 private:
  metrics::CounterFamily& requests_;
  metrics::HistogramFamily& seconds_;
};

}  // namespace infermesh::http
