// Variadic broadcasting reductions across inputs (Min, Max, Sum, Mean) and Clip.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/ops/elementwise_internal.h"

namespace infermesh::runtime::elementwise {
namespace {

struct MaxOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return (a > b || std::isnan(a)) ? a : b;  // NaN propagates, as in numpy
    } else {
      return a > b ? a : b;
    }
  }
};

struct MinOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return (a < b || std::isnan(a)) ? a : b;
    } else {
      return a < b ? a : b;
    }
  }
};

struct SumOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a + b;  // float types only
  }
};

// Folds op over all inputs, each broadcast to the common shape. Mean divides the sum.
template <typename Op>
class VariadicKernel final : public Kernel {
 public:
  VariadicKernel(std::string name, Op op, bool mean)
      : name_(std::move(name)), op_(op), mean_(mean) {}

  Status Run(KernelContext& ctx) const override {
    const size_t n = ctx.num_inputs();
    std::vector<const Shape*> shapes;
    for (size_t k = 0; k < n; ++k) {
      if (ctx.input(k) == nullptr) {
        return InvalidArgument("node '" + name_ + "': input " + std::to_string(k) + " is missing");
      }
    }
    const DataType dtype = ctx.in(0).dtype();
    for (size_t k = 0; k < n; ++k) {
      if (ctx.in(k).dtype() != dtype) return TypeMismatch(name_, k, ctx.in(k));
      shapes.push_back(&ctx.in(k).shape());
    }
    if (n == 1) {  // Min/Max/Sum/Mean of one tensor is that tensor
      ctx.SetOutput(0, ctx.in(0));
      return OkStatus();
    }
    auto shape_or = BroadcastShapes(shapes);
    if (!shape_or.ok()) {
      return InvalidArgument("node '" + name_ + "': " + shape_or.status().message());
    }
    const Shape& shape = *shape_or;
    Tensor& out = ctx.AllocateOutput(0, dtype, shape);
    if (IsHalf(dtype)) {
      Tensor acc = ctx.Scratch(DataType::kFloat32, shape);
      Fold<float>(ctx, shape, acc, [&](size_t k) { return ToFloat32(ctx.in(k), ctx); });
      ConvertInto(acc, out, ctx);
      return OkStatus();
    }
    const bool ok = DispatchNative(dtype, [&](auto tag) {
      using T = decltype(tag);
      Fold<T>(ctx, shape, out, [&](size_t k) { return ctx.in(k); });
    });
    return ok ? OkStatus() : TypeMismatch(name_, 0, ctx.in(0));
  }

 private:
  template <typename T, typename GetInput>
  void Fold(KernelContext& ctx, const Shape& shape, Tensor& acc, GetInput get) const {
    T* o = acc.data<T>();
    auto f = [this](T x, T y) { return op_(x, y); };
    {
      Tensor a = get(0);
      Tensor b = get(1);
      BroadcastPlan plan({&a.shape(), &b.shape()}, shape);
      BinaryLoop(ctx, plan, a.data<T>(), b.data<T>(), o, kGrain, f);
    }
    for (size_t k = 2; k < ctx.num_inputs(); ++k) {
      Tensor b = get(k);
      BroadcastPlan plan({&shape, &b.shape()}, shape);
      BinaryLoop(ctx, plan, static_cast<const T*>(o), b.data<T>(), o, kGrain, f);
    }
    if constexpr (std::is_floating_point_v<T>) {
      if (mean_) {
        const T scale = T(1) / static_cast<T>(ctx.num_inputs());
        UnaryLoop(ctx, o, o, acc.numel(), kGrain, [scale](T v) { return v * scale; });
      }
    }
  }

  std::string name_;
  Op op_;
  bool mean_;
};

template <typename Op>
Result<KernelInit> MakeVariadic(const NodeInfo& node, Op op, bool float_only, bool mean) {
  if (node.input_types.empty()) return node.Error("expects at least one input");
  for (size_t k = 0; k < node.input_types.size(); ++k) {
    if (!node.HasInput(k)) return node.Error("input " + std::to_string(k) + " is missing");
    if (node.input_types[k] != node.input_types[0]) {
      return node.Error("input types differ: " + DataTypeName(node.input_types[0]) + " and " +
                        DataTypeName(node.input_types[k]));
    }
  }
  if (float_only) {
    IM_RETURN_IF_ERROR(
        node.RequireType(0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16}));
  } else {
    IM_RETURN_IF_ERROR(node.RequireType(
        0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt8,
            DataType::kInt16, DataType::kInt32, DataType::kInt64, DataType::kUint8,
            DataType::kUint16, DataType::kUint32, DataType::kUint64}));
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<VariadicKernel<Op>>(node.name, op, mean),
                    {node.input_types[0]}};
}

