// Elementwise operator family: unary math, activations, broadcasting arithmetic,
// comparisons and logic, variadic Min/Max/Sum/Mean, Clip, Where, Cast and CastLike.
// Each group lives in its own ops/elementwise_*.cc; see elementwise_internal.h.
#include "runtime/kernel.h"
#include "runtime/ops/elementwise_internal.h"

namespace infermesh::runtime {

void RegisterElementwiseKernels(KernelRegistry& r) {
  elementwise::RegisterUnaryKernels(r);
  elementwise::RegisterActivationKernels(r);
  elementwise::RegisterBinaryKernels(r);
  elementwise::RegisterCompareKernels(r);
  elementwise::RegisterVariadicKernels(r);
  elementwise::RegisterCastKernels(r);
}

}  // namespace infermesh::runtime
