// GatewayService itself: Start (members, caches, the router and its routes, the server),
// Shutdown, and GatewayOptionsFromConfig.
#include "gateway/internal/gateway_impl.h"

namespace infermesh::gateway {

using namespace internal;  // NOLINT: this file implements the internals

GatewayService::~GatewayService() { Shutdown(); }

uint16_t GatewayService::port() const { return impl_->server ? impl_->server->port() : 0; }

Result<std::unique_ptr<GatewayService>> GatewayService::Start(GatewayOptions options) {
  // No workers at all is allowed: they may register themselves (worker --gateway URL);
  // until one is ready the gateway answers 503.
  auto svc = std::unique_ptr<GatewayService>(new GatewayService());
  svc->impl_ = std::make_unique<Impl>(std::move(options));
  Impl& im = *svc->impl_;
  http::ClientOptions co;
  co.io_threads = 1;
  co.max_connections_per_host = im.options.max_connections_per_worker;
  im.client = http::HttpClient::Create(co);
  // Health checks and /info reads have a client of their own: they never wait for a
  // pooled connection behind traffic, so a busy worker is not taken for a dead one.
  http::ClientOptions ho;
  ho.io_threads = 1;
  ho.max_connections_per_host = 2;
  im.health_client = http::HttpClient::Create(ho);
  im.membership = std::make_unique<Membership>(im.health_client.get(), im.options.health);
  im.membership->SetWorkers(im.options.workers);
  std::vector<std::string> ids;
  for (const auto& ep : im.options.workers) {
    const std::string id = ep.ToString();
    if (im.workers.count(id)) continue;
    WorkerState w;
    w.id = id;
    w.endpoint = ep;
    w.breaker = std::make_shared<CircuitBreaker>(im.options.breaker);
    im.workers.emplace(id, std::move(w));
    ids.push_back(id);
  }
  im.ring.SetMembers(ids);
  {
    std::lock_guard<std::mutex> serial(im.members_mu);
    im.SyncWorkerMetrics(ids);
  }
  if (im.options.cache_bytes > 0) {
    LruCacheOptions lo;
    lo.capacity_bytes = static_cast<size_t>(im.options.cache_bytes);
    im.cache = std::make_unique<front::RowCache>(lo, front::CachedRowBytes);
  }
  class Backend final : public front::EmbedBackend {
   public:
    explicit Backend(Impl* im) : im_(im) {}
    void Embed(front::EmbedCall call, Done done) override {
      im_->Embed(std::move(call), std::move(done));
    }

   private:
    Impl* im_;
  };
  if (!im.options.redis_url.empty()) {
    RedisOptions ro;
    ro.ttl = im.options.redis_ttl;
    ro.timeout = im.options.redis_timeout;
    IM_ASSIGN_OR_RETURN(ro, ParseRedisUrl(im.options.redis_url, ro));
    im.redis = std::make_unique<RedisCache>(ro);
    im.redis_pool = std::make_unique<ThreadPool>("redis", ro.pool_size + 1);
  }
  im.backend = std::make_unique<Backend>(&im);
  front::TextFrontOptions fo;
  fo.max_client_batch_size = im.options.max_client_batch_size;
  fo.auto_truncate = im.options.auto_truncate;
  fo.request_timeout = im.options.request_timeout;
  fo.limits.max_inputs =
      static_cast<size_t>(std::max<int64_t>(im.options.max_client_batch_size * 4, 64));
  front::TextFront::Hooks hooks;
  hooks.admit = [&im](const std::shared_ptr<http::Responder>& r, http::api::ApiFamily f,
                      front::TextFront::Hooks::Proceed proceed) {
    im.Admit(r, f, std::move(proceed));
  };
  hooks.model = [&im](const std::string& name) { return im.ModelFor(name); };
  im.front = std::make_unique<front::TextFront>(fo, im.cache.get(), im.backend.get(), hooks);

  im.RefreshDns();
  im.RefreshWorkers();  // the first round before serving
  im.BindMetrics();

  im.inference_auth = http::BearerAuth(im.options.api_keys);
  im.admin_auth = http::BearerAuth(im.options.admin_key.empty()
                                       ? std::vector<std::string>{}
                                       : std::vector<std::string>{im.options.admin_key});
  using Family = http::api::ApiFamily;
  auto router = std::make_shared<http::Router>();
  router->Add("POST", "/embed", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, false)) return;
    im.front->HandleEmbed(q, std::move(r));
  });
  router->Add("POST", "/v1/embeddings", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kOpenAi, false)) return;
    im.front->HandleOpenAi(q, std::move(r));
  });
  router->Add("POST", "/infer",
              [&im](http::Request& q, http::Responder r) { im.HandleInfer(q, std::move(r)); });
  router->Add("POST", "/tokenize",
              [&im](http::Request& q, http::Responder r) { im.HandleTokenize(q, std::move(r)); });
  router->Add("POST", "/v2/models/{model}/infer", [&im](http::Request& q, http::Responder r) {
    im.HandleKServeInfer(q, std::move(r));
  });
  router->Add("GET", "/v2/models/{model}", [&im](http::Request& q, http::Responder r) {
    im.HandleKServeModel(q, std::move(r));
  });
  router->Add("GET", "/v2/models/{model}/ready", [&im](http::Request& q, http::Responder r) {
    im.HandleKServeModel(q, std::move(r));
  });
  router->Add("GET", "/v2", [](http::Request&, http::Responder r) {
    http::api::KServeServerMetadata md;
    md.version = kVersion;
    front::Send(r, 200, http::api::SerializeKServeServerMetadata(md));
  });
  router->Add("GET", "/v2/health/live", [](http::Request&, http::Responder r) {
    front::Send(r, 200, http::api::SerializeKServeLive(true));
  });
  router->Add("GET", "/v2/health/ready", [&im](http::Request&, http::Responder r) {
    const bool ok = im.ready.load();
    front::Send(r, ok ? 200 : 503, http::api::SerializeKServeReady(ok));
  });
  router->Add("GET", "/health/thread-pools", [&im](http::Request&, http::Responder r) {
    front::Send(r, 200, http::api::SerializeSeedThreadPools(im.ThreadPoolTable()));
  });
  router->Add("GET", "/admin/workers", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    size_t total = 0, up = 0;
    boost::json::object o{{"workers", im.WorkersJson(Clock::now(), &total, &up)}};
    front::Send(r, 200, boost::json::serialize(o));
  });
  router->Add("POST", "/admin/workers", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    boost::system::error_code ec;
    auto v = boost::json::parse(q.body, ec);
    const boost::json::value* a =
        !ec && v.is_object() ? v.as_object().if_contains("address") : nullptr;
    if (a == nullptr || !a->is_string()) {
      return front::SendTeiError(
          r, http::api::TeiEmptyError("expected {\"address\": \"host:port\"}", "address"));
    }
    auto ep = http::ParseEndpoint(std::string(a->as_string()));
    if (!ep.ok()) {
      return front::SendTeiError(r, ApiError{400, "Validation", ep.status().message(), "address"});
    }
    im.SendStatus(r, im.AddWorker(*ep), 201, {{"added", ep->ToString()}});
  });
  // Registration: a worker started with --gateway URL posts its address every
  // heartbeat interval, and deregisters when it stops.
  auto address_of = [](const http::Request& q) -> Result<http::Endpoint> {
    boost::system::error_code ec;
    auto v = boost::json::parse(q.body, ec);
    const boost::json::value* a =
        !ec && v.is_object() ? v.as_object().if_contains("address") : nullptr;
    if (a == nullptr || !a->is_string()) {
      return InvalidArgument("expected {\"address\": \"host:port\"}");
    }
    return http::ParseEndpoint(std::string(a->as_string()));
  };
  router->Add("POST", "/admin/register", [&im, address_of](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    auto ep = address_of(q);
    if (!ep.ok()) {
      return front::SendTeiError(r, ApiError{400, "Validation", ep.status().message(), "address"});
    }
    Status added = im.AddWorker(*ep, WorkerState::Source::kRegistered);
    if (added.ok()) {
      boost::system::error_code ec;
      auto v = boost::json::parse(q.body, ec);
      const auto* sent = !ec && v.is_object() ? v.as_object().if_contains("sent_unix_ms") : nullptr;
      if (sent && sent->is_int64()) {
        const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
        std::lock_guard<std::mutex> lock(im.mu);
        if (auto it = im.workers.find(ep->ToString()); it != im.workers.end()) {
          it->second.clock_skew_ms = now_ms - sent->as_int64();
        }
      }
    }
    im.SendStatus(
        r, added, 200,
        {{"registered", ep->ToString()}, {"ttl_ms", im.options.registration_ttl.count()}});
  });
  router->Add("POST", "/admin/deregister", [&im, address_of](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    auto ep = address_of(q);
    if (!ep.ok()) {
      return front::SendTeiError(r, ApiError{400, "Validation", ep.status().message(), "address"});
    }
    im.SendStatus(r, im.RemoveWorker(ep->ToString(), /*only_registered=*/true), 200,
                  {{"deregistered", ep->ToString()}});
  });
  router->Add("DELETE", "/admin/workers/{id}", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    const std::string id = q.path_params["id"];
    im.SendStatus(r, im.RemoveWorker(id), 200, {{"removed", id}});
  });
  router->Add("POST", "/admin/workers/{id}/drain", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    const std::string id = q.path_params["id"];
    im.SendStatus(r, im.Drain(id, true), 200, {{"drained", id}});
  });
  router->Add("POST", "/admin/workers/{id}/resume", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    const std::string id = q.path_params["id"];
    im.SendStatus(r, im.Drain(id, false), 200, {{"resumed", id}});
  });
  router->Add("GET", "/health",
              [&im](http::Request& q, http::Responder r) { im.HandleHealth(q, std::move(r)); });
  router->Add("GET", "/stats",
              [&im](http::Request& q, http::Responder r) { im.HandleStats(q, std::move(r)); });
  router->Add("GET", "/info",
              [&im](http::Request& q, http::Responder r) { im.HandleInfo(q, std::move(r)); });
  router->Add("GET", "/metrics", [&im](http::Request& q, http::Responder r) {
    if (im.options.protect_metrics && !im.Authorized(q, r, Family::kTei, false)) return;
    front::Send(r, 200, metrics::Registry::Global().RenderText(), {},
                std::string(metrics::kPrometheusContentType));
  });
  router->Add("GET", "/ui", [](http::Request&, http::Responder r) {
    // The page itself holds no data; what it reads is behind the keys (?key=).
    front::Send(r, 200, std::string(StatusPageHtml()),
                {{"cache-control", "no-store"},
                 {"content-security-policy",
                  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                  "connect-src 'self'; img-src 'self'"}},
                "text/html; charset=utf-8");
  });
  router->Add("GET", "/ui/jobs",
              [&im](http::Request& q, http::Responder r) { im.HandleUiJobs(q, std::move(r)); });
  http::ServerOptions so;
  so.host = im.options.host;
  so.port = im.options.port;
  so.io_threads = im.options.io_threads;
  so.max_body_bytes = im.options.max_body_bytes;
  so.limits = im.options.server_limits;
  so.metrics = &metrics::Registry::Global();
  so.on_complete = [rm = im.request_metrics.get()](const http::Request& q, int status,
                                                   std::chrono::nanoseconds d) {
    rm->Observe(q.route, status, d);
  };
  so.error_body = [](int status, std::string_view message) {
    ApiError e = http::api::ApiErrorFromStatus(
        Status(status == 413 ? StatusCode::kResourceExhausted : StatusCode::kInvalidArgument,
               std::string(message)));
    e.status = status;
    return http::api::TeiErrorBody(e);
  };
  IM_ASSIGN_OR_RETURN(im.server, http::HttpServer::Start(so, router));
  im.health_thread = std::thread([&im] { im.HealthLoop(); });
  im.wait_thread = std::thread([&im] { im.WaitLoop(); });
  if (im.options.hedging) im.hedge_thread = std::thread([&im] { im.HedgeLoop(); });
  log::Info("gateway listening",
            {{"address", im.options.host + ":" + std::to_string(im.server->port())},
             {"workers", std::to_string(im.options.workers.size() + im.options.dns.size())}});
  return svc;
}