// --- Clip -------------------------------------------------------------------------------------

// Clip to [min, max]; bounds come from attributes (opset 6) or optional scalar inputs
// (opset 11+). When min > max every element becomes max.
class ClipKernel final : public Kernel {
 public:
  // attr_min/attr_max are used only when from_inputs is false.
  ClipKernel(std::string name, bool from_inputs, float attr_min, float attr_max)
      : name_(std::move(name)),
        from_inputs_(from_inputs),
        attr_min_(attr_min),
        attr_max_(attr_max) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    for (size_t k = 1; from_inputs_ && k < 3; ++k) {
      const Tensor* b = ctx.input(k);
      if (b == nullptr) continue;
      if (b->dtype() != x.dtype()) return TypeMismatch(name_, k, *b);
      if (b->numel() != 1) {
        return InvalidArgument("node '" + name_ + "': input " + std::to_string(k) +
                               " must be a scalar, got shape " + ShapeToString(b->shape()));
      }
    }
    Tensor& out = ctx.AllocateOutput(0, x.dtype(), x.shape());
    if (IsHalf(x.dtype())) {
      Tensor xf = ToFloat32(x, ctx);  // a scratch copy: safe to overwrite
      Clip<float>(ctx, xf, xf);
      ConvertInto(xf, out, ctx);
      return OkStatus();
    }
    const bool ok = DispatchNative(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      Clip<T>(ctx, x, out);
    });
    return ok ? OkStatus() : TypeMismatch(name_, 0, x);
  }

 private:
  template <typename T>
  T Bound(KernelContext& ctx, size_t k, T fallback) const {
    const Tensor* b = ctx.input(k);
    if (b == nullptr) return fallback;
    if (IsHalf(b->dtype())) return static_cast<T>(b->GetAsDouble(0));
    return b->data<T>()[0];
  }

  template <typename T>
  void Clip(KernelContext& ctx, const Tensor& x, Tensor& out) const {
    T lo = std::numeric_limits<T>::lowest();
    T hi = std::numeric_limits<T>::max();
    if (from_inputs_) {
      lo = Bound<T>(ctx, 1, lo);
      hi = Bound<T>(ctx, 2, hi);
    } else if constexpr (std::is_floating_point_v<T>) {
      lo = attr_min_;
      hi = attr_max_;
    }
    UnaryLoop(ctx, x.data<T>(), out.data<T>(), x.numel(), kGrain,
              [lo, hi](T v) { return std::min(std::max(v, lo), hi); });
  }

  std::string name_;
  bool from_inputs_;
  float attr_min_;
  float attr_max_;
};

Result<KernelInit> MakeClip6(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(
      node.RequireType(0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16}));
  const float lo = node.attrs.GetFloat("min", std::numeric_limits<float>::lowest());
  const float hi = node.attrs.GetFloat("max", std::numeric_limits<float>::max());
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ClipKernel>(node.name, false, lo, hi), {node.input_types[0]}};
}

Result<KernelInit> MakeClip11(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 3));
  IM_RETURN_IF_ERROR(node.RequireType(
      0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt8,
          DataType::kInt16, DataType::kInt32, DataType::kInt64, DataType::kUint8, DataType::kUint16,
          DataType::kUint32, DataType::kUint64}));
  for (size_t k = 1; k < 3; ++k) {
    if (node.HasInput(k) && node.input_types[k] != node.input_types[0]) {
      return node.Error("input " + std::to_string(k) + " has type " +
                        DataTypeName(node.input_types[k]) + ", expected " +
                        DataTypeName(node.input_types[0]));
    }
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ClipKernel>(node.name, true, 0.0f, 0.0f),
                    {node.input_types[0]}};
}

}  // namespace

void RegisterVariadicKernels(KernelRegistry& r) {
  r.Add("Max", 8, [](const NodeInfo& n) { return MakeVariadic(n, MaxOp{}, false, false); });
  r.Add("Min", 8, [](const NodeInfo& n) { return MakeVariadic(n, MinOp{}, false, false); });
  r.Add("Sum", 8, [](const NodeInfo& n) { return MakeVariadic(n, SumOp{}, true, false); });
  r.Add("Mean", 8, [](const NodeInfo& n) { return MakeVariadic(n, SumOp{}, true, true); });
  r.Add("Clip", 6, MakeClip6);
  r.Add("Clip", 11, MakeClip11);
}

}  // namespace infermesh::runtime::elementwise
