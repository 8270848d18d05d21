// Normalizations of the CNN family: BatchNormalization (inference only),
// InstanceNormalization and LRN. All work on [N, C, spatial...] float32 tensors
// with the channel at dim 1.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/conv_internal.h"

namespace infermesh::runtime::conv_internal {
namespace {

// Checks that `t` is a 1-D tensor of `c` elements.
Status CheckChannelVector(const std::string& name, const char* op, const Tensor& t,
                          const char* what, int64_t c) {
  if (t.rank() != 1 || t.dim(0) != c) {
    return RunError(name, op,
                    std::string(what) + " shape " + ShapeToString(t.shape()) + " must be [" +
                        std::to_string(c) + "]");
  }
  return OkStatus();
}

// y = x * a[c] + b[c] over [N, C, plane].
void ChannelAffine(KernelContext& ctx, const float* x, const std::vector<float>& a,
                   const std::vector<float>& b, int64_t n, int64_t c, int64_t plane, float* y) {
  ctx.ParallelFor(n * c, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plane)),
                  [&](int64_t begin, int64_t end) {
                    for (int64_t p = begin; p < end; ++p) {
                      const float ai = a[p % c], bi = b[p % c];
                      const float* s = x + p * plane;
                      float* d = y + p * plane;
                      for (int64_t j = 0; j < plane; ++j) d[j] = s[j] * ai + bi;
                    }
                  });
}

class BatchNormKernel final : public Kernel {
 public:
  BatchNormKernel(std::string name, float epsilon) : name_(std::move(name)), epsilon_(epsilon) {}

  Status Run(KernelContext& ctx) const override {
    static constexpr const char* kOp = "BatchNormalization";
    const Tensor& x = ctx.in(0);
    if (x.rank() < 2) {
      return RunError(name_, kOp, "input rank must be >= 2, got " + ShapeToString(x.shape()));
    }
    const int64_t n = x.dim(0), c = x.dim(1);
    static const char* const kNames[] = {"", "scale", "B", "input_mean", "input_var"};
    for (size_t i = 1; i <= 4; ++i) {
      IM_RETURN_IF_ERROR(CheckChannelVector(name_, kOp, ctx.in(i), kNames[i], c));
    }
    const float* scale = ctx.in(1).data<float>();
    const float* bias = ctx.in(2).data<float>();
    const float* mean = ctx.in(3).data<float>();
    const float* var = ctx.in(4).data<float>();
    std::vector<float> a(c), b(c);
    for (int64_t i = 0; i < c; ++i) {
      a[i] = scale[i] / std::sqrt(var[i] + epsilon_);
      b[i] = bias[i] - mean[i] * a[i];
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, x.shape());
    if (y.numel() == 0) return OkStatus();
    const int64_t plane = x.numel() / (n * c);
    ChannelAffine(ctx, x.data<float>(), a, b, n, c, plane, y.data<float>());
    return OkStatus();
  }

 private:
  std::string name_;
  float epsilon_;
};

Result<KernelInit> MakeBatchNorm(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(5, 5));
  for (size_t i = 0; i < 5; ++i) IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32}));
  const float epsilon = node.attrs.GetFloat("epsilon", 1e-5f);
  if (!(epsilon >= 0)) return node.Error("epsilon must be non-negative");
  // momentum only matters when training; it is accepted and ignored.
  (void)node.attrs.GetFloat("momentum", 0.9f);
  bool training = node.num_outputs > 1;
  if (node.opset >= 14) {
    const int64_t mode = node.attrs.GetInt("training_mode", 0);
    if (mode != 0 && mode != 1) return node.Error("training_mode must be 0 or 1");
    training = training || mode == 1;
  } else if (node.opset < 9) {
    // Opsets 6-8: is_test (6 only) and spatial.
    if (node.opset < 7 && node.attrs.GetInt("is_test", 0) == 0 && node.num_outputs > 1) {
      training = true;
    }
    if (node.attrs.GetInt("spatial", 1) != 1) {
      return node.Unsupported("spatial=0 (per-activation statistics)");
    }
  }
  if (training) return node.Unsupported("training mode (running statistics outputs)");
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<BatchNormKernel>(node.name, epsilon), {DataType::kFloat32}};
}

class InstanceNormKernel final : public Kernel {
 public:
  InstanceNormKernel(std::string name, float epsilon) : name_(std::move(name)), epsilon_(epsilon) {}

