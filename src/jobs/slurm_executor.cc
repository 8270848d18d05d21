#include "jobs/slurm_executor.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <boost/json.hpp>

#include "core/failpoint.h"
#include "core/log.h"
#include "core/metrics.h"
#include "jobs/command.h"

namespace infermesh::jobs {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kMarkerGrace = std::chrono::seconds(45);

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct SlurmMetrics {
  metrics::CounterFamily& errors;
  metrics::Histogram& sbatch_seconds;
  metrics::Counter& submissions;
  metrics::Counter& adopted;
  metrics::Counter& requeued;
  static SlurmMetrics& Get() {
    auto& reg = metrics::Registry::Global();
    static SlurmMetrics m{
        reg.Counter("infermesh_jobs_slurm_errors_total",
                    "Slurm commands that failed to reach the controller or to run, by "
                    "command (sbatch, squeue, scancel)",
                    {"op"}),
        reg.Histogram("infermesh_jobs_sbatch_seconds", "Time sbatch took to accept a job", {},
                      metrics::ExponentialBuckets(0.005, 2, 14))
            .WithLabels({}),
        reg.Counter("infermesh_jobs_slurm_submissions_total", "Jobs submitted with sbatch")
            .WithLabels({}),
        reg.Counter("infermesh_jobs_slurm_adopted_total",
                    "Slurm jobs found by name and adopted instead of submitted again")
            .WithLabels({}),
        reg.Counter("infermesh_jobs_slurm_requeues_total",
                    "Jobs submitted again after NODE_FAIL or PREEMPTED")
            .WithLabels({})};
    return m;
  }
};

std::vector<std::string> SplitIds(const std::string& ids) {
  std::vector<std::string> out;
  std::stringstream ss(ids);
  std::string id;
  while (std::getline(ss, id, ',')) {
    if (!id.empty()) out.push_back(id);
  }
  return out;
}

std::string JoinIds(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out += (out.empty() ? "" : ",") + id;
  return out;
}

// Whether sbatch/squeue failed because the controller (or Slurm) is not there, as opposed
// to refusing the request.
bool Unreachable(const CommandResult& r) {
  const std::string& e = r.err;
  return e.find("Unable to contact slurm controller") != std::string::npos ||
         e.find("Socket timed out") != std::string::npos ||
         e.find("Connection refused") != std::string::npos ||
         e.find("temporarily unable") != std::string::npos ||
         e.find("Communication connection failure") != std::string::npos ||
         e.find("Zero Bytes were transmitted") != std::string::npos ||
         e.find("Munge") != std::string::npos || e.find("munge") != std::string::npos;
}

std::string FirstLine(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  if (line.size() > 300) line.resize(300);
  return line;
}

}  // namespace

SlurmExecutor::SlurmExecutor(SlurmExecutorOptions options, JobStore* store, std::string owner,
                             std::chrono::milliseconds lease)
    : options_(std::move(options)), store_(store), owner_(std::move(owner)), lease_(lease) {}

SlurmExecutor::~SlurmExecutor() { Stop(); }

Status SlurmExecutor::Start() {
  std::error_code ec;
  fs::create_directories(options_.work_dir, ec);
  if (ec) {
    return Status(StatusCode::kUnavailable,
                  "cannot create the Slurm work folder " + options_.work_dir + ": " + ec.message());
  }
  SlurmMetrics::Get();
  thread_ = std::thread([this] { Loop(); });
  renewer_ = std::thread([this] { RenewLoop(); });
  return OkStatus();
}

void SlurmExecutor::Hold(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  held_.insert(id);
}

void SlurmExecutor::Drop(const std::string& id) {
  tracked_.erase(id);
  std::lock_guard<std::mutex> lock(mu_);
  held_.erase(id);
}

