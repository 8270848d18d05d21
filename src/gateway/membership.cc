#include "gateway/membership.h"

#include <future>

#include "core/log.h"

namespace infermesh::gateway {

Membership::Membership(http::HttpClient* client, MembershipOptions options)
    : client_(client), options_(options) {}

Membership::~Membership() { Stop(); }

void Membership::SetWorkers(const std::vector<http::Endpoint>& workers) {
  bool changed = false;
  std::function<void()> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, WorkerView> next;
    for (const auto& ep : workers) {
      const std::string id = ep.ToString();
      auto it = workers_.find(id);
      if (it != workers_.end()) {
        next[id] = it->second;
      } else {
        WorkerView w;
        w.id = id;
        w.endpoint = ep;
        next[id] = w;
      }
    }
    for (const auto& [id, w] : workers_) changed = changed || (w.ready && !next.count(id));
    workers_ = std::move(next);
    cb = on_change_;
  }
  if (changed && cb) cb();
}

void Membership::OnChange(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(mu_);
  on_change_ = std::move(callback);
}

void Membership::Apply(const std::string& id, bool passed, const std::string& error) {
  bool changed = false;
  std::function<void()> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workers_.find(id);
    if (it == workers_.end()) return;  // removed meanwhile
    WorkerView& w = it->second;
    ++w.checks;
    if (passed) {
      w.consecutive_failures = 0;
      ++w.consecutive_passes;
      if (!w.ready && w.consecutive_passes >= options_.healthy_threshold) {
        w.ready = changed = true;
        log::Info("worker ready", {{"worker", id}});
      }
    } else {
      w.consecutive_passes = 0;
      ++w.consecutive_failures;
      w.last_error = error;
      if (w.ready && w.consecutive_failures >= options_.unhealthy_threshold) {
        w.ready = false;
        changed = true;
        log::Warn("worker not ready", {{"worker", id}, {"error", error}});
      }
    }
    cb = on_change_;
  }
  if (changed && cb) cb();
}

void Membership::CheckNow() {
  std::vector<WorkerView> targets = Snapshot();
  std::vector<std::future<void>> done;
  for (const auto& w : targets) {
    auto p = std::make_shared<std::promise<void>>();
    done.push_back(p->get_future());
    http::ClientRequest req;
    req.target = "/health";
    req.deadline = std::chrono::steady_clock::now() + options_.timeout;
    client_->Send(w.endpoint, std::move(req), [this, id = w.id, p](Result<http::ClientResponse> r) {
      if (!r.ok()) {
        Apply(id, false, r.status().ToString());
      } else if (r->status != 200) {
        Apply(id, false, "GET /health answered " + std::to_string(r->status));
      } else {
        Apply(id, true, "");
      }
      p->set_value();
    });
  }
  for (auto& f : done) f.wait();
}

void Membership::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] {
    for (;;) {
      try {
        CheckNow();
      } catch (const std::exception& e) {
        log::Error("health check round failed", {{"error", e.what()}});
      }
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, options_.interval, [this] { return stopping_; })) return;
    }
  });
}

void Membership::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<WorkerView> Membership::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<WorkerView> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

std::vector<std::string> Membership::ReadyIds() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [id, w] : workers_) {
    if (w.ready) out.push_back(id);
  }
  return out;
}

}  // namespace infermesh::gateway
