// Copying data-movement kernels: Transpose, Concat, Split, Slice, Expand, Tile.
// Most reduce to one strided copy (StridedCopy in shape_common.cc): the output is
// dense and each output dimension reads the input with some stride (0 for a
// broadcast or repeated dimension, negative for a reversed slice).
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>

#include "runtime/ops/shape_internal.h"

namespace infermesh::runtime::shape_ops {
namespace {

size_t ElemSize(const Tensor& t) { return DataTypeSize(t.dtype()); }

// ---------------------------------------------------------------- Transpose

class TransposeKernel final : public Kernel {
 public:
  TransposeKernel(const NodeInfo& node, std::vector<int64_t> perm)
      : tag_(node), perm_(std::move(perm)) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const size_t r = x.rank();
    std::vector<int64_t> perm = perm_;
    if (perm.empty()) {
      for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
    }
    if (perm.size() != r) {
      return tag_.Error("perm has " + std::to_string(perm.size()) + " entries for input " +
                        x.DebugString());
    }
    std::vector<bool> seen(r, false);
    for (int64_t p : perm) {
      if (p < 0 || p >= static_cast<int64_t>(r) || seen[static_cast<size_t>(p)]) {
        return tag_.Error("perm is not a permutation of the input's axes");
      }
      seen[static_cast<size_t>(p)] = true;
    }
    Shape out_shape(r);
    std::vector<int64_t> strides(r);
    const std::vector<int64_t> in_strides = DenseStrides(x.shape());
    // Dimensions of size 1 can move freely: if the others keep their order, the
    // transpose is a reshape.
    bool ordered = true;
    int64_t last = -1;
    for (size_t i = 0; i < r; ++i) {
      const auto p = static_cast<size_t>(perm[i]);
      out_shape[i] = x.dim(p);
      strides[i] = in_strides[p];
      if (x.dim(p) != 1) {
        if (perm[i] < last) ordered = false;
        last = perm[i];
      }
    }
    if (ordered) {
      IM_ASSIGN_OR_RETURN(Tensor view, x.Reshaped(out_shape));
      ctx.SetOutput(0, std::move(view));
      return OkStatus();
    }
    Tensor& out = ctx.AllocateOutput(0, x.dtype(), out_shape);
    StridedCopy(ctx, ElemSize(x), x.raw_data(), out_shape, strides, out.raw_data());
    return OkStatus();
  }

 private:
  NodeTag tag_;
  std::vector<int64_t> perm_;
};

Result<KernelInit> MakeTranspose(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  std::vector<int64_t> perm = node.attrs.GetInts("perm");
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<TransposeKernel>(node, std::move(perm)),
                    {node.input_types[0]}};
}

// ---------------------------------------------------------------- Concat

class ConcatKernel final : public Kernel {
 public:
  ConcatKernel(const NodeInfo& node, int64_t axis) : tag_(node), axis_(axis) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& first = ctx.in(0);
    const int64_t r = static_cast<int64_t>(first.rank());
    if (r == 0) return tag_.Error("cannot concatenate scalars");
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(tag_, axis_, r));
    const auto a = static_cast<size_t>(axis);
    Shape out_shape = first.shape();
    out_shape[a] = 0;
    for (size_t i = 0; i < ctx.num_inputs(); ++i) {
      const Tensor& t = ctx.in(i);
      bool match = t.rank() == first.rank();
      for (size_t d = 0; match && d < t.rank(); ++d) match = d == a || t.dim(d) == first.dim(d);
      if (!match) {
        return tag_.Error("input " + std::to_string(i) + " " + t.DebugString() +
                          " does not match input 0 " + first.DebugString() + " off axis " +
                          std::to_string(axis));
      }
      out_shape[a] += t.dim(a);
    }
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, first.dtype(), out_shape));
    const auto es = static_cast<int64_t>(ElemSize(first));
    int64_t outer = 1;
    for (size_t d = 0; d < a; ++d) outer *= out_shape[d];
    int64_t inner = es;
    for (size_t d = a + 1; d < out_shape.size(); ++d) inner *= out_shape[d];
    const int64_t out_block = out_shape[a] * inner;
    if (outer == 0 || out_block == 0) return OkStatus();
    char* o = static_cast<char*>(out->raw_data());
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / out_block);
    ctx.ParallelFor(outer, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        char* dst = o + row * out_block;
        for (size_t i = 0; i < ctx.num_inputs(); ++i) {
          const Tensor& t = ctx.in(i);
          const int64_t block = t.dim(a) * inner;
          if (block == 0) continue;
          std::memcpy(dst, static_cast<const char*>(t.raw_data()) + row * block,
                      static_cast<size_t>(block));
          dst += block;
        }
      }
    });
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t axis_;
};

