// GatewayService's admission (limit and FIFO wait), auth, /health, /stats, /ui/jobs and
// its metrics.
#include "gateway/internal/gateway_impl.h"

namespace infermesh::gateway {

using namespace internal;  // NOLINT: this file implements the internals

// ---- handlers ---------------------------------------------------------------------
std::string GatewayService::Impl::ErrorBody(const ApiError& e, http::api::ApiFamily family) {
  switch (family) {
    case http::api::ApiFamily::kOpenAi:
      return http::api::OpenAiErrorBody(e);
    case http::api::ApiFamily::kKServe:
      return http::api::KServeErrorBody(e);
    case http::api::ApiFamily::kTei:
      break;
  }
  return http::api::TeiErrorBody(e);
}

void GatewayService::Impl::Refuse(http::Responder& r, http::api::ApiFamily family, ApiError e,
                                  int retry_after) {
  e = http::api::ForApi(e, family);
  front::Send(r, e.status, ErrorBody(e, family), {{"retry-after", std::to_string(retry_after)}});
}

std::shared_ptr<void> GatewayService::Impl::Ticket(Clock::time_point start) {
  return std::shared_ptr<void>(new int(0), [this, start](void* p) {
    delete static_cast<int*>(p);
    // The limiter samples upstream calls (sub-batches, forwarded calls), not client
    // requests, so answers from the gateway's own cache never pull its minimum RTT down.
    const auto end = Clock::now();
    limiter.Release(end - start, end, /*sample=*/false);
    if (waiting_count.load(std::memory_order_relaxed) > 0) {
      // Through the lock: the admission thread is either before its check (and sees the
      // free slot) or waiting (and is woken); never in between, which would lose this.
      { std::lock_guard<std::mutex> lock(wait_mu); }
      wait_cv.notify_one();
    }
  });
}

Clock::duration GatewayService::Impl::WaitAllowance() const {
  const auto min_rtt = limiter.min_rtt();
  if (limiter.probing() || min_rtt.count() <= 0) return options.admission_wait;
  const auto rtts =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::nano>(
          static_cast<double>(min_rtt.count()) * options.admission_wait_rtts));
  return std::min<Clock::duration>(options.admission_wait,
                                   std::max<Clock::duration>(rtts, std::chrono::milliseconds(5)));
}

void GatewayService::Impl::Admit(const std::shared_ptr<http::Responder>& r,
                                 http::api::ApiFamily family, Proceed proceed) {
  requests_total.fetch_add(1, std::memory_order_relaxed);
  if (!ready.load()) {
    return Refuse(*r, family, http::api::TeiUnhealthyError("no worker is ready"), 1);
  }
  if (!options.adaptive_limit) return proceed(std::make_shared<int>(0));
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(wait_mu);
    // Waiters go first: a new request does not overtake them.
    if (waiting.empty() && limiter.TryAcquire(now, /*count=*/false)) {
      // fall through to proceed below, outside the lock
    } else if (options.admission_wait.count() > 0 &&
               waiting.size() < options.max_waiting_requests && !wait_stopping) {
      waiting.push_back({r, family, std::move(proceed), now + WaitAllowance(), now});
      waiting_count = waiting.size();
      ++waited;
      wait_cv.notify_one();
      return;
    } else {
      proceed = nullptr;
    }
  }
  if (!proceed) {
    limiter.CountRejection();
    return Refuse(*r, family,
                  http::api::TeiOverloadedError("gateway concurrency limit reached (limit " +
                                                std::to_string(limiter.limit()) + ")"),
                  limiter.RetryAfterSeconds());
  }
  proceed(Ticket(now));
}

