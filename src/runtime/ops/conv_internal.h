// Internals of the CNN operator family (ops/conv*.cc): the sliding-window
// geometry shared by Conv, ConvTranspose and the pools, and the per-file
// registration hooks that RegisterConvKernels calls.
//
//   IM_ASSIGN_OR_RETURN(WindowAttrs w, ParseWindowAttrs(node, {.dilations = true}));
//   ...at run time, with the input's spatial dims and the kernel dims:
//   IM_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindow(name, w, in_spatial, kernel));
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/kernel.h"

namespace infermesh::runtime::conv_internal {

enum class AutoPad { kNotSet, kSameUpper, kSameLower, kValid };

// Which window attributes an operator (at a given opset) defines.
struct WindowAttrSet {
  bool dilations = false;
  bool ceil_mode = false;
};

// Window attributes as written on the node, validated for internal consistency.
// Lists that are absent are empty; their length is checked against the spatial
// rank at run time (the rank is only known once the input shape is).
struct WindowAttrs {
  AutoPad auto_pad = AutoPad::kNotSet;
  std::vector<int64_t> kernel;     // kernel_shape; empty when inferred from W
  std::vector<int64_t> strides;    // empty: all 1
  std::vector<int64_t> dilations;  // empty: all 1
  std::vector<int64_t> pads;       // empty: all 0; [begin_0.., end_0..]
  bool ceil_mode = false;
};

// Reads auto_pad, kernel_shape, strides, pads and (when `set` says so)
// dilations and ceil_mode. Rejects non-positive strides/dilations/kernel dims,
// negative pads, mismatched list lengths and unknown auto_pad values.
Result<WindowAttrs> ParseWindowAttrs(const NodeInfo& node, WindowAttrSet set);

// The concrete window for one input shape.
struct WindowGeometry {
  size_t rank = 0;  // number of spatial dims
  std::vector<int64_t> in, out, kernel, stride, dilation, pad_begin, pad_end;
};

// Output size and effective pads for a forward window (Conv, pools). The
// ceil_mode rule drops a last window that would start inside the end padding,
// as PyTorch and onnxruntime do.
Result<WindowGeometry> ComputeWindow(const std::string& node_name, const WindowAttrs& attrs,
                                     std::span<const int64_t> in_spatial,
                                     std::span<const int64_t> kernel);

inline int64_t Product(std::span<const int64_t> v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

// "node 'x' (Conv): reason" for run-time errors.
inline Status RunError(const std::string& node_name, const std::string& op,
                       const std::string& reason) {
  return InvalidArgument("node '" + node_name + "' (" + op + "): " + reason);
}

// Registration hooks, one per file.
void RegisterConvOps(KernelRegistry& r);    // conv_conv.cc: Conv, ConvTranspose
void RegisterPoolOps(KernelRegistry& r);    // conv_pool.cc: MaxPool, AveragePool, LpPool, Global*
void RegisterNormOps(KernelRegistry& r);    // conv_norm.cc: BatchNorm, InstanceNorm, LRN
void RegisterResizeOps(KernelRegistry& r);  // conv_resize.cc: Resize, Upsample

}  // namespace infermesh::runtime::conv_internal