Result<KernelInit> MakeConcat(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1 << 20));
  for (size_t i = 0; i < node.input_types.size(); ++i) {
    IM_RETURN_IF_ERROR(RequireStorageType(node, i));
    if (node.input_types[i] != node.input_types[0]) {
      return node.Error("all inputs must have the same data type");
    }
  }
  if (!node.attrs.Has("axis")) return node.Error("attribute 'axis' is required");
  int64_t axis = node.attrs.GetInt("axis", 0);
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ConcatKernel>(node, axis), {node.input_types[0]}};
}

// ---------------------------------------------------------------- Split

class SplitKernel final : public Kernel {
 public:
  SplitKernel(const NodeInfo& node, int64_t axis, std::optional<std::vector<int64_t>> split,
              bool uneven)
      : tag_(node), axis_(axis), split_(std::move(split)), uneven_(uneven) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const int64_t n = static_cast<int64_t>(ctx.num_outputs());
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(tag_, axis_, static_cast<int64_t>(x.rank())));
    const auto a = static_cast<size_t>(axis);
    const int64_t dim = x.dim(a);
    std::vector<int64_t> sizes;
    if (split_) {
      sizes = *split_;
    } else if (ctx.input(1) != nullptr) {
      sizes = ReadInts(ctx.in(1));
    }
    if (!sizes.empty()) {  // an empty split input means "equal parts"
      if (static_cast<int64_t>(sizes.size()) != n) {
        return tag_.Error("split has " + std::to_string(sizes.size()) + " entries for " +
                          std::to_string(n) + " outputs");
      }
      int64_t sum = 0;
      for (int64_t s : sizes) {
        if (s < 0) return tag_.Error("split sizes must not be negative");
        sum += s;
      }
      if (sum != dim) {
        return tag_.Error("split sizes sum to " + std::to_string(sum) + ", dimension is " +
                          std::to_string(dim));
      }
    } else if (uneven_) {
      const int64_t chunk = (dim + n - 1) / n;
      for (int64_t i = 0; i < n; ++i)
        sizes.push_back(std::clamp<int64_t>(dim - i * chunk, 0, chunk));
    } else {
      if (dim % n != 0) {
        return tag_.Error("dimension " + std::to_string(dim) + " does not split evenly into " +
                          std::to_string(n) + " outputs");
      }
      sizes.assign(static_cast<size_t>(n), dim / n);
    }
    const auto es = static_cast<int64_t>(ElemSize(x));
    int64_t outer = 1;
    for (size_t d = 0; d < a; ++d) outer *= x.dim(d);
    int64_t inner = es;
    for (size_t d = a + 1; d < x.rank(); ++d) inner *= x.dim(d);
    const int64_t in_block = dim * inner;
    const char* src = static_cast<const char*>(x.raw_data());
    const size_t base = static_cast<size_t>(src - static_cast<const char*>(x.buffer()->data));
    int64_t offset = 0;  // bytes into one outer row
    for (int64_t i = 0; i < n; ++i) {
      Shape shape = x.shape();
      shape[a] = sizes[static_cast<size_t>(i)];
      const int64_t block = shape[a] * inner;
      if (outer == 1) {
        // One outer row: each output is a contiguous range of the input.
        ctx.SetOutput(
            static_cast<size_t>(i),
            Tensor::FromBuffer(x.dtype(), shape, x.buffer(), base + static_cast<size_t>(offset)));
      } else {
        Tensor& out = ctx.AllocateOutput(static_cast<size_t>(i), x.dtype(), shape);
        char* o = static_cast<char*>(out.raw_data());
        if (block > 0) {
          for (int64_t row = 0; row < outer; ++row) {
            std::memcpy(o + row * block, src + row * in_block + offset, static_cast<size_t>(block));
          }
        }
      }
      offset += block;
    }
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t axis_;
  std::optional<std::vector<int64_t>> split_;
  bool uneven_;
};