void SlurmExecutor::RenewLoop() {
  const auto every = std::max(lease_ / 3, std::chrono::milliseconds(10));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, every, [&] { return stop_; });
    if (stop_) return;
    const std::set<std::string> ids = held_;
    lock.unlock();
    for (const auto& id : ids) {
      try {
        (void)store_->Renew(id, owner_, lease_.count(), NowMs());
      } catch (const std::exception& e) {
        log::Error("slurm: renewing a lease threw", {{"id", id}, {"why", e.what()}});
      }
    }
    lock.lock();
  }
}

void SlurmExecutor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable() && !renewer_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // A graceful stop hands the jobs back without spending an attempt; the next start (or
  // another service) adopts their Slurm jobs by the recorded ids.
  for (const auto& [id, t] : tracked_) {
    auto st = store_->Release(id, owner_, "the job service stopped", NowMs());
    if (!st.ok()) log::Warn("slurm: cannot hand a job back", {{"id", id}, {"why", st.message()}});
  }
  tracked_.clear();
  if (renewer_.joinable()) renewer_.join();
}

void SlurmExecutor::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

std::string SlurmExecutor::Bin(const std::string& name) const {
  return options_.bin_dir.empty() ? name : (fs::path(options_.bin_dir) / name).string();
}

std::string SlurmExecutor::SubmissionDir(const Tracked& t, size_t n) const {
  return (fs::path(options_.work_dir) / t.id / std::to_string(n)).string();
}

void SlurmExecutor::Loop() {
  auto interval = options_.poll_min;
  const auto cap = std::min(options_.poll_max, std::max(lease_ / 3, options_.poll_min));
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    const size_t before = tracked_.size();
    std::map<std::string, int64_t> progress_before;
    for (const auto& [id, t] : tracked_) progress_before[id] = t.done;
    try {
      ClaimNew();
      Reconcile();
    } catch (const std::exception& e) {
      log::Error("slurm: cycle failed", {{"why", e.what()}});
    }
    bool changed = tracked_.size() != before;
    for (const auto& [id, t] : tracked_) {
      auto it = progress_before.find(id);
      changed = changed || it == progress_before.end() || it->second != t.done;
    }
    interval = changed ? options_.poll_min : std::min(interval * 2, cap);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, interval, [&] { return stop_ || woken_; });
    if (woken_) interval = options_.poll_min;
    woken_ = false;
  }
}

void SlurmExecutor::ClaimNew() {
  for (;;) {
    auto claimed = store_->Claim(owner_, {"slurm_script", "slurm_embed"}, JobState::kSubmitting,
                                 lease_.count(), NowMs());
    if (!claimed.ok()) {
      log::Warn("slurm: claim failed", {{"why", claimed.status().ToString()}});
      return;
    }
    if (!claimed->has_value()) return;
    Begin(**claimed);
  }
}

void SlurmExecutor::Begin(const Job& job) {
  Tracked t;
  t.id = job.id;
  if (job.job_class == "slurm_embed") {
    auto spec = ParseSlurmEmbedPayload(job.payload, options_.embed, options_.data_dirs);
    if (!spec.ok()) {
      (void)store_->Transition(job.id, owner_, JobState::kFailed, spec.error().message, NowMs());
      return;
    }
    t.embed = *spec;
    t.spec = spec->slurm;
  } else {
    auto spec = ParseSlurmScriptPayload(job.payload, options_.data_dirs);
    if (!spec.ok()) {
      (void)store_->Transition(job.id, owner_, JobState::kFailed, spec.error().message, NowMs());
      return;
    }
    t.spec = *spec;
  }
  t.tasks = *ArrayTasks(t.spec.array);
  t.slurm_ids = SplitIds(job.slurm_ids);
  tracked_[job.id] = t;
  Hold(job.id);
  Tracked& tr = tracked_[job.id];
  if (!tr.slurm_ids.empty()) {
    // Submitted before this claim (by a process that died): watch it.
    tr.submitted = true;
    tr.requeues = static_cast<int>(tr.slurm_ids.size()) - 1;
    if (job.state != JobState::kRunning) {
      (void)store_->Transition(job.id, owner_, JobState::kRunning,
                               "adopted Slurm job " + tr.slurm_ids.back(), NowMs());
    }
    return;
  }
  SubmitOrAdopt(tr);
}

