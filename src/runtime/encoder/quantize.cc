#include "runtime/encoder/quantize.h"

#include "runtime/encoder/simd.h"

#include <cmath>

namespace infermesh::runtime::encoder {
namespace {

using simd::Exp512;

// erf(x) as a rational function on [-4, 4] (the coefficients of elementwise::FastErf,
// ~1e-6 absolute error).
IM_AVX512 inline __m512 Erf512(__m512 x) {
  const __m512 xc = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(4.0f)), _mm512_set1_ps(-4.0f));
  const __m512 x2 = _mm512_mul_ps(xc, xc);
  __m512 p = _mm512_set1_ps(-2.72614225801306e-10f);
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.77068142495902e-08f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.10102402082508e-06f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-5.69250639462346e-05f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-7.34990630326855e-04f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.95459980854025e-03f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1.60960333262415e-02f));
  p = _mm512_mul_ps(p, xc);
  __m512 q = _mm512_set1_ps(-1.45660718464996e-05f);
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-2.13374055278905e-04f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.68282697438203e-03f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-7.37332916720468e-03f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.42647390514189e-02f));
  return _mm512_div_ps(p, q);
}

IM_AVX512 inline __m512 Gelu512(__m512 v, bool tanh_form) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  if (!tanh_form) {
    const __m512 e = Erf512(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f)));
    return _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, e));
  }
  // tanh(u) = 1 - 2 / (exp(2u) + 1)
  const __m512 u = _mm512_mul_ps(
      _mm512_set1_ps(0.7978845608028654f),
      _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v), _mm512_mul_ps(v, v), v));
  const __m512 e = Exp512(_mm512_add_ps(u, u));
  const __m512 t = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
  return _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, t));
}

// Quantizes one row (n % 16 == 0) that is already in memory.
IM_AVX512 inline void QuantizeRow(const float* x, int64_t n, int8_t* q, float* scale) {
  __m512 mx = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  const float m = _mm512_reduce_max_ps(mx);
  const float s = m > 0 ? m / 127.0f : 1.0f;
  *scale = s;
  const __m512 inv = _mm512_set1_ps(1.0f / s);
  for (int64_t i = 0; i < n; i += 16) {
    const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtsepi32_epi8(v));
  }
}

// The parallel drivers only call IM_AVX512 row functions (see simd.h).
void QuantizeRowsAvx512(const float* x, int64_t rows, int64_t n, int8_t* q, float* scales,
                        int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) QuantizeRow(x + r * n, n, q + r * n, scales + r);
}

IM_AVX512 void ScaleBiasRow(float* yr, int64_t n, float row_scale, const float* bias) {
  const __m512 s = _mm512_set1_ps(row_scale);
  for (int64_t i = 0; i < n; i += 16) {
    _mm512_storeu_ps(yr + i,
                     _mm512_fmadd_ps(_mm512_loadu_ps(yr + i), s, _mm512_loadu_ps(bias + i)));
  }
}

void ScaleBiasRowsAvx512(float* y, int64_t rows, int64_t n, const float* row_scale,
                         const float* bias, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) ScaleBiasRow(y + r * n, n, row_scale[r], bias);
}

IM_AVX512 void ScaleBiasGeluQuantizeRow(float* yr, int64_t n, float row_scale, const float* bias,
                                        bool tanh_form, int8_t* q, float* q_scale) {
  const __m512 s = _mm512_set1_ps(row_scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(yr + i), s, _mm512_loadu_ps(bias + i));
    _mm512_storeu_ps(yr + i, Gelu512(v, tanh_form));
  }
  QuantizeRow(yr, n, q, q_scale);
}

void ScaleBiasGeluQuantizeRowsAvx512(float* y, int64_t rows, int64_t n, const float* row_scale,
                                     const float* bias, bool tanh_form, int8_t* q, float* q_scales,
                                     int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    ScaleBiasGeluQuantizeRow(y + r * n, n, row_scale[r], bias, tanh_form, q + r * n, q_scales + r);
  }
}

IM_AVX512 void ResidualLayerNormQuantizeRow(float* xr, const float* yr, int64_t n, float row_scale,
                                            const float* bias, const LayerNormParams& ln, int8_t* q,
                                            float* q_scale) {
  const __m512 s = _mm512_set1_ps(row_scale);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v =
        _mm512_add_ps(_mm512_loadu_ps(xr + i),
                      _mm512_fmadd_ps(_mm512_loadu_ps(yr + i), s, _mm512_loadu_ps(bias + i)));
    _mm512_storeu_ps(xr + i, v);
    sum = _mm512_add_ps(sum, v);
  }
  const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / static_cast<float>(n));
  __m512 sq = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(xr + i), mean);
    sq = _mm512_fmadd_ps(d, d, sq);
  }
  const float var = _mm512_reduce_add_ps(sq) / static_cast<float>(n);
  const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(var + ln.eps));
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i), mean), rstd);
    _mm512_storeu_ps(
        xr + i, _mm512_fmadd_ps(v, _mm512_loadu_ps(ln.gamma + i), _mm512_loadu_ps(ln.beta + i)));
  }
  QuantizeRow(xr, n, q, q_scale);
}

void ResidualLayerNormQuantizeRowsAvx512(float* x, const float* y, int64_t rows, int64_t n,
                                         const float* row_scale, const float* bias,
                                         const LayerNormParams& ln, int8_t* q, float* q_scales,
                                         int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    ResidualLayerNormQuantizeRow(x + r * n, y + r * n, n, row_scale[r], bias, ln, q + r * n,
                                 q_scales + r);
  }
}

}  // namespace

bool CpuHasAvx512Vnni() {
  static const bool has = CpuHasAvx512() && __builtin_cpu_supports("avx512vnni");
  return has;
}

void QuantizeRows(const float* x, int64_t rows, int64_t n, int8_t* q, float* scales, int threads) {
  QuantizeRowsAvx512(x, rows, n, q, scales, threads);
}

void ScaleBiasRows(float* y, int64_t rows, int64_t n, const float* row_scale, const float* bias,
                   int threads) {
  ScaleBiasRowsAvx512(y, rows, n, row_scale, bias, threads);
}

void ScaleBiasGeluQuantizeRows(float* y, int64_t rows, int64_t n, const float* row_scale,
                               const float* bias, bool tanh_form, int8_t* q, float* q_scales,
                               int threads) {
  ScaleBiasGeluQuantizeRowsAvx512(y, rows, n, row_scale, bias, tanh_form, q, q_scales, threads);
}

void ResidualLayerNormQuantizeRows(float* x, const float* y, int64_t rows, int64_t n,
                                   const float* row_scale, const float* bias,
                                   const LayerNormParams& ln, int8_t* q, float* q_scales,
                                   int threads) {
  ResidualLayerNormQuantizeRowsAvx512(x, y, rows, n, row_scale, bias, ln, q, q_scales, threads);
}

}  // namespace infermesh::runtime::encoder
