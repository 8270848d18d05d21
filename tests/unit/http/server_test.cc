// HttpServer over real sockets on port 0: a raw POSIX client (so that tests control
// every byte and every timeout), plus curl as an independent client.
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

namespace infermesh::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct ParsedResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class TestClient {
 public:
  explicit TestClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~TestClient() { Close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }

  bool Write(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response; nullopt on EOF, reset or timeout.
  std::optional<ParsedResponse> Read(std::chrono::milliseconds timeout = 5000ms) {
    namespace bh = boost::beast::http;
    bh::response_parser<bh::string_body> parser;
    parser.eager(true);
    parser.body_limit(64 << 20);
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (!buf_.empty()) {
        boost::beast::error_code ec;
        size_t n = parser.put(boost::asio::buffer(buf_), ec);
        buf_.erase(0, n);
        if (ec && ec != bh::error::need_more) return std::nullopt;
        if (parser.is_done()) {
          auto& msg = parser.get();
          // Skip interim 1xx responses.
          if (msg.result_int() / 100 == 1) return Read(timeout);
          ParsedResponse r;
          r.status = static_cast<int>(msg.result_int());
          for (const auto& f : msg) {
            std::string name(f.name_string());
            for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            r.headers[name] = std::string(f.value());
          }
          r.body = msg.body();
          return r;
        }
        if (!ec && n > 0) continue;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  // Reads raw bytes until `needle` appears (for 100 Continue).
  bool ReadUntil(std::string_view needle, std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = Clock::now() + timeout;
    while (buf_.find(needle) == std::string::npos) {
      if (!Fill(deadline)) return false;
    }
    buf_.erase(0, buf_.find(needle) + needle.size());
    return true;
  }

  // True if the server closes the connection (EOF or reset) within `timeout`.
  bool WaitClosed(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) return false;
      char tmp[4096];
      ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) return true;
    }
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool Fill(Clock::time_point deadline) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) return false;
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

std::string Get(std::string_view path, std::string_view extra = "") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) + "\r\n";
}

std::string Post(std::string_view path, std::string_view body, std::string_view extra = "") {
  return "POST " + std::string(path) +
         " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra) + "\r\n" + std::string(body);
}

std::shared_ptr<Router> EchoRouter() {
  auto router = std::make_shared<Router>();
  router->Add("GET", "/ping", [](Request&, Responder r) {
    Response resp;
    resp.content_type = "text/plain";
    resp.body = "pong";
    r.Send(std::move(resp));
  });
  router->Add("POST", "/echo/{name}", [](Request& req, Responder r) {
    Response resp;
    resp.body = req.body;
    resp.headers.emplace_back("x-name", req.path_params["name"]);
    resp.headers.emplace_back("x-query", req.query);
    resp.headers.emplace_back("x-route", req.route);
    resp.headers.emplace_back("x-agent", std::string(req.Header("user-agent")));
    r.Send(std::move(resp));
  });
  return router;
}

std::unique_ptr<HttpServer> StartServer(ServerOptions options, std::shared_ptr<Router> router) {
  auto server = HttpServer::Start(std::move(options), std::move(router));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return std::move(server).value();
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!cond()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

TEST(HttpServerTest, RoutesParamsHeadersAndErrors) {
  std::mutex mu;
  std::vector<std::pair<std::string, int>> completed;
  ServerOptions options;
  options.on_complete = [&](const Request& req, int status, std::chrono::nanoseconds d) {
    std::lock_guard<std::mutex> lock(mu);
    completed.emplace_back(req.route, status);
    EXPECT_GE(d.count(), 0);
  };
  auto server = StartServer(options, EchoRouter());
  ASSERT_NE(server->port(), 0);
  TestClient c(server->port());
  ASSERT_TRUE(c.connected());

  ASSERT_TRUE(c.Write(Post("/echo/bge%20x?a=1&b=2", "hello", "User-Agent: t/1\r\n")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->header("content-type"), "application/json");
  EXPECT_EQ(r->header("content-length"), "5");
  EXPECT_EQ(r->header("x-name"), "bge x");
  EXPECT_EQ(r->header("x-query"), "a=1&b=2");
  EXPECT_EQ(r->header("x-route"), "/echo/{name}");
  EXPECT_EQ(r->header("x-agent"), "t/1");
  EXPECT_FALSE(r->header("date").empty());

  ASSERT_TRUE(c.Write(Get("/missing")));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("\"error\""), std::string::npos);

  ASSERT_TRUE(c.Write(Post("/ping", "")));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("allow"), "GET");

  // The connection survived 404 and 405.
  ASSERT_TRUE(c.Write(Get("/ping")));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "pong");
  EXPECT_EQ(r->header("content-type"), "text/plain");

  // Absolute-form target.
  ASSERT_TRUE(c.Write("GET http://example.com/ping HTTP/1.1\r\nHost: example.com\r\n\r\n"));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "pong");

  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return completed.size() == 5;
      },
      2s));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(completed[0], (std::pair<std::string, int>{"/echo/{name}", 200}));
  EXPECT_EQ(completed[1], (std::pair<std::string, int>{"", 404}));
  EXPECT_EQ(completed[2], (std::pair<std::string, int>{"", 405}));
  EXPECT_EQ(completed[3], (std::pair<std::string, int>{"/ping", 200}));
}

