// The HTTP load generator behind `infermesh bench`: keep-alive connections over
// Boost.Asio, driven open-loop (requests due at fixed instants for a target rate,
// latency measured from each intended start) or closed-loop (rate 0: every
// connection sends its next request as soon as the last one is answered).
//
//   LoadOptions o;
//   o.host = "127.0.0.1"; o.port = 8000; o.path = "/embed";
//   o.bodies = {R"({"inputs":"hello"})"};
//   o.rate = 200; o.connections = 64; o.duration_s = 10;
//   LoadResult r = RunLoad(o);
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/bench_stats.h"

namespace infermesh::cli {

struct LoadOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  std::string path = "/embed";
  std::string content_type = "application/json";
  // Request i carries bodies[i % bodies.size()].
  std::vector<std::string> bodies;
  double rate = 0;  // requests/s over all threads; 0 = closed loop
  int connections = 64;
  int threads = 1;  // client event loops; connections and rate are split between them
  double duration_s = 10;
  // Requests due in the first warmup_s are sent but neither timed nor counted.
  double warmup_s = 0;
  // After the duration: how long requests already due may take to be answered.
  double drain_s = 10;
  // Closed loop only: stop after this many requests in all (0: run for duration_s). The
  // run then ends when the last is answered, duration_s is only a cap, and every request
  // is measured (no warm-up).
  uint64_t max_requests = 0;
  // Read "node_id" and "cached" from each 2xx JSON body (/infer answers), per worker.
  bool inspect_node_id = false;
  // When set, incremented once per answered request (any status), for a progress bar.
  std::atomic<uint64_t>* completed = nullptr;
};

// What one worker answered, from the bodies' node_id and cached fields.
struct NodeTally {
  uint64_t responses = 0;
  uint64_t cached = 0;
};

struct LoadResult {
  uint64_t sent = 0;
  uint64_t ok = 0;                  // 2xx, measured window only
  std::map<int, uint64_t> non_2xx;  // by status, measured window only
  uint64_t io_errors = 0;           // connect, read or write failures, malformed responses
  uint64_t unfinished = 0;          // due but not answered by the end of the drain
  uint64_t max_backlog = 0;         // most due requests waiting for a free connection
  double measured_s = 0;            // duration_s - warmup_s
  LatencyRecorder latencies;        // every answered request (any status), measured window
  LatencyRecorder ok_latencies;     // 2xx only
  std::map<std::string, NodeTally> per_node;  // with inspect_node_id
};

// "node_id" and "cached" of one JSON body, found by scanning (no full parse on the hot
// path); node_id empty when absent.
void ScanNodeFields(std::string_view body, std::string* node_id, bool* cached);

LoadResult RunLoad(const LoadOptions& options);

// The head of one HTTP/1.1 response, parsed from the front of a read buffer.
struct ResponseHead {
  int status = 0;
  size_t head_bytes = 0;  // through the blank line
  size_t body_bytes = 0;  // Content-Length
  bool close = false;     // Connection: close
};
// nullopt: the head is not complete yet. A head without Content-Length (or with
// chunked encoding, which the servers here never send) parses with status -1.
std::optional<ResponseHead> ParseResponseHead(std::string_view buffer);

}  // namespace infermesh::cli
