// Shape operator family: see RegisterKernels in runtime/kernel.h.
#include "runtime/kernel.h"

namespace infermesh::runtime {

void RegisterShapeKernels(KernelRegistry& r) { (void)r; }

}  // namespace infermesh::runtime
