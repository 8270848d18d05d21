// One accepted TCP connection: reads a request, runs the handler, writes the response,
// repeats. All members are touched only on the connection's own I/O thread, except
// Deliver(), which any thread may call (it posts).
//
// States: kReading (waiting for or reading a request) -> kHandling (handler owns the
// Responder) -> kWriting -> kReading ... ; kClosing drains input after a final response
// so that the client sees it rather than a reset; kClosed.
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

  Executor executor() const { return executor_; }

 private:
  enum class State { kReading, kHandling, kWriting, kClosing, kClosed };
  using Clock = std::chrono::steady_clock;

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
  std::string head_out_;  // reused response head
  std::string body_out_;
};

}  // namespace infermesh::http::internal
