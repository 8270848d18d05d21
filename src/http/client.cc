#include "http/client.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "core/log.h"

namespace infermesh::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using steady_clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

Result<Endpoint> ParseEndpoint(std::string_view text) {
  const std::string original(text);
  if (text.starts_with("http://")) text.remove_prefix(7);
  if (text.starts_with("https://")) {
    return InvalidArgument("'" + original + "': https is not supported; use http://");
  }
  while (!text.empty() && text.back() == '/') text.remove_suffix(1);
  Endpoint ep;
  std::string_view port;
  if (text.starts_with("[")) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return InvalidArgument("'" + original + "' is not [address]:port");
    }
    ep.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) {
      return InvalidArgument("'" + original + "' is not host:port");
    }
    ep.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  if (ep.host.empty()) return InvalidArgument("'" + original + "' has no host");
  for (char c : ep.host) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '@') {
      return InvalidArgument("'" + original + "' has an invalid host");
    }
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return InvalidArgument("'" + original + "' has an invalid port (1-65535)");
  }
  ep.port = static_cast<uint16_t>(value);
  return ep;
}

namespace internal {
namespace {

struct Conn {
  explicit Conn(asio::any_io_executor ex) : stream(ex) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  steady_clock::time_point idle_since;
};

}  // namespace

struct Op;

struct HostPool {
  Endpoint endpoint;
  std::vector<std::shared_ptr<Conn>> idle;  // most recently used last
  size_t open = 0;                          // busy + idle + connecting
  std::deque<std::shared_ptr<Op>> waiting;
};

struct Op {
  Endpoint endpoint;
  std::string key;
  ClientRequest request;
  HttpClient::Callback done;
  steady_clock::time_point deadline;
  bhttp::request<bhttp::string_body> message;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;
  std::shared_ptr<Conn> conn;
  bool reused = false;
  bool retried = false;
  std::unique_ptr<tcp::resolver> resolver;
  // Armed while the request waits in its pool's queue; touched only under ClientCore::mu.
  std::unique_ptr<asio::steady_timer> queue_timer;
};

struct ClientCore : std::enable_shared_from_this<ClientCore> {
  explicit ClientCore(ClientOptions o)
      : options(std::move(o)), io(std::max(1, options.io_threads)) {}

  ClientOptions options;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::set<std::thread::id> thread_ids;

  mutable std::mutex mu;
  bool stopping = false;
  std::unordered_map<std::string, HostPool> pools;
  std::set<std::shared_ptr<Conn>> busy;  // connections with a request on them
  HttpClient::Stats counters;

  bool OnIoThread() const { return thread_ids.count(std::this_thread::get_id()) > 0; }

  // Completes `op` with `r` on an I/O thread (never inline from Send).
  void Finish(const std::shared_ptr<Op>& op, Result<ClientResponse> r) {
    auto done = std::move(op->done);
    op->done = nullptr;
    if (done) done(std::move(r));
  }
  void FinishLater(std::shared_ptr<Op> op, Status status) {
    asio::post(io, [self = shared_from_this(), op = std::move(op), status]() mutable {
      self->Finish(op, status);
    });
  }

  void Submit(std::shared_ptr<Op> op) {
    std::shared_ptr<Conn> conn;
    bool connect = false;
    {
      std::unique_lock<std::mutex> lock(mu);
      if (!op->retried) ++counters.requests;
      if (stopping) {  // the loops may be gone: complete here
        lock.unlock();
        return Finish(op, Status(StatusCode::kCancelled, "the HTTP client shut down"));
      }
      HostPool& pool = pools[op->key];
      pool.endpoint = op->endpoint;
      conn = TakeIdle(pool);
      if (conn) {
        busy.insert(conn);
      } else if (pool.open < options.max_connections_per_host) {
        ++pool.open;
        connect = true;
      } else if (pool.waiting.size() < options.max_pending_per_host) {
        Enqueue(pool, std::move(op));
        return;
      } else {
        ++counters.queue_full;
        // The message first: the argument that moves `op` may be evaluated before it.
        Status full =
            ResourceExhausted("more than " + std::to_string(options.max_pending_per_host) +
                              " requests wait for a connection to " + op->endpoint.ToString());
        FinishLater(std::move(op), std::move(full));
        return;
      }
    }
    if (conn) {
      Start(std::move(op), std::move(conn), /*reused=*/true);
    } else if (connect) {
      Connect(std::move(op));
    }
  }

