// Active health checks against real HttpServers on ephemeral ports.
#include "gateway/membership.h"

#include <algorithm>
#include <atomic>

#include <gtest/gtest.h>

#include "http/server.h"

namespace infermesh::gateway {
namespace {

using namespace std::chrono_literals;

struct Worker {
  std::atomic<int> status{200};
  std::unique_ptr<http::HttpServer> server;
  http::Endpoint endpoint;

  Worker() {
    auto router = std::make_shared<http::Router>();
    router->Add("GET", "/health", [this](http::Request&, http::Responder r) {
      http::Response resp;
      resp.status = status.load();
      resp.body = "{}";
      r.Send(std::move(resp));
    });
    auto s = http::HttpServer::Start({}, router);
    EXPECT_TRUE(s.ok());
    server = std::move(s).value();
    endpoint = {"127.0.0.1", server->port()};
  }
};

http::Endpoint DeadEndpoint() {
  Worker w;
  http::Endpoint ep = w.endpoint;
  w.server->Shutdown(0ms);
  return ep;
}

TEST(Membership, ReadyAfterAPassNotReadyAfterTwoFailures) {
  Worker a, b;
  const http::Endpoint dead = DeadEndpoint();
  auto client = http::HttpClient::Create({});
  MembershipOptions o;
  o.timeout = 500ms;
  Membership m(client.get(), o);
  std::atomic<int> changes{0};
  m.OnChange([&] { ++changes; });
  m.SetWorkers({a.endpoint, b.endpoint, dead});
  EXPECT_TRUE(m.ReadyIds().empty()) << "no traffic before a check passes";
  m.CheckNow();
  std::vector<std::string> both = {a.endpoint.ToString(), b.endpoint.ToString()};
  std::sort(both.begin(), both.end());  // ReadyIds() is sorted
  EXPECT_EQ(m.ReadyIds(), both);
  EXPECT_EQ(changes.load(), 2);
  for (const auto& w : m.Snapshot()) {
    if (w.id == dead.ToString()) {
      EXPECT_FALSE(w.ready);
      EXPECT_NE(w.last_error.find("UNAVAILABLE"), std::string::npos) << w.last_error;
    }
  }

  b.status = 503;  // draining or loading
  m.CheckNow();
  EXPECT_EQ(m.ReadyIds().size(), 2u) << "one failed check is not enough";
  m.CheckNow();
  EXPECT_EQ(m.ReadyIds(), (std::vector<std::string>{a.endpoint.ToString()}));
  b.status = 200;
  m.CheckNow();
  EXPECT_EQ(m.ReadyIds().size(), 2u);

  // Removing a ready worker is a change; the remaining one keeps its state.
  const int before = changes.load();
  m.SetWorkers({a.endpoint});
  EXPECT_EQ(m.ReadyIds(), (std::vector<std::string>{a.endpoint.ToString()}));
  EXPECT_EQ(changes.load(), before + 1);
}

TEST(Membership, BackgroundChecksFollowAWorker) {
  Worker a;
  auto client = http::HttpClient::Create({});
  MembershipOptions o;
  o.interval = 20ms;
  Membership m(client.get(), o);
  m.SetWorkers({a.endpoint});
  m.Start();
  auto wait_for = [&](size_t n) {
    for (int i = 0; i < 500 && m.ReadyIds().size() != n; ++i) std::this_thread::sleep_for(5ms);
    return m.ReadyIds().size() == n;
  };
  EXPECT_TRUE(wait_for(1));
  a.status = 503;
  EXPECT_TRUE(wait_for(0));
  m.Stop();
}

}  // namespace
}  // namespace infermesh::gateway
