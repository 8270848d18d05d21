// Kernels that create tensors from attributes or small inputs: Constant,
// ConstantOfShape, Range, EyeLike, OneHot.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "runtime/ops/shape_internal.h"

namespace infermesh::runtime::shape_ops {
namespace {

// ---------------------------------------------------------------- Constant

class ConstantKernel final : public Kernel {
 public:
  explicit ConstantKernel(Tensor value) : value_(std::move(value)) {}
  Status Run(KernelContext& ctx) const override {
    ctx.SetOutput(0, value_);  // shares the immutable buffer
    return OkStatus();
  }

 private:
  Tensor value_;
};

Result<KernelInit> MakeConstant(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(0, 0));
  static const char* kKinds[] = {"value",      "value_float",  "value_floats",  "value_int",
                                 "value_ints", "value_string", "value_strings", "sparse_value"};
  int present = 0;
  std::string kind;
  for (const char* k : kKinds) {
    if (node.attrs.Has(k)) {
      ++present;
      kind = k;
    }
  }
  if (present != 1) return node.Error("exactly one value attribute must be set");
  Tensor value;
  if (kind == "value") {
    auto t = node.attrs.GetTensor("value");
    if (!t.ok()) return node.Error(t.status().message());
    value = std::move(t).value();
  } else if (kind == "value_float") {
    value = Tensor::Scalar<float>(node.attrs.GetFloat(kind, 0));
  } else if (kind == "value_floats") {
    auto v = node.attrs.GetFloats(kind);
    value = Tensor::FromVector<float>({static_cast<int64_t>(v.size())}, v);
  } else if (kind == "value_int") {
    value = Tensor::Scalar<int64_t>(node.attrs.GetInt(kind, 0));
  } else if (kind == "value_ints") {
    auto v = node.attrs.GetInts(kind);
    value = Tensor::FromVector<int64_t>({static_cast<int64_t>(v.size())}, v);
  } else {
    return node.Unsupported("attribute '" + kind + "' (strings and sparse tensors)");
  }
  if (!IsSupportedStorageType(value.dtype())) {
    return node.Unsupported("constant of data type " + DataTypeName(value.dtype()));
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  DataType dtype = value.dtype();
  return KernelInit{std::make_unique<ConstantKernel>(std::move(value)), {dtype}};
}

// ---------------------------------------------------------------- ConstantOfShape

class ConstantOfShapeKernel final : public Kernel {
 public:
  ConstantOfShapeKernel(const NodeInfo& node, Tensor value) : tag_(node), value_(value) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& spec = ctx.in(0);
    if (spec.rank() != 1) return tag_.Error("shape input must be 1-D, got " + spec.DebugString());
    Shape shape = ReadInts(spec);
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, value_.dtype(), shape));
    FillElements(out->raw_data(), out->numel(), DataTypeSize(value_.dtype()), value_.raw_data());
    return OkStatus();
  }

 private:
  NodeTag tag_;
  Tensor value_;
};

Result<KernelInit> MakeConstantOfShape(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kInt64}));
  Tensor value = Tensor::Scalar<float>(0.0f);
  if (node.attrs.Has("value")) {
    auto t = node.attrs.GetTensor("value");
    if (!t.ok()) return node.Error(t.status().message());
    value = std::move(t).value();
    if (value.numel() != 1) return node.Error("attribute 'value' must hold one element");
    if (!IsSupportedStorageType(value.dtype())) {
      return node.Unsupported("value of data type " + DataTypeName(value.dtype()));
    }
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  DataType dtype = value.dtype();
  return KernelInit{std::make_unique<ConstantOfShapeKernel>(node, std::move(value)), {dtype}};
}

// ---------------------------------------------------------------- Range

template <typename T>
Status RunRange(KernelContext& ctx, const NodeTag& tag) {
  for (size_t i = 0; i < 3; ++i) {
    if (ctx.in(i).numel() != 1) {
      return tag.Error("input " + std::to_string(i) + " must be a scalar, got " +
                       ctx.in(i).DebugString());
    }
  }
  const T start = ctx.in(0).data<T>()[0];
  const T limit = ctx.in(1).data<T>()[0];
  const T delta = ctx.in(2).data<T>()[0];
  if (delta == T(0)) return tag.Error("delta must not be zero");
  int64_t n = 0;
  const int64_t max_n = kMaxOutputBytes / static_cast<int64_t>(sizeof(T));
  if constexpr (std::is_floating_point_v<T>) {
    double count = std::ceil((static_cast<double>(limit) - static_cast<double>(start)) /
                             static_cast<double>(delta));
    if (std::isnan(count)) return tag.Error("start, limit or delta is NaN");
    if (count > static_cast<double>(max_n)) return tag.Exhausted("range is too long");
    n = count > 0 ? static_cast<int64_t>(count) : 0;
  } else {
    __int128 diff = static_cast<__int128>(limit) - static_cast<__int128>(start);
    __int128 d = delta;
    __int128 q = diff / d;
    if (q * d != diff) ++q;  // ceil for the same-sign case; negative q clamps to 0 below
    if (q > max_n) return tag.Exhausted("range is too long");
    n = q > 0 ? static_cast<int64_t>(q) : 0;
  }
  Tensor& out = ctx.AllocateOutput(0, DataTypeOf<T>(), {n});
  T* o = out.data<T>();
  for (int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(start + static_cast<T>(i) * delta);
  return OkStatus();
}

class RangeKernel final : public Kernel {
 public:
  RangeKernel(const NodeInfo& node, DataType dtype) : tag_(node), dtype_(dtype) {}
  Status Run(KernelContext& ctx) const override {
    switch (dtype_) {
      case DataType::kFloat32:
        return RunRange<float>(ctx, tag_);
      case DataType::kFloat64:
        return RunRange<double>(ctx, tag_);
      case DataType::kInt16:
        return RunRange<int16_t>(ctx, tag_);
      case DataType::kInt32:
        return RunRange<int32_t>(ctx, tag_);
      default:
        return RunRange<int64_t>(ctx, tag_);
    }
  }

 private:
  NodeTag tag_;
  DataType dtype_;
};

Result<KernelInit> MakeRange(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(3, 3));
  for (size_t i = 0; i < 3; ++i) {
    IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32, DataType::kFloat64,
                                            DataType::kInt16, DataType::kInt32, DataType::kInt64}));
    if (node.input_types[i] != node.input_types[0]) {
      return node.Error("start, limit and delta must have the same data type");
    }
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<RangeKernel>(node, node.input_types[0]),
                    {node.input_types[0]}};
}

