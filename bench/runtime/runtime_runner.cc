// runtime_runner: times our runtime on one case of `make bench-runtime` and prints one
// JSON object on stdout. bench/runtime_bench.py drives it, alternating with
// bench/runtime/ort_runner.mjs (ONNX Runtime) on the same files and thread counts.
//
//   runtime_runner --gemm-peak --threads 2 [--seconds 1.5]
//   runtime_runner --model DIR --inputs seqs.txt --threads 2 --precision bf16 --seconds 3
//   runtime_runner --model DIR --inputs seqs.txt --threads 2 --engine graph   (no fused encoder;
//                  unfused: no graph fusions either)
//   runtime_runner --onnx mlp.onnx --inputs rows.txt --threads 1 --seconds 3
//
// Input files are text, one item per line: the encoder's token ids of one sequence
// (unpadded; our model gets them as they are), or the MLP's floats of one row.
//
// Timing rule, shared with ort_runner.mjs: two warm-up runs, then runs until --seconds
// have elapsed and at least three have completed. per_s counts items (real tokens,
// or rows) over the timed runs; p50_ms is the median run.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/model.h"
#include "runtime/parallel.h"
#include "runtime/session.h"
#include "runtime/tensor.h"
#include "runtime/tokenizer.h"

namespace infermesh::bench {
namespace {

namespace rt = infermesh::runtime;

struct Options {
  bool gemm_peak = false;
  std::string model_dir;  // encoder mode
  std::string onnx;       // tensor (MLP) mode
  std::string inputs;
  int threads = 1;
  std::string precision = "fp32";
  bool fused = true;         // --engine graph turns the fused encoder off
  bool graph_fusion = true;  // --engine unfused also turns off the graph fusions
  double seconds = 3.0;
};

struct Timing {
  int64_t iterations = 0;
  double total_s = 0;
  double p50_ms = 0;
};

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Two warm-up runs, then at least three timed runs and at least `seconds` of them.
// A failing run stops the loop and its status is returned.
Result<Timing> TimeRuns(double seconds, const std::function<Status()>& run) {
  for (int i = 0; i < 2; ++i) IM_RETURN_IF_ERROR(run());
  std::vector<double> ms;
  const auto start = Clock::now();
  while (ms.size() < 3 || SecondsSince(start) < seconds) {
    const auto t0 = Clock::now();
    IM_RETURN_IF_ERROR(run());
    ms.push_back(SecondsSince(t0) * 1e3);
  }
  Timing t;
  t.total_s = SecondsSince(start);
  t.iterations = static_cast<int64_t>(ms.size());
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  t.p50_ms = n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
  return t;
}

boost::json::object TimingJson(const Timing& t, int64_t items_per_run) {
  boost::json::object o;
  o["items"] = items_per_run;
  o["iterations"] = t.iterations;
  o["seconds"] = t.total_s;
  o["per_s"] = static_cast<double>(items_per_run * t.iterations) / t.total_s;
  o["p50_ms"] = t.p50_ms;
  return o;
}

boost::json::array FirstRow(const rt::Tensor& t) {
  boost::json::array row;
  const int64_t width = t.rank() >= 2 ? t.numel() / t.dim(0) : t.numel();
  const float* p = t.data<float>();
  for (int64_t i = 0; i < width; ++i) row.push_back(static_cast<double>(p[i]));
  return row;
}

// Reads whitespace-separated numbers, one item per non-empty line.
template <typename T>
Result<std::vector<std::vector<T>>> ReadLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open " + path);
  std::vector<std::vector<T>> lines;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<T> values;
    // Floats go through double: the driver prints each float32 exactly as a double.
    for (double v; fields >> v;) values.push_back(static_cast<T>(v));
    if (!fields.eof()) return InvalidArgument(path + ": not a number in '" + line + "'");
    if (!values.empty()) lines.push_back(std::move(values));
  }
  if (lines.empty()) return InvalidArgument(path + ": no items");
  return lines;
}

