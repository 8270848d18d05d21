// Placeholder registrations for operator families not written yet. Each family
// moves out of this file into ops/<family>.cc when its kernels land.
#include "runtime/kernel.h"

namespace infermesh::runtime {

void RegisterShapeKernels(KernelRegistry&) {}
void RegisterMathKernels(KernelRegistry&) {}
void RegisterConvKernels(KernelRegistry&) {}
void RegisterElementwiseKernels(KernelRegistry&) {}

}  // namespace infermesh::runtime
