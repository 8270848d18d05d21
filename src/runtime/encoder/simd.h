// AVX-512 helpers shared by the encoder's kernels (kernels.cc, quantize.cc). Internal:
// include only from .cc files that dispatch on CpuHasAvx512() first.
//
// Functions that use these carry IM_AVX512 (no global -march flags), and OpenMP
// parallel loops must call such functions rather than contain intrinsics themselves:
// clang outlines a parallel region into a function without the target attribute.
#pragma once

// GCC 12 reports its own AVX-512 intrinsic headers (the `__Y = __Y` idiom of
// _mm512_undefined_*) as maybe-uninitialized, or uninitialized once unpacks and
// shuffles are inlined; clang does not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#define IM_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

namespace infermesh::runtime::encoder::simd {

// exp(x) for 16 floats: Cephes' polynomial on x - n·ln2, scaled by 2^n (inputs are
// clamped to [-87, 88], so the result is finite and never denormal).
IM_AVX512 inline __m512 Exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, n);
}

}  // namespace infermesh::runtime::encoder::simd