// oneDNN's sgemm on 2048^3 float32: the machine's attainable matrix-product rate,
// against which each case's achieved GFLOP/s is set.
Result<boost::json::object> RunGemmPeak(const Options& o) {
  constexpr int64_t kN = 2048;
  auto pool = rt::MakeIntraOpPool(o.threads);  // sets the OpenMP team oneDNN uses
  std::vector<float> a(kN * kN), b(kN * kN), c(kN * kN);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto* m : {&a, &b}) {
    for (float& x : *m) x = dist(rng);
  }
  auto run = [&]() -> Status {
    if (dnnl_sgemm('N', 'N', kN, kN, kN, 1.0f, a.data(), kN, b.data(), kN, 0.0f, c.data(), kN) !=
        dnnl_success) {
      return Internal("dnnl_sgemm failed");
    }
    return OkStatus();
  };
  IM_ASSIGN_OR_RETURN(Timing t, TimeRuns(o.seconds, run));
  const double flops = 2.0 * kN * kN * kN;
  boost::json::object out;
  out["mode"] = "gemm_peak";
  out["threads"] = pool->threads();
  out["m"] = kN;
  out["n"] = kN;
  out["k"] = kN;
  out["iterations"] = t.iterations;
  out["seconds"] = t.total_s;
  out["gflops"] = flops * static_cast<double>(t.iterations) / t.total_s / 1e9;
  out["gflops_p50"] = flops / (t.p50_ms / 1e3) / 1e9;
  return out;
}

Result<boost::json::object> RunEncoder(const Options& o) {
  rt::SessionOptions so;
  so.intra_op_threads = o.threads;
  IM_ASSIGN_OR_RETURN(so.precision, rt::ParsePrecision(o.precision));
  so.fused_encoder = o.fused;
  so.graph_fusion = o.graph_fusion;
  IM_ASSIGN_OR_RETURN(auto seqs, ReadLines<int64_t>(o.inputs));
  const auto load_start = std::chrono::steady_clock::now();
  IM_ASSIGN_OR_RETURN(auto model, rt::EmbeddingModel::Load(o.model_dir, so));
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start)
          .count();

  std::vector<rt::Encoding> encodings(seqs.size());
  int64_t tokens = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    rt::Encoding& e = encodings[i];
    e.ids = std::move(seqs[i]);
    e.type_ids.assign(e.ids.size(), 0);
    e.attention_mask.assign(e.ids.size(), 1);
    tokens += static_cast<int64_t>(e.ids.size());
  }
  rt::Tensor out;
  auto run = [&]() -> Status {
    IM_ASSIGN_OR_RETURN(out, model->EmbedEncodings(encodings, /*normalize=*/false));
    return OkStatus();
  };
  IM_ASSIGN_OR_RETURN(Timing t, TimeRuns(o.seconds, run));
  boost::json::object j = TimingJson(t, tokens);
  j["mode"] = "encoder";
  j["unit"] = "tokens";
  j["threads"] = o.threads;
  // What the model actually runs: the fused encoder or the generic graph, and the
  // precision in use (a request for bf16 falls back to fp32 without AVX512-BF16).
  j["engine"] = model->fused_encoder() != nullptr ? "fused" : "graph";
  // EmbeddingModel::Load, wall clock: read, parse, build, extract, check, pack.
  j["load_ms"] = load_ms;
  j["weight_bytes"] = model->weight_bytes();
  j["precision"] = rt::PrecisionName(model->precision());
  j["precision_requested"] = rt::PrecisionName(*so.precision);
  j["batch"] = static_cast<int64_t>(encodings.size());
  j["pooling"] = rt::PoolingName(model->pooling());
  j["first_row"] = FirstRow(out);
  return j;
}

