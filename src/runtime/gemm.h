// Single-precision matrix multiplication for CPU kernels: the one place where
// runtime code calls oneDNN's GEMM, so that weight pre-packing, a different
// backend or a faster small-matrix path can later be added here alone.
//
//   // C[m,n] = A[m,k] * B[k,n], all row-major and dense.
//   IM_RETURN_IF_ERROR(Sgemm({.m = m, .n = n, .k = k}, a, b, c));
//
//   // C = 0.5 * A^T * B + C, with explicit leading dimensions.
//   GemmParams p{.m = m, .n = n, .k = k, .trans_a = true, .alpha = 0.5f, .beta = 1.0f};
//   p.lda = m;  // A is stored as [k, m]
//   IM_RETURN_IF_ERROR(Sgemm(p, a, b, c));
//
// All matrices are row-major. When beta == 0 the contents of C are never read, so
// C may be uninitialised (even NaN). oneDNN threads with OpenMP on the calling
// thread's team; called from inside an IntraOpPool::ParallelFor body it runs on
// one thread (OpenMP nesting is off), which is what SgemmBatched relies on.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "runtime/parallel.h"

namespace infermesh::runtime {

struct GemmParams {
  int64_t m = 0;         // rows of op(A) and C
  int64_t n = 0;         // columns of op(B) and C
  int64_t k = 0;         // columns of op(A), rows of op(B)
  bool trans_a = false;  // A is stored [k, m] and used transposed
  bool trans_b = false;  // B is stored [n, k] and used transposed
  float alpha = 1.0f;
  float beta = 0.0f;
  // Leading dimensions (row strides in elements); 0 means dense: the stored
  // row length (k or m for A, n or k for B, n for C).
  int64_t lda = 0;
  int64_t ldb = 0;
  int64_t ldc = 0;
};

// C = alpha * op(A) * op(B) + beta * C. Returns InvalidArgument for negative
// sizes or leading dimensions shorter than a row, Internal if oneDNN fails.
Status Sgemm(const GemmParams& p, const float* a, const float* b, float* c);

// `batch` independent GEMMs with the same parameters; matrix i starts at
// a + i * stride_a (likewise b, c). A stride of 0 reuses one matrix for every
// batch entry (a broadcast weight). Small matrices are spread over `pool`'s
// threads one GEMM per task; large ones run one after another, each threaded
// by oneDNN. `pool` may be null (then batches run serially on oneDNN's team).
Status SgemmBatched(const GemmParams& p, int64_t batch, const float* a, int64_t stride_a,
                    const float* b, int64_t stride_b, float* c, int64_t stride_c,
                    IntraOpPool* pool);

// Multiply-adds below which a matrix product runs on the calling thread alone: it costs
// less than waking a second thread (and far less than a barrier when another process
// holds the other core). Sgemm applies it; so does every other matmul path.
inline constexpr int64_t kSerialGemmMacs = int64_t{1} << 20;

}  // namespace infermesh::runtime
