// Linear layers of the fused encoder on oneDNN's matmul primitive, with the weights
// re-packed once at load into the blocked layout oneDNN's kernels read fastest.
//
//   IM_ASSIGN_OR_RETURN(auto kind, LinearKind::Create({.k = 384, .n = 1536,
//                                                     .epilogue = Epilogue::kGeluErf}));
//   IM_ASSIGN_OR_RETURN(PackedWeight w, kind->Pack(weight_kxn, bias_n));
//   IM_RETURN_IF_ERROR(kind->Run(w, rows, x, y));   // y = gelu(x·W + b)
//
// One LinearKind serves every layer with the same shape: a primitive depends on the
// shape, types and epilogue, not on the weights. Primitives are created per row
// count on first use and cached (oneDNN's fastest kernels need the row count fixed).
#pragma once

#include <cstdint>
#include <memory>

#include "core/status.h"
#include "runtime/session.h"

namespace infermesh::runtime::encoder {

// Primitives kept per LinearKind (least recently used go first). Above the row
// counts one FusedEncoder uses per layer kind (see kChunkRows there).
inline constexpr size_t kMaxCachedPrimitives = 80;

enum class Epilogue {
  kBias,            // y = x·W + b
  kBiasGeluErf,     // y = gelu(x·W + b), erf form
  kBiasGeluTanh,    // y = gelu(x·W + b), tanh approximation
  kBiasAccumulate,  // y += x·W + b (residual connection)
};

struct LinearSpec {
  int64_t k = 0;  // input features
  int64_t n = 0;  // output features
  Epilogue epilogue = Epilogue::kBias;
  // kBf16: x and W are bfloat16 (x must already be), accumulation float32.
  // kInt8: x is int8 (quantized per row by the caller) and W int8 per column; Run
  // computes y = (x·W) * w_scale[n] in float32 only: the epilogue (which must be
  // kBias), the bias and the row scales are the caller's (see quantize.h).
  Precision precision = Precision::kFp32;
  bool out_bf16 = false;  // y is bfloat16 (otherwise float32)
};

struct PackedWeight {
  std::shared_ptr<void> weights;  // oneDNN blocked layout
  std::shared_ptr<float> bias;    // [n]
  std::shared_ptr<float> scales;  // [n], int8 only: the weight's per-column scales
};

class LinearKind {
 public:
  ~LinearKind();
  static Result<std::unique_ptr<LinearKind>> Create(const LinearSpec& spec);

  // w is [k, n] row-major float32 (ONNX MatMul's B), bias [n].
  Result<PackedWeight> Pack(const float* w, const float* bias) const;
  // y[rows, n] = epilogue(x[rows, k]·W + b), dense row-major. Threads: the calling
  // thread's OpenMP team (omp_set_num_threads).
  Status Run(const PackedWeight& w, int64_t rows, const void* x, void* y) const;

  const LinearSpec& spec() const { return spec_; }
  // Bytes of one packed weight matrix.
  size_t packed_bytes() const;
  // Primitives created so far (for tests: the cache must stay bounded).
  size_t cached_primitives() const;

 private:
  struct Impl;
  explicit LinearKind(const LinearSpec& spec);
  LinearSpec spec_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infermesh::runtime::encoder
