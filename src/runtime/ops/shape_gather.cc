// Index-driven kernels: Gather, GatherElements, GatherND, ScatterND,
// ScatterElements (and the older Scatter), NonZero. Every index is range-checked
// before it is used: an out-of-range index is InvalidArgument, never a wild read
// or write. Negative indices count from the end of the axis.
#include <algorithm>
#include <cstring>
#include <memory>

#include "runtime/ops/shape_internal.h"

namespace infermesh::runtime::shape_ops {
namespace {

// Normalises every index against an axis of length dim.
Status NormalizeIndices(const NodeTag& tag, std::vector<int64_t>& idx, int64_t dim) {
  for (int64_t& i : idx) {
    if (i < -dim || i >= dim) {
      return tag.Error("index " + std::to_string(i) + " is out of range for an axis of length " +
                       std::to_string(dim));
    }
    if (i < 0) i += dim;
  }
  return OkStatus();
}

void CopyElem(char* dst, const char* src, size_t es) {
  switch (es) {
    case 1:
      *dst = *src;
      return;
    case 2:
      std::memcpy(dst, src, 2);
      return;
    case 4:
      std::memcpy(dst, src, 4);
      return;
    case 8:
      std::memcpy(dst, src, 8);
      return;
    default:
      std::memcpy(dst, src, es);
  }
}

// ---------------------------------------------------------------- reductions

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

Result<Reduction> ParseReduction(const NodeInfo& node, DataType dtype) {
  if (node.opset < 16) return Reduction::kNone;
  std::string s = node.attrs.GetString("reduction", "none");
  Reduction r;
  if (s == "none") {
    return Reduction::kNone;
  } else if (s == "add") {
    r = Reduction::kAdd;
  } else if (s == "mul") {
    r = Reduction::kMul;
  } else if (s == "max" && node.opset >= 18) {
    r = Reduction::kMax;
  } else if (s == "min" && node.opset >= 18) {
    r = Reduction::kMin;
  } else {
    return node.Unsupported("reduction '" + s + "'");
  }
  switch (dtype) {
    case DataType::kFloat32:
    case DataType::kFloat64:
    case DataType::kFloat16:
    case DataType::kBFloat16:
    case DataType::kInt32:
    case DataType::kInt64:
      return r;
    default:
      return node.Unsupported("reduction '" + s + "' on " + DataTypeName(dtype));
  }
}

template <typename T>
T Combine(T a, T b, Reduction r) {
  switch (r) {
    case Reduction::kAdd:
      return a + b;
    case Reduction::kMul:
      return a * b;
    case Reduction::kMax:
      return std::max(a, b);
    case Reduction::kMin:
      return std::min(a, b);
    default:
      return b;
  }
}

template <typename T>
void ReduceInto(char* dst, const char* src, int64_t n, Reduction r) {
  for (int64_t i = 0; i < n; ++i) {
    T a, b;
    std::memcpy(&a, dst + i * sizeof(T), sizeof(T));
    std::memcpy(&b, src + i * sizeof(T), sizeof(T));
    a = Combine(a, b, r);
    std::memcpy(dst + i * sizeof(T), &a, sizeof(T));
  }
}

template <float (*ToF)(uint16_t), uint16_t (*FromF)(float)>
void ReduceInto16(char* dst, const char* src, int64_t n, Reduction r) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t a, b;
    std::memcpy(&a, dst + i * 2, 2);
    std::memcpy(&b, src + i * 2, 2);
    a = FromF(Combine(ToF(a), ToF(b), r));
    std::memcpy(dst + i * 2, &a, 2);
  }
}

// dst[0..n) = reduce(dst, src) for n elements of dtype.
void Apply(DataType dtype, Reduction r, char* dst, const char* src, int64_t n) {
  if (r == Reduction::kNone) {
    std::memcpy(dst, src, static_cast<size_t>(n) * DataTypeSize(dtype));
    return;
  }
  switch (dtype) {
    case DataType::kFloat32:
      return ReduceInto<float>(dst, src, n, r);
    case DataType::kFloat64:
      return ReduceInto<double>(dst, src, n, r);
    case DataType::kInt32:
      return ReduceInto<int32_t>(dst, src, n, r);
    case DataType::kInt64:
      return ReduceInto<int64_t>(dst, src, n, r);
    case DataType::kFloat16:
      return ReduceInto16<HalfToFloat, FloatToHalf>(dst, src, n, r);
    case DataType::kBFloat16:
      return ReduceInto16<BFloat16ToFloat, FloatToBFloat16>(dst, src, n, r);
    default:
      return;  // rejected at load
  }
}

