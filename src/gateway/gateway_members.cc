// GatewayService's membership: worker info, DNS names, registrations, the health loop,
// /admin membership changes and per-worker metric bindings.
#include "gateway/internal/gateway_impl.h"

namespace infermesh::gateway {

using namespace internal;  // NOLINT: this file implements the internals

// ---- membership and worker info ---------------------------------------------------
void GatewayService::Impl::RefreshWorkers() {
  membership->CheckNow();
  std::vector<WorkerView> views = membership->Snapshot();
  std::vector<std::pair<std::string, http::Endpoint>> need_info;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& v : views) {
      auto it = workers.find(v.id);
      if (it == workers.end()) continue;
      if (it->second.ready != v.ready) {
        log::Info(v.ready ? "routing to worker" : "not routing to worker", {{"worker", v.id}});
      }
      it->second.ready = v.ready;
      if (v.ready && !it->second.info_ok) need_info.emplace_back(v.id, v.endpoint);
      if (!v.ready) it->second.info_ok = false;  // re-read after it comes back
    }
  }
  for (const auto& [id, ep] : need_info) ReadInfo(id, ep);
  bool any = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [id, w] : workers) any = any || (w.ready && w.info_ok);
  }
  ready = any && !shutting_down.load();
}

void GatewayService::Impl::ReadInfo(const std::string& id, const http::Endpoint& ep) {
  http::ClientRequest req;
  req.target = "/info";
  req.deadline = Clock::now() + options.health.timeout;
  auto r = health_client->SendSync(ep, req);
  if (!r.ok() || r->status != 200) return;
  boost::system::error_code ec;
  auto v = boost::json::parse(r->body, ec);
  if (ec || !v.is_object()) return;
  const auto& o = v.as_object();
  std::vector<front::TextModelInfo> models;
  std::vector<TensorModelInfo> tensors;
  std::vector<std::string> names;
  boost::json::array entries;
  if (auto* ms = o.if_contains("models"); ms && ms->is_array()) {
    entries = ms->as_array();
    for (const auto& m : ms->as_array()) {
      if (!m.is_object()) continue;
      const auto& mo = m.as_object();
      auto str = [&](const char* k) -> std::string {
        auto* x = mo.if_contains(k);
        return x && x->is_string() ? std::string(x->as_string()) : std::string();
      };
      if (!str("name").empty()) names.push_back(str("name"));
      auto* ready_v = mo.if_contains("ready");
      const bool is_ready = ready_v && ready_v->is_bool() && ready_v->as_bool();
      if (str("kind") == "tensor" && is_ready) {
        auto* fs = mo.if_contains("feature_size");
        TensorModelInfo t{str("name"), str("version"),
                          fs && fs->is_int64() ? fs->as_int64() : int64_t{0}};
        tensors.push_back(std::move(t));
        continue;
      }
      auto* dim = mo.if_contains("dim");
      if (str("kind") != "text" || !is_ready || !dim || !dim->is_int64()) continue;
      front::TextModelInfo info;
      info.name = str("name");
      info.version = str("version");
      info.dim = dim->as_int64();
      auto* norm = mo.if_contains("normalize");
      info.normalize_by_default = !norm || !norm->is_bool() || norm->as_bool();
      models.push_back(std::move(info));
    }
  }
  int64_t max_batch = 32;
  if (auto* b = o.if_contains("max_client_batch_size"); b && b->is_int64()) {
    max_batch = std::max<int64_t>(1, b->as_int64());
  } else if (b && b->is_uint64()) {
    max_batch = std::max<int64_t>(1, static_cast<int64_t>(b->as_uint64()));
  }
  std::lock_guard<std::mutex> lock(mu);
  auto it = workers.find(id);
  if (it == workers.end()) return;
  it->second.models = std::move(models);
  it->second.tensor_models = std::move(tensors);
  it->second.all_models = std::move(names);
  it->second.info_models = std::move(entries);
  it->second.max_batch = max_batch;
  it->second.info_ok = true;
}

