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
// (431), idle/slow-read timeout, connection count. Malformed requests get 400 and close.
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

#include "core/status.h"
#include "http/message.h"
#include "http/router.h"

namespace infermesh::http {

namespace internal {
struct ServerCore;
}

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 = ephemeral; see HttpServer::port()
  int io_threads = 1;
  size_t max_body_bytes = 2 << 20;     // 413 beyond
  size_t max_header_bytes = 16 << 10;  // 431 beyond (request line + fields)
  // Keep-alive idle time, and the time allowed to read one request once its first byte
  // arrived (slow-loris bound) or to write one response. Not applied while a handler runs.
  std::chrono::milliseconds idle_timeout{60000};
  size_t max_connections = 1024;  // beyond: a best-effort 503 and close
  int listen_backlog = 1024;
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

  // Graceful: closes the listener, closes idle keep-alive connections, lets in-flight
  // requests finish for up to `grace` (their responses carry Connection: close), then
  // force-closes what is left (pending handlers see cancelled()) and joins the threads.
  // Responders still held afterwards may be used; their Send() is dropped. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

  size_t open_connections() const;
  size_t in_flight() const;             // requests handed to a handler whose Responder is not done
  uint64_t dropped_responders() const;  // Responders destroyed without Send (bugs)
  uint64_t handler_exceptions() const;  // handlers that threw (answered 500)

 private:
  explicit HttpServer(std::shared_ptr<internal::ServerCore> core);

  std::shared_ptr<internal::ServerCore> core_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  bool shut_down_ = false;
};

// The default error body: {"error":"<message>","error_type":"<reason phrase>"}.
std::string DefaultErrorBody(int status, std::string_view message);

}  // namespace infermesh::http
