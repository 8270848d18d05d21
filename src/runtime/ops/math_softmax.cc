// Softmax, LogSoftmax and Hardmax. Before opset 13 they flatten the input to 2-D
// at `axis` (default 1) and work on whole rows; from opset 13 they work along the
// single axis `axis` (default -1). Both become an [outer, axis, inner] view: the
// old semantics is the new one with inner = 1 and axis = prod(shape[axis:]).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/math_internal.h"

namespace infermesh::runtime::math {
namespace {

enum class SoftmaxMode { kSoftmax, kLogSoftmax, kHardmax };

// One contiguous row of length n (the inner == 1 case).
void SoftmaxRow(SoftmaxMode mode, const float* x, float* y, int64_t n) {
  if (mode == SoftmaxMode::kHardmax) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i) {
      if (x[i] > x[best]) best = i;
    }
    std::fill(y, y + n, 0.0f);
    y[best] = 1.0f;
    return;
  }
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0.0;
  if (mode == SoftmaxMode::kSoftmax) {
    for (int64_t i = 0; i < n; ++i) {
      const float e = std::exp(x[i] - max);
      y[i] = e;
      sum += e;
    }
    const float scale = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= scale;
  } else {
    for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i] - max));
    const float shift = max + static_cast<float>(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - shift;
  }
}

// One [axis, inner] block, reducing down the columns; rows stay contiguous.
void SoftmaxBlock(SoftmaxMode mode, const float* x, float* y, int64_t n, int64_t inner,
                  std::vector<float>& max, std::vector<double>& sum) {
  max.assign(static_cast<size_t>(inner), -std::numeric_limits<float>::infinity());
  if (mode == SoftmaxMode::kHardmax) {
    // `sum` holds the row index of the first maximum of each column.
    sum.assign(static_cast<size_t>(inner), 0.0);
    for (int64_t r = 0; r < n; ++r) {
      const float* row = x + r * inner;
      for (int64_t j = 0; j < inner; ++j) {
        if (r == 0 || row[j] > max[j]) {
          max[j] = row[j];
          sum[j] = static_cast<double>(r);
        }
      }
    }
    for (int64_t r = 0; r < n; ++r) {
      float* row = y + r * inner;
      for (int64_t j = 0; j < inner; ++j) row[j] = static_cast<int64_t>(sum[j]) == r ? 1.0f : 0.0f;
    }
    return;
  }
  for (int64_t r = 0; r < n; ++r) {
    const float* row = x + r * inner;
    for (int64_t j = 0; j < inner; ++j) max[j] = std::max(max[j], row[j]);
  }
  sum.assign(static_cast<size_t>(inner), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const float* row = x + r * inner;
    float* out = y + r * inner;
    for (int64_t j = 0; j < inner; ++j) {
      const float e = std::exp(row[j] - max[j]);
      if (mode == SoftmaxMode::kSoftmax) out[j] = e;
      sum[j] += e;
    }
  }
  if (mode == SoftmaxMode::kSoftmax) {
    for (int64_t j = 0; j < inner; ++j) sum[j] = 1.0 / sum[j];
    for (int64_t r = 0; r < n; ++r) {
      float* out = y + r * inner;
      for (int64_t j = 0; j < inner; ++j) out[j] *= static_cast<float>(sum[j]);
    }
  } else {
    for (int64_t j = 0; j < inner; ++j) max[j] += static_cast<float>(std::log(sum[j]));
    for (int64_t r = 0; r < n; ++r) {
      const float* row = x + r * inner;
      float* out = y + r * inner;
      for (int64_t j = 0; j < inner; ++j) out[j] = row[j] - max[j];
    }
  }
}

class SoftmaxKernel final : public Kernel {
 public:
  SoftmaxKernel(std::string name, SoftmaxMode mode, int64_t axis, bool flatten)
      : name_(std::move(name)), mode_(mode), axis_(axis), flatten_(flatten) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const int64_t rank = static_cast<int64_t>(x.rank());
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, x.shape());
    if (rank == 0) {
      // A scalar is one row of one element (a rank-0 input is not valid ONNX, but harmless).
      SoftmaxRow(mode_, x.data<float>(), y.data<float>(), 1);
      return OkStatus();
    }
    AxisSplit s;
    if (flatten_) {
      // Coerced to 2-D [prod(shape[:axis]), prod(shape[axis:])]; axis may equal rank.
      const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
      if (axis < 0 || axis > rank) {
        return InvalidArgument("node '" + name_ + "': axis " + std::to_string(axis_) +
                               " is out of range for rank " + std::to_string(rank));
      }
      s = {DimProduct(x.shape(), 0, static_cast<size_t>(axis)),
           DimProduct(x.shape(), static_cast<size_t>(axis), x.rank()), 1};
    } else {
      IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, rank, name_));
      s = SplitAt(x.shape(), axis);
    }
    if (x.numel() == 0) return OkStatus();
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    const int64_t block = s.axis * s.inner;
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(block, 1));
    ctx.ParallelFor(s.outer, grain, [&](int64_t begin, int64_t end) {
      std::vector<float> max;
      std::vector<double> sum;
      for (int64_t o = begin; o < end; ++o) {
        if (s.inner == 1) {
          SoftmaxRow(mode_, xd + o * block, yd + o * block, s.axis);
        } else {
          SoftmaxBlock(mode_, xd + o * block, yd + o * block, s.axis, s.inner, max, sum);
        }
      }
    });
    return OkStatus();
  }

 private:
  std::string name_;
  SoftmaxMode mode_;
  int64_t axis_;
  bool flatten_;
};

KernelFactory MakeSoftmaxFactory(SoftmaxMode mode, bool flatten) {
  return [mode, flatten](const NodeInfo& node) -> Result<KernelInit> {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
    IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
    const int64_t axis = node.attrs.GetInt("axis", flatten ? 1 : -1);
    IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
    return KernelInit{std::make_unique<SoftmaxKernel>(node.name, mode, axis, flatten),
                      {DataType::kFloat32}};
  };
}

}  // namespace

void RegisterSoftmaxKernels(KernelRegistry& r) {
  const std::pair<const char*, SoftmaxMode> ops[] = {{"Softmax", SoftmaxMode::kSoftmax},
                                                     {"LogSoftmax", SoftmaxMode::kLogSoftmax},
                                                     {"Hardmax", SoftmaxMode::kHardmax}};
  for (const auto& [op, mode] : ops) {
    r.Add(op, 1, MakeSoftmaxFactory(mode, /*flatten=*/true));
    r.Add(op, 13, MakeSoftmaxFactory(mode, /*flatten=*/false));
  }
}

}  // namespace infermesh::runtime::math