void GatewayService::Shutdown() {
  if (!impl_) return;
  Impl& im = *impl_;
  im.shutting_down = true;
  im.ready = false;
  {
    std::lock_guard<std::mutex> lock(im.health_mu);
    if (im.stopping) return;
    im.stopping = true;
  }
  im.health_cv.notify_all();
  if (im.health_thread.joinable()) im.health_thread.join();
  {
    std::lock_guard<std::mutex> lock(im.wait_mu);
    im.wait_stopping = true;
  }
  im.wait_cv.notify_all();
  if (im.wait_thread.joinable()) im.wait_thread.join();
  {
    std::lock_guard<std::mutex> lock(im.hedge_mu);
    im.hedge_stopping = true;
    im.hedge_queue.clear();
  }
  im.hedge_cv.notify_all();
  if (im.hedge_thread.joinable()) im.hedge_thread.join();
  if (im.server) im.server->Shutdown(std::chrono::seconds(10));
  im.bindings.clear();
  {
    std::lock_guard<std::mutex> serial(im.members_mu);
    im.worker_bindings.clear();
  }
  if (im.redis_pool) im.redis_pool->Shutdown();  // finishes queued lookups
  if (im.client) im.client->Shutdown();
  if (im.health_client) im.health_client->Shutdown();
}

