// Index-producing and scan operators along one axis: ArgMax, ArgMin, TopK, CumSum.
// Each views its input as [outer, axis, inner] (inner contiguous).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/math_internal.h"

namespace infermesh::runtime::math {
namespace {

// ---------------------------------------------------------------- ArgMax / ArgMin

template <typename T>
void ArgReduce(const T* x, int64_t* y, const AxisSplit& s, bool is_max, bool last,
               KernelContext& ctx) {
  // "Better" strictly, or also on ties when the last index is wanted.
  auto better = [is_max, last](T v, T best) {
    if (is_max) return last ? v >= best : v > best;
    return last ? v <= best : v < best;
  };
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(s.axis * s.inner, 1));
  ctx.ParallelFor(s.outer, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> best;
    for (int64_t o = begin; o < end; ++o) {
      const T* block = x + o * s.axis * s.inner;
      int64_t* out = y + o * s.inner;
      best.assign(block, block + s.inner);
      std::fill(out, out + s.inner, 0);
      for (int64_t r = 1; r < s.axis; ++r) {
        const T* row = block + r * s.inner;
        for (int64_t j = 0; j < s.inner; ++j) {
          if (better(row[j], best[j])) {
            best[j] = row[j];
            out[j] = r;
          }
        }
      }
    }
  });
}

class ArgKernel final : public Kernel {
 public:
  ArgKernel(std::string name, bool is_max, int64_t axis, bool keepdims, bool last)
      : name_(std::move(name)), is_max_(is_max), axis_(axis), keepdims_(keepdims), last_(last) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const int64_t rank = static_cast<int64_t>(x.rank());
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, std::max<int64_t>(rank, 1), name_));
    if (rank == 0) {
      ctx.AllocateOutput(0, DataType::kInt64, {}).data<int64_t>()[0] = 0;
      return OkStatus();
    }
    const AxisSplit s = SplitAt(x.shape(), axis);
    Shape out_shape = x.shape();
    if (keepdims_) {
      out_shape[axis] = 1;
    } else {
      out_shape.erase(out_shape.begin() + axis);
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kInt64, out_shape);
    if (y.numel() == 0) return OkStatus();
    if (s.axis == 0) {
      return InvalidArgument("node '" + name_ + "': cannot take the arg of an empty axis");
    }
    switch (x.dtype()) {
      case DataType::kFloat32:
        ArgReduce(x.data<float>(), y.data<int64_t>(), s, is_max_, last_, ctx);
        break;
      case DataType::kInt32:
        ArgReduce(x.data<int32_t>(), y.data<int64_t>(), s, is_max_, last_, ctx);
        break;
      case DataType::kInt64:
        ArgReduce(x.data<int64_t>(), y.data<int64_t>(), s, is_max_, last_, ctx);
        break;
      default:
        return Internal("node '" + name_ + "': unexpected data type");
    }
    return OkStatus();
  }

 private:
  std::string name_;
  bool is_max_;
  int64_t axis_;
  bool keepdims_, last_;
};

KernelFactory MakeArgFactory(bool is_max) {
  return [is_max](const NodeInfo& node) -> Result<KernelInit> {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
    IM_RETURN_IF_ERROR(
        node.RequireType(0, {DataType::kFloat32, DataType::kInt32, DataType::kInt64}));
    const int64_t axis = node.attrs.GetInt("axis", 0);
    const bool keepdims = node.attrs.GetInt("keepdims", 1) != 0;
    const bool last = node.attrs.GetInt("select_last_index", 0) != 0;
    IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
    return KernelInit{std::make_unique<ArgKernel>(node.name, is_max, axis, keepdims, last),
                      {DataType::kInt64}};
  };
}

// ---------------------------------------------------------------- CumSum