void GatewayService::Impl::RefreshDns() {
  if (options.dns.empty() || Clock::now() < next_dns) return;
  next_dns = Clock::now() + options.dns_interval;
  std::set<std::string> want;
  std::vector<http::Endpoint> found;
  for (const auto& d : options.dns) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(d.name.c_str(), nullptr, &hints, &res);
    if (rc != 0) {
      log::Warn("DNS lookup failed", {{"name", d.name}, {"error", gai_strerror(rc)}});
      continue;  // keep what we have rather than drop every worker on a DNS hiccup
    }
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      char host[INET6_ADDRSTRLEN] = {0};
      const void* addr =
          a->ai_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
              : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
      if (!inet_ntop(a->ai_family, addr, host, sizeof host)) continue;
      http::Endpoint ep{host, d.port};
      if (want.insert(ep.ToString()).second) found.push_back(ep);
    }
    freeaddrinfo(res);
  }
  std::vector<std::string> left;
  ChangeMembers([&] {
    bool changed = false;
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->second.source == WorkerState::Source::kDns && !want.count(it->first)) {
        log::Info("worker left DNS", {{"worker", it->first}});
        left.push_back(it->first);
        it = workers.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    for (const auto& ep : found) {
      if (workers.count(ep.ToString())) continue;
      WorkerState w;
      w.id = ep.ToString();
      w.endpoint = ep;
      w.breaker = std::make_shared<CircuitBreaker>(options.breaker);
      w.source = WorkerState::Source::kDns;
      log::Info("worker found in DNS", {{"worker", w.id}});
      workers.emplace(w.id, std::move(w));
      changed = true;
    }
    return changed;
  });
  for (const auto& id : left) outlier.Remove(id);
}

void GatewayService::Impl::ExpireRegistrations() {
  const auto now = Clock::now();
  std::vector<std::string> gone;
  ChangeMembers([&] {
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->second.source == WorkerState::Source::kRegistered &&
          now - it->second.last_heartbeat > options.registration_ttl) {
        gone.push_back(it->first);
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    return !gone.empty();
  });
  for (const auto& id : gone) {
    outlier.Remove(id);
    log::Warn("registered worker missed its heartbeats", {{"worker", id}});
  }
}

void GatewayService::Impl::HealthLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(health_mu);
      if (health_cv.wait_for(lock, options.health.interval, [this] { return stopping; })) return;
    }
    try {
      RefreshDns();
      ExpireRegistrations();
      RefreshWorkers();
      health_rounds.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception& e) {
      log::Error("gateway health round failed", {{"error", e.what()}});
    }
  }
}

// ---- membership changes (/admin) and auth ------------------------------------------
std::vector<http::Endpoint> GatewayService::Impl::RebuildRingLocked() {
  std::vector<http::Endpoint> eps;
  std::vector<std::string> ids;
  for (const auto& [id, w] : workers) {
    ids.push_back(id);
    eps.push_back(w.endpoint);
  }
  ring.SetMembers(ids);
  return eps;
}

bool GatewayService::Impl::ChangeMembers(const std::function<bool()>& change) {
  std::lock_guard<std::mutex> serial(members_mu);
  std::vector<http::Endpoint> eps;
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!change()) return false;
    eps = RebuildRingLocked();
    for (const auto& [id, w] : workers) ids.push_back(id);
  }
  membership->SetWorkers(eps);
  SyncWorkerMetrics(ids);
  return true;
}

