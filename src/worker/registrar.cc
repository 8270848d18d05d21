#include "worker/registrar.h"

#include <boost/json.hpp>

#include "core/log.h"

namespace infermesh::worker {

GatewayRegistrar::GatewayRegistrar(http::Endpoint gateway, std::string advertise, std::string key,
                                   std::chrono::milliseconds interval)
    : gateway_(std::move(gateway)),
      advertise_(std::move(advertise)),
      key_(std::move(key)),
      interval_(interval),
      client_(http::HttpClient::Create({})) {}

GatewayRegistrar::~GatewayRegistrar() { Stop(false); }

bool GatewayRegistrar::Post(const std::string& path) {
  http::ClientRequest req;
  req.method = "POST";
  req.target = path;
  req.content_type = "application/json";
  // sent_unix_ms: the gateway measures clock skew against its own clock (`diagnose`).
  const int64_t sent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  req.body = boost::json::serialize(
      boost::json::object{{"address", advertise_}, {"sent_unix_ms", sent_ms}});
  req.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  if (!key_.empty()) req.headers.emplace_back("authorization", "Bearer " + key_);
  auto r = client_->SendSync(gateway_, std::move(req));
  if (r.ok() && r->status == 200) return true;
  static thread_local std::string last;
  const std::string why =
      r.ok() ? "status " + std::to_string(r->status) + ": " + r->body : r.status().ToString();
  if (path == "/admin/deregister" && !r.ok() && r.status().code() == StatusCode::kUnavailable) {
    // The gateway stopped first (as `infermesh up` stops it): nothing routes here anyway.
    log::Info("gateway gone; nothing to deregister", {{"gateway", gateway_.ToString()}});
    return false;
  }
  if (why != last) {  // once per distinct failure, not every heartbeat
    log::Warn("gateway registration failed",
              {{"gateway", gateway_.ToString()}, {"path", path}, {"error", why}});
    last = why;
  }
  return false;
}

void GatewayRegistrar::Start() {
  thread_ = std::thread([this] {
    bool registered = false;
    for (;;) {
      const bool ok = Post("/admin/register");
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (ok) ++ok_;
      }
      if (ok && !registered) {
        log::Info("registered with the gateway",
                  {{"gateway", gateway_.ToString()}, {"address", advertise_}});
      }
      registered = ok;
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, interval_, [this] { return stopping_; })) return;
    }
  });
}

void GatewayRegistrar::Stop(bool deregister) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (deregister && Post("/admin/deregister")) {
    log::Info("deregistered from the gateway", {{"gateway", gateway_.ToString()}});
  }
  client_->Shutdown();
}

uint64_t GatewayRegistrar::heartbeats_ok() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ok_;
}

}  // namespace infermesh::worker