Result<std::vector<SlurmTask>> SlurmExecutor::Squeue(const std::vector<std::string>& names) {
  std::vector<SlurmTask> all;
  constexpr size_t kPerCall = 200;
  for (size_t i = 0; i < names.size(); i += kPerCall) {
    std::string list;
    for (size_t k = i; k < std::min(names.size(), i + kPerCall); ++k) {
      list += (list.empty() ? "" : ",") + names[k];
    }
    auto r = RunCommand({Bin("squeue"), "-h", "--me", "--states=all", "-o",
                         std::string(kSqueueFormat), "--name=" + list},
                        options_.command_timeout);
    if (!r.ok()) {
      SlurmMetrics::Get().errors.WithLabels({"squeue"}).Inc();
      return r.status();
    }
    if (r->exit_code != 0) {
      SlurmMetrics::Get().errors.WithLabels({"squeue"}).Inc();
      return Status(StatusCode::kUnavailable, "squeue: " + FirstLine(r->err));
    }
    if (r->truncated) {  // rows missing would read as jobs gone
      SlurmMetrics::Get().errors.WithLabels({"squeue"}).Inc();
      return Status(StatusCode::kResourceExhausted, "squeue: its answer was too long");
    }
    for (auto& row : ParseSqueue(r->out)) all.push_back(std::move(row));
  }
  return all;
}

void SlurmExecutor::SetWaiting(const std::string& id, const std::string& why) {
  (void)store_->SetError(id, owner_, "waiting for Slurm: " + why, NowMs());
  (void)store_->Renew(id, owner_, lease_.count(), NowMs());
}

bool SlurmExecutor::SubmitOrAdopt(Tracked& t) {
  const std::string name = SlurmJobName(t.id);
  // Never twice: a job of this name already known to Slurm is this job.
  auto rows = Squeue({name});
  if (!rows.ok()) {
    reachable_ = false;
    SetWaiting(t.id, rows.status().message());
    return false;
  }
  reachable_ = true;
  // The newest job of this name that is not one we already know (a requeue's
  // predecessor stays in squeue for a while).
  std::string found;
  auto newer = [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() > b.size() : a > b;
  };
  for (const auto& row : *rows) {
    const bool known =
        std::find(t.slurm_ids.begin(), t.slurm_ids.end(), row.master_id) != t.slurm_ids.end();
    if (row.name == name && !known && (found.empty() || newer(row.master_id, found))) {
      found = row.master_id;
    }
  }
  const size_t n = t.slurm_ids.size() + 1;
  const std::string dir = SubmissionDir(t, n);
  if (found.empty() && !Markers(dir).empty()) {
    // It ran and left Slurm's memory before we could record it: its markers tell.
    found = "unknown";
  }
  if (!found.empty()) {
    SlurmMetrics::Get().adopted.Inc();
    t.slurm_ids.push_back(found);
    t.submitted = true;
    (void)store_->SetOutput(t.id, owner_, dir, JoinIds(t.slurm_ids), NowMs());
    (void)store_->SetError(t.id, owner_, "", NowMs());
    (void)store_->Transition(t.id, owner_, JobState::kRunning,
                             "adopted Slurm job " + found + " (found by name " + name + ")",
                             NowMs());
    log::Info("slurm: adopted a job submitted before a restart",
              {{"id", t.id}, {"slurm_job", found}});
    return true;
  }
  auto id = Sbatch(t, dir);
  if (!id.ok()) {
    if (id.status().code() == StatusCode::kUnavailable ||
        id.status().code() == StatusCode::kNotFound ||
        id.status().code() == StatusCode::kDeadlineExceeded) {
      reachable_ = false;
      SetWaiting(t.id, id.status().message());
      return false;
    }
    Finish(t.id, JobState::kFailed, "sbatch refused the job: " + id.status().message());
    return true;
  }
  Failpoint("jobs.slurm.after_sbatch");
  t.slurm_ids.push_back(*id);
  t.submitted = true;
  if (auto st = store_->SetOutput(t.id, owner_, dir, JoinIds(t.slurm_ids), NowMs());
      st.code() == StatusCode::kFailedPrecondition) {
    // Cancelled (or taken over) while sbatch ran: the job just submitted is nobody's.
    Job gone;
    gone.id = t.id;
    gone.slurm_ids = *id;
    (void)CancelSlurmJobs(gone);
    Drop(t.id);
    return true;
  }
  (void)store_->SetError(t.id, owner_, "", NowMs());
  (void)store_->Transition(t.id, owner_, JobState::kRunning, "submitted as Slurm job " + *id,
                           NowMs());
  return true;
}

