#include "worker/worker_service.h"

#include <unistd.h>

#include "worker/internal/worker_impl.h"

namespace infermesh::worker {

using namespace internal;  // NOLINT: this file implements the internals

// Requests dropped before compute (client gone, deadline passed) are counted
// with the admission refusals, by reason.
void WorkerService::Impl::CountDropped(const Status& s) {
  if (s.code() == StatusCode::kCancelled) {
    metrics->rejected.WithLabels({"cancelled"}).Inc();
  } else if (s.code() == StatusCode::kDeadlineExceeded) {
    metrics->rejected.WithLabels({"deadline"}).Inc();
  }
}

// ---- admission -------------------------------------------------------------
// Returns a ticket, or null after answering 429 (or 503 when not ready).
std::shared_ptr<AdmissionTicket> WorkerService::Impl::Admit(Responder& r, bool openai) {
  total_requests.fetch_add(1, std::memory_order_relaxed);
  if (!ready.load()) {
    auto e = http::api::ApiErrorFromStatus(Unavailable("worker is not ready"));
    openai ? SendOpenAiError(r, e) : SendTeiError(r, e);
    return nullptr;
  }
  int64_t n = in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
  auto ticket = std::make_shared<AdmissionTicket>(&in_flight);
  if (n > options.max_concurrent_requests) {
    metrics->rejected.WithLabels({"max_concurrent_requests"}).Inc();
    auto e = http::api::ApiErrorFromStatus(
        ResourceExhausted("too many concurrent requests (worker.max_concurrent_requests = " +
                          std::to_string(options.max_concurrent_requests) + ")"));
    openai ? SendOpenAiError(r, e) : SendTeiError(r, e);
    return nullptr;
  }
  return ticket;
}

void WorkerService::Impl::BuildRouter(http::Router& r) {
  auto bind = [this](void (Impl::*fn)(Request&, Responder)) {
    return [this, fn](Request& req, Responder resp) { (this->*fn)(req, std::move(resp)); };
  };
  r.Add("POST", "/embed",
        [this](Request& req, Responder resp) { text_front->HandleEmbed(req, std::move(resp)); });
  r.Add("POST", "/tokenize", bind(&Impl::HandleTokenize));
  r.Add("GET", "/info", bind(&Impl::HandleInfo));
  r.Add("GET", "/health", bind(&Impl::HandleHealth));
  r.Add("GET", "/stats", bind(&Impl::HandleHealth));
  r.Add("GET", "/health/thread-pools", bind(&Impl::HandleThreadPools));
  r.Add("POST", "/health/thread-pools/log-status", bind(&Impl::HandleThreadPoolsLog));
  r.Add("GET", "/metrics", [](Request&, Responder resp) {
    Send(resp, 200, metrics::Registry::Global().RenderText(), {},
         std::string(metrics::kPrometheusContentType));
  });
  r.Add("POST", "/v1/embeddings",
        [this](Request& req, Responder resp) { text_front->HandleOpenAi(req, std::move(resp)); });
  r.Add("POST", "/infer", bind(&Impl::HandleInfer));
  r.Add("GET", "/v2", [](Request&, Responder resp) {
    http::api::KServeServerMetadata md;
    md.version = kVersion;
    Send(resp, 200, http::api::SerializeKServeServerMetadata(md));
  });
  r.Add("GET", "/v2/health/live",
        [](Request&, Responder resp) { Send(resp, 200, http::api::SerializeKServeLive(true)); });
  r.Add("GET", "/v2/health/ready", [this](Request&, Responder resp) {
    const bool ok = ready.load();
    Send(resp, ok ? 200 : 503, http::api::SerializeKServeReady(ok));
  });
  r.Add("GET", "/v2/models/{model}",
        [this](Request& req, Responder resp) { HandleKServeModel(req, std::move(resp), false); });
  r.Add("GET", "/v2/models/{model}/ready",
        [this](Request& req, Responder resp) { HandleKServeModel(req, std::move(resp), true); });
  r.Add("POST", "/v2/models/{model}/infer", bind(&Impl::HandleKServeInfer));
}

Result<WorkerOptions> WorkerOptionsFromConfig(const Config& c) {
  WorkerOptions o;
  IM_ASSIGN_OR_RETURN(o.host, c.GetString("worker.host"));
  IM_ASSIGN_OR_RETURN(int64_t port, c.GetInt("worker.port"));
  if (port < 0 || port > 65535) return InvalidArgument("worker.port must be 0..65535");
  o.port = static_cast<uint16_t>(port);
  IM_ASSIGN_OR_RETURN(o.models_dir, c.GetString("worker.models"));
  IM_ASSIGN_OR_RETURN(o.node_id, c.GetString("worker.node_id"));
  IM_ASSIGN_OR_RETURN(o.gateway, c.GetString("worker.gateway"));
  if (!o.gateway.empty()) {
    auto gw = http::ParseEndpoint(o.gateway);
    if (!gw.ok()) return gw.status().WithContext("worker.gateway");
  }
  IM_ASSIGN_OR_RETURN(o.advertise, c.GetString("worker.advertise"));
  if (!o.advertise.empty()) {
    auto ad = http::ParseEndpoint(o.advertise);
    if (!ad.ok()) return ad.status().WithContext("worker.advertise");
  }
  IM_ASSIGN_OR_RETURN(o.gateway_key, c.GetString("worker.gateway_key"));
  IM_ASSIGN_OR_RETURN(int64_t heartbeat, c.GetMillis("worker.heartbeat_interval"));
  if (heartbeat < 50) return InvalidArgument("worker.heartbeat_interval must be at least 50ms");
  o.heartbeat_interval = std::chrono::milliseconds(heartbeat);
  auto positive = [&](const char* key, int64_t min, int64_t max) -> Result<int64_t> {
    IM_ASSIGN_OR_RETURN(int64_t v, c.GetInt(key));
    if (v < min || v > max) {
      return InvalidArgument(std::string(key) + " must be in " + std::to_string(min) + ".." +
                             std::to_string(max) + ", got " + std::to_string(v));
    }
    return v;
  };
  IM_ASSIGN_OR_RETURN(int64_t io, positive("worker.io_threads", 1, 256));
  o.io_threads = static_cast<int>(io);
  IM_ASSIGN_OR_RETURN(int64_t tok, positive("worker.tokenize_threads", 1, 256));
  o.tokenize_threads = static_cast<int>(tok);
  runtime::SessionOptions so;
  IM_RETURN_IF_ERROR(runtime::ReadRuntimeConfig(c, &so));
  o.intra_op_threads = so.intra_op_threads;
  o.max_model_bytes = so.max_model_bytes;
  o.precision = so.precision;
  o.fused_encoder = so.fused_encoder;
  IM_ASSIGN_OR_RETURN(o.max_concurrent_requests,
                      positive("worker.max_concurrent_requests", 1, 1 << 20));
  IM_ASSIGN_OR_RETURN(int64_t body, c.GetBytes("worker.max_body_bytes"));
  if (body < 1024 || body > (int64_t{1} << 30)) {
    return InvalidArgument("worker.max_body_bytes must be between 1KiB and 1GiB");
  }
  o.max_body_bytes = static_cast<size_t>(body);
  IM_ASSIGN_OR_RETURN(o.max_client_batch_size, positive("worker.max_client_batch_size", 1, 4096));
  IM_ASSIGN_OR_RETURN(o.text_batcher.max_batch_tokens,
                      positive("worker.max_batch_tokens", 1, int64_t{1} << 24));
  IM_ASSIGN_OR_RETURN(o.text_batcher.max_batch_requests,
                      positive("worker.max_batch_requests", 0, 1 << 20));
  IM_ASSIGN_OR_RETURN(int64_t queue, positive("worker.max_queue_requests", 1, 1 << 24));
  o.text_batcher.max_queue_requests = queue;
  o.tensor_batcher.max_queue_requests = queue;
  IM_ASSIGN_OR_RETURN(int64_t delay, c.GetMillis("worker.max_queue_delay"));
  o.text_batcher.max_queue_delay = milliseconds(delay);
  IM_ASSIGN_OR_RETURN(o.auto_truncate, c.GetBool("worker.auto_truncate"));
  IM_ASSIGN_OR_RETURN(int64_t timeout, c.GetMillis("worker.request_timeout"));
  if (timeout <= 0) return InvalidArgument("worker.request_timeout must be positive");
  o.request_timeout = milliseconds(timeout);
  IM_ASSIGN_OR_RETURN(int64_t grace, c.GetMillis("worker.shutdown_grace"));
  o.shutdown_grace = milliseconds(grace);
  IM_ASSIGN_OR_RETURN(o.tensor_batcher.max_batch_size,
                      positive("worker.tensor_max_batch_size", 1, 1 << 16));
  IM_ASSIGN_OR_RETURN(int64_t tdelay, c.GetMillis("worker.tensor_max_queue_delay"));
  o.tensor_batcher.max_queue_delay = milliseconds(tdelay);
  IM_ASSIGN_OR_RETURN(o.cache_bytes, c.GetBytes("cache.max_bytes"));
  IM_ASSIGN_OR_RETURN(o.server_limits, http::ServerLimitsFromConfig(c));
  IM_ASSIGN_OR_RETURN(int64_t test_delay, c.GetMillis("worker.test_backend_delay"));
  if (test_delay < 0) return InvalidArgument("worker.test_backend_delay must not be negative");
  o.test_backend_delay = milliseconds(test_delay);
  if (test_delay > 0) {
    log::Warn("worker.test_backend_delay is set: every model call is delayed (tests only)",
              {{"ms", test_delay}});
  }
  return o;
}

WorkerService::WorkerService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WorkerService::~WorkerService() { Shutdown(); }

uint16_t WorkerService::port() const { return impl_->server ? impl_->server->port() : 0; }
bool WorkerService::ready() const { return impl_->ready.load(); }

Result<std::unique_ptr<WorkerService>> WorkerService::Start(const WorkerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (impl->options.models_dir.empty()) {
    return InvalidArgument("no model repository: pass --models DIR (or set worker.models)");
  }
  impl->limits.max_inputs = static_cast<size_t>(std::max<int64_t>(
      options.max_client_batch_size * 4, 64));  // the handler reports the exact limit
  impl->metrics = std::make_unique<WorkerMetrics>(metrics::Registry::Global());
  // ThreadPool(n) gives Submit() n-1 workers (the caller of ParallelFor is the
  // n-th); tokenization only uses Submit(), so ask for one more.
  impl->tokenize_pool = std::make_unique<ThreadPool>("tokenize", options.tokenize_threads + 1);
  impl->kserve_pool = std::make_unique<ThreadPool>("kserve", 1);
  if (options.cache_bytes > 0) {
    LruCacheOptions co;
    co.capacity_bytes = static_cast<size_t>(options.cache_bytes);
    impl->cache = std::make_unique<RowCache>(co, front::CachedRowBytes);
  }

  runtime::SessionOptions so;
  so.intra_op_threads = options.intra_op_threads;
  so.max_model_bytes = options.max_model_bytes;
  so.precision = options.precision;
  so.fused_encoder = options.fused_encoder;
  IM_ASSIGN_OR_RETURN(impl->registry, ModelRegistry::LoadRepository(options.models_dir, so));
  for (const auto& m : impl->registry.models()) {
    impl->metrics->model_ready.WithLabels({m->name}).Set(m->ok() ? 1 : 0);
    impl->metrics->model_load_seconds.WithLabels({m->name}).Set(m->load_seconds);
    if (!m->ok()) continue;
    impl->metrics->BindModelWeightBytes(m->name, [e = m.get()] { return double(WeightBytes(*e)); });
    const std::string name = m->name;
    WorkerMetrics* wm = impl->metrics.get();
    if (m->kind == ModelKind::kText) {
      TokenBatcherConfig cfg = options.text_batcher;
      // The queue must hold several full batches, whatever the batch budget.
      cfg.max_queue_tokens = std::max(cfg.max_queue_tokens, 8 * cfg.max_batch_tokens);
      cfg.thread_name = "infer-" + name;
      cfg.on_batch = [wm, name](const BatchRecord& b) { wm->ObserveBatch(name, b); };
      const runtime::EmbeddingModel* model = m->text.get();
      TextModel tm;
      tm.entry = m.get();
      tm.batcher = std::make_unique<TokenBudgetBatcher>(
          cfg, [model, running = tm.running.get(),
                delay = options.test_backend_delay](const std::vector<runtime::Encoding>& batch) {
            RunningCount::Scope scope(running);
            if (delay.count() > 0) std::this_thread::sleep_for(delay);
            return model->EmbedEncodings(batch, /*normalize=*/false);
          });
      impl->text_models.emplace(name, std::move(tm));
    } else if (m->feature_size > 0) {
      TensorBatcherConfig cfg = options.tensor_batcher;
      cfg.thread_name = "infer-" + name;
      cfg.feature_size = m->feature_size;
      cfg.on_batch = [wm, name](const BatchRecord& b) { wm->ObserveBatch(name, b); };
      const runtime::Session* session = m->session.get();
      const std::string input_name = session->inputs()[0].name;
      TensorModel tm;
      tm.entry = m.get();
      tm.batcher = std::make_unique<SizeDelayBatcher>(
          cfg,
          [session, input_name, running = tm.running.get(), delay = options.test_backend_delay](
              const runtime::Tensor& batch) -> Result<runtime::Tensor> {
            RunningCount::Scope scope(running);
            if (delay.count() > 0) std::this_thread::sleep_for(delay);
            IM_ASSIGN_OR_RETURN(auto out, session->Run({{input_name, batch}}));
            return out.at(0);
          });
      impl->tensor_models.emplace(name, std::move(tm));
    }
  }
  impl->metrics->BindGauges(impl->cache.get() ? [c = impl->cache.get()] { return c->Stats(); }
                                              : std::function<LruCacheStats()>(),
                            {[p = impl->tokenize_pool.get()] { return p->Stats(); },
                             [p = impl->kserve_pool.get()] { return p->Stats(); }},
                            [i = impl.get()] { return double(i->in_flight.load()); });
  for (auto& [name, tm] : impl->text_models) {
    auto* b = tm.batcher.get();
    impl->metrics->BindQueue(name, [b] { return double(b->Stats().queue_requests); });
    impl->metrics->BindCompletionExceptions(name,
                                            [b] { return double(b->Stats().callback_exceptions); });
  }
  for (auto& [name, tm] : impl->tensor_models) {
    auto* b = tm.batcher.get();
    impl->metrics->BindQueue(name, [b] { return double(b->Stats().queue_requests); });
    impl->metrics->BindCompletionExceptions(name,
                                            [b] { return double(b->Stats().callback_exceptions); });
  }

  // The serving front over this worker's backend: tokenize pool → batcher → runtime.
  class Backend final : public front::EmbedBackend {
   public:
    explicit Backend(Impl* impl) : impl_(impl) {}
    void Embed(front::EmbedCall call, Done done) override {
      impl_->EmbedMisses(std::move(call), std::move(done));
    }

   private:
    Impl* impl_;
  };
  impl->text_backend = std::make_unique<Backend>(impl.get());
  front::TextFrontOptions fo;
  fo.max_client_batch_size = options.max_client_batch_size;
  fo.auto_truncate = options.auto_truncate;
  fo.request_timeout = options.request_timeout;
  fo.limits = impl->limits;
  front::TextFront::Hooks hooks;
  hooks.admit = [i = impl.get()](const std::shared_ptr<Responder>& r, http::api::ApiFamily family,
                                 front::TextFront::Hooks::Proceed proceed) {
    auto ticket = i->Admit(*r, family == http::api::ApiFamily::kOpenAi);
    if (ticket) proceed(std::move(ticket));
  };
  hooks.model = [i = impl.get()](const std::string& name) { return i->TextModelInfoFor(name); };
  impl->text_front =
      std::make_unique<front::TextFront>(fo, impl->cache.get(), impl->text_backend.get(), hooks);

  auto router = std::make_shared<http::Router>();
  impl->BuildRouter(*router);
  http::ServerOptions so_http;
  so_http.host = options.host;
  so_http.port = options.port;
  so_http.io_threads = options.io_threads;
  so_http.max_body_bytes = options.max_body_bytes;
  so_http.limits = options.server_limits;  // Shutdown() below waits its shutdown_delay
  so_http.metrics = &metrics::Registry::Global();
  so_http.error_body = [](int status, std::string_view message) {
    ApiError e;
    e.status = status;
    e.type = std::string(http::api::TeiErrorTypeForHttpStatus(status));
    e.message = std::string(message);
    return http::api::TeiErrorBody(e);
  };
  WorkerMetrics* wm = impl->metrics.get();
  so_http.on_complete = [wm](const Request& req, int status, nanoseconds d) {
    wm->ObserveRequest(req.route.empty() ? "unmatched" : req.route, status, d);
  };
  IM_ASSIGN_OR_RETURN(impl->server, http::HttpServer::Start(so_http, router));
  if (impl->options.node_id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    std::lock_guard<std::mutex> lock(impl->node_id_mu);
    impl->options.node_id = std::string(host) + ":" + std::to_string(impl->server->port());
  }
  impl->ready.store(true);
  impl->metrics->ready.Get().Set(1);
  if (!impl->options.gateway.empty()) {
    auto gw = http::ParseEndpoint(impl->options.gateway);
    if (!gw.ok()) return gw.status().WithContext("worker.gateway");
    std::string advertise = impl->options.advertise;
    if (advertise.empty()) {
      std::string host = impl->options.host;
      if (host == "0.0.0.0" || host == "::" || host.empty()) {
        char name[256] = {0};
        gethostname(name, sizeof name - 1);
        host = name;
      }
      advertise = http::Endpoint{host, impl->server->port()}.ToString();
    }
    impl->registrar = std::make_unique<GatewayRegistrar>(*gw, advertise, impl->options.gateway_key,
                                                         impl->options.heartbeat_interval);
    impl->registrar->Start();
  }
  log::Info("worker ready",
            {{"port", int64_t{impl->server->port()}},
             {"models", int64_t(impl->registry.loaded_count())},
             {"failed", int64_t(impl->registry.models().size() - impl->registry.loaded_count())}});
  return std::unique_ptr<WorkerService>(new WorkerService(std::move(impl)));
}

void WorkerService::Shutdown() {
  if (!impl_) return;
  std::call_once(impl_->shutdown_once, [this] {
    Impl& i = *impl_;
    // The gateway first, so it stops routing here before this worker stops admitting.
    if (i.registrar) i.registrar->Stop(/*deregister=*/true);
    i.ready.store(false);
    i.metrics->ready.Get().Set(0);
    log::Info("worker draining", {{"in_flight", i.in_flight.load()}});
    // The server stops accepting and waits for responses in flight, which the
    // pools and batchers below are still running to produce.
    if (i.server) i.server->Shutdown(i.options.shutdown_grace);
    i.tokenize_pool->Shutdown();
    i.kserve_pool->Shutdown();
    for (auto& [name, m] : i.text_models) m.batcher->Shutdown();
    for (auto& [name, m] : i.tensor_models) m.batcher->Shutdown();
    i.metrics->Unbind();
    log::Info("worker stopped");
  });
}

}  // namespace infermesh::worker
