// HTTP/1.1 client (Boost.Beast over Boost.Asio) with pooled keep-alive connections and
// deadlines: the one client beside the one server (server.h). The gateway talks to its
// workers through it; tools and tests use SendSync.
//
//   auto client = HttpClient::Create({});
//   ClientRequest req;
//   req.method = "POST";
//   req.target = "/embed";
//   req.body = R"({"inputs":["hello"]})";
//   req.content_type = "application/json";
//   req.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
//   client->Send(Endpoint{"127.0.0.1", 8080}, std::move(req),
//                [](Result<ClientResponse> r) { ... });   // on a client I/O thread
//
// Pooling: per endpoint at most max_connections_per_host connections; a request finds an
// idle one (most recently used first), opens a new one under the cap, or waits in a
// bounded per-endpoint queue (ResourceExhausted beyond it). After a complete response on a
// keep-alive connection the connection serves the next waiting request or goes idle; idle
// connections older than idle_timeout are closed instead of reused.
//
// Deadlines: every request has one (ClientRequest::deadline, else now + default_timeout)
// covering the wait for a connection, connect, write and read; connecting is further
// bounded by connect_timeout. A request queued behind busy connections fails at its own
// deadline, not when a connection frees up.
//
// A pooled connection the server closed while it sat idle fails its next request before
// any response byte arrives. Such a request (retry_stale, the default) is sent once more
// on a new connection, and the endpoint's other idle connections are closed with it;
// requests that may not be repeated set retry_stale = false.
//
// Errors (Status codes): Unavailable (connect failed, connection closed or reset before
// a complete response), DeadlineExceeded, DataLoss (malformed response),
// ResourceExhausted (response larger than max_response_bytes, or the endpoint's queue is
// full), Cancelled (the client shut down), InvalidArgument (a bad request).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace infermesh::http {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  // "host:port", or "[v6address]:port".
  std::string ToString() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
  bool operator==(const Endpoint&) const = default;
};

// "host:port", "http://host:port" or "[::1]:port" (a trailing '/' is allowed).
[[nodiscard]] Result<Endpoint> ParseEndpoint(std::string_view text);

struct ClientOptions {
  int io_threads = 1;
  size_t max_connections_per_host = 32;
  size_t max_pending_per_host = 4096;  // requests waiting for a connection
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds default_timeout{30000};  // for requests without a deadline
  std::chrono::milliseconds idle_timeout{30000};     // below the servers' keep-alive idle
  size_t max_response_bytes = 64 << 20;
  std::string user_agent = "infermesh";
};

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";  // path and query
  std::string body;
  std::string content_type;  // empty: no Content-Type
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  bool retry_stale = true;  // see the header comment
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  std::string_view Header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers) {
      if (name == lower_name) return value;
    }
    return {};
  }
};

namespace internal {
struct ClientCore;
}

class HttpClient {
 public:
  using Callback = std::function<void(Result<ClientResponse>)>;

  [[nodiscard]] static std::unique_ptr<HttpClient> Create(ClientOptions options);
  ~HttpClient();  // Shutdown()
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Calls `done` exactly once, on a client I/O thread (never inline), with the response
  // (any status) or the error. Keep `done` short: it runs on the event loop. After
  // Shutdown() it completes inline with Cancelled.
  void Send(const Endpoint& endpoint, ClientRequest request, Callback done);

  // Blocks until the response. Not from a client I/O thread (FailedPrecondition there).
  [[nodiscard]] Result<ClientResponse> SendSync(const Endpoint& endpoint, ClientRequest request);

  struct Stats {
    uint64_t requests = 0;
    uint64_t connects = 0;          // connections opened
    uint64_t reused = 0;            // requests sent on a pooled connection
    uint64_t connect_failures = 0;  // connects that failed or timed out
    uint64_t timeouts = 0;          // requests that ran past their deadline
    uint64_t stale_retries = 0;     // requests sent again after a stale pooled connection
    uint64_t queue_full = 0;        // requests refused: the endpoint's queue was full
    size_t open = 0;                // connections open (busy, idle or connecting)
    size_t idle = 0;
    size_t waiting = 0;  // requests queued for a connection
  };
  Stats stats() const;

  // Fails queued requests with Cancelled, closes every connection (requests in flight
  // complete with Cancelled) and joins the I/O threads. Idempotent; Send() afterwards
  // completes with Cancelled.
  void Shutdown();

 private:
  explicit HttpClient(std::shared_ptr<internal::ClientCore> core);
  std::shared_ptr<internal::ClientCore> core_;
};

}  // namespace infermesh::http
