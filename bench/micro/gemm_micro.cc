// Micro-benchmarks of runtime::Sgemm on the shapes a bge-small-shaped encoder runs
// (hidden 384, FFN 1536): the fused QKV projection (384x1152), the attention output
// (384x384), FFN up (384x1536) and down (1536x384), at M = 1024 rows (a 32x32 batch)
// and M = 16 (one short sequence), plus 2048^3 as the peak reference of
// `make bench-runtime`. Each runs at 1 and 2 OpenMP threads; GFLOPS is the counter
// to read.
//
//   build/release/bench/micro_gemm --benchmark_filter='Sgemm/1024/'
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "runtime/gemm.h"
#include "runtime/parallel.h"

namespace infermesh::runtime {
namespace {

// Args: m, k, n, threads.
void BM_Sgemm(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  auto pool = MakeIntraOpPool(static_cast<int>(state.range(3)));
  std::vector<float> a(m * k), b(k * n), c(m * n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : a) x = dist(rng);
  for (float& x : b) x = dist(rng);
  for (auto _ : state) {
    Status s = Sgemm({.m = m, .n = n, .k = k}, a.data(), b.data(), c.data());
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(2e-9 * static_cast<double>(m * n * k),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void EncoderShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "k", "n", "threads"});
  for (int64_t threads : {1, 2}) {
    for (int64_t m : {1024, 16}) {
      for (auto [k, n] :
           {std::pair<int64_t, int64_t>{384, 1152}, {384, 384}, {384, 1536}, {1536, 384}}) {
        b->Args({m, k, n, threads});
      }
    }
    b->Args({2048, 2048, 2048, threads});
  }
}

// Real time: oneDNN's worker threads do the work, not only the timing thread.
BENCHMARK(BM_Sgemm)->Apply(EncoderShapes)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace infermesh::runtime

BENCHMARK_MAIN();