TEST(HttpServerTest, CustomErrorBodyAndHeaderInjectionDropped) {
  ServerOptions options;
  options.error_body = [](int status, std::string_view message) {
    return "{\"code\":" + std::to_string(status) + ",\"msg\":\"" + std::string(message) + "\"}";
  };
  auto router = std::make_shared<Router>();
  router->Add("GET", "/inject", [](Request&, Responder r) {
    Response resp;
    resp.headers.emplace_back("x-ok", "1");
    resp.headers.emplace_back("x-bad", "a\r\nSet-Cookie: evil=1");
    resp.headers.emplace_back("Content-Length", "999");
    resp.body = "{}";
    r.Send(std::move(resp));
  });
  auto server = StartServer(options, router);
  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Get("/nothing")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "{\"code\":404,\"msg\":\"not found\"}");
  ASSERT_TRUE(c.Write(Get("/inject")));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->header("x-ok"), "1");
  EXPECT_EQ(r->header("x-bad"), "");
  EXPECT_EQ(r->header("set-cookie"), "");
  EXPECT_EQ(r->header("content-length"), "2");
}

TEST(HttpServerTest, KeepAliveAndPipelining) {
  auto router = EchoRouter();
  // /slow answers from another thread after a delay, so that a pipelined /ping behind it
  // must wait: responses stay in request order.
  router->Add("GET", "/slow", [](Request&, Responder r) {
    std::thread([r = std::move(r)]() mutable {
      std::this_thread::sleep_for(100ms);
      Response resp;
      resp.body = "slow";
      r.Send(std::move(resp));
    }).detach();
  });
  auto server = StartServer({}, router);
  TestClient c(server->port());
  for (int i = 0; i < 200; ++i) {
    std::string body = "req-" + std::to_string(i);
    ASSERT_TRUE(c.Write(Post("/echo/k", body)));
    auto r = c.Read();
    ASSERT_TRUE(r) << i;
    ASSERT_EQ(r->body, body);
    ASSERT_EQ(r->header("connection"), "");
  }
  EXPECT_EQ(server->open_connections(), 1u);

  ASSERT_TRUE(c.Write(Get("/slow") + Get("/ping") + Post("/echo/z", "last")));
  auto r1 = c.Read();
  auto r2 = c.Read();
  auto r3 = c.Read();
  ASSERT_TRUE(r1 && r2 && r3);
  EXPECT_EQ(r1->body, "slow");
  EXPECT_EQ(r2->body, "pong");
  EXPECT_EQ(r3->body, "last");
}

