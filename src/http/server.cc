#include "http/server.h"

#include <pthread.h>

#include <algorithm>
#include <exception>
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/status.hpp>

#include "core/log.h"
#include "http/internal/connection.h"
#include "http/internal/server_core.h"

namespace infermesh::http {
namespace asio = boost::asio;
using boost::system::error_code;
using internal::Connection;
using internal::ServerCore;

// ---- Responder -------------------------------------------------------------------

Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    DropUnsent();
    conn_ = std::move(other.conn_);
    seq_ = other.seq_;
    cancel_ = std::move(other.cancel_);
  }
  return *this;
}

Responder::~Responder() { DropUnsent(); }

void Responder::Send(Response response) {
  if (!conn_) return;
  std::shared_ptr<internal::Connection> conn = std::move(conn_);
  conn->Deliver(seq_, std::move(response), /*dropped=*/false);
}

void Responder::DropUnsent() {
  if (!conn_) return;
  std::shared_ptr<internal::Connection> conn = std::move(conn_);
  conn->Deliver(seq_, Response(), /*dropped=*/true);
}

// ---- error bodies ----------------------------------------------------------------

namespace {

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string DefaultErrorBody(int status, std::string_view message) {
  auto reason =
      boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  std::string out = "{\"error\":";
  AppendJsonString(&out, message);
  out += ",\"error_type\":";
  AppendJsonString(&out, std::string_view(reason.data(), reason.size()));
  out += "}";
  return out;
}

// ---- accepting -------------------------------------------------------------------

namespace internal {
namespace {

void RejectBusy(Socket& socket, const ServerCore& core) {
  // Best effort, never blocks: the kernel buffer takes this small answer.
  std::string body = core.ErrorBody(503, "too many connections");
  std::string msg =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
      "Connection: close\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(msg), ec);
  socket.shutdown(Socket::shutdown_both, ec);
  socket.close(ec);
}

void DoAccept(const std::shared_ptr<ServerCore>& core) {
  IoContext& ctx = *core->contexts[core->next_context++ % core->contexts.size()];
  core->acceptor->async_accept(ctx, [core](const error_code& ec, Socket socket) {
    if (core->stopping.load()) {
      error_code ignored;
      socket.close(ignored);
      return;
    }
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // EMFILE/ENFILE and friends: back off instead of spinning on the error.
      log::Warn("http: accept failed", {{"error", ec.message()}});
      core->accept_retry->expires_after(std::chrono::milliseconds(50));
      core->accept_retry->async_wait([core](const error_code& wait_ec) {
        if (!wait_ec && !core->stopping.load()) DoAccept(core);
      });
      return;
    }
    size_t open = core->open_connections.fetch_add(1, std::memory_order_relaxed) + 1;
    if (open > core->options.max_connections) {
      core->open_connections.fetch_sub(1, std::memory_order_relaxed);
      RejectBusy(socket, *core);
      DoAccept(core);
      return;
    }
    error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    auto conn = std::make_shared<Connection>(core, std::move(socket));
    asio::post(conn->executor(), [conn] { conn->Start(); });
    {
      std::lock_guard<std::mutex> lock(core->conns_mu);
      core->conns.insert_or_assign(conn.get(), conn);
    }
    DoAccept(core);
  });
}

std::vector<std::shared_ptr<Connection>> SnapshotConnections(ServerCore& core) {
  std::vector<std::shared_ptr<Connection>> out;
  std::lock_guard<std::mutex> lock(core.conns_mu);
  out.reserve(core.conns.size());
  for (auto& [ptr, weak] : core.conns) {
    if (auto conn = weak.lock()) out.push_back(std::move(conn));
  }
  return out;
}

}  // namespace

void StartAccepting(const std::shared_ptr<ServerCore>& core) { DoAccept(core); }

}  // namespace internal

// ---- HttpServer ------------------------------------------------------------------