Result<std::string> SlurmExecutor::Sbatch(Tracked& t, const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);  // a submission that never reached Slurm
  fs::create_directories(fs::path(dir) / "markers", ec);
  if (ec) return Status(StatusCode::kInternal, "cannot create " + dir + ": " + ec.message());
  if (t.embed) {
    std::string bin = options_.infermesh_bin;
    if (bin.empty()) bin = fs::read_symlink("/proc/self/exe", ec).string();
    t.spec.script = ShardScript(*t.embed, bin, dir + "/shards");
  }
  const std::string user = (fs::path(dir) / "script.sh").string();
  const std::string batch = (fs::path(dir) / "job.sbatch").string();
  {
    std::ofstream f(user, std::ios::binary | std::ios::trunc);
    f << t.spec.script;
    std::ofstream b(batch, std::ios::binary | std::ios::trunc);
    b << BatchScript(t.spec, t.id, dir, user);
    f.close();
    b.close();
    // A full disk must not submit half a script.
    if (f.fail() || b.fail()) {
      return Status(StatusCode::kUnavailable, "cannot write the scripts in " + dir);
    }
  }
  ::chmod(batch.c_str(), 0755);
  ::chmod(user.c_str(), 0755);
  std::vector<std::string> argv = {Bin("sbatch"),
                                   "--parsable",
                                   "--job-name=" + SlurmJobName(t.id),
                                   "--comment=infermesh:" + t.id,
                                   "--chdir=" + dir,
                                   "--output=" + dir + "/slurm-%A_%a.out",
                                   "--nodes=" + std::to_string(t.spec.nodes),
                                   "--cpus-per-task=" + std::to_string(t.spec.cpus_per_task),
                                   "--no-requeue"};
  if (t.spec.gpus_per_node > 0) {
    argv.push_back("--gpus-per-node=" + std::to_string(t.spec.gpus_per_node));
  }
  if (!t.spec.mem.empty()) argv.push_back("--mem=" + t.spec.mem);
  if (!t.spec.time.empty()) argv.push_back("--time=" + t.spec.time);
  if (!t.spec.partition.empty()) argv.push_back("--partition=" + t.spec.partition);
  if (!t.spec.array.empty()) argv.push_back("--array=" + t.spec.array);
  argv.push_back(batch);
  const auto t0 = Clock::now();
  auto r = RunCommand(argv, options_.command_timeout);
  if (!r.ok()) {
    SlurmMetrics::Get().errors.WithLabels({"sbatch"}).Inc();
    return Status(r.status().code(), "sbatch: " + r.status().message());
  }
  if (r->exit_code != 0) {
    SlurmMetrics::Get().errors.WithLabels({"sbatch"}).Inc();
    const std::string why = FirstLine(r->err.empty() ? r->out : r->err);
    return Status(Unreachable(*r) ? StatusCode::kUnavailable : StatusCode::kInvalidArgument, why);
  }
  SlurmMetrics::Get().sbatch_seconds.Observe(
      std::chrono::duration<double>(Clock::now() - t0).count());
  SlurmMetrics::Get().submissions.Inc();
  std::string id = FirstLine(r->out);
  id = id.substr(0, id.find(';'));  // "id;cluster"
  while (!id.empty() && (id.back() == '\r' || id.back() == ' ')) id.pop_back();
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
    return Status(StatusCode::kInternal, "sbatch answered '" + r->out + "', not a job id");
  }
  return id;
}

