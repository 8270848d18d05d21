// HttpClient against the real HttpServer on port 0, and against a raw socket server
// that misbehaves on purpose (closes kept-alive connections, sends garbage, stops
// mid-response, stalls).
#include "http/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "http/server.h"

namespace infermesh::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Served {
  std::unique_ptr<HttpServer> server;
  Endpoint endpoint;
};

// /ping answers at once; /echo returns the body and a header; /slow/{ms} answers after
// that many milliseconds (from another thread, holding the Responder).
Served StartServer() {
  auto router = std::make_shared<Router>();
  router->Add("GET", "/ping", [](Request&, Responder r) {
    Response resp;
    resp.body = "pong";
    r.Send(std::move(resp));
  });
  router->Add("POST", "/echo", [](Request& req, Responder r) {
    Response resp;
    resp.status = 201;
    resp.body = req.body;
    resp.content_type = std::string(req.Header("content-type"));
    resp.headers.emplace_back("x-seen", std::string(req.Header("x-test")));
    r.Send(std::move(resp));
  });
  router->Add("GET", "/slow/{ms}", [](Request& req, Responder r) {
    const int ms = std::stoi(req.path_params["ms"]);
    std::thread([ms, r = std::move(r)]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      Response resp;
      resp.body = "late";
      r.Send(std::move(resp));
    }).detach();
  });
  ServerOptions o;
  o.io_threads = 2;
  auto s = HttpServer::Start(o, router);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  Served out;
  out.endpoint = {"127.0.0.1", (*s)->port()};
  out.server = std::move(s).value();
  return out;
}

ClientRequest Get(std::string target) {
  ClientRequest r;
  r.target = std::move(target);
  return r;
}

TEST(ParseEndpoint, AcceptsHostPortForms) {
  auto a = ParseEndpoint("127.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto b = ParseEndpoint("http://worker-1:9000/");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "worker-1");
  EXPECT_EQ(b->port, 9000);
  auto c = ParseEndpoint("[::1]:80");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "::1");
  for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:65536", "host:8x",
                          "https://h:1", "a:b:c", "[::1]80", "h st:1"}) {
    EXPECT_FALSE(ParseEndpoint(bad).ok()) << bad;
  }
}

TEST(HttpClient, KeepAliveReusesOneConnection) {
  Served s = StartServer();
  auto client = HttpClient::Create({});
  for (int i = 0; i < 20; ++i) {
    auto r = client->SendSync(s.endpoint, Get("/ping"));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "pong");
  }
  const auto st = client->stats();
  EXPECT_EQ(st.connects, 1u);
  EXPECT_EQ(st.reused, 19u);
  EXPECT_EQ(st.idle, 1u);
}

TEST(HttpClient, PostCarriesBodyHeadersAndStatus) {
  Served s = StartServer();
  auto client = HttpClient::Create({});
  ClientRequest req;
  req.method = "POST";
  req.target = "/echo";
  req.body = std::string(100000, 'x') + "end";
  req.content_type = "application/x-test";
  req.headers = {{"x-test", "yes"}, {"x-bad", "a\r\nInjected: 1"}};
  auto r = client->SendSync(s.endpoint, req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, req.body);
  EXPECT_EQ(r->Header("content-type"), "application/x-test");
  EXPECT_EQ(r->Header("x-seen"), "yes");
  EXPECT_EQ(r->Header("injected"), "");
}

TEST(HttpClient, ConnectionsPerHostAreCappedAndRequestsWait) {
  Served s = StartServer();
  ClientOptions o;
  o.max_connections_per_host = 2;
  auto client = HttpClient::Create(o);
  std::atomic<int> ok{0};
  std::atomic<int> done{0};
  for (int i = 0; i < 8; ++i) {
    client->Send(s.endpoint, Get("/slow/50"), [&](Result<ClientResponse> r) {
      if (r.ok() && r->body == "late") ++ok;
      ++done;
    });
  }
  EXPECT_LE(client->stats().open, 2u);
  const auto until = Clock::now() + 10s;
  while (done.load() < 8 && Clock::now() < until) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(ok.load(), 8);
  const auto st = client->stats();
  EXPECT_EQ(st.connects, 2u);
  EXPECT_EQ(st.waiting, 0u);
}

