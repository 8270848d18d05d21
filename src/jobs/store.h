// The job service's durable store (issue 10): SQLite in WAL mode with synchronous=FULL, so
// a job is on disk before its submission is acknowledged and survives kill -9.
//
//   auto store = JobStore::Open({.path = "/var/lib/infermesh/jobs.db"});
//   auto [job, created] = *(*store)->Submit("corpus-2026-12", "embed", payload, NowMs());
//   // a runner:
//   if (auto j = *(*store)->Claim("runner-1", {"embed"}, JobState::kRunning, 30000, NowMs())) {
//     ... work, Renew() the lease well before it ends, SetProgress() ...
//     (*store)->Transition(j->id, "runner-1", JobState::kSucceeded, "", NowMs());
//   }
//
// States: queued → submitting → running → succeeded | failed | cancelled (a Slurm job is
// submitting while sbatch runs; a local job goes from queued to running). A claimed job
// carries a lease (owner, expiry): a runner that dies stops renewing it, and once it has
// expired any runner may claim the job again, which counts another attempt. A job whose
// lease expires with its attempts spent (max_attempts, the retry budget) fails instead of
// being claimed again. Every change to a claimed job names its owner and is refused
// (FailedPrecondition) once the lease has gone to another runner, so a runner that was
// only slow cannot overwrite the new owner's work.
//
// Submissions are idempotent on the job id: the same id with the same class and payload
// returns the existing job; with a different one, AlreadyExists (HTTP 409).
//
// Times are Unix milliseconds passed in by the caller (tests control time). Several
// processes may open the same file: claims are serialized by SQLite (BEGIN IMMEDIATE),
// so one job is never claimed twice. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

struct sqlite3;

namespace infermesh::jobs {

enum class JobState { kQueued, kSubmitting, kRunning, kSucceeded, kFailed, kCancelled };
std::string_view JobStateName(JobState s);  // "queued", ..., "cancelled"
Result<JobState> ParseJobState(std::string_view name);
bool IsTerminal(JobState s);
// Whether the store allows `from` → `to`.
bool AllowedTransition(JobState from, JobState to);

struct Job {
  std::string id;         // the idempotency key
  std::string job_class;  // "embed", "slurm_script", "slurm_embed"
  std::string payload;    // JSON, as submitted
  JobState state = JobState::kQueued;
  int attempts = 0;  // claims so far
  int max_attempts = 3;
  std::string lease_owner;
  int64_t lease_until_ms = 0;
  int64_t items_done = 0, items_total = 0;
  std::string error;      // why it failed or was cancelled
  std::string output;     // where its output is
  std::string slurm_ids;  // comma-separated Slurm job ids
  int64_t created_ms = 0, updated_ms = 0, started_ms = 0, finished_ms = 0;
};

// One state change, for the JSONL event log and the metrics.
struct JobEvent {
  int64_t time_ms = 0;
  std::string id, job_class;
  std::optional<JobState> from;  // none for a submission
  JobState to = JobState::kQueued;
  std::string reason;
};

struct StoreOptions {
  std::string path;      // the database file (its folder must exist)
  int max_attempts = 3;  // per job: the first run and retries after a lost lease
  int busy_timeout_ms = 5000;
  // Called after each committed change, outside the store's lock.
  std::function<void(const JobEvent&)> on_event;
};

class JobStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<JobStore>> Open(StoreOptions options);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // The job, and whether this call created it.
  [[nodiscard]] Result<std::pair<Job, bool>> Submit(const std::string& id,
                                                    const std::string& job_class,
                                                    const std::string& payload, int64_t now_ms);
  [[nodiscard]] Result<Job> Get(const std::string& id);
  // The oldest claimable job of `classes` (empty: any): queued, or submitting/running with
  // an expired lease. It moves to `to` (kSubmitting or kRunning) under `owner`'s lease.
  [[nodiscard]] Result<std::optional<Job>> Claim(const std::string& owner,
                                                 const std::vector<std::string>& classes,
                                                 JobState to, int64_t lease_ms, int64_t now_ms);
  [[nodiscard]] Status Renew(const std::string& id, const std::string& owner, int64_t lease_ms,
                             int64_t now_ms);
  // A claimed job's next state; `reason` is stored as its error when it fails. Moving
  // back to kQueued (a requeue) releases the lease. Terminal states are final.
  [[nodiscard]] Status Transition(const std::string& id, const std::string& owner, JobState to,
                                  const std::string& reason, int64_t now_ms);
  [[nodiscard]] Status SetProgress(const std::string& id, const std::string& owner,
                                   int64_t items_done, int64_t items_total, int64_t now_ms);
  [[nodiscard]] Status SetOutput(const std::string& id, const std::string& owner,
                                 const std::string& output, const std::string& slurm_ids,
                                 int64_t now_ms);
  // Gives a claimed job back unfinished (the runner is shutting down): queued again, and
  // the attempt it used is refunded, since the job did not fail.
  [[nodiscard]] Status Release(const std::string& id, const std::string& owner,
                               const std::string& reason, int64_t now_ms);
  // After a restart: the unfinished jobs whose lease `owner` holds (the process that
  // held them under that name has died, since this one now has the name) become
  // claimable at once instead of when their lease runs out. Their next claim counts as a
  // new attempt. Returns how many.
  [[nodiscard]] Result<int64_t> Adopt(const std::string& owner, int64_t now_ms);
  // A note in the error field of a claimed job that has not failed (why it waits).
  [[nodiscard]] Status SetError(const std::string& id, const std::string& owner,
                                const std::string& error, int64_t now_ms);
  // Any job not yet finished, whoever holds it. FailedPrecondition once it has finished.
  [[nodiscard]] Result<Job> Cancel(const std::string& id, const std::string& reason,
                                   int64_t now_ms);
  // Jobs in `state` (indexed: cheap enough for every submission).
  [[nodiscard]] Result<int64_t> CountState(JobState state);
  // The `limit` most recently updated jobs, newest first (the status page's list).
  [[nodiscard]] Result<std::vector<Job>> Recent(int limit);
  // Jobs by (class, state).
  [[nodiscard]] Result<std::map<std::pair<std::string, std::string>, int64_t>> Counts();

 private:
  explicit JobStore(StoreOptions options);
  struct Impl;
  StoreOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infermesh::jobs