template <typename T>
void CumSumImpl(const T* x, T* y, const AxisSplit& s, bool exclusive, bool reverse,
                KernelContext& ctx) {
  // Accumulate in double for floats (long prefix sums drift in float32).
  using A = std::conditional_t<std::is_floating_point_v<T>, double, T>;
  ctx.ParallelFor(s.outer, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> acc;
    for (int64_t o = begin; o < end; ++o) {
      const T* xb = x + o * s.axis * s.inner;
      T* yb = y + o * s.axis * s.inner;
      acc.assign(static_cast<size_t>(s.inner), A{0});
      for (int64_t step = 0; step < s.axis; ++step) {
        const int64_t r = reverse ? s.axis - 1 - step : step;
        const T* xr = xb + r * s.inner;
        T* yr = yb + r * s.inner;
        for (int64_t j = 0; j < s.inner; ++j) {
          if (exclusive) {
            yr[j] = static_cast<T>(acc[j]);
            acc[j] += xr[j];
          } else {
            acc[j] += xr[j];
            yr[j] = static_cast<T>(acc[j]);
          }
        }
      }
    }
  });
}

class CumSumKernel final : public Kernel {
 public:
  CumSumKernel(std::string name, bool exclusive, bool reverse)
      : name_(std::move(name)), exclusive_(exclusive), reverse_(reverse) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const Tensor& axis_t = ctx.in(1);
    if (axis_t.numel() != 1) {
      return InvalidArgument("node '" + name_ + "': axis must hold one value, got " +
                             ShapeToString(axis_t.shape()));
    }
    const int64_t rank = static_cast<int64_t>(x.rank());
    if (rank == 0) return InvalidArgument("node '" + name_ + "': input must have rank >= 1");
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_t.GetAsInt64(0), rank, name_));
    Tensor& y = ctx.AllocateOutput(0, x.dtype(), x.shape());
    if (y.numel() == 0) return OkStatus();
    const AxisSplit s = SplitAt(x.shape(), axis);
    switch (x.dtype()) {
      case DataType::kFloat32:
        CumSumImpl(x.data<float>(), y.data<float>(), s, exclusive_, reverse_, ctx);
        break;
      case DataType::kInt32:
        CumSumImpl(x.data<int32_t>(), y.data<int32_t>(), s, exclusive_, reverse_, ctx);
        break;
      case DataType::kInt64:
        CumSumImpl(x.data<int64_t>(), y.data<int64_t>(), s, exclusive_, reverse_, ctx);
        break;
      default:
        return Internal("node '" + name_ + "': unexpected data type");
    }
    return OkStatus();
  }

 private:
  std::string name_;
  bool exclusive_, reverse_;
};

Result<KernelInit> MakeCumSum(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32, DataType::kInt32, DataType::kInt64}));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt32, DataType::kInt64}));
  const bool exclusive = node.attrs.GetInt("exclusive", 0) != 0;
  const bool reverse = node.attrs.GetInt("reverse", 0) != 0;
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<CumSumKernel>(node.name, exclusive, reverse),
                    {node.input_types[0]}};
}

// ---------------------------------------------------------------- TopK

template <typename T>
void TopKImpl(const T* x, T* values, int64_t* indices, const AxisSplit& s, int64_t k, bool largest,
              KernelContext& ctx) {
  // Ties keep the lower index first, as the ONNX spec requires.
  auto before = [largest, x](int64_t base, int64_t stride) {
    return [=](int64_t a, int64_t b) {
      const T va = x[base + a * stride], vb = x[base + b * stride];
      if (va != vb) return largest ? va > vb : va < vb;
      return a < b;
    };
  };
  ctx.ParallelFor(s.outer * s.inner, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> order(static_cast<size_t>(s.axis));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t o = t / s.inner, j = t % s.inner;
      const int64_t base = o * s.axis * s.inner + j;
      for (int64_t i = 0; i < s.axis; ++i) order[i] = i;
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before(base, s.inner));
      const int64_t out_base = o * k * s.inner + j;
      for (int64_t i = 0; i < k; ++i) {
        values[out_base + i * s.inner] = x[base + order[i] * s.inner];
        indices[out_base + i * s.inner] = order[i];
      }
    }
  });
}

