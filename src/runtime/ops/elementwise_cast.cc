// Cast and CastLike, and the element conversions the other elementwise kernels use to
// route float16/bfloat16 through float32.
#include <cmath>
#include <limits>

#include "runtime/ops/elementwise_internal.h"

namespace infermesh::runtime::elementwise {
namespace {

// Tags for the 16-bit float formats, whose storage type (uint16_t) says nothing.
struct Half {
  uint16_t bits;
};
struct BFloat {
  uint16_t bits;
};

template <typename T>
constexpr bool kIsFloat =
    std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat>;

// The value of an element as a C++ arithmetic type (float for the 16-bit formats).
template <typename T>
inline auto Load(T v) {
  if constexpr (std::is_same_v<T, Half>) {
    return HalfToFloat(v.bits);
  } else if constexpr (std::is_same_v<T, BFloat>) {
    return BFloat16ToFloat(v.bits);
  } else {
    return v;
  }
}

// Float to integer: truncate toward zero, saturate, NaN -> 0 (never UB).
template <typename To, typename F>
inline To FloatToInt(F f) {
  if (std::isnan(f)) return 0;
  const double d = static_cast<double>(f);
  constexpr double lo = static_cast<double>(std::numeric_limits<To>::lowest());
  // 2^bits as a double is exact; the largest To may not be representable.
  constexpr double hi_excl = 2.0 * static_cast<double>(std::numeric_limits<To>::max() / 2 + 1);
  if (d <= lo) return std::numeric_limits<To>::lowest();
  if (d >= hi_excl) return std::numeric_limits<To>::max();
  return static_cast<To>(d);
}

template <typename From, typename To>
inline To Convert(From raw) {
  const auto v = Load(raw);
  using V = decltype(v);
  if constexpr (std::is_same_v<To, bool>) {
    return v != V{0};
  } else if constexpr (std::is_same_v<To, Half>) {
    return Half{FloatToHalf(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<To, BFloat>) {
    return BFloat{FloatToBFloat16(static_cast<float>(v))};
  } else if constexpr (std::is_floating_point_v<To>) {
    return static_cast<To>(v);
  } else if constexpr (kIsFloat<From>) {
    return FloatToInt<To>(v);
  } else {
    return static_cast<To>(v);  // integer/bool to integer: wraps (modular since C++20)
  }
}

template <typename Fn>
bool DispatchStorage(DataType t, Fn&& fn) {
  switch (t) {
    case DataType::kFloat16:
      fn(Half{});
      return true;
    case DataType::kBFloat16:
      fn(BFloat{});
      return true;
    case DataType::kFloat64:
      fn(double{});
      return true;
    case DataType::kBool:
      fn(bool{});
      return true;
    default:
      return DispatchNative(t, std::forward<Fn>(fn));
  }
}

class CastKernel final : public Kernel {
 public:
  CastKernel(std::string name, DataType to) : name_(std::move(name)), to_(to) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& in = ctx.in(0);
    if (!IsConvertible(in.dtype())) return TypeMismatch(name_, 0, in);
    if (in.dtype() == to_) {
      ctx.SetOutput(0, in);  // identity: share the buffer
      return OkStatus();
    }
    Tensor& out = ctx.AllocateOutput(0, to_, in.shape());
    ConvertInto(in, out, ctx);
    return OkStatus();
  }

 private:
  std::string name_;
  DataType to_;
};

Status CheckCastTypes(const NodeInfo& node, DataType to) {
  const DataType from = node.input_types[0];
  if (!IsConvertible(from)) {
    return node.Unsupported("cast from " + DataTypeName(from) + " (string and float8 types " +
                            "are not supported)");
  }
  if (!IsConvertible(to)) {
    return node.Unsupported("cast to " + DataTypeName(to) + " (string and float8 types are " +
                            "not supported)");
  }
  return OkStatus();
}

Result<KernelInit> MakeCast(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  if (!node.attrs.Has("to")) return node.Error("attribute 'to' is required");
  const auto to = static_cast<DataType>(node.attrs.GetInt("to", 0));
  // `saturate` (opset 19) only affects float8 targets, which are rejected anyway.
  (void)node.attrs.GetInt("saturate", 1);
  IM_RETURN_IF_ERROR(CheckCastTypes(node, to));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<CastKernel>(node.name, to), {to}};
}

Result<KernelInit> MakeCastLike(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  const DataType to = node.input_types[1];
  (void)node.attrs.GetInt("saturate", 1);
  IM_RETURN_IF_ERROR(CheckCastTypes(node, to));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<CastKernel>(node.name, to), {to}};
}

}  // namespace

bool IsConvertible(DataType t) {
  return t != DataType::kString && t != DataType::kUndefined && IsSupportedStorageType(t);
}

void ConvertInto(const Tensor& in, Tensor& out, KernelContext& ctx) {
  DispatchStorage(in.dtype(), [&](auto from_tag) {
    using From = decltype(from_tag);
    DispatchStorage(out.dtype(), [&](auto to_tag) {
      using To = decltype(to_tag);
      const auto* src = static_cast<const From*>(in.raw_data());
      auto* dst = static_cast<To*>(out.raw_data());
      const int64_t grain = (kIsFloat<To> && !std::is_floating_point_v<To>) ? kGrainHeavy : kGrain;
      ctx.ParallelFor(in.numel(), grain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) dst[i] = Convert<From, To>(src[i]);
      });
    });
  });
}

Tensor ConvertToType(const Tensor& t, DataType to, KernelContext& ctx) {
  if (t.dtype() == to) return t;
  Tensor out = ctx.Scratch(to, t.shape());
  ConvertInto(t, out, ctx);
  return out;
}

Tensor ToFloat32(const Tensor& t, KernelContext& ctx) {
  return ConvertToType(t, DataType::kFloat32, ctx);
}

void RegisterCastKernels(KernelRegistry& r) {
  r.Add("Cast", 6, MakeCast);
  r.Add("CastLike", 15, MakeCastLike);
}

}  // namespace infermesh::runtime::elementwise
