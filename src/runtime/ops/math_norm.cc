// LayerNormalization (opset 17) and MeanVarianceNormalization. Statistics are
// computed in double with two passes (mean, then squared deviations), so long rows
// of large activations keep float32 accuracy against PyTorch.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/broadcast.h"
#include "runtime/ops/math_internal.h"

namespace infermesh::runtime::math {
namespace {

// ---------------------------------------------------------------- LayerNormalization

// A per-position parameter (Scale or B) as a dense vector over the normalized
// shape: the tensor itself when it already has that many elements, else expanded.
Result<const float*> ExpandParam(const Tensor& p, const Shape& norm_shape, int64_t n,
                                 std::vector<float>& storage, const std::string& node,
                                 const char* what) {
  if (!IsUnidirectionallyBroadcastable(p.shape(), norm_shape)) {
    return InvalidArgument("node '" + node + "' (LayerNormalization): " + what + " of shape " +
                           ShapeToString(p.shape()) +
                           " does not broadcast to the normalized shape " +
                           ShapeToString(norm_shape));
  }
  if (p.numel() == n) return p.data<float>();
  const auto strides = BroadcastStrides(p.shape(), norm_shape);
  storage.resize(static_cast<size_t>(n));
  std::vector<int64_t> idx(norm_shape.size(), 0);
  const float* src = p.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[d];
    storage[static_cast<size_t>(i)] = src[off];
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < norm_shape[d]) break;
      idx[d] = 0;
    }
  }
  return storage.data();
}

class LayerNormKernel final : public Kernel {
 public:
  LayerNormKernel(std::string name, int64_t axis, float epsilon)
      : name_(std::move(name)), axis_(axis), epsilon_(epsilon) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const Tensor& scale = ctx.in(1);
    const Tensor* bias = ctx.input(2);
    const int64_t rank = static_cast<int64_t>(x.rank());
    if (rank == 0) return InvalidArgument("node '" + name_ + "': X must have rank >= 1");
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, rank, name_));
    const int64_t outer = DimProduct(x.shape(), 0, static_cast<size_t>(axis));
    const int64_t n = DimProduct(x.shape(), static_cast<size_t>(axis), x.rank());
    const Shape norm_shape(x.shape().begin() + axis, x.shape().end());
    std::vector<float> scale_storage, bias_storage;
    IM_ASSIGN_OR_RETURN(const float* s,
                        ExpandParam(scale, norm_shape, n, scale_storage, name_, "Scale"));
    const float* b = nullptr;
    if (bias != nullptr) {
      IM_ASSIGN_OR_RETURN(b, ExpandParam(*bias, norm_shape, n, bias_storage, name_, "B"));
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, x.shape());
    Shape stat_shape = x.shape();
    for (int64_t d = axis; d < rank; ++d) stat_shape[d] = 1;
    float* mean_out = nullptr;
    float* inv_out = nullptr;
    if (ctx.num_outputs() > 1) {
      mean_out = ctx.AllocateOutput(1, DataType::kFloat32, stat_shape).data<float>();
    }
    if (ctx.num_outputs() > 2) {
      inv_out = ctx.AllocateOutput(2, DataType::kFloat32, stat_shape).data<float>();
    }
    if (outer == 0) return OkStatus();
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    const double eps = epsilon_;
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
    ctx.ParallelFor(outer, grain, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        const float* row = xd + o * n;
        float* out = yd + o * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += row[i];
        const double mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
        double sq = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          const double d = row[i] - mean;
          sq += d * d;
        }
        const double var = n > 0 ? sq / static_cast<double>(n) : 0.0;
        const double inv = 1.0 / std::sqrt(var + eps);
        if (mean_out) mean_out[o] = static_cast<float>(mean);
        if (inv_out) inv_out[o] = static_cast<float>(inv);
        // Centre in double: with a large mean, float32 (x - mean) loses the digits
        // that carry the signal.
        if (b != nullptr) {
          for (int64_t i = 0; i < n; ++i) {
            out[i] = static_cast<float>((row[i] - mean) * inv) * s[i] + b[i];
          }
        } else {
          for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>((row[i] - mean) * inv) * s[i];
        }
      }
    });
    return OkStatus();
  }

 private:
  std::string name_;
  int64_t axis_;
  float epsilon_;
};

