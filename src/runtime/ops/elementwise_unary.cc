// Unary math operators: Abs, Neg, Sign, Reciprocal, rounding, roots, exponentials,
// trigonometric and hyperbolic functions, Erf, Not, IsNaN and IsInf.
#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/ops/elementwise_fast_math.h"
#include "runtime/ops/elementwise_internal.h"

namespace infermesh::runtime::elementwise {
namespace {

constexpr std::initializer_list<DataType> kFloatTypes = {DataType::kFloat32, DataType::kFloat16,
                                                         DataType::kBFloat16};

struct AbsFn {
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return std::fabs(x);
    } else if constexpr (std::is_signed_v<T>) {
      // Wrapping negation: Abs(INT_MIN) is INT_MIN, as in numpy, without UB.
      return x < 0 ? static_cast<T>(WrapType<T>(0) - static_cast<WrapType<T>>(x)) : x;
    } else {
      return x;
    }
  }
};

struct NegFn {
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return -x;
    } else {
      return static_cast<T>(WrapType<T>(0) - static_cast<WrapType<T>>(x));
    }
  }
};

struct SignFn {
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x)) return x;
    }
    return static_cast<T>((T(0) < x) - (x < T(0)));
  }
};

// Float operators without attributes: name, since_version, function.
template <typename F>
void AddFloat(KernelRegistry& r, const char* op, int since, F f, int64_t grain = kGrainHeavy) {
  r.Add(op, since, [f, grain](const NodeInfo& node) { return MakeUnaryFloat(node, f, grain); });
}

template <typename F>
void AddNumeric(KernelRegistry& r, const char* op, int since, F f,
                std::initializer_list<DataType> allowed) {
  std::vector<DataType> types(allowed);
  r.Add(op, since, [f, types](const NodeInfo& node) -> Result<KernelInit> {
    // RequireType takes an initializer_list; check membership here instead.
    if (node.HasInput(0) &&
        std::find(types.begin(), types.end(), node.input_types[0]) == types.end()) {
      return node.Unsupported("input 0 has data type " + DataTypeName(node.input_types[0]));
    }
    return MakeUnaryNumeric(node, f, {node.HasInput(0) ? node.input_types[0] : types[0]});
  });
}

// IsNaN / IsInf: float input, bool output.
template <typename F>
class FloatPredicateKernel final : public Kernel {
 public:
  FloatPredicateKernel(std::string name, F f) : name_(std::move(name)), f_(f) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (!IsFloatLike(x.dtype())) return TypeMismatch(name_, 0, x);
    Tensor xf = ToFloat32(x, ctx);
    Tensor& out = ctx.AllocateOutput(0, DataType::kBool, x.shape());
    UnaryLoop(ctx, xf.data<float>(), out.data<bool>(), x.numel(), kGrain, f_);
    return OkStatus();
  }

 private:
  std::string name_;
  F f_;
};

template <typename F>
Result<KernelInit> MakePredicate(const NodeInfo& node, F f) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(node.RequireType(0, kFloatTypes));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<FloatPredicateKernel<F>>(node.name, f), {DataType::kBool}};
}

Result<KernelInit> MakeIsNaN(const NodeInfo& node) {
  return MakePredicate(node, [](float x) { return std::isnan(x); });
}

Result<KernelInit> MakeIsInf(const NodeInfo& node) {
  const bool neg = node.attrs.GetInt("detect_negative", 1) != 0;
  const bool pos = node.attrs.GetInt("detect_positive", 1) != 0;
  return MakePredicate(
      node, [neg, pos](float x) { return std::isinf(x) && ((x > 0 && pos) || (x < 0 && neg)); });
}

class NotKernel final : public Kernel {
 public:
  explicit NotKernel(std::string name) : name_(std::move(name)) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.dtype() != DataType::kBool) return TypeMismatch(name_, 0, x);
    Tensor& out = ctx.AllocateOutput(0, DataType::kBool, x.shape());
    UnaryLoop(ctx, x.data<uint8_t>(), out.data<uint8_t>(), x.numel(), kGrain,
              [](uint8_t v) { return static_cast<uint8_t>(v == 0); });
    return OkStatus();
  }

 private:
  std::string name_;
};

Result<KernelInit> MakeNot(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kBool}));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<NotKernel>(node.name), {DataType::kBool}};
}

}  // namespace

void RegisterUnaryKernels(KernelRegistry& r) {
  const std::initializer_list<DataType> all = {
      DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt8,
      DataType::kInt16,   DataType::kInt32,   DataType::kInt64,    DataType::kUint8,
      DataType::kUint16,  DataType::kUint32,  DataType::kUint64};
  const std::initializer_list<DataType> signed_types = {
      DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt8,
      DataType::kInt16,   DataType::kInt32,   DataType::kInt64};
  AddNumeric(r, "Abs", 6, AbsFn{}, all);
  AddNumeric(r, "Neg", 6, NegFn{}, signed_types);
  AddNumeric(r, "Sign", 9, SignFn{}, all);

  AddFloat(
      r, "Reciprocal", 6, [](float x) { return 1.0f / x; }, kGrain);
  AddFloat(
      r, "Floor", 6, [](float x) { return std::floor(x); }, kGrain);
  AddFloat(
      r, "Ceil", 6, [](float x) { return std::ceil(x); }, kGrain);
  // Round half to even: nearbyint in the default rounding mode.
  AddFloat(
      r, "Round", 11, [](float x) { return std::nearbyint(x); }, kGrain);
  AddFloat(
      r, "Sqrt", 6, [](float x) { return std::sqrt(x); }, kGrain);
  AddFloat(r, "Exp", 6, [](float x) { return FastExp(x); });
  AddFloat(r, "Log", 6, [](float x) { return std::log(x); });
  AddFloat(r, "Sin", 7, [](float x) { return std::sin(x); });
  AddFloat(r, "Cos", 7, [](float x) { return std::cos(x); });
  AddFloat(r, "Tan", 7, [](float x) { return std::tan(x); });
  AddFloat(r, "Asin", 7, [](float x) { return std::asin(x); });
  AddFloat(r, "Acos", 7, [](float x) { return std::acos(x); });
  AddFloat(r, "Atan", 7, [](float x) { return std::atan(x); });
  AddFloat(r, "Sinh", 9, [](float x) { return std::sinh(x); });
  AddFloat(r, "Cosh", 9, [](float x) { return std::cosh(x); });
  AddFloat(r, "Asinh", 9, [](float x) { return std::asinh(x); });
  AddFloat(r, "Acosh", 9, [](float x) { return std::acosh(x); });
  AddFloat(r, "Atanh", 9, [](float x) { return std::atanh(x); });
  AddFloat(r, "Erf", 9, [](float x) { return FastErf(x); });

  r.Add("IsNaN", 9, MakeIsNaN);
  r.Add("IsInf", 10, MakeIsInf);
  r.Add("Not", 1, MakeNot);
}

}  // namespace infermesh::runtime::elementwise
