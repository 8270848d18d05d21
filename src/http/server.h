// HTTP/1.1 server (Boost.Beast parser, Boost.Asio sockets) for the worker and gateway.
//
//   auto router = std::make_shared<Router>();
//   router->Add("GET", "/health", [](Request&, Responder r) {
//     Response response;
//     response.body = "{}";
//     r.Send(std::move(response));
//   });
//   ServerOptions options;
//   options.port = 8000;
//   IM_ASSIGN_OR_RETURN(options.limits, ServerLimitsFromConfig(config));  // server.* keys
//   auto server = HttpServer::Start(options, router);
//   if (!server.ok()) return server.status();
//   ...
//   (*server)->Shutdown(std::chrono::seconds(10));
//
// Threading: `io_threads` event loops, each its own io_context on one thread; an accepted
// connection stays on one loop, so its state needs no locks and the loop is its strand.
// Handlers run on the connection's loop; Send() from elsewhere posts one task back.
// Per connection: one request at a time, in order (pipelined requests wait in the read
// buffer), keep-alive by default for HTTP/1.1, `Connection: close` and HTTP/1.0 honoured,
// chunked request bodies, `Expect: 100-continue`. Responses always carry Content-Length.
// Limits: body (413, from Content-Length before reading, or while reading chunks), header
// (431), and the ServerLimits below. Malformed requests get 400 and close.
//
// Slow clients: a connection costs a slot from accept to close, so every phase in which
// the client, not the server, is the one to act has a deadline (headers, body, keep-alive
// idle, response write); only a running handler has none. At max_connections the server
// sheds the connection that has waited longest for its client (idle keep-alive, or
// request headers not complete) to admit the new one; a connection whose headers are
// complete is never shed. Only when every slot holds such a request is the new one
// refused with 503. So a flood of half-sent requests cannot lock out a new client, /health
// included, for longer than it takes to accept it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"
#include "core/status.h"
#include "http/message.h"
#include "http/router.h"

namespace infermesh::http {

namespace internal {
struct ServerCore;
}

// What one slow or idle client may cost; the server.* configuration keys (defaults and
// meaning in docs/configuration.md). Timeouts are totals per phase, not per read, so a
// client that trickles one byte at a time cannot extend them.
struct ServerLimits {
  size_t max_connections = 1024;       // then shed a waiting connection, else 503
  size_t max_header_bytes = 16 << 10;  // 431 beyond (request line + fields)
  // From accept, or from a keep-alive request's first byte, until its headers are in.
  std::chrono::milliseconds header_timeout{10000};
  // From the end of the headers until the whole body is in.
  std::chrono::milliseconds body_timeout{60000};
  // Keep-alive: between a response and the next request's first byte. Also bounds the
  // writing of one response to a client that does not read it.
  std::chrono::milliseconds idle_timeout{60000};
  // Shutdown(): how long the listener stays open after Shutdown() begins, so that a load
  // balancer sees the owner's not-ready answers (503) rather than refused connections.
  // 0 here so that tests and tools stop at once; the server.shutdown_delay key's default
  // is 2s.
  std::chrono::milliseconds shutdown_delay{0};
};

// Reads the server.* keys and validates them.
[[nodiscard]] Result<ServerLimits> ServerLimitsFromConfig(const Config& config);

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 = ephemeral; see HttpServer::port()
  int io_threads = 1;
  size_t max_body_bytes = 2 << 20;  // 413 beyond
  ServerLimits limits;
  int listen_backlog = 1024;
  // When set, the server exports its connection counters there at scrape time
  // (infermesh_http_connections_open, _rejected_total, _shed_total{state} and
  // infermesh_http_connection_timeouts_total{phase}) until Shutdown(). With several
  // servers in one registry, the last one started is exported.
  metrics::Registry* metrics = nullptr;
  // Formats server-generated errors (400/404/405/413/431/500/503) to match the API's
  // error JSON. Default: {"error": message, "error_type": <reason>}.
  std::function<std::string(int status, std::string_view message)> error_body;
  // Called once per completed request (metrics, access logs), on the I/O thread, after
  // the response was written (status 499 when the client left before it could be).
  // `Request::route` is "" for 404/405 and for requests rejected before routing.
  std::function<void(const Request&, int status, std::chrono::nanoseconds duration)> on_complete;
};

class HttpServer {
 public:
  // Binds and listens (errors are returned, not thrown), then starts the I/O threads.
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> Start(
      ServerOptions options, std::shared_ptr<const Router> router);

  ~HttpServer();  // Shutdown(0) if not done
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const { return port_; }

  // Graceful, blocking the caller: first keeps accepting and serving for
  // limits.shutdown_delay (responses then carry Connection: close, so keep-alive clients
  // reconnect and their load balancer can pick another node; the owner turns its
  // readiness false before calling this). Then closes the listener, closes idle
  // keep-alive connections, lets in-flight requests finish for up to `grace`, force-closes
  // what is left (pending handlers see cancelled()) and joins the threads. Responders
  // still held afterwards may be used; their Send() is dropped. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

  size_t open_connections() const;
  size_t in_flight() const;             // requests handed to a handler whose Responder is not done
  uint64_t dropped_responders() const;  // Responders destroyed without Send (bugs)
  uint64_t handler_exceptions() const;  // handlers that threw (answered 500)

  // Counters of the protections, as exported to ServerOptions::metrics.
  struct Stats {
    uint64_t rejected = 0;     // 503 at max_connections: nothing could be shed
    uint64_t shed_idle = 0;    // keep-alive connections closed to admit a new one
    uint64_t shed_header = 0;  // connections without complete headers closed likewise
    uint64_t header_timeouts = 0;
    uint64_t body_timeouts = 0;
    uint64_t idle_timeouts = 0;
    uint64_t write_timeouts = 0;
  };
  Stats stats() const;

 private:
  explicit HttpServer(std::shared_ptr<internal::ServerCore> core);
  void Stop(std::chrono::milliseconds grace, std::chrono::milliseconds delay);
  void BindMetrics(metrics::Registry& registry);

  std::shared_ptr<internal::ServerCore> core_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  bool shut_down_ = false;
  std::vector<metrics::CallbackBinding> metric_bindings_;  // reset before core_ goes
};

// The default error body: {"error":"<message>","error_type":"<reason phrase>"}.
std::string DefaultErrorBody(int status, std::string_view message);

}  // namespace infermesh::http
