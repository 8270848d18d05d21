// `infermesh worker --models DIR [--port 8000]`: serves a model repository over
// HTTP until SIGINT or SIGTERM, then drains (readiness false, stop accepting,
// finish in-flight requests) and exits 0. TEI's flag names work too, so a
// text-embeddings-router command line runs unchanged with a local model folder:
//
//   infermesh worker --model-id /models/bge-small-en-v1.5 --port 8080 --hostname 0.0.0.0
//       --max-batch-tokens 16384 --max-client-batch-size 32 --auto-truncate   (one line)
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
  TeiFlags tei;
};

int RunWorker(const WorkerCliOptions& cli) {
  BlockStopSignals();

  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  for (const auto& kv : TeiWorkerSettings(cli.tei)) {
    if (Status s = config->SetFromFlag(kv); !s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return 2;
    }
  }
  if (!cli.models.empty() && !cli.tei.model_id.empty()) {
    std::cerr << "error: give --models or --model-id, not both\n";
    return 2;
  }
  if (!cli.tei.model_id.empty()) (void)config->Set("worker.models", cli.tei.model_id, "flag");
  if (!cli.models.empty()) (void)config->Set("worker.models", cli.models, "flag");
  if (!cli.tei.hostname.empty()) (void)config->Set("worker.host", cli.tei.hostname, "flag");
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
  AddCommonOptions(cmd, {"worker.", "runtime.", "server."});
  cmd->add_option("--models", opts->models,
                  "Model repository, or one model folder (worker.models)");
  cmd->add_option("--host", opts->host, "Listen address (worker.host)");
  cmd->add_option("--port", opts->port, "Listen port, 0 = ephemeral (worker.port)");
  cmd->add_option("--gateway", opts->gateway,
                  "Register with this gateway, host:port or URL (worker.gateway)");
  AddTeiFlags(cmd, &opts->tei, /*with_hostname=*/true);
  cmd->callback([opts, &exit_code] { exit_code = RunWorker(*opts); });
}

}  // namespace infermesh::cli