// ---------------------------------------------------------------- Gather

class GatherKernel final : public Kernel {
 public:
  GatherKernel(const NodeInfo& node, int64_t axis) : tag_(node), axis_(axis) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& data = ctx.in(0);
    const Tensor& ind = ctx.in(1);
    IM_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(tag_, axis_, static_cast<int64_t>(data.rank())));
    const auto a = static_cast<size_t>(axis);
    const int64_t dim = data.dim(a);
    std::vector<int64_t> idx = ReadInts(ind);
    IM_RETURN_IF_ERROR(NormalizeIndices(tag_, idx, dim));
    Shape out_shape(data.shape().begin(), data.shape().begin() + axis);
    out_shape.insert(out_shape.end(), ind.shape().begin(), ind.shape().end());
    out_shape.insert(out_shape.end(), data.shape().begin() + axis + 1, data.shape().end());
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, data.dtype(), out_shape));
    if (out->numel() == 0) return OkStatus();
    const auto es = static_cast<int64_t>(DataTypeSize(data.dtype()));
    int64_t outer = 1;
    for (size_t d = 0; d < a; ++d) outer *= data.dim(d);
    int64_t inner = es;
    for (size_t d = a + 1; d < data.rank(); ++d) inner *= data.dim(d);
    const auto n = static_cast<int64_t>(idx.size());
    const char* s = static_cast<const char*>(data.raw_data());
    char* o = static_cast<char*>(out->raw_data());
    const int64_t grain = std::max<int64_t>(1, 16384 / inner);
    ctx.ParallelFor(outer * n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t row = k / n, j = k % n;
        const char* src = s + (row * dim + idx[static_cast<size_t>(j)]) * inner;
        if (inner == es) {
          CopyElem(o + k * inner, src, static_cast<size_t>(es));
        } else {
          std::memcpy(o + k * inner, src, static_cast<size_t>(inner));
        }
      }
    });
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t axis_;
};

Result<KernelInit> MakeGather(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(RequireIndexType(node, 1));
  int64_t axis = node.attrs.GetInt("axis", 0);
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<GatherKernel>(node, axis), {node.input_types[0]}};
}

// ---------------------------------------------------------------- GatherElements / ScatterElements

// Shared by GatherElements (scatter = false) and ScatterElements/Scatter.
class ElementsKernel final : public Kernel {
 public:
  ElementsKernel(const NodeInfo& node, int64_t axis, bool scatter, Reduction reduction)
      : tag_(node), axis_(axis), scatter_(scatter), reduction_(reduction) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& data = ctx.in(0);
    const Tensor& ind = ctx.in(1);
    const int64_t r = static_cast<int64_t>(data.rank());
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(tag_, axis_, r));
    const auto a = static_cast<size_t>(axis);
    if (ind.rank() != data.rank()) {
      return tag_.Error("indices " + ind.DebugString() + " must have the rank of data " +
                        data.DebugString());
    }
    for (size_t d = 0; d < data.rank(); ++d) {
      if (d != a && ind.dim(d) > data.dim(d)) {
        return tag_.Error("indices " + ind.DebugString() + " exceed data " + data.DebugString() +
                          " on axis " + std::to_string(d));
      }
    }
    if (scatter_ && ctx.in(2).shape() != ind.shape()) {
      return tag_.Error("updates " + ctx.in(2).DebugString() + " must match indices " +
                        ind.DebugString());
    }
    std::vector<int64_t> idx = ReadInts(ind);
    IM_RETURN_IF_ERROR(NormalizeIndices(tag_, idx, data.dim(a)));
    const size_t es = DataTypeSize(data.dtype());
    const std::vector<int64_t> dstrides = DenseStrides(data.shape());
    Tensor* out;
    if (scatter_) {
      out = &ctx.AllocateOutput(0, data.dtype(), data.shape());
      if (data.nbytes()) std::memcpy(out->raw_data(), data.raw_data(), data.nbytes());
    } else {
      out = &ctx.AllocateOutput(0, data.dtype(), ind.shape());
    }
    if (ind.numel() == 0) return OkStatus();
    const char* d = static_cast<const char*>(data.raw_data());
    const char* upd = scatter_ ? static_cast<const char*>(ctx.in(2).raw_data()) : nullptr;
    char* o = static_cast<char*>(out->raw_data());
    std::vector<int64_t> coord(data.rank(), 0);
    int64_t base = 0;  // offset of coord in data, ignoring the axis coordinate
    for (int64_t i = 0; i < ind.numel(); ++i) {
      const int64_t off = base + idx[static_cast<size_t>(i)] * dstrides[a];
      const auto ies = static_cast<int64_t>(es);
      if (!scatter_) {
        CopyElem(o + i * ies, d + off * ies, es);
      } else {
        Apply(data.dtype(), reduction_, o + off * ies, upd + i * ies, 1);
      }
      for (size_t k = coord.size(); k-- > 0;) {
        if (k != a) base += dstrides[k];
        if (++coord[k] < ind.dim(k)) break;
        if (k != a) base -= dstrides[k] * ind.dim(k);
        coord[k] = 0;
      }
    }
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t axis_;
  bool scatter_;
  Reduction reduction_;
};

