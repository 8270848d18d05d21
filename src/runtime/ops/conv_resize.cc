// Resize (opsets 10, 11, 13) and Upsample (7, 9): nearest, n-linear and n-cubic
// interpolation with every coordinate_transformation_mode and nearest_mode of
// opset 13, on float32 tensors of any rank.
//
// Interpolation weights are a product of per-axis weights, so the resize is done
// one axis at a time: each axis gets a plan (for every output index, a few input
// taps and their weights, or "extrapolate"), and axes whose plan is the
// identity are skipped.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/conv_internal.h"

namespace infermesh::runtime::conv_internal {
namespace {

enum class Mode { kNearest, kLinear, kCubic };
enum class Transform {
  kHalfPixel,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
  kTfHalfPixelForNn,
  kTfCropAndResize,
};
// kSimple is the rule of Upsample and Resize-10: truncate when upsampling,
// ceil when downsampling (as onnxruntime does).
enum class NearestMode { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };

struct ResizeAttrs {
  Mode mode = Mode::kNearest;
  Transform transform = Transform::kHalfPixel;
  NearestMode nearest = NearestMode::kRoundPreferFloor;
  float cubic_a = -0.75f;
  bool exclude_outside = false;
  float extrapolation_value = 0.0f;
};

// Input positions of the optional inputs; -1 when the op has no such input.
struct ResizeInputs {
  int roi = -1, scales = -1, sizes = -1;
};

struct AxisPlan {
  int64_t in = 0, out = 0;
  int taps = 1;
  std::vector<int64_t> index;        // out * taps
  std::vector<float> weight;         // out * taps
  std::vector<uint8_t> extrapolate;  // out
  bool identity = false;
};

// `out` is the resized length as ONNX defines it for the transform: in * scale,
// not rounded (it differs from the output size when scales are given).
double SourceCoordinate(const ResizeAttrs& a, double x, double scale, int64_t in_len, double out,
                        double roi_start, double roi_end) {
  const double in = static_cast<double>(in_len);
  switch (a.transform) {
    case Transform::kHalfPixel:
      return (x + 0.5) / scale - 0.5;
    case Transform::kPytorchHalfPixel:
      return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case Transform::kAlignCorners:
      return out == 1 ? 0.0 : x * (in - 1) / (out - 1);
    case Transform::kAsymmetric:
      return x / scale;
    case Transform::kTfHalfPixelForNn:
      return (x + 0.5) / scale;
    case Transform::kTfCropAndResize:
      return out > 1 ? roi_start * static_cast<double>(in - 1) + x * (roi_end - roi_start) *
                                                                     static_cast<double>(in - 1) /
                                                                     static_cast<double>(out - 1)
                     : 0.5 * (roi_start + roi_end) * static_cast<double>(in - 1);
  }
  return 0.0;
}

int64_t NearestIndex(NearestMode m, double x, bool downsample) {
  switch (m) {
    case NearestMode::kRoundPreferFloor:
      return x == std::floor(x) + 0.5 ? static_cast<int64_t>(std::floor(x))
                                      : static_cast<int64_t>(std::round(x));
    case NearestMode::kRoundPreferCeil:
      return static_cast<int64_t>(std::round(x));  // std::round rounds halves away from 0
    case NearestMode::kFloor:
      return static_cast<int64_t>(std::floor(x));
    case NearestMode::kCeil:
      return static_cast<int64_t>(std::ceil(x));
    case NearestMode::kSimple:
      return downsample ? static_cast<int64_t>(std::ceil(x)) : static_cast<int64_t>(x);
  }
  return 0;
}

// `length` is the resized length used by the coordinate transforms: the size
// itself when sizes are given, in * scale (unrounded) when scales are.
AxisPlan MakePlan(const ResizeAttrs& a, int64_t in, int64_t out, double scale, double length,
                  double roi_start, double roi_end) {
  AxisPlan p;
  p.in = in;
  p.out = out;
  p.taps = a.mode == Mode::kNearest ? 1 : (a.mode == Mode::kLinear ? 2 : 4);
  p.index.resize(static_cast<size_t>(out * p.taps));
  p.weight.resize(static_cast<size_t>(out * p.taps));
  p.extrapolate.assign(static_cast<size_t>(out), 0);
  bool identity = in == out;
  for (int64_t o = 0; o < out; ++o) {
    const double x =
        SourceCoordinate(a, static_cast<double>(o), scale, in, length, roi_start, roi_end);
    int64_t* idx = &p.index[o * p.taps];
    float* w = &p.weight[o * p.taps];
    if (a.transform == Transform::kTfCropAndResize && (x < 0 || x > static_cast<double>(in - 1))) {
      p.extrapolate[o] = 1;
      for (int t = 0; t < p.taps; ++t) {
        idx[t] = 0;
        w[t] = 0;
      }
      identity = false;
      continue;
    }
    if (a.mode == Mode::kNearest) {
      int64_t i = NearestIndex(a.nearest, x, scale < 1.0);
      idx[0] = std::clamp<int64_t>(i, 0, in - 1);
      w[0] = 1.0f;
      if (idx[0] != o) identity = false;
    } else if (a.mode == Mode::kLinear) {
      const double xc = std::clamp(x, 0.0, static_cast<double>(in - 1));
      const int64_t i0 = static_cast<int64_t>(std::floor(xc));
      const int64_t i1 = std::min(i0 + 1, in - 1);
      const double r = xc - static_cast<double>(i0);
      idx[0] = i0;
      idx[1] = i1;
      w[0] = static_cast<float>(1.0 - r);
      w[1] = static_cast<float>(r);
      if (i0 != o || r != 0.0) identity = false;
    } else {
      const double A = a.cubic_a;
      const int64_t i0 = static_cast<int64_t>(std::floor(x));
      const double r = x - static_cast<double>(i0);
      double c[4];
      c[0] = ((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A;
      c[1] = ((A + 2) * r - (A + 3)) * r * r + 1;
      c[2] = ((A + 2) * (1 - r) - (A + 3)) * (1 - r) * (1 - r) + 1;
      c[3] = ((A * (2 - r) - 5 * A) * (2 - r) + 8 * A) * (2 - r) - 4 * A;
      double sum = 0;
      for (int t = 0; t < 4; ++t) {
        const int64_t i = i0 - 1 + t;
        if (a.exclude_outside && (i < 0 || i >= in)) c[t] = 0;
        sum += c[t];
        idx[t] = std::clamp<int64_t>(i, 0, in - 1);
      }
      for (int t = 0; t < 4; ++t) {
        w[t] = static_cast<float>(a.exclude_outside && sum != 0 ? c[t] / sum : c[t]);
      }
      if (i0 != o || r != 0.0) identity = false;
    }
  }
  p.identity = identity;
  return p;
}

// dst[outer, plan.out, inner] from src[outer, plan.in, inner].
void ApplyAxis(KernelContext& ctx, const AxisPlan& p, float extrapolation, int64_t outer,
               int64_t inner, const float* src, float* dst) {
  ctx.ParallelFor(outer * p.out, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, inner)),
                  [&](int64_t begin, int64_t end) {
                    for (int64_t row = begin; row < end; ++row) {
                      const int64_t oi = row / p.out, o = row % p.out;
                      float* d = dst + row * inner;
                      if (p.extrapolate[o]) {
                        std::fill(d, d + inner, extrapolation);
                        continue;
                      }
                      const float* s = src + oi * p.in * inner;
                      const int64_t* idx = &p.index[o * p.taps];
                      const float* w = &p.weight[o * p.taps];
                      if (p.taps == 1) {
                        std::memcpy(d, s + idx[0] * inner, static_cast<size_t>(inner) * 4);
                        continue;
                      }
                      std::fill(d, d + inner, 0.0f);
                      for (int t = 0; t < p.taps; ++t) {
                        const float* st = s + idx[t] * inner;
                        const float wt = w[t];
                        for (int64_t j = 0; j < inner; ++j) d[j] += wt * st[j];
                      }
                    }
                  });
}

class ResizeKernel final : public Kernel {
 public:
  ResizeKernel(std::string name, std::string op, ResizeAttrs a, ResizeInputs in,
               std::vector<float> scales_attr)
      : name_(std::move(name)),
        op_(std::move(op)),
        a_(a),
        in_(in),
        scales_attr_(std::move(scales_attr)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const size_t r = x.rank();
    auto optional = [&](int i) -> const Tensor* {
      if (i < 0) return nullptr;
      const Tensor* t = ctx.input(static_cast<size_t>(i));
      return (t != nullptr && t->numel() > 0) ? t : nullptr;
    };
    const Tensor* scales_t = optional(in_.scales);
    const Tensor* sizes_t = optional(in_.sizes);
    const Tensor* roi_t = optional(in_.roi);
    std::vector<double> scales(r, 1.0), lengths(r);
    Shape out(r);
    if (sizes_t != nullptr) {
      if (scales_t != nullptr) return Error("only one of scales and sizes may be given");
      std::vector<int64_t> sizes = sizes_t->ToInt64Vector();
      if (sizes.size() != r) return Error("sizes must have " + std::to_string(r) + " elements");
      for (size_t i = 0; i < r; ++i) {
        if (sizes[i] < 0) return Error("sizes must be non-negative");
        out[i] = sizes[i];
        lengths[i] = static_cast<double>(sizes[i]);
        scales[i] =
            x.dim(i) == 0
                ? 1.0
                : static_cast<double>(static_cast<float>(sizes[i]) / static_cast<float>(x.dim(i)));
      }
    } else {
      std::vector<float> s = scales_attr_;
      if (scales_t != nullptr) {
        s.assign(scales_t->data<float>(), scales_t->data<float>() + scales_t->numel());
      } else if (in_.scales >= 0) {
        return Error("one of scales and sizes must be given");
      }
      if (s.size() != r) return Error("scales must have " + std::to_string(r) + " elements");
      for (size_t i = 0; i < r; ++i) {
        if (!(s[i] > 0)) return Error("scales must be positive");
        scales[i] = s[i];
        lengths[i] = static_cast<double>(x.dim(i)) * s[i];
        out[i] = static_cast<int64_t>(std::floor(lengths[i]));
      }
    }
    std::vector<double> roi(2 * r);
    for (size_t i = 0; i < r; ++i) {
      roi[i] = 0;
      roi[i + r] = 1;
    }
    if (a_.transform == Transform::kTfCropAndResize) {
      if (roi_t == nullptr || roi_t->numel() != static_cast<int64_t>(2 * r)) {
        return Error("tf_crop_and_resize needs roi with " + std::to_string(2 * r) + " elements");
      }
      for (size_t i = 0; i < 2 * r; ++i) roi[i] = roi_t->GetAsDouble(static_cast<int64_t>(i));
    }

    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, out);
    if (y.numel() == 0) return OkStatus();
    if (x.numel() == 0) return Error("cannot resize an empty input to a non-empty output");

