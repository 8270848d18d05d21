// `infermesh jobs serve`: the job service. An HTTP API (src/jobs/api.h) over the durable
// store (store.h), runners that claim jobs and run them (embed jobs through the mesh:
// embed_runner.h), the spool folder (spool.h) and the JSONL event log (event_log.h).
//
//   auto options = JobServiceOptionsFromConfig(config);   // jobs.* keys
//   auto service = JobService::Start(*options);
//   ... (*service)->port() ...
//   (*service)->Shutdown();
//
// One process per (state_dir, instance): a lock file in the state folder refuses a
// second. The instance name is the lease owner ("<host>/<instance>"), so a restart after
// a crash adopts the jobs its predecessor held at once (JobStore::Adopt) instead of
// waiting for their leases to run out; other processes sharing the store claim them
// only when the leases expire.
//
// Shutdown stops the runners at their next chunk boundary and hands their jobs back
// unfinished (JobStore::Release: queued again, attempt refunded); their checkpoints let
// the next start resume where they stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "http/server.h"
#include "jobs/api.h"

namespace infermesh::jobs {

struct JobServiceOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int io_threads = 1;
  std::string state_dir = ".infermesh/jobs";
  std::vector<std::string> data_dirs = {"."};
  std::string event_log;  // "": <state_dir>/events.jsonl
  std::string spool_dir;  // "": no spool
  std::chrono::milliseconds spool_rescan{2000};
  std::string instance = "default";
  int runners = 1;  // 0: take submissions only
  std::chrono::milliseconds lease{30000};
  int max_attempts = 3;
  int64_t max_queued = 100000;
  size_t max_body_bytes = 1 << 20;
  std::vector<std::string> api_keys;
  std::string admin_key;
  EmbedDefaults embed;
  int64_t max_line_bytes = 1 << 20;
  std::chrono::milliseconds request_timeout{120000};
  std::chrono::milliseconds retry_window{600000};
  // The Slurm executor (slurm_executor.h).
  std::string slurm_work_dir;       // "": <state_dir>/slurm
  std::string slurm_bin_dir;        // "": PATH
  std::string slurm_infermesh_bin;  // "": this executable
  std::chrono::milliseconds slurm_poll_max{30000};
  std::chrono::milliseconds slurm_command_timeout{30000};
  int slurm_max_requeues = 2;
  http::ServerLimits server_limits;
  // How often an idle runner looks for claimable jobs it was not woken for (jobs of
  // other processes whose leases expired).
  std::chrono::milliseconds poll_interval{1000};
};

[[nodiscard]] Result<JobServiceOptions> JobServiceOptionsFromConfig(const Config& config);

class JobService {
 public:
  [[nodiscard]] static Result<std::unique_ptr<JobService>> Start(JobServiceOptions options);
  ~JobService();  // Shutdown()
  JobService(const JobService&) = delete;
  JobService& operator=(const JobService&) = delete;

  uint16_t port() const;
  void Shutdown();

  struct Impl;

 private:
  explicit JobService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace infermesh::jobs
