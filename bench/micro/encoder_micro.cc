// Micro-benchmarks of the fused encoder's kernels (runtime/encoder/) on bge-small
// shapes (hidden 384, 12 heads, FFN 1536): each linear layer with its epilogue at
// float32 and bf16, attention at uniform length 32 and at mixed lengths up to 256,
// LayerNorm, the embedding lookup, and one whole 12-layer encoder on random weights.
// Items are tokens; GFLOPS counts only the matmul FLOPs.
//
//   build/release/bench/micro_encoder --benchmark_filter=Linear
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "runtime/encoder/fused_encoder.h"
#include "runtime/encoder/kernels.h"
#include "runtime/encoder/linear.h"

namespace infermesh::runtime::encoder {
namespace {

constexpr int64_t kHidden = 384, kFfn = 1536, kHeads = 12;

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Args: rows, which (0 qkv, 1 out+residual, 2 ffn1+gelu, 3 ffn2+residual), precision
// (0 fp32, 1 bf16, 2 int8: the matmul alone, its epilogue is separate), threads.
void BM_Linear(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const int which = static_cast<int>(state.range(1));
  const bool use_bf16 = state.range(2) == 1;
  const bool use_int8 = state.range(2) == 2;
  omp_set_num_threads(static_cast<int>(state.range(3)));
  const int64_t k = which == 3 ? kFfn : kHidden;
  const int64_t n = which == 0 ? 3 * kHidden : which == 2 ? kFfn : kHidden;
  const Epilogue e = use_int8     ? Epilogue::kBias
                     : which == 2 ? Epilogue::kBiasGeluErf
                     : which == 0 ? Epilogue::kBias
                                  : Epilogue::kBiasAccumulate;
  auto kind = LinearKind::Create({k, n, e,
                                  use_int8   ? Precision::kInt8
                                  : use_bf16 ? Precision::kBf16
                                             : Precision::kFp32,
                                  use_bf16 && which == 2});
  if (!kind.ok()) {
    state.SkipWithError(kind.status().ToString().c_str());
    return;
  }
  auto w = Random(k * n, 1, 0.05f), b = Random(n, 2);
  auto packed = (*kind)->Pack(w.data(), b.data());
  if (!packed.ok()) {
    state.SkipWithError(packed.status().ToString().c_str());
    return;
  }
  std::vector<float> x = Random(rows * k, 3);
  std::vector<bf16> x16(x.size());
  ToBf16(x.data(), x16.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(rows * n);
  for (auto _ : state) {
    Status s =
        (*kind)->Run(*packed, rows, use_bf16 ? static_cast<void*>(x16.data()) : x.data(), y.data());
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(2e-9 * double(rows * k * n),
                                                benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Linear)
    ->ArgsProduct({{16, 1024, 8448}, {0, 1, 2, 3}, {0, 1, 2}, {2}})
    ->Args({1024, 2, 0, 1})
    ->UseRealTime();

std::vector<int64_t> Lengths(bool mixed) {
  std::vector<int64_t> lens;
  if (!mixed) return std::vector<int64_t>(32, 32);
  std::mt19937 rng(7);
  for (int i = 0; i < 64; ++i) lens.push_back(8 + static_cast<int64_t>(rng() % 249));
  return lens;
}

// Args: mixed lengths, threads.
void BM_Attention(benchmark::State& state) {
  const auto lens = Lengths(state.range(0) != 0);
  const int threads = static_cast<int>(state.range(1));
  std::vector<int64_t> cu = {0};
  int64_t max_len = 0;
  for (int64_t l : lens) {
    cu.push_back(cu.back() + l);
    max_len = std::max(max_len, l);
  }
  auto qkv = Random(cu.back() * 3 * kHidden, 4);
  std::vector<float> out(cu.back() * kHidden);
  std::vector<float> scratch(AttentionScratchFloats(max_len, kHidden / kHeads, threads));
  AttentionParams p;
  p.qkv = qkv.data();
  p.ld_qkv = 3 * kHidden;
  p.hidden = kHidden;
  p.heads = kHeads;
  p.head_dim = kHidden / kHeads;
  p.scale = 1.0f / std::sqrt(float(p.head_dim));
  p.cu = cu.data();
  p.batch = static_cast<int64_t>(lens.size());
  p.out = out.data();
  p.max_len = max_len;
  p.scratch = scratch.data();
  p.threads = threads;
  for (auto _ : state) {
    Attention(p);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * cu.back());
}
BENCHMARK(BM_Attention)->ArgsProduct({{0, 1}, {1, 2}})->UseRealTime();

void BM_LayerNorm(benchmark::State& state) {
  const int64_t rows = 1024;
  auto x = Random(rows * kHidden, 5), g = Random(kHidden, 6), b = Random(kHidden, 7);
  std::vector<bf16> x16(x.size());
  for (auto _ : state) {
    LayerNormRows(x.data(), rows, kHidden, {g.data(), b.data(), 1e-12f},
                  state.range(0) ? x16.data() : nullptr, 2);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_LayerNorm)->Arg(0)->Arg(1)->UseRealTime();

// The whole encoder, 12 layers at bge-small shapes on random weights. Args: mixed
// lengths, precision (0 fp32, 1 bf16, 2 int8), threads.
void BM_Encoder(benchmark::State& state) {
  EncoderWeights w;
  w.hidden = kHidden;
  w.ffn = kFfn;
  w.vocab = 30522;
  w.max_positions = 512;
  w.type_vocab = 2;
  w.word = Random(w.vocab * kHidden, 8, 0.05f);
  w.position = Random(512 * kHidden, 9, 0.05f);
  w.type = Random(2 * kHidden, 10, 0.05f);
  auto ln = [] {
    LayerNormWeights l;
    l.gamma.assign(kHidden, 1.0f);
    l.beta.assign(kHidden, 0.0f);
    return l;
  };
  w.embedding_ln = ln();
  for (int l = 0; l < 12; ++l) {
    EncoderLayerWeights lw;
    lw.qkv_w.push_back(Random(kHidden * 3 * kHidden, 20 + l, 0.05f));
    lw.qkv_b.push_back(Random(3 * kHidden, 40 + l, 0.02f));
    lw.out_w = Random(kHidden * kHidden, 60 + l, 0.05f);
    lw.out_b = Random(kHidden, 80 + l, 0.02f);
    lw.ln1 = ln();
    lw.ffn1_w = Random(kHidden * kFfn, 100 + l, 0.05f);
    lw.ffn1_b = Random(kFfn, 120 + l, 0.02f);
    lw.ffn2_w = Random(kFfn * kHidden, 140 + l, 0.025f);
    lw.ffn2_b = Random(kHidden, 160 + l, 0.02f);
    lw.ln2 = ln();
    w.layers.push_back(std::move(lw));
  }
  FusedEncoderOptions o;
  o.heads = kHeads;
  o.precision = state.range(1) == 2   ? Precision::kInt8
                : state.range(1) == 1 ? Precision::kBf16
                                      : Precision::kFp32;
  o.threads = static_cast<int>(state.range(2));
  auto enc = FusedEncoder::Create(w, o);
  if (!enc.ok()) {
    state.SkipWithError(enc.status().ToString().c_str());
    return;
  }
  PackedBatch pb;
  pb.cu = {0};
  std::mt19937 rng(11);
  for (int64_t l : Lengths(state.range(0) != 0)) {
    for (int64_t i = 0; i < l; ++i) pb.ids.push_back(1000 + static_cast<int64_t>(rng() % 29000));
    pb.cu.push_back(static_cast<int64_t>(pb.ids.size()));
  }
  for (auto _ : state) {
    Status s = (*enc)->Run(pb, [](const float*) {});
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  const double flops_per_token = 2.0 * 12 * (4 * kHidden * kHidden + 2 * kHidden * kFfn);
  state.SetItemsProcessed(state.iterations() * pb.cu.back());
  state.counters["GFLOPS"] = benchmark::Counter(1e-9 * flops_per_token * double(pb.cu.back()),
                                                benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Encoder)
    ->ArgsProduct({{0, 1}, {0, 1, 2}, {2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace infermesh::runtime::encoder

BENCHMARK_MAIN();