void GatewayService::Impl::WaitLoop() {
  std::unique_lock<std::mutex> lock(wait_mu);
  while (!wait_stopping) {
    const auto now = Clock::now();
    std::vector<Waiter> expired, admitted;
    // Every waiter, not only the first: allowances differ (a probe's is longer), so a
    // later waiter may expire first; and a client that went away leaves its place.
    auto wake = now + std::chrono::seconds(1);
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (it->until <= now || it->responder->cancelled()) {
        expired.push_back(std::move(*it));
        it = waiting.erase(it);
      } else {
        wake = std::min(wake, it->until);
        ++it;
      }
    }
    while (!waiting.empty() && limiter.TryAcquire(now, /*count=*/false)) {
      admitted.push_back(std::move(waiting.front()));
      waiting.pop_front();
    }
    waiting_count = waiting.size();
    if (!expired.empty() || !admitted.empty()) {
      lock.unlock();
      for (auto& w : expired) {
        ++wait_timeouts;
        limiter.CountRejection();
        Refuse(
            *w.responder, w.family,
            http::api::TeiOverloadedError(
                "waited " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::milliseconds>(now - w.since).count()) +
                " ms for the gateway's concurrency limit (limit " +
                std::to_string(limiter.limit()) + ")"),
            limiter.RetryAfterSeconds());
      }
      for (auto& w : admitted) {
        try {
          w.proceed(Ticket(now));
        } catch (const std::exception& e) {
          log::Error("admitted request failed", {{"error", e.what()}});
        }
      }
      // What the waiters held (a request's ticket may be among it) goes before the lock
      // is taken again: releasing a ticket takes wait_mu itself.
      expired.clear();
      admitted.clear();
      lock.lock();
      continue;
    }
    wait_cv.wait_until(lock, wake);
  }
  // Shutting down: nobody will admit them.
  std::deque<Waiter> left = std::move(waiting);
  waiting.clear();
  lock.unlock();
  for (auto& w : left) {
    Refuse(*w.responder, w.family, http::api::TeiUnhealthyError("the gateway is shutting down"), 1);
  }
}

// ---- membership changes (/admin) and auth ------------------------------------------
bool GatewayService::Impl::Authorized(http::Request& q, http::Responder& r,
                                      http::api::ApiFamily family, bool admin) {
  const http::AuthResult res = http::CheckRoleKeys(q, inference_auth, admin_auth, admin);
  if (res == http::AuthResult::kOk) return true;
  ApiError e;
  if (res == http::AuthResult::kMissing) {
    e = ApiError{401, "Unauthorized", "an API key is required: Authorization: Bearer <key>", ""};
  } else {
    e = ApiError{403, "Forbidden",
                 admin ? "this route needs the admin key" : "the API key is not valid", ""};
  }
  const std::string body = ErrorBody(e, family);
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 401) headers.emplace_back("www-authenticate", "Bearer");
  front::Send(r, e.status, body, std::move(headers));
  return false;
}

void GatewayService::Impl::SendStatus(http::Responder& r, const Status& st, int ok_status,
                                      boost::json::object ok) {
  if (st.ok()) return front::Send(r, ok_status, boost::json::serialize(ok));
  front::SendTeiError(r, http::api::ApiErrorFromStatus(st));
}

void GatewayService::Impl::HandleHealth(http::Request&, http::Responder r) {
  size_t total = 0, up = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [id, w] : workers) {
      ++total;
      up += w.ready && w.info_ok;
    }
  }
  boost::json::object o{{"status", ready.load() ? "healthy" : "unhealthy"},
                        {"role", "gateway"},
                        {"version", kVersion},
                        {"workers", total},
                        {"workers_ready", up}};
  front::Send(r, ready.load() ? 200 : 503, boost::json::serialize(o));
}

boost::json::array GatewayService::Impl::WorkersJson(Clock::time_point now, size_t* total,
                                                     size_t* up) {
  boost::json::array breakers;
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [id, w] : workers) {
    ++*total;
    *up += w.ready && w.info_ok;
    const auto s = w.breaker->snapshot(now);
    breakers.push_back(
        boost::json::object{{"node", id},
                            {"state", std::string(BreakerStateName(s.state))},
                            {"failures", s.failures},
                            {"successes", s.successes},
                            {"consecutive_failures", s.consecutive_failures},
                            {"ready", w.ready && w.info_ok},
                            {"drained", w.drained},
                            {"ejected", outlier.Ejected(id, now)},
                            {"outstanding_tokens", w.outstanding},
                            {"max_batch", w.max_batch},
                            {"sub_batches_sent", w.sent},
                            {"backpressure", w.backpressure},
                            {"source", w.source == WorkerState::Source::kStatic ? "static"
                                       : w.source == WorkerState::Source::kDns  ? "dns"
                                                                                : "registered"},
                            {"clock_skew_ms", w.clock_skew_ms ? boost::json::value(*w.clock_skew_ms)
                                                              : boost::json::value(nullptr)}});
  }
  return breakers;
}

