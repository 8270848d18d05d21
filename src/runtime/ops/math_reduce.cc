// Reduce* operators. Axes come from the `axes` attribute up to opset 12 (ReduceSum)
// or 17 (the others), and from an optional second input afterwards, together with
// `noop_with_empty_axes`. Floating-point reductions accumulate in double, integer
// ones in int64, so sums over long rows (LayerNorm-like statistics, mean pooling)
// keep full float32 precision.
//
// After dropping size-1 dimensions and merging neighbours that are both reduced or
// both kept, a reduction has one of two shapes, both with contiguous inner loops:
//   inner dimension reduced: each output element folds contiguous runs;
//   inner dimension kept:    each output row accumulates whole contiguous rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/math_internal.h"

namespace infermesh::runtime::math {
namespace {

enum class ReduceKind { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

template <typename T>
using AccOf = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// Per-kind accumulation. `pre` is the per-output maximum (LogSumExp only).
template <ReduceKind K, typename T>
struct ReduceOp {
  using A = AccOf<T>;
  static A Init() {
    if constexpr (K == ReduceKind::kProd) return A{1};
    if constexpr (K == ReduceKind::kMax) {
      return std::is_floating_point_v<T> ? A(-std::numeric_limits<double>::infinity())
                                         : A(std::numeric_limits<T>::lowest());
    }
    if constexpr (K == ReduceKind::kMin) {
      return std::is_floating_point_v<T> ? A(std::numeric_limits<double>::infinity())
                                         : A(std::numeric_limits<T>::max());
    }
    return A{0};
  }
  static A Step(A a, T x, A pre) {
    const A v = static_cast<A>(x);
    if constexpr (K == ReduceKind::kMax) return v > a || v != v ? v : a;  // NaN propagates
    if constexpr (K == ReduceKind::kMin) return v < a || v != v ? v : a;
    if constexpr (K == ReduceKind::kProd) return a * v;
    if constexpr (K == ReduceKind::kL1) return a + (v < 0 ? -v : v);
    if constexpr (K == ReduceKind::kL2 || K == ReduceKind::kSumSquare) return a + v * v;
    if constexpr (K == ReduceKind::kLogSumExp) return a + std::exp(v - pre);
    (void)pre;
    return a + v;
  }
  static T Finish(A a, int64_t n, A pre) {
    if constexpr (K == ReduceKind::kMean) {
      if constexpr (std::is_floating_point_v<T>) return static_cast<T>(a / static_cast<A>(n));
      return n == 0 ? T{0} : static_cast<T>(a / n);
    }
    if constexpr (K == ReduceKind::kL2) return static_cast<T>(std::sqrt(static_cast<double>(a)));
    if constexpr (K == ReduceKind::kLogSum) return static_cast<T>(std::log(static_cast<double>(a)));
    if constexpr (K == ReduceKind::kLogSumExp) return static_cast<T>(pre + std::log(a));
    (void)n;
    (void)pre;
    return static_cast<T>(a);
  }
};

// A reduction after merging dimensions: kept and reduced outer dimensions with
// their input strides, and the innermost (contiguous) dimension.
struct ReduceLayout {
  std::vector<int64_t> kept_size, kept_stride;  // outermost first
  std::vector<int64_t> red_size, red_stride;
  int64_t inner = 1;
  bool inner_reduced = true;
  int64_t out_numel = 1;
  int64_t red_count = 1;  // elements folded into each output
};

ReduceLayout PlanLayout(const Shape& shape, const std::vector<bool>& reduced) {
  // Merge (dropping size-1 dims, which change nothing).
  std::vector<int64_t> size;
  std::vector<bool> red;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!size.empty() && red.back() == reduced[d]) {
      size.back() *= shape[d];
    } else {
      size.push_back(shape[d]);
      red.push_back(reduced[d]);
    }
  }
  ReduceLayout l;
  if (size.empty()) return l;  // one element in, one out
  std::vector<int64_t> stride(size.size(), 1);
  for (size_t d = size.size() - 1; d-- > 0;) stride[d] = stride[d + 1] * size[d + 1];
  l.inner = size.back();
  l.inner_reduced = red.back();
  for (size_t d = 0; d + 1 < size.size(); ++d) {
    (red[d] ? l.red_size : l.kept_size).push_back(size[d]);
    (red[d] ? l.red_stride : l.kept_stride).push_back(stride[d]);
  }
  for (int64_t s : l.kept_size) l.out_numel *= s;
  for (int64_t s : l.red_size) l.red_count *= s;
  if (l.inner_reduced) {
    l.red_count *= l.inner;
  } else {
    l.out_numel *= l.inner;
  }
  return l;
}

// Input offset of kept-row `row` (index over kept_size).
int64_t KeptOffset(const ReduceLayout& l, int64_t row) {
  int64_t off = 0;
  for (size_t d = l.kept_size.size(); d-- > 0;) {
    off += (row % l.kept_size[d]) * l.kept_stride[d];
    row /= l.kept_size[d];
  }
  return off;
}

// Calls fn(offset) for every combination of the reduced outer dimensions.
template <typename Fn>
void ForEachReduced(const ReduceLayout& l, int64_t base, Fn&& fn) {
  const size_t r = l.red_size.size();
  for (int64_t s : l.red_size) {
    if (s == 0) return;  // an empty reduction folds nothing
  }
  if (r == 0) {
    fn(base);
    return;
  }
  std::vector<int64_t> idx(r, 0);
  int64_t off = base;
  while (true) {
    fn(off);
    size_t d = r;
    while (d-- > 0) {
      off += l.red_stride[d];
      if (++idx[d] < l.red_size[d]) break;
      off -= idx[d] * l.red_stride[d];
      idx[d] = 0;
    }
    if (d == static_cast<size_t>(-1)) return;
  }
}

// y[o] = fold of x over the reduced positions of output o. `pre` (nullable) is a
// per-output value handed to Step (the maximum, for LogSumExp).
template <ReduceKind K, typename T>
void ReduceInto(const ReduceLayout& l, const T* x, T* y, const AccOf<T>* pre, KernelContext& ctx) {
  using Op = ReduceOp<K, T>;
  using A = AccOf<T>;
  const int64_t work_per_out = std::max<int64_t>(l.red_count, 1);
  if (l.inner_reduced) {
    const int64_t grain = std::max<int64_t>(1, 32768 / work_per_out);
    ctx.ParallelFor(l.out_numel, grain, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        const A p = pre ? pre[o] : A{0};
        A acc = Op::Init();
        ForEachReduced(l, KeptOffset(l, o), [&](int64_t off) {
          const T* run = x + off;
          for (int64_t i = 0; i < l.inner; ++i) acc = Op::Step(acc, run[i], p);
        });
        y[o] = Op::Finish(acc, l.red_count, p);
      }
    });
    return;
  }
  // Inner dimension kept: tasks are (kept row, chunk of the inner dimension).
  constexpr int64_t kChunk = 512;
  const int64_t rows = l.out_numel / l.inner;
  const int64_t chunks = (l.inner + kChunk - 1) / kChunk;
  const int64_t grain = std::max<int64_t>(1, 32768 / (work_per_out * std::min(l.inner, kChunk)));
  ctx.ParallelFor(rows * chunks, grain, [&](int64_t begin, int64_t end) {
    std::vector<A> acc;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t row = t / chunks;
      const int64_t j0 = (t % chunks) * kChunk;
      const int64_t len = std::min(kChunk, l.inner - j0);
      const int64_t out0 = row * l.inner + j0;
      acc.assign(static_cast<size_t>(len), Op::Init());
      ForEachReduced(l, KeptOffset(l, row) + j0, [&](int64_t off) {
        const T* run = x + off;
        for (int64_t j = 0; j < len; ++j)
          acc[j] = Op::Step(acc[j], run[j], pre ? pre[out0 + j] : A{0});
      });
      for (int64_t j = 0; j < len; ++j) {
        y[out0 + j] = Op::Finish(acc[j], l.red_count, pre ? pre[out0 + j] : A{0});
      }
    }
  });
}

