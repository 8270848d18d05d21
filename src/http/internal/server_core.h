// State shared by HttpServer, its acceptor and its connections. Connections hold a
// shared_ptr to it, so the io_contexts outlive every socket, including those of
// connections kept alive by Responders after the server is gone.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "http/router.h"
#include "http/server.h"

namespace infermesh::http::internal {

class Connection;

using Executor = boost::asio::io_context::executor_type;
using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;
using Timer = boost::asio::basic_waitable_timer<
    std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, Executor>;
using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;

// An io_context whose queued handlers can be destroyed (shutdown()) without destroying
// the context: that releases connections captured by never-run handlers once the
// threads are joined, while sockets still alive elsewhere keep a valid service.
class IoContext : public boost::asio::io_context {
 public:
  IoContext() : boost::asio::io_context(1) {}
  using boost::asio::execution_context::shutdown;
};

struct ServerCore {
  ServerOptions options;
  std::shared_ptr<const Router> router;
  std::vector<std::unique_ptr<IoContext>> contexts;
  std::vector<boost::asio::executor_work_guard<Executor>> work;  // until Shutdown
  std::unique_ptr<Acceptor> acceptor;                            // used on contexts[0]
  std::unique_ptr<Timer> accept_retry;                           // backoff after EMFILE
  size_t next_context = 0;                                       // acceptor thread only

  std::atomic<size_t> open_connections{0};
  std::atomic<size_t> in_flight{0};
  std::atomic<uint64_t> dropped_responders{0};
  std::atomic<uint64_t> handler_exceptions{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> shed_idle{0};
  std::atomic<uint64_t> shed_header{0};
  std::atomic<uint64_t> header_timeouts{0};
  std::atomic<uint64_t> body_timeouts{0};
  std::atomic<uint64_t> idle_timeouts{0};
  std::atomic<uint64_t> write_timeouts{0};
  // Shutdown's delay has begun: still accepting, but every response closes its connection.
  std::atomic<bool> draining{false};
  std::atomic<bool> stopping{false};  // the listener is closing or closed

  // Cross-thread posts take this lock and stop once the loops are gone (see Shutdown).
  std::mutex post_mu;
  bool posts_closed = false;  // guarded by post_mu

  std::mutex conns_mu;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> conns;  // guarded by conns_mu

  std::string ErrorBody(int status, std::string_view message) const {
    return options.error_body ? options.error_body(status, message)
                              : DefaultErrorBody(status, message);
  }
};

// Accepts connections on contexts[0] and spreads them round-robin over the contexts.
void StartAccepting(const std::shared_ptr<ServerCore>& core);

}  // namespace infermesh::http::internal
