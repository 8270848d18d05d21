// Activation functions: Relu, Sigmoid, Tanh, LeakyRelu, Elu, Selu, Celu, HardSigmoid,
// HardSwish, Softplus, Softsign, ThresholdedRelu, Mish, Gelu and PRelu (with its
// broadcast slope).
#include <algorithm>
#include <cmath>

#include "runtime/ops/elementwise_fast_math.h"
#include "runtime/ops/elementwise_internal.h"

namespace infermesh::runtime::elementwise {
namespace {

inline float Softplus(float x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

struct ReluFn {
  template <typename T>
  T operator()(T x) const {
    return x > T(0) ? x : T(0);
  }
};

Result<KernelInit> MakeRelu(const NodeInfo& node) {
  return MakeUnaryNumeric(node, ReluFn{},
                          {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16,
                           DataType::kInt8, DataType::kInt16, DataType::kInt32, DataType::kInt64});
}

Result<KernelInit> MakeSigmoid(const NodeInfo& node) {
  return MakeUnaryFloat(node, [](float x) { return FastSigmoid(x); });
}

Result<KernelInit> MakeTanh(const NodeInfo& node) {
  return MakeUnaryFloat(node, [](float x) { return FastTanh(x); });
}

Result<KernelInit> MakeLeakyRelu(const NodeInfo& node) {
  const float alpha = node.attrs.GetFloat("alpha", 0.01f);
  return MakeUnaryFloat(
      node, [alpha](float x) { return x < 0 ? alpha * x : x; }, kGrain);
}

Result<KernelInit> MakeElu(const NodeInfo& node) {
  const float alpha = node.attrs.GetFloat("alpha", 1.0f);
  return MakeUnaryFloat(node, [alpha](float x) { return x < 0 ? alpha * std::expm1(x) : x; });
}

Result<KernelInit> MakeSelu(const NodeInfo& node) {
  const float alpha = node.attrs.GetFloat("alpha", 1.67326319217681884765625f);
  const float gamma = node.attrs.GetFloat("gamma", 1.05070102214050292968750f);
  return MakeUnaryFloat(node, [alpha, gamma](float x) {
    return x > 0 ? gamma * x : gamma * (alpha * std::exp(x) - alpha);
  });
}

Result<KernelInit> MakeCelu(const NodeInfo& node) {
  const float alpha = node.attrs.GetFloat("alpha", 1.0f);
  if (alpha == 0.0f) return node.Error("attribute 'alpha' must not be 0");
  return MakeUnaryFloat(node, [alpha](float x) {
    return std::max(0.0f, x) + std::min(0.0f, alpha * std::expm1(x / alpha));
  });
}

Result<KernelInit> MakeHardSigmoid(const NodeInfo& node) {
  const float alpha = node.attrs.GetFloat("alpha", 0.2f);
  const float beta = node.attrs.GetFloat("beta", 0.5f);
  return MakeUnaryFloat(
      node, [alpha, beta](float x) { return std::max(0.0f, std::min(1.0f, alpha * x + beta)); },
      kGrain);
}

Result<KernelInit> MakeHardSwish(const NodeInfo& node) {
  return MakeUnaryFloat(
      node, [](float x) { return x * std::max(0.0f, std::min(1.0f, x * (1.0f / 6.0f) + 0.5f)); },
      kGrain);
}

Result<KernelInit> MakeSoftplus(const NodeInfo& node) {
  return MakeUnaryFloat(node, [](float x) { return Softplus(x); });
}

Result<KernelInit> MakeSoftsign(const NodeInfo& node) {
  return MakeUnaryFloat(
      node, [](float x) { return x / (1.0f + std::fabs(x)); }, kGrain);
}

Result<KernelInit> MakeThresholdedRelu(const NodeInfo& node) {
  const float alpha = node.attrs.GetFloat("alpha", 1.0f);
  return MakeUnaryFloat(
      node, [alpha](float x) { return x > alpha ? x : 0.0f; }, kGrain);
}

Result<KernelInit> MakeMish(const NodeInfo& node) {
  return MakeUnaryFloat(node, [](float x) { return x * std::tanh(Softplus(x)); });
}

Result<KernelInit> MakeGelu(const NodeInfo& node) {
  const std::string approximate = node.attrs.GetString("approximate", "none");
  if (approximate == "none") {
    return MakeUnaryFloat(node, [](float x) {
      return 0.5f * x * (1.0f + FastErf(x * static_cast<float>(M_SQRT1_2)));
    });
  }
  if (approximate == "tanh") {
    return MakeUnaryFloat(node, [](float x) {
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      return 0.5f * x * (1.0f + FastTanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
    });
  }
  return node.Error("attribute 'approximate' must be \"none\" or \"tanh\", got \"" + approximate +
                    "\"");
}

// PRelu: y = x < 0 ? slope * x : x, slope unidirectionally broadcast to x.
class PReluKernel final : public Kernel {
 public:
  explicit PReluKernel(std::string name) : name_(std::move(name)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const Tensor& slope = ctx.in(1);
    if (slope.dtype() != x.dtype()) return TypeMismatch(name_, 1, slope);
    if (!IsUnidirectionallyBroadcastable(slope.shape(), x.shape())) {
      return InvalidArgument("node '" + name_ + "': slope shape " + ShapeToString(slope.shape()) +
                             " does not broadcast to input shape " + ShapeToString(x.shape()));
    }
    BroadcastPlan plan({&x.shape(), &slope.shape()}, x.shape());
    Tensor& out = ctx.AllocateOutput(0, x.dtype(), x.shape());
    auto prelu = [](auto v, auto s) { return v < 0 ? static_cast<decltype(v)>(s * v) : v; };
    if (IsHalf(x.dtype())) {
      Tensor xf = ToFloat32(x, ctx);
      Tensor sf = ToFloat32(slope, ctx);
      BinaryLoop(ctx, plan, xf.data<float>(), sf.data<float>(), xf.data<float>(), kGrain, prelu);
      ConvertInto(xf, out, ctx);
      return OkStatus();
    }
    bool ok = false;
    if (x.dtype() == DataType::kFloat32) {
      BinaryLoop(ctx, plan, x.data<float>(), slope.data<float>(), out.data<float>(), kGrain, prelu);
      ok = true;
    } else if (x.dtype() == DataType::kInt32) {
      BinaryLoop(
          ctx, plan, x.data<int32_t>(), slope.data<int32_t>(), out.data<int32_t>(), kGrain,
          [](int32_t v, int32_t s) {
            return v < 0 ? static_cast<int32_t>(static_cast<uint32_t>(s) * static_cast<uint32_t>(v))
                         : v;
          });
      ok = true;
    } else if (x.dtype() == DataType::kInt64) {
      BinaryLoop(
          ctx, plan, x.data<int64_t>(), slope.data<int64_t>(), out.data<int64_t>(), kGrain,
          [](int64_t v, int64_t s) {
            return v < 0 ? static_cast<int64_t>(static_cast<uint64_t>(s) * static_cast<uint64_t>(v))
                         : v;
          });
      ok = true;
    }
    return ok ? OkStatus() : TypeMismatch(name_, 0, x);
  }

 private:
  std::string name_;
};

Result<KernelInit> MakePRelu(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(
      node.RequireType(0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16,
                           DataType::kInt32, DataType::kInt64}));
  if (node.input_types[1] != node.input_types[0]) {
    return node.Error("slope type " + DataTypeName(node.input_types[1]) +
                      " differs from input type " + DataTypeName(node.input_types[0]));
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<PReluKernel>(node.name), {node.input_types[0]}};
}

}  // namespace

void RegisterActivationKernels(KernelRegistry& r) {
  r.Add("Relu", 6, MakeRelu);
  r.Add("Sigmoid", 6, MakeSigmoid);
  r.Add("Tanh", 6, MakeTanh);
  r.Add("LeakyRelu", 6, MakeLeakyRelu);
  r.Add("Elu", 6, MakeElu);
  r.Add("Selu", 6, MakeSelu);
  r.Add("Celu", 12, MakeCelu);
  r.Add("HardSigmoid", 6, MakeHardSigmoid);
  r.Add("HardSwish", 14, MakeHardSwish);
  r.Add("Softplus", 1, MakeSoftplus);
  r.Add("Softsign", 1, MakeSoftsign);
  r.Add("ThresholdedRelu", 10, MakeThresholdedRelu);
  r.Add("Mish", 18, MakeMish);
  r.Add("Gelu", 20, MakeGelu);
  r.Add("PRelu", 7, MakePRelu);
}

}  // namespace infermesh::runtime::elementwise
