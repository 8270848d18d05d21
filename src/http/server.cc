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

// Claims the connection that has waited longest for its client (idle keep-alive, or
// headers not complete) and has it closed. False if every connection is busy with a
// request. O(connections), only at the limit. The oldest goes first: under a flood of
// stalled connections those are the flood's, while a new client's request arrives right
// after its connect and is no longer sheddable by the time the flood catches up.
bool ShedLongestWaiting(ServerCore& core) {
  for (int attempt = 0; attempt < 4; ++attempt) {  // a candidate can turn busy meanwhile
    std::shared_ptr<Connection> victim;
    int64_t since = 0;
    {
      std::lock_guard<std::mutex> lock(core.conns_mu);
      const std::weak_ptr<Connection>* best = nullptr;
      for (const auto& [ptr, weak] : core.conns) {
        // The raw key is safe to read here: a connection is in the map from before it
        // starts until it erases itself (under conns_mu) in CloseNow() or, at the
        // latest, its destructor. No shared_ptr is made per entry, since dropping the
        // last one under conns_mu would run a destructor that takes it again.
        const int64_t s = ptr->shed_since();
        if (s > 0 && (best == nullptr || s < since)) {
          best = &weak;
          since = s;
        }
      }
      if (best == nullptr) return false;
      victim = best->lock();
    }
    if (victim && victim->TryClaim(since)) {
      asio::post(victim->executor(), [victim] { victim->Shed(); });
      return true;
    }
  }
  return false;
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
    // Over the limit, the new connection takes the slot of one that waits for its client;
    // the victim's close gives the slot back, so the count only overshoots while Shed()
    // is queued.
    if (open > core->options.limits.max_connections && !ShedLongestWaiting(*core)) {
      core->open_connections.fetch_sub(1, std::memory_order_relaxed);
      core->rejected.fetch_add(1, std::memory_order_relaxed);
      RejectBusy(socket, *core);
      DoAccept(core);
      return;
    }
    error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    auto conn = std::make_shared<Connection>(core, std::move(socket));
    {
      // Registered before it can run: a connection that closes at once (on another
      // loop) must find itself here to erase, or the map would keep a stale entry.
      std::lock_guard<std::mutex> lock(core->conns_mu);
      core->conns.insert_or_assign(conn.get(), conn);
    }
    asio::post(conn->executor(), [conn] { conn->Start(); });
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

namespace {

Status ValidateLimits(const ServerLimits& l) {
  if (l.max_connections < 1 || l.max_connections > (size_t{1} << 20)) {
    return InvalidArgument("server.max_connections must be in 1..1048576, got " +
                           std::to_string(l.max_connections));
  }
  if (l.max_header_bytes < 1024 || l.max_header_bytes > (size_t{1} << 20)) {
    return InvalidArgument("server.max_header_bytes must be between 1KiB and 1MiB, got " +
                           std::to_string(l.max_header_bytes));
  }
  const std::pair<const char*, std::chrono::milliseconds> timeouts[] = {
      {"server.header_timeout", l.header_timeout},
      {"server.body_timeout", l.body_timeout},
      {"server.idle_timeout", l.idle_timeout}};
  for (const auto& [key, value] : timeouts) {
    if (value.count() <= 0) return InvalidArgument(std::string(key) + " must be positive");
  }
  if (l.shutdown_delay.count() < 0) return InvalidArgument("server.shutdown_delay is negative");
  return OkStatus();
}

}  // namespace

Result<ServerLimits> ServerLimitsFromConfig(const Config& c) {
  ServerLimits l;
  IM_ASSIGN_OR_RETURN(int64_t conns, c.GetInt("server.max_connections"));
  if (conns < 1) return InvalidArgument("server.max_connections must be at least 1");
  l.max_connections = static_cast<size_t>(conns);
  IM_ASSIGN_OR_RETURN(int64_t header_bytes, c.GetBytes("server.max_header_bytes"));
  l.max_header_bytes = static_cast<size_t>(std::max<int64_t>(0, header_bytes));
  IM_ASSIGN_OR_RETURN(int64_t header_ms, c.GetMillis("server.header_timeout"));
  l.header_timeout = std::chrono::milliseconds(header_ms);
  IM_ASSIGN_OR_RETURN(int64_t body_ms, c.GetMillis("server.body_timeout"));
  l.body_timeout = std::chrono::milliseconds(body_ms);
  IM_ASSIGN_OR_RETURN(int64_t idle_ms, c.GetMillis("server.idle_timeout"));
  l.idle_timeout = std::chrono::milliseconds(idle_ms);
  IM_ASSIGN_OR_RETURN(int64_t delay_ms, c.GetMillis("server.shutdown_delay"));
  l.shutdown_delay = std::chrono::milliseconds(delay_ms);
  IM_RETURN_IF_ERROR(ValidateLimits(l));
  return l;
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(ServerOptions options,
                                                      std::shared_ptr<const Router> router) {
  if (!router) return InvalidArgument("http server: no router");
  IM_RETURN_IF_ERROR(ValidateLimits(options.limits));
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
  if (opt.metrics != nullptr) server->BindMetrics(*opt.metrics);
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

void HttpServer::BindMetrics(metrics::Registry& registry) {
  ServerCore* c = core_.get();  // the bindings are reset in Stop(), before core_ can go
  auto read = [](const std::atomic<uint64_t>& a) {
    return [&a] { return static_cast<double>(a.load(std::memory_order_relaxed)); };
  };
  auto& open = registry.CallbackGauge("infermesh_http_connections_open",
                                      "Client connections counted against server.max_connections");
  metric_bindings_.push_back(
      open.Bind([c] { return static_cast<double>(c->open_connections.load()); }));
  auto& rejected = registry.CallbackCounter(
      "infermesh_http_connections_rejected_total",
      "Connections answered 503 at server.max_connections because every one was busy");
  metric_bindings_.push_back(rejected.Bind(read(c->rejected)));
  auto& shed = registry.CallbackCounter(
      "infermesh_http_connections_shed_total",
      "Connections closed at server.max_connections to admit a new one, by what they waited for",
      {"state"});
  metric_bindings_.push_back(shed.Bind({"idle"}, read(c->shed_idle)));
  metric_bindings_.push_back(shed.Bind({"header"}, read(c->shed_header)));
  auto& timeouts = registry.CallbackCounter(
      "infermesh_http_connection_timeouts_total",
      "Connections closed because the client missed a server.*_timeout, by phase", {"phase"});
  metric_bindings_.push_back(timeouts.Bind({"header"}, read(c->header_timeouts)));
  metric_bindings_.push_back(timeouts.Bind({"body"}, read(c->body_timeouts)));
  metric_bindings_.push_back(timeouts.Bind({"idle"}, read(c->idle_timeouts)));
  metric_bindings_.push_back(timeouts.Bind({"write"}, read(c->write_timeouts)));
}

// The destructor skips the shutdown delay: nobody is left to answer health checks.
HttpServer::~HttpServer() { Stop(std::chrono::milliseconds(0), std::chrono::milliseconds(0)); }

void HttpServer::Shutdown(std::chrono::milliseconds grace) {
  Stop(grace, core_->options.limits.shutdown_delay);
}

void HttpServer::Stop(std::chrono::milliseconds grace, std::chrono::milliseconds delay) {
  if (shut_down_) return;
  shut_down_ = true;
  using Clock = std::chrono::steady_clock;
  ServerCore& core = *core_;
  if (delay.count() > 0) {
    // The owner has turned its readiness false; keep the listener open so that load
    // balancers read that as 503 and stop sending, instead of seeing refused connects.
    core.draining.store(true);
    log::Debug("http server draining", {{"port", int{port_}}, {"delay_ms", delay.count()}});
    std::this_thread::sleep_for(delay);
  }
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
  metric_bindings_.clear();
  log::Debug("http server stopped", {{"port", int{port_}}});
}

size_t HttpServer::open_connections() const { return core_->open_connections.load(); }
size_t HttpServer::in_flight() const { return core_->in_flight.load(); }
uint64_t HttpServer::dropped_responders() const { return core_->dropped_responders.load(); }
uint64_t HttpServer::handler_exceptions() const { return core_->handler_exceptions.load(); }

HttpServer::Stats HttpServer::stats() const {
  const ServerCore& c = *core_;
  Stats s;
  s.rejected = c.rejected.load();
  s.shed_idle = c.shed_idle.load();
  s.shed_header = c.shed_header.load();
  s.header_timeouts = c.header_timeouts.load();
  s.body_timeouts = c.body_timeouts.load();
  s.idle_timeouts = c.idle_timeouts.load();
  s.write_timeouts = c.write_timeouts.load();
  return s;
}

}  // namespace infermesh::http
