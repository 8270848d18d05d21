// Broadcasting arithmetic: Add, Sub, Mul, Div, Mod and Pow.
//
// Integer arithmetic wraps (two's complement) like numpy; integer Div truncates toward
// zero and Div/Mod by zero fail with InvalidArgument rather than trapping.
#include <algorithm>
#include <cmath>

#include "runtime/ops/elementwise_internal.h"

namespace infermesh::runtime::elementwise {
namespace {

constexpr std::initializer_list<DataType> kNumeric = {
    DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt8,
    DataType::kInt16,   DataType::kInt32,   DataType::kInt64,    DataType::kUint8,
    DataType::kUint16,  DataType::kUint32,  DataType::kUint64};

template <typename T>
inline T WrapNeg(T a) {
  return static_cast<T>(WrapType<T>(0) - static_cast<WrapType<T>>(a));
}

struct AddOp {
  static constexpr bool kIntDivides = false;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<WrapType<T>>(a) + static_cast<WrapType<T>>(b));
    } else {
      return a + b;
    }
  }
};

struct SubOp {
  static constexpr bool kIntDivides = false;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<WrapType<T>>(a) - static_cast<WrapType<T>>(b));
    } else {
      return a - b;
    }
  }
};

struct MulOp {
  static constexpr bool kIntDivides = false;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<WrapType<T>>(a) * static_cast<WrapType<T>>(b));
    } else {
      return a * b;
    }
  }
};

struct DivOp {
  static constexpr bool kIntDivides = true;  // b == 0 checked before the loop
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      return b == T(-1) ? WrapNeg(a) : static_cast<T>(a / b);  // INT_MIN / -1 traps
    } else {
      return static_cast<T>(a / b);
    }
  }
};

// Mod with fmod=0: the result takes the sign of the divisor (Python's %). Integers only.
struct ModOp {
  static constexpr bool kIntDivides = true;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {  // not reachable: rejected at load
      T r = std::fmod(a, b);
      return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
    } else if constexpr (std::is_signed_v<T>) {
      if (b == T(-1)) return 0;
      T r = static_cast<T>(a % b);
      if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
      return r;
    } else {
      return static_cast<T>(a % b);
    }
  }
};

// Mod with fmod=1: the result takes the sign of the dividend (C's fmod and %).
struct FmodOp {
  static constexpr bool kIntDivides = true;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return std::fmod(a, b);
    } else if constexpr (std::is_signed_v<T>) {
      return b == T(-1) ? T(0) : static_cast<T>(a % b);
    } else {
      return static_cast<T>(a % b);
    }
  }
};

template <typename T>
bool HasZero(const Tensor& t) {
  auto v = t.values<T>();
  return std::find(v.begin(), v.end(), T(0)) != v.end();
}

// out = op(a, b) with both inputs of one type, broadcast.
template <typename Op>
class ArithmeticKernel final : public Kernel {
 public:
  ArithmeticKernel(std::string name, Op op) : name_(std::move(name)), op_(op) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    if (b.dtype() != a.dtype()) return TypeMismatch(name_, 1, b);
    IM_ASSIGN_OR_RETURN(Shape shape, BroadcastOrError(name_, a, b));
    BroadcastPlan plan({&a.shape(), &b.shape()}, shape);
    Tensor& out = ctx.AllocateOutput(0, a.dtype(), shape);
    if (IsHalf(a.dtype())) {
      Tensor af = ToFloat32(a, ctx);
      Tensor bf = ToFloat32(b, ctx);
      Tensor of = ctx.Scratch(DataType::kFloat32, shape);
      BinaryLoop(ctx, plan, af.data<float>(), bf.data<float>(), of.data<float>(), kGrain,
                 [this](float x, float y) { return op_(x, y); });
      ConvertInto(of, out, ctx);
      return OkStatus();
    }
    Status status = OkStatus();
    const bool ok = DispatchNative(a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_integral_v<T> && Op::kIntDivides) {
        if (plan.numel() > 0 && HasZero<T>(b)) {
          status = InvalidArgument("node '" + name_ + "': integer division by zero");
          return;
        }
      }
      BinaryLoop(ctx, plan, a.data<T>(), b.data<T>(), out.data<T>(), kGrain,
                 [this](T x, T y) { return op_(x, y); });
    });
    if (!ok) return TypeMismatch(name_, 0, a);
    return status;
  }

 private:
  std::string name_;
  Op op_;
};

Status RequireSameTypes(const NodeInfo& node) {
  if (node.input_types[1] != node.input_types[0]) {
    return node.Error("input types differ: " + DataTypeName(node.input_types[0]) + " and " +
                      DataTypeName(node.input_types[1]));
  }
  return OkStatus();
}

template <typename Op>
Result<KernelInit> MakeArithmetic(const NodeInfo& node, Op op) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(node.RequireType(0, kNumeric));
  IM_RETURN_IF_ERROR(RequireSameTypes(node));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ArithmeticKernel<Op>>(node.name, op), {node.input_types[0]}};
}

Result<KernelInit> MakeMod(const NodeInfo& node) {
  const int64_t fmod = node.attrs.GetInt("fmod", 0);
  if (fmod != 0 && fmod != 1) return node.Error("attribute 'fmod' must be 0 or 1");
  if (fmod == 1) return MakeArithmetic(node, FmodOp{});
  if (node.HasInput(0) && IsFloatLike(node.input_types[0])) {
    return node.Error("floating-point Mod requires fmod=1");
  }
  return MakeArithmetic(node, ModOp{});
}

