// The gateway's status page, `GET /ui`: one self-contained HTML document (no external
// script, style, font or image), which polls the gateway's own JSON and text endpoints:
//
//   /stats     workers (ready, circuit, outstanding tokens, back-pressure), the local cache,
//              the adaptive limiter, Redis;
//   /metrics   infermesh_http_requests_total and infermesh_http_request_duration_seconds,
//              from whose deltas between two polls the page draws throughput and p50/p99
//              (interpolated within histogram buckets, as Prometheus' histogram_quantile);
//   /ui/jobs   the job service's recent jobs (gateway.jobs_url), with progress bars.
//
// With API keys configured, open /ui?key=KEY: the page sends it as a Bearer header.
// ?interval=MS changes the poll period (default 1000).
#pragma once

#include <string_view>

namespace infermesh::gateway {

std::string_view StatusPageHtml();

}  // namespace infermesh::gateway
