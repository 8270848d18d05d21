// HTTP request/response values and the Responder that completes one request.
//
//   router.Add("POST", "/v2/models/{model}/infer", [](Request& req, Responder r) {
//     std::string model = req.path_params["model"];
//     pool.Submit([body = std::move(req.body), r = std::move(r)]() mutable {
//       if (r.cancelled()) return;               // client left; dropping r answers 500
//       Response response;
//       response.body = Compute(body);
//       r.Send(std::move(response));               // from any thread
//     });
//   });
//
// Ownership: the handler receives `req` by reference; it stays valid until the handler
// returns or calls Send(), whichever is first. A handler that finishes asynchronously
// moves what it needs (body, params) out of `req` before returning.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace infermesh::http {

namespace internal {
class Connection;
}

struct Request {
  std::string method;  // "GET"
  std::string path;    // "/v2/models/bge/infer" (no query, not percent-decoded)
  std::string query;   // raw query string, without '?'
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::map<std::string, std::string> path_params;  // percent-decoded values
  std::string route;  // the matched pattern ("/v2/models/{model}/infer"); "" if none
  int version = 11;   // 10 for HTTP/1.0, 11 for HTTP/1.1
  std::chrono::steady_clock::time_point received;  // when the full request was read

  // Value of the first header named `lower_name` (lower case), or "" if absent.
  std::string_view Header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers) {
      if (name == lower_name) return value;
    }
    return {};
  }
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  // Extra headers. Content-Length, Content-Type, Connection, Transfer-Encoding and
  // Date are set by the server and ignored here; values with CR/LF are dropped.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Completes one request. Move-only. Send() exactly once, from any thread: the write
// is posted onto the connection's I/O thread (run inline when already on it). If a
// Responder is destroyed without Send(), the client gets a 500 and the server counts
// a bug (HttpServer::dropped_responders()). A default-constructed or moved-from
// Responder does nothing.
class Responder {
 public:
  Responder() = default;
  Responder(Responder&& other) noexcept = default;
  Responder& operator=(Responder&& other) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  void Send(Response response);

  // True once the client has disconnected while the request was pending, or the
  // server has force-closed the connection. Cheap (one atomic load). Detection watches
  // the socket for EOF/reset, so a client that half-closes (shutdown(SHUT_WR)) after
  // sending counts as gone, and one that pipelined its next request is not watched.
  bool cancelled() const { return cancel_ && cancel_->load(std::memory_order_relaxed); }
  // The same flag, for code (batchers) that outlives the Responder.
  std::shared_ptr<const std::atomic<bool>> cancel_flag() const { return cancel_; }
  // False once Send() was called (or for an empty Responder).
  bool pending() const { return conn_ != nullptr; }

 private:
  friend class internal::Connection;
  Responder(std::shared_ptr<internal::Connection> conn, uint64_t seq,
            std::shared_ptr<std::atomic<bool>> cancel)
      : conn_(std::move(conn)), seq_(seq), cancel_(std::move(cancel)) {}
  void DropUnsent();

  std::shared_ptr<internal::Connection> conn_;  // null once sent
  uint64_t seq_ = 0;                            // which request on the connection
  std::shared_ptr<std::atomic<bool>> cancel_;
};

using Handler = std::function<void(Request& req, Responder responder)>;

}  // namespace infermesh::http
