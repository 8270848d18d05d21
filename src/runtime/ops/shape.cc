// Shape operator family: shape queries and views (Shape, Size, Reshape, Flatten,
// Squeeze, Unsqueeze, Identity, Dropout). View kernels never copy: their output
// shares the input's buffer (ctx.SetOutput(0, input.Reshaped(...))).
//
// The other members of the family (copies, gathers, padding, constants) live in
// ops/shape_*.cc and register through the hooks in ops/shape_internal.h.
#include <algorithm>
#include <memory>

#include "runtime/kernel.h"
#include "runtime/ops/shape_internal.h"

namespace infermesh::runtime {
namespace shape_ops {
namespace {

// ---------------------------------------------------------------- Shape, Size

class ShapeKernel final : public Kernel {
 public:
  ShapeKernel(const NodeInfo& node, int64_t start, std::optional<int64_t> end)
      : tag_(node), start_(start), end_(end) {}
  Status Run(KernelContext& ctx) const override {
    const Shape& s = ctx.in(0).shape();
    const int64_t r = static_cast<int64_t>(s.size());
    auto clamp = [r](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + r : v, 0, r); };
    const int64_t b = clamp(start_);
    const int64_t e = clamp(end_.value_or(r));
    const int64_t n = std::max<int64_t>(0, e - b);
    Tensor& out = ctx.AllocateOutput(0, DataType::kInt64, {n});
    for (int64_t i = 0; i < n; ++i) out.data<int64_t>()[i] = s[b + i];
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t start_;
  std::optional<int64_t> end_;
};

Result<KernelInit> MakeShape(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  int64_t start = 0;
  std::optional<int64_t> end;
  if (node.opset >= 15) {
    start = node.attrs.GetInt("start", 0);
    if (node.attrs.Has("end")) end = node.attrs.GetInt("end", 0);
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ShapeKernel>(node, start, end), {DataType::kInt64}};
}

class SizeKernel final : public Kernel {
 public:
  Status Run(KernelContext& ctx) const override {
    ctx.AllocateOutput(0, DataType::kInt64, {}).data<int64_t>()[0] = ctx.in(0).numel();
    return OkStatus();
  }
};

Result<KernelInit> MakeSize(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<SizeKernel>(), {DataType::kInt64}};
}

// ---------------------------------------------------------------- Reshape

// Output shape of Reshape(in, spec): 0 copies the input dimension (unless
// allowzero), one -1 is inferred from the element count.
Result<Shape> ReshapeTarget(const NodeTag& tag, const Shape& in, const std::vector<int64_t>& spec,
                            bool allowzero) {
  Shape out(spec.begin(), spec.end());
  int64_t infer = -1;
  int64_t known = 1;
  int64_t numel = NumElements(in);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == 0 && !allowzero) {
      if (i >= in.size()) {
        return tag.Error("shape " + ShapeToString(spec) + " copies dimension " + std::to_string(i) +
                         " of input " + ShapeToString(in) + " which has no such dimension");
      }
      out[i] = in[i];
    } else if (out[i] == -1) {
      if (infer >= 0) return tag.Error("shape " + ShapeToString(spec) + " has more than one -1");
      infer = static_cast<int64_t>(i);
      continue;
    } else if (out[i] < 0) {
      return tag.Error("shape " + ShapeToString(spec) + " has a negative dimension");
    }
    if (__builtin_mul_overflow(known, out[i], &known)) {
      return tag.Error("shape " + ShapeToString(spec) + " overflows");
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0) {
      return tag.Error("cannot infer the -1 dimension of " + ShapeToString(spec) + " for input " +
                       ShapeToString(in));
    }
    out[infer] = numel / known;
    known = numel;
  }
  if (known != numel) {
    return tag.Error("cannot reshape input " + ShapeToString(in) + " to " + ShapeToString(spec));
  }
  return out;
}

class ReshapeKernel final : public Kernel {
 public:
  ReshapeKernel(const NodeInfo& node, bool allowzero) : tag_(node), allowzero_(allowzero) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& spec = ctx.in(1);
    if (spec.rank() != 1) return tag_.Error("shape input must be 1-D, got " + spec.DebugString());
    IM_ASSIGN_OR_RETURN(Shape out,
                        ReshapeTarget(tag_, ctx.in(0).shape(), ReadInts(spec), allowzero_));
    IM_ASSIGN_OR_RETURN(Tensor view, ctx.in(0).Reshaped(std::move(out)));
    ctx.SetOutput(0, std::move(view));
    return OkStatus();
  }

 private:
  NodeTag tag_;
  bool allowzero_;
};

Result<KernelInit> MakeReshape(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
  bool allowzero = node.opset >= 14 && node.attrs.GetInt("allowzero", 0) != 0;
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ReshapeKernel>(node, allowzero), {node.input_types[0]}};
}

