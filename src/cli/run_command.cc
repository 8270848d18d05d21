// `infermesh run --model FILE --input JSON`: runs any supported ONNX model once.
//
//   infermesh run --model mlp.onnx --input '{"x": [[0.1, 0.2, ...]]}'
//   infermesh run --model m.onnx --input @inputs.json
#include <boost/json.hpp>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/tensor_json.h"
#include "runtime/session.h"

namespace infermesh::cli {
namespace {

struct RunOptions {
  std::string model;
  std::string input;
  int threads = -1;
};

int RunModel(const RunOptions& opts) {
  std::string text = opts.input;
  if (!text.empty() && text[0] == '@') {
    std::ifstream f(text.substr(1));
    if (!f) {
      std::cerr << "error: cannot read input file " << text.substr(1) << "\n";
      return 2;
    }
    text.assign((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  boost::system::error_code ec;
  boost::json::value doc = boost::json::parse(text, ec);
  if (ec || !doc.is_object()) {
    std::cerr << "error: --input must be a JSON object mapping input names to tensors"
              << (ec ? " (" + ec.message() + ")" : "") << "\n";
    return 2;
  }
  auto session_options = RuntimeOptions(opts.threads);
  if (!session_options.ok()) {
    std::cerr << "error: " << session_options.status().message() << "\n";
    return 2;
  }
  const runtime::SessionOptions& so = *session_options;
  auto session = runtime::Session::Load(opts.model, so);
  if (!session.ok()) {
    std::cerr << "error: " << session.status().ToString() << "\n";
    return 1;
  }
  std::vector<std::pair<std::string, runtime::Tensor>> feeds;
  for (const auto& [key, value] : doc.as_object()) {
    std::string name(key);
    runtime::DataType declared = runtime::DataType::kFloat32;
    for (const auto& in : (*session)->inputs()) {
      if (in.name == name) declared = in.dtype;
    }
    auto t = TensorFromJson(value, declared);
    if (!t.ok()) {
      std::cerr << "error: input '" << name << "': " << t.status().message() << "\n";
      return 2;
    }
    feeds.emplace_back(name, std::move(t).value());
  }
  auto outputs = (*session)->Run(feeds);
  if (!outputs.ok()) {
    std::cerr << "error: " << outputs.status().ToString() << "\n";
    return 1;
  }
  std::string result = "{";
  for (size_t i = 0; i < outputs->size(); ++i) {
    if (i) result += ",";
    result += boost::json::serialize(boost::json::string((*session)->outputs()[i].name));
    result += ":" + TensorToJsonText((*outputs)[i]);
  }
  std::cout << result << "}\n";
  return 0;
}

}  // namespace

void AddRunCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run an ONNX model once on JSON inputs");
  AddCommonOptions(cmd, {"runtime."});
  cmd->add_option("--model", opts->model, "Path to a .onnx file")->required();
  cmd->add_option("--input", opts->input,
                  "JSON object {name: nested array | {dtype, shape, data}}, or @file")
      ->required();
  cmd->add_option("--threads", opts->threads,
                  "Intra-op threads (0 = all cores; default runtime.intra_op_threads)");
  cmd->callback([opts, &exit_code] { exit_code = RunModel(*opts); });
}

}  // namespace infermesh::cli
