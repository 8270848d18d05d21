#include "http/internal/connection.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <exception>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>

#include "core/log.h"

namespace infermesh::http::internal {
namespace asio = boost::asio;
namespace beasthttp = boost::beast::http;
using boost::system::error_code;

namespace {

constexpr size_t kReadChunk = 16 << 10;
constexpr size_t kMaxDrainBytes = 4 << 20;  // lingering close reads at most this much
constexpr std::chrono::milliseconds kMaxLinger{1000};
constexpr size_t kKeepBodyCapacity = 64 << 10;  // larger buffers are freed between requests

// "Date: Tue, 15 Nov 1994 08:12:31 GMT\r\n", formatted at most once a second per thread.
std::string_view DateLine() {
  thread_local std::time_t last = 0;
  thread_local char line[64];
  thread_local size_t len = 0;
  std::time_t now = std::time(nullptr);
  if (now != last || len == 0) {
    last = now;
    std::tm tm{};
    gmtime_r(&now, &tm);
    len = std::strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
  }
  return {line, len};
}

void AppendNumber(std::string* out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

bool IsReservedHeader(std::string_view name) {
  static constexpr std::string_view kReserved[] = {"content-length", "content-type", "connection",
                                                   "transfer-encoding", "date"};
  for (std::string_view r : kReserved) {
    if (name.size() != r.size()) continue;
    bool same = true;
    for (size_t i = 0; i < r.size() && same; ++i) {
      char c = name[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
      same = c == r[i];
    }
    if (same) return true;
  }
  return false;
}

const char* PhaseName(int phase) {
  static constexpr const char* kNames[] = {"header", "body", "idle", "handler", "write", "linger"};
  return kNames[phase];
}

int64_t Ticks(std::chrono::steady_clock::time_point t) {
  // Never <= 0, which would read as "not sheddable".
  return std::max<int64_t>(1, t.time_since_epoch().count());
}

std::string_view Reason(int status) {
  auto r = beasthttp::obsolete_reason(static_cast<beasthttp::status>(status));
  std::string_view s(r.data(), r.size());
  if (s.empty() || s.front() == '<') return "Unknown";
  return s;
}

}  // namespace

Connection::Connection(std::shared_ptr<ServerCore> core, Socket socket)
    : core_(std::move(core)),
      socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      timer_(executor_),
      buffer_(core_->options.limits.max_header_bytes + kReadChunk),
      shed_since_(Ticks(Clock::now())) {}  // waiting for the client from accept on

Connection::~Connection() {
  if (counted_open_) core_->open_connections.fetch_sub(1, std::memory_order_relaxed);
  if (state_ != State::kClosed) {  // the loops were shut down with us still queued
    std::lock_guard<std::mutex> lock(core_->conns_mu);
    core_->conns.erase(this);
  }
}

void Connection::Start() {
  if (core_->stopping.load(std::memory_order_relaxed)) {
    CloseNow();
    return;
  }
  // A fresh connection's headers are timed from accept, so connecting and then saying
  // nothing costs the client the same as a slow header.
  phase_ = Phase::kHeader;
  deadline_ = Clock::now() + core_->options.limits.header_timeout;
  ArmTimer();
  ResetForNextRequest();
  ReadLoop();
}

void Connection::ResetForNextRequest() {
  parser_.emplace(&req_);
  parser_->header_limit(static_cast<std::uint32_t>(
      std::min<size_t>(core_->options.limits.max_header_bytes, UINT32_MAX)));
  parser_->body_limit(core_->options.max_body_bytes);
  if (req_.body.capacity() > kKeepBodyCapacity) {
    req_.body = std::string();
  } else {
    req_.body.clear();
  }
  if (body_out_.capacity() > kKeepBodyCapacity) body_out_ = std::string();
  req_.path_params.clear();
  req_.route.clear();
  continue_sent_ = false;
  status_ = 0;
  state_ = State::kReading;
  // A fresh flag unless nobody else holds the previous one.
  if (cancel_ && cancel_.use_count() == 1) {
    cancel_->store(false, std::memory_order_relaxed);
  } else {
    cancel_ = std::make_shared<std::atomic<bool>>(false);
  }
}

void Connection::ReadLoop() {
  for (;;) {
    if (buffer_.size() > 0) {
      if (!parser_->got_some() && phase_ == Phase::kIdle) {
        // A keep-alive request begins: its headers are timed from its first byte.
        EnterPhase(Phase::kHeader, core_->options.limits.header_timeout);
      }
      error_code ec;
      size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec && ec != beasthttp::error::need_more) {
        OnParseError(ec);
        return;
      }
      if (phase_ == Phase::kHeader && parser_->is_header_done()) {
        if (!Unshed()) {
          Shed();
          return;
        }
        EnterPhase(Phase::kBody, core_->options.limits.body_timeout);
      }
      if (parser_->is_done()) {
        OnRequest();
        return;
      }
      if (!ec && used > 0) continue;  // more parsable input may remain
    }
    if (parser_->is_header_done() && parser_->expect_continue() && !continue_sent_ &&
        parser_->version() >= 11) {
      WriteContinue();
      return;
    }
    size_t room = buffer_.max_size() - buffer_.size();
    if (room == 0) {  // a header or chunk line that never ends
      OnParseError(beasthttp::error::header_limit);
      return;
    }
    socket_.async_read_some(
        buffer_.prepare(std::min(room, kReadChunk)),
        [self = shared_from_this()](const error_code& ec, size_t n) { self->OnRead(ec, n); });
    return;
  }
}

void Connection::OnRead(const error_code& ec, size_t n) {
  if (state_ != State::kReading) return;  // closed meanwhile
  if (ec) {
    // EOF between requests is the normal end of a keep-alive connection.
    CloseNow();
    return;
  }
  buffer_.commit(n);
  ReadLoop();
}

void Connection::WriteContinue() {
  continue_sent_ = true;
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                    [self = shared_from_this()](const error_code& ec, size_t) {
                      if (self->state_ != State::kReading) return;
                      if (ec) {
                        self->CloseNow();
                        return;
                      }
                      self->ReadLoop();
                    });
}

void Connection::OnParseError(const error_code& ec) {
  int status = 400;
  std::string_view message = "malformed HTTP request";
  if (ec == beasthttp::error::body_limit) {
    status = 413;
    message = "request body too large";
  } else if (ec == beasthttp::error::header_limit) {
    status = 431;
    message = "request header fields too large";
  }
  log::Debug("http: bad request", {{"status", status}, {"error", ec.message()}});
  if (!parser_->is_header_done()) {
    req_.headers.clear();
    req_.method.clear();
  }
  req_.received = Clock::now();
  Response response;
  response.status = status;
  response.body = core_->ErrorBody(status, message);
  StartWrite(std::move(response), /*close=*/true);
}

void Connection::OnRequest() {
  req_.received = Clock::now();
  state_ = State::kHandling;
  phase_ = Phase::kHandler;
  keep_alive_ = parser_->keep_alive();
  ++seq_;
  const Router::Match match = core_->router->Find(req_.method, req_.path, &req_.path_params);
  if (match.handler == nullptr) {
    Response response;
    response.status = match.status;
    if (match.status == 405) {
      response.headers.emplace_back("Allow", match.allow);
      response.body = core_->ErrorBody(405, "method not allowed");
    } else {
      response.body = core_->ErrorBody(404, "not found");
    }
    StartWrite(std::move(response), /*close=*/false);
    return;
  }
  req_.route.assign(*match.route);
  handler_pending_ = true;
  core_->in_flight.fetch_add(1, std::memory_order_relaxed);
  const uint64_t seq = seq_;
  try {
    (*match.handler)(req_, Responder(shared_from_this(), seq, cancel_));
  } catch (const std::exception& e) {
    core_->handler_exceptions.fetch_add(1, std::memory_order_relaxed);
    log::Error("http: handler threw", {{"route", req_.route}, {"what", e.what()}});
  } catch (...) {
    core_->handler_exceptions.fetch_add(1, std::memory_order_relaxed);
    log::Error("http: handler threw", {{"route", req_.route}});
  }
  // Still waiting for Send(): watch the socket so that a client that leaves cancels.
  if (state_ == State::kHandling && handler_pending_ && seq_ == seq) WatchForDisconnect();
}

void Connection::Deliver(uint64_t seq, Response&& response, bool dropped) {
  if (executor_.running_in_this_thread()) {
    OnResponse(seq, std::move(response), dropped);
    return;
  }
  std::lock_guard<std::mutex> lock(core_->post_mu);
  if (core_->posts_closed) return;  // the loops are gone; nobody is listening
  asio::post(executor_,
             [self = shared_from_this(), seq, dropped, response = std::move(response)]() mutable {
               self->OnResponse(seq, std::move(response), dropped);
             });
}

void Connection::OnResponse(uint64_t seq, Response&& response, bool dropped) {
  if (!handler_pending_ || seq != seq_) return;
  handler_pending_ = false;
  core_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  if (dropped) {
    core_->dropped_responders.fetch_add(1, std::memory_order_relaxed);
    log::Error("http: BUG: Responder destroyed without Send", {{"route", req_.route}});
    response = Response();
    response.status = 500;
    response.body = core_->ErrorBody(500, "internal error: request was not answered");
  }
  if (state_ != State::kHandling) {  // the client left or the server closed us
    Complete(499);
    return;
  }
  if (watching_) {
    error_code ignored;
    socket_.cancel(ignored);  // only the disconnect watch is outstanding
    watching_ = false;
  }
  StartWrite(std::move(response), /*close=*/false);
}

void Connection::StartWrite(Response&& response, bool close) {
  if (!Unshed()) {  // an error answer to a request the acceptor already claimed
    Shed();
    return;
  }
  // While draining, closing after each response moves keep-alive clients to a new
  // connection, which their load balancer can send to another node.
  close = close || !keep_alive_ || close_after_response_ ||
          core_->draining.load(std::memory_order_relaxed) ||
          core_->stopping.load(std::memory_order_relaxed);
  keep_alive_ = !close;
  state_ = State::kWriting;
  status_ = response.status;
  if (status_ < 100 || status_ > 999) status_ = 500;
  std::string& h = head_out_;
  h.clear();
  h.append("HTTP/1.1 ");
  AppendNumber(&h, static_cast<uint64_t>(status_));
  h.push_back(' ');
  h.append(Reason(status_));
  h.append("\r\n");
  h.append(DateLine());
  if (!response.content_type.empty() && !HasCrLf(response.content_type)) {
    h.append("Content-Type: ");
    h.append(response.content_type);
    h.append("\r\n");
  }
  h.append("Content-Length: ");
  AppendNumber(&h, response.body.size());
  h.append("\r\n");
  for (const auto& [name, value] : response.headers) {
    if (name.empty() || HasCrLf(name) || HasCrLf(value) || IsReservedHeader(name)) continue;
    h.append(name);
    h.append(": ");
    h.append(value);
    h.append("\r\n");
  }
  if (close) {
    h.append("Connection: close\r\n");
  } else if (req_.version < 11) {
    h.append("Connection: keep-alive\r\n");
  }
  h.append("\r\n");
  body_out_ = std::move(response.body);
  EnterPhase(Phase::kWrite, core_->options.limits.idle_timeout);
  std::array<asio::const_buffer, 2> buffers{asio::buffer(head_out_), asio::buffer(body_out_)};
  asio::async_write(socket_, buffers, [self = shared_from_this()](const error_code& ec, size_t) {
    self->OnWritten(ec);
  });
}

void Connection::OnWritten(const error_code& ec) {
  if (state_ != State::kWriting) return;  // force-closed meanwhile
  if (ec) {
    Complete(499);
    CloseNow();
    return;
  }
  Complete(status_);
  if (!keep_alive_ || core_->stopping.load(std::memory_order_relaxed)) {
    CloseGracefully();
    return;
  }
  ResetForNextRequest();
  EnterPhase(Phase::kIdle, core_->options.limits.idle_timeout);
  MarkSheddable();
  ReadLoop();
}

void Connection::Complete(int status) {
  if (!core_->options.on_complete) return;
  try {
    core_->options.on_complete(req_, status, Clock::now() - req_.received);
  } catch (...) {
    log::Error("http: on_complete threw");
  }
}

void Connection::WatchForDisconnect() {
  if (buffer_.size() > 0) return;  // a pipelined request is buffered: the peer is alive
  watching_ = true;
  socket_.async_wait(Socket::wait_read, [self = shared_from_this(), seq = seq_](
                                            const error_code& ec) { self->OnReadable(ec, seq); });
}

void Connection::OnReadable(const error_code& ec, uint64_t seq) {
  if (seq != seq_ || !handler_pending_ || state_ != State::kHandling) return;
  watching_ = false;
  if (ec) return;
  char c;
  ssize_t n = ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    WatchForDisconnect();  // spurious wakeup
    return;
  }
  if (n > 0) return;  // the client pipelined another request; it is still there
  // EOF or a reset: the client is gone. A half-closed client (shutdown(SHUT_WR)) is
  // indistinguishable here and is treated as gone too.
  cancel_->store(true, std::memory_order_relaxed);
  CloseNow();
}

