#include "cli/cli.h"

#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <string_view>

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
  if (!g.sub_config_file.empty()) IM_RETURN_IF_ERROR(config.LoadYamlFile(g.sub_config_file));
  IM_RETURN_IF_ERROR(config.LoadEnvironment());
  for (const auto& s : g.sets) IM_RETURN_IF_ERROR(config.SetFromFlag(s));
  for (const auto& s : g.sub_sets) IM_RETURN_IF_ERROR(config.SetFromFlag(s));
  IM_RETURN_IF_ERROR(log::Configure(config));
  return config;
}

void AddCommonOptions(CLI::App* cmd, const std::vector<std::string>& prefixes) {
  cmd->add_option("--config", Globals().sub_config_file, "YAML configuration file");
  cmd->add_option("--set", Globals().sub_sets,
                  "Override a configuration key: --set key=value (repeatable; keys below)");
  if (prefixes.empty()) return;
  std::string footer = "\nConfiguration keys (--set KEY=VALUE, or INFERMESH_KEY in the environment";
  footer += ", or YAML; all keys in docs/configuration.md):\n";
  for (const auto& k : DeclaredConfigKeys()) {
    bool match = false;
    for (const auto& p : prefixes) match = match || k.key.rfind(p, 0) == 0;
    if (!match) continue;
    std::string line = "  " + k.key + " = " + (k.default_value.empty() ? "\"\"" : k.default_value);
    if (line.size() < 44) line.resize(44, ' ');
    footer += line + "  " + k.help + "\n";
  }
  cmd->footer(footer);
}

std::vector<std::string> CommonArgs() {
  const GlobalOptions& g = Globals();
  std::vector<std::string> args;
  for (const std::string* f : {&g.config_file, &g.sub_config_file}) {
    if (!f->empty()) args.insert(args.end(), {"--config", *f});
  }
  for (const auto* v : {&g.sets, &g.sub_sets}) {
    for (const auto& s : *v) args.insert(args.end(), {"--set", s});
  }
  return args;
}

void AddTeiFlags(CLI::App* cmd, TeiFlags* f, bool with_hostname) {
  if (with_hostname) {
    cmd->add_option("--hostname", f->hostname, "Listen address (TEI's name for --host)");
  }
  cmd->add_option("--max-batch-tokens", f->max_batch_tokens,
                  "Real tokens per batch (worker.max_batch_tokens)");
  cmd->add_option("--max-client-batch-size", f->max_client_batch_size,
                  "Inputs per request, 413 beyond (worker.max_client_batch_size)");
  cmd->add_option("--max-concurrent-requests", f->max_concurrent_requests,
                  "Requests in flight before 429 (worker.max_concurrent_requests)");
  cmd->add_flag("--auto-truncate", f->auto_truncate,
                "Truncate over-long inputs unless a request says otherwise (worker.auto_truncate)");
  cmd->add_option("--payload-limit", f->payload_limit,
                  "Largest request body in bytes, or 2MiB (worker.max_body_bytes)");
  cmd->add_option("--model-id", f->model_id,
                  "A model folder on local disk (infermesh downloads nothing)");
}

std::vector<std::string> TeiWorkerSettings(const TeiFlags& f) {
  std::vector<std::string> out;
  if (f.max_batch_tokens >= 0)
    out.push_back("worker.max_batch_tokens=" + std::to_string(f.max_batch_tokens));
  if (f.max_client_batch_size >= 0)
    out.push_back("worker.max_client_batch_size=" + std::to_string(f.max_client_batch_size));
  if (f.max_concurrent_requests >= 0)
    out.push_back("worker.max_concurrent_requests=" + std::to_string(f.max_concurrent_requests));
  if (f.auto_truncate) out.push_back("worker.auto_truncate=true");
  if (!f.payload_limit.empty()) out.push_back("worker.max_body_bytes=" + f.payload_limit);
  return out;
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
  AddUpCommand(app, exit_code);
  AddDiagnoseCommand(app, exit_code);
  // --check-args (first): parse the command line as usual, with its errors, then exit 0
  // without running anything; the deployment tests check every command line in deploy/.
  if (argc > 1 && std::string_view(argv[1]) == "--check-args") {
    std::function<void(CLI::App*)> disarm = [&disarm](CLI::App* a) {
      for (CLI::App* sub : a->get_subcommands([](CLI::App*) { return true; })) {
        sub->callback([] {});
        disarm(sub);
      }
    };
    disarm(&app);
    for (int i = 1; i + 1 < argc; ++i) argv[i] = argv[i + 1];
    --argc;
  }
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