void GatewayService::Impl::HandleUiJobs(http::Request& q, http::Responder r) {
  if (!Authorized(q, r, http::api::ApiFamily::kTei, false)) return;
  if (!options.jobs) {
    return front::SendTeiError(
        r, ApiError{404, "NotFound", "no job service configured (gateway.jobs_url)", ""});
  }
  http::ClientRequest req;
  req.target = "/jobs?limit=20";
  req.deadline = Clock::now() + options.health.timeout;
  for (const auto& [name, value] : q.headers) {
    if (name == "authorization") req.headers.emplace_back(name, value);
  }
  auto shared = std::make_shared<http::Responder>(std::move(r));
  client->Send(*options.jobs, std::move(req), [shared](Result<http::ClientResponse> resp) {
    if (!resp.ok()) {
      return front::SendTeiError(
          *shared, ApiError{503, "Unhealthy", "the job service: " + resp.status().message(), ""});
    }
    front::Send(*shared, resp->status, std::move(resp->body));
  });
}

void GatewayService::Impl::HandleStats(http::Request&, http::Responder r) {
  const auto now = Clock::now();
  size_t total = 0, up = 0;
  boost::json::array breakers = WorkersJson(now, &total, &up);
  boost::json::object o;
  o["total_workers"] = total;
  o["ready_workers"] = up;
  o["circuit_breakers"] = std::move(breakers);
  if (cache) {
    const auto s = cache->Stats();
    o["cache"] = boost::json::object{
        {"hits", s.hits}, {"misses", s.misses}, {"entries", s.entries}, {"bytes", s.bytes}};
  }
  o["limiter"] = boost::json::object{
      {"enabled", options.adaptive_limit},
      {"limit", limiter.limit()},
      {"in_flight", limiter.in_flight()},
      {"rejected", limiter.rejected()},
      {"waiting", waiting_count.load()},
      {"waited", waited.load()},
      {"wait_timeouts", wait_timeouts.load()},
      {"min_rtt_ms", std::chrono::duration<double, std::milli>(limiter.min_rtt()).count()},
      {"sample_rtt_ms", std::chrono::duration<double, std::milli>(limiter.sample_rtt()).count()}};
  {
    std::lock_guard<std::mutex> lock(mu);
    o["retries"] = retries_total;
    o["retries_refused_by_budget"] = retries_refused;
    o["hedging"] = boost::json::object{
        {"enabled", options.hedging},
        {"delay_ms",
         options.hedge_delay.count() > 0 ? double(options.hedge_delay.count()) : rtt_p95_ms},
        {"sent", hedges_sent},
        {"won", hedges_won.load()},
        {"refused_by_budget", hedges_refused},
        {"answers_dropped", answers_dropped.load()}};
    o["retry_tokens"] = retry_tokens;
    o["chars_per_token"] = chars_per_token;
  }
  o["coalesced"] = coalescer.coalesced();
  o["infer_cache_hits"] = infer_cache_hits.load();
  if (redis) {
    const auto rs = redis->stats();
    o["redis"] = boost::json::object{{"hits", rs.hits},
                                     {"misses", rs.misses},
                                     {"errors", rs.errors},
                                     {"skipped_breaker_open", rs.skipped},
                                     {"stored", rs.stored},
                                     {"store_errors", rs.store_errors},
                                     {"store_dropped", rs.store_dropped},
                                     {"collisions", rs.collisions},
                                     {"lookups_skipped_queue_full", redis_lookups_skipped.load()},
                                     {"breaker_open", rs.breaker_open}};
  }
  o["node_id"] = "gateway";
  front::Send(r, 200, boost::json::serialize(o));
}

