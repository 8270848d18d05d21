#include "runtime/encoder/kernels.h"

#include "runtime/encoder/simd.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "runtime/ops/elementwise_fast_math.h"

namespace infermesh::runtime::encoder {
namespace {

using simd::Exp512;

IM_AVX512 inline __m256i ToBf16x16(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC00000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

// ---------------------------------------------------------------------------------
// LayerNorm and embeddings. The row loops are plain C++; compiled once for AVX-512
// and once for the baseline, the vectorizer does the rest.

inline void NormalizeRow(float* x, int64_t n, const LayerNormParams& ln, bf16* y16) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  float sq = 0;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < n; ++i) sq += (x[i] - mean) * (x[i] - mean);
  const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + ln.eps);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = (x[i] - mean) * rstd * ln.gamma[i] + ln.beta[i];
  if (y16 != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      uint32_t u = std::bit_cast<uint32_t>(x[i]);
      u += 0x7FFFu + ((u >> 16) & 1u);
      y16[i] = static_cast<bf16>(u >> 16);
    }
  }
}

inline void LayerNormBody(float* x, int64_t rows, int64_t n, const LayerNormParams& ln, bf16* y16,
                          int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 16384)
  for (int64_t r = 0; r < rows; ++r) {
    NormalizeRow(x + r * n, n, ln, y16 ? y16 + r * n : nullptr);
  }
}

inline void EmbedBody(const EmbeddingTables& t, const int64_t* ids, const int64_t* pos,
                      const int64_t* types, int64_t rows, const LayerNormParams& ln, float* x,
                      bf16* y16, int threads) {
  const int64_t n = t.n;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 16384)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * n;
    const float* w = t.word + ids[r] * n;
    const float* p = t.position + pos[r] * n;
    const float* ty = t.type ? t.type + (types ? types[r] : 0) * n : nullptr;
    if (ty) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) xr[i] = w[i] + p[i] + ty[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) xr[i] = w[i] + p[i];
    }
    NormalizeRow(xr, n, ln, y16 ? y16 + r * n : nullptr);
  }
}

// AVX-512 row normalization for n % 16 == 0 (hidden sizes are multiples of 16 in
// practice; other widths take the portable body).
IM_AVX512 inline void NormalizeRowAvx512(float* x, int64_t n, const LayerNormParams& ln,
                                         bf16* y16) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
  const float mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / static_cast<float>(n);
  const __m512 m = _mm512_set1_ps(mean);
  s0 = _mm512_setzero_ps();
  s1 = _mm512_setzero_ps();
  for (i = 0; i + 32 <= n; i += 32) {
    const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), m);
    const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), m);
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  for (; i < n; i += 16) {
    const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), m);
    s0 = _mm512_fmadd_ps(d0, d0, s0);
  }
  const float var = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / static_cast<float>(n);
  const __m512 r = _mm512_set1_ps(1.0f / std::sqrt(var + ln.eps));
  for (i = 0; i < n; i += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), m), r);
    const __m512 y =
        _mm512_fmadd_ps(v, _mm512_loadu_ps(ln.gamma + i), _mm512_loadu_ps(ln.beta + i));
    _mm512_storeu_ps(x + i, y);
    if (y16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(y16 + i), ToBf16x16(y));
  }
}

void LayerNormAvx512(float* x, int64_t rows, int64_t n, const LayerNormParams& ln, bf16* y16,
                     int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    NormalizeRowAvx512(x + r * n, n, ln, y16 ? y16 + r * n : nullptr);
  }
}
void LayerNormBase(float* x, int64_t rows, int64_t n, const LayerNormParams& ln, bf16* y16,
                   int threads) {
  LayerNormBody(x, rows, n, ln, y16, threads);
}
IM_AVX512 void EmbedRowAvx512(const EmbeddingTables& t, int64_t id, int64_t pos, int64_t type,
                              const LayerNormParams& ln, float* xr, bf16* y16) {
  const int64_t n = t.n;
  const float* w = t.word + id * n;
  const float* p = t.position + pos * n;
  const float* ty = t.type ? t.type + type * n : nullptr;
  for (int64_t i = 0; i < n; i += 16) {
    __m512 v = _mm512_add_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(p + i));
    if (ty) v = _mm512_add_ps(v, _mm512_loadu_ps(ty + i));
    _mm512_storeu_ps(xr + i, v);
  }
  NormalizeRowAvx512(xr, n, ln, y16);
}

