// `infermesh worker --models DIR [--port 8000]`: serves a model repository over
// HTTP until SIGINT or SIGTERM, then drains (readiness false, stop accepting,
// finish in-flight requests) and exits 0.
#include <signal.h>

#include <iostream>

#include "cli/commands.h"
#include "core/log.h"
#include "worker/worker_service.h"

namespace infermesh::cli {
namespace {

struct WorkerCliOptions {
  std::string models;
  std::string host;
  int port = -1;
  std::string gateway;
};

int RunWorker(const WorkerCliOptions& cli) {
  BlockStopSignals();

  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  if (!cli.models.empty()) (void)config->Set("worker.models", cli.models, "flag");
  if (!cli.host.empty()) (void)config->Set("worker.host", cli.host, "flag");
  if (cli.port >= 0) (void)config->Set("worker.port", std::to_string(cli.port), "flag");
  if (!cli.gateway.empty()) (void)config->Set("worker.gateway", cli.gateway, "flag");
  auto options = worker::WorkerOptionsFromConfig(*config);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return 2;
  }
  auto service = worker::WorkerService::Start(*options);
  if (!service.ok()) {
    std::cerr << "error: " << service.status().ToString() << "\n";
    return 1;
  }
  // One line on stdout that scripts (and tests) can wait for.
  std::cout << "infermesh worker listening on " << options->host << ":" << (*service)->port()
            << std::endl;
  WaitForStopSignal();
  (*service)->Shutdown();
  return 0;
}

}  // namespace

void AddWorkerCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<WorkerCliOptions>();
  CLI::App* cmd = app.add_subcommand("worker", "Serve a model repository over HTTP");
  cmd->add_option("--models", opts->models, "Model repository (worker.models)");
  cmd->add_option("--host", opts->host, "Listen address (worker.host)");
  cmd->add_option("--port", opts->port, "Listen port, 0 = ephemeral (worker.port)");
  cmd->add_option("--gateway", opts->gateway,
                  "Register with this gateway, host:port or URL (worker.gateway)");
  cmd->callback([opts, &exit_code] { exit_code = RunWorker(*opts); });
}

}  // namespace infermesh::cli
