// Internal to the elementwise operator family (ops/elementwise*.cc): registration hooks
// of the per-file groups, type dispatch and the parallel loops they share.
//
// Float16 and bfloat16 are computed in float32: a kernel converts such inputs with
// ToFloat32(), computes in float32 and converts the result back with ConvertInto(),
// which matches numpy's half arithmetic (compute in float, round once).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime/kernel.h"
#include "runtime/ops/broadcast.h"

namespace infermesh::runtime::elementwise {

void RegisterUnaryKernels(KernelRegistry& r);       // elementwise_unary.cc
void RegisterActivationKernels(KernelRegistry& r);  // elementwise_activation.cc
void RegisterBinaryKernels(KernelRegistry& r);      // elementwise_binary.cc: Add..Pow, Mod
void RegisterCompareKernels(KernelRegistry& r);     // elementwise_compare.cc: comparisons,
                                                    // logic, BitShift, Where
void RegisterVariadicKernels(KernelRegistry& r);    // elementwise_variadic.cc: Min, Max, Sum,
                                                    // Mean, Clip
void RegisterCastKernels(KernelRegistry& r);        // elementwise_cast.cc: Cast, CastLike

// Elements per parallel chunk: below this, threading costs more than it saves.
inline constexpr int64_t kGrain = 32768;
// For transcendental functions, which cost ~10x more per element.
inline constexpr int64_t kGrainHeavy = 4096;

inline bool IsHalf(DataType t) { return t == DataType::kFloat16 || t == DataType::kBFloat16; }
inline bool IsFloatLike(DataType t) { return t == DataType::kFloat32 || IsHalf(t); }

// --- Conversion (elementwise_cast.cc) ------------------------------------------------------

// True for the types Cast converts between: every supported storage type.
bool IsConvertible(DataType t);
// Converts `in` into `out` element by element (same numel; out has the target type).
// Float to integer truncates toward zero, saturates out-of-range values and maps NaN to 0;
// integer to narrower integer wraps; anything to bool is (x != 0).
void ConvertInto(const Tensor& in, Tensor& out, KernelContext& ctx);
// `t` itself if float32, else a float32 copy in scratch memory.
Tensor ToFloat32(const Tensor& t, KernelContext& ctx);
// A scratch copy of `t` converted to `to` (t itself if it already has that type).
Tensor ConvertToType(const Tensor& t, DataType to, KernelContext& ctx);

// --- Type dispatch ----------------------------------------------------------------------------

// Calls fn(T{}) with the C++ type of `t` among float32 and all integer types; false if
// `t` is none of them (half types must be routed through float32 by the caller).
template <typename Fn>
bool DispatchNative(DataType t, Fn&& fn) {
  switch (t) {
    case DataType::kFloat32:
      fn(float{});
      return true;
    case DataType::kInt8:
      fn(int8_t{});
      return true;
    case DataType::kInt16:
      fn(int16_t{});
      return true;
    case DataType::kInt32:
      fn(int32_t{});
      return true;
    case DataType::kInt64:
      fn(int64_t{});
      return true;
    case DataType::kUint8:
      fn(uint8_t{});
      return true;
    case DataType::kUint16:
      fn(uint16_t{});
      return true;
    case DataType::kUint32:
      fn(uint32_t{});
      return true;
    case DataType::kUint64:
      fn(uint64_t{});
      return true;
    default:
      return false;
  }
}

// Integer types only.
template <typename Fn>
bool DispatchInteger(DataType t, Fn&& fn) {
  switch (t) {
    case DataType::kInt8:
      fn(int8_t{});
      return true;
    case DataType::kInt16:
      fn(int16_t{});
      return true;
    case DataType::kInt32:
      fn(int32_t{});
      return true;
    case DataType::kInt64:
      fn(int64_t{});
      return true;
    case DataType::kUint8:
      fn(uint8_t{});
      return true;
    case DataType::kUint16:
      fn(uint16_t{});
      return true;
    case DataType::kUint32:
      fn(uint32_t{});
      return true;
    case DataType::kUint64:
      fn(uint64_t{});
      return true;
    default:
      return false;
  }
}

// Same-size unsigned type for moving elements of any dtype without interpreting them.
template <typename Fn>
bool DispatchBySize(DataType t, Fn&& fn) {
  switch (DataTypeSize(t)) {
    case 1:
      fn(uint8_t{});
      return true;
    case 2:
      fn(uint16_t{});
      return true;
    case 4:
      fn(uint32_t{});
      return true;
    case 8:
      fn(uint64_t{});
      return true;
    default:
      return false;
  }
}

// Wrapping integer arithmetic without signed-overflow UB or int promotion surprises
// (uint16 * uint16 promotes to int and can overflow).
template <typename T>
using WrapType =
    std::conditional_t<(sizeof(T) < sizeof(uint32_t)), uint32_t, std::make_unsigned_t<T>>;

// --- Parallel loops ---------------------------------------------------------------------------

// out[i] = f(in[i]) for n elements, in parallel.
template <typename TI, typename TO, typename F>
void UnaryLoop(KernelContext& ctx, const TI* in, TO* out, int64_t n, int64_t grain, F f) {
  ctx.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) out[i] = f(in[i]);
  });
}