Result<KernelInit> MakeSplit(const NodeInfo& node) {
  std::optional<std::vector<int64_t>> split;
  bool uneven = false;
  if (node.opset >= 13) {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 2));
    IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
    if (node.opset >= 18 && node.attrs.Has("num_outputs")) {
      int64_t n = node.attrs.GetInt("num_outputs", 0);
      if (node.HasInput(1)) return node.Error("num_outputs and split are exclusive");
      if (n != static_cast<int64_t>(node.num_outputs)) {
        return node.Error("num_outputs does not match the node's outputs");
      }
      uneven = true;
    }
  } else {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
    if (node.attrs.Has("split")) split = node.attrs.GetInts("split");
  }
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  if (node.num_outputs < 1) return node.Error("needs at least one output");
  int64_t axis = node.attrs.GetInt("axis", 0);
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  std::vector<DataType> types(node.num_outputs, node.input_types[0]);
  return KernelInit{std::make_unique<SplitKernel>(node, axis, std::move(split), uneven), types};
}

// ---------------------------------------------------------------- Slice

struct SliceParams {
  std::vector<int64_t> starts, ends, axes, steps;
};

class SliceKernel final : public Kernel {
 public:
  SliceKernel(const NodeInfo& node, std::optional<SliceParams> attrs)
      : tag_(node), attrs_(std::move(attrs)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    SliceParams p;
    if (attrs_) {
      p = *attrs_;
    } else {
      p.starts = ReadInts(ctx.in(1));
      p.ends = ReadInts(ctx.in(2));
      if (ctx.input(3) != nullptr) p.axes = ReadInts(ctx.in(3));
      if (ctx.input(4) != nullptr) p.steps = ReadInts(ctx.in(4));
    }
    const size_t n = p.starts.size();
    if (p.axes.empty()) {
      for (size_t i = 0; i < n; ++i) p.axes.push_back(static_cast<int64_t>(i));
    }
    if (p.steps.empty()) p.steps.assign(n, 1);
    if (p.ends.size() != n || p.axes.size() != n || p.steps.size() != n) {
      return tag_.Error("starts, ends, axes and steps must have the same length");
    }
    const int64_t r = static_cast<int64_t>(x.rank());
    const std::vector<int64_t> in_strides = DenseStrides(x.shape());
    Shape out_shape = x.shape();
    std::vector<int64_t> strides = in_strides;
    std::vector<bool> seen(x.rank(), false);
    int64_t offset = 0;
    for (size_t i = 0; i < n; ++i) {
      IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(tag_, p.axes[i], r));
      const auto a = static_cast<size_t>(axis);
      if (seen[a]) return tag_.Error("axis " + std::to_string(p.axes[i]) + " is repeated");
      seen[a] = true;
      const int64_t dim = x.dim(a);
      const int64_t step = p.steps[i];
      if (step == 0) return tag_.Error("steps must not be zero");
      __int128 start = p.starts[i], end = p.ends[i];
      if (start < 0) start += dim;
      if (end < 0) end += dim;
      __int128 count;
      if (dim == 0) {
        count = 0;
      } else if (step > 0) {
        start = std::clamp<__int128>(start, 0, dim);
        end = std::clamp<__int128>(end, 0, dim);
        count = end > start ? (end - start + step - 1) / step : 0;
      } else {
        start = std::clamp<__int128>(start, 0, dim - 1);
        end = std::clamp<__int128>(end, -1, dim - 1);
        count = start > end ? (start - end + (-static_cast<__int128>(step)) - 1) /
                                  (-static_cast<__int128>(step))
                            : 0;
      }
      out_shape[a] = static_cast<int64_t>(count);
      if (count > 0) offset += static_cast<int64_t>(start) * in_strides[a];
      // A stride is only used when more than one element is taken along the axis.
      strides[a] = count > 1 ? step * in_strides[a] : 0;
    }
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, x.dtype(), out_shape));
    if (out->numel() == 0) return OkStatus();
    const size_t es = ElemSize(x);
    StridedCopy(ctx, es, static_cast<const char*>(x.raw_data()) + offset * static_cast<int64_t>(es),
                out_shape, strides, out->raw_data());
    return OkStatus();
  }

 private:
  NodeTag tag_;
  std::optional<SliceParams> attrs_;
};