template <ReduceKind K, typename T>
void RunReduce(const ReduceLayout& l, const T* x, T* y, KernelContext& ctx) {
  if constexpr (K == ReduceKind::kLogSumExp) {
    // Stable: fold exp(x - max) and add the max back.
    std::vector<T> max(static_cast<size_t>(l.out_numel));
    ReduceInto<ReduceKind::kMax, T>(l, x, max.data(), nullptr, ctx);
    std::vector<AccOf<T>> shift(max.size());
    for (size_t i = 0; i < max.size(); ++i) {
      shift[i] = std::isfinite(static_cast<double>(max[i])) ? max[i] : AccOf<T>{0};
    }
    ReduceInto<K, T>(l, x, y, shift.data(), ctx);
  } else {
    ReduceInto<K, T>(l, x, y, nullptr, ctx);
  }
}

template <typename T>
void DispatchKind(ReduceKind k, const ReduceLayout& l, const T* x, T* y, KernelContext& ctx) {
  switch (k) {
    case ReduceKind::kSum:
      return RunReduce<ReduceKind::kSum>(l, x, y, ctx);
    case ReduceKind::kMean:
      return RunReduce<ReduceKind::kMean>(l, x, y, ctx);
    case ReduceKind::kMax:
      return RunReduce<ReduceKind::kMax>(l, x, y, ctx);
    case ReduceKind::kMin:
      return RunReduce<ReduceKind::kMin>(l, x, y, ctx);
    case ReduceKind::kProd:
      return RunReduce<ReduceKind::kProd>(l, x, y, ctx);
    case ReduceKind::kL1:
      return RunReduce<ReduceKind::kL1>(l, x, y, ctx);
    case ReduceKind::kL2:
      return RunReduce<ReduceKind::kL2>(l, x, y, ctx);
    case ReduceKind::kLogSum:
      return RunReduce<ReduceKind::kLogSum>(l, x, y, ctx);
    case ReduceKind::kLogSumExp:
      return RunReduce<ReduceKind::kLogSumExp>(l, x, y, ctx);
    case ReduceKind::kSumSquare:
      return RunReduce<ReduceKind::kSumSquare>(l, x, y, ctx);
  }
}