void Connection::BeginShutdown() {
  close_after_response_ = true;
  if (!parser_) return;  // not started yet; Start() sees `stopping`
  if (state_ == State::kReading && !parser_->got_some() && buffer_.size() == 0) CloseNow();
}

void Connection::ForceClose() { CloseNow(); }

void Connection::CloseGracefully() {
  // Half-close and read until the peer closes (bounded), so that unread request bytes
  // do not turn our close into a reset that destroys the response in flight.
  state_ = State::kClosing;
  if (counted_open_) {  // done serving: no longer counts against limits or Shutdown
    counted_open_ = false;
    core_->open_connections.fetch_sub(1, std::memory_order_relaxed);
  }
  error_code ignored;
  socket_.shutdown(Socket::shutdown_send, ignored);
  drained_ = 0;
  EnterPhase(Phase::kLinger,
             std::min<std::chrono::milliseconds>(core_->options.limits.idle_timeout, kMaxLinger));
  buffer_.clear();
  Drain();
}

void Connection::Drain() {
  socket_.async_read_some(buffer_.prepare(kReadChunk),
                          [self = shared_from_this()](const error_code& ec, size_t n) {
                            if (self->state_ != State::kClosing) return;
                            self->drained_ += n;
                            if (ec || self->drained_ > kMaxDrainBytes) {
                              self->CloseNow();
                              return;
                            }
                            self->Drain();
                          });
}