TEST(HttpClient, FullQueueFailsFastWithResourceExhausted) {
  Served s = StartServer();
  ClientOptions o;
  o.max_connections_per_host = 1;
  o.max_pending_per_host = 2;
  auto client = HttpClient::Create(o);
  std::atomic<int> exhausted{0}, ok{0}, done{0};
  for (int i = 0; i < 6; ++i) {
    client->Send(s.endpoint, Get("/slow/100"), [&](Result<ClientResponse> r) {
      if (r.ok()) ++ok;
      if (!r.ok() && r.status().code() == StatusCode::kResourceExhausted) ++exhausted;
      ++done;
    });
  }
  const auto until = Clock::now() + 10s;
  while (done.load() < 6 && Clock::now() < until) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(ok.load(), 3);  // one on the connection, two queued
  EXPECT_EQ(exhausted.load(), 3);
  EXPECT_EQ(client->stats().queue_full, 3u);
}

TEST(HttpClient, DeadlineEndsASlowRequest) {
  Served s = StartServer();
  auto client = HttpClient::Create({});
  ClientRequest req = Get("/slow/2000");
  req.deadline = Clock::now() + 150ms;
  const auto start = Clock::now();
  auto r = client->SendSync(s.endpoint, req);
  const auto took = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_LT(took, 1500ms);
  EXPECT_EQ(client->stats().timeouts, 1u);
  // The connection that timed out is not reused; the next request still works.
  auto again = client->SendSync(s.endpoint, Get("/ping"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->body, "pong");
}

TEST(HttpClient, QueuedRequestFailsAtItsOwnDeadline) {
  // The only connection is held by a slow request with a long deadline; a request queued
  // behind it with a short one must fail at its own deadline, not when the connection
  // frees up (a gateway's health check queued behind requests hung on a partitioned
  // worker would otherwise hold the whole health round).
  Served s = StartServer();
  ClientOptions o;
  o.max_connections_per_host = 1;
  auto client = HttpClient::Create(o);
  ClientRequest slow = Get("/slow/1500");
  slow.deadline = Clock::now() + 5s;
  std::promise<Result<ClientResponse>> first;
  client->Send(s.endpoint, slow, [&](Result<ClientResponse> r) { first.set_value(std::move(r)); });
  std::this_thread::sleep_for(50ms);  // the slow one holds the connection
  ClientRequest quick = Get("/ping");
  quick.deadline = Clock::now() + 200ms;
  const auto start = Clock::now();
  auto r = client->SendSync(s.endpoint, quick);
  const auto took = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 1000ms);
  EXPECT_EQ(client->stats().waiting, 0u);
  EXPECT_EQ(client->stats().timeouts, 1u);
  // The slow request is unaffected, and its connection is reused afterwards.
  auto slow_result = first.get_future().get();
  ASSERT_TRUE(slow_result.ok()) << slow_result.status().ToString();
  EXPECT_EQ(slow_result->body, "late");
  auto again = client->SendSync(s.endpoint, Get("/ping"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(client->stats().connects, 1u);
}

TEST(HttpClient, QueuedRequestsRacingTheirTimersCompleteOnce) {
  // Deadlines around the moments connections free up: a freed connection and the timer
  // race for each queued request, and exactly one of them completes it.
  Served s = StartServer();
  ClientOptions o;
  o.max_connections_per_host = 2;
  o.io_threads = 4;
  auto client = HttpClient::Create(o);
  constexpr int kRequests = 300;
  std::vector<std::atomic<int>> calls(kRequests);
  std::atomic<int> done{0}, ok{0}, expired{0};
  const auto start = Clock::now();
  for (int i = 0; i < kRequests; ++i) {
    ClientRequest req = Get("/slow/5");
    req.deadline = start + std::chrono::milliseconds(5 + (i * 7) % 400);
    client->Send(s.endpoint, req, [&, i](Result<ClientResponse> r) {
      if (r.ok()) ++ok;
      if (!r.ok() && r.status().code() == StatusCode::kDeadlineExceeded) ++expired;
      ++calls[i];
      ++done;
    });
  }
  const auto until = Clock::now() + 20s;
  while (done.load() < kRequests && Clock::now() < until) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(done.load(), kRequests);
  std::this_thread::sleep_for(50ms);  // a second completion would land by now
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(calls[i].load(), 1) << i;
  EXPECT_EQ(ok.load() + expired.load(), kRequests);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(expired.load(), 0);
  EXPECT_EQ(client->stats().waiting, 0u);
  EXPECT_LE(client->stats().open, 2u);
}

TEST(HttpClient, RefusedConnectionIsUnavailable) {
  // A port nobody listens on: bind one, close it.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const uint16_t port = ntohs(addr.sin_port);
  ::close(fd);
  auto client = HttpClient::Create({});
  auto r = client->SendSync({"127.0.0.1", port}, Get("/ping"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_EQ(client->stats().connect_failures, 1u);
  EXPECT_EQ(client->stats().open, 0u);
}

// A one-thread raw server: for each connection, reads requests (up to the blank line)
// and answers each with `reply(n)` for the n-th request overall; an empty reply closes.
class RawServer {
 public:
  explicit RawServer(std::function<std::string(int n)> reply) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] { Loop(); });
  }
  ~RawServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  Endpoint endpoint() const { return {"127.0.0.1", port_}; }
  int connections() const { return connections_.load(); }

 private:
  void Loop() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++connections_;
      std::string buf;
      char tmp[4096];
      bool open = true;
      while (open && !stop_) {
        while (buf.find("\r\n\r\n") == std::string::npos) {
          ssize_t n = ::recv(c, tmp, sizeof(tmp), 0);
          if (n <= 0) {
            open = false;
            break;
          }
          buf.append(tmp, static_cast<size_t>(n));
        }
        if (!open) break;
        buf.erase(0, buf.find("\r\n\r\n") + 4);  // the tests send no bodies
        const std::string out = reply_(requests_++);
        if (out.empty()) break;
        if (out == "STALL") {
          std::this_thread::sleep_for(1500ms);
          break;
        }
        ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
        if (out.find("X-Close-After: 1") != std::string::npos) break;
      }
      ::close(c);
    }
  }

  std::function<std::string(int)> reply_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  int requests_ = 0;
  std::thread thread_;
};

