#include "cli/bench_load.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

namespace infermesh::cli {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// One client event loop with its share of the connections and of the rate. Request
// k of this loop is global request k * stride + offset, so loops send different bodies.
class Generator {
 public:
  Generator(const LoadOptions& o, const std::vector<std::string>& requests, tcp::endpoint ep,
            int connections, double rate, int64_t start_ns, uint64_t stride, uint64_t offset,
            uint64_t max_requests)
      : o_(o),
        max_requests_(max_requests),
        requests_(requests),
        endpoint_(ep),
        closed_loop_(rate <= 0),
        schedule_(start_ns, rate),
        start_ns_(start_ns),
        measure_ns_(start_ns + static_cast<int64_t>(o.warmup_s * 1e9)),
        end_ns_(start_ns + static_cast<int64_t>(o.duration_s * 1e9)),
        stride_(stride),
        offset_(offset),
        tick_(io_),
        deadline_(io_) {
    // Open loop: requests due strictly before the end are the run.
    total_ = closed_loop_ ? UINT64_MAX : schedule_.DueBy(end_ns_ - 1);
    for (int i = 0; i < connections; ++i) {
      conns_.push_back(std::make_unique<Conn>(io_));
    }
  }

  LoadResult Run() {
    for (auto& c : conns_) Connect(c.get());
    deadline_.expires_at(ToTime(end_ns_ + static_cast<int64_t>(o_.drain_s * 1e9)));
    deadline_.async_wait([this](error_code ec) {
      if (ec) return;
      result_.unfinished += in_flight_window_ + (closed_loop_ ? 0 : due_ - next_send_);
      Stop();
    });
    if (closed_loop_) {
      // Connections that are ready before the start wait idle until then.
      tick_.expires_at(ToTime(start_ns_));
      tick_.async_wait([this](error_code ec) {
        if (ec) return;
        std::vector<Conn*> ready;
        ready.swap(idle_);
        for (Conn* c : ready) OnIdle(c);
      });
    } else {
      Tick();
    }
    io_.run();
    result_.measured_s =
        max_requests_ > 0 ? double(last_answer_ns_ - start_ns_) / 1e9 : o_.duration_s - o_.warmup_s;
    return std::move(result_);
  }