// The parallel loops call the AVX-512 row functions rather than containing
// intrinsics: clang outlines an OpenMP region into a function without the
// enclosing function's target attribute.
void EmbedAvx512(const EmbeddingTables& t, const int64_t* ids, const int64_t* pos,
                 const int64_t* types, int64_t rows, const LayerNormParams& ln, float* x, bf16* y16,
                 int threads) {
  const int64_t n = t.n;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    EmbedRowAvx512(t, ids[r], pos[r], types ? types[r] : 0, ln, x + r * n,
                   y16 ? y16 + r * n : nullptr);
  }
}
void EmbedBase(const EmbeddingTables& t, const int64_t* ids, const int64_t* pos,
               const int64_t* types, int64_t rows, const LayerNormParams& ln, float* x, bf16* y16,
               int threads) {
  EmbedBody(t, ids, pos, types, rows, ln, x, y16, threads);
}

// ---------------------------------------------------------------------------------
// Attention

struct Task {
  int64_t b;
  int h;
  int64_t cost;
};

std::vector<Task> MakeTasks(const AttentionParams& p) {
  std::vector<Task> tasks;
  tasks.reserve(static_cast<size_t>(p.batch * p.heads));
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t len = p.cu[b + 1] - p.cu[b];
    if (len <= 0) continue;
    for (int h = 0; h < p.heads; ++h) tasks.push_back({b, h, len * len});
  }
  // Longest first, so that dynamic scheduling ends with the short ones.
  std::stable_sort(tasks.begin(), tasks.end(),
                   [](const Task& a, const Task& c) { return a.cost > c.cost; });
  return tasks;
}

inline float* AlignUp64(float* p) {
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
}

// Portable body: one query at a time.
void AttentionTaskBase(const AttentionParams& p, const Task& t, float* scratch) {
  const int64_t begin = p.cu[t.b];
  const int64_t len = p.cu[t.b + 1] - begin;
  const int dh = p.head_dim;
  const float* q0 = p.qkv + begin * p.ld_qkv + static_cast<int64_t>(t.h) * dh;
  const float* k0 = q0 + p.hidden;
  const float* v0 = q0 + 2 * p.hidden;
  float* s = scratch;
  std::vector<float> acc(static_cast<size_t>(dh));
  const float* rb = p.rel_bias ? p.rel_bias + t.h * p.rel_stride + p.rel_offset : nullptr;
  for (int64_t i = 0; i < len; ++i) {
    const float* q = q0 + i * p.ld_qkv;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < len; ++j) {
      const float* k = k0 + j * p.ld_qkv;
      float d = 0;
      for (int c = 0; c < dh; ++c) d += q[c] * k[c];
      s[j] = d * p.scale + (rb ? rb[i - j] : 0.0f);
      mx = std::max(mx, s[j]);
    }
    float sum = 0;
    for (int64_t j = 0; j < len; ++j) {
      s[j] = elementwise::FastExp(s[j] - mx);
      sum += s[j];
    }
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t j = 0; j < len; ++j) {
      const float* v = v0 + j * p.ld_qkv;
      for (int c = 0; c < dh; ++c) acc[static_cast<size_t>(c)] += s[j] * v[c];
    }
    const float inv = 1.0f / sum;
    const int64_t o = (begin + i) * p.hidden + static_cast<int64_t>(t.h) * dh;
    for (int c = 0; c < dh; ++c) {
      const float val = acc[static_cast<size_t>(c)] * inv;
      if (p.out16) {
        p.out16[o + c] = ToBf16(val);
      } else {
        p.out[o + c] = val;
      }
    }
  }
}

// AVX-512 body. Queries go across the 16 lanes, so that the softmax over keys is a
// column-wise max and sum (no horizontal reductions, no key padding): for each block
// of 16 queries, Qᵀ·scale is formed with in-register 16x16 transposes, scores Sᵀ[j]
// (one vector of 16 queries per key) come from K rows broadcast straight from qkv,
// and P·V broadcasts P from Sᵀ against V rows. NV = head_dim / 16; kQ queries per
// P·V register block; kK keys per score register block.
// Scratch (64-byte aligned): Qᵀ [head_dim][W], Sᵀ [len][W], 1/sum [W] for W = 16 or 32
// queries per block.