void GatewayService::Impl::SyncWorkerMetrics(const std::vector<std::string>& ids) {
  auto& reg = metrics::Registry::Global();
  auto& open =
      reg.CallbackGauge("infermesh_gateway_breaker_open",
                        "1 while the worker's circuit breaker is open or half-open", {"worker"});
  auto& state =
      reg.CallbackGauge("infermesh_gateway_breaker_state",
                        "The worker's circuit breaker: 0 closed, 1 open, 2 half-open", {"worker"});
  auto& ready_g = reg.CallbackGauge("infermesh_gateway_worker_ready",
                                    "1 while the gateway routes to the worker", {"worker"});
  auto& ejected = reg.CallbackGauge("infermesh_gateway_worker_ejected",
                                    "1 while outlier detection ejects the worker", {"worker"});
  auto& load = reg.CallbackGauge("infermesh_gateway_worker_outstanding_tokens",
                                 "Estimated tokens in flight at the worker", {"worker"});
  std::set<std::string> want(ids.begin(), ids.end());
  for (auto it = worker_bindings.begin(); it != worker_bindings.end();) {
    it = want.count(it->first) ? std::next(it) : worker_bindings.erase(it);
  }
  for (const auto& id : ids) {
    if (worker_bindings.count(id)) continue;
    auto read = [this, id](auto pick) {
      return [this, id, pick]() -> double {
        const auto now = Clock::now();
        std::lock_guard<std::mutex> lock(mu);
        auto it = workers.find(id);
        return it == workers.end() ? 0.0 : pick(it->second, now);
      };
    };
    std::vector<metrics::CallbackBinding> b;
    b.push_back(open.Bind({id}, read([](const WorkerState& w, Clock::time_point now) {
                            return w.breaker->snapshot(now).state == BreakerState::kClosed ? 0.0
                                                                                           : 1.0;
                          })));
    b.push_back(state.Bind({id}, read([](const WorkerState& w, Clock::time_point now) {
                             const auto st = w.breaker->snapshot(now).state;
                             return st == BreakerState::kClosed ? 0.0
                                    : st == BreakerState::kOpen ? 1.0
                                                                : 2.0;
                           })));
    b.push_back(ready_g.Bind({id}, read([](const WorkerState& w, Clock::time_point) {
                               return w.ready && w.info_ok ? 1.0 : 0.0;
                             })));
    b.push_back(ejected.Bind({id}, read([this](const WorkerState& w, Clock::time_point now) {
                               return outlier.Ejected(w.id, now) ? 1.0 : 0.0;
                             })));
    b.push_back(load.Bind(
        {id}, read([](const WorkerState& w, Clock::time_point) { return w.outstanding; })));
    worker_bindings.emplace(id, std::move(b));
  }
}

Status GatewayService::Impl::AddWorker(const http::Endpoint& ep, WorkerState::Source source) {
  const std::string id = ep.ToString();
  Status result;
  const bool added = ChangeMembers([&] {
    auto it = workers.find(id);
    if (it != workers.end()) {
      if (source == WorkerState::Source::kRegistered) {
        it->second.last_heartbeat = Clock::now();  // a heartbeat
      } else {
        result = Status(StatusCode::kAlreadyExists, id + " is a member");
      }
      return false;
    }
    WorkerState w;
    w.id = id;
    w.endpoint = ep;
    w.breaker = std::make_shared<CircuitBreaker>(options.breaker);
    w.source = source;
    w.last_heartbeat = Clock::now();
    workers.emplace(id, std::move(w));
    return true;
  });
  if (added) log::Info("worker added", {{"worker", id}});
  return result;
}

Status GatewayService::Impl::RemoveWorker(const std::string& id, bool only_registered) {
  Status result;
  ChangeMembers([&] {
    auto it = workers.find(id);
    if (it == workers.end()) {
      result = NotFound("no worker " + id);
      return false;
    }
    if (only_registered && it->second.source != WorkerState::Source::kRegistered) return false;
    workers.erase(it);
    return true;
  });
  if (result.ok()) {
    outlier.Remove(id);
    log::Info("worker removed", {{"worker", id}});
  }
  return result;
}

Status GatewayService::Impl::Drain(const std::string& id, bool drained) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = workers.find(id);
  if (it == workers.end()) return NotFound("no worker " + id);
  it->second.drained = drained;
  log::Info(drained ? "worker drained" : "worker resumed", {{"worker", id}});
  return OkStatus();
}

}  // namespace infermesh::gateway
