// `infermesh bench`: an HTTP load generator for the worker and the gateway, open loop
// with --rate R (requests due at fixed instants, latency from each intended start, so
// a slow server cannot slow the clock that measures it) or closed loop with --rate 0,
// and an in-process runtime measurement on the same texts for comparison.
//
//   infermesh bench --url http://127.0.0.1:8000 --path /embed
//       --model build/demo-models/bge-small-demo --unique-texts 20000 --tokens 16
//       --rate 100 --duration 20 --connections 64 --json out.json
//   infermesh bench --url http://127.0.0.1:8000 --body-file body.json --rate 0
//       --connections 32 --duration 10          # closed loop: saturation
//   infermesh bench --in-process --model build/demo-models/bge-small-demo
//       --unique-texts 4000 --tokens 16 --batch-size 64 --duration 15
//   infermesh bench --url http://127.0.0.1:8000 --path /infer --requests 10000 --threads 50
//       --cache-test --min-success 0.99      # the seed's benchmark.py, closed loop
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "cli/bench_load.h"
#include "cli/bench_texts.h"
#include "cli/commands.h"
#include "runtime/model.h"

namespace infermesh::cli {
namespace {

struct BenchCliOptions {
  std::string url = "http://127.0.0.1:8000";
  std::string path = "/embed";
  std::string body_file;
  std::string model;  // vocabulary for generated texts; the model for --in-process
  size_t unique_texts = 0;
  int tokens = 16;
  int texts_per_request = 1;
  bool repeat = false;
  double repeat_ratio = 0;  // share of each request's texts drawn from a small hot set
  size_t hot_texts = 1024;
  uint64_t seed = 1;
  double rate = 0;
  double duration_s = 10;
  double warmup_s = 0;
  double drain_s = 10;
  int connections = 64;
  int client_threads = 1;
  std::string json_out;
  bool in_process = false;
  int batch_size = 0;
  int threads = -1;  // HTTP: concurrent clients (as the seed's benchmark.py); in process: intra-op
  uint64_t requests = 0;  // closed loop: stop after this many (the seed's --requests)
  bool cache_test = false;
  int features = 0;    // /infer tensor rows of this width (default 64 on /infer)
  int max_tokens = 0;  // > --tokens: text lengths uniform in [--tokens, --max-tokens]
  double min_success = -1;
  bool no_progress = false;
};

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

bool ParseUrl(const std::string& url, std::string& host, uint16_t& port, std::string& path) {
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  if (rest.rfind("https://", 0) == 0) return false;
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    if (slash + 1 < rest.size()) path = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  const size_t colon = rest.rfind(':');
  host = rest.substr(0, colon);
  if (colon == std::string::npos) {
    port = 80;
  } else {
    try {
      const int p = std::stoi(rest.substr(colon + 1));
      if (p <= 0 || p > 65535) return false;
      port = static_cast<uint16_t>(p);
    } catch (...) {
      return false;
    }
  }
  return !host.empty();
}

bool WriteJson(const std::string& path, const boost::json::object& doc) {
  if (path.empty()) return true;
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream out(path);
  out << boost::json::serialize(doc) << "\n";
  return static_cast<bool>(out);
}

Result<std::vector<std::string>> GeneratedTexts(const BenchCliOptions& o, size_t count) {
  IM_ASSIGN_OR_RETURN(auto words, LoadVocabularyWords(o.model));
  return UniqueTexts(words, count, o.tokens, o.seed);
}

boost::json::object LatencyJson(const LatencyRecorder& r) {
  return {{"count", r.count()},
          {"p50", Ms(r.PercentileNs(0.50))},
          {"p90", Ms(r.PercentileNs(0.90))},
          {"p95", Ms(r.PercentileNs(0.95))},
          {"p99", Ms(r.PercentileNs(0.99))},
          {"p999", Ms(r.PercentileNs(0.999))},
          {"max", Ms(r.MaxNs())},
          {"mean", r.MeanNs() / 1e6}};
}

int RunHttp(const BenchCliOptions& o) {
  LoadOptions lo;
  lo.path = o.path;
  if (!ParseUrl(o.url, lo.host, lo.port, lo.path)) {
    std::cerr << "error: --url must be http://HOST[:PORT][/PATH]\n";
    return 2;
  }
  if (o.path != "/embed") lo.path = o.path;  // an explicit --path wins over the URL's
  int items = o.texts_per_request;
  const bool tensor = o.features > 0 || lo.path == "/infer";
  if (tensor && o.body_file.empty()) {
    // /infer rows: {"request_id", "input_data": [features floats]}, seeded; with
    // --cache-test a set of --hot-texts rows that repeat, else a new row per request.
    const int features = o.features > 0 ? o.features : 64;
    const size_t n = o.cache_test ? std::max<size_t>(1, o.hot_texts)
                                  : std::max<size_t>(1, o.unique_texts > 0 ? o.unique_texts
                                                        : o.requests > 0   ? o.requests
                                                                           : 10000);
    if (features > 65536 || n > 2'000'000) {
      std::cerr << "error: --features at most 65536 and at most 2,000,000 distinct rows\n";
      return 2;
    }
    std::mt19937_64 rng(o.seed);
    std::uniform_real_distribution<float> value(-1, 1);
    for (size_t i = 0; i < n; ++i) {
      boost::json::array row;
      row.reserve(size_t(features));
      for (int f = 0; f < features; ++f) row.push_back(double(value(rng)));
      lo.bodies.push_back(boost::json::serialize(boost::json::object{
          {"request_id", "bench-" + std::to_string(i)}, {"input_data", std::move(row)}}));
    }
    items = 1;
  } else if (!o.body_file.empty()) {
    std::ifstream in(o.body_file, std::ios::binary);
    if (!in) {
      std::cerr << "error: cannot read " << o.body_file << "\n";
      return 2;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    lo.bodies.push_back(ss.str());
  } else if (!o.model.empty()) {
    const size_t requests = o.repeat       ? 1
                            : o.cache_test ? std::max<size_t>(1, o.hot_texts)
                                           : std::max<size_t>(1, o.unique_texts);
    if (o.texts_per_request < 1 || o.texts_per_request > 65536) {
      std::cerr << "error: --texts-per-request must be 1..65536\n";
      return 2;
    }
    if (o.repeat_ratio < 0 || o.repeat_ratio > 1 || o.hot_texts < 1) {
      std::cerr << "error: --repeat-ratio must be 0..1 and --hot-texts at least 1\n";
      return 2;
    }
    // Every text is generated up front: keep that within memory.
    constexpr size_t kMaxTexts = 20'000'000;
    const size_t total = requests * static_cast<size_t>(o.texts_per_request);
    if (requests > kMaxTexts || total > kMaxTexts || o.hot_texts > kMaxTexts - total) {
      std::cerr << "error: --unique-texts " << requests << " x --texts-per-request "
                << o.texts_per_request << " (+ --hot-texts " << o.hot_texts << ") is more than "
                << kMaxTexts
                << " generated texts; lower --unique-texts (bodies are reused in turn)\n";
      return 2;
    }
    const size_t hot = o.repeat_ratio > 0 ? o.hot_texts : 0;
    auto texts = GeneratedTexts(o, total + hot);
    if (!texts.ok()) {
      std::cerr << "error: " << texts.status().ToString() << "\n";
      return 2;
    }
    if (o.max_tokens > o.tokens) {
      // A length distribution: each text cut to a length uniform in [tokens, max_tokens]
      // words (generated at max_tokens; seeded).
      BenchCliOptions longest = o;
      longest.tokens = o.max_tokens;
      texts = GeneratedTexts(longest, total + hot);
      if (!texts.ok()) {
        std::cerr << "error: " << texts.status().ToString() << "\n";
        return 2;
      }
      std::mt19937_64 rng(o.seed ^ 0x5bd1e995ULL);
      std::uniform_int_distribution<int> len(o.tokens, o.max_tokens);
      for (auto& t : *texts) {
        const int keep = len(rng);
        size_t pos = 0;
        for (int w = 0; w < keep && pos != std::string::npos; ++w) pos = t.find(' ', pos + 1);
        if (pos != std::string::npos) t.resize(pos);
      }
    }
    if (hot > 0) {
      // --repeat-ratio: each text slot is, with that probability, one of the last `hot`
      // generated texts (seeded, so runs are repeatable); once sent, those are repeats.
      std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
      std::uniform_real_distribution<double> coin(0, 1);
      for (size_t i = 0; i < total; ++i) {
        if (coin(rng) < o.repeat_ratio) (*texts)[i] = (*texts)[total + rng() % hot];
      }
    }
    const std::string model_name = std::filesystem::path(o.model).filename().string();
    for (size_t i = 0; i < requests; ++i) {
      std::vector<std::string> chunk(texts->begin() + i * o.texts_per_request,
                                     texts->begin() + (i + 1) * o.texts_per_request);
      lo.bodies.push_back(EmbedBody(lo.path, chunk, model_name));
    }
  } else {
    std::cerr << "error: give --body-file FILE or --model DIR (with --unique-texts N or "
                 "--repeat)\n";
    return 2;
  }
  lo.rate = o.rate;
  lo.connections = o.threads > 0 ? o.threads : o.connections;
  lo.threads = o.client_threads;
  lo.duration_s = o.duration_s;
  lo.warmup_s = o.warmup_s;
  lo.drain_s = o.drain_s;
  if (o.requests > 0) {
    if (o.rate > 0) {
      std::cerr << "error: --requests is for the closed loop (--rate 0)\n";
      return 2;
    }
    lo.max_requests = o.requests;
    lo.warmup_s = 0;
    lo.duration_s = 86400;  // a cap: the run ends with its last request
  }
  lo.inspect_node_id = tensor || o.cache_test;
  std::atomic<uint64_t> completed{0};
  lo.completed = &completed;
  std::atomic<bool> done{false};
  std::thread progress;
  if (!o.no_progress && isatty(STDERR_FILENO)) {
    // A bar on a terminal: requests answered of --requests, or seconds of --duration.
    progress = std::thread([&] {
      const auto t0 = std::chrono::steady_clock::now();
      while (!done.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const double el =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const uint64_t n = completed.load();
        const double frac = o.requests > 0 ? double(n) / double(o.requests)
                                           : std::min(1.0, el / std::max(1e-9, o.duration_s));
        const int width = 30, fill = int(std::min(1.0, frac) * width);
        std::fprintf(stderr, "\r[%s%s] %3.0f%%  %llu answered  %.0f req/s ",
                     std::string(size_t(fill), '#').c_str(),
                     std::string(size_t(width - fill), '.').c_str(), frac * 100,
                     static_cast<unsigned long long>(n), el > 0 ? double(n) / el : 0.0);
      }
      std::fprintf(stderr, "\r%80s\r", "");
    });
  }

  LoadResult r = RunLoad(lo);
  done = true;
  if (progress.joinable()) progress.join();
  uint64_t errors = r.io_errors + r.unfinished;
  for (const auto& [status, n] : r.non_2xx) errors += n;
  const double rps = r.measured_s > 0 ? static_cast<double>(r.ok) / r.measured_s : 0;
  const LatencyRecorder& lat = r.ok_latencies;

  char line[256];
  std::printf(
      "%s %s%s  %s, %d connections, %d client threads, %.1f s measured\n",
      o.rate > 0 ? "open loop" : "closed loop", o.url.c_str(), lo.path.c_str(),
      o.rate > 0 ? (std::to_string(static_cast<int64_t>(o.rate)) + " req/s").c_str() : "saturation",
      lo.connections, lo.threads, r.measured_s);
  std::snprintf(line, sizeof line,
                "  throughput %.1f req/s (%.1f items/s)  sent %llu  ok %llu  errors %llu  "
                "max backlog %llu\n",
                rps, rps * items, static_cast<unsigned long long>(r.sent),
                static_cast<unsigned long long>(r.ok), static_cast<unsigned long long>(errors),
                static_cast<unsigned long long>(r.max_backlog));
  std::cout << line;
  std::snprintf(line, sizeof line,
                "  latency ms (2xx, from intended start)  p50 %.2f  p90 %.2f  p99 %.2f  "
                "max %.2f  mean %.2f\n",
                Ms(lat.PercentileNs(0.5)), Ms(lat.PercentileNs(0.9)), Ms(lat.PercentileNs(0.99)),
                Ms(lat.MaxNs()), lat.MeanNs() / 1e6);
  std::cout << line;
  const uint64_t answered = r.ok + errors;
  const double success = answered > 0 ? double(r.ok) / double(answered) : 0;
  std::snprintf(line, sizeof line,
                "  success rate %.2f%%  requests/s %.1f  mean %.2f  median %.2f  p90 %.2f  "
                "p95 %.2f  p99 %.2f ms\n",
                success * 100, rps, lat.MeanNs() / 1e6, Ms(lat.PercentileNs(0.5)),
                Ms(lat.PercentileNs(0.9)), Ms(lat.PercentileNs(0.95)), Ms(lat.PercentileNs(0.99)));
  std::cout << line;
  boost::json::object per_worker;
  uint64_t node_total = 0;
  for (const auto& [node, t] : r.per_node) node_total += t.responses;
  for (const auto& [node, t] : r.per_node) {
    const double share = node_total ? double(t.responses) / double(node_total) : 0;
    const double hit = t.responses ? double(t.cached) / double(t.responses) : 0;
    std::snprintf(line, sizeof line, "  worker %-28s %6.1f%% of requests  cache hit rate %5.1f%%\n",
                  node.c_str(), share * 100, hit * 100);
    std::cout << line;
    per_worker[node] = boost::json::object{
        {"requests", t.responses}, {"share", share}, {"cached", t.cached}, {"cache_hit_rate", hit}};
  }
  boost::json::object by_status;
  for (const auto& [status, n] : r.non_2xx) {
    by_status[std::to_string(status)] = n;
    std::cout << "  status " << status << ": " << n << "\n";
  }
  if (r.io_errors) std::cout << "  io errors: " << r.io_errors << "\n";
  if (r.unfinished) std::cout << "  unfinished at the end of the drain: " << r.unfinished << "\n";

  boost::json::object doc{{"mode", "http"},
                          {"url", o.url},
                          {"path", lo.path},
                          {"open_loop", o.rate > 0},
                          {"target_rate", o.rate},
                          {"connections", lo.connections},
                          {"client_threads", lo.threads},
                          {"duration_s", o.duration_s},
                          {"warmup_s", o.warmup_s},
                          {"measured_s", r.measured_s},
                          {"bodies", lo.bodies.size()},
                          {"items_per_request", items},
                          {"repeat_ratio", o.repeat_ratio},
                          {"sent", r.sent},
                          {"ok", r.ok},
                          {"throughput_rps", rps},
                          {"items_per_s", rps * items},
                          {"errors_by_status", std::move(by_status)},
                          {"io_errors", r.io_errors},
                          {"unfinished", r.unfinished},
                          {"max_backlog", r.max_backlog},
                          {"latency_ms", LatencyJson(lat)},
                          {"success_rate", success},
                          {"requests_target", o.requests},
                          {"per_worker", std::move(per_worker)},
                          {"all_responses_latency_ms", LatencyJson(r.latencies)}};
  if (!WriteJson(o.json_out, doc)) {
    std::cerr << "error: cannot write " << o.json_out << "\n";
    return 1;
  }
  if (o.min_success >= 0) {
    const double want = o.min_success > 1 ? o.min_success / 100 : o.min_success;
    if (success < want) {
      std::cerr << "error: success rate " << success * 100 << "% below --min-success " << want * 100
                << "%\n";
      return 1;
    }
  }
  return r.ok > 0 ? 0 : 1;
}

// The runtime alone: the same generated texts, tokenized up front (untimed), then
// EmbedEncodings over consecutive batches of --batch-size until --duration passes.
int RunInProcess(const BenchCliOptions& o) {
  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  auto threads = IntraOpThreads(*config, o.threads);
  auto max_bytes = config->GetBytes("runtime.max_model_bytes");
  auto max_batch_tokens = config->GetInt("worker.max_batch_tokens");
  if (!threads.ok() || !max_bytes.ok() || !max_batch_tokens.ok()) {
    std::cerr << "error: bad configuration\n";
    return 2;
  }
  runtime::SessionOptions so;
  so.intra_op_threads = *threads;
  so.max_model_bytes = *max_bytes;
  auto model = runtime::EmbeddingModel::Load(o.model, so);
  if (!model.ok()) {
    std::cerr << "error: " << model.status().ToString() << "\n";
    return 1;
  }
  const int batch =
      o.batch_size > 0 ? o.batch_size : std::max<int>(1, *max_batch_tokens / std::max(1, o.tokens));
  auto texts = GeneratedTexts(o, std::max<size_t>(o.unique_texts, static_cast<size_t>(batch)));
  if (!texts.ok()) {
    std::cerr << "error: " << texts.status().ToString() << "\n";
    return 2;
  }
  using Clock = std::chrono::steady_clock;
  std::vector<runtime::Encoding> encodings;
  encodings.reserve(texts->size());
  const auto t0 = Clock::now();
  for (const auto& t : *texts) {
    auto e = (*model)->Tokenize(t, {});
    if (!e.ok()) {
      std::cerr << "error: " << e.status().ToString() << "\n";
      return 1;
    }
    encodings.push_back(std::move(*e));
  }
  const double tokenize_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const bool normalize = (*model)->normalize_by_default();

  auto make_batch = [&](size_t first) {
    std::vector<runtime::Encoding> b;
    for (int i = 0; i < batch; ++i) b.push_back(encodings[(first + i) % encodings.size()]);
    return b;
  };
  // Warm-up: one batch (first-run allocations, oneDNN primitive creation).
  if (auto w = (*model)->EmbedEncodings(make_batch(0), normalize); !w.ok()) {
    std::cerr << "error: " << w.status().ToString() << "\n";
    return 1;
  }
  size_t next = static_cast<size_t>(batch);
  uint64_t rows = 0, batches = 0;
  double compute_s = 0;
  LatencyRecorder batch_times;
  const auto start = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - start).count() < o.duration_s) {
    auto b = make_batch(next);  // copying the encodings is outside the timed call
    next += static_cast<size_t>(batch);
    const auto b0 = Clock::now();
    auto out = (*model)->EmbedEncodings(b, normalize);
    const auto b1 = Clock::now();
    if (!out.ok()) {
      std::cerr << "error: " << out.status().ToString() << "\n";
      return 1;
    }
    compute_s += std::chrono::duration<double>(b1 - b0).count();
    batch_times.Record(std::chrono::duration_cast<std::chrono::nanoseconds>(b1 - b0).count());
    rows += static_cast<uint64_t>(batch);
    ++batches;
  }
  const double per_s = compute_s > 0 ? static_cast<double>(rows) / compute_s : 0;
  std::printf("in-process %s: %d intra-op threads, batch %d, %llu batches\n", o.model.c_str(),
              *threads, batch, static_cast<unsigned long long>(batches));
  std::printf(
      "  %.1f embeddings/s (EmbedEncodings only)  batch ms p50 %.2f  max %.2f  "
      "tokenize %.0f texts/s (one thread)\n",
      per_s, Ms(batch_times.PercentileNs(0.5)), Ms(batch_times.MaxNs()),
      tokenize_s > 0 ? static_cast<double>(texts->size()) / tokenize_s : 0.0);
  boost::json::object doc{{"mode", "in_process"},
                          {"model", o.model},
                          {"intra_op_threads", *threads},
                          {"batch_size", batch},
                          {"tokens", o.tokens},
                          {"batches", batches},
                          {"embeddings", rows},
                          {"compute_s", compute_s},
                          {"embeddings_per_s", per_s},
                          {"batch_ms", LatencyJson(batch_times)},
                          {"tokenize_texts_per_s",
                           tokenize_s > 0 ? static_cast<double>(texts->size()) / tokenize_s : 0}};
  if (!WriteJson(o.json_out, doc)) {
    std::cerr << "error: cannot write " << o.json_out << "\n";
    return 1;
  }
  return 0;
}

int RunBench(const BenchCliOptions& o) {
  if (o.in_process) {
    if (o.model.empty()) {
      std::cerr << "error: --in-process needs --model DIR\n";
      return 2;
    }
    return RunInProcess(o);
  }
  if (o.connections < 1 || o.duration_s <= 0 || o.warmup_s < 0 || o.warmup_s >= o.duration_s ||
      o.texts_per_request < 1 || o.tokens < 1) {
    std::cerr << "error: need --connections >= 1, --duration > --warmup >= 0, "
                 "--texts-per-request >= 1, --tokens >= 1\n";
    return 2;
  }
  return RunHttp(o);
}

}  // namespace

