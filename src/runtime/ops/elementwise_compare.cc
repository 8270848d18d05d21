// Broadcasting comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual), logic
// (And, Or, Xor), BitShift and Where.
#include "runtime/ops/elementwise_internal.h"

namespace infermesh::runtime::elementwise {
namespace {

struct EqualOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a == b;
  }
};
struct LessOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a < b;
  }
};
struct GreaterOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a > b;
  }
};
struct LessOrEqualOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a <= b;
  }
};
struct GreaterOrEqualOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a >= b;
  }
};

// Bool output from two inputs of one type, broadcast.
template <typename Op>
class CompareKernel final : public Kernel {
 public:
  CompareKernel(std::string name, Op op) : name_(std::move(name)), op_(op) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    if (b.dtype() != a.dtype()) return TypeMismatch(name_, 1, b);
    IM_ASSIGN_OR_RETURN(Shape shape, BroadcastOrError(name_, a, b));
    BroadcastPlan plan({&a.shape(), &b.shape()}, shape);
    Tensor& out = ctx.AllocateOutput(0, DataType::kBool, shape);
    bool* o = out.data<bool>();
    auto f = [this](auto x, auto y) { return op_(x, y); };
    if (IsHalf(a.dtype())) {
      Tensor af = ToFloat32(a, ctx);
      Tensor bf = ToFloat32(b, ctx);
      BinaryLoop(ctx, plan, af.data<float>(), bf.data<float>(), o, kGrain, f);
      return OkStatus();
    }
    if (a.dtype() == DataType::kBool) {  // bytes are 0 or 1
      BinaryLoop(ctx, plan, a.data<uint8_t>(), b.data<uint8_t>(), o, kGrain, f);
      return OkStatus();
    }
    const bool ok = DispatchNative(a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      BinaryLoop(ctx, plan, a.data<T>(), b.data<T>(), o, kGrain, f);
    });
    return ok ? OkStatus() : TypeMismatch(name_, 0, a);
  }

 private:
  std::string name_;
  Op op_;
};

Status RequireSameTypes(const NodeInfo& node) {
  if (node.input_types[1] != node.input_types[0]) {
    return node.Error("input types differ: " + DataTypeName(node.input_types[0]) + " and " +
                      DataTypeName(node.input_types[1]));
  }
  return OkStatus();
}

template <typename Op>
Result<KernelInit> MakeCompare(const NodeInfo& node, Op op, bool allow_bool) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  if (allow_bool && node.input_types[0] == DataType::kBool) {
    // accepted
  } else {
    IM_RETURN_IF_ERROR(node.RequireType(
        0, {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt8,
            DataType::kInt16, DataType::kInt32, DataType::kInt64, DataType::kUint8,
            DataType::kUint16, DataType::kUint32, DataType::kUint64}));
  }
  IM_RETURN_IF_ERROR(RequireSameTypes(node));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<CompareKernel<Op>>(node.name, op), {DataType::kBool}};
}

// And / Or / Xor on bools (stored as bytes 0 or 1).
template <typename Op>
class LogicKernel final : public Kernel {
 public:
  LogicKernel(std::string name, Op op) : name_(std::move(name)), op_(op) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    if (a.dtype() != DataType::kBool) return TypeMismatch(name_, 0, a);
    if (b.dtype() != DataType::kBool) return TypeMismatch(name_, 1, b);
    IM_ASSIGN_OR_RETURN(Shape shape, BroadcastOrError(name_, a, b));
    BroadcastPlan plan({&a.shape(), &b.shape()}, shape);
    Tensor& out = ctx.AllocateOutput(0, DataType::kBool, shape);
    BinaryLoop(ctx, plan, a.data<uint8_t>(), b.data<uint8_t>(), out.data<uint8_t>(), kGrain,
               [this](uint8_t x, uint8_t y) { return static_cast<uint8_t>(op_(x != 0, y != 0)); });
    return OkStatus();
  }

 private:
  std::string name_;
  Op op_;
};

template <typename Op>
Result<KernelInit> MakeLogic(const NodeInfo& node, Op op) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kBool}));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kBool}));
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<LogicKernel<Op>>(node.name, op), {DataType::kBool}};
}

// BitShift on unsigned integers; shifting by the bit width or more gives 0.
class BitShiftKernel final : public Kernel {
 public:
  BitShiftKernel(std::string name, bool left) : name_(std::move(name)), left_(left) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    if (b.dtype() != a.dtype()) return TypeMismatch(name_, 1, b);
    IM_ASSIGN_OR_RETURN(Shape shape, BroadcastOrError(name_, a, b));
    BroadcastPlan plan({&a.shape(), &b.shape()}, shape);
    Tensor& out = ctx.AllocateOutput(0, a.dtype(), shape);
    const bool left = left_;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      BinaryLoop(ctx, plan, a.data<T>(), b.data<T>(), out.data<T>(), kGrain, [left](T x, T s) {
        if (s >= sizeof(T) * 8) return T(0);
        using W = WrapType<T>;
        return static_cast<T>(left ? static_cast<W>(x) << s : static_cast<W>(x) >> s);
      });
    };
    switch (a.dtype()) {
      case DataType::kUint8:
        run(uint8_t{});
        break;
      case DataType::kUint16:
        run(uint16_t{});
        break;
      case DataType::kUint32:
        run(uint32_t{});
        break;
      case DataType::kUint64:
        run(uint64_t{});
        break;
      default:
        return TypeMismatch(name_, 0, a);
    }
    return OkStatus();
  }

 private:
  std::string name_;
  bool left_;
};

