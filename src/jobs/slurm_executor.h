// The Slurm executor: runs the slurm_script jobs of a job service on a real Slurm cluster
// (sbatch to submit; one squeue call per cycle for every live job; scancel to cancel).
// Slurm is the scheduler; this only submits, watches and records.
//
// One thread. Each cycle it claims the slurm_script jobs waiting in the store (they go
// to `submitting` under this service's lease), submits or adopts each, then reconciles
// all the jobs it holds with one `squeue --states=all` call (per 200 jobs) and their
// completion markers (slurm.h), and renews their leases. Cycles start 500 ms apart and
// back off (doubling) while nothing changes, up to poll_max and at most a third of the
// lease.
//
// Never submitted twice: before sbatch, a job without a recorded Slurm id is looked up
// by its name (im-<id>) with squeue; a hit is adopted. The id is recorded (and the job
// moved to `running`) right after sbatch returns; a crash between the two is what the
// lookup is for.
//
// Slurm missing or down: sbatch or squeue failing to reach the controller (or not
// installed) leaves the jobs as they are, with "waiting for Slurm: ..." in their error
// field, counts infermesh_jobs_slurm_errors_total{op}, and tries again next cycle. A
// submission Slurm refuses (a bad partition, an impossible request) fails the job with
// sbatch's message.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "jobs/slurm.h"
#include "jobs/store.h"

namespace infermesh::jobs {

struct SlurmExecutorOptions {
  std::string work_dir;  // shared storage: a folder per job and submission
  std::string bin_dir;   // where sbatch, squeue and scancel are ("": PATH)
  std::vector<std::string> data_dirs;
  std::chrono::milliseconds command_timeout{30000};
  std::chrono::milliseconds poll_min{500};
  std::chrono::milliseconds poll_max{30000};
  int max_requeues = 2;       // resubmissions after NODE_FAIL or PREEMPTED
  EmbedDefaults embed;        // for slurm_embed payloads
  std::string infermesh_bin;  // what a slurm_embed task runs ("": this executable)
};

class SlurmExecutor {
 public:
  SlurmExecutor(SlurmExecutorOptions options, JobStore* store, std::string owner,
                std::chrono::milliseconds lease);
  ~SlurmExecutor();  // Stop()
  SlurmExecutor(const SlurmExecutor&) = delete;
  SlurmExecutor& operator=(const SlurmExecutor&) = delete;

  [[nodiscard]] Status Start();  // creates work_dir, starts the thread
  void Stop();
  void Wake();  // a job was submitted

  // scancel for every Slurm id of a cancelled job (called by DELETE /jobs/{id}).
  Status CancelSlurmJobs(const Job& job);

  bool slurm_reachable() const { return reachable_.load(); }

  // What squeue says now about a job's Slurm jobs (every submission), for
  // GET /slurm/status/{id}. Thread-safe; runs one squeue.
  Result<std::vector<SlurmTask>> LiveTasks(const std::string& job_id);

 private:
  struct Tracked {
    std::string id;
    SlurmScriptSpec spec;
    std::optional<SlurmEmbedSpec> embed;  // a slurm_embed job
    std::vector<int64_t> tasks;
    std::vector<std::string> slurm_ids;
    int requeues = 0;
    bool submitted = false;  // has a live Slurm job (else: waiting to submit)
    int64_t done = -1;       // tasks done, as last stored
    // When the job first looked finished but without every completion marker.
    std::optional<std::chrono::steady_clock::time_point> marker_missing_since;
  };

  void Loop();
  void ClaimNew();
  void Begin(const Job& job);
  // Looks the job up by name, else submits it. False when Slurm could not be reached.
  bool SubmitOrAdopt(Tracked& t);
  Result<std::string> Sbatch(Tracked& t, const std::string& dir);
  void Reconcile();
  void Finish(const std::string& id, JobState to, const std::string& reason);
  // A slurm_embed job whose tasks all succeeded: its shards into its output.
  void MergeInto(Tracked& t, const std::string& dir, const std::string& slurm_id);
  Result<std::vector<SlurmTask>> Squeue(const std::vector<std::string>& names);
  std::map<int64_t, int> Markers(const std::string& dir) const;
  std::string SubmissionDir(const Tracked& t, size_t n) const;
  std::string Bin(const std::string& name) const;
  void SetWaiting(const std::string& id, const std::string& why);
  // The leases of held jobs are renewed by their own thread, every third of a lease, so
  // that a Slurm command that blocks (a controller that does not answer) cannot let
  // them run out.
  void Hold(const std::string& id);
  void Drop(const std::string& id);
  void RenewLoop();

  SlurmExecutorOptions options_;
  JobStore* store_;
  std::string owner_;
  std::chrono::milliseconds lease_;
  std::map<std::string, Tracked> tracked_;  // the loop thread's
  std::atomic<bool> reachable_{true};

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;           // mu_
  bool woken_ = false;          // mu_
  std::set<std::string> held_;  // mu_
  std::thread thread_;
  std::thread renewer_;
};

}  // namespace infermesh::jobs