Result<KernelInit> MakeLayerNorm(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 3));
  for (size_t i = 0; i < 3; ++i) IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32}));
  const int64_t axis = node.attrs.GetInt("axis", -1);
  const float epsilon = node.attrs.GetFloat("epsilon", 1e-5f);
  const int64_t stash_type = node.attrs.GetInt("stash_type", 1);
  if (stash_type != static_cast<int64_t>(DataType::kFloat32)) {
    return node.Unsupported("stash_type " + DataTypeName(static_cast<DataType>(stash_type)) +
                            " (only float32 statistics)");
  }
  if (!(epsilon >= 0.0f)) return node.Error("epsilon must be non-negative");
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<LayerNormKernel>(node.name, axis, epsilon),
                    {DataType::kFloat32, DataType::kFloat32, DataType::kFloat32}};
}

// ---------------------------------------------------------------- MeanVarianceNormalization

// Y = (X - mean) / (sqrt(var) + 1e-9) with mean and var over `axes`, as in the
// ONNX function body (which adds epsilon to the standard deviation, not the variance).
class MvnKernel final : public Kernel {
 public:
  MvnKernel(std::string name, std::vector<int64_t> axes)
      : name_(std::move(name)), axes_(std::move(axes)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const int64_t rank = static_cast<int64_t>(x.rank());
    std::vector<bool> reduced(x.rank(), false);
    for (int64_t a : axes_) {
      IM_ASSIGN_OR_RETURN(int64_t d, NormalizeAxis(a, rank, name_));
      reduced[d] = true;
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, x.shape());
    if (x.numel() == 0) return OkStatus();
    // Statistics index of each element: its coordinates along the kept dimensions.
    Shape stat_shape;
    for (size_t d = 0; d < x.rank(); ++d) stat_shape.push_back(reduced[d] ? 1 : x.dim(d));
    const auto stat_strides = BroadcastStrides(stat_shape, x.shape());
    const int64_t stats = NumElements(stat_shape);
    const int64_t count = x.numel() / stats;
    std::vector<int64_t> stat_of(static_cast<size_t>(x.numel()));
    std::vector<int64_t> idx(x.rank(), 0);
    for (int64_t i = 0; i < x.numel(); ++i) {
      int64_t off = 0;
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * stat_strides[d];
      stat_of[static_cast<size_t>(i)] = off;
      for (size_t d = idx.size(); d-- > 0;) {
        if (++idx[d] < x.dim(d)) break;
        idx[d] = 0;
      }
    }
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    std::vector<double> mean(static_cast<size_t>(stats), 0.0), sq(static_cast<size_t>(stats), 0.0);
    for (int64_t i = 0; i < x.numel(); ++i) mean[stat_of[i]] += xd[i];
    for (double& m : mean) m /= static_cast<double>(count);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double d = xd[i] - mean[stat_of[i]];
      sq[stat_of[i]] += d * d;
    }
    for (double& s : sq) s = 1.0 / (std::sqrt(s / static_cast<double>(count)) + 1e-9);
    for (int64_t i = 0; i < x.numel(); ++i) {
      yd[i] = static_cast<float>((xd[i] - mean[stat_of[i]]) * sq[stat_of[i]]);
    }
    return OkStatus();
  }

 private:
  std::string name_;
  std::vector<int64_t> axes_;
};

Result<KernelInit> MakeMvn(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
  std::vector<int64_t> axes = node.attrs.GetInts("axes", {0, 2, 3});
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<MvnKernel>(node.name, std::move(axes)), {DataType::kFloat32}};
}

}  // namespace

void RegisterNormKernels(KernelRegistry& r) {
  r.Add("LayerNormalization", 17, MakeLayerNorm);
  r.Add("MeanVarianceNormalization", 9, MakeMvn);
}

}  // namespace infermesh::runtime::math