// --- Pow ------------------------------------------------------------------------------------

template <typename T>
T IntPow(T base, int64_t e) {
  if (e < 0) {  // 1 / base^|e| truncated toward zero
    if (base == T(1)) return T(1);
    if constexpr (std::is_signed_v<T>) {
      if (base == T(-1)) return (e & 1) ? T(-1) : T(1);
    }
    return T(0);
  }
  WrapType<T> result = 1;
  auto b = static_cast<WrapType<T>>(base);
  while (e != 0) {
    if (e & 1) result *= b;
    b *= b;
    e >>= 1;
  }
  return static_cast<T>(result);
}

class PowKernel final : public Kernel {
 public:
  explicit PowKernel(std::string name) : name_(std::move(name)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    IM_ASSIGN_OR_RETURN(Shape shape, BroadcastOrError(name_, a, b));
    BroadcastPlan plan({&a.shape(), &b.shape()}, shape);
    Tensor& out = ctx.AllocateOutput(0, a.dtype(), shape);
    const bool int_exponent = b.dtype() != DataType::kFloat32 && !IsHalf(b.dtype());
    if (IsFloatLike(a.dtype())) {
      Tensor af = ToFloat32(a, ctx);
      Tensor bf = ToFloat32(b, ctx);
      Tensor of = a.dtype() == DataType::kFloat32 ? out : ctx.Scratch(DataType::kFloat32, shape);
      FloatPow(ctx, plan, af, bf, of);
      if (a.dtype() != DataType::kFloat32) ConvertInto(of, out, ctx);
      return OkStatus();
    }
    if (int_exponent) {  // exact integer power
      Tensor bi = ConvertToType(b, DataType::kInt64, ctx);
      if (a.dtype() == DataType::kInt32) {
        BinaryLoop(ctx, plan, a.data<int32_t>(), bi.data<int64_t>(), out.data<int32_t>(),
                   kGrainHeavy, [](int32_t x, int64_t e) { return IntPow(x, e); });
      } else if (a.dtype() == DataType::kInt64) {
        BinaryLoop(ctx, plan, a.data<int64_t>(), bi.data<int64_t>(), out.data<int64_t>(),
                   kGrainHeavy, [](int64_t x, int64_t e) { return IntPow(x, e); });
      } else {
        return TypeMismatch(name_, 0, a);
      }
      return OkStatus();
    }
    // Integer base, float exponent: compute in double, truncate to the base type.
    Tensor ad = ConvertToType(a, DataType::kFloat64, ctx);
    Tensor bd = ConvertToType(b, DataType::kFloat64, ctx);
    Tensor od = ctx.Scratch(DataType::kFloat64, shape);
    BinaryLoop(ctx, plan, ad.data<double>(), bd.data<double>(), od.data<double>(), kGrainHeavy,
               [](double x, double e) { return std::pow(x, e); });
    ConvertInto(od, out, ctx);
    return OkStatus();
  }

 private:
  static void FloatPow(KernelContext& ctx, const BroadcastPlan& plan, const Tensor& a,
                       const Tensor& b, Tensor& out) {
    const float* x = a.data<float>();
    float* y = out.data<float>();
    // Constant exponents that models use (x^2 in decomposed LayerNorm, x^3 in Gelu).
    if (b.numel() == 1 && a.shape() == out.shape()) {
      const float e = b.data<float>()[0];
      if (e == 2.0f) return UnaryLoop(ctx, x, y, a.numel(), kGrain, [](float v) { return v * v; });
      if (e == 3.0f) {
        return UnaryLoop(ctx, x, y, a.numel(), kGrain, [](float v) { return v * v * v; });
      }
      if (e == 1.0f) return UnaryLoop(ctx, x, y, a.numel(), kGrain, [](float v) { return v; });
      if (e == 0.5f) {
        return UnaryLoop(ctx, x, y, a.numel(), kGrain, [](float v) {
          return std::isinf(v) ? std::fabs(v) : std::sqrt(v) + 0.0f;  // pow(-0, .5) = +0
        });
      }
    }
    BinaryLoop(ctx, plan, x, b.data<float>(), y, kGrainHeavy,
               [](float v, float e) { return std::pow(v, e); });
  }

  std::string name_;
};

Result<KernelInit> MakePow(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(
      node.RequireType(0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16,
                           DataType::kInt32, DataType::kInt64}));
  IM_RETURN_IF_ERROR(node.RequireType(1, kNumeric));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<PowKernel>(node.name), {node.input_types[0]}};
}

}  // namespace

void RegisterBinaryKernels(KernelRegistry& r) {
  r.Add("Add", 7, [](const NodeInfo& n) { return MakeArithmetic(n, AddOp{}); });
  r.Add("Sub", 7, [](const NodeInfo& n) { return MakeArithmetic(n, SubOp{}); });
  r.Add("Mul", 7, [](const NodeInfo& n) { return MakeArithmetic(n, MulOp{}); });
  r.Add("Div", 7, [](const NodeInfo& n) { return MakeArithmetic(n, DivOp{}); });
  r.Add("Mod", 10, MakeMod);
  r.Add("Pow", 7, MakePow);
}

}  // namespace infermesh::runtime::elementwise