class ReduceKernel final : public Kernel {
 public:
  ReduceKernel(std::string name, ReduceKind kind, DataType dtype, bool keepdims, bool noop_empty,
               bool axes_from_input, std::optional<std::vector<int64_t>> axes)
      : name_(std::move(name)),
        kind_(kind),
        dtype_(dtype),
        keepdims_(keepdims),
        noop_empty_(noop_empty),
        axes_from_input_(axes_from_input),
        axes_(std::move(axes)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    std::vector<int64_t> axes;
    if (axes_) {
      axes = *axes_;
    } else if (axes_from_input_ && ctx.input(1) != nullptr) {
      axes = ctx.input(1)->ToInt64Vector();
    }
    if (axes.empty() && noop_empty_) {
      ctx.SetOutput(0, x);
      return OkStatus();
    }
    const int64_t rank = static_cast<int64_t>(x.rank());
    std::vector<bool> reduced(x.rank(), axes.empty());
    for (int64_t a : axes) {
      IM_ASSIGN_OR_RETURN(int64_t d, NormalizeAxis(a, rank, name_));
      if (reduced[d]) {
        return InvalidArgument("node '" + name_ + "': axis " + std::to_string(a) +
                               " appears twice in axes");
      }
      reduced[d] = true;
    }
    Shape out_shape;
    for (size_t d = 0; d < x.rank(); ++d) {
      if (!reduced[d]) {
        out_shape.push_back(x.dim(d));
      } else if (keepdims_) {
        out_shape.push_back(1);
      }
    }
    Tensor& y = ctx.AllocateOutput(0, dtype_, out_shape);
    if (y.numel() == 0) return OkStatus();
    ReduceLayout l = PlanLayout(x.shape(), reduced);
    if (x.numel() == 0) {
      // Reducing an empty set: every output is the fold of nothing (0, 1, -inf, ...).
      l = ReduceLayout{};
      l.out_numel = y.numel();
      l.inner = y.numel();
      l.inner_reduced = false;
      l.red_size = {0};
      l.red_stride = {0};
      l.red_count = 0;
    }
    switch (dtype_) {
      case DataType::kFloat32:
        DispatchKind(kind_, l, x.data<float>(), y.data<float>(), ctx);
        break;
      case DataType::kInt32:
        DispatchKind(kind_, l, x.data<int32_t>(), y.data<int32_t>(), ctx);
        break;
      case DataType::kInt64:
        DispatchKind(kind_, l, x.data<int64_t>(), y.data<int64_t>(), ctx);
        break;
      default:
        return Internal("node '" + name_ + "': unexpected data type");
    }
    return OkStatus();
  }

