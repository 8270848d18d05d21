// Padding and layout kernels: Pad (constant, edge, reflect, wrap), Trilu,
// DepthToSpace, SpaceToDepth. All work on raw element bytes; zero bytes are the
// zero of every supported dtype.
#include <algorithm>
#include <cstring>
#include <memory>

#include "runtime/ops/shape_internal.h"

namespace infermesh::runtime::shape_ops {
namespace {

// ---------------------------------------------------------------- Pad

enum class PadMode { kConstant, kEdge, kReflect, kWrap };

// Source index for output position i of an axis of length n (i may lie outside
// [0, n)); -1 means "use the constant".
int64_t MapPadIndex(int64_t i, int64_t n, PadMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::kConstant:
      return -1;
    case PadMode::kEdge:
      return i < 0 ? 0 : n - 1;
    case PadMode::kReflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1);
      int64_t m = ((i % period) + period) % period;
      return m < n ? m : period - m;
    }
    case PadMode::kWrap:
      return ((i % n) + n) % n;
  }
  return -1;
}

struct PadAttrs {
  std::vector<int64_t> pads;  // opset < 11
  float value = 0.0f;         // opset < 11
};

class PadKernel final : public Kernel {
 public:
  PadKernel(const NodeInfo& node, PadMode mode, std::optional<PadAttrs> attrs)
      : tag_(node), mode_(mode), attrs_(std::move(attrs)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const size_t r = x.rank();
    const size_t es = DataTypeSize(x.dtype());
    std::vector<int64_t> pads = attrs_ ? attrs_->pads : ReadInts(ctx.in(1));
    std::vector<int64_t> axes;
    if (!attrs_ && ctx.input(3) != nullptr) {
      for (int64_t a : ReadInts(ctx.in(3))) {
        IM_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(tag_, a, static_cast<int64_t>(r)));
        axes.push_back(n);
      }
    } else {
      for (size_t i = 0; i < r; ++i) axes.push_back(static_cast<int64_t>(i));
    }
    if (pads.size() != 2 * axes.size()) {
      return tag_.Error("pads has " + std::to_string(pads.size()) + " entries, expected " +
                        std::to_string(2 * axes.size()) + " for input " + x.DebugString());
    }
    std::vector<int64_t> before(r, 0), after(r, 0);
    for (size_t i = 0; i < axes.size(); ++i) {
      before[static_cast<size_t>(axes[i])] = pads[i];
      after[static_cast<size_t>(axes[i])] = pads[i + axes.size()];
    }
    Shape out_shape(r);
    for (size_t d = 0; d < r; ++d) {
      int64_t v;
      if (__builtin_add_overflow(x.dim(d), before[d], &v) ||
          __builtin_add_overflow(v, after[d], &v)) {
        return tag_.Exhausted("padded dimension overflows");
      }
      if (v < 0) return tag_.Error("pads crop axis " + std::to_string(d) + " below zero");
      if (mode_ != PadMode::kConstant && x.dim(d) == 0 && v > 0) {
        return tag_.Error("cannot pad an empty axis in edge, reflect or wrap mode");
      }
      out_shape[d] = v;
    }
    char value[8] = {0};
    if (mode_ == PadMode::kConstant) {
      if (attrs_) {
        EncodeScalar(x.dtype(), attrs_->value, value);
      } else if (ctx.input(2) != nullptr && ctx.in(2).numel() > 0) {
        if (ctx.in(2).dtype() != x.dtype()) return tag_.Error("constant_value has another type");
        std::memcpy(value, ctx.in(2).raw_data(), es);
      }
    }
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, x.dtype(), out_shape));
    if (out->numel() == 0) return OkStatus();
    if (r == 0) {
      std::memcpy(out->raw_data(), x.raw_data(), es);
      return OkStatus();
    }
    const int64_t ow = out_shape[r - 1], w = x.dim(r - 1), pb = before[r - 1];
    const int64_t rows = out->numel() / ow;
    const std::vector<int64_t> in_strides = DenseStrides(x.shape());
    const char* src = static_cast<const char*>(x.raw_data());
    char* dst = static_cast<char*>(out->raw_data());
    const auto ies = static_cast<int64_t>(es);
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(ow, 1));
    ctx.ParallelFor(rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        char* o = dst + row * ow * ies;
        // Source row for the outer coordinates of this output row.
        int64_t off = 0;
        bool constant_row = false;
        int64_t rem = row;
        for (size_t d = r - 1; d-- > 0;) {
          const int64_t od = rem % out_shape[d];
          rem /= out_shape[d];
          const int64_t id = MapPadIndex(od - before[d], x.dim(d), mode_);
          if (id < 0) {
            constant_row = true;
            break;
          }
          off += id * in_strides[d];
        }
        if (constant_row) {
          FillElements(o, ow, es, value);
          continue;
        }
        const char* s = src + off * ies;
        const int64_t mid_begin = std::clamp<int64_t>(pb, 0, ow);
        const int64_t mid_end = std::clamp<int64_t>(pb + w, 0, ow);
        for (int64_t j = 0; j < mid_begin; ++j) {
          const int64_t id = MapPadIndex(j - pb, w, mode_);
          std::memcpy(o + j * ies, id < 0 ? value : s + id * ies, es);
        }
        if (mid_end > mid_begin) {
          std::memcpy(o + mid_begin * ies, s + (mid_begin - pb) * ies,
                      static_cast<size_t>((mid_end - mid_begin) * ies));
        }
        for (int64_t j = std::max(mid_end, mid_begin); j < ow; ++j) {
          const int64_t id = MapPadIndex(j - pb, w, mode_);
          std::memcpy(o + j * ies, id < 0 ? value : s + id * ies, es);
        }
      }
    });
    return OkStatus();
  }

 private:
  NodeTag tag_;
  PadMode mode_;
  std::optional<PadAttrs> attrs_;
};

