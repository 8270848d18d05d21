#include "jobs/spool.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/log.h"
#include "core/metrics.h"
#include "jobs/api.h"

namespace infermesh::jobs {

namespace fs = std::filesystem;

namespace {

struct SpoolMetrics {
  metrics::Counter& accepted;
  metrics::Counter& refused;
  metrics::Histogram& pickup;
  static SpoolMetrics& Get() {
    auto& reg = metrics::Registry::Global();
    auto& files = reg.Counter("infermesh_jobs_spool_files_total",
                              "Spool submissions taken, by result (accepted, refused)", {"result"});
    static SpoolMetrics m{files.WithLabels({"accepted"}), files.WithLabels({"refused"}),
                          reg.Histogram("infermesh_jobs_spool_pickup_seconds",
                                        "From a spool file's last change to its job being stored",
                                        {}, metrics::ExponentialBuckets(0.001, 2, 16))
                              .WithLabels({})};
    return m;
  }
};

bool Ignored(const std::string& name) {
  auto ends = [&](std::string_view suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return name.empty() || name[0] == '.' || ends(".tmp") || ends(".partial") || ends(".error");
}

std::optional<std::string> ReadFile(const fs::path& p, size_t max, std::string* why) {
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    *why = "cannot read " + p.string();
    return std::nullopt;
  }
  std::string body;
  body.resize(max + 1);
  f.read(body.data(), static_cast<std::streamsize>(body.size()));
  body.resize(static_cast<size_t>(f.gcount()));
  if (body.size() > max) {
    *why = "the file is larger than " + std::to_string(max) + " bytes";
    return std::nullopt;
  }
  return body;
}

}  // namespace

Result<std::unique_ptr<Spool>> Spool::Start(SpoolOptions options, SubmitFn submit,
                                            OutcomeFn outcome) {
  std::unique_ptr<Spool> s(new Spool(std::move(options)));
  s->submit_ = std::move(submit);
  s->outcome_ = std::move(outcome);
  const fs::path dir(s->options_.dir);
  for (const char* sub : {"incoming", "accepted", "done", "failed"}) {
    std::error_code ec;
    fs::create_directories(dir / sub, ec);
    if (ec) {
      return Status(StatusCode::kUnavailable,
                    "spool: cannot create " + (dir / sub).string() + ": " + ec.message());
    }
  }
  s->inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (s->inotify_fd_ < 0 || inotify_add_watch(s->inotify_fd_, (dir / "incoming").c_str(),
                                              IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    log::Warn("spool: inotify unavailable; rescanning only",
              {{"dir", s->options_.dir}, {"why", std::strerror(errno)}});
  }
  s->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->wake_fd_ < 0) return Status(StatusCode::kInternal, "spool: eventfd failed");
  // Adopt accepted/: jobs that finished while the service was down move on now.
  {
    std::lock_guard<std::mutex> lock(s->mu_);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir / "accepted")) {
      if (e.is_regular_file()) names.push_back(e.path().filename().string());
    }
    for (const auto& name : names) {
      std::string why;
      auto body = ReadFile(dir / "accepted" / name, s->options_.max_file_bytes, &why);
      if (!body) continue;
      auto sub = ParseSubmission(*body);
      if (!sub.ok()) continue;
      s->accepted_[sub->id].push_back(name);
    }
  }
  std::vector<std::string> ids;
  for (const auto& kv : s->accepted_) ids.push_back(kv.first);
  for (const auto& id : ids) {
    if (auto o = s->outcome_(id)) s->JobFinished(id, o->first, o->second);
  }
  s->ScanNow();
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

Spool::~Spool() { Stop(); }

void Spool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  inotify_fd_ = wake_fd_ = -1;
}

