// `infermesh gateway`: one front door for many workers. It serves the worker's text
// embedding routes through the same serving front (src/front), with a backend that
// splits each client batch per input, looks every input up in its own cache, coalesces
// identical inputs in flight, routes the misses by consistent hashing with bounded loads
// (counted in estimated tokens) to the worker whose cache holds them, and sends each
// worker its share as sub-batches over pooled keep-alive connections, binary float32
// rows back. Dead or failing workers are skipped (health checks, breakers, outlier
// ejection); a failed sub-batch is retried on the next worker on the ring within a
// retry budget; an adaptive concurrency limit answers 429 before requests queue.
//
//   GatewayOptions o;
//   o.workers = {{"10.0.0.1", 8080}, {"10.0.0.2", 8080}};
//   auto gw = GatewayService::Start(o);
//   ... (*gw)->port() ...
//   (*gw)->Shutdown();
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "gateway/breaker.h"
#include "gateway/limiter.h"
#include "gateway/membership.h"
#include "gateway/outlier.h"
#include "http/client.h"
#include "http/server.h"

namespace infermesh::gateway {

struct GatewayOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  int io_threads = 2;
  std::vector<http::Endpoint> workers;
  // DNS membership (`dns:NAME:PORT` in gateway.workers): every address NAME resolves to,
  // re-resolved every dns_interval (as Envoy's STRICT_DNS).
  struct DnsName {
    std::string name;
    uint16_t port = 0;
  };
  std::vector<DnsName> dns;
  std::chrono::milliseconds dns_interval{5000};
  // Workers that register themselves (POST /admin/register, `worker --gateway URL`) and
  // miss their heartbeats this long are dropped.
  std::chrono::milliseconds registration_ttl{10000};
  size_t max_body_bytes = 8 << 20;
  int64_t max_client_batch_size = 512;
  // Inputs per sub-batch to one worker; 0 = each worker's own max_client_batch_size, read
  // from its /info.
  int64_t max_sub_batch = 0;
  bool auto_truncate = false;
  std::chrono::milliseconds request_timeout{30000};
  int64_t cache_bytes = 256 << 20;
  double balance_factor = 1.25;
  int max_attempts = 3;       // per sub-batch: the first try and retries on other workers
  double retry_budget = 0.2;  // retries <= this share of sub-batches over time (+ a burst of 10)
  // Hedging (off by default): a sub-batch unanswered after hedge_delay (0: the observed
  // p95 of sub-batch round trips) is sent again to the next worker on its ring; the first
  // answer wins. Hedges draw on the retry budget.
  bool hedging = false;
  std::chrono::milliseconds hedge_delay{0};
  bool adaptive_limit = true;
  // Beyond the limit a request waits up to this long, FIFO, for a slot (0 = 429 at once),
  // and at most max_waiting_requests wait.
  std::chrono::milliseconds admission_wait{1000};
  // Outside the limiter's probes a request waits at most this many minimum RTTs (and at
  // least 5 ms, at most admission_wait).
  double admission_wait_rtts = 2;
  size_t max_waiting_requests = 1024;
  size_t max_connections_per_worker = 64;
  BreakerOptions breaker;
  OutlierOptions outlier;
  MembershipOptions health;
  LimiterOptions limiter;
  // Bearer keys for the inference routes (empty: open), the admin key for /admin (and
  // every other route); /health stays open, /metrics too unless protect_metrics.
  // The shared Redis tier (gateway.redis, "redis://host:port"; empty = off).
  std::string redis_url;
  std::chrono::seconds redis_ttl{86400};
  std::chrono::milliseconds redis_timeout{50};
  std::vector<std::string> api_keys;
  std::string admin_key;
  bool protect_metrics = false;
  http::ServerLimits server_limits;
  // The job service whose recent jobs the status page (/ui) shows, through GET /ui/jobs
  // (gateway.jobs_url; empty: the page says there is none).
  std::optional<http::Endpoint> jobs;
};

// The gateway.* keys (and server.*, cache.max_bytes); docs/configuration.md lists them.
[[nodiscard]] Result<GatewayOptions> GatewayOptionsFromConfig(const Config& config);

class GatewayService {
 public:
  ~GatewayService();
  // Binds, checks the workers once, then serves. Workers that are down are checked
  // again every health interval.
  [[nodiscard]] static Result<std::unique_ptr<GatewayService>> Start(GatewayOptions options);
  uint16_t port() const;
  // Readiness false, drain the server, stop health checks and the client.
  void Shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace infermesh::gateway
