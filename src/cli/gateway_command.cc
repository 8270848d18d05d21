// `infermesh gateway --workers host:port,... [--host H] [--port P]`: the front door for a
// pool of workers (src/gateway/gateway_service.h), until SIGINT or SIGTERM.
#include <signal.h>

#include <iostream>

#include "cli/commands.h"
#include "core/log.h"
#include "gateway/gateway_service.h"

namespace infermesh::cli {
namespace {

struct GatewayCliOptions {
  std::string workers;
  std::string host;
  int port = -1;
  std::string redis;
};

int RunGateway(const GatewayCliOptions& cli) {
  BlockStopSignals();

  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  if (!cli.workers.empty()) (void)config->Set("gateway.workers", cli.workers, "flag");
  if (!cli.host.empty()) (void)config->Set("gateway.host", cli.host, "flag");
  if (cli.port >= 0) (void)config->Set("gateway.port", std::to_string(cli.port), "flag");
  if (!cli.redis.empty()) (void)config->Set("gateway.redis", cli.redis, "flag");
  auto options = gateway::GatewayOptionsFromConfig(*config);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return 2;
  }
  auto service = gateway::GatewayService::Start(*options);
  if (!service.ok()) {
    std::cerr << "error: " << service.status().ToString() << "\n";
    return 1;
  }
  std::cout << "infermesh gateway listening on " << options->host << ":" << (*service)->port()
            << std::endl;
  WaitForStopSignal();
  (*service)->Shutdown();
  return 0;
}

}  // namespace

void AddGatewayCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<GatewayCliOptions>();
  CLI::App* cmd = app.add_subcommand("gateway", "Route requests over a pool of workers");
  AddCommonOptions(cmd, {"gateway.", "server."});
  cmd->add_option("--workers", opts->workers, "Workers, host:port,... (gateway.workers)");
  cmd->add_option("--host", opts->host, "Listen address (gateway.host)");
  cmd->add_option("--port", opts->port, "Listen port, 0 = ephemeral (gateway.port)");
  cmd->add_option("--redis", opts->redis, "Shared cache, redis://host:port (gateway.redis)");
  cmd->callback([opts, &exit_code] { exit_code = RunGateway(*opts); });
}

}  // namespace infermesh::cli
