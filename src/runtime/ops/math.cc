// Math operator family: linear algebra (MatMul, Gemm), softmax-like ops,
// normalizations, reductions and index ops. Each group lives in its own
// ops/math_*.cc file; this hook registers them all.
#include "runtime/kernel.h"
#include "runtime/ops/math_internal.h"

namespace infermesh::runtime {

void RegisterMathKernels(KernelRegistry& r) {
  math::RegisterMatMulKernels(r);
  math::RegisterSoftmaxKernels(r);
  math::RegisterNormKernels(r);
  math::RegisterReduceKernels(r);
  math::RegisterIndexKernels(r);
  math::RegisterEinsumKernels(r);
}

}  // namespace infermesh::runtime
