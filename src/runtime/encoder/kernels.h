// Kernels of the fused transformer encoder: embeddings, LayerNorm, and attention over
// packed variable-length sequences. Each has an AVX-512 body chosen at run time and a
// portable one, with the same results up to float rounding.
//
// Packed layout: the tokens of a batch of sequences are stored back to back, T rows in
// all; sequence b owns rows [cu[b], cu[b+1]). Nothing is padded, so no work is spent
// on padding and attention never crosses a sequence boundary.
#pragma once

#include <cstdint>

namespace infermesh::runtime::encoder {

using bf16 = uint16_t;

// True when the CPU has AVX-512 F/BW/DQ/VL (the fast kernel bodies).
bool CpuHasAvx512();
// True when the CPU has AVX512-BF16 (what oneDNN needs for fast bf16 matmuls).
bool CpuHasAvx512Bf16();
// Round-to-nearest-even float32 → bfloat16 (NaN stays NaN).
bf16 ToBf16(float x);
float FromBf16(bf16 x);
void ToBf16(const float* x, bf16* y, int64_t n);

struct LayerNormParams {
  const float* gamma = nullptr;  // [n]
  const float* beta = nullptr;   // [n]
  float eps = 1e-12f;
};

// x[r] = LayerNorm(x[r]) for `rows` rows of width n, in place; when y16 is not null
// the result is also written there as bfloat16. Runs on `threads` OpenMP threads.
void LayerNormRows(float* x, int64_t rows, int64_t n, const LayerNormParams& ln, bf16* y16,
                   int threads);

struct EmbeddingTables {
  const float* word = nullptr;      // [vocab, n]
  const float* position = nullptr;  // [max_positions, n]
  const float* type = nullptr;      // [type_vocab, n], may be null
  int64_t n = 0;
};

// x[t] = LayerNorm(word[ids[t]] + position[pos[t]] + type[types[t]]) (types may be null:
// type row 0). Indices must have been range-checked by the caller.
void EmbedRows(const EmbeddingTables& tables, const int64_t* ids, const int64_t* pos,
               const int64_t* types, int64_t rows, const LayerNormParams& ln, float* x, bf16* y16,
               int threads);

struct AttentionParams {
  const float* qkv = nullptr;  // [T, ld_qkv]: Q at column 0, K at `hidden`, V at 2*hidden
  int64_t ld_qkv = 0;
  int64_t hidden = 0;  // heads * head_dim
  int heads = 0;
  int head_dim = 0;
  float scale = 0;              // applied to Q·K
  const int64_t* cu = nullptr;  // [batch + 1] row offsets
  int64_t batch = 0;
  float* out = nullptr;  // [T, hidden] (or out16)
  bf16* out16 = nullptr;
  // Optional additive bias by relative position (MPNet, T5): the score of query i and
  // key j (positions within the sequence) gains rel_bias[h * rel_stride + rel_offset +
  // i - j]. The table must cover i - j from -(max_len - 1) to max_len - 1 + 32 (the
  // AVX-512 body reads whole blocks of 32 queries).
  const float* rel_bias = nullptr;
  int64_t rel_stride = 0;
  int64_t rel_offset = 0;
  int64_t max_len = 0;       // longest sequence (sizes the scratch)
  float* scratch = nullptr;  // AttentionScratchFloats() floats
  int threads = 1;
};

// Floats of scratch that Attention needs for these sizes.
int64_t AttentionScratchFloats(int64_t max_len, int head_dim, int threads);

// Multi-head self-attention within each sequence: out = softmax(scale·Q·Kᵀ + bias)·V per
// head (bias = the relative-position table, when given).
void Attention(const AttentionParams& p);

}  // namespace infermesh::runtime::encoder
