// Resize and Upsample (placeholder until the kernels land).
#include "runtime/kernel.h"
#include "runtime/ops/conv_internal.h"

namespace infermesh::runtime::conv_internal {

void RegisterResizeOps(KernelRegistry& r) { (void)r; }

}  // namespace infermesh::runtime::conv_internal
