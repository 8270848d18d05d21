// Registration with a gateway: `infermesh worker --gateway URL` posts its address to the
// gateway's POST /admin/register at once and every heartbeat interval, and posts
// /admin/deregister when it stops, so the gateway stops routing to it before it drains.
// A gateway that is down or refuses is retried every interval, logged once per outage.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "http/client.h"

namespace infermesh::worker {

class GatewayRegistrar {
 public:
  GatewayRegistrar(http::Endpoint gateway, std::string advertise, std::string key,
                   std::chrono::milliseconds interval);
  ~GatewayRegistrar();  // Stop(false)

  void Start();
  // Stops the heartbeats; with `deregister`, tells the gateway (waits up to 2 s).
  void Stop(bool deregister);

  uint64_t heartbeats_ok() const;

 private:
  bool Post(const std::string& path);

  http::Endpoint gateway_;
  std::string advertise_, key_;
  std::chrono::milliseconds interval_;
  std::unique_ptr<http::HttpClient> client_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t ok_ = 0;
};

}  // namespace infermesh::worker