 private:
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io), timer(io) { buf.resize(16 << 10); }
    tcp::socket socket;
    asio::steady_timer timer;  // reconnect backoff
    std::string buf;
    size_t used = 0;
    bool busy = false;
    int64_t intended_ns = 0;
    uint64_t index = 0;
  };

  static asio::steady_timer::time_point ToTime(int64_t ns) {
    return asio::steady_timer::time_point(std::chrono::nanoseconds(ns));
  }

  bool InWindow(int64_t intended_ns) const {
    return intended_ns >= measure_ns_ && intended_ns < end_ns_;
  }

  void Connect(Conn* c) {
    if (stopped_) return;
    c->socket.async_connect(endpoint_, [this, c](error_code ec) {
      if (stopped_) return;
      if (ec) {
        ++result_.io_errors;
        error_code ignored;
        c->socket.close(ignored);
        Reconnect(c, std::chrono::milliseconds(100));
        return;
      }
      error_code ignored;
      c->socket.set_option(tcp::no_delay(true), ignored);
      c->used = 0;
      OnIdle(c);
    });
  }

  void Reconnect(Conn* c, std::chrono::milliseconds backoff) {
    c->timer.expires_after(backoff);
    c->timer.async_wait([this, c](error_code ec) {
      if (!ec) Connect(c);
    });
  }

  // Open loop: moves the due horizon forward, hands due requests to idle
  // connections and sleeps until the next request is due.
  void Tick() {
    if (stopped_) return;
    due_ = std::min(total_, schedule_.DueBy(NowNs()));
    Dispatch();
    if (due_ < total_) {
      tick_.expires_at(ToTime(schedule_.IntendedStartNs(due_)));
      tick_.async_wait([this](error_code ec) {
        if (!ec) Tick();
      });
    } else {
      MaybeDone();
    }
  }

  void Dispatch() {
    while (next_send_ < due_ && !idle_.empty()) {
      Conn* c = idle_.back();
      idle_.pop_back();
      Send(c, next_send_, schedule_.IntendedStartNs(next_send_));
      ++next_send_;
    }
    result_.max_backlog = std::max<uint64_t>(result_.max_backlog, due_ - next_send_);
  }

  void OnIdle(Conn* c) {
    if (stopped_) return;
    if (closed_loop_) {
      const int64_t now = NowNs();
      const bool more = max_requests_ == 0 || next_send_ < max_requests_;
      if (now >= start_ns_ && now < end_ns_ && more) {
        Send(c, next_send_++, now);
        return;
      }
      idle_.push_back(c);
      if (now >= end_ns_ || !more) MaybeDone();
      return;
    }
    idle_.push_back(c);
    Dispatch();
    MaybeDone();
  }

  void Send(Conn* c, uint64_t k, int64_t intended_ns) {
    c->busy = true;
    c->intended_ns = intended_ns;
    c->index = k * stride_ + offset_;
    if (InWindow(intended_ns)) ++in_flight_window_;
    ++result_.sent;
    const std::string& req = requests_[c->index % requests_.size()];
    asio::async_write(c->socket, asio::buffer(req), [this, c](error_code ec, size_t) {
      if (stopped_) return;
      if (ec) return Fail(c);
      Read(c);
    });
  }

  void Read(Conn* c) {
    if (c->used == c->buf.size()) c->buf.resize(c->buf.size() * 2);
    c->socket.async_read_some(asio::buffer(c->buf.data() + c->used, c->buf.size() - c->used),
                              [this, c](error_code ec, size_t n) {
                                if (stopped_) return;
                                if (ec) return Fail(c);
                                c->used += n;
                                OnData(c);
                              });
  }

  void OnData(Conn* c) {
    auto head = ParseResponseHead(std::string_view(c->buf.data(), c->used));
    if (!head) return Read(c);
    if (head->status < 0) return Fail(c);
    const size_t total = head->head_bytes + head->body_bytes;
    if (c->used < total) {
      if (c->buf.size() < total) c->buf.resize(total);
      return Read(c);
    }
    if (o_.inspect_node_id && head->status >= 200 && head->status < 300 &&
        InWindow(c->intended_ns)) {
      std::string node;
      bool cached = false;
      ScanNodeFields(std::string_view(c->buf.data() + head->head_bytes, head->body_bytes), &node,
                     &cached);
      NodeTally& t = result_.per_node[node.empty() ? "(none)" : node];
      ++t.responses;
      t.cached += cached;
    }
    std::memmove(c->buf.data(), c->buf.data() + total, c->used - total);
    c->used -= total;
    Complete(c, head->status);
    if (head->close) {
      error_code ignored;
      c->socket.close(ignored);
      c->used = 0;
      Connect(c);
      return;
    }
    OnIdle(c);
  }

  void Complete(Conn* c, int status) {
    const int64_t now = NowNs();
    c->busy = false;
    last_answer_ns_ = now;
    if (o_.completed) o_.completed->fetch_add(1, std::memory_order_relaxed);
    const bool ok = status >= 200 && status < 300;
    if (ok && now >= measure_ns_ && now <= end_ns_) ++result_.ok;
    if (InWindow(c->intended_ns)) {
      --in_flight_window_;
      result_.latencies.Record(now - c->intended_ns);
      if (ok) {
        result_.ok_latencies.Record(now - c->intended_ns);
      } else {
        ++result_.non_2xx[status];
      }
    }
  }

  void Fail(Conn* c) {
    if (c->busy) {
      c->busy = false;
      if (InWindow(c->intended_ns)) {
        --in_flight_window_;
        ++result_.io_errors;
      }
    }
    error_code ignored;
    c->socket.close(ignored);
    c->used = 0;
    Reconnect(c, std::chrono::milliseconds(10));
  }

  void MaybeDone() {
    if (stopped_) return;
    const bool generating =
        closed_loop_ ? NowNs() < end_ns_ && (max_requests_ == 0 || next_send_ < max_requests_)
                     : due_ < total_;
    if (generating || next_send_ < due_) return;
    for (const auto& c : conns_) {
      if (c->busy) return;
    }
    Stop();
  }

  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    tick_.cancel();
    deadline_.cancel();
    for (auto& c : conns_) {
      error_code ignored;
      c->timer.cancel();
      c->socket.close(ignored);
    }
    io_.stop();
  }

  const LoadOptions& o_;
  uint64_t max_requests_;  // this loop's share of LoadOptions::max_requests (0: none)
  int64_t last_answer_ns_ = 0;
  const std::vector<std::string>& requests_;
  tcp::endpoint endpoint_;
  bool closed_loop_;
  OpenLoopSchedule schedule_;
  int64_t start_ns_;
  int64_t measure_ns_;
  int64_t end_ns_;
  uint64_t stride_;
  uint64_t offset_;
  asio::io_context io_{1};
  asio::steady_timer tick_;
  asio::steady_timer deadline_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> idle_;
  uint64_t total_ = 0;      // open loop: requests in the run
  uint64_t due_ = 0;        // open loop: requests due so far
  uint64_t next_send_ = 0;  // next request to send (closed loop: the counter)
  uint64_t in_flight_window_ = 0;
  bool stopped_ = false;
  LoadResult result_;
};

}  // namespace