TEST(HttpServerTest, ConnectionCloseAndHttp10) {
  auto server = StartServer({}, EchoRouter());
  {
    TestClient c(server->port());
    ASSERT_TRUE(c.Write(Get("/ping", "Connection: close\r\n")));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->header("connection"), "close");
    EXPECT_TRUE(c.WaitClosed(2s));
  }
  {
    TestClient c(server->port());
    ASSERT_TRUE(c.Write("GET /ping HTTP/1.0\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "pong");
    EXPECT_TRUE(c.WaitClosed(2s));
  }
  {
    TestClient c(server->port());
    ASSERT_TRUE(c.Write("GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->header("connection"), "keep-alive");
    ASSERT_TRUE(c.Write("GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "pong");
  }
}

TEST(HttpServerTest, ChunkedBodyAndExpectContinue) {
  auto server = StartServer({}, EchoRouter());
  TestClient c(server->port());
  ASSERT_TRUE(
      c.Write("POST /echo/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n"));
  std::this_thread::sleep_for(20ms);  // the body arrives in pieces
  ASSERT_TRUE(c.Write("6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello world");

  ASSERT_TRUE(
      c.Write("POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
              "Expect: 100-continue\r\n\r\n"));
  ASSERT_TRUE(c.ReadUntil("HTTP/1.1 100 Continue\r\n\r\n"));
  ASSERT_TRUE(c.Write("data"));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "data");
}

TEST(HttpServerTest, BodyLimitByContentLengthAndChunked) {
  ServerOptions options;
  options.max_body_bytes = 1000;
  auto server = StartServer(options, EchoRouter());
  {
    TestClient c(server->port());
    ASSERT_TRUE(c.Write(Post("/echo/ok", std::string(1000, 'a'))));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    // Only the header: the 413 must come before the body is sent.
    ASSERT_TRUE(c.Write("POST /echo/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"));
    r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_EQ(r->header("connection"), "close");
    EXPECT_TRUE(c.WaitClosed(3s));
  }
  {
    TestClient c(server->port());
    std::string req = "POST /echo/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) req += "190\r\n" + std::string(400, 'b') + "\r\n";  // 1200 bytes
    req += "0\r\n\r\n";
    ASSERT_TRUE(c.Write(req));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_TRUE(c.WaitClosed(3s));
  }
  {
    // A huge declared length is rejected without allocating it.
    TestClient c(server->port());
    ASSERT_TRUE(c.Write("POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
  }
}

TEST(HttpServerTest, HeaderLimit431) {
  ServerOptions options;
  options.limits.max_header_bytes = 4096;
  auto server = StartServer(options, EchoRouter());
  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Get("/ping", "X-Big: " + std::string(5000, 'h') + "\r\n")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_TRUE(c.WaitClosed(3s));

  // A header that never ends is bounded too.
  TestClient c2(server->port());
  ASSERT_TRUE(c2.Write("GET /ping HTTP/1.1\r\nX-Endless: " + std::string(20000, 'z')));
  r = c2.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
}

TEST(HttpServerTest, MalformedRequests400) {
  auto server = StartServer({}, EchoRouter());
  const std::vector<std::string> bad = {
      "GARBAGE\r\n\r\n",
      "POST /echo/x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "POST /echo/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
      "GET ping HTTP/1.1\r\n\r\n",
      "POST /echo/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      std::string("GET /ping HTTP/1.1\r\nX: a\0b\r\n\r\n", 30),
  };
  for (const std::string& req : bad) {
    TestClient c(server->port());
    ASSERT_TRUE(c.Write(req));
    auto r = c.Read();
    ASSERT_TRUE(r) << req;
    EXPECT_EQ(r->status, 400) << req;
    EXPECT_TRUE(c.WaitClosed(3s)) << req;
  }
  // The server is still fine.
  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Get("/ping")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Each phase in which the server waits for the client has its own total deadline. The
// timeouts are small so the test is quick; it asserts only that each connection is closed
// and counted, never how fast.
TEST(HttpServerTest, HeaderTimeoutClosesStalledConnections) {
  ServerOptions options;
  options.limits.header_timeout = 200ms;  // idle and body keep their long defaults
  auto server = StartServer(options, EchoRouter());
  TestClient half(server->port());  // half a request, then nothing
  ASSERT_TRUE(half.Write("GET /ping HTTP/1.1\r\nHost: x\r\n"));
  TestClient silent(server->port());  // connects and says nothing
  EXPECT_TRUE(half.WaitClosed(5s));
  EXPECT_TRUE(silent.WaitClosed(5s));
  {
    // Slow loris: trickling header lines does not extend the deadline (it is a total).
    TestClient c(server->port());
    ASSERT_TRUE(c.Write("GET /ping HTTP/1.1\r\n"));
    bool closed = false;
    for (int i = 0; i < 200 && !closed; ++i) {
      std::this_thread::sleep_for(25ms);
      closed = !c.Write("X-A: b\r\n") || c.WaitClosed(1ms);
    }
    EXPECT_TRUE(closed || c.WaitClosed(5s));
  }
  EXPECT_TRUE(WaitFor([&] { return server->stats().header_timeouts == 3; }, 5s));
  EXPECT_TRUE(WaitFor([&] { return server->open_connections() == 0; }, 5s));
  // A prompt client is unaffected.
  TestClient ok(server->port());
  ASSERT_TRUE(ok.Write(Get("/ping")));
  auto r = ok.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServerTest, BodyAndIdleTimeouts) {
  ServerOptions options;
  options.limits.body_timeout = 200ms;
  options.limits.idle_timeout = 200ms;
  auto server = StartServer(options, EchoRouter());
  {
    // Headers complete, body short of its Content-Length.
    TestClient c(server->port());
    ASSERT_TRUE(c.Write("POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"));
    EXPECT_TRUE(c.WaitClosed(5s));
    EXPECT_TRUE(WaitFor([&] { return server->stats().body_timeouts == 1; }, 5s));
  }
  {
    // Keep-alive idle after a response.
    TestClient c(server->port());
    ASSERT_TRUE(c.Write(Get("/ping")));
    ASSERT_TRUE(c.Read());
    EXPECT_TRUE(c.WaitClosed(5s));
    EXPECT_TRUE(WaitFor([&] { return server->stats().idle_timeouts == 1; }, 5s));
  }
  EXPECT_EQ(server->stats().header_timeouts, 0u);
  EXPECT_TRUE(WaitFor([&] { return server->open_connections() == 0; }, 2s));
}

TEST(HttpServerTest, LimitsComeFromConfigAndAreValidated) {
  Config config = Config::WithDefaults();
  auto defaults = ServerLimitsFromConfig(config);
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->max_connections, 1024u);
  EXPECT_EQ(defaults->max_header_bytes, size_t{16} << 10);
  EXPECT_EQ(defaults->header_timeout, 10s);
  EXPECT_EQ(defaults->body_timeout, 60s);
  EXPECT_EQ(defaults->idle_timeout, 60s);
  EXPECT_EQ(defaults->shutdown_delay, 2s);

  ASSERT_TRUE(config.Set("server.max_connections", "64", "test").ok());
  ASSERT_TRUE(config.Set("server.header_timeout", "250ms", "test").ok());
  ASSERT_TRUE(config.Set("server.shutdown_delay", "0", "test").ok());
  auto set = ServerLimitsFromConfig(config);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->max_connections, 64u);
  EXPECT_EQ(set->header_timeout, 250ms);
  EXPECT_EQ(set->shutdown_delay, 0ms);

  for (auto [key, value] :
       {std::pair{"server.max_connections", "0"}, std::pair{"server.header_timeout", "0s"},
        std::pair{"server.idle_timeout", "0"}, std::pair{"server.max_header_bytes", "100"},
        std::pair{"server.body_timeout", "1.2.3s"}}) {
    Config bad = Config::WithDefaults();
    ASSERT_TRUE(bad.Set(key, value, "test").ok()) << key;
    auto r = ServerLimitsFromConfig(bad);
    ASSERT_FALSE(r.ok()) << key << "=" << value;
    EXPECT_NE(r.status().message().find(key), std::string::npos) << r.status().message();
  }
  ServerOptions invalid;
  invalid.limits.header_timeout = 0ms;
  EXPECT_FALSE(HttpServer::Start(invalid, EchoRouter()).ok());
}

TEST(HttpServerTest, SendFromAnotherThreadAfterDelay) {
  auto router = std::make_shared<Router>();
  std::vector<std::thread> threads;
  std::mutex mu;
  router->Add("POST", "/later", [&](Request& req, Responder r) {
    std::lock_guard<std::mutex> lock(mu);
    threads.emplace_back([body = std::move(req.body), r = std::move(r)]() mutable {
      std::this_thread::sleep_for(150ms);
      Response resp;
      resp.body = "later:" + body;
      r.Send(std::move(resp));
    });
  });
  ServerOptions options;
  options.limits.idle_timeout = 100ms;  // not applied while the handler works
  auto server = StartServer(options, router);
  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Post("/later", "x")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "later:x");
  EXPECT_EQ(server->in_flight(), 0u);
  std::lock_guard<std::mutex> lock(mu);
  for (auto& t : threads) t.join();
}

TEST(HttpServerTest, DisconnectSetsCancelled) {
  auto router = std::make_shared<Router>();
  std::mutex mu;
  std::optional<Responder> held;
  router->Add("GET", "/hold", [&](Request&, Responder r) {
    std::lock_guard<std::mutex> lock(mu);
    held.emplace(std::move(r));
  });
  std::atomic<int> statuses{0};
  ServerOptions options;
  options.on_complete = [&](const Request&, int status, std::chrono::nanoseconds) {
    statuses = status;
  };
  auto server = StartServer(options, router);
  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Get("/hold")));
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return held.has_value();
      },
      2s));
  std::shared_ptr<const std::atomic<bool>> flag;
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_FALSE(held->cancelled());
    flag = held->cancel_flag();
  }
  EXPECT_EQ(server->in_flight(), 1u);
  c.Close();
  EXPECT_TRUE(WaitFor([&] { return flag->load(); }, 1s));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(held->cancelled());
    Response resp;
    resp.body = "too late";
    held->Send(std::move(resp));  // harmless
    held.reset();
  }
  EXPECT_TRUE(WaitFor([&] { return server->in_flight() == 0; }, 1s));
  EXPECT_TRUE(WaitFor([&] { return statuses.load() == 499; }, 1s));
  EXPECT_EQ(server->dropped_responders(), 0u);
  EXPECT_TRUE(WaitFor([&] { return server->open_connections() == 0; }, 1s));
}