Result<KernelInit> MakeBitShift(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(node.RequireType(
      0, {DataType::kUint8, DataType::kUint16, DataType::kUint32, DataType::kUint64}));
  IM_RETURN_IF_ERROR(RequireSameTypes(node));
  if (!node.attrs.Has("direction")) return node.Error("attribute 'direction' is required");
  const std::string direction = node.attrs.GetString("direction", "");
  if (direction != "LEFT" && direction != "RIGHT") {
    return node.Error("attribute 'direction' must be LEFT or RIGHT, got \"" + direction + "\"");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<BitShiftKernel>(node.name, direction == "LEFT"),
                    {node.input_types[0]}};
}

// Where(cond, x, y): three-way broadcast; x and y of any storage type, moved as bytes.
class WhereKernel final : public Kernel {
 public:
  explicit WhereKernel(std::string name) : name_(std::move(name)) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& c = ctx.in(0);
    const Tensor& x = ctx.in(1);
    const Tensor& y = ctx.in(2);
    if (c.dtype() != DataType::kBool) return TypeMismatch(name_, 0, c);
    if (y.dtype() != x.dtype()) return TypeMismatch(name_, 2, y);
    const Shape* shapes[] = {&c.shape(), &x.shape(), &y.shape()};
    auto shape_or = BroadcastShapes(std::span<const Shape* const>(shapes, 3));
    if (!shape_or.ok()) {
      return InvalidArgument("node '" + name_ + "': " + shape_or.status().message());
    }
    const Shape& shape = *shape_or;
    BroadcastPlan plan(std::span<const Shape* const>(shapes, 3), shape);
    Tensor& out = ctx.AllocateOutput(0, x.dtype(), shape);
    const uint8_t* cp = c.data<uint8_t>();
    const int64_t sc = plan.inner_step(0), sx = plan.inner_step(1), sy = plan.inner_step(2);
    const bool ok = DispatchBySize(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* xp = static_cast<const T*>(x.raw_data());
      const T* yp = static_cast<const T*>(y.raw_data());
      T* op = static_cast<T*>(out.raw_data());
      ctx.ParallelFor(plan.numel(), kGrain, [&](int64_t begin, int64_t end) {
        plan.ForEachRun(begin, end, [&](const int64_t* in, int64_t o, int64_t n) {
          const uint8_t* pc = cp + in[0];
          const T* px = xp + in[1];
          const T* py = yp + in[2];
          T* po = op + o;
          if (sc == 1 && sx == 1 && sy == 1) {
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) po[i] = pc[i] ? px[i] : py[i];
          } else {
            for (int64_t i = 0; i < n; ++i) po[i] = pc[i * sc] ? px[i * sx] : py[i * sy];
          }
        });
      });
    });
    return ok ? OkStatus() : TypeMismatch(name_, 1, x);
  }

 private:
  std::string name_;
};

Result<KernelInit> MakeWhere(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(3, 3));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kBool}));
  const DataType t = node.input_types[1];
  if (t == DataType::kFloat64 || !IsSupportedStorageType(t) || t == DataType::kString) {
    return node.Unsupported("input 1 has data type " + DataTypeName(t));
  }
  if (node.input_types[2] != t) {
    return node.Error("input types differ: " + DataTypeName(t) + " and " +
                      DataTypeName(node.input_types[2]));
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<WhereKernel>(node.name), {t}};
}

}  // namespace

void RegisterCompareKernels(KernelRegistry& r) {
  r.Add("Equal", 7, [](const NodeInfo& n) { return MakeCompare(n, EqualOp{}, true); });
  r.Add("Less", 7, [](const NodeInfo& n) { return MakeCompare(n, LessOp{}, false); });
  r.Add("Greater", 7, [](const NodeInfo& n) { return MakeCompare(n, GreaterOp{}, false); });
  r.Add("LessOrEqual", 12,
        [](const NodeInfo& n) { return MakeCompare(n, LessOrEqualOp{}, false); });
  r.Add("GreaterOrEqual", 12,
        [](const NodeInfo& n) { return MakeCompare(n, GreaterOrEqualOp{}, false); });
  r.Add("And", 7,
        [](const NodeInfo& n) { return MakeLogic(n, [](bool a, bool b) { return a && b; }); });
  r.Add("Or", 7,
        [](const NodeInfo& n) { return MakeLogic(n, [](bool a, bool b) { return a || b; }); });
  r.Add("Xor", 7,
        [](const NodeInfo& n) { return MakeLogic(n, [](bool a, bool b) { return a != b; }); });
  r.Add("BitShift", 11, MakeBitShift);
  r.Add("Where", 9, MakeWhere);
}

}  // namespace infermesh::runtime::elementwise
