// Slurm, as the job service uses it: a slurm_script payload, the batch script and sbatch
// arguments made from it, and the reading of squeue's answers into one outcome per job.
// The executor that drives these (claims, sbatch, the reconcile cycle) is in
// slurm_executor.h.
//
// A slurm_script payload:
//   {"script": "#!/bin/bash\n...",          // or "script_file": a file in jobs.data_dirs
//    "nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem": "4G",
//    "time": "01:00:00", "partition": "gpu", "array": "0-7%2",
//    "requeue": true}                       // resubmit after NODE_FAIL or PREEMPTED
//
// Each submission of a job gets a folder on shared storage, <work_dir>/<job id>/<n>/,
// holding the user's script, the generated batch script, Slurm's output files and the
// completion markers: the batch script runs the user's script and then writes
// markers/<task>.json ({"exit_code": N}) by rename, so a job that has left Slurm's memory
// is still resolved from what it left behind, and one that left nothing is a failure.
// The job is named im-<job id> (--job-name, and --comment carries the id too), so that a
// service that crashed between sbatch and storing its answer finds it with squeue.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "http/api/api_error.h"
#include "jobs/api.h"

namespace infermesh::jobs {

struct SlurmScriptSpec {
  std::string script;  // the body to run
  int nodes = 1;
  int gpus_per_node = 0;
  int cpus_per_task = 1;
  std::string mem;        // "" or <n>[K|M|G|T]
  std::string time;       // "" or a Slurm time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
  std::string partition;  // "" = the cluster's default
  std::string array;      // "" or "0-7", "1,3,5", "0-15:4", "0-7%2"
  bool requeue = true;
};

inline constexpr int kMaxSlurmNodes = 1024;
inline constexpr int kMaxGpusPerNode = 64;
inline constexpr int kMaxCpusPerTask = 4096;
inline constexpr int kMaxArrayTasks = 100000;
inline constexpr size_t kMaxScriptBytes = 1 << 20;

// 400 for absurd or malformed parameters, 403 for a script_file outside data_dirs.
http::api::ApiResult<SlurmScriptSpec> ParseSlurmScriptPayload(
    std::string_view payload, const std::vector<std::string>& data_dirs);

// The array's task ids in order ("0-3" → 0,1,2,3; "0-15:4" → 0,4,8,12; "%2" ignored);
// {0} for no array. nullopt when malformed or over kMaxArrayTasks.
std::optional<std::vector<int64_t>> ArrayTasks(std::string_view array);

// Slurm's name for a job of ours.
// `s` in single quotes for a POSIX shell ('it'\''s'), whatever it holds.
std::string ShellQuote(const std::string& s);
std::string SlurmJobName(std::string_view job_id);

// The generated batch script: #SBATCH lines, then the user's script (already written to
// `user_script`), then the marker. `dir` is the submission's folder.
std::string BatchScript(const SlurmScriptSpec& spec, const std::string& job_id,
                        const std::string& dir, const std::string& user_script);

// One row of `squeue -h --states=all -o "%F|%i|%T|%j"` (array base id, id, state, name).
struct SlurmTask {
  std::string master_id;  // the job (array master) id
  std::string id;         // "1234" or "1234_5"
  std::string state;      // PENDING, RUNNING, COMPLETED, ...
  std::string name;
  int64_t task = -1;  // the array index, -1 when not an array task (or still "[0-7]")
};
inline constexpr std::string_view kSqueueFormat = "%F|%i|%T|%j";
std::vector<SlurmTask> ParseSqueue(std::string_view out);

// A slurm_embed payload: an embed payload (without "url"), plus
//   {"model": "/data/models/bge-small",   // a model directory inside jobs.data_dirs
//    "shards": 8,                         // array tasks, 1..1000
//    "cpus_per_task": 4, "mem": "8G", "time": "02:00:00", "partition": "cpu",
//    "requeue": true}
// Each task runs `infermesh embed-shard` on its shard; the service merges the shard files
// into `output` when every task has succeeded.
struct SlurmEmbedSpec {
  EmbedSpec embed;
  std::string model;
  int shards = 1;
  SlurmScriptSpec slurm;  // script empty: generated per submission (ShardScript)
};
inline constexpr int kMaxShards = 1000;

http::api::ApiResult<SlurmEmbedSpec> ParseSlurmEmbedPayload(
    std::string_view payload, const EmbedDefaults& defaults,
    const std::vector<std::string>& data_dirs);

// The task script: `infermesh embed-shard` for shard $SLURM_ARRAY_TASK_ID into
// <shard_dir>/part-<k><ext>.
std::string ShardScript(const SlurmEmbedSpec& spec, const std::string& infermesh_bin,
                        const std::string& shard_dir);
std::string ShardOutput(const SlurmEmbedSpec& spec, const std::string& shard_dir, int shard);

struct MergeResult {
  int64_t embedded = 0, failed = 0;
  std::string first_error;
};
// Concatenates the shards in order into the job's output (and index, renumbered, and
// errors file), each written to a .partial name and renamed into place, output last.
// Running it again after a crash starts over and writes the same bytes.
// More than spec.embed.max_errors failed items: OutOfRange, and nothing is renamed.
Result<MergeResult> MergeShards(const SlurmEmbedSpec& spec, const std::string& shard_dir);

// Every state Slurm ends a job in, and whether the requeue policy applies to it.
bool IsTerminalSlurmState(std::string_view state);
bool IsRequeueState(std::string_view state);  // NODE_FAIL, PREEMPTED

enum class SlurmOutcome { kRunning, kSucceeded, kFailed, kRequeue };
struct SlurmResolution {
  SlurmOutcome outcome = SlurmOutcome::kRunning;
  std::string reason;
  int64_t tasks_done = 0, tasks_total = 0;
};

// One submission's outcome from its rows in squeue (`in_queue`: squeue answered and
// these are all of them; none when it has left the controller's memory) and its markers
// (task → exit code; a non-array job's task is 0). A task COMPLETED without a marker, or
// a job gone from the queue without markers for every task, is a failure.
SlurmResolution ResolveSlurmJob(const std::vector<SlurmTask>& rows,
                                const std::map<int64_t, int>& markers,
                                const std::vector<int64_t>& tasks);

}  // namespace infermesh::jobs