  Status Run(KernelContext& ctx) const override {
    static constexpr const char* kOp = "InstanceNormalization";
    const Tensor& x = ctx.in(0);
    if (x.rank() < 3) {
      return RunError(name_, kOp, "input rank must be >= 3, got " + ShapeToString(x.shape()));
    }
    const int64_t n = x.dim(0), c = x.dim(1);
    IM_RETURN_IF_ERROR(CheckChannelVector(name_, kOp, ctx.in(1), "scale", c));
    IM_RETURN_IF_ERROR(CheckChannelVector(name_, kOp, ctx.in(2), "B", c));
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, x.shape());
    if (y.numel() == 0) return OkStatus();
    const int64_t plane = x.numel() / (n * c);
    const float* xd = x.data<float>();
    const float* scale = ctx.in(1).data<float>();
    const float* bias = ctx.in(2).data<float>();
    float* yd = y.data<float>();
    ctx.ParallelFor(n * c, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plane)),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t p = begin; p < end; ++p) {
                        const float* s = xd + p * plane;
                        double sum = 0;
                        for (int64_t j = 0; j < plane; ++j) sum += s[j];
                        const double mean = sum / static_cast<double>(plane);
                        double sq = 0;
                        for (int64_t j = 0; j < plane; ++j) {
                          const double d = s[j] - mean;
                          sq += d * d;
                        }
                        const double var = sq / static_cast<double>(plane);
                        const float a =
                            static_cast<float>(scale[p % c] / std::sqrt(var + epsilon_));
                        const float b = static_cast<float>(bias[p % c] - mean * a);
                        float* d = yd + p * plane;
                        for (int64_t j = 0; j < plane; ++j) d[j] = s[j] * a + b;
                      }
                    });
    return OkStatus();
  }

 private:
  std::string name_;
  float epsilon_;
};

Result<KernelInit> MakeInstanceNorm(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(3, 3));
  for (size_t i = 0; i < 3; ++i) IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32}));
  const float epsilon = node.attrs.GetFloat("epsilon", 1e-5f);
  if (!(epsilon >= 0)) return node.Error("epsilon must be non-negative");
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<InstanceNormKernel>(node.name, epsilon), {DataType::kFloat32}};
}

// LRN: y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta,
// the window being [c - floor((size-1)/2), c + ceil((size-1)/2)].
class LrnKernel final : public Kernel {
 public:
  LrnKernel(std::string name, float alpha, float beta, float bias, int64_t size)
      : name_(std::move(name)), alpha_(alpha), beta_(beta), bias_(bias), size_(size) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.rank() < 2) {
      return RunError(name_, "LRN", "input rank must be >= 2, got " + ShapeToString(x.shape()));
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, x.shape());
    if (y.numel() == 0) return OkStatus();
    const int64_t n = x.dim(0), c = x.dim(1);
    const int64_t plane = x.numel() / (n * c);
    const int64_t before = (size_ - 1) / 2, after = size_ - 1 - before;
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    const float scale = alpha_ / static_cast<float>(size_);
    ctx.ParallelFor(n * c, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, plane)),
                    [&](int64_t begin, int64_t end) {
                      std::vector<float> sum(static_cast<size_t>(plane));
                      for (int64_t p = begin; p < end; ++p) {
                        const int64_t ni = p / c, ci = p % c;
                        std::fill(sum.begin(), sum.end(), 0.0f);
                        const int64_t lo = std::max<int64_t>(0, ci - before);
                        const int64_t hi = std::min<int64_t>(c - 1, ci + after);
                        for (int64_t k = lo; k <= hi; ++k) {
                          const float* s = xd + (ni * c + k) * plane;
                          for (int64_t j = 0; j < plane; ++j) sum[j] += s[j] * s[j];
                        }
                        const float* s = xd + p * plane;
                        float* d = yd + p * plane;
                        for (int64_t j = 0; j < plane; ++j) {
                          d[j] = s[j] / std::pow(bias_ + scale * sum[j], beta_);
                        }
                      }
                    });
    return OkStatus();
  }

 private:
  std::string name_;
  float alpha_, beta_, bias_;
  int64_t size_;
};

Result<KernelInit> MakeLrn(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
  const float alpha = node.attrs.GetFloat("alpha", 1e-4f);
  const float beta = node.attrs.GetFloat("beta", 0.75f);
  const float bias = node.attrs.GetFloat("bias", 1.0f);
  if (!node.attrs.Has("size")) return node.Error("attribute 'size' is required");
  const int64_t size = node.attrs.GetInt("size", 1);
  if (size < 1) return node.Error("size must be >= 1");
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<LrnKernel>(node.name, alpha, beta, bias, size),
                    {DataType::kFloat32}};
}

}  // namespace

void RegisterNormOps(KernelRegistry& r) {
  // Opset 6 dropped consumed_inputs; 9 dropped spatial; 14 added training_mode;
  // 15 only widened types. One factory reads the attributes of each version.
  r.Add("BatchNormalization", 6, MakeBatchNorm);
  r.Add("InstanceNormalization", 6, MakeInstanceNorm);
  r.Add("LRN", 1, MakeLrn);
}

}  // namespace infermesh::runtime::conv_internal