// Rows r[0..15] (16 floats each) to columns: r[c] = old column c, times `scale`.
IM_AVX512 inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  // r[4k + m], 128-bit lane l: column 4l + m of rows 4k..4k+3.
  for (int k = 0; k < 4; ++k) {
    const __m512d a = _mm512_castps_pd(t[4 * k]), b = _mm512_castps_pd(t[4 * k + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * k + 2]), d = _mm512_castps_pd(t[4 * k + 3]);
    r[4 * k + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 a0 = _mm512_shuffle_f32x4(r[m], r[4 + m], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 a1 = _mm512_shuffle_f32x4(r[m], r[4 + m], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512 b0 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 b1 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], _MM_SHUFFLE(3, 2, 3, 2));
    t[m] = _mm512_shuffle_f32x4(a0, b0, _MM_SHUFFLE(2, 0, 2, 0));
    t[4 + m] = _mm512_shuffle_f32x4(a0, b0, _MM_SHUFFLE(3, 1, 3, 1));
    t[8 + m] = _mm512_shuffle_f32x4(a1, b1, _MM_SHUFFLE(2, 0, 2, 0));
    t[12 + m] = _mm512_shuffle_f32x4(a1, b1, _MM_SHUFFLE(3, 1, 3, 1));
  }
  for (int c = 0; c < 16; ++c) r[c] = t[c];
}

// qt[c][i] = scale · q[i][c] for the first nq rows of q (stride ld), Qᵀ rows `ldt`
// apart; later lanes repeat row nq - 1 (finite, never stored).
template <int NV>
IM_AVX512 inline void TransposeQ(const float* q, int64_t ld, int64_t nq, __m512 scale, float* qt,
                                 int ldt) {
  for (int v = 0; v < NV; ++v) {
    __m512 r[16];
    if (nq == 16) {
      for (int i = 0; i < 16; ++i) r[i] = _mm512_mul_ps(_mm512_loadu_ps(q + i * ld), scale);
    } else {
      for (int i = 0; i < 16; ++i) {
        r[i] = _mm512_mul_ps(_mm512_loadu_ps(q + std::min<int64_t>(i, nq - 1) * ld), scale);
      }
    }
    Transpose16x16(r);
    for (int c = 0; c < 16; ++c) _mm512_store_ps(qt + (16 * v + c) * ldt, r[c]);
    q += 16;
  }
}

// Scores of QB·16 queries (Qᵀ in qt, rows 16·QB apart) against kK keys starting at k
// (stride ld) into st (rows 16·QB apart); mx = running column max.
template <int NV, int kK, int QB>
IM_AVX512 inline void ScoreBlock(const float* qt, const float* k, int64_t ld, float* st,
                                 __m512* mx) {
  __m512 acc[kK][QB];
  for (int r = 0; r < kK; ++r) {
    for (int b = 0; b < QB; ++b) acc[r][b] = _mm512_setzero_ps();
  }
  for (int c0 = 0; c0 < NV * 16; c0 += 4) {
    for (int c = c0; c < c0 + 4; ++c) {
      __m512 qv[QB];
      for (int b = 0; b < QB; ++b) qv[b] = _mm512_load_ps(qt + (c * QB + b) * 16);
      for (int r = 0; r < kK; ++r) {
        const __m512 kc = _mm512_set1_ps(k[r * ld + c]);
        for (int b = 0; b < QB; ++b) acc[r][b] = _mm512_fmadd_ps(kc, qv[b], acc[r][b]);
      }
    }
  }
  for (int r = 0; r < kK; ++r) {
    for (int b = 0; b < QB; ++b) {
      _mm512_store_ps(st + (r * QB + b) * 16, acc[r][b]);
      mx[b] = _mm512_max_ps(mx[b], acc[r][b]);
    }
  }
}