// ---------------------------------------------------------------- Flatten

class FlattenKernel final : public Kernel {
 public:
  FlattenKernel(const NodeInfo& node, int64_t axis) : tag_(node), axis_(axis) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const int64_t r = static_cast<int64_t>(x.rank());
    int64_t a = axis_ < 0 ? axis_ + r : axis_;
    if (a < 0 || a > r) {
      return tag_.Error("axis " + std::to_string(axis_) + " is out of range for rank " +
                        std::to_string(r));
    }
    int64_t outer = 1;
    for (int64_t i = 0; i < a; ++i) outer *= x.dim(static_cast<size_t>(i));
    int64_t inner = 1;
    for (int64_t i = a; i < r; ++i) inner *= x.dim(static_cast<size_t>(i));
    IM_ASSIGN_OR_RETURN(Tensor view, x.Reshaped({outer, inner}));
    ctx.SetOutput(0, std::move(view));
    return OkStatus();
  }

 private:
  NodeTag tag_;
  int64_t axis_;
};

Result<KernelInit> MakeFlatten(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  int64_t axis = node.attrs.GetInt("axis", 1);
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<FlattenKernel>(node, axis), {node.input_types[0]}};
}

// ---------------------------------------------------------------- Squeeze, Unsqueeze

// Axes come from an attribute (opset < 13) or from input 1 (opset >= 13).
class AxesViewKernel final : public Kernel {
 public:
  AxesViewKernel(const NodeInfo& node, bool unsqueeze, std::optional<std::vector<int64_t>> axes)
      : tag_(node), unsqueeze_(unsqueeze), axes_(std::move(axes)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    std::optional<std::vector<int64_t>> axes = axes_;
    if (!axes && ctx.input(1) != nullptr) {
      if (ctx.in(1).rank() > 1) return tag_.Error("axes input must be 1-D");
      axes = ReadInts(ctx.in(1));
    }
    Shape out;
    if (unsqueeze_) {
      if (!axes) return tag_.Error("axes are required");
      IM_ASSIGN_OR_RETURN(out, Unsqueezed(x.shape(), *axes));
    } else {
      IM_ASSIGN_OR_RETURN(out, Squeezed(x.shape(), axes));
    }
    IM_ASSIGN_OR_RETURN(Tensor view, x.Reshaped(std::move(out)));
    ctx.SetOutput(0, std::move(view));
    return OkStatus();
  }

 private:
  Result<Shape> Squeezed(const Shape& in, const std::optional<std::vector<int64_t>>& axes) const {
    const int64_t r = static_cast<int64_t>(in.size());
    std::vector<bool> drop(in.size(), false);
    if (!axes || axes->empty()) {
      for (size_t i = 0; i < in.size(); ++i) drop[i] = in[i] == 1;
    } else {
      for (int64_t a : *axes) {
        IM_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(tag_, a, r));
        if (in[static_cast<size_t>(n)] != 1) {
          return tag_.Error("cannot squeeze axis " + std::to_string(a) + " of shape " +
                            ShapeToString(in) + ": dimension is not 1");
        }
        drop[static_cast<size_t>(n)] = true;
      }
    }
    Shape out;
    for (size_t i = 0; i < in.size(); ++i) {
      if (!drop[i]) out.push_back(in[i]);
    }
    return out;
  }

  Result<Shape> Unsqueezed(const Shape& in, const std::vector<int64_t>& axes) const {
    const int64_t r = static_cast<int64_t>(in.size() + axes.size());
    std::vector<bool> inserted(static_cast<size_t>(r), false);
    for (int64_t a : axes) {
      IM_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(tag_, a, r));
      if (inserted[static_cast<size_t>(n)]) {
        return tag_.Error("axis " + std::to_string(a) + " is repeated");
      }
      inserted[static_cast<size_t>(n)] = true;
    }
    Shape out;
    size_t k = 0;
    for (size_t i = 0; i < inserted.size(); ++i) out.push_back(inserted[i] ? 1 : in[k++]);
    return out;
  }

  NodeTag tag_;
  bool unsqueeze_;
  std::optional<std::vector<int64_t>> axes_;
};

Result<KernelInit> MakeAxesView(const NodeInfo& node, bool unsqueeze) {
  std::optional<std::vector<int64_t>> axes;
  if (node.opset >= 13) {
    IM_RETURN_IF_ERROR(node.RequireInputCount(unsqueeze ? 2 : 1, 2));
    IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
  } else {
    IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
    if (node.attrs.Has("axes")) {
      axes = node.attrs.GetInts("axes");
    } else if (unsqueeze) {
      return node.Error("attribute 'axes' is required");
    }
  }
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<AxesViewKernel>(node, unsqueeze, std::move(axes)),
                    {node.input_types[0]}};
}

