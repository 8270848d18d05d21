// Subcommands of the `infermesh` binary. Each Add*Command registers itself on
// the CLI11 app and writes its exit status into `exit_code` when it runs.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "runtime/session.h"

namespace infermesh::cli {

// Options every subcommand shares: --config FILE and repeated --set key=value, before the
// subcommand (`infermesh --set k=v worker`) or after it (`infermesh worker --set k=v`).
struct GlobalOptions {
  std::string config_file;
  std::vector<std::string> sets;
  std::string sub_config_file;  // the same, given after the subcommand
  std::vector<std::string> sub_sets;
};
GlobalOptions& Globals();
// Defaults, then the --config files (the one before the subcommand, then the one after),
// then INFERMESH_* environment, then the --set flags (before, then after); also configures
// logging. Commands call it first.
Result<Config> LoadConfig();
// Adds --config and --set to a subcommand, and a help footer listing the configuration
// keys under each of `prefixes` ("worker.") with their defaults.
void AddCommonOptions(CLI::App* cmd, const std::vector<std::string>& prefixes);
// The --config and --set arguments this process was given, to hand to a child process
// of another role (`infermesh up`): [--config F]... [--set k=v]...
std::vector<std::string> CommonArgs();
// runtime.intra_op_threads unless the command's own --threads flag (>= 0) is set.
Result<int> IntraOpThreads(const Config& config, int flag);
// LoadConfig(), then the runtime.* keys as session options (threads as above).
Result<runtime::SessionOptions> RuntimeOptions(int threads_flag);

// Servers: block SIGINT and SIGTERM in every thread (threads inherit the mask; call it
// before starting any) so no handler runs on an arbitrary thread, then wait for one on
// the main thread and log it. A shell starts background jobs with SIGINT ignored, and an
// ignored signal is discarded even while blocked, so the default is restored first.
void BlockStopSignals();
void WaitForStopSignal();

void AddConformanceCommand(CLI::App& app, int& exit_code);  // conformance.cc
void AddRunCommand(CLI::App& app, int& exit_code);          // run_command.cc
void AddEmbedCommand(CLI::App& app, int& exit_code);        // embed_command.cc
void AddWorkerCommand(CLI::App& app, int& exit_code);       // worker_command.cc
void AddGatewayCommand(CLI::App& app, int& exit_code);      // gateway_command.cc
void AddDemoModelCommand(CLI::App& app, int& exit_code);    // demo_command.cc
void AddBenchCommand(CLI::App& app, int& exit_code);        // bench_command.cc
void AddJobsCommand(CLI::App& app, int& exit_code);         // jobs_command.cc
void AddEmbedShardCommand(CLI::App& app, int& exit_code);   // embed_shard_command.cc
void AddUpCommand(CLI::App& app, int& exit_code);           // up_command.cc
void AddDiagnoseCommand(CLI::App& app, int& exit_code);     // diagnose_command.cc

// TEI's flag names (text-embeddings-router), shared by `worker` and `up`: --hostname,
// --max-batch-tokens, --max-client-batch-size, --max-concurrent-requests, --auto-truncate,
// --payload-limit, --model-id (a local model folder). Each maps to a worker.* key.
struct TeiFlags {
  std::string hostname;
  int64_t max_batch_tokens = -1;
  int64_t max_client_batch_size = -1;
  int64_t max_concurrent_requests = -1;
  bool auto_truncate = false;
  std::string payload_limit;
  std::string model_id;
};
void AddTeiFlags(CLI::App* cmd, TeiFlags* flags, bool with_hostname);
// "worker.max_batch_tokens=..." assignments for the flags that were given (not
// --hostname or --model-id, which each command places itself).
std::vector<std::string> TeiWorkerSettings(const TeiFlags& flags);

}  // namespace infermesh::cli
