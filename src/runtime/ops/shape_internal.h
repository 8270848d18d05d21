// Internal helpers shared by the shape and data-movement kernels (ops/shape*.cc).
//
// These kernels move bytes: they are written against element sizes, not element
// types, so every storage dtype (bool, int64, float16, ...) goes through the same
// code. Output sizes are checked before allocation: an absurd shape is a
// ResourceExhausted error, never an allocation failure or an overflowed size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/kernel.h"
#include "runtime/tensor.h"

namespace infermesh::runtime::shape_ops {

// Largest output a shape kernel will allocate (16 GiB).
inline constexpr int64_t kMaxOutputBytes = int64_t{1} << 34;

// Node identity captured by a kernel so that run-time errors name node and operator.
struct NodeTag {
  std::string name;
  std::string op;
  explicit NodeTag(const NodeInfo& node) : name(node.name), op(node.op_type) {}
  Status Error(const std::string& reason) const;        // InvalidArgument
  Status Exhausted(const std::string& reason) const;    // ResourceExhausted
  Status Unsupported(const std::string& reason) const;  // Unimplemented
};

// Fails with Unsupported unless input i is present with a storage dtype (any of
// bool, integers, float16/bfloat16/float32/float64).
Status RequireStorageType(const NodeInfo& node, size_t i);
// Input i must be int32 or int64 (indices, starts/ends...).
Status RequireIndexType(const NodeInfo& node, size_t i);

// Validates an output shape: negative dims are InvalidArgument; an element count
// that overflows or needs more than kMaxOutputBytes is ResourceExhausted.
Status CheckShape(const NodeTag& tag, const Shape& shape, DataType dtype);
// CheckShape, then ctx.AllocateOutput.
Result<Tensor*> AllocChecked(KernelContext& ctx, const NodeTag& tag, size_t i, DataType dtype,
                             const Shape& shape);

// Maps axis in [-rank, rank) to [0, rank).
Result<int64_t> NormalizeAxis(const NodeTag& tag, int64_t axis, int64_t rank);

// Copies `shape` elements from src (element offsets given by per-dimension strides,
// which may be zero or negative) into dense row-major dst. Adjacent dimensions are
// merged where the strides allow and contiguous rows are copied with memcpy.
void StridedCopy(KernelContext& ctx, size_t elem_size, const void* src, Shape shape,
                 std::vector<int64_t> src_strides, void* dst);

// Row-major strides (in elements) of a dense tensor of this shape.
std::vector<int64_t> DenseStrides(const Shape& shape);

// Encodes `value` as one element of dtype (bool: value != 0). `out` gets
// DataTypeSize(dtype) bytes. Returns false for dtypes without a numeric encoding.
bool EncodeScalar(DataType dtype, double value, void* out);

// Writes n copies of the es-byte element at `value` to dst.
void FillElements(void* dst, int64_t n, size_t es, const void* value);

// True when the node declares output i and does not omit it ("").
bool OutputWanted(const NodeInfo& node, size_t i);

// Reads a 1-D (or scalar) integer tensor into a vector.
std::vector<int64_t> ReadInts(const Tensor& t);

// Family parts, each registering its operators.
void RegisterShapeViewKernels(KernelRegistry& r);    // shape.cc: Reshape, Squeeze, Shape...
void RegisterShapeCreateKernels(KernelRegistry& r);  // shape_create.cc: Constant, Range, ...
void RegisterShapeCopyKernels(KernelRegistry& r);    // shape_copy.cc: Transpose, Concat, Slice
void RegisterShapePadKernels(KernelRegistry& r);     // shape_pad.cc: Pad, Trilu, DepthToSpace
void RegisterShapeGatherKernels(KernelRegistry& r);  // shape_gather.cc: Gather*, Scatter*

}  // namespace infermesh::runtime::shape_ops