std::optional<ResponseHead> ParseResponseHead(std::string_view buffer) {
  const size_t end = buffer.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  ResponseHead head;
  head.head_bytes = end + 4;
  std::string_view lines = buffer.substr(0, end);
  size_t eol = lines.find("\r\n");
  std::string_view status_line = lines.substr(0, eol);
  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") {
    head.status = -1;
    return head;
  }
  const size_t sp = status_line.find(' ');
  if (sp == std::string_view::npos || sp + 4 > status_line.size()) {
    head.status = -1;
    return head;
  }
  int status = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    const char ch = status_line[i];
    if (ch < '0' || ch > '9') {
      head.status = -1;
      return head;
    }
    status = status * 10 + (ch - '0');
  }
  const bool http10 = status_line.substr(0, 8) == "HTTP/1.0";
  head.close = http10;
  bool has_length = false;
  while (eol != std::string_view::npos) {
    lines.remove_prefix(eol + 2);
    eol = lines.find("\r\n");
    std::string_view line = lines.substr(0, eol);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = Trim(line.substr(0, colon));
    const std::string_view value = Trim(line.substr(colon + 1));
    if (IEquals(name, "content-length")) {
      size_t n = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9') {
          head.status = -1;
          return head;
        }
        n = n * 10 + static_cast<size_t>(ch - '0');
      }
      head.body_bytes = n;
      has_length = true;
    } else if (IEquals(name, "connection")) {
      if (IEquals(value, "close")) head.close = true;
      if (IEquals(value, "keep-alive")) head.close = false;
    } else if (IEquals(name, "transfer-encoding")) {
      head.status = -1;
      return head;
    }
  }
  // 1xx/204/304 carry no body; anything else must say how long it is.
  if (!has_length && !(status < 200 || status == 204 || status == 304)) {
    head.status = -1;
    return head;
  }
  head.status = status;
  return head;
}

void ScanNodeFields(std::string_view body, std::string* node_id, bool* cached) {
  node_id->clear();
  *cached = false;
  auto value_at = [&](std::string_view key) -> size_t {
    const size_t k = body.find(key);
    if (k == std::string_view::npos) return std::string_view::npos;
    size_t i = k + key.size();
    while (i < body.size() && (body[i] == ' ' || body[i] == ':')) ++i;
    return i;
  };
  if (size_t i = value_at("\"node_id\""); i < body.size() && body[i] == '"') {
    const size_t end = body.find('"', i + 1);
    if (end != std::string_view::npos) node_id->assign(body.substr(i + 1, end - i - 1));
  }
  if (size_t i = value_at("\"cached\""); i < body.size()) {
    *cached = body.substr(i, 4) == "true";
  }
}

LoadResult RunLoad(const LoadOptions& o) {
  LoadResult merged;
  std::vector<std::string> requests;
  requests.reserve(o.bodies.size());
  for (const auto& body : o.bodies) {
    std::string req = "POST " + o.path + " HTTP/1.1\r\nHost: " + o.host + ":" +
                      std::to_string(o.port) + "\r\nContent-Type: " + o.content_type +
                      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    req += body;
    requests.push_back(std::move(req));
  }
  if (requests.empty()) return merged;

  asio::io_context resolve_io;
  tcp::resolver resolver(resolve_io);
  error_code ec;
  auto endpoints = resolver.resolve(o.host, std::to_string(o.port), ec);
  if (ec || endpoints.empty()) {
    merged.io_errors = 1;
    return merged;
  }
  const tcp::endpoint ep = *endpoints.begin();

  const int threads = std::max(1, std::min(o.threads, std::max(1, o.connections)));
  // Starts a little ahead, so every loop is running before its first request is due.
  const int64_t start = NowNs() + 20'000'000;
  const double period_ns = o.rate > 0 ? 1e9 / o.rate : 0;
  std::vector<LoadResult> parts(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const int conns = o.connections / threads + (t < o.connections % threads ? 1 : 0);
    const uint64_t share = o.max_requests == 0
                               ? 0
                               : o.max_requests / uint64_t(threads) +
                                     (uint64_t(t) < o.max_requests % uint64_t(threads) ? 1 : 0);
    if (o.max_requests > 0 && share == 0) continue;
    pool.emplace_back([&, t, conns, share] {
      Generator g(o, requests, ep, conns, o.rate / threads,
                  start + static_cast<int64_t>(period_ns * t), static_cast<uint64_t>(threads),
                  static_cast<uint64_t>(t), share);
      parts[t] = g.Run();
    });
  }
  for (auto& th : pool) th.join();
  for (auto& p : parts) {
    merged.sent += p.sent;
    merged.ok += p.ok;
    for (const auto& [status, n] : p.non_2xx) merged.non_2xx[status] += n;
    merged.io_errors += p.io_errors;
    merged.unfinished += p.unfinished;
    merged.max_backlog += p.max_backlog;
    merged.measured_s = std::max(merged.measured_s, p.measured_s);
    for (const auto& [node, t] : p.per_node) {
      merged.per_node[node].responses += t.responses;
      merged.per_node[node].cached += t.cached;
    }
    merged.latencies.Merge(p.latencies);
    merged.ok_latencies.Merge(p.ok_latencies);
  }
  return merged;
}

}  // namespace infermesh::cli
