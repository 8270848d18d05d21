// See supervisor.h. The monitor thread owns every fork, waitpid and kill; reader threads
// (one per started process) only read its two pipes and report lines and the port.
#include "cli/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/log.h"

namespace infermesh::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  return "status " + std::to_string(status);
}

}  // namespace

int ListeningPort(std::string_view line) {
  constexpr std::string_view kMarker = " listening on ";
  const size_t at = line.find(kMarker);
  if (line.substr(0, 10) != "infermesh " || at == std::string_view::npos) return 0;
  std::string_view rest = line.substr(at + kMarker.size());
  while (!rest.empty() && (rest.back() == '\r' || rest.back() == ' ')) rest.remove_suffix(1);
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= rest.size()) return 0;
  int port = 0;
  for (char ch : rest.substr(colon + 1)) {
    if (ch < '0' || ch > '9') return 0;
    port = port * 10 + (ch - '0');
    if (port > 65535) return 0;
  }
  return port;
}

struct ProcessSupervisor::Child {
  ChildSpec spec;
  pid_t pid = 0;
  uint64_t generation = 0;  // one per started process; readers of old ones stop reporting
  int port = 0;
  uint64_t starts = 0, restarts = 0, exits = 0;
  std::string last_exit;
  Clock::time_point started_at{};
  bool restart_pending = false;
  Clock::time_point restart_at{};
  std::chrono::milliseconds backoff{0};
  bool abandon_readers = false;  // set by Stop() when output never reaches EOF
  int readers = 0;               // reader threads still running
};

ProcessSupervisor::ProcessSupervisor(SupervisorOptions options) : options_(std::move(options)) {
  if (options_.backoff_min.count() <= 0) options_.backoff_min = std::chrono::milliseconds(1);
  if (options_.backoff_max < options_.backoff_min) options_.backoff_max = options_.backoff_min;
}

ProcessSupervisor::~ProcessSupervisor() { Stop(); }

int ProcessSupervisor::Add(ChildSpec spec) {
  std::lock_guard<std::mutex> lock(mu_);
  auto c = std::make_unique<Child>();
  c->spec = std::move(spec);
  c->backoff = options_.backoff_min;
  children_.push_back(std::move(c));
  const int index = int(children_.size()) - 1;
  if (!stopping_) to_spawn_.push_back(index);
  cv_.notify_all();
  return index;
}

void ProcessSupervisor::SetArgv(int index, std::vector<std::string> argv) {
  std::lock_guard<std::mutex> lock(mu_);
  if (index >= 0 && size_t(index) < children_.size()) {
    children_[size_t(index)]->spec.argv = std::move(argv);
  }
}

void ProcessSupervisor::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  monitor_ = std::thread([this] { Monitor(); });
}

Result<int> ProcessSupervisor::WaitForPort(int index, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (index < 0 || size_t(index) >= children_.size()) return InvalidArgument("no such child");
  Child& c = *children_[size_t(index)];
  const uint64_t exits = c.exits;
  const bool ok =
      cv_.wait_for(lock, timeout, [&] { return c.port > 0 || c.exits != exits || stopping_; });
  if (c.port > 0) return c.port;
  if (c.exits != exits) {
    return Unavailable(c.spec.role + " exited before it listened (" + c.last_exit +
                       "); see its lines above");
  }
  if (stopping_) return Status(StatusCode::kCancelled, "stopping");
  (void)ok;
  return DeadlineExceeded(c.spec.role + " did not listen within " +
                          std::to_string(timeout.count() / 1000) + " s");
}

std::vector<ChildState> ProcessSupervisor::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = Clock::now();
  std::vector<ChildState> out;
  for (const auto& c : children_) {
    ChildState s;
    s.role = c->spec.role;
    s.pid = c->pid;
    s.running = c->pid > 0;
    s.port = c->pid > 0 ? c->port : 0;
    s.starts = c->starts;
    s.restarts = c->restarts;
    s.exits = c->exits;
    s.last_exit = c->last_exit;
    s.uptime_s = c->pid > 0 ? std::chrono::duration<double>(now - c->started_at).count() : 0;
    out.push_back(std::move(s));
  }
  return out;
}