TEST(HttpServerTest, DroppedResponderAndThrowingHandlerAnswer500) {
  auto router = std::make_shared<Router>();
  router->Add("GET", "/drop", [](Request&, Responder) {});
  router->Add("GET", "/drop-later", [](Request&, Responder r) {
    std::thread([r = std::move(r)]() mutable {
      std::this_thread::sleep_for(50ms);
      Responder gone = std::move(r);
    }).detach();
  });
  router->Add("GET", "/throw", [](Request&, Responder) { throw std::runtime_error("boom"); });
  auto server = StartServer({}, router);
  TestClient c(server->port());
  for (const char* path : {"/drop", "/drop-later", "/throw"}) {
    ASSERT_TRUE(c.Write(Get(path)));
    auto r = c.Read();
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 500) << path;
  }
  EXPECT_EQ(server->dropped_responders(), 3u);
  // Counted after the handler unwound, which may be after the 500 reached us.
  EXPECT_TRUE(WaitFor([&] { return server->handler_exceptions() == 1u; }, 1s));
  // The connection is still usable.
  ASSERT_TRUE(c.Write(Get("/drop")));
  EXPECT_TRUE(c.Read());
}

TEST(HttpServerTest, GracefulShutdownWaitsForInFlightThenRefuses) {
  auto router = EchoRouter();
  std::vector<std::thread> threads;
  std::mutex mu;
  router->Add("GET", "/slow", [&](Request&, Responder r) {
    std::lock_guard<std::mutex> lock(mu);
    threads.emplace_back([r = std::move(r)]() mutable {
      std::this_thread::sleep_for(300ms);
      Response resp;
      resp.body = "done";
      r.Send(std::move(resp));
    });
  });
  auto server = StartServer({}, router);
  const uint16_t port = server->port();
  TestClient idle(port);  // an idle keep-alive connection is closed at once
  ASSERT_TRUE(idle.Write(Get("/ping")));
  ASSERT_TRUE(idle.Read());
  TestClient c(port);
  ASSERT_TRUE(c.Write(Get("/slow")));
  ASSERT_TRUE(WaitFor([&] { return server->in_flight() == 1; }, 2s));

  const auto start = Clock::now();
  std::thread stopper([&] { server->Shutdown(5s); });
  EXPECT_TRUE(idle.WaitClosed(1s));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "done");
  EXPECT_EQ(r->header("connection"), "close");
  stopper.join();
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 3s);
  EXPECT_TRUE(c.WaitClosed(1s));

  TestClient late(port);
  if (late.connected()) {
    late.Write(Get("/ping"));
    EXPECT_FALSE(late.Read(500ms));
  }
  std::lock_guard<std::mutex> lock(mu);
  for (auto& t : threads) t.join();
}