  // Under mu. A queued request has a timer of its own: it fails at its deadline even while
  // every connection is held by requests with later deadlines (or hung on a host that is
  // unreachable). Whoever takes it out of the queue owns it: the timer, a freed
  // connection, or Shutdown; the other two cancel the timer or find it gone.
  void Enqueue(HostPool& pool, std::shared_ptr<Op> op) {
    if (!op->queue_timer) op->queue_timer = std::make_unique<asio::steady_timer>(io);
    op->queue_timer->expires_at(op->deadline);
    op->queue_timer->async_wait([self = shared_from_this(), op](const error_code& ec) {
      if (!ec) self->ExpireQueued(op);
    });
    pool.waiting.push_back(std::move(op));
  }

  // Under mu: the first waiting request, its timer stopped.
  static std::shared_ptr<Op> PopWaiting(HostPool& pool) {
    auto op = std::move(pool.waiting.front());
    pool.waiting.pop_front();
    if (op->queue_timer) op->queue_timer->cancel();
    return op;
  }

  void ExpireQueued(const std::shared_ptr<Op>& op) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = pools.find(op->key);
      if (it == pools.end()) return;
      auto& waiting = it->second.waiting;
      auto pos = std::find(waiting.begin(), waiting.end(), op);
      if (pos == waiting.end()) return;  // a connection or Shutdown took it first
      waiting.erase(pos);
      ++counters.timeouts;
    }
    Finish(op, DeadlineExceeded("request to " + op->endpoint.ToString() + " " + op->request.target +
                                " waited for a connection past its deadline"));
  }

  // Under mu: a usable idle connection, closing the expired ones.
  std::shared_ptr<Conn> TakeIdle(HostPool& pool) {
    const auto now = steady_clock::now();
    while (!pool.idle.empty()) {
      auto c = std::move(pool.idle.back());
      pool.idle.pop_back();
      if (now - c->idle_since < options.idle_timeout) return c;
      CloseLater(c);
      --pool.open;
    }
    return nullptr;
  }

  void CloseLater(const std::shared_ptr<Conn>& c) {
    asio::post(c->stream.get_executor(), [c] {
      error_code ignored;
      c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      c->stream.close();
    });
  }

  void Connect(std::shared_ptr<Op> op) {
    auto conn = std::make_shared<Conn>(asio::make_strand(io));
    {
      std::lock_guard<std::mutex> lock(mu);
      busy.insert(conn);
      ++counters.connects;
    }
    op->conn = conn;
    op->resolver = std::make_unique<tcp::resolver>(conn->stream.get_executor());
    auto self = shared_from_this();
    op->resolver->async_resolve(
        op->endpoint.host, std::to_string(op->endpoint.port),
        [self, op](const error_code& ec, tcp::resolver::results_type results) {
          if (ec)
            return self->ConnectFailed(op, "resolve " + op->endpoint.host + ": " + ec.message());
          const auto limit =
              std::min(op->deadline, steady_clock::now() + self->options.connect_timeout);
          op->conn->stream.expires_at(limit);
          op->conn->stream.async_connect(
              results, [self, op](const error_code& ec2, const tcp::endpoint&) {
                if (ec2) {
                  const bool timeout = ec2 == beast::error::timeout;
                  return self->ConnectFailed(
                      op, (timeout ? "connect timed out" : "connect failed: " + ec2.message()));
                }
                error_code ignored;
                op->conn->stream.socket().set_option(tcp::no_delay(true), ignored);
                self->Write(op);
              });
        });
  }

  void ConnectFailed(const std::shared_ptr<Op>& op, const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++counters.connect_failures;
    }
    const bool past = steady_clock::now() >= op->deadline;
    Release(op, /*keep=*/false);
    if (past) {
      CountTimeout();
      return Finish(op, DeadlineExceeded(op->endpoint.ToString() + ": " + why));
    }
    Finish(op, Unavailable(op->endpoint.ToString() + ": " + why));
  }

  void Start(std::shared_ptr<Op> op, std::shared_ptr<Conn> conn, bool reused) {
    op->conn = std::move(conn);
    op->reused = reused;
    if (reused) {
      std::lock_guard<std::mutex> lock(mu);
      ++counters.reused;
    }
    auto self = shared_from_this();
    asio::dispatch(op->conn->stream.get_executor(), [self, op] { self->Write(op); });
  }

  void Write(const std::shared_ptr<Op>& op) {
    if (steady_clock::now() >= op->deadline) {
      Release(op, /*keep=*/true);
      CountTimeout();
      return Finish(op, DeadlineExceeded("request to " + op->endpoint.ToString() +
                                         " expired before it was sent"));
    }
    op->conn->stream.expires_at(op->deadline);
    op->parser.emplace();
    op->parser->body_limit(options.max_response_bytes);
    op->parser->header_limit(64 << 10);
    auto self = shared_from_this();
    bhttp::async_write(op->conn->stream, op->message, [self, op](const error_code& ec, size_t) {
      if (ec) return self->Failed(op, ec, "write");
      bhttp::async_read(op->conn->stream, op->conn->buffer, *op->parser,
                        [self, op](const error_code& ec2, size_t) {
                          if (ec2) return self->Failed(op, ec2, "read");
                          self->Completed(op);
                        });
    });
  }

  void Completed(const std::shared_ptr<Op>& op) {
    auto& msg = op->parser->get();
    ClientResponse r;
    r.status = static_cast<int>(msg.result_int());
    for (const auto& field : msg) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      r.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    r.body = std::move(msg.body());
    const bool keep = msg.keep_alive() && !op->parser->need_eof();
    Release(op, keep);
    Finish(op, std::move(r));
  }

  void Failed(const std::shared_ptr<Op>& op, const error_code& ec, const char* phase) {
    const bool timeout = ec == beast::error::timeout;
    const bool got_some = op->parser && op->parser->got_some();
    const bool stopped = [&] {
      std::lock_guard<std::mutex> lock(mu);
      return stopping;
    }();
    if (stopped) {
      Release(op, false);
      return Finish(op, Status(StatusCode::kCancelled, "the HTTP client shut down"));
    }
    // A pooled connection the server closed while idle: nothing of a response came.
    if (!timeout && op->reused && !got_some && !op->retried && op->request.retry_stale) {
      op->retried = true;
      {
        std::lock_guard<std::mutex> lock(mu);
        ++counters.stale_retries;
        busy.erase(op->conn);
        HostPool& pool = pools[op->key];
        --pool.open;
        for (auto& c : pool.idle) CloseLater(c);  // they are likely stale too
        pool.open -= pool.idle.size();
        pool.idle.clear();
      }
      CloseNow(op->conn);
      op->conn.reset();
      op->reused = false;
      return Submit(op);
    }
    Release(op, false);
    if (timeout) {
      CountTimeout();
      return Finish(op, DeadlineExceeded("request to " + op->endpoint.ToString() + " " +
                                         op->request.target + " timed out"));
    }
    if (ec == bhttp::error::body_limit) {
      return Finish(
          op, ResourceExhausted("response from " + op->endpoint.ToString() + " is larger than " +
                                std::to_string(options.max_response_bytes) + " bytes"));
    }
    const auto& http_category = bhttp::make_error_code(bhttp::error::bad_version).category();
    if (ec.category() == http_category && ec != bhttp::error::end_of_stream &&
        ec != bhttp::error::partial_message) {
      return Finish(
          op, DataLoss("malformed response from " + op->endpoint.ToString() + ": " + ec.message()));
    }
    Finish(op, Unavailable("connection to " + op->endpoint.ToString() + " failed in " + phase +
                           " (" + ec.message() + ") before a complete response"));
  }

  static void CloseNow(const std::shared_ptr<Conn>& c) {
    error_code ignored;
    c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    c->stream.close();
  }

  void CountTimeout() {
    std::lock_guard<std::mutex> lock(mu);
    ++counters.timeouts;
  }

  // Gives op's connection back: to the next waiting request, to the idle list, or
  // closed (then a waiting request may open a new one).
  void Release(const std::shared_ptr<Op>& op, bool keep) {
    std::shared_ptr<Conn> conn = std::move(op->conn);
    op->conn.reset();
    op->resolver.reset();
    if (!conn) return;
    std::shared_ptr<Op> next;
    bool connect_next = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      busy.erase(conn);
      HostPool& pool = pools[op->key];
      if (stopping) keep = false;
      if (keep && !pool.waiting.empty()) {
        next = PopWaiting(pool);
        busy.insert(conn);
      } else if (keep) {
        conn->stream.expires_never();
        conn->idle_since = steady_clock::now();
        pool.idle.push_back(conn);
      } else {
        --pool.open;
        if (!pool.waiting.empty() && !stopping) {
          next = PopWaiting(pool);
          ++pool.open;
          connect_next = true;
        }
      }
    }
    if (!keep) CloseNow(conn);
    if (next && connect_next) {
      Connect(std::move(next));
    } else if (next) {
      Start(std::move(next), std::move(conn), /*reused=*/true);
    }
  }

  void Shutdown() {
    std::vector<std::shared_ptr<Op>> cancelled;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) return;
      stopping = true;
      for (auto& [key, pool] : pools) {
        while (!pool.waiting.empty()) cancelled.push_back(PopWaiting(pool));
        for (auto& c : pool.idle) CloseLater(c);
        pool.open -= pool.idle.size();
        pool.idle.clear();
      }
      for (const auto& c : busy) CloseLater(c);
    }
    for (auto& op : cancelled) {
      FinishLater(std::move(op), Status(StatusCode::kCancelled, "the HTTP client shut down"));
    }
    work.reset();
    for (auto& t : threads) {
      if (t.get_id() == std::this_thread::get_id()) {
        t.detach();  // shut down from a callback: the loop ends on its own
      } else if (t.joinable()) {
        t.join();
      }
    }
    threads.clear();
  }
};

}  // namespace internal