// ---- forwarded routes: /infer, KServe v2, /tokenize ---------------------------------
void GatewayService::Impl::BindMetrics() {
  auto& reg = metrics::Registry::Global();
  bindings.push_back(
      reg.CallbackGauge("infermesh_gateway_concurrency_limit", "The adaptive concurrency limit")
          .Bind([this] { return double(limiter.limit()); }));
  bindings.push_back(
      reg.CallbackGauge("infermesh_gateway_min_rtt_seconds",
                        "Minimum round-trip time the limiter measured")
          .Bind([this] { return std::chrono::duration<double>(limiter.min_rtt()).count(); }));
  bindings.push_back(reg.CallbackCounter("infermesh_gateway_limiter_rejected_total",
                                         "Requests refused by the concurrency limit")
                         .Bind([this] { return double(limiter.rejected()); }));
  bindings.push_back(reg.CallbackCounter("infermesh_gateway_coalesced_total",
                                         "Inputs that joined an identical call in flight")
                         .Bind([this] { return double(coalescer.coalesced()); }));
  bindings.push_back(reg.CallbackCounter("infermesh_gateway_retries_total",
                                         "Sub-batches sent again to another worker")
                         .Bind([this] {
                           std::lock_guard<std::mutex> lock(mu);
                           return double(retries_total);
                         }));
  bindings.push_back(reg.CallbackCounter("infermesh_gateway_hedges_total",
                                         "Sub-batches sent again because they were slow")
                         .Bind([this] {
                           std::lock_guard<std::mutex> lock(mu);
                           return double(hedges_sent);
                         }));
  bindings.push_back(reg.CallbackCounter("infermesh_gateway_hedges_won_total",
                                         "Hedged sub-batches whose hedge answered first")
                         .Bind([this] { return double(hedges_won.load()); }));
  bindings.push_back(
      reg.CallbackGauge("infermesh_gateway_workers_ready", "Workers that pass health checks")
          .Bind([this] {
            std::lock_guard<std::mutex> lock(mu);
            double n = 0;
            for (const auto& [id, w] : workers) n += w.ready && w.info_ok;
            return n;
          }));
  // The autoscaling signal (deploy/k8s): estimated tokens in flight per ready worker.
  bindings.push_back(reg.CallbackGauge("infermesh_gateway_outstanding_tokens_per_worker",
                                       "Estimated tokens in flight at the workers, per ready "
                                       "worker (0 when none is ready)")
                         .Bind([this] {
                           std::lock_guard<std::mutex> lock(mu);
                           double tokens = 0, ready_n = 0;
                           for (const auto& [id, w] : workers) {
                             if (!w.ready || !w.info_ok) continue;
                             tokens += w.outstanding;
                             ready_n += 1;
                           }
                           return ready_n > 0 ? tokens / ready_n : 0.0;
                         }));
  if (redis) {
    auto stat = [r = redis.get()](uint64_t RedisCache::Stats::*field) {
      return [r, field] { return double(r->stats().*field); };
    };
    bindings.push_back(
        reg.CallbackCounter("infermesh_gateway_redis_hits_total", "Inputs found in Redis")
            .Bind(stat(&RedisCache::Stats::hits)));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_redis_misses_total",
                                           "Inputs looked up in Redis and not found")
                           .Bind(stat(&RedisCache::Stats::misses)));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_redis_errors_total",
                                           "Inputs whose Redis lookup failed (answered as misses)")
                           .Bind(stat(&RedisCache::Stats::errors)));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_redis_skipped_total",
                                           "Inputs not looked up: Redis breaker open")
                           .Bind(stat(&RedisCache::Stats::skipped)));
    bindings.push_back(
        reg.CallbackCounter("infermesh_gateway_redis_stored_total", "Rows written to Redis")
            .Bind(stat(&RedisCache::Stats::stored)));
  }
  if (cache) {
    bindings.push_back(
        reg.CallbackCounter("infermesh_gateway_cache_hits_total", "Gateway local cache hits")
            .Bind([c = cache.get()] { return double(c->Stats().hits); }));
    bindings.push_back(
        reg.CallbackCounter("infermesh_gateway_cache_misses_total", "Gateway local cache misses")
            .Bind([c = cache.get()] { return double(c->Stats().misses); }));
  }
}

}  // namespace infermesh::gateway