Result<KernelInit> MakeElements(const NodeInfo& node, bool scatter) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(scatter ? 3 : 2, scatter ? 3 : 2));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(RequireIndexType(node, 1));
  Reduction reduction = Reduction::kNone;
  if (scatter) {
    if (node.input_types[2] != node.input_types[0]) {
      return node.Error("updates must have the data type of data");
    }
    if (node.op_type != "Scatter") {
      IM_ASSIGN_OR_RETURN(reduction, ParseReduction(node, node.input_types[0]));
    }
  }
  int64_t axis = node.attrs.GetInt("axis", 0);
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ElementsKernel>(node, axis, scatter, reduction),
                    {node.input_types[0]}};
}

// ---------------------------------------------------------------- GatherND / ScatterND

class NDKernel final : public Kernel {
 public:
  NDKernel(const NodeInfo& node, int64_t batch_dims, bool scatter, Reduction reduction)
      : tag_(node), batch_dims_(batch_dims), scatter_(scatter), reduction_(reduction) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& data = ctx.in(0);
    const Tensor& ind = ctx.in(1);
    const auto r = static_cast<int64_t>(data.rank());
    const auto q = static_cast<int64_t>(ind.rank());
    const int64_t b = batch_dims_;
    if (q < 1 || r < 1) return tag_.Error("data and indices must have rank >= 1");
    if (b >= std::min(q, r)) return tag_.Error("batch_dims must be less than both ranks");
    const int64_t m = ind.dim(static_cast<size_t>(q - 1));
    if (m < 1 || m > r - b) {
      return tag_.Error("indices' last dimension " + std::to_string(m) + " does not fit data " +
                        data.DebugString());
    }
    for (int64_t i = 0; i < b; ++i) {
      if (ind.dim(static_cast<size_t>(i)) != data.dim(static_cast<size_t>(i))) {
        return tag_.Error("batch dimensions of data and indices differ");
      }
    }
    Shape out_shape(ind.shape().begin(), ind.shape().end() - 1);
    out_shape.insert(out_shape.end(), data.shape().begin() + b + m, data.shape().end());
    int64_t slice = 1;
    for (int64_t i = b + m; i < r; ++i) slice *= data.dim(static_cast<size_t>(i));
    int64_t batches = 1;
    for (int64_t i = 0; i < b; ++i) batches *= data.dim(static_cast<size_t>(i));
    const std::vector<int64_t> dstrides = DenseStrides(data.shape());
    const int64_t batch_stride = b > 0 ? dstrides[static_cast<size_t>(b - 1)] : data.numel();
    const int64_t tuples = ind.numel() / m;
    const int64_t per_batch = batches > 0 ? tuples / batches : 0;
    // Resolve every tuple to a data offset (in elements) before touching memory.
    std::vector<int64_t> idx = ReadInts(ind);
    std::vector<int64_t> offsets(static_cast<size_t>(tuples));
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = per_batch > 0 ? (t / per_batch) * batch_stride : 0;
      for (int64_t k = 0; k < m; ++k) {
        const auto axis = static_cast<size_t>(b + k);
        int64_t v = idx[static_cast<size_t>(t * m + k)];
        const int64_t dim = data.dim(axis);
        if (v < -dim || v >= dim) {
          return tag_.Error("index " + std::to_string(v) + " is out of range for axis " +
                            std::to_string(axis) + " of data " + data.DebugString());
        }
        off += (v < 0 ? v + dim : v) * dstrides[axis];
      }
      offsets[static_cast<size_t>(t)] = off;
    }
    const auto es = static_cast<int64_t>(DataTypeSize(data.dtype()));
    const char* d = static_cast<const char*>(data.raw_data());
    if (!scatter_) {
      IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, data.dtype(), out_shape));
      char* o = static_cast<char*>(out->raw_data());
      for (int64_t t = 0; t < tuples; ++t) {
        std::memcpy(o + t * slice * es, d + offsets[static_cast<size_t>(t)] * es,
                    static_cast<size_t>(slice * es));
      }
      return OkStatus();
    }
    const Tensor& upd = ctx.in(2);
    if (upd.shape() != out_shape) {
      return tag_.Error("updates " + upd.DebugString() + " must have shape " +
                        ShapeToString(out_shape));
    }
    Tensor& out = ctx.AllocateOutput(0, data.dtype(), data.shape());
    if (data.nbytes()) std::memcpy(out.raw_data(), data.raw_data(), data.nbytes());
    char* o = static_cast<char*>(out.raw_data());
    const char* u = static_cast<const char*>(upd.raw_data());
    for (int64_t t = 0; t < tuples; ++t) {
      Apply(data.dtype(), reduction_, o + offsets[static_cast<size_t>(t)] * es, u + t * slice * es,
            slice);
    }
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t batch_dims_;
  bool scatter_;
  Reduction reduction_;
};