// out = f(a, b) over a two-input broadcast plan, in parallel. `out` may alias `a` or `b`
// when that input has the output's shape.
template <typename TA, typename TB, typename TO, typename F>
void BinaryLoop(KernelContext& ctx, const BroadcastPlan& plan, const TA* a, const TB* b, TO* out,
                int64_t grain, F f) {
  const int64_t sa = plan.inner_step(0);
  const int64_t sb = plan.inner_step(1);
  ctx.ParallelFor(plan.numel(), grain, [&](int64_t begin, int64_t end) {
    plan.ForEachRun(begin, end, [&](const int64_t* in, int64_t o, int64_t n) {
      const TA* pa = a + in[0];
      const TB* pb = b + in[1];
      TO* po = out + o;
      if (sa == 1 && sb == 1) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
      } else if (sa == 1) {
        const TB vb = *pb;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
      } else if (sb == 1) {
        const TA va = *pa;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
      } else {
        const TO v = f(*pa, *pb);
        for (int64_t i = 0; i < n; ++i) po[i] = v;
      }
    });
  });
}

// --- Unary kernels ------------------------------------------------------------------------------

// InvalidArgument for an input whose run-time type differs from the one seen at load.
inline Status TypeMismatch(const std::string& node_name, size_t input, const Tensor& t) {
  return InvalidArgument("node '" + node_name + "': input " + std::to_string(input) +
                         " has unexpected data type " + DataTypeName(t.dtype()));
}

// y = f(x) for float32, float16 and bfloat16 (the last two computed in float32).
template <typename F>
class UnaryFloatKernel final : public Kernel {
 public:
  UnaryFloatKernel(std::string name, F f, int64_t grain)
      : name_(std::move(name)), f_(std::move(f)), grain_(grain) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (!IsFloatLike(x.dtype())) return TypeMismatch(name_, 0, x);
    Tensor& out = ctx.AllocateOutput(0, x.dtype(), x.shape());
    if (x.dtype() == DataType::kFloat32) {
      UnaryLoop(ctx, x.data<float>(), out.data<float>(), x.numel(), grain_, f_);
      return OkStatus();
    }
    Tensor xf = ToFloat32(x, ctx);  // a scratch copy: safe to overwrite
    UnaryLoop(ctx, xf.data<float>(), xf.data<float>(), x.numel(), grain_, f_);
    ConvertInto(xf, out, ctx);
    return OkStatus();
  }

 private:
  std::string name_;
  F f_;
  int64_t grain_;
};

// Factory for a one-input float operator; read the node's attributes before calling.
template <typename F>
Result<KernelInit> MakeUnaryFloat(const NodeInfo& node, F f, int64_t grain = kGrainHeavy) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(
      node.RequireType(0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16}));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<UnaryFloatKernel<F>>(node.name, std::move(f), grain),
                    {node.input_types[0]}};
}

// y = f(x) for float32/16 and integer types; F has a `template <typename T> T operator()(T)`.
template <typename F>
class UnaryNumericKernel final : public Kernel {
 public:
  UnaryNumericKernel(std::string name, F f) : name_(std::move(name)), f_(std::move(f)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    Tensor& out = ctx.AllocateOutput(0, x.dtype(), x.shape());
    if (IsHalf(x.dtype())) {
      Tensor xf = ToFloat32(x, ctx);
      UnaryLoop(ctx, xf.data<float>(), xf.data<float>(), x.numel(), kGrain,
                [this](float v) { return f_(v); });
      ConvertInto(xf, out, ctx);
      return OkStatus();
    }
    const bool ok = DispatchNative(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      UnaryLoop(ctx, x.data<T>(), out.data<T>(), x.numel(), kGrain, [this](T v) { return f_(v); });
    });
    return ok ? OkStatus() : TypeMismatch(name_, 0, x);
  }

 private:
  std::string name_;
  F f_;
};

// Factory for a one-input operator over `allowed` types (float32/16 and integers).
template <typename F>
Result<KernelInit> MakeUnaryNumeric(const NodeInfo& node, F f,
                                    std::initializer_list<DataType> allowed) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(node.RequireType(0, allowed));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<UnaryNumericKernel<F>>(node.name, std::move(f)),
                    {node.input_types[0]}};
}

// Broadcast shape of a and b, or InvalidArgument naming the node.
inline Result<Shape> BroadcastOrError(const std::string& node_name, const Tensor& a,
                                      const Tensor& b) {
  auto r = BroadcastShapes(a.shape(), b.shape());
  if (!r.ok()) return InvalidArgument("node '" + node_name + "': " + r.status().message());
  return r;
}

}  // namespace infermesh::runtime::elementwise