Result<KernelInit> MakePad(const NodeInfo& node) {
  std::optional<PadAttrs> attrs;
  if (node.opset >= 11) {
    IM_RETURN_IF_ERROR(node.RequireInputCount(2, node.opset >= 18 ? 4 : 3));
    IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
    IM_RETURN_IF_ERROR(RequireIndexType(node, 3));
    if (node.HasInput(2) && node.input_types[2] != node.input_types[0]) {
      return node.Error("constant_value must have the data type of the input");
    }
  } else {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
    if (!node.attrs.Has("pads")) return node.Error("attribute 'pads' is required");
    attrs = PadAttrs{node.attrs.GetInts("pads"), node.attrs.GetFloat("value", 0.0f)};
  }
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  const std::string mode = node.attrs.GetString("mode", "constant");
  PadMode m;
  if (mode == "constant") {
    m = PadMode::kConstant;
  } else if (mode == "edge") {
    m = PadMode::kEdge;
  } else if (mode == "reflect") {
    m = PadMode::kReflect;
  } else if (mode == "wrap") {
    m = PadMode::kWrap;
  } else {
    return node.Unsupported("mode '" + mode + "'");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<PadKernel>(node, m, std::move(attrs)), {node.input_types[0]}};
}

// ---------------------------------------------------------------- Trilu

class TriluKernel final : public Kernel {
 public:
  TriluKernel(const NodeInfo& node, bool upper) : tag_(node), upper_(upper) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.rank() < 2) return tag_.Error("input must have rank >= 2, got " + x.DebugString());
    int64_t k = 0;
    if (ctx.input(1) != nullptr) {
      if (ctx.in(1).numel() != 1) return tag_.Error("k must be a scalar");
      k = ctx.in(1).GetAsInt64(0);
    }
    Tensor& out = ctx.AllocateOutput(0, x.dtype(), x.shape());
    const int64_t n = x.dim(x.rank() - 2), m = x.dim(x.rank() - 1);
    if (out.numel() == 0) return OkStatus();
    k = std::clamp<int64_t>(k, -n - 1, m + 1);  // beyond that every row is all kept or all zero
    const auto es = static_cast<int64_t>(DataTypeSize(x.dtype()));
    const int64_t rows = x.numel() / m;
    const char* s = static_cast<const char*>(x.raw_data());
    char* o = static_cast<char*>(out.raw_data());
    ctx.ParallelFor(rows, std::max<int64_t>(1, 4096 / m), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t i = row % n;
        // Columns [keep_begin, keep_end) are kept, the rest zeroed.
        int64_t keep_begin = 0, keep_end = m;
        if (upper_) {
          keep_begin = std::clamp<int64_t>(i + k, 0, m);
        } else {
          keep_end = std::clamp<int64_t>(i + k + 1, 0, m);
        }
        char* orow = o + row * m * es;
        const char* srow = s + row * m * es;
        if (keep_end <= keep_begin) {
          std::memset(orow, 0, static_cast<size_t>(m * es));
          continue;
        }
        std::memset(orow, 0, static_cast<size_t>(keep_begin * es));
        std::memcpy(orow + keep_begin * es, srow + keep_begin * es,
                    static_cast<size_t>((keep_end - keep_begin) * es));
        std::memset(orow + keep_end * es, 0, static_cast<size_t>((m - keep_end) * es));
      }
    });
    return OkStatus();
  }

 private:
  NodeTag tag_;
  bool upper_;
};