HttpServer::HttpServer(std::shared_ptr<internal::ServerCore> core) : core_(std::move(core)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(ServerOptions options,
                                                      std::shared_ptr<const Router> router) {
  if (!router) return InvalidArgument("http server: no router");
  auto core = std::make_shared<ServerCore>();
  core->options = std::move(options);
  core->router = std::move(router);
  const ServerOptions& opt = core->options;
  const int threads = std::max(1, opt.io_threads);
  for (int i = 0; i < threads; ++i) {
    core->contexts.push_back(std::make_unique<internal::IoContext>());
    core->work.emplace_back(core->contexts.back()->get_executor());
  }

  error_code ec;
  const std::string host = opt.host == "localhost" ? "127.0.0.1" : opt.host;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) return InvalidArgument("http server: bad listen address '" + opt.host + "'");
  const asio::ip::tcp::endpoint endpoint(address, opt.port);
  const std::string where = opt.host + ":" + std::to_string(opt.port);
  core->acceptor = std::make_unique<internal::Acceptor>(core->contexts[0]->get_executor());
  core->accept_retry = std::make_unique<internal::Timer>(core->contexts[0]->get_executor());
  core->acceptor->open(endpoint.protocol(), ec);
  if (!ec) core->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) core->acceptor->bind(endpoint, ec);
  if (!ec) core->acceptor->listen(opt.listen_backlog, ec);
  if (ec) return Unavailable("http server: cannot listen on " + where + ": " + ec.message());
  const uint16_t port = core->acceptor->local_endpoint(ec).port();
  if (ec) return Internal("http server: local_endpoint: " + ec.message());

  internal::StartAccepting(core);
  std::unique_ptr<HttpServer> server(new HttpServer(core));
  server->port_ = port;
  for (int i = 0; i < threads; ++i) {
    internal::IoContext* ctx = core->contexts[static_cast<size_t>(i)].get();
    server->threads_.emplace_back([ctx, i] {
      std::string name = "http-io-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      for (;;) {
        try {
          ctx->run();
          return;
        } catch (const std::exception& e) {  // nothing should throw; keep serving if it does
          log::Error("http: exception escaped to the event loop", {{"what", e.what()}});
        } catch (...) {
          log::Error("http: exception escaped to the event loop");
        }
      }
    });
  }
  log::Debug("http server listening", {{"host", opt.host}, {"port", int{port}}});
  return server;
}

HttpServer::~HttpServer() { Shutdown(std::chrono::milliseconds(0)); }

void HttpServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  using Clock = std::chrono::steady_clock;
  ServerCore& core = *core_;
  core.stopping.store(true);
  asio::post(core.contexts[0]->get_executor(), [c = core_] {
    error_code ignored;
    c->acceptor->close(ignored);
    c->accept_retry->cancel();
  });
  for (auto& conn : internal::SnapshotConnections(core)) {
    asio::post(conn->executor(), [conn] { conn->BeginShutdown(); });
  }
  const auto deadline = Clock::now() + grace;
  while ((core.in_flight.load() > 0 || core.open_connections.load() > 0) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (auto& conn : internal::SnapshotConnections(core)) {
    asio::post(conn->executor(), [conn] { conn->ForceClose(); });
  }
  core.work.clear();
  // The loops end once the closes have run; give them a moment, then stop them.
  const auto stop_by = Clock::now() + std::chrono::milliseconds(500);
  auto all_stopped = [&] {
    return std::all_of(core.contexts.begin(), core.contexts.end(),
                       [](const auto& ctx) { return ctx->stopped(); });
  };
  while (!all_stopped() && Clock::now() < stop_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& ctx : core.contexts) ctx->stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  {
    std::lock_guard<std::mutex> lock(core.post_mu);
    core.posts_closed = true;
  }
  // Destroy handlers that will never run (they may hold connections), keeping the
  // contexts themselves alive for sockets that Responders still own.
  for (auto& ctx : core.contexts) ctx->shutdown();
  log::Debug("http server stopped", {{"port", int{port_}}});
}

size_t HttpServer::open_connections() const { return core_->open_connections.load(); }
size_t HttpServer::in_flight() const { return core_->in_flight.load(); }
uint64_t HttpServer::dropped_responders() const { return core_->dropped_responders.load(); }
uint64_t HttpServer::handler_exceptions() const { return core_->handler_exceptions.load(); }

}  // namespace infermesh::http