void ProcessSupervisor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    cv_.notify_all();
    if (!started_) return;
  }
  monitor_.join();
}

void ProcessSupervisor::EmitLine(const std::string& role, bool is_stderr, std::string_view line) {
  std::lock_guard<std::mutex> lock(emit_mu_);
  if (options_.on_line) {
    options_.on_line(role, is_stderr, line);
    return;
  }
  std::string out = role;
  if (out.size() < 8) out.resize(8, ' ');
  out += " | ";
  out += line;
  out += '\n';
  fwrite(out.data(), 1, out.size(), stderr);
  fflush(stderr);
}

void ProcessSupervisor::ReadOutput(Child* c, int out_fd, int err_fd, uint64_t generation) {
  // Catch at the thread boundary: a throwing on_line must not end the process.
  std::string bufs[2];
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_fds = 2;
  try {
    while (open_fds > 0) {
      const int n = poll(fds, 2, 200);
      if (n < 0 && errno != EINTR) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (c->abandon_readers) break;
      }
      if (n <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char chunk[4096];
        const ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) {
          if (!bufs[i].empty()) EmitLine(c->spec.role, i == 1, bufs[i]);
          bufs[i].clear();
          close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
          continue;
        }
        bufs[i].append(chunk, size_t(got));
        size_t start = 0;
        for (size_t nl; (nl = bufs[i].find('\n', start)) != std::string::npos; start = nl + 1) {
          std::string_view line(bufs[i].data() + start, nl - start);
          if (i == 0) {
            if (int port = ListeningPort(line); port > 0) {
              std::lock_guard<std::mutex> lock(mu_);
              if (c->generation == generation && c->port == 0) {
                c->port = port;
                cv_.notify_all();
              }
            }
          }
          EmitLine(c->spec.role, i == 1, line);
        }
        bufs[i].erase(0, start);
        if (bufs[i].size() > (64u << 10)) {  // a line without end: pass it on in pieces
          EmitLine(c->spec.role, i == 1, bufs[i]);
          bufs[i].clear();
        }
      }
    }
  } catch (const std::exception& e) {
    log::Error("supervisor: reading a child's output failed",
               {{"role", c->spec.role}, {"error", e.what()}});
  } catch (...) {
    log::Error("supervisor: reading a child's output failed", {{"role", c->spec.role}});
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  std::lock_guard<std::mutex> lock(mu_);
  --c->readers;
  cv_.notify_all();
}

void ProcessSupervisor::Spawn(Child& c) {
  // Everything the child needs is built before fork(): after it, only async-signal-safe
  // calls until exec.
  std::vector<char*> argv;
  for (auto& a : c.spec.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2], err[2];
  if (c.spec.argv.empty() || pipe2(out, O_CLOEXEC) != 0) {
    c.last_exit = c.spec.argv.empty() ? "no program" : std::string("pipe: ") + strerror(errno);
    ++c.exits;
    cv_.notify_all();
    return;
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    c.last_exit = std::string("pipe: ") + strerror(errno);
    ++c.exits;
    cv_.notify_all();
    return;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the supervisor died before prctl
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP}) sigaction(sig, &dfl, nullptr);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 4096; ++fd) close(fd);
    }
    execv(argv[0], argv.data());
    const char msg[] = "exec failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(out[0]);
    close(err[0]);
    c.last_exit = std::string("fork: ") + strerror(errno);
    ++c.exits;
    cv_.notify_all();
    return;
  }
  c.pid = pid;
  c.port = 0;
  ++c.generation;
  ++c.starts;
  c.started_at = Clock::now();
  ++c.readers;
  std::thread(&ProcessSupervisor::ReadOutput, this, &c, out[0], err[0], c.generation).detach();
  log::Debug("supervisor: started", {{"role", c.spec.role}, {"pid", int64_t{pid}}});
}

