// ProcessSupervisor: runs child processes (the roles of `infermesh up`), prefixes every
// line they print with their role, restarts one that dies with a backoff, counts the
// restarts, and stops them all in a given order.
//
//   ProcessSupervisor sup(SupervisorOptions{});
//   int gw = sup.Add({"gateway", {"/proc/self/exe", "gateway", "--port", "0"}, /*stop_order=*/1});
//   sup.Start();
//   auto port = sup.WaitForPort(gw, std::chrono::seconds(30));  // from its "listening on" line
//   int w = sup.Add({"worker-1", {...}, 2});                       // started at once
//   ...
//   sup.Stop();  // stop_order 0 first, then 1, ...: SIGTERM, then SIGKILL after stop_timeout
//
// Why a process per role rather than threads: a role that crashes (or is killed) takes
// nothing else with it, and each role is the same binary a user runs on its own, so `up`
// tests the deployments it stands in for.
//
// Children: every fork and exec happens on the supervisor's one monitor thread, because
// PR_SET_PDEATHSIG fires when the *thread* that forked exits; with it, a supervisor killed
// with SIGKILL still takes its children down (they get SIGTERM and drain). Each child runs
// in a process group of its own, so a terminal's Ctrl-C reaches only the supervisor, which
// then stops the roles in order (the job service before the gateway it sends to, the
// gateway before the workers it forwards to). Its stdin is /dev/null, every descriptor
// above 2 is closed, and its signal mask and dispositions are reset.
//
// Restarts: a child that exits while the supervisor runs is started again after a
// backoff that doubles from backoff_min to backoff_max, and goes back to backoff_min once
// a child has stayed up for stable_after. Until a child has printed its "listening on"
// line it is "starting"; WaitForPort() reports an exit before that as an error, so a role
// that cannot start (a bad flag, a port in use) fails `up` instead of looping.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/status.h"

namespace infermesh::cli {

struct ChildSpec {
  std::string role;               // the prefix of its lines, and its label in metrics
  std::vector<std::string> argv;  // argv[0] is the program (a path; PATH is not searched)
  int stop_order = 0;             // lower stops first
};

struct SupervisorOptions {
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds stable_after{60000};
  std::chrono::milliseconds stop_timeout{40000};  // SIGTERM, then SIGKILL after this
  // Each line a child prints (without its newline); `is_stderr` says which stream.
  // Default: "role | line" on the supervisor's stderr (both streams: stdout stays the
  // caller's own). Called from reader threads, one call at a time.
  std::function<void(std::string_view role, bool is_stderr, std::string_view line)> on_line;
};

struct ChildState {
  std::string role;
  pid_t pid = 0;         // 0 while not running
  bool running = false;  // a process exists (it may not listen yet)
  int port = 0;          // from the current process's "listening on" line; 0 until then
  uint64_t starts = 0;
  uint64_t restarts = 0;  // starts after an unexpected exit
  uint64_t exits = 0;     // unexpected exits
  std::string last_exit;  // "exit 1", "signal 9 (Killed)"; empty if none
  double uptime_s = 0;    // of the current process
};

class ProcessSupervisor {
 public:
  explicit ProcessSupervisor(SupervisorOptions options);
  ~ProcessSupervisor();  // Stop()
  ProcessSupervisor(const ProcessSupervisor&) = delete;
  ProcessSupervisor& operator=(const ProcessSupervisor&) = delete;

  // Registers a child and returns its index. Before Start() it starts with the others;
  // afterwards, at once (on the monitor thread). Not after Stop().
  int Add(ChildSpec spec);
  // Replaces a child's argv for its next start (a restart), e.g. to pin the port its
  // first process chose.
  void SetArgv(int index, std::vector<std::string> argv);
  // Starts the monitor thread, which starts every child added so far.
  void Start();
  // The port the child's current process printed ("... listening on HOST:PORT"); an error
  // when it exits first, or on timeout.
  [[nodiscard]] Result<int> WaitForPort(int index, std::chrono::milliseconds timeout);
  std::vector<ChildState> Snapshot() const;
  // Stops restarting, then stops the children by stop_order (equal orders together):
  // SIGTERM to the child, SIGKILL after stop_timeout. Returns when all have exited and
  // their output is read. Idempotent.
  void Stop();

 private:
  struct Child;
  void Monitor();
  void Spawn(Child& c);  // monitor thread only
  void Reap();           // monitor thread only
  void StopGroup(std::vector<Child*> group);
  void ReadOutput(Child* c, int out_fd, int err_fd, uint64_t generation);
  void EmitLine(const std::string& role, bool is_stderr, std::string_view line);

  SupervisorOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Child>> children_;
  std::deque<int> to_spawn_;
  bool started_ = false, stopping_ = false, stopped_ = false;
  std::thread monitor_;
  std::mutex emit_mu_;
};

// "infermesh worker listening on 127.0.0.1:41234" -> 41234; 0 when the line is not one.
int ListeningPort(std::string_view line);

}  // namespace infermesh::cli
