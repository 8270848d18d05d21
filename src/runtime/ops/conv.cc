// Conv operator family: see RegisterKernels in runtime/kernel.h.
#include "runtime/kernel.h"

namespace infermesh::runtime {

void RegisterConvKernels(KernelRegistry& r) { (void)r; }

}  // namespace infermesh::runtime
