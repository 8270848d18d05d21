// Kernels of the fused encoder's int8 mode: dynamic per-token (per-row) symmetric
// quantization of activations, and the epilogues that oneDNN's int8 matmul cannot do
// (its output scale is per column only): the per-row activation scale, the bias, GELU,
// the residual connection with LayerNorm, and re-quantization for the next matmul.
//
// A row r is quantized as q[r][i] = round(x[r][i] / s[r]) with s[r] = max|x[r]| / 127
// (s[r] = 1 for an all-zero row). AVX-512 only, and rows must be multiples of 16
// wide: FusedEncoder refuses int8 mode otherwise.
#pragma once

#include <cstdint>

#include "runtime/encoder/kernels.h"

namespace infermesh::runtime::encoder {

// True when the CPU has AVX512-VNNI (oneDNN's fast int8 matmul) and the AVX-512 base.
bool CpuHasAvx512Vnni();

void QuantizeRows(const float* x, int64_t rows, int64_t n, int8_t* q, float* scales, int threads);

// y[r][i] = y[r][i] * row_scale[r] + bias[i]
void ScaleBiasRows(float* y, int64_t rows, int64_t n, const float* row_scale, const float* bias,
                   int threads);

// y[r] = gelu(y[r] * row_scale[r] + bias) (erf form, or tanh form), then quantized into
// q / q_scales.
void ScaleBiasGeluQuantizeRows(float* y, int64_t rows, int64_t n, const float* row_scale,
                               const float* bias, bool tanh_form, int8_t* q, float* q_scales,
                               int threads);

// x[r] = LayerNorm(x[r] + y[r] * row_scale[r] + bias), then quantized into q / q_scales.
void ResidualLayerNormQuantizeRows(float* x, const float* y, int64_t rows, int64_t n,
                                   const float* row_scale, const float* bias,
                                   const LayerNormParams& ln, int8_t* q, float* q_scales,
                                   int threads);

}  // namespace infermesh::runtime::encoder