// ---------------------------------------------------------------- EyeLike

class EyeLikeKernel final : public Kernel {
 public:
  EyeLikeKernel(const NodeInfo& node, DataType dtype, int64_t k)
      : tag_(node), dtype_(dtype), k_(k) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.rank() != 2) return tag_.Error("input must be 2-D, got " + x.DebugString());
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, dtype_, x.shape()));
    const size_t es = DataTypeSize(dtype_);
    std::memset(out->raw_data(), 0, out->nbytes());
    char one[8];
    EncodeScalar(dtype_, 1.0, one);
    const int64_t rows = x.dim(0), cols = x.dim(1);
    char* o = static_cast<char*>(out->raw_data());
    for (int64_t i = 0; i < rows; ++i) {
      int64_t j = i + k_;
      if (j >= 0 && j < cols) std::memcpy(o + (i * cols + j) * static_cast<int64_t>(es), one, es);
    }
    return OkStatus();
  }

 private:
  NodeTag tag_;
  DataType dtype_;
  int64_t k_;
};

Result<KernelInit> MakeEyeLike(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  DataType dtype = node.input_types[0];
  if (node.attrs.Has("dtype")) {
    dtype = static_cast<DataType>(node.attrs.GetInt("dtype", 0));
    if (!IsSupportedStorageType(dtype)) {
      return node.Unsupported("dtype " + DataTypeName(dtype));
    }
  }
  int64_t k = node.attrs.GetInt("k", 0);
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<EyeLikeKernel>(node, dtype, k), {dtype}};
}

// ---------------------------------------------------------------- OneHot

class OneHotKernel final : public Kernel {
 public:
  OneHotKernel(const NodeInfo& node, int64_t axis, DataType dtype)
      : tag_(node), axis_(axis), dtype_(dtype) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& indices = ctx.in(0);
    const Tensor& depth_t = ctx.in(1);
    const Tensor& values = ctx.in(2);
    if (depth_t.numel() != 1) return tag_.Error("depth must hold one value");
    if (values.numel() != 2) return tag_.Error("values must hold [off_value, on_value]");
    const double depth_f = depth_t.GetAsDouble(0);
    if (!(depth_f >= 1)) return tag_.Error("depth must be positive");
    if (depth_f > static_cast<double>(kMaxOutputBytes)) return tag_.Exhausted("depth is too large");
    const auto depth = static_cast<int64_t>(depth_f);
    const int64_t r = static_cast<int64_t>(indices.rank()) + 1;
    IM_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(tag_, axis_, r));
    Shape shape = indices.shape();
    shape.insert(shape.begin() + axis, depth);
    IM_ASSIGN_OR_RETURN(Tensor * out, AllocChecked(ctx, tag_, 0, dtype_, shape));
    const size_t es = DataTypeSize(dtype_);
    const char* off = static_cast<const char*>(values.raw_data());
    const char* on = off + es;
    FillElements(out->raw_data(), out->numel(), es, off);
    int64_t inner = 1;
    for (size_t i = static_cast<size_t>(axis); i < indices.rank(); ++i) inner *= indices.dim(i);
    char* o = static_cast<char*>(out->raw_data());
    const bool integral =
        indices.dtype() != DataType::kFloat32 && indices.dtype() != DataType::kFloat64 &&
        indices.dtype() != DataType::kFloat16 && indices.dtype() != DataType::kBFloat16;
    for (int64_t i = 0; i < indices.numel(); ++i) {
      int64_t v;
      if (integral) {
        v = indices.GetAsInt64(i);
      } else {
        double d = indices.GetAsDouble(i);
        if (!(d > -depth_f - 1 && d < depth_f + 1)) continue;  // out of range or NaN: all off
        v = static_cast<int64_t>(d);
      }
      if (v < -depth || v >= depth) continue;
      if (v < 0) v += depth;
      const int64_t outer_i = i / inner, inner_i = i % inner;
      const int64_t pos = (outer_i * depth + v) * inner + inner_i;
      std::memcpy(o + pos * static_cast<int64_t>(es), on, es);
    }
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t axis_;
  DataType dtype_;
};

Result<KernelInit> MakeOneHot(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(3, 3));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 2));
  int64_t axis = node.attrs.GetInt("axis", -1);
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<OneHotKernel>(node, axis, node.input_types[2]),
                    {node.input_types[2]}};
}

}  // namespace

void RegisterShapeCreateKernels(KernelRegistry& r) {
  r.Add("Constant", 1, MakeConstant);
  r.Add("ConstantOfShape", 9, MakeConstantOfShape);
  r.Add("Range", 11, MakeRange);
  r.Add("EyeLike", 9, MakeEyeLike);
  r.Add("OneHot", 9, MakeOneHot);
}

}  // namespace infermesh::runtime::shape_ops