std::map<int64_t, int> SlurmExecutor::Markers(const std::string& dir) const {
  std::map<int64_t, int> out;
  std::error_code ec;
  for (fs::directory_iterator it(fs::path(dir) / "markers", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.' || it->path().extension() != ".json") continue;
    std::ifstream f(it->path());
    std::stringstream ss;
    ss << f.rdbuf();
    boost::system::error_code jec;
    boost::json::value v = boost::json::parse(ss.str(), jec);
    if (jec || !v.is_object()) continue;
    const auto* code = v.as_object().if_contains("exit_code");
    if (code == nullptr || !code->is_int64()) continue;
    try {
      out[std::stoll(it->path().stem().string())] = static_cast<int>(code->as_int64());
    } catch (const std::exception&) {
    }
  }
  return out;
}

void SlurmExecutor::Finish(const std::string& id, JobState to, const std::string& reason) {
  auto st = store_->Transition(id, owner_, to, reason, NowMs());
  if (!st.ok()) log::Warn("slurm: cannot record a job's end", {{"id", id}, {"why", st.message()}});
  Drop(id);
}

void SlurmExecutor::Reconcile() {
  // Leases first: a job cancelled (or taken over) meanwhile is let go, and its Slurm job
  // cancelled if it has one.
  std::vector<std::string> ids;
  for (const auto& [id, t] : tracked_) ids.push_back(id);
  for (const auto& id : ids) {
    auto renewed = store_->Renew(id, owner_, lease_.count(), NowMs());
    if (!renewed.ok() && renewed.code() == StatusCode::kFailedPrecondition) {
      auto job = store_->Get(id);
      if (job.ok() && job->state == JobState::kCancelled) {
        // What this process submitted, which the record may lack; kept until scancel works.
        job->slurm_ids = JoinIds(tracked_[id].slurm_ids);
        if (!CancelSlurmJobs(*job).ok()) continue;
      }
      Drop(id);
    }
  }
  // Jobs waiting to be submitted (Slurm was down) try again.
  ids.clear();
  for (const auto& [id, t] : tracked_) ids.push_back(id);
  for (const auto& id : ids) {
    auto it = tracked_.find(id);
    if (it != tracked_.end() && !it->second.submitted) SubmitOrAdopt(it->second);
  }
  std::vector<std::string> names;
  for (const auto& [id, t] : tracked_) {
    if (t.submitted) names.push_back(SlurmJobName(id));
  }
  if (names.empty()) return;
  auto rows = Squeue(names);
  ids.clear();
  for (const auto& [id, t] : tracked_) ids.push_back(id);
  for (const auto& id : ids) {
    auto found = tracked_.find(id);
    if (found == tracked_.end() || !found->second.submitted) continue;
    Tracked& t = found->second;
    if (!rows.ok()) {
      reachable_ = false;
      (void)store_->SetError(id, owner_, "waiting for Slurm: " + rows.status().message(), NowMs());
      continue;
    }
    reachable_ = true;
    const std::string current = t.slurm_ids.back();
    const std::string name = SlurmJobName(id);
    std::vector<SlurmTask> mine;
    for (const auto& row : *rows) {
      if (row.name == name && (row.master_id == current || current == "unknown")) {
        mine.push_back(row);
      }
    }
    const std::string dir = SubmissionDir(t, t.slurm_ids.size());
    SlurmResolution res = ResolveSlurmJob(mine, Markers(dir), t.tasks);
    if (res.outcome == SlurmOutcome::kFailed &&
        res.reason.find("without a completion marker") != std::string::npos) {
      // On NFS a marker written on a node shows up here only after the attribute cache
      // expires (30 s by default): wait that long before calling the job a failure.
      const auto now = Clock::now();
      if (!t.marker_missing_since) t.marker_missing_since = now;
      if (now - *t.marker_missing_since < kMarkerGrace) res.outcome = SlurmOutcome::kRunning;
    } else {
      t.marker_missing_since.reset();
    }
    if (res.tasks_done != t.done) {
      t.done = res.tasks_done;
      (void)store_->SetProgress(id, owner_, res.tasks_done, res.tasks_total, NowMs());
      (void)store_->SetError(id, owner_, "", NowMs());
    }
    switch (res.outcome) {
      case SlurmOutcome::kRunning:
        break;
      case SlurmOutcome::kSucceeded:
        if (t.embed) {
          MergeInto(t, dir, current);
        } else {
          Finish(id, JobState::kSucceeded, "Slurm job " + current + ": " + res.reason);
        }
        break;
      case SlurmOutcome::kFailed:
        Finish(id, JobState::kFailed, "Slurm job " + current + ": " + res.reason);
        break;
      case SlurmOutcome::kRequeue:
        if (t.spec.requeue && t.requeues < options_.max_requeues) {
          ++t.requeues;
          SlurmMetrics::Get().requeued.Inc();
          log::Info("slurm: submitting again", {{"id", id}, {"why", res.reason}});
          t.submitted = false;
          t.done = -1;
          SubmitOrAdopt(t);
        } else {
          Finish(id, JobState::kFailed,
                 "Slurm job " + current + ": " + res.reason +
                     (t.spec.requeue ? " (requeued " + std::to_string(t.requeues) +
                                           " times; jobs.slurm.max_requeues)"
                                     : " (requeue: false)"));
        }
        break;
    }
  }
}

void SlurmExecutor::MergeInto(Tracked& t, const std::string& dir, const std::string& slurm_id) {
  const std::string id = t.id;
  auto merged = MergeShards(*t.embed, dir + "/shards");
  if (!merged.ok()) {
    Finish(id, JobState::kFailed,
           "Slurm job " + slurm_id + ": merging the shards: " + merged.status().message());
    return;
  }
  (void)store_->SetOutput(id, owner_, t.embed->embed.output, JoinIds(t.slurm_ids), NowMs());
  std::string reason = "Slurm job " + slurm_id + ": " + std::to_string(t.embed->shards) +
                       " shards merged, " + std::to_string(merged->embedded) + " embedded";
  if (merged->failed > 0) {
    reason +=
        ", " + std::to_string(merged->failed) + " failed (first: " + merged->first_error + ")";
  }
  Finish(id, JobState::kSucceeded, reason);
}

Result<std::vector<SlurmTask>> SlurmExecutor::LiveTasks(const std::string& job_id) {
  auto r = RunCommand({Bin("squeue"), "-h", "--me", "--states=all", "-o",
                       std::string(kSqueueFormat), "--name=" + SlurmJobName(job_id)},
                      std::min(options_.command_timeout, std::chrono::milliseconds(5000)));
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return Status(StatusCode::kUnavailable, "squeue: " + FirstLine(r->err));
  return ParseSqueue(r->out);
}

Status SlurmExecutor::CancelSlurmJobs(const Job& job) {
  Status result;
  for (const auto& id : SplitIds(job.slurm_ids)) {
    if (id == "unknown") continue;
    auto r = RunCommand({Bin("scancel"), id}, options_.command_timeout);
    if (!r.ok() || r->exit_code != 0) {
      SlurmMetrics::Get().errors.WithLabels({"scancel"}).Inc();
      result = Status(StatusCode::kUnavailable,
                      "scancel " + id + ": " + (r.ok() ? FirstLine(r->err) : r.status().message()));
      log::Warn("slurm: scancel failed", {{"id", job.id}, {"why", result.message()}});
    }
  }
  return result;
}

}  // namespace infermesh::jobs
