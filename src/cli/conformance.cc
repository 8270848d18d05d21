#include "cli/commands.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>

#include "runtime/onnx_tensor.h"
#include "runtime/session.h"

namespace infermesh::cli {
namespace {

namespace fs = std::filesystem;
using runtime::DataType;
using runtime::Tensor;

struct Options {
  std::string data_dir = "/usr/share/libonnx-testdata/data/node";
  std::string filter;
  std::string json_path;
  std::string expect_path;
  std::string known_path;
  bool verbose = false;
  int threads = 1;
};

struct Outcome {
  std::string name;
  std::string op;
  std::string status;  // passed | failed | unsupported
  std::string reason;
};

// ONNX 1.12's test generator stores bfloat16 tensors with data_type UINT16 (the
// raw bits). Reinterpret them as the model declares; nothing else is adapted.
Tensor AdaptStoredType(Tensor t, DataType declared) {
  if (t.dtype() == DataType::kUint16 && declared == DataType::kBFloat16) {
    return Tensor::FromBuffer(DataType::kBFloat16, t.shape(), t.buffer());
  }
  return t;
}

// numpy.testing.assert_allclose with ONNX's backend-test defaults.
std::string Compare(const Tensor& got, const Tensor& want, size_t index) {
  std::string label = "output " + std::to_string(index);
  if (got.dtype() != want.dtype()) {
    return label + " has type " + runtime::DataTypeName(got.dtype()) + ", expected " +
           runtime::DataTypeName(want.dtype());
  }
  if (got.shape() != want.shape()) {
    return label + " has shape " + runtime::ShapeToString(got.shape()) + ", expected " +
           runtime::ShapeToString(want.shape());
  }
  const double rtol = 1e-3, atol = 1e-7;
  bool is_float = want.dtype() == DataType::kFloat32 || want.dtype() == DataType::kFloat16 ||
                  want.dtype() == DataType::kFloat64 || want.dtype() == DataType::kBFloat16;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (is_float) {
      double a = got.GetAsDouble(i), b = want.GetAsDouble(i);
      if (std::isnan(a) && std::isnan(b)) continue;
      if (std::isinf(a) || std::isinf(b)) {
        if (a == b) continue;
      } else if (std::fabs(a - b) <= atol + rtol * std::fabs(b)) {
        continue;
      }
      return label + "[" + std::to_string(i) + "] = " + std::to_string(a) + ", expected " +
             std::to_string(b);
    }
    if (got.GetAsInt64(i) != want.GetAsInt64(i)) {
      return label + "[" + std::to_string(i) + "] = " + std::to_string(got.GetAsInt64(i)) +
             ", expected " + std::to_string(want.GetAsInt64(i));
    }
  }
  return "";
}

std::vector<fs::path> SortedFiles(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    // Exactly <prefix><digits>[.pb]: other files (e.g. output_0.ort.pb) are not test data.
    static const std::regex kName(R"(^[a-z_]+_(\d+)(\.pb)?$)");
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && std::regex_match(name, kName)) files.push_back(e.path());
  }
  // input_10 sorts after input_9
  std::sort(files.begin(), files.end(), [&](const fs::path& a, const fs::path& b) {
    auto num = [&](const fs::path& p) {
      return std::stoi(p.stem().string().substr(prefix.size()));
    };
    return num(a) < num(b);
  });
  return files;
}

Outcome RunTest(const fs::path& dir, const Options& opts) {
  Outcome out;
  out.name = dir.filename().string();
  {
    onnx::ModelProto model;
    std::ifstream f(dir / "model.onnx", std::ios::binary);
    if (model.ParseFromIstream(&f) && model.graph().node_size() > 0) {
      out.op = model.graph().node(0).op_type();
      if (model.graph().node_size() > 1) out.op += "(expanded)";
    }
  }
  runtime::SessionOptions so;
  so.intra_op_threads = opts.threads;
  auto session = runtime::Session::Load((dir / "model.onnx").string(), so);
  if (!session.ok()) {
    out.status = session.status().code() == StatusCode::kUnimplemented ? "unsupported" : "failed";
    out.reason = session.status().ToString();
    return out;
  }
  const auto& inputs = (*session)->inputs();
  for (const auto& set : SortedFiles(dir, "test_data_set_")) {
    if (!fs::is_directory(set)) continue;
    std::vector<std::pair<std::string, Tensor>> feeds;
    auto input_files = SortedFiles(set, "input_");
    for (size_t i = 0; i < input_files.size(); ++i) {
      auto t = runtime::ReadTensorFile(input_files[i].string());
      if (!t.ok()) {
        out.status = "unsupported";
        out.reason = "input data: " + t.status().ToString();
        return out;
      }
      if (i >= inputs.size()) {
        out.status = "failed";
        out.reason = "test has more inputs than the model";
        return out;
      }
      feeds.emplace_back(inputs[i].name, AdaptStoredType(std::move(t).value(), inputs[i].dtype));
    }
    auto result = (*session)->Run(feeds);
    if (!result.ok()) {
      out.status = result.status().code() == StatusCode::kUnimplemented ? "unsupported" : "failed";
      out.reason = set.filename().string() + ": " + result.status().ToString();
      return out;
    }
    auto output_files = SortedFiles(set, "output_");
    if (output_files.size() != result->size()) {
      out.status = "failed";
      out.reason = "model produced " + std::to_string(result->size()) + " outputs, test has " +
                   std::to_string(output_files.size());
      return out;
    }
    for (size_t i = 0; i < output_files.size(); ++i) {
      auto want = runtime::ReadTensorFile(output_files[i].string());
      if (!want.ok()) {
        out.status = "unsupported";
        out.reason = "output data: " + want.status().ToString();
        return out;
      }
      std::string diff =
          Compare((*result)[i], AdaptStoredType(std::move(want).value(), (*result)[i].dtype()), i);
      if (!diff.empty()) {
        out.status = "failed";
        out.reason = set.filename().string() + ": " + diff;
        return out;
      }
    }
  }
  out.status = "passed";
  return out;
}