// One block of nq <= 16·QB queries starting at row i0 of the task's sequence.
template <int NV, int kQ, int kK, int QB>
IM_AVX512 inline void QueryBlock(const AttentionParams& p, int64_t begin, int64_t len, int h,
                                 int64_t i0, int64_t nq, const float* k0, const float* v0,
                                 int64_t ldkv, float* scratch) {
  constexpr int dh = NV * 16, W = 16 * QB;
  const int64_t ld = p.ld_qkv;
  const float* q0 = p.qkv + begin * ld + static_cast<int64_t>(h) * dh;
  float* qt = scratch;
  float* st = qt + dh * W;
  float* inv = st + len * W;
  // Locals, so that the output stores cannot alias them.
  const int64_t hidden = p.hidden, o0 = (begin + i0) * hidden + static_cast<int64_t>(h) * dh;
  float* const out = p.out16 ? nullptr : p.out + o0;
  bf16* const out16 = p.out16 ? p.out16 + o0 : nullptr;
  const __m512 scale = _mm512_set1_ps(p.scale);
  for (int b = 0; b < QB; ++b) {
    TransposeQ<NV>(q0 + (i0 + 16 * b) * ld, ld, std::min<int64_t>(16, nq - 16 * b), scale,
                   qt + 16 * b, W);
  }
  // Scores and their column max.
  __m512 mx[QB];
  for (int b = 0; b < QB; ++b) mx[b] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + kK <= len; j += kK) ScoreBlock<NV, kK, QB>(qt, k0 + j * ldkv, ldkv, st + j * W, mx);
  for (; j < len; ++j) ScoreBlock<NV, 1, QB>(qt, k0 + j * ldkv, ldkv, st + j * W, mx);
  if (p.rel_bias) {
    // Lane l of block b is query i0 + 16b + l: its bias for key j sits at i - j, so
    // the 16 lanes read 16 consecutive table entries.
    const float* rb = p.rel_bias + h * p.rel_stride + p.rel_offset + i0;
    for (int b = 0; b < QB; ++b) {
      mx[b] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      float* sb = st + 16 * b;
      for (j = 0; j < len; ++j) {
        const __m512 v =
            _mm512_add_ps(_mm512_load_ps(sb + j * W), _mm512_loadu_ps(rb + 16 * b - j));
        _mm512_store_ps(sb + j * W, v);
        mx[b] = _mm512_max_ps(mx[b], v);
      }
    }
  }
  // Softmax numerators; the 1/sum is applied to the output.
  for (int b = 0; b < QB; ++b) {
    __m512 sum = _mm512_setzero_ps();
    float* sb = st + 16 * b;
    for (j = 0; j < len; ++j) {
      const __m512 e = Exp512(_mm512_sub_ps(_mm512_load_ps(sb + j * W), mx[b]));
      _mm512_store_ps(sb + j * W, e);
      sum = _mm512_add_ps(sum, e);
    }
    _mm512_store_ps(inv + 16 * b, _mm512_div_ps(_mm512_set1_ps(1.0f), sum));
  }
  // P·V, kQ queries at a time.
  for (int64_t qs = 0; qs < nq; qs += kQ) {
    __m512 acc[kQ][NV];
    for (int qi = 0; qi < kQ; ++qi) {
      for (int v = 0; v < NV; ++v) acc[qi][v] = _mm512_setzero_ps();
    }
    const float* pc = st + qs;
    for (j = 0; j < len; ++j) {
      const float* vr = v0 + j * ldkv;
      __m512 vv[NV];
      for (int v = 0; v < NV; ++v) vv[v] = _mm512_loadu_ps(vr + 16 * v);
      for (int qi = 0; qi < kQ; ++qi) {
        const __m512 pj = _mm512_set1_ps(pc[j * W + qi]);
        for (int v = 0; v < NV; ++v) acc[qi][v] = _mm512_fmadd_ps(pj, vv[v], acc[qi][v]);
      }
    }
    for (int qi = 0; qi < kQ && qs + qi < nq; ++qi) {
      const int64_t o = (qs + qi) * hidden;
      const __m512 iv = _mm512_set1_ps(inv[qs + qi]);
      for (int v = 0; v < NV; ++v) {
        const __m512 r = _mm512_mul_ps(acc[qi][v], iv);
        if (out16) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out16 + o + 16 * v), ToBf16x16(r));
        } else {
          _mm512_storeu_ps(out + o + 16 * v, r);
        }
      }
    }
  }
}

// Sequences longer than this read K and V from packed copies.
constexpr int64_t kPackLen = 32;

// Blocks of 32 queries (each K broadcast feeds two FMAs), the last <= 16 as one of 16.
template <int NV, int kQ, int kK>
IM_AVX512 void AttentionTaskAvx512(const AttentionParams& p, const Task& t, float* scratch) {
  static_assert(16 % kQ == 0);
  const int64_t begin = p.cu[t.b];
  const int64_t len = p.cu[t.b + 1] - begin;
  constexpr int dh = NV * 16;
  float* s = AlignUp64(scratch);
  const float* k0 = p.qkv + begin * p.ld_qkv + p.hidden + static_cast<int64_t>(t.h) * dh;
  const float* v0 = k0 + p.hidden;
  int64_t ldkv = p.ld_qkv;
  if (len > kPackLen) {
    // K and V rows of one head sit ld_qkv·4 bytes apart (4.5 KiB for bge-small), so
    // that a long sequence's rows share a few L1 sets and evict each other; packed
    // copies (after Qᵀ, Sᵀ and 1/sum) stream instead.
    float* kp = s + (dh + len + 1) * 32;
    float* vp = kp + len * dh;
    for (int64_t j = 0; j < len; ++j) {
      for (int v = 0; v < NV; ++v) {
        _mm512_store_ps(kp + j * dh + 16 * v, _mm512_loadu_ps(k0 + j * ldkv + 16 * v));
        _mm512_store_ps(vp + j * dh + 16 * v, _mm512_loadu_ps(v0 + j * ldkv + 16 * v));
      }
    }
    k0 = kp;
    v0 = vp;
    ldkv = dh;
  }
  for (int64_t i0 = 0; i0 < len;) {
    const int64_t nq = len - i0;
    if (nq > 16) {
      QueryBlock<NV, kQ, kK, 2>(p, begin, len, t.h, i0, std::min<int64_t>(nq, 32), k0, v0, ldkv, s);
      i0 += 32;
    } else {
      QueryBlock<NV, kQ, kK, 1>(p, begin, len, t.h, i0, nq, k0, v0, ldkv, s);
      i0 += 16;
    }
  }
}