class TopKKernel final : public Kernel {
 public:
  TopKKernel(std::string name, int64_t axis, bool largest, int64_t k_attr)
      : name_(std::move(name)), axis_(axis), largest_(largest), k_attr_(k_attr) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    int64_t k = k_attr_;
    if (k < 0) {
      const Tensor& kt = ctx.in(1);
      if (kt.numel() != 1) {
        return InvalidArgument("node '" + name_ + "': K must hold one value, got " +
                               ShapeToString(kt.shape()));
      }
      k = kt.GetAsInt64(0);
    }
    const int64_t rank = static_cast<int64_t>(x.rank());
    if (rank == 0) return InvalidArgument("node '" + name_ + "': input must have rank >= 1");
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, rank, name_));
    if (k < 0 || k > x.dim(axis)) {
      return InvalidArgument("node '" + name_ + "': K=" + std::to_string(k) +
                             " is out of range for axis of size " + std::to_string(x.dim(axis)));
    }
    Shape out_shape = x.shape();
    out_shape[axis] = k;
    Tensor& values = ctx.AllocateOutput(0, x.dtype(), out_shape);
    // Indices are computed even when the node does not ask for them.
    Tensor scratch;
    Tensor& indices = ctx.num_outputs() > 1 ? ctx.AllocateOutput(1, DataType::kInt64, out_shape)
                                            : (scratch = ctx.Scratch(DataType::kInt64, out_shape));
    if (values.numel() == 0) return OkStatus();
    const AxisSplit s = SplitAt(x.shape(), axis);
    switch (x.dtype()) {
      case DataType::kFloat32:
        TopKImpl(x.data<float>(), values.data<float>(), indices.data<int64_t>(), s, k, largest_,
                 ctx);
        break;
      case DataType::kInt32:
        TopKImpl(x.data<int32_t>(), values.data<int32_t>(), indices.data<int64_t>(), s, k, largest_,
                 ctx);
        break;
      case DataType::kInt64:
        TopKImpl(x.data<int64_t>(), values.data<int64_t>(), indices.data<int64_t>(), s, k, largest_,
                 ctx);
        break;
      default:
        return Internal("node '" + name_ + "': unexpected data type");
    }
    return OkStatus();
  }

 private:
  std::string name_;
  int64_t axis_;
  bool largest_;
  int64_t k_attr_;  // -1: K comes from input 1
};

KernelFactory MakeTopKFactory(int since) {
  return [since](const NodeInfo& node) -> Result<KernelInit> {
    IM_RETURN_IF_ERROR(node.RequireInputCount(since >= 10 ? 2 : 1, since >= 10 ? 2 : 1));
    IM_RETURN_IF_ERROR(
        node.RequireType(0, {DataType::kFloat32, DataType::kInt32, DataType::kInt64}));
    IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
    const int64_t axis = node.attrs.GetInt("axis", -1);
    int64_t k = -1;
    if (since < 10) {
      if (!node.attrs.Has("k")) return node.Error("attribute k is required");
      k = node.attrs.GetInt("k", 0);
    }
    bool largest = true;
    if (since >= 11) {
      largest = node.attrs.GetInt("largest", 1) != 0;
      // Results are always sorted; with sorted=0 any order is allowed.
      (void)node.attrs.GetInt("sorted", 1);
    }
    IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
    return KernelInit{std::make_unique<TopKKernel>(node.name, axis, largest, k),
                      {node.input_types[0], DataType::kInt64}};
  };
}

}  // namespace

void RegisterIndexKernels(KernelRegistry& r) {
  // Opset 11 allowed negative axes and 12 added select_last_index: both accepted throughout.
  r.Add("ArgMax", 1, MakeArgFactory(/*is_max=*/true));
  r.Add("ArgMin", 1, MakeArgFactory(/*is_max=*/false));
  r.Add("CumSum", 11, MakeCumSum);
  r.Add("TopK", 1, MakeTopKFactory(1));
  r.Add("TopK", 10, MakeTopKFactory(10));
  r.Add("TopK", 11, MakeTopKFactory(11));
}

}  // namespace infermesh::runtime::math