int RunConformance(const Options& opts) {
  if (!fs::is_directory(opts.data_dir)) {
    std::cerr << "conformance: test data not found at " << opts.data_dir
              << " (install Debian's libonnx-testdata: scripts/install-deps.sh)\n";
    return 2;
  }
  std::regex filter(opts.filter.empty() ? ".*" : opts.filter);
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(opts.data_dir)) {
    if (e.is_directory() && std::regex_search(e.path().filename().string(), filter)) {
      dirs.push_back(e.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());

  std::map<std::string, std::string> known;  // test -> reason
  if (!opts.known_path.empty()) {
    std::ifstream f(opts.known_path);
    if (!f) {
      std::cerr << "conformance: cannot read " << opts.known_path << "\n";
      return 2;
    }
    for (std::string line; std::getline(f, line);) {
      if (line.empty() || line[0] == '#') continue;
      size_t sp = line.find(' ');
      known[line.substr(0, sp)] = sp == std::string::npos ? "" : line.substr(sp + 1);
    }
  }

  std::vector<Outcome> outcomes;
  int passed = 0, failed = 0, unsupported = 0;
  for (const auto& dir : dirs) {
    Outcome o;
    if (auto k = known.find(dir.filename().string()); k != known.end()) {
      o = {dir.filename().string(), "", "unsupported", "known issue: " + k->second};
    } else {
      o = RunTest(dir, opts);
    }
    if (o.status == "passed") ++passed;
    if (o.status == "failed") ++failed;
    if (o.status == "unsupported") ++unsupported;
    if (o.status == "failed" || opts.verbose) {
      std::cout << o.status << " " << o.name << (o.reason.empty() ? "" : ": " + o.reason) << "\n";
    }
    outcomes.push_back(std::move(o));
  }

  int exit_code = 0;
  if (!opts.expect_path.empty()) {
    std::ifstream f(opts.expect_path);
    if (!f) {
      std::cerr << "conformance: cannot read " << opts.expect_path << "\n";
      return 2;
    }
    std::set<std::string> expected;
    for (std::string line; std::getline(f, line);) {
      if (!line.empty() && line[0] != '#') expected.insert(line);
    }
    size_t found = 0;
    for (const auto& o : outcomes) {
      if (!expected.count(o.name)) continue;
      ++found;
      if (o.status != "passed") {
        std::cout << "REGRESSION " << o.name << ": " << o.status << ": " << o.reason << "\n";
        exit_code = 1;
      }
    }
    if (found != expected.size()) {
      std::cout << "REGRESSION: " << expected.size() - found << " expected test(s) not found in "
                << opts.data_dir << "\n";
      exit_code = 1;
    }
  }

  if (!opts.json_path.empty()) {
    boost::json::array tests;
    for (const auto& o : outcomes) {
      tests.push_back(boost::json::object{
          {"name", o.name}, {"op", o.op}, {"status", o.status}, {"reason", o.reason}});
    }
    boost::json::object doc{{"passed", passed},
                            {"failed", failed},
                            {"unsupported", unsupported},
                            {"data_dir", opts.data_dir},
                            {"tests", std::move(tests)}};
    fs::create_directories(fs::path(opts.json_path).parent_path().empty()
                               ? fs::path(".")
                               : fs::path(opts.json_path).parent_path());
    std::ofstream(opts.json_path) << boost::json::serialize(doc) << "\n";
  }
  std::cout << "onnx node tests: " << passed << " passed, " << failed << " failed, " << unsupported
            << " unsupported\n";
  return exit_code;
}

}  // namespace

void AddConformanceCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("conformance", "Run ONNX's official node tests");
  AddCommonOptions(cmd, {});
  cmd->add_option("--data", opts->data_dir, "Folder of node tests")->capture_default_str();
  cmd->add_option("--filter", opts->filter, "Regex on test names");
  cmd->add_option("--json", opts->json_path, "Write per-test results as JSON");
  cmd->add_option("--expect", opts->expect_path,
                  "File listing tests that must pass; any that does not fails the run");
  cmd->add_option("--known", opts->known_path,
                  "File of 'test reason' lines reported as unsupported without running");
  cmd->add_option("--threads", opts->threads, "Intra-op threads")->capture_default_str();
  cmd->add_flag("-v,--verbose", opts->verbose, "Print every test, not only failures");
  cmd->callback([opts, &exit_code] { exit_code = RunConformance(*opts); });
}

}  // namespace infermesh::cli