std::unique_ptr<HttpClient> HttpClient::Create(ClientOptions options) {
  auto core = std::make_shared<internal::ClientCore>(std::move(options));
  core->work.emplace(core->io.get_executor());
  const int n = std::max(1, core->options.io_threads);
  std::promise<void> started;
  std::mutex ids_mu;
  int ready = 0;
  for (int i = 0; i < n; ++i) {
    core->threads.emplace_back([io = &core->io, &ids_mu, &ready, &started, n, core] {
      bool last = false;
      {
        std::lock_guard<std::mutex> lock(ids_mu);
        core->thread_ids.insert(std::this_thread::get_id());
        last = ++ready == n;
      }
      if (last) started.set_value();  // after unlocking: Create's locals end with it
      for (;;) {
        try {
          io->run();
          break;
        } catch (const std::exception& e) {
          // A callback threw: the loop goes on for every other request.
          log::Error("HTTP client callback threw", {{"error", e.what()}});
        } catch (...) {
          log::Error("HTTP client callback threw a non-exception");
        }
      }
    });
  }
  started.get_future().wait();
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(core)));
}

HttpClient::HttpClient(std::shared_ptr<internal::ClientCore> core) : core_(std::move(core)) {}

HttpClient::~HttpClient() { Shutdown(); }

