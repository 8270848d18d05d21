#include "runtime/gemm.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <string>
#include <vector>

namespace infermesh::runtime {
namespace {

struct Resolved {
  int64_t lda, ldb, ldc;
};

Result<Resolved> Resolve(const GemmParams& p) {
  if (p.m < 0 || p.n < 0 || p.k < 0) {
    return InvalidArgument("sgemm: negative size m=" + std::to_string(p.m) +
                           " n=" + std::to_string(p.n) + " k=" + std::to_string(p.k));
  }
  const int64_t a_cols = p.trans_a ? p.m : p.k;
  const int64_t b_cols = p.trans_b ? p.k : p.n;
  Resolved r{p.lda ? p.lda : a_cols, p.ldb ? p.ldb : b_cols, p.ldc ? p.ldc : p.n};
  // BLAS requires ld >= max(1, cols) even for empty matrices.
  r.lda = std::max<int64_t>(r.lda, 1);
  r.ldb = std::max<int64_t>(r.ldb, 1);
  r.ldc = std::max<int64_t>(r.ldc, 1);
  if (r.lda < a_cols || r.ldb < b_cols || r.ldc < p.n) {
    return InvalidArgument("sgemm: leading dimension shorter than a row");
  }
  return r;
}

// C = beta * C for k == 0 (oneDNN is not asked to handle the degenerate case).
void ScaleC(const GemmParams& p, int64_t ldc, float* c) {
  for (int64_t i = 0; i < p.m; ++i) {
    float* row = c + i * ldc;
    if (p.beta == 0.0f) {
      std::fill(row, row + p.n, 0.0f);
    } else {
      for (int64_t j = 0; j < p.n; ++j) row[j] *= p.beta;
    }
  }
}

Status RunOne(const GemmParams& p, const Resolved& r, const float* a, const float* b, float* c) {
  if (p.m == 0 || p.n == 0) return OkStatus();
  if (p.k == 0) {
    ScaleC(p, r.ldc, c);
    return OkStatus();
  }
  const bool serial = p.m * p.n * p.k < kSerialGemmMacs && !omp_in_parallel();
  const int team = omp_get_max_threads();
  if (serial && team > 1) omp_set_num_threads(1);
  dnnl_status_t s = dnnl_sgemm(p.trans_a ? 'T' : 'N', p.trans_b ? 'T' : 'N', p.m, p.n, p.k, p.alpha,
                               a, r.lda, b, r.ldb, p.beta, c, r.ldc);
  if (serial && team > 1) omp_set_num_threads(team);
  if (s != dnnl_success) {
    return Internal("dnnl_sgemm failed with status " + std::to_string(static_cast<int>(s)));
  }
  return OkStatus();
}

}  // namespace

Status Sgemm(const GemmParams& p, const float* a, const float* b, float* c) {
  IM_ASSIGN_OR_RETURN(Resolved r, Resolve(p));
  return RunOne(p, r, a, b, c);
}

Status SgemmBatched(const GemmParams& p, int64_t batch, const float* a, int64_t stride_a,
                    const float* b, int64_t stride_b, float* c, int64_t stride_c,
                    IntraOpPool* pool) {
  IM_ASSIGN_OR_RETURN(Resolved r, Resolve(p));
  if (batch <= 0) return OkStatus();
  // Below this many multiply-adds one GEMM does not keep several threads busy,
  // so threads take whole GEMMs instead.
  constexpr int64_t kSmallGemmFlops = 64 * 64 * 64;
  const int64_t flops = p.m * p.n * p.k;
  if (pool != nullptr && pool->threads() > 1 && batch > 1 && flops < kSmallGemmFlops) {
    // Each chunk records its own failure; chunks never share a slot.
    std::vector<Status> failures(static_cast<size_t>(batch));
    const int64_t grain = std::max<int64_t>(1, kSmallGemmFlops / std::max<int64_t>(flops, 1));
    pool->ParallelFor(batch, grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        failures[i] = RunOne(p, r, a + i * stride_a, b + i * stride_b, c + i * stride_c);
      }
    });
    for (auto& s : failures) IM_RETURN_IF_ERROR(s);
    return OkStatus();
  }
  for (int64_t i = 0; i < batch; ++i) {
    IM_RETURN_IF_ERROR(RunOne(p, r, a + i * stride_a, b + i * stride_b, c + i * stride_c));
  }
  return OkStatus();
}

}  // namespace infermesh::runtime