const char* kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

TEST(HttpClient, StalePooledConnectionIsRetriedOnANewOne) {
  // Each connection answers one request with keep-alive, then closes: as a server does
  // whose idle timeout ran out, or that restarted.
  RawServer raw([](int) { return std::string(kOk).insert(17, "X-Close-After: 1\r\n"); });
  auto client = HttpClient::Create({});
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(50ms);  // let the close reach the pooled socket
    auto r = client->SendSync(raw.endpoint(), Get("/x"));
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.status().ToString();
    EXPECT_EQ(r->body, "ok");
  }
  EXPECT_EQ(client->stats().stale_retries, 2u);
  EXPECT_EQ(raw.connections(), 3);

  // Not for a request that may not be repeated.
  std::this_thread::sleep_for(50ms);
  ClientRequest once = Get("/x");
  once.retry_stale = false;
  auto r = client->SendSync(raw.endpoint(), once);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
}

TEST(HttpClient, GarbageIsDataLossAndAHalfResponseIsUnavailable) {
  RawServer garbage([](int) { return std::string("SMTP ready\r\n\r\n"); });
  auto client = HttpClient::Create({});
  auto r = client->SendSync(garbage.endpoint(), Get("/x"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();

  RawServer half([](int) {
    return std::string("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Close-After: 1\r\n\r\nshort");
  });
  auto h = client->SendSync(half.endpoint(), Get("/x"));
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kUnavailable) << h.status().ToString();
}

TEST(HttpClient, OversizedResponseIsResourceExhausted) {
  RawServer big([](int) {
    return std::string("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n") + std::string(5000, 'b');
  });
  ClientOptions o;
  o.max_response_bytes = 1000;
  auto client = HttpClient::Create(o);
  auto r = client->SendSync(big.endpoint(), Get("/x"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
}

TEST(HttpClient, ShutdownCancelsWhatIsInFlightAndQueued) {
  RawServer stall([](int) { return std::string("STALL"); });
  ClientOptions o;
  o.max_connections_per_host = 1;
  auto client = HttpClient::Create(o);
  std::mutex mu;
  std::vector<StatusCode> codes;
  for (int i = 0; i < 3; ++i) {
    client->Send(stall.endpoint(), Get("/x"), [&](Result<ClientResponse> r) {
      std::lock_guard<std::mutex> lock(mu);
      codes.push_back(r.ok() ? StatusCode::kOk : r.status().code());
    });
  }
  std::this_thread::sleep_for(100ms);
  const auto start = Clock::now();
  client->Shutdown();
  EXPECT_LT(Clock::now() - start, 1000ms);
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(codes.size(), 3u);
    for (StatusCode c : codes) EXPECT_EQ(c, StatusCode::kCancelled);
  }
  auto after = client->SendSync(stall.endpoint(), Get("/x"));
  EXPECT_EQ(after.status().code(), StatusCode::kCancelled);
}

TEST(HttpClient, SendSyncFromACallbackIsRefused) {
  Served s = StartServer();
  auto client = HttpClient::Create({});
  std::promise<StatusCode> code;
  client->Send(s.endpoint, Get("/ping"), [&](Result<ClientResponse>) {
    code.set_value(client->SendSync(s.endpoint, Get("/ping")).status().code());
  });
  EXPECT_EQ(code.get_future().get(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace infermesh::http