Result<KernelInit> MakeTrilu(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 2));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
  bool upper = node.attrs.GetInt("upper", 1) != 0;
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<TriluKernel>(node, upper), {node.input_types[0]}};
}

// ---------------------------------------------------------------- DepthToSpace, SpaceToDepth

// Both are a 6-D transpose of a reshaped NCHW tensor.
class BlockKernel final : public Kernel {
 public:
  enum class Kind { kDepthToSpaceDcr, kDepthToSpaceCrd, kSpaceToDepth };
  BlockKernel(const NodeInfo& node, Kind kind, int64_t b) : tag_(node), kind_(kind), b_(b) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.rank() != 4) return tag_.Error("input must be 4-D NCHW, got " + x.DebugString());
    const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3), b = b_;
    Shape view, out_shape;
    std::vector<int> perm;
    if (kind_ == Kind::kSpaceToDepth) {
      if (h % b != 0 || w % b != 0) {
        return tag_.Error("H and W must be multiples of blocksize, got " + x.DebugString());
      }
      view = {n, c, h / b, b, w / b, b};
      perm = {0, 3, 5, 1, 2, 4};
      out_shape = {n, c * b * b, h / b, w / b};
    } else {
      if (c % (b * b) != 0) {
        return tag_.Error("C must be a multiple of blocksize^2, got " + x.DebugString());
      }
      if (kind_ == Kind::kDepthToSpaceDcr) {
        view = {n, b, b, c / (b * b), h, w};
        perm = {0, 3, 4, 1, 5, 2};
      } else {
        view = {n, c / (b * b), b, b, h, w};
        perm = {0, 1, 4, 2, 5, 3};
      }
      out_shape = {n, c / (b * b), h * b, w * b};
    }
    const std::vector<int64_t> vstrides = DenseStrides(view);
    Shape copy_shape;
    std::vector<int64_t> strides;
    for (int p : perm) {
      copy_shape.push_back(view[static_cast<size_t>(p)]);
      strides.push_back(vstrides[static_cast<size_t>(p)]);
    }
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, x.dtype(), out_shape));
    StridedCopy(ctx, DataTypeSize(x.dtype()), x.raw_data(), copy_shape, strides, out->raw_data());
    return OkStatus();
  }

 private:
  NodeTag tag_;
  Kind kind_;
  int64_t b_;
};

Result<KernelInit> MakeBlock(const NodeInfo& node, bool depth_to_space) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  if (!node.attrs.Has("blocksize")) return node.Error("attribute 'blocksize' is required");
  int64_t b = node.attrs.GetInt("blocksize", 0);
  if (b <= 0 || b > (int64_t{1} << 16)) return node.Error("blocksize must be positive");
  BlockKernel::Kind kind = BlockKernel::Kind::kSpaceToDepth;
  if (depth_to_space) {
    std::string mode = node.opset >= 11 ? node.attrs.GetString("mode", "DCR") : "DCR";
    if (mode == "DCR") {
      kind = BlockKernel::Kind::kDepthToSpaceDcr;
    } else if (mode == "CRD") {
      kind = BlockKernel::Kind::kDepthToSpaceCrd;
    } else {
      return node.Unsupported("mode '" + mode + "'");
    }
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<BlockKernel>(node, kind, b), {node.input_types[0]}};
}

}  // namespace

void RegisterShapePadKernels(KernelRegistry& r) {
  r.Add("Pad", 2, MakePad);
  r.Add("Pad", 11, MakePad);
  r.Add("Pad", 18, MakePad);
  r.Add("Trilu", 14, MakeTrilu);
  auto d2s = [](const NodeInfo& n) { return MakeBlock(n, true); };
  auto s2d = [](const NodeInfo& n) { return MakeBlock(n, false); };
  r.Add("DepthToSpace", 1, d2s);
  r.Add("DepthToSpace", 11, d2s);
  r.Add("SpaceToDepth", 1, s2d);
}

}  // namespace infermesh::runtime::shape_ops