Result<boost::json::object> RunTensorModel(const Options& o) {
  rt::SessionOptions so;
  so.intra_op_threads = o.threads;
  so.graph_fusion = o.graph_fusion;
  IM_ASSIGN_OR_RETURN(auto rows, ReadLines<float>(o.inputs));
  IM_ASSIGN_OR_RETURN(auto session, rt::Session::Load(o.onnx, so));
  if (session->inputs().size() != 1) return InvalidArgument("tensor mode wants one graph input");

  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t width = static_cast<int64_t>(rows[0].size());
  std::vector<float> flat;
  for (const auto& r : rows) {
    if (static_cast<int64_t>(r.size()) != width) return InvalidArgument("ragged input rows");
    flat.insert(flat.end(), r.begin(), r.end());
  }
  const std::vector<std::pair<std::string, rt::Tensor>> feeds = {
      {session->inputs()[0].name, rt::Tensor::FromVector<float>({n, width}, flat)}};
  std::vector<rt::Tensor> out;
  auto run = [&]() -> Status {
    IM_ASSIGN_OR_RETURN(out, session->Run(feeds));
    return OkStatus();
  };
  IM_ASSIGN_OR_RETURN(Timing t, TimeRuns(o.seconds, run));
  boost::json::object j = TimingJson(t, n);
  j["mode"] = "tensor";
  j["unit"] = "rows";
  j["threads"] = o.threads;
  j["precision"] = "fp32";
  j["first_row"] = FirstRow(out.at(0));
  return j;
}

void Usage() {
  std::cerr << "usage: runtime_runner --gemm-peak --threads N [--seconds S]\n"
               "       runtime_runner --model DIR --inputs FILE --threads N "
               "[--precision fp32|bf16|int8] [--engine auto|graph|unfused] [--seconds S]\n"
               "       runtime_runner --onnx FILE --inputs FILE --threads N [--seconds S]\n";
}

Result<Options> ParseArgs(int argc, char** argv) {
  Options o;
  bool seconds_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--gemm-peak") {
      o.gemm_peak = true;
      continue;
    }
    if (i + 1 >= argc) return InvalidArgument(arg + " needs a value");
    const std::string value = argv[++i];
    if (arg == "--model") {
      o.model_dir = value;
    } else if (arg == "--onnx") {
      o.onnx = value;
    } else if (arg == "--inputs") {
      o.inputs = value;
    } else if (arg == "--threads") {
      o.threads = std::atoi(value.c_str());
    } else if (arg == "--precision") {
      o.precision = value;
    } else if (arg == "--engine") {
      if (value != "auto" && value != "graph" && value != "unfused") {
        return InvalidArgument("--engine must be auto, graph or unfused, not '" + value + "'");
      }
      o.fused = value == "auto";
      o.graph_fusion = value != "unfused";
    } else if (arg == "--seconds") {
      o.seconds = std::atof(value.c_str());
      seconds_given = true;
    } else {
      return InvalidArgument("unknown flag " + arg);
    }
  }
  if (o.threads < 1) return InvalidArgument("--threads must be at least 1");
  if (o.gemm_peak && !seconds_given) o.seconds = 1.5;
  const int modes = int{o.gemm_peak} + int{!o.model_dir.empty()} + int{!o.onnx.empty()};
  if (modes != 1) return InvalidArgument("give exactly one of --gemm-peak, --model, --onnx");
  if (!o.gemm_peak && o.inputs.empty()) return InvalidArgument("--inputs is required");
  return o;
}

int Main(int argc, char** argv) {
  Result<Options> opts = ParseArgs(argc, argv);
  if (!opts.ok()) {
    std::cerr << "runtime_runner: " << opts.status().ToString() << "\n";
    Usage();
    return 2;
  }
  const Options& o = opts.value();
  Result<boost::json::object> out = o.gemm_peak            ? RunGemmPeak(o)
                                    : !o.model_dir.empty() ? RunEncoder(o)
                                                           : RunTensorModel(o);
  if (!out.ok()) {
    std::cerr << "runtime_runner: " << out.status().ToString() << "\n";
    return 1;
  }
  std::cout << boost::json::serialize(out.value()) << std::endl;
  return 0;
}

}  // namespace
}  // namespace infermesh::bench

int main(int argc, char** argv) { return infermesh::bench::Main(argc, argv); }