void ProcessSupervisor::Reap() {
  const auto now = Clock::now();
  for (auto& cp : children_) {
    Child& c = *cp;
    if (c.pid <= 0) continue;
    int status = 0;
    const pid_t r = waitpid(c.pid, &status, WNOHANG);
    if (r != c.pid) continue;
    c.pid = 0;
    c.port = 0;
    if (stopping_) continue;  // an expected exit
    ++c.exits;
    c.last_exit = DescribeExit(status);
    if (now - c.started_at >= options_.stable_after) c.backoff = options_.backoff_min;
    c.restart_pending = true;
    c.restart_at = now + c.backoff;
    log::Warn("role exited; restarting it", {{"role", c.spec.role},
                                             {"exit", c.last_exit},
                                             {"restart_in_ms", int64_t(c.backoff.count())},
                                             {"restarts", c.restarts + 1}});
    c.backoff = std::min(options_.backoff_max, c.backoff * 2);
    cv_.notify_all();
  }
}

void ProcessSupervisor::Monitor() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    // Catch at the thread boundary: if this thread ended, every child would get SIGTERM
    // (PR_SET_PDEATHSIG) and nothing would restart them.
    try {
      while (!to_spawn_.empty()) {
        const int i = to_spawn_.front();
        to_spawn_.pop_front();
        Spawn(*children_[size_t(i)]);
      }
      Reap();
      const auto now = Clock::now();
      for (auto& c : children_) {
        if (c->restart_pending && c->restart_at <= now) {
          c->restart_pending = false;
          ++c->restarts;
          Spawn(*c);
        }
      }
    } catch (const std::exception& e) {
      log::Error("supervisor: monitor step failed; retrying", {{"error", e.what()}});
    }
    cv_.wait_for(lock, std::chrono::milliseconds(50),
                 [&] { return stopping_ || !to_spawn_.empty(); });
  }
  // Ordered stop, here: the children's PR_SET_PDEATHSIG is tied to this thread.
  std::vector<int> orders;
  for (auto& c : children_) orders.push_back(c->spec.stop_order);
  std::sort(orders.begin(), orders.end());
  orders.erase(std::unique(orders.begin(), orders.end()), orders.end());
  for (int order : orders) {
    std::vector<Child*> group;
    for (auto& c : children_) {
      if (c->spec.stop_order == order) group.push_back(c.get());
    }
    lock.unlock();
    StopGroup(std::move(group));
    lock.lock();
  }
  // Output of exited children reaches EOF at once; give stragglers (a grandchild holding
  // a pipe) two seconds, then stop reading.
  const auto read_until = Clock::now() + std::chrono::seconds(2);
  auto readers_done = [&] {
    for (auto& c : children_) {
      if (c->readers > 0) return false;
    }
    return true;
  };
  cv_.wait_until(lock, read_until, readers_done);
  for (auto& c : children_) c->abandon_readers = true;
  cv_.wait(lock, readers_done);  // each reader checks the flag within 200 ms
}

void ProcessSupervisor::StopGroup(std::vector<Child*> group) {
  std::vector<std::pair<Child*, pid_t>> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Child* c : group) {
      c->restart_pending = false;
      if (c->pid > 0) live.emplace_back(c, c->pid);
    }
  }
  for (auto& [c, pid] : live) {
    log::Info("stopping role", {{"role", c->spec.role}, {"pid", int64_t{pid}}});
    kill(pid, SIGTERM);
  }
  const auto kill_at = Clock::now() + options_.stop_timeout;
  bool killed = false;
  while (!live.empty()) {
    for (auto it = live.begin(); it != live.end();) {
      int status = 0;
      const pid_t r = waitpid(it->second, &status, WNOHANG);
      if (r == it->second || (r < 0 && errno == ECHILD)) {
        std::lock_guard<std::mutex> lock(mu_);
        it->first->pid = 0;
        it->first->port = 0;
        it = live.erase(it);
      } else {
        ++it;
      }
    }
    if (live.empty()) break;
    if (!killed && Clock::now() >= kill_at) {
      for (auto& [c, pid] : live) {
        log::Warn("role did not stop in time; killing it",
                  {{"role", c->spec.role}, {"pid", int64_t{pid}}});
        kill(pid, SIGKILL);
      }
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace infermesh::cli
