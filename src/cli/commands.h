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

// Options every subcommand shares: --config FILE and repeated --set key=value.
struct GlobalOptions {
  std::string config_file;
  std::vector<std::string> sets;
};
GlobalOptions& Globals();
// Defaults, then --config, then INFERMESH_* environment, then --set; also
// configures logging. Commands call it first.
Result<Config> LoadConfig();
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

}  // namespace infermesh::cli