// Shutdown with a delay: the listener stays open first (the owner's health check would
// answer 503 there; here any response shows the server still accepts), its responses
// close their connections, then connects are refused, and a request admitted before
// Shutdown() still gets its answer.
TEST(HttpServerTest, ShutdownDelayServesThenRefusesAndFinishesInFlight) {
  auto router = EchoRouter();
  std::mutex mu;
  std::optional<Responder> held;
  router->Add("GET", "/hold", [&](Request&, Responder r) {
    std::lock_guard<std::mutex> lock(mu);
    held.emplace(std::move(r));
  });
  ServerOptions options;
  options.limits.shutdown_delay = 2s;
  auto server = StartServer(options, router);
  const uint16_t port = server->port();
  TestClient in_flight(port);
  ASSERT_TRUE(in_flight.Write(Get("/hold")));
  ASSERT_TRUE(WaitFor([&] { return server->in_flight() == 1; }, 2s));

  std::thread stopper([&] { server->Shutdown(30s); });
  // During the delay a new client is still served, and told to close.
  bool served_while_draining = false;
  bool refused = false;
  while (!served_while_draining && !refused) {
    TestClient c(port);
    if (!c.connected()) {
      refused = true;
      break;
    }
    ASSERT_TRUE(c.Write(Get("/ping")));
    auto r = c.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    served_while_draining = r->header("connection") == "close";
  }
  EXPECT_TRUE(served_while_draining);
  // Then the listener closes.
  EXPECT_TRUE(WaitFor([&] { return !TestClient(port).connected(); }, 10s));
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_TRUE(held.has_value());
    Response resp;
    resp.body = "finished";
    held->Send(std::move(resp));
  }
  auto r = in_flight.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "finished");
  EXPECT_EQ(r->header("connection"), "close");
  stopper.join();
}