using TaskFn = void (*)(const AttentionParams&, const Task&, float*);

TaskFn PickTaskFn(int head_dim) {
  if (!CpuHasAvx512() || head_dim % 16 != 0) return AttentionTaskBase;
  switch (head_dim / 16) {
    case 1:
      return AttentionTaskAvx512<1, 16, 8>;
    case 2:
      return AttentionTaskAvx512<2, 8, 8>;
    case 3:
      return AttentionTaskAvx512<3, 8, 8>;
    case 4:
      return AttentionTaskAvx512<4, 4, 8>;
    case 5:
      return AttentionTaskAvx512<5, 4, 8>;
    case 6:
      return AttentionTaskAvx512<6, 2, 8>;
    case 8:
      return AttentionTaskAvx512<8, 2, 8>;
    default:
      return AttentionTaskBase;
  }
}

int64_t ScratchPerThread(int64_t max_len, int head_dim) {
  const int64_t len = std::max<int64_t>(max_len, 1);
  // The AVX-512 body's Qᵀ, Sᵀ, 1/sum, 64-byte alignment and packed K and V; the
  // portable one's row.
  return std::max<int64_t>((head_dim + len + 1) * 32 + 16 + 2 * len * head_dim, len);
}

}  // namespace

bool CpuHasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return has;
}

bool CpuHasAvx512Bf16() {
  static const bool has = [] {
    if (!CpuHasAvx512()) return false;
    // CPUID.(EAX=7,ECX=1):EAX bit 5.
    uint32_t eax = 7, ebx = 0, ecx = 1, edx = 0;
    __asm__("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return (eax & (1u << 5)) != 0;
  }();
  return has;
}

bf16 ToBf16(float x) {
  if (std::isnan(x)) return 0x7FC0;
  uint32_t u = std::bit_cast<uint32_t>(x);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<bf16>(u >> 16);
}

float FromBf16(bf16 x) { return std::bit_cast<float>(static_cast<uint32_t>(x) << 16); }

void ToBf16(const float* x, bf16* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = ToBf16(x[i]);
}

void LayerNormRows(float* x, int64_t rows, int64_t n, const LayerNormParams& ln, bf16* y16,
                   int threads) {
  if (CpuHasAvx512() && n % 16 == 0) {
    LayerNormAvx512(x, rows, n, ln, y16, threads);
  } else {
    LayerNormBase(x, rows, n, ln, y16, threads);
  }
}

void EmbedRows(const EmbeddingTables& tables, const int64_t* ids, const int64_t* pos,
               const int64_t* types, int64_t rows, const LayerNormParams& ln, float* x, bf16* y16,
               int threads) {
  if (CpuHasAvx512() && tables.n % 16 == 0) {
    EmbedAvx512(tables, ids, pos, types, rows, ln, x, y16, threads);
  } else {
    EmbedBase(tables, ids, pos, types, rows, ln, x, y16, threads);
  }
}

int64_t AttentionScratchFloats(int64_t max_len, int head_dim, int threads) {
  return ScratchPerThread(max_len, head_dim) * std::max(threads, 1);
}

void Attention(const AttentionParams& p) {
  const std::vector<Task> tasks = MakeTasks(p);
  const TaskFn fn = PickTaskFn(p.head_dim);
  const int64_t per_thread = ScratchPerThread(p.max_len, p.head_dim);
  const int64_t n = static_cast<int64_t>(tasks.size());
  const int threads = std::max(1, std::min<int>(p.threads, static_cast<int>(n)));
#pragma omp parallel num_threads(threads)
  {
    float* scratch = p.scratch + per_thread * omp_get_thread_num();
    // Round-robin over the cost-sorted tasks balances the threads without the
    // per-task handshake of dynamic scheduling, which costs more than a short
    // sequence's attention (measured: 11 ms vs 6 ms per 32x32 batch on bge-small).
#pragma omp for schedule(static, 1)
    for (int64_t i = 0; i < n; ++i) fn(p, tasks[static_cast<size_t>(i)], scratch);
  }
}

}  // namespace infermesh::runtime::encoder