Result<GatewayOptions> GatewayOptionsFromConfig(const Config& c) {
  GatewayOptions o;
  IM_ASSIGN_OR_RETURN(o.host, c.GetString("gateway.host"));
  IM_ASSIGN_OR_RETURN(int64_t port, c.GetInt("gateway.port"));
  if (port < 0 || port > 65535) return InvalidArgument("gateway.port must be 0..65535");
  o.port = static_cast<uint16_t>(port);
  IM_ASSIGN_OR_RETURN(std::string workers, c.GetString("gateway.workers"));
  size_t pos = 0;
  while (pos < workers.size()) {
    size_t comma = workers.find(',', pos);
    if (comma == std::string::npos) comma = workers.size();
    std::string item = workers.substr(pos, comma - pos);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.starts_with("dns:")) {
      // dns:NAME:PORT
      auto ep = http::ParseEndpoint(item.substr(4));
      if (!ep.ok()) return ep.status().WithContext("gateway.workers (dns:NAME:PORT)");
      o.dns.push_back({ep->host, ep->port});
    } else if (!item.empty()) {
      auto ep = http::ParseEndpoint(item);
      if (!ep.ok()) return ep.status().WithContext("gateway.workers");
      o.workers.push_back(*ep);
    }
    pos = comma + 1;
  }
  auto ranged = [&](const char* key, int64_t min, int64_t max) -> Result<int64_t> {
    IM_ASSIGN_OR_RETURN(int64_t v, c.GetInt(key));
    if (v < min || v > max) {
      return InvalidArgument(std::string(key) + " must be in " + std::to_string(min) + ".." +
                             std::to_string(max) + ", got " + std::to_string(v));
    }
    return v;
  };
  IM_ASSIGN_OR_RETURN(std::string jobs_url, c.GetString("gateway.jobs_url"));
  if (!jobs_url.empty()) {
    auto ep = http::ParseEndpoint(jobs_url);
    if (!ep.ok()) return ep.status().WithContext("gateway.jobs_url");
    o.jobs = *ep;
  }
  IM_ASSIGN_OR_RETURN(int64_t io, ranged("gateway.io_threads", 1, 256));
  o.io_threads = static_cast<int>(io);
  IM_ASSIGN_OR_RETURN(o.max_client_batch_size, ranged("gateway.max_client_batch_size", 1, 8192));
  IM_ASSIGN_OR_RETURN(o.max_sub_batch, ranged("gateway.max_sub_batch", 0, 8192));
  IM_ASSIGN_OR_RETURN(int64_t body, c.GetBytes("gateway.max_body_bytes"));
  if (body < 1024 || body > (int64_t{1} << 30)) {
    return InvalidArgument("gateway.max_body_bytes must be between 1KiB and 1GiB");
  }
  o.max_body_bytes = static_cast<size_t>(body);
  IM_ASSIGN_OR_RETURN(int64_t timeout, c.GetMillis("gateway.request_timeout"));
  o.request_timeout = std::chrono::milliseconds(timeout);
  IM_ASSIGN_OR_RETURN(o.cache_bytes, c.GetBytes("cache.max_bytes"));
  IM_ASSIGN_OR_RETURN(o.balance_factor, c.GetDouble("gateway.balance_factor"));
  if (o.balance_factor < 1.0 || o.balance_factor > 100) {
    return InvalidArgument("gateway.balance_factor must be between 1 and 100");
  }
  IM_ASSIGN_OR_RETURN(int64_t attempts, ranged("gateway.max_attempts", 1, 10));
  o.max_attempts = static_cast<int>(attempts);
  IM_ASSIGN_OR_RETURN(o.retry_budget, c.GetDouble("gateway.retry_budget"));
  if (o.retry_budget < 0 || o.retry_budget > 10) {
    return InvalidArgument("gateway.retry_budget must be between 0 and 10");
  }
  IM_ASSIGN_OR_RETURN(o.admission_wait_rtts, c.GetDouble("gateway.admission_wait_rtts"));
  if (o.admission_wait_rtts < 0 || o.admission_wait_rtts > 1000) {
    return InvalidArgument("gateway.admission_wait_rtts must be between 0 and 1000");
  }
  IM_ASSIGN_OR_RETURN(o.hedging, c.GetBool("gateway.hedging"));
  IM_ASSIGN_OR_RETURN(int64_t hedge_delay, c.GetMillis("gateway.hedge_delay"));
  if (hedge_delay < 0 || hedge_delay > 60000) {
    return InvalidArgument("gateway.hedge_delay must be between 0 and 60s");
  }
  o.hedge_delay = std::chrono::milliseconds(hedge_delay);
  IM_ASSIGN_OR_RETURN(o.adaptive_limit, c.GetBool("gateway.adaptive_limit"));
  IM_ASSIGN_OR_RETURN(int64_t conns, ranged("gateway.max_connections_per_worker", 1, 4096));
  o.max_connections_per_worker = static_cast<size_t>(conns);
  IM_ASSIGN_OR_RETURN(int64_t failures, ranged("gateway.breaker_failures", 1, 1000));
  o.breaker.failure_threshold = static_cast<int>(failures);
  IM_ASSIGN_OR_RETURN(int64_t open, c.GetMillis("gateway.breaker_open_time"));
  o.breaker.open_timeout = std::chrono::milliseconds(open);
  IM_ASSIGN_OR_RETURN(int64_t successes, ranged("gateway.breaker_successes", 1, 1000));
  o.breaker.success_threshold = static_cast<int>(successes);
  IM_ASSIGN_OR_RETURN(int64_t interval, c.GetMillis("gateway.health_interval"));
  if (interval < 10) return InvalidArgument("gateway.health_interval must be at least 10ms");
  o.health.interval = std::chrono::milliseconds(interval);
  IM_ASSIGN_OR_RETURN(int64_t htimeout, c.GetMillis("gateway.health_timeout"));
  o.health.timeout = std::chrono::milliseconds(std::max<int64_t>(htimeout, 1));
  IM_ASSIGN_OR_RETURN(o.limiter.buffer, c.GetDouble("gateway.limit_tolerance"));
  if (o.limiter.buffer < 0 || o.limiter.buffer > 100) {
    return InvalidArgument("gateway.limit_tolerance must be between 0 and 100");
  }
  IM_ASSIGN_OR_RETURN(int64_t min_limit, ranged("gateway.min_concurrency", 1, 1 << 20));
  o.limiter.min_limit = static_cast<double>(min_limit);
  IM_ASSIGN_OR_RETURN(int64_t max_limit, ranged("gateway.max_concurrency", 1, 1 << 20));
  o.limiter.max_limit = static_cast<double>(std::max(max_limit, min_limit));
  IM_ASSIGN_OR_RETURN(int64_t wait, c.GetMillis("gateway.admission_wait"));
  o.admission_wait = std::chrono::milliseconds(wait);
  IM_ASSIGN_OR_RETURN(int64_t waiting, ranged("gateway.max_waiting_requests", 0, 1 << 20));
  o.max_waiting_requests = static_cast<size_t>(waiting);
  IM_ASSIGN_OR_RETURN(int64_t dns_ms, c.GetMillis("gateway.dns_interval"));
  if (dns_ms < 100) return InvalidArgument("gateway.dns_interval must be at least 100ms");
  o.dns_interval = std::chrono::milliseconds(dns_ms);
  IM_ASSIGN_OR_RETURN(int64_t ttl_ms, c.GetMillis("gateway.registration_ttl"));
  if (ttl_ms < 100) return InvalidArgument("gateway.registration_ttl must be at least 100ms");
  o.registration_ttl = std::chrono::milliseconds(ttl_ms);
  IM_ASSIGN_OR_RETURN(o.redis_url, c.GetString("gateway.redis"));
  if (!o.redis_url.empty()) IM_RETURN_IF_ERROR(ParseRedisUrl(o.redis_url).status());
  IM_ASSIGN_OR_RETURN(int64_t rttl, c.GetMillis("gateway.redis_ttl"));
  if (rttl < 1000) return InvalidArgument("gateway.redis_ttl must be at least 1s");
  o.redis_ttl = std::chrono::seconds(rttl / 1000);
  IM_ASSIGN_OR_RETURN(int64_t rto, c.GetMillis("gateway.redis_timeout"));
  if (rto < 1) return InvalidArgument("gateway.redis_timeout must be at least 1ms");
  o.redis_timeout = std::chrono::milliseconds(rto);
  IM_ASSIGN_OR_RETURN(std::string keys, c.GetString("gateway.api_keys"));
  o.api_keys = http::SplitKeyList(keys);
  IM_ASSIGN_OR_RETURN(o.admin_key, c.GetString("gateway.admin_key"));
  IM_ASSIGN_OR_RETURN(o.protect_metrics, c.GetBool("gateway.protect_metrics"));
  IM_ASSIGN_OR_RETURN(o.server_limits, http::ServerLimitsFromConfig(c));
  return o;
}

}  // namespace infermesh::gateway