Result<KernelInit> MakeSlice(const NodeInfo& node) {
  std::optional<SliceParams> attrs;
  if (node.opset >= 10) {
    IM_RETURN_IF_ERROR(node.RequireInputCount(3, 5));
    for (size_t i = 1; i < 5; ++i) IM_RETURN_IF_ERROR(RequireIndexType(node, i));
  } else {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
    if (!node.attrs.Has("starts") || !node.attrs.Has("ends")) {
      return node.Error("attributes 'starts' and 'ends' are required");
    }
    attrs = SliceParams{
        node.attrs.GetInts("starts"), node.attrs.GetInts("ends"), node.attrs.GetInts("axes"), {}};
  }
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<SliceKernel>(node, std::move(attrs)), {node.input_types[0]}};
}

// ---------------------------------------------------------------- Expand, Tile

class ExpandKernel final : public Kernel {
 public:
  explicit ExpandKernel(const NodeInfo& node) : tag_(node) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (ctx.in(1).rank() != 1) return tag_.Error("shape input must be 1-D");
    const std::vector<int64_t> spec = ReadInts(ctx.in(1));
    const size_t r = std::max(spec.size(), x.rank());
    Shape out_shape(r);
    std::vector<int64_t> strides(r, 0);
    const std::vector<int64_t> in_strides = DenseStrides(x.shape());
    for (size_t i = 0; i < r; ++i) {
      const int64_t a = i + x.rank() >= r ? x.dim(i + x.rank() - r) : 1;
      const int64_t b = i + spec.size() >= r ? spec[i + spec.size() - r] : 1;
      if (a != b && a != 1 && b != 1) {
        return tag_.Error("cannot expand " + x.DebugString() + " to " + ShapeToString(spec));
      }
      out_shape[i] = a == 1 ? b : a;
      if (i + x.rank() >= r && a != 1) strides[i] = in_strides[i + x.rank() - r];
    }
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, x.dtype(), out_shape));
    StridedCopy(ctx, ElemSize(x), x.raw_data(), out_shape, strides, out->raw_data());
    return OkStatus();
  }

 private:
  NodeTag tag_;
};

Result<KernelInit> MakeExpand(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ExpandKernel>(node), {node.input_types[0]}};
}

class TileKernel final : public Kernel {
 public:
  explicit TileKernel(const NodeInfo& node) : tag_(node) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const std::vector<int64_t> repeats = ReadInts(ctx.in(1));
    if (repeats.size() != x.rank()) {
      return tag_.Error("repeats has " + std::to_string(repeats.size()) + " entries for input " +
                        x.DebugString());
    }
    const std::vector<int64_t> in_strides = DenseStrides(x.shape());
    Shape out_shape, copy_shape;
    std::vector<int64_t> strides;
    for (size_t i = 0; i < x.rank(); ++i) {
      if (repeats[i] < 0) return tag_.Error("repeats must not be negative");
      int64_t d;
      if (__builtin_mul_overflow(repeats[i], x.dim(i), &d)) {
        return tag_.Exhausted("output dimension overflows");
      }
      out_shape.push_back(d);
      // Output axis i is (repeat, input axis i) in row-major order.
      copy_shape.insert(copy_shape.end(), {repeats[i], x.dim(i)});
      strides.insert(strides.end(), {0, in_strides[i]});
    }
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, x.dtype(), out_shape));
    StridedCopy(ctx, ElemSize(x), x.raw_data(), copy_shape, strides, out->raw_data());
    return OkStatus();
  }

 private:
  NodeTag tag_;
};

Result<KernelInit> MakeTile(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<TileKernel>(node), {node.input_types[0]}};
}

}  // namespace

void RegisterShapeCopyKernels(KernelRegistry& r) {
  r.Add("Transpose", 1, MakeTranspose);
  r.Add("Concat", 1, MakeConcat);
  r.Add("Split", 2, MakeSplit);
  r.Add("Split", 13, MakeSplit);
  r.Add("Split", 18, MakeSplit);
  r.Add("Slice", 1, MakeSlice);
  r.Add("Slice", 10, MakeSlice);
  r.Add("Expand", 8, MakeExpand);
  r.Add("Tile", 6, MakeTile);
}

}  // namespace infermesh::runtime::shape_ops