Result<KernelInit> MakeND(const NodeInfo& node, bool scatter) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(scatter ? 3 : 2, scatter ? 3 : 2));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
  int64_t batch_dims = 0;
  Reduction reduction = Reduction::kNone;
  if (scatter) {
    if (node.input_types[2] != node.input_types[0]) {
      return node.Error("updates must have the data type of data");
    }
    IM_ASSIGN_OR_RETURN(reduction, ParseReduction(node, node.input_types[0]));
  } else if (node.opset >= 12) {
    batch_dims = node.attrs.GetInt("batch_dims", 0);
    if (batch_dims < 0) return node.Error("batch_dims must not be negative");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<NDKernel>(node, batch_dims, scatter, reduction),
                    {node.input_types[0]}};
}

// ---------------------------------------------------------------- NonZero

bool IsNonZero(const char* p, DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return (v & 0x7fffffffu) != 0;  // -0.0 is zero, NaN is not
    }
    case DataType::kFloat64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      return (v & 0x7fffffffffffffffull) != 0;
    }
    case DataType::kFloat16:
    case DataType::kBFloat16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return (v & 0x7fffu) != 0;
    }
    default: {
      const size_t es = DataTypeSize(dtype);
      for (size_t i = 0; i < es; ++i) {
        if (p[i] != 0) return true;
      }
      return false;
    }
  }
}

class NonZeroKernel final : public Kernel {
 public:
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const auto es = static_cast<int64_t>(DataTypeSize(x.dtype()));
    const char* p = static_cast<const char*>(x.raw_data());
    std::vector<int64_t> hits;
    for (int64_t i = 0; i < x.numel(); ++i) {
      if (IsNonZero(p + i * es, x.dtype())) hits.push_back(i);
    }
    const auto nnz = static_cast<int64_t>(hits.size());
    // A scalar is treated as a one-element vector (as onnxruntime does).
    const Shape shape = x.rank() == 0 ? Shape{1} : x.shape();
    const auto r = static_cast<int64_t>(shape.size());
    Tensor& out = ctx.AllocateOutput(0, DataType::kInt64, {r, nnz});
    int64_t* o = out.data<int64_t>();
    for (int64_t j = 0; j < nnz; ++j) {
      int64_t rem = hits[static_cast<size_t>(j)];
      for (int64_t d = r - 1; d >= 0; --d) {
        o[d * nnz + j] = rem % shape[static_cast<size_t>(d)];
        rem /= shape[static_cast<size_t>(d)];
      }
    }
    return OkStatus();
  }
};

Result<KernelInit> MakeNonZero(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<NonZeroKernel>(), {DataType::kInt64}};
}

}  // namespace

void RegisterShapeGatherKernels(KernelRegistry& r) {
  r.Add("Gather", 1, MakeGather);
  auto gather_elements = [](const NodeInfo& n) { return MakeElements(n, false); };
  auto scatter_elements = [](const NodeInfo& n) { return MakeElements(n, true); };
  r.Add("GatherElements", 11, gather_elements);
  r.Add("ScatterElements", 11, scatter_elements);
  r.Add("ScatterElements", 16, scatter_elements);
  r.Add("ScatterElements", 18, scatter_elements);
  r.Add("Scatter", 9, scatter_elements);
  auto gather_nd = [](const NodeInfo& n) { return MakeND(n, false); };
  auto scatter_nd = [](const NodeInfo& n) { return MakeND(n, true); };
  r.Add("GatherND", 11, gather_nd);
  r.Add("GatherND", 12, gather_nd);
  r.Add("ScatterND", 11, scatter_nd);
  r.Add("ScatterND", 16, scatter_nd);
  r.Add("ScatterND", 18, scatter_nd);
  r.Add("NonZero", 9, MakeNonZero);
}

}  // namespace infermesh::runtime::shape_ops