void Connection::CloseNow() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  shed_since_.store(0, std::memory_order_release);
  if (cancel_) cancel_->store(true, std::memory_order_relaxed);
  error_code ignored;
  timer_.cancel();
  socket_.close(ignored);
  buffer_.clear();
  buffer_.shrink_to_fit();
  if (counted_open_) {
    counted_open_ = false;
    core_->open_connections.fetch_sub(1, std::memory_order_relaxed);
  }
  std::lock_guard<std::mutex> lock(core_->conns_mu);
  core_->conns.erase(this);
}

void Connection::Shed() {
  if (state_ == State::kClosed) return;  // closed on its own meanwhile: not a shed
  const bool idle = phase_ == Phase::kIdle;
  (idle ? core_->shed_idle : core_->shed_header).fetch_add(1, std::memory_order_relaxed);
  log::Debug("http: connection shed at max_connections", {{"phase", PhaseName(int(phase_))}});
  CloseNow();
}

void Connection::MarkSheddable() {
  // Only this thread moves the value away from 0, so a plain CAS from 0 suffices; it
  // fails only if the connection is already claimed (then Shed() is on its way).
  int64_t expected = 0;
  shed_since_.compare_exchange_strong(expected, Ticks(Clock::now()), std::memory_order_acq_rel);
}