// ---------------------------------------------------------------- Identity, Dropout

class IdentityKernel final : public Kernel {
 public:
  Status Run(KernelContext& ctx) const override {
    ctx.SetOutput(0, ctx.in(0));
    return OkStatus();
  }
};

Result<KernelInit> MakeIdentity(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<IdentityKernel>(), {node.input_types[0]}};
}

// Inference-only Dropout: the output is the input and the mask is all true. A
// training-mode run with a non-zero ratio would need random numbers: Unsupported.
class DropoutKernel final : public Kernel {
 public:
  DropoutKernel(const NodeInfo& node, bool want_mask, DataType mask_type)
      : tag_(node), want_mask_(want_mask), mask_type_(mask_type) {}
  Status Run(KernelContext& ctx) const override {
    const Tensor* training = ctx.input(2);
    if (training != nullptr && training->numel() > 0 && training->GetAsInt64(0) != 0) {
      double ratio =
          ctx.input(1) != nullptr && ctx.in(1).numel() > 0 ? ctx.in(1).GetAsDouble(0) : 0.5;
      if (ratio != 0.0) return tag_.Unsupported("training_mode with a non-zero ratio");
    }
    const Tensor& x = ctx.in(0);
    ctx.SetOutput(0, x);
    if (want_mask_) {
      Tensor& mask = ctx.AllocateOutput(1, mask_type_, x.shape());
      char one[8];
      EncodeScalar(mask_type_, 1.0, one);
      FillElements(mask.raw_data(), mask.numel(), DataTypeSize(mask_type_), one);
    }
    return OkStatus();
  }

 private:
  NodeTag tag_;
  bool want_mask_;
  DataType mask_type_;
};

Result<KernelInit> MakeDropout(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, node.opset >= 12 ? 3 : 1));
  IM_RETURN_IF_ERROR(RequireStorageType(node, 0));
  if (node.opset >= 12) {
    (void)node.attrs.GetInt("seed", 0);
    IM_RETURN_IF_ERROR(node.RequireType(
        1, {DataType::kFloat32, DataType::kFloat16, DataType::kFloat64, DataType::kBFloat16}));
    IM_RETURN_IF_ERROR(node.RequireType(2, {DataType::kBool}));
    if (node.const_inputs.size() > 2 && node.const_inputs[2] && node.const_inputs[2]->numel() > 0 &&
        node.const_inputs[2]->GetAsInt64(0) != 0) {
      double ratio = 0.5;
      if (node.const_inputs.size() > 1 && node.const_inputs[1]) {
        ratio = node.const_inputs[1]->GetAsDouble(0);
      } else if (node.HasInput(1)) {
        ratio = -1;  // unknown until run time
      }
      if (ratio > 0) return node.Unsupported("training_mode with a non-zero ratio");
    }
  } else {
    (void)node.attrs.GetFloat("ratio", 0.5f);
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  // Opsets 7-9 type the mask like the data; opset 10 made it bool.
  DataType mask_type = node.opset >= 10 ? DataType::kBool : node.input_types[0];
  bool want_mask = OutputWanted(node, 1);
  std::vector<DataType> out_types{node.input_types[0]};
  if (node.num_outputs > 1) out_types.push_back(want_mask ? mask_type : DataType::kUndefined);
  return KernelInit{std::make_unique<DropoutKernel>(node, want_mask, mask_type), out_types};
}

}  // namespace

void RegisterShapeViewKernels(KernelRegistry& r) {
  r.Add("Shape", 1, MakeShape);
  r.Add("Shape", 15, MakeShape);
  r.Add("Size", 1, MakeSize);
  r.Add("Reshape", 5, MakeReshape);
  r.Add("Reshape", 14, MakeReshape);
  r.Add("Flatten", 1, MakeFlatten);
  auto squeeze = [](const NodeInfo& n) { return MakeAxesView(n, false); };
  auto unsqueeze = [](const NodeInfo& n) { return MakeAxesView(n, true); };
  r.Add("Squeeze", 1, squeeze);
  r.Add("Squeeze", 13, squeeze);
  r.Add("Unsqueeze", 1, unsqueeze);
  r.Add("Unsqueeze", 13, unsqueeze);
  r.Add("Identity", 1, MakeIdentity);
  r.Add("Dropout", 7, MakeDropout);
  r.Add("Dropout", 10, MakeDropout);
  r.Add("Dropout", 12, MakeDropout);
}

}  // namespace shape_ops

void RegisterShapeKernels(KernelRegistry& r) {
  shape_ops::RegisterShapeViewKernels(r);
  shape_ops::RegisterShapeCreateKernels(r);
  shape_ops::RegisterShapeCopyKernels(r);
  shape_ops::RegisterShapePadKernels(r);
  shape_ops::RegisterShapeGatherKernels(r);
}

}  // namespace infermesh::runtime