    Shape cur = x.shape();
    const float* src = x.data<float>();
    std::vector<float> buf[2];
    int which = 0;
    std::vector<size_t> axes;
    std::vector<AxisPlan> plans;
    for (size_t i = 0; i < r; ++i) {
      AxisPlan p = MakePlan(a_, x.dim(i), out[i], scales[i], lengths[i], roi[i], roi[i + r]);
      if (!p.identity) {
        axes.push_back(i);
        plans.push_back(std::move(p));
      }
    }
    if (axes.empty()) {
      std::memcpy(y.data<float>(), src, y.nbytes());
      return OkStatus();
    }
    for (size_t k = 0; k < axes.size(); ++k) {
      const size_t axis = axes[k];
      const int64_t outer = Product(std::span<const int64_t>(cur.data(), axis));
      const int64_t inner = Product(std::span<const int64_t>(cur.data() + axis + 1, r - axis - 1));
      cur[axis] = out[axis];
      float* dst;
      if (k + 1 == axes.size()) {
        dst = y.data<float>();
      } else {
        buf[which].resize(static_cast<size_t>(NumElements(cur)));
        dst = buf[which].data();
      }
      ApplyAxis(ctx, plans[k], a_.extrapolation_value, outer, inner, src, dst);
      src = dst;
      which ^= 1;
    }
    return OkStatus();
  }

