#include "http/request_metrics.h"

namespace infermesh::http {

std::vector<double> RequestLatencyBuckets() { return metrics::ExponentialBuckets(0.0005, 2, 16); }

RequestMetrics::RequestMetrics(metrics::Registry& r)
    : requests_(r.Counter("infermesh_http_requests_total", "HTTP requests by route and status",
                          {"route", "status"})),
      seconds_(r.Histogram("infermesh_http_request_duration_seconds",
                           "HTTP request duration by route", {"route"}, RequestLatencyBuckets())) {}

void RequestMetrics::Observe(const std::string& route, int status, std::chrono::nanoseconds d) {
  const std::string& r = route.empty() ? std::string("unmatched") : route;
  requests_.WithLabels({r, std::to_string(status)}).Inc();
  seconds_.WithLabels({r}).Observe(std::chrono::duration<double>(d).count());
}

}  // namespace infermesh::http
