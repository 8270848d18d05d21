// One accepted TCP connection: reads a request, runs the handler, writes the response,
// repeats. All members are touched only on the connection's own I/O thread, except
// Deliver(), which any thread may call (it posts).
//
// States: kReading (waiting for or reading a request) -> kHandling (handler owns the
// Responder) -> kWriting -> kReading ... ; kClosing drains input after a final response
// so that the client sees it rather than a reset; kClosed.
//
// Shedding: while the connection waits for its client (from accept or the end of a
// response until its request headers are complete) it is "sheddable", and shed_since_
// holds since when. The acceptor, at max_connections, claims the oldest such connection
// with a compare-and-swap to kClaimed and posts Shed(). The connection leaves the
// sheddable state with a compare-and-swap too, so exactly one side wins: either the
// acceptor claimed it first and it closes without serving anything more, or its request
// is complete enough to serve and it can no longer be claimed. A request being handled is
// therefore never shed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/beast/core/flat_buffer.hpp>

#include "http/internal/request_parser.h"
#include "http/internal/server_core.h"
#include "http/message.h"

namespace infermesh::http::internal {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<ServerCore> core, Socket socket);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs on the connection's thread.
  void Start();
  // Shutdown: close now if idle between requests, else after the current response.
  void BeginShutdown();
  void ForceClose();

  // From any thread: completes request `seq` (Responder::Send / its destructor).
  void Deliver(uint64_t seq, Response&& response, bool dropped);

  // Any thread: steady_clock ticks since the connection began waiting for its client, or
  // a value <= 0 when it cannot be shed.
  int64_t shed_since() const { return shed_since_.load(std::memory_order_acquire); }
  // Any thread: claims the connection for shedding if it is still sheddable since
  // `since`. On success the caller must post Shed().
  bool TryClaim(int64_t since) {
    return since > 0 && shed_since_.compare_exchange_strong(since, kClaimed);
  }
  // Runs on the connection's thread after a successful TryClaim(): closes and counts.
  void Shed();

  Executor executor() const { return executor_; }

 private:
  enum class State { kReading, kHandling, kWriting, kClosing, kClosed };
  // Which deadline is running, to count timeouts by what the client failed to do.
  enum class Phase { kHeader, kBody, kIdle, kHandler, kWrite, kLinger };
  using Clock = std::chrono::steady_clock;
  static constexpr int64_t kClaimed = -1;

  void ReadLoop();
  void OnRead(const boost::system::error_code& ec, size_t n);
  void OnRequest();
  void OnParseError(const boost::system::error_code& ec);
  void OnResponse(uint64_t seq, Response&& response, bool dropped);
  void StartWrite(Response&& response, bool close);
  void OnWritten(const boost::system::error_code& ec);
  void WriteContinue();
  void WatchForDisconnect();
  void OnReadable(const boost::system::error_code& ec, uint64_t seq);
  void CloseGracefully();
  void Drain();
  void CloseNow();
  void ResetForNextRequest();
  void SetDeadline(Clock::time_point deadline);
  void EnterPhase(Phase phase, std::chrono::milliseconds timeout);
  void MarkSheddable();
  [[nodiscard]] bool Unshed();  // false: claimed by the acceptor, close instead
  void ArmTimer();
  void OnTimer(const boost::system::error_code& ec);
  void Complete(int status);

  std::shared_ptr<ServerCore> core_;
  Socket socket_;
  Executor executor_;
  Timer timer_;
  boost::beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  Request req_;
  State state_ = State::kReading;
  uint64_t seq_ = 0;              // current request number
  bool handler_pending_ = false;  // a Responder for seq_ is outstanding
  bool watching_ = false;         // async_wait for disconnect outstanding
  bool continue_sent_ = false;
  bool keep_alive_ = true;
  bool close_after_response_ = false;
  bool counted_open_ = true;  // open_connections includes us
  int status_ = 0;            // of the response being written
  size_t drained_ = 0;
  std::shared_ptr<std::atomic<bool>> cancel_;
  Clock::time_point deadline_;
  Phase phase_ = Phase::kHeader;
  std::atomic<int64_t> shed_since_;  // see "Shedding" above; set in the constructor
  std::string head_out_;             // reused response head
  std::string body_out_;
};

}  // namespace infermesh::http::internal