 private:
  Status Error(const std::string& reason) const { return RunError(name_, op_, reason); }

  std::string name_, op_;
  ResizeAttrs a_;
  ResizeInputs in_;
  std::vector<float> scales_attr_;  // Upsample-7
};

Result<Mode> ParseMode(const NodeInfo& node, bool resize) {
  const std::string m = node.attrs.GetString("mode", "nearest");
  if (m == "nearest") return Mode::kNearest;
  if (m == "linear" || (!resize && m == "bilinear")) return Mode::kLinear;
  if (m == "cubic" && resize && node.opset >= 11) return Mode::kCubic;
  return node.Error("unknown mode '" + m + "'");
}

Result<KernelInit> MakeResize(const NodeInfo& node) {
  ResizeAttrs a;
  ResizeInputs in;
  IM_ASSIGN_OR_RETURN(a.mode, ParseMode(node, true));
  if (node.opset < 11) {
    // Resize-10: X, scales; Upsample semantics.
    IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
    in.scales = 1;
    a.transform = Transform::kAsymmetric;
    a.nearest = NearestMode::kSimple;
  } else {
    IM_RETURN_IF_ERROR(node.RequireInputCount(node.opset >= 13 ? 1 : 3, 4));
    in = {1, 2, 3};
    const std::string t = node.attrs.GetString("coordinate_transformation_mode", "half_pixel");
    if (t == "half_pixel") {
      a.transform = Transform::kHalfPixel;
    } else if (t == "pytorch_half_pixel") {
      a.transform = Transform::kPytorchHalfPixel;
    } else if (t == "align_corners") {
      a.transform = Transform::kAlignCorners;
    } else if (t == "asymmetric") {
      a.transform = Transform::kAsymmetric;
    } else if (t == "tf_half_pixel_for_nn") {
      a.transform = Transform::kTfHalfPixelForNn;
    } else if (t == "tf_crop_and_resize") {
      a.transform = Transform::kTfCropAndResize;
    } else {
      return node.Unsupported("coordinate_transformation_mode '" + t + "'");
    }
    const std::string n = node.attrs.GetString("nearest_mode", "round_prefer_floor");
    if (n == "round_prefer_floor") {
      a.nearest = NearestMode::kRoundPreferFloor;
    } else if (n == "round_prefer_ceil") {
      a.nearest = NearestMode::kRoundPreferCeil;
    } else if (n == "floor") {
      a.nearest = NearestMode::kFloor;
    } else if (n == "ceil") {
      a.nearest = NearestMode::kCeil;
    } else {
      return node.Error("unknown nearest_mode '" + n + "'");
    }
    a.cubic_a = node.attrs.GetFloat("cubic_coeff_a", -0.75f);
    const int64_t ex = node.attrs.GetInt("exclude_outside", 0);
    if (ex != 0 && ex != 1) return node.Error("exclude_outside must be 0 or 1");
    a.exclude_outside = ex == 1;
    a.extrapolation_value = node.attrs.GetFloat("extrapolation_value", 0.0f);
  }
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
  IM_RETURN_IF_ERROR(node.RequireType(in.scales, {DataType::kFloat32}));
  if (in.roi >= 0) {
    IM_RETURN_IF_ERROR(node.RequireType(in.roi, {DataType::kFloat32, DataType::kFloat64}));
  }
  if (in.sizes >= 0) IM_RETURN_IF_ERROR(node.RequireType(in.sizes, {DataType::kInt64}));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{
      std::make_unique<ResizeKernel>(node.name, node.op_type, a, in, std::vector<float>{}),
      {DataType::kFloat32}};
}

Result<KernelInit> MakeUpsample(const NodeInfo& node) {
  ResizeAttrs a;
  ResizeInputs in;
  IM_ASSIGN_OR_RETURN(a.mode, ParseMode(node, false));
  a.transform = Transform::kAsymmetric;
  a.nearest = NearestMode::kSimple;
  std::vector<float> scales_attr;
  if (node.opset >= 9) {
    IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
    IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kFloat32}));
    in.scales = 1;
  } else {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
    scales_attr = node.attrs.GetFloats("scales");
    if (scales_attr.empty()) return node.Error("attribute 'scales' is required");
  }
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{
      std::make_unique<ResizeKernel>(node.name, node.op_type, a, in, std::move(scales_attr)),
      {DataType::kFloat32}};
}

}  // namespace

void RegisterResizeOps(KernelRegistry& r) {
  r.Add("Resize", 10, MakeResize);
  r.Add("Upsample", 7, MakeUpsample);
}

}  // namespace infermesh::runtime::conv_internal
