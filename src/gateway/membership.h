// The gateway's view of its workers: who they are and whether they may get traffic,
// from active health checks (GET /health through the one HttpClient).
//
//   Membership m(client, {});
//   m.SetWorkers({{"10.0.0.1", 8080}, {"10.0.0.2", 8080}});   // static list, DNS, registration
//   m.OnChange([&] { RebuildRing(m.ReadyIds()); });
//   m.Start();                                                  // checks every interval
//
// A worker starts not ready and gets traffic after healthy_threshold passed checks (200
// from /health within `timeout`); a ready one is taken out after unhealthy_threshold
// failed checks in a row (a non-200 such as the worker's 503 while it loads or drains, a
// refused connection, a timeout). Checks of all workers run in parallel, one round per
// interval. Ids are "host:port", the ring's member ids.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"

namespace infermesh::gateway {

struct MembershipOptions {
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{1000};
  int healthy_threshold = 1;
  int unhealthy_threshold = 2;
};

struct WorkerView {
  std::string id;
  http::Endpoint endpoint;
  bool ready = false;
  int consecutive_failures = 0;
  int consecutive_passes = 0;
  uint64_t checks = 0;
  std::string last_error;  // of the last failed check
};

class Membership {
 public:
  Membership(http::HttpClient* client, MembershipOptions options);
  ~Membership();  // Stop()
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // Replaces the worker list; known workers keep their state, new ones start not ready.
  void SetWorkers(const std::vector<http::Endpoint>& workers);
  // Called (on the checking thread) whenever the set of ready workers changes.
  void OnChange(std::function<void()> callback);

  void Start();
  void Stop();
  // One round of checks, waiting for all of them (tests, and the first round at start).
  void CheckNow();

  std::vector<WorkerView> Snapshot() const;
  std::vector<std::string> ReadyIds() const;  // sorted

 private:
  void Apply(const std::string& id, bool passed, const std::string& error);

  http::HttpClient* client_;
  MembershipOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, WorkerView> workers_;
  std::function<void()> on_change_;
  std::thread thread_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

}  // namespace infermesh::gateway