TEST(HttpServerTest, ShutdownGraceExpiresAndResponderOutlivesServer) {
  auto router = std::make_shared<Router>();
  std::mutex mu;
  std::optional<Responder> held;
  router->Add("GET", "/hold", [&](Request&, Responder r) {
    std::lock_guard<std::mutex> lock(mu);
    held.emplace(std::move(r));
  });
  auto server = StartServer({}, router);
  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Get("/hold")));
  ASSERT_TRUE(WaitFor([&] { return server->in_flight() == 1; }, 2s));
  const auto start = Clock::now();
  server->Shutdown(100ms);
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_TRUE(c.WaitClosed(1s));
  server.reset();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(held->cancelled());
  Response resp;
  held->Send(std::move(resp));  // dropped, no crash
  held.reset();
}

// At max_connections a new client takes the slot of the connection that has waited
// longest for its client; a request already with its handler is never shed.
TEST(HttpServerTest, AtTheLimitTheLongestStalledConnectionIsShed) {
  ServerOptions options;
  options.limits.max_connections = 2;
  auto server = StartServer(options, EchoRouter());
  TestClient a(server->port());
  ASSERT_TRUE(a.Write("GET /ping HTTP/1.1\r\n"));
  ASSERT_TRUE(WaitFor([&] { return server->open_connections() == 1; }, 2s));
  TestClient b(server->port());
  ASSERT_TRUE(b.Write("GET /ping HTTP/1.1\r\n"));
  ASSERT_TRUE(WaitFor([&] { return server->open_connections() == 2; }, 2s));

  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Get("/ping")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(a.WaitClosed(5s));  // the oldest went
  ASSERT_TRUE(b.Write("Host: x\r\n\r\n"));
  r = b.Read();
  ASSERT_TRUE(r);  // the younger one was kept
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server->stats().shed_header, 1u);
  EXPECT_EQ(server->stats().shed_idle, 0u);
  EXPECT_EQ(server->stats().rejected, 0u);
}

