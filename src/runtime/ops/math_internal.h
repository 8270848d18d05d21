// Internal to the math operator family (ops/math*.cc): per-file registration
// hooks and the small helpers those files share. Not for use outside ops/math*.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/kernel.h"

namespace infermesh::runtime::math {

void RegisterMatMulKernels(KernelRegistry& r);   // math_matmul.cc: MatMul, Gemm
void RegisterSoftmaxKernels(KernelRegistry& r);  // math_softmax.cc: Softmax, LogSoftmax, Hardmax
void RegisterNormKernels(KernelRegistry& r);     // math_norm.cc: LayerNormalization, MVN
void RegisterReduceKernels(KernelRegistry& r);   // math_reduce.cc: Reduce*
void RegisterIndexKernels(KernelRegistry& r);    // math_index.cc: ArgMax, ArgMin, CumSum, TopK
void RegisterEinsumKernels(KernelRegistry& r);   // math_einsum.cc: Einsum

// Maps axis in [-rank, rank) to [0, rank); InvalidArgument naming `node` otherwise.
inline Result<int64_t> NormalizeAxis(int64_t axis, int64_t rank, const std::string& node) {
  if (axis < -rank || axis >= rank) {
    return InvalidArgument("node '" + node + "': axis " + std::to_string(axis) +
                           " is out of range for rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

// Product of shape[begin, end).
inline int64_t DimProduct(const Shape& shape, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i) p *= shape[i];
  return p;
}

// A tensor view as [outer, axis, inner] around one axis (inner is contiguous).
struct AxisSplit {
  int64_t outer = 1;
  int64_t axis = 1;
  int64_t inner = 1;
};
inline AxisSplit SplitAt(const Shape& shape, int64_t axis) {
  return {DimProduct(shape, 0, static_cast<size_t>(axis)), shape[static_cast<size_t>(axis)],
          DimProduct(shape, static_cast<size_t>(axis) + 1, shape.size())};
}

}  // namespace infermesh::runtime::math
