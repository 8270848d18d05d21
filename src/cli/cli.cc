#include "cli/cli.h"

#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"
#include "core/log.h"

namespace infermesh::cli {

GlobalOptions& Globals() {
  static GlobalOptions globals;
  return globals;
}

Result<Config> LoadConfig() {
  Config config = Config::WithDefaults();
  const GlobalOptions& g = Globals();
  if (!g.config_file.empty()) IM_RETURN_IF_ERROR(config.LoadYamlFile(g.config_file));
  IM_RETURN_IF_ERROR(config.LoadEnvironment());
  for (const auto& s : g.sets) IM_RETURN_IF_ERROR(config.SetFromFlag(s));
  IM_RETURN_IF_ERROR(log::Configure(config));
  return config;
}

Result<int> IntraOpThreads(const Config& config, int flag) {
  if (flag >= 0) return flag;
  runtime::SessionOptions so;
  IM_RETURN_IF_ERROR(runtime::ReadRuntimeConfig(config, &so));
  return so.intra_op_threads;
}

void BlockStopSignals() {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
}

void WaitForStopSignal() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  int sig = 0;
  sigwait(&stop, &sig);
  log::Info("signal received", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
}

int Main(int argc, char** argv) {
  CLI::App app{"infermesh: an inference mesh for ONNX models and text-embedding encoders"};
  app.require_subcommand(1);
  int exit_code = 0;
  app.add_option("--config", Globals().config_file, "YAML configuration file");
  app.add_option("--set", Globals().sets, "Override a configuration key: --set key=value");
  AddConformanceCommand(app, exit_code);
  AddRunCommand(app, exit_code);
  AddEmbedCommand(app, exit_code);
  AddWorkerCommand(app, exit_code);
  AddGatewayCommand(app, exit_code);
  AddDemoModelCommand(app, exit_code);
  AddBenchCommand(app, exit_code);
  AddJobsCommand(app, exit_code);
  AddEmbedShardCommand(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}

Result<runtime::SessionOptions> RuntimeOptions(int threads_flag) {
  IM_ASSIGN_OR_RETURN(Config config, LoadConfig());
  runtime::SessionOptions so;
  IM_RETURN_IF_ERROR(runtime::ReadRuntimeConfig(config, &so));
  if (threads_flag >= 0) so.intra_op_threads = threads_flag;
  return so;
}

}  // namespace infermesh::cli