TEST(HttpServerTest, AtTheLimitTheLongestIdleKeepAliveIsShed) {
  ServerOptions options;
  options.limits.max_connections = 2;
  auto server = StartServer(options, EchoRouter());
  TestClient a(server->port()), b(server->port());
  for (TestClient* c : {&a, &b}) {  // a goes idle first
    ASSERT_TRUE(c->Write(Get("/ping")));
    ASSERT_TRUE(c->Read());
  }
  TestClient c(server->port());
  ASSERT_TRUE(c.Write(Get("/ping")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(a.WaitClosed(5s));
  ASSERT_TRUE(b.Write(Get("/ping")));
  r = b.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server->stats().shed_idle, 1u);
}

TEST(HttpServerTest, InFlightRequestsAreNeverShed) {
  auto router = EchoRouter();
  std::mutex mu;
  std::vector<Responder> held;
  router->Add("GET", "/hold", [&](Request&, Responder r) {
    std::lock_guard<std::mutex> lock(mu);
    held.push_back(std::move(r));
  });
  ServerOptions options;
  options.limits.max_connections = 2;
  auto server = StartServer(options, router);
  // The oldest connection is busy, the younger one stalled: the stalled one goes.
  TestClient busy(server->port());
  ASSERT_TRUE(busy.Write(Get("/hold")));
  ASSERT_TRUE(WaitFor([&] { return server->in_flight() == 1; }, 2s));
  TestClient stalled(server->port());
  ASSERT_TRUE(stalled.Write("GET /ping HTTP/1.1\r\n"));
  ASSERT_TRUE(WaitFor([&] { return server->open_connections() == 2; }, 2s));
  TestClient busy2(server->port());
  ASSERT_TRUE(busy2.Write(Get("/hold")));
  ASSERT_TRUE(WaitFor([&] { return server->in_flight() == 2; }, 5s));
  EXPECT_TRUE(stalled.WaitClosed(5s));

  // Every slot holds a request with its handler: the new client is refused.
  TestClient refused(server->port());
  refused.Write(Get("/ping"));
  auto r = refused.Read(5s);
  if (r) {  // best effort: the close may win the race
    EXPECT_EQ(r->status, 503);
  }
  EXPECT_TRUE(refused.WaitClosed(5s));
  EXPECT_EQ(server->stats().rejected, 1u);
  EXPECT_EQ(server->stats().shed_header, 1u);

  {
    std::lock_guard<std::mutex> lock(mu);
    for (Responder& h : held) {
      Response resp;
      resp.body = "kept";
      h.Send(std::move(resp));
    }
  }
  for (TestClient* c : {&busy, &busy2}) {
    r = c->Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "kept");
  }
}

TEST(HttpServerTest, ManyConcurrentClients) {
  ServerOptions options;
  options.io_threads = 2;
  auto server = StartServer(options, EchoRouter());
  constexpr int kThreads = 50;
  constexpr int kRequests = 100;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      TestClient c(server->port());
      for (int i = 0; i < kRequests; ++i) {
        std::string body = std::to_string(t) + ":" + std::to_string(i);
        if (!c.Write(Post("/echo/m", body))) return;
        auto r = c.Read(10s);
        if (!r || r->status != 200 || r->body != body) return;
        ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kRequests);
}

std::string RunCommand(const std::string& cmd) {
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

TEST(HttpServerTest, CurlClient) {
  if (RunCommand("command -v curl").empty()) GTEST_SKIP() << "curl not installed";
  auto server = StartServer({}, EchoRouter());
  const std::string base = "http://127.0.0.1:" + std::to_string(server->port());
  // Two requests on one keep-alive connection, then a chunked upload, then a large body
  // (curl sends Expect: 100-continue above 1 MiB).
  std::string out = RunCommand("curl -s --max-time 10 " + base + "/ping " + base + "/ping");
  EXPECT_EQ(out, "pongpong");
  out = RunCommand(
      "printf 'chunky' | curl -s --max-time 10 -H 'Transfer-Encoding: chunked' "
      "--data-binary @- " +
      base + "/echo/c");
  EXPECT_EQ(out, "chunky");
  out = RunCommand(
      "head -c 1100000 /dev/zero | tr '\\0' 'q' | curl -s --max-time 10 "
      "-H 'Content-Type: application/octet-stream' --data-binary @- " +
      base + "/echo/big | wc -c");
  EXPECT_EQ(std::stoi(out), 1100000);
  out = RunCommand("curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE " + base +
                   "/ping");
  EXPECT_EQ(out, "405");
}

TEST(HttpServerTest, StartFailsCleanly) {
  ServerOptions bad_host;
  bad_host.host = "not an address";
  auto bad = HttpServer::Start(bad_host, std::make_shared<Router>());
  EXPECT_FALSE(bad.ok());
  auto first = StartServer({}, EchoRouter());
  ServerOptions taken;
  taken.port = first->port();
  auto second = HttpServer::Start(taken, EchoRouter());
  EXPECT_FALSE(second.ok());
}

}  // namespace
}  // namespace infermesh::http