 private:
  std::string name_;
  ReduceKind kind_;
  DataType dtype_;
  bool keepdims_, noop_empty_, axes_from_input_;
  std::optional<std::vector<int64_t>> axes_;  // known at load time
};

KernelFactory MakeReduceFactory(ReduceKind kind, bool axes_from_input) {
  return [kind, axes_from_input](const NodeInfo& node) -> Result<KernelInit> {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, axes_from_input ? 2 : 1));
    const bool float_only =
        kind == ReduceKind::kL2 || kind == ReduceKind::kLogSum || kind == ReduceKind::kLogSumExp;
    if (float_only) {
      IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
    } else {
      IM_RETURN_IF_ERROR(
          node.RequireType(0, {DataType::kFloat32, DataType::kInt32, DataType::kInt64}));
    }
    IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
    const bool keepdims = node.attrs.GetInt("keepdims", 1) != 0;
    bool noop_empty = false;
    std::optional<std::vector<int64_t>> axes;
    if (axes_from_input) {
      noop_empty = node.attrs.GetInt("noop_with_empty_axes", 0) != 0;
      if (!node.HasInput(1)) {
        axes = std::vector<int64_t>{};
      } else if (node.const_inputs.size() > 1 && node.const_inputs[1]) {
        const Tensor& t = *node.const_inputs[1];
        if (t.rank() > 1) return node.Error("axes must be 1-D");
        axes = t.ToInt64Vector();
      }
    } else {
      axes = node.attrs.GetInts("axes");
    }
    IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
    const DataType t = node.input_types[0];
    return KernelInit{std::make_unique<ReduceKernel>(node.name, kind, t, keepdims, noop_empty,
                                                     axes_from_input, std::move(axes)),
                      {t}};
  };
}

}  // namespace

void RegisterReduceKernels(KernelRegistry& r) {
  const std::pair<const char*, ReduceKind> ops[] = {{"ReduceSum", ReduceKind::kSum},
                                                    {"ReduceMean", ReduceKind::kMean},
                                                    {"ReduceMax", ReduceKind::kMax},
                                                    {"ReduceMin", ReduceKind::kMin},
                                                    {"ReduceProd", ReduceKind::kProd},
                                                    {"ReduceL1", ReduceKind::kL1},
                                                    {"ReduceL2", ReduceKind::kL2},
                                                    {"ReduceLogSum", ReduceKind::kLogSum},
                                                    {"ReduceLogSumExp", ReduceKind::kLogSumExp},
                                                    {"ReduceSumSquare", ReduceKind::kSumSquare}};
  for (const auto& [op, kind] : ops) {
    r.Add(op, 1, MakeReduceFactory(kind, /*axes_from_input=*/false));
    // ReduceSum moved `axes` to an input at opset 13, the others at 18.
    r.Add(op, kind == ReduceKind::kSum ? 13 : 18,
          MakeReduceFactory(kind, /*axes_from_input=*/true));
  }
}

}  // namespace infermesh::runtime::math
