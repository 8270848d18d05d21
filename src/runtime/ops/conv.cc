// Conv operator family (CNN ops): registration and the sliding-window geometry
// shared by Conv, ConvTranspose and the pools. The kernels live in conv_*.cc.
#include <algorithm>
#include <string>

#include "runtime/kernel.h"
#include "runtime/ops/conv_internal.h"

namespace infermesh::runtime {
namespace conv_internal {
namespace {

std::string ListToString(std::span<const int64_t> v) { return ShapeToString(v); }

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

Result<WindowAttrs> ParseWindowAttrs(const NodeInfo& node, WindowAttrSet set) {
  WindowAttrs w;
  std::string auto_pad = node.attrs.GetString("auto_pad", "NOTSET");
  if (auto_pad == "NOTSET") {
    w.auto_pad = AutoPad::kNotSet;
  } else if (auto_pad == "SAME_UPPER") {
    w.auto_pad = AutoPad::kSameUpper;
  } else if (auto_pad == "SAME_LOWER") {
    w.auto_pad = AutoPad::kSameLower;
  } else if (auto_pad == "VALID") {
    w.auto_pad = AutoPad::kValid;
  } else {
    return node.Error("unknown auto_pad '" + auto_pad + "'");
  }
  w.kernel = node.attrs.GetInts("kernel_shape");
  w.strides = node.attrs.GetInts("strides");
  w.pads = node.attrs.GetInts("pads");
  if (set.dilations) w.dilations = node.attrs.GetInts("dilations");
  if (set.ceil_mode) {
    int64_t c = node.attrs.GetInt("ceil_mode", 0);
    if (c != 0 && c != 1) return node.Error("ceil_mode must be 0 or 1");
    w.ceil_mode = c == 1;
  }
  for (int64_t k : w.kernel) {
    if (k <= 0) return node.Error("kernel_shape must be positive: " + ListToString(w.kernel));
  }
  for (int64_t s : w.strides) {
    if (s <= 0) return node.Error("strides must be positive: " + ListToString(w.strides));
  }
  for (int64_t d : w.dilations) {
    if (d <= 0) return node.Error("dilations must be positive: " + ListToString(w.dilations));
  }
  for (int64_t p : w.pads) {
    if (p < 0) return node.Error("pads must be non-negative: " + ListToString(w.pads));
  }
  if (w.pads.size() % 2 != 0) return node.Error("pads must have an even length");
  if (w.auto_pad != AutoPad::kNotSet) {
    // auto_pad and explicit pads are mutually exclusive; exporters sometimes
    // write all-zero pads next to auto_pad, which is harmless.
    for (int64_t p : w.pads) {
      if (p != 0) return node.Error("pads cannot be combined with auto_pad=" + auto_pad);
    }
    w.pads.clear();
  }
  // Lists given together must agree on the spatial rank.
  size_t rank = 0;
  auto check = [&](size_t n, const char* what) -> Status {
    if (n == 0) return OkStatus();
    if (rank == 0) rank = n;
    if (n != rank)
      return node.Error(std::string(what) + " length disagrees with other window attributes");
    return OkStatus();
  };
  IM_RETURN_IF_ERROR(check(w.kernel.size(), "kernel_shape"));
  IM_RETURN_IF_ERROR(check(w.strides.size(), "strides"));
  IM_RETURN_IF_ERROR(check(w.dilations.size(), "dilations"));
  IM_RETURN_IF_ERROR(check(w.pads.size() / 2, "pads"));
  return w;
}

Result<WindowGeometry> ComputeWindow(const std::string& node_name, const WindowAttrs& a,
                                     std::span<const int64_t> in_spatial,
                                     std::span<const int64_t> kernel) {
  const size_t n = in_spatial.size();
  auto error = [&](const std::string& reason) -> Status {
    return InvalidArgument("node '" + node_name + "': " + reason);
  };
  if (kernel.size() != n) {
    return error("kernel has " + std::to_string(kernel.size()) + " spatial dims, input has " +
                 std::to_string(n));
  }
  if (!a.strides.empty() && a.strides.size() != n) {
    return error("strides length " + std::to_string(a.strides.size()) + " != spatial rank " +
                 std::to_string(n));
  }
  if (!a.dilations.empty() && a.dilations.size() != n) {
    return error("dilations length " + std::to_string(a.dilations.size()) + " != spatial rank " +
                 std::to_string(n));
  }
  if (!a.pads.empty() && a.pads.size() != 2 * n) {
    return error("pads length " + std::to_string(a.pads.size()) + " != 2 * spatial rank " +
                 std::to_string(n));
  }
  WindowGeometry g;
  g.rank = n;
  g.in.assign(in_spatial.begin(), in_spatial.end());
  g.kernel.assign(kernel.begin(), kernel.end());
  g.out.resize(n);
  g.stride.resize(n);
  g.dilation.resize(n);
  g.pad_begin.resize(n);
  g.pad_end.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = in_spatial[i];
    const int64_t k = kernel[i];
    const int64_t s = a.strides.empty() ? 1 : a.strides[i];
    const int64_t d = a.dilations.empty() ? 1 : a.dilations[i];
    if (k <= 0) return error("kernel dims must be positive");
    const int64_t dk = (k - 1) * d + 1;
    g.stride[i] = s;
    g.dilation[i] = d;
    if (a.auto_pad == AutoPad::kSameUpper || a.auto_pad == AutoPad::kSameLower) {
      const int64_t out = CeilDiv(in, s);
      const int64_t total = std::max<int64_t>(0, (out - 1) * s + dk - in);
      g.pad_begin[i] = a.auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
      g.pad_end[i] = total - g.pad_begin[i];
      g.out[i] = out;
      continue;
    }
    if (a.auto_pad == AutoPad::kNotSet && !a.pads.empty()) {
      g.pad_begin[i] = a.pads[i];
      g.pad_end[i] = a.pads[i + n];
    }
    const int64_t span = in + g.pad_begin[i] + g.pad_end[i] - dk;
    if (span < 0) {
      return error("window (" + std::to_string(dk) + ") is larger than the padded input (" +
                   std::to_string(in + g.pad_begin[i] + g.pad_end[i]) + ") in spatial dim " +
                   std::to_string(i));
    }
    int64_t out = (a.ceil_mode ? CeilDiv(span, s) : span / s) + 1;
    // A window that would start in the end padding is dropped.
    if (a.ceil_mode && (out - 1) * s >= in + g.pad_begin[i]) --out;
    g.out[i] = out;
  }
  return g;
}

}  // namespace conv_internal

void RegisterConvKernels(KernelRegistry& r) {
  conv_internal::RegisterConvOps(r);
  conv_internal::RegisterPoolOps(r);
  conv_internal::RegisterNormOps(r);
  conv_internal::RegisterResizeOps(r);
}

}  // namespace infermesh::runtime
