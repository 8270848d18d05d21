// `infermesh embed --model DIR "text" ...`: prints one JSON array per text.
#include <iostream>

#include "cli/commands.h"
#include "cli/tensor_json.h"
#include "runtime/model.h"

namespace infermesh::cli {
namespace {

struct EmbedCliOptions {
  std::string model;
  std::vector<std::string> texts;
  int threads = -1;
  bool no_normalize = false;
  bool no_truncate = false;
  std::string direction = "right";
};

int Embed(const EmbedCliOptions& opts) {
  auto session_options = RuntimeOptions(opts.threads);
  if (!session_options.ok()) {
    std::cerr << "error: " << session_options.status().message() << "\n";
    return 2;
  }
  const runtime::SessionOptions& so = *session_options;
  auto model = runtime::EmbeddingModel::Load(opts.model, so);
  if (!model.ok()) {
    std::cerr << "error: " << model.status().ToString() << "\n";
    return 1;
  }
  runtime::EmbedOptions eo;
  if (opts.no_normalize) eo.normalize = false;
  eo.truncate = !opts.no_truncate;
  if (opts.direction == "left") {
    eo.side = runtime::TruncationSide::kLeft;
  } else if (opts.direction != "right") {
    std::cerr << "error: --truncation-direction must be left or right\n";
    return 2;
  }
  auto rows = (*model)->Embed(opts.texts, eo);
  if (!rows.ok()) {
    std::cerr << "error: " << rows.status().ToString() << "\n";
    return 1;
  }
  std::string out;
  for (const auto& row : *rows) {
    out += "[";
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) out += ",";
      AppendFloat(out, row[i]);
    }
    out += "]\n";
  }
  std::cout << out;
  return 0;
}

}  // namespace

void AddEmbedCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<EmbedCliOptions>();
  CLI::App* cmd = app.add_subcommand("embed", "Embed texts with a model directory");
  AddCommonOptions(cmd, {"runtime."});
  cmd->add_option("--model", opts->model, "Hugging Face–layout model directory")->required();
  cmd->add_option("texts", opts->texts, "Texts to embed")->required();
  cmd->add_option("--threads", opts->threads,
                  "Intra-op threads (0 = all cores; default runtime.intra_op_threads)");
  cmd->add_flag("--no-normalize", opts->no_normalize, "Do not L2-normalize");
  cmd->add_flag("--no-truncate", opts->no_truncate, "Fail on inputs over the maximum length");
  cmd->add_option("--truncation-direction", opts->direction, "left or right");
  cmd->callback([opts, &exit_code] { exit_code = Embed(*opts); });
}

}  // namespace infermesh::cli