void Spool::Loop() {
  for (;;) {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
    const int n = ::poll(fds, inotify_fd_ >= 0 ? 2 : 1, static_cast<int>(options_.rescan.count()));
    if (n > 0 && (fds[0].revents & POLLIN)) return;
    if (n > 0 && inotify_fd_ >= 0 && (fds[1].revents & POLLIN)) {
      alignas(inotify_event) char buf[4096];
      while (::read(inotify_fd_, buf, sizeof(buf)) > 0) {
      }
    }
    try {
      ScanNow();
    } catch (const std::exception& e) {
      log::Error("spool: scan failed", {{"dir", options_.dir}, {"why", e.what()}});
    }
  }
}

void Spool::ScanNow() {
  std::lock_guard<std::mutex> scan(scan_mu_);
  const fs::path incoming = fs::path(options_.dir) / "incoming";
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(incoming, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!Ignored(name) && it->is_regular_file()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) Take(name);
}

void Spool::Take(const std::string& name) {
  const fs::path path = fs::path(options_.dir) / "incoming" / name;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;  // taken meanwhile
  std::string why;
  auto body = ReadFile(path, options_.max_file_bytes, &why);
  auto& m = SpoolMetrics::Get();
  if (!body) {
    m.refused.Inc();
    Move("incoming", name, "failed", why);
    return;
  }
  auto id = submit_(*body);
  if (!id.ok() && (id.error().status == 429 || id.error().status >= 500)) {
    // The queue is full or the store busy: not this file's fault; the next scan retries.
    log::Warn("spool: submission deferred", {{"file", name}, {"why", id.error().message}});
    return;
  }
  if (!id.ok()) {
    m.refused.Inc();
    Move("incoming", name, "failed", std::to_string(id.error().status) + " " + id.error().message);
    log::Info("spool: submission refused", {{"file", name}, {"why", id.error().message}});
    return;
  }
  const double mtime = static_cast<double>(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec * 1e-9;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  m.pickup.Observe(std::max(0.0, static_cast<double>(now.tv_sec) + now.tv_nsec * 1e-9 - mtime));
  m.accepted.Inc();
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::string target = name;
    for (int k = 1; fs::exists(fs::path(options_.dir) / "accepted" / target); ++k) {
      target = name + "." + std::to_string(k);
    }
    std::error_code ec;
    fs::rename(path, fs::path(options_.dir) / "accepted" / target, ec);
    if (ec) {
      log::Error("spool: cannot move a file to accepted/", {{"file", name}, {"why", ec.message()}});
      return;
    }
    accepted_[*id].push_back(target);
  }
  // A resubmitted id may name a job that has already finished.
  if (auto o = outcome_(*id)) JobFinished(*id, o->first, o->second);
}

void Spool::Move(const std::string& from_dir, const std::string& name, const std::string& to_dir,
                 const std::string& error) {
  const fs::path dir(options_.dir);
  std::string target = name;
  for (int k = 1;
       fs::exists(dir / to_dir / target) || fs::exists(dir / to_dir / (target + ".error")); ++k) {
    target = name + "." + std::to_string(k);
  }
  std::error_code ec;
  if (!error.empty()) {
    // The reason first, whole (written under a temporary name, then renamed), so that
    // whoever sees the file in failed/ finds its .error complete beside it.
    const fs::path tmp = dir / to_dir / ("." + target + ".error.tmp");
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f << error << "\n";
    }
    fs::rename(tmp, dir / to_dir / (target + ".error"), ec);
  }
  fs::rename(dir / from_dir / name, dir / to_dir / target, ec);
  if (ec) {
    log::Error("spool: cannot move a file",
               {{"file", name}, {"to", to_dir}, {"why", ec.message()}});
  }
}

void Spool::JobFinished(const std::string& id, bool succeeded, const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = accepted_.find(id);
  if (it == accepted_.end()) return;
  const std::vector<std::string> names = std::move(it->second);
  accepted_.erase(it);
  for (const auto& name : names) {
    Move("accepted", name, succeeded ? "done" : "failed", succeeded ? "" : error);
  }
}

}  // namespace infermesh::jobs