void AddBenchCommand(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<BenchCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "HTTP load generator (open loop at --rate, closed loop at --rate 0), or the "
      "runtime in process (--in-process)");
  AddCommonOptions(cmd, {});
  cmd->add_option("--url", o->url, "Server base URL, http://HOST:PORT");
  cmd->add_option("--path", o->path, "Request path (/embed, /v1/embeddings, /infer, ...)");
  cmd->add_option("--body-file", o->body_file, "Send this body with every request");
  cmd->add_option("--model", o->model,
                  "Model directory: vocabulary for generated texts; the model for --in-process");
  cmd->add_option("--unique-texts", o->unique_texts,
                  "Generate N distinct texts from the vocabulary (request i uses text i mod N)");
  cmd->add_option("--tokens", o->tokens, "Words (= tokens) per generated text");
  cmd->add_option("--texts-per-request", o->texts_per_request, "Generated texts per request");
  cmd->add_flag("--repeat", o->repeat, "Send one generated body with every request (cache hits)");
  cmd->add_option("--repeat-ratio", o->repeat_ratio,
                  "Share (0..1) of generated texts drawn from a hot set (repeats once sent)");
  cmd->add_option("--hot-texts", o->hot_texts, "Size of the --repeat-ratio hot set");
  cmd->add_option("--seed", o->seed, "Seed of the text generator");
  cmd->add_option("--rate", o->rate, "Target requests/s, open loop; 0 = closed-loop saturation");
  cmd->add_option("--duration", o->duration_s, "Seconds of load (in-process: of compute)");
  cmd->add_option("--warmup", o->warmup_s, "Leading seconds sent but not measured");
  cmd->add_option("--drain", o->drain_s, "Seconds allowed after --duration for answers");
  cmd->add_option("--connections", o->connections, "Keep-alive connections");
  cmd->add_option("--client-threads", o->client_threads, "Client event-loop threads");
  cmd->add_option("--json", o->json_out, "Write the results as JSON to this file");
  cmd->add_flag("--in-process", o->in_process, "Measure EmbeddingModel::EmbedEncodings directly");
  cmd->add_option("--batch-size", o->batch_size,
                  "In-process batch size (default worker.max_batch_tokens / --tokens)");
  cmd->add_option("--threads", o->threads,
                  "Concurrent clients (HTTP; as the seed's benchmark.py, = --connections), or "
                  "intra-op threads (--in-process; default runtime.intra_op_threads)");
  cmd->add_option("--requests", o->requests,
                  "Closed loop: send this many requests, then stop (instead of --duration)");
  cmd->add_flag("--cache-test", o->cache_test,
                "Cycle through --hot-texts (default 100) bodies, so repeats hit the caches; "
                "reports each worker's cache hit rate");
  cmd->add_option("--features", o->features, "/infer rows of this width (default 64 on /infer)");
  cmd->add_option("--max-tokens", o->max_tokens,
                  "Text lengths uniform in [--tokens, --max-tokens] words");
  cmd->add_option("--min-success", o->min_success,
                  "Exit 1 when the success rate is below this (0.99 or 99)");
  cmd->add_flag("--no-progress", o->no_progress, "No progress bar on a terminal");
  cmd->callback([o, cmd, &exit_code] {
    if (o->cache_test && cmd->count("--hot-texts") == 0) o->hot_texts = 100;
    exit_code = RunBench(*o);
  });
}

}  // namespace infermesh::cli