bool Connection::Unshed() {
  int64_t v = shed_since_.load(std::memory_order_acquire);
  while (v > 0) {
    if (shed_since_.compare_exchange_weak(v, 0, std::memory_order_acq_rel)) return true;
  }
  return v != kClaimed;
}

void Connection::EnterPhase(Phase phase, std::chrono::milliseconds timeout) {
  phase_ = phase;
  SetDeadline(Clock::now() + timeout);
}

void Connection::SetDeadline(Clock::time_point deadline) {
  deadline_ = deadline;
  if (deadline < timer_.expiry() && state_ != State::kClosed) {
    // The armed wait would fire too late: re-arm (the old wait ends as aborted).
    ArmTimer();
  }
}

void Connection::ArmTimer() {
  timer_.expires_at(deadline_);
  timer_.async_wait([self = shared_from_this()](const error_code& ec) { self->OnTimer(ec); });
}

void Connection::OnTimer(const error_code& ec) {
  if (ec == asio::error::operation_aborted || state_ == State::kClosed) return;
  const auto now = Clock::now();
  if (state_ == State::kHandling) {
    // No deadline while a handler works; check back later.
    deadline_ = now + core_->options.limits.idle_timeout;
    ArmTimer();
    return;
  }
  if (now >= deadline_) {
    switch (phase_) {
      case Phase::kHeader:
        core_->header_timeouts.fetch_add(1, std::memory_order_relaxed);
        break;
      case Phase::kBody:
        core_->body_timeouts.fetch_add(1, std::memory_order_relaxed);
        break;
      case Phase::kIdle:
        core_->idle_timeouts.fetch_add(1, std::memory_order_relaxed);
        break;
      case Phase::kWrite:
        core_->write_timeouts.fetch_add(1, std::memory_order_relaxed);
        break;
      case Phase::kHandler:
      case Phase::kLinger:  // the response is out; the peer's close is only awaited
        break;
    }
    log::Debug("http: connection timed out", {{"phase", PhaseName(int(phase_))}});
    CloseNow();
    return;
  }
  ArmTimer();
}

}  // namespace infermesh::http::internal