void HttpClient::Shutdown() { core_->Shutdown(); }

void HttpClient::Send(const Endpoint& endpoint, ClientRequest request, Callback done) {
  auto op = std::make_shared<internal::Op>();
  op->endpoint = endpoint;
  op->key = endpoint.ToString();
  op->done = std::move(done);
  op->deadline = request.deadline.value_or(steady_clock::now() + core_->options.default_timeout);
  auto& m = op->message;
  m.version(11);
  const auto verb = bhttp::string_to_verb(request.method);
  if (verb == bhttp::verb::unknown || request.target.empty() || request.target[0] != '/') {
    Status bad = InvalidArgument("bad request: method '" + request.method + "', target '" +
                                 request.target + "'");
    bool stopping = false;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      stopping = core_->stopping;
    }
    // After Shutdown the loops are gone: complete here, as Submit does.
    if (stopping) return core_->Finish(op, std::move(bad));
    core_->FinishLater(op, std::move(bad));
    return;
  }
  m.method(verb);
  m.target(request.target);
  m.set(bhttp::field::host, endpoint.ToString());
  m.set(bhttp::field::user_agent, core_->options.user_agent);
  for (const auto& [name, value] : request.headers) {
    if (value.find_first_of("\r\n") != std::string::npos ||
        name.find_first_of("\r\n:") != std::string::npos) {
      continue;
    }
    m.set(name, value);
  }
  if (!request.content_type.empty()) m.set(bhttp::field::content_type, request.content_type);
  m.keep_alive(true);
  m.body() = request.body;
  m.prepare_payload();
  op->request = std::move(request);
  op->request.body.clear();  // the message holds it
  core_->Submit(std::move(op));
}

Result<ClientResponse> HttpClient::SendSync(const Endpoint& endpoint, ClientRequest request) {
  if (core_->OnIoThread()) {
    return FailedPrecondition("HttpClient::SendSync called on the client's own I/O thread");
  }
  auto promise = std::make_shared<std::promise<Result<ClientResponse>>>();
  auto future = promise->get_future();
  Send(endpoint, std::move(request),
       [promise](Result<ClientResponse> r) { promise->set_value(std::move(r)); });
  return future.get();
}

HttpClient::Stats HttpClient::stats() const {
  std::lock_guard<std::mutex> lock(core_->mu);
  Stats s = core_->counters;
  for (const auto& [key, pool] : core_->pools) {
    s.open += pool.open;
    s.idle += pool.idle.size();
    s.waiting += pool.waiting.size();
  }
  return s;
}

}  // namespace infermesh::http
