// MatMul (numpy semantics: batched, broadcast batch dimensions, 1-D operands) and
// Gemm. float32 goes through runtime/gemm.h (oneDNN); int32/int64 MatMul uses a
// plain loop, since integer matrix products only appear on small shape tensors.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "runtime/gemm.h"
#include "runtime/kernel.h"
#include "runtime/ops/broadcast.h"
#include "runtime/ops/math_internal.h"

namespace infermesh::runtime::math {
namespace {

// Multiply-adds per GEMM below which threads take whole GEMMs of a batch.
constexpr int64_t kSmallGemmFlops = 64 * 64 * 64;

// The shapes of one MatMul, resolved at run time.
struct MatMulPlan {
  int64_t m = 1, n = 1, k = 1;
  Shape batch;    // broadcast batch shape
  Shape a_batch;  // A's batch dims (before broadcasting)
  Shape b_batch;  // B's batch dims
  Shape out_shape;
};

Result<MatMulPlan> PlanMatMul(const Shape& a, const Shape& b, const std::string& node) {
  if (a.empty() || b.empty()) {
    return InvalidArgument("node '" + node + "' (MatMul): operands must have rank >= 1, got " +
                           ShapeToString(a) + " and " + ShapeToString(b));
  }
  MatMulPlan p;
  const bool a_vec = a.size() == 1;
  const bool b_vec = b.size() == 1;
  p.m = a_vec ? 1 : a[a.size() - 2];
  p.k = a.back();
  const int64_t kb = b_vec ? b[0] : b[b.size() - 2];
  p.n = b_vec ? 1 : b.back();
  if (kb != p.k) {
    return InvalidArgument("node '" + node + "' (MatMul): inner dimensions differ: " +
                           ShapeToString(a) + " x " + ShapeToString(b));
  }
  if (!a_vec) p.a_batch.assign(a.begin(), a.end() - 2);
  if (!b_vec) p.b_batch.assign(b.begin(), b.end() - 2);
  auto batch = BroadcastShapes(p.a_batch, p.b_batch);
  if (!batch.ok()) {
    return InvalidArgument("node '" + node + "' (MatMul): batch dimensions do not broadcast: " +
                           ShapeToString(a) + " x " + ShapeToString(b));
  }
  p.batch = std::move(batch).value();
  p.out_shape = p.batch;
  if (!a_vec) p.out_shape.push_back(p.m);
  if (!b_vec) p.out_shape.push_back(p.n);
  return p;
}

// Offsets (in matrices) of A's and B's matrix for each output batch entry.
void BatchOffsets(const MatMulPlan& p, std::vector<int64_t>& a_idx, std::vector<int64_t>& b_idx) {
  const int64_t count = NumElements(p.batch);
  a_idx.assign(static_cast<size_t>(count), 0);
  b_idx.assign(static_cast<size_t>(count), 0);
  const auto sa = BroadcastStrides(p.a_batch, p.batch);
  const auto sb = BroadcastStrides(p.b_batch, p.batch);
  std::vector<int64_t> idx(p.batch.size(), 0);
  for (int64_t i = 0; i < count; ++i) {
    int64_t oa = 0, ob = 0;
    for (size_t d = 0; d < idx.size(); ++d) {
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    a_idx[static_cast<size_t>(i)] = oa;
    b_idx[static_cast<size_t>(i)] = ob;
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < p.batch[d]) break;
      idx[d] = 0;
    }
  }
}

Status RunFloatMatMul(const MatMulPlan& p, const float* a, const float* b, float* c,
                      KernelContext& ctx) {
  const int64_t a_count = NumElements(p.a_batch);
  const int64_t b_count = NumElements(p.b_batch);
  const int64_t out_count = NumElements(p.batch);
  const int64_t a_mat = p.m * p.k, b_mat = p.k * p.n, c_mat = p.m * p.n;
  if (b_count == 1) {
    // B is one matrix: fold A's batch into rows, one big GEMM (the Linear layer case).
    return Sgemm({.m = out_count * p.m, .n = p.n, .k = p.k}, a, b, c);
  }
  GemmParams g{.m = p.m, .n = p.n, .k = p.k};
  if (a_count == out_count && b_count == out_count) {
    // Equal counts mean equal batch layouts (size-1 dims aside): plain strides.
    return SgemmBatched(g, out_count, a, a_mat, b, b_mat, c, c_mat, &ctx.pool());
  }
  if (a_count == 1) {
    return SgemmBatched(g, out_count, a, 0, b, b_mat, c, c_mat, &ctx.pool());
  }
  std::vector<int64_t> a_idx, b_idx;
  BatchOffsets(p, a_idx, b_idx);
  if (p.m * p.n * p.k >= kSmallGemmFlops || out_count == 1) {
    for (int64_t i = 0; i < out_count; ++i) {
      IM_RETURN_IF_ERROR(Sgemm(g, a + a_idx[i] * a_mat, b + b_idx[i] * b_mat, c + i * c_mat));
    }
    return OkStatus();
  }
  std::vector<Status> failures(static_cast<size_t>(out_count));
  ctx.ParallelFor(out_count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      failures[i] = Sgemm(g, a + a_idx[i] * a_mat, b + b_idx[i] * b_mat, c + i * c_mat);
    }
  });
  for (auto& s : failures) IM_RETURN_IF_ERROR(s);
  return OkStatus();
}

template <typename T>
void RunIntMatMul(const MatMulPlan& p, const T* a, const T* b, T* c) {
  std::vector<int64_t> a_idx, b_idx;
  BatchOffsets(p, a_idx, b_idx);
  const int64_t a_mat = p.m * p.k, b_mat = p.k * p.n, c_mat = p.m * p.n;
  for (size_t i = 0; i < a_idx.size(); ++i) {
    const T* ab = a + a_idx[i] * a_mat;
    const T* bb = b + b_idx[i] * b_mat;
    T* cb = c + static_cast<int64_t>(i) * c_mat;
    std::fill(cb, cb + c_mat, T{0});
    for (int64_t r = 0; r < p.m; ++r) {
      for (int64_t kk = 0; kk < p.k; ++kk) {
        const T av = ab[r * p.k + kk];
        const T* brow = bb + kk * p.n;
        T* crow = cb + r * p.n;
        for (int64_t j = 0; j < p.n; ++j) crow[j] += av * brow[j];
      }
    }
  }
}

class MatMulKernel final : public Kernel {
 public:
  MatMulKernel(std::string name, DataType dtype) : name_(std::move(name)), dtype_(dtype) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    IM_ASSIGN_OR_RETURN(MatMulPlan p, PlanMatMul(a.shape(), b.shape(), name_));
    Tensor& y = ctx.AllocateOutput(0, dtype_, p.out_shape);
    if (y.numel() == 0) return OkStatus();
    switch (dtype_) {
      case DataType::kFloat32:
        return RunFloatMatMul(p, a.data<float>(), b.data<float>(), y.data<float>(), ctx);
      case DataType::kInt32:
        RunIntMatMul(p, a.data<int32_t>(), b.data<int32_t>(), y.data<int32_t>());
        return OkStatus();
      case DataType::kInt64:
        RunIntMatMul(p, a.data<int64_t>(), b.data<int64_t>(), y.data<int64_t>());
        return OkStatus();
      default:
        return Internal("MatMul: unexpected data type");
    }
  }

 private:
  std::string name_;
  DataType dtype_;
};

Result<KernelInit> MakeMatMul(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 2));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32, DataType::kInt32, DataType::kInt64}));
  if (node.input_types[1] != node.input_types[0]) {
    return node.Error("inputs have different data types " + DataTypeName(node.input_types[0]) +
                      " and " + DataTypeName(node.input_types[1]));
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  const DataType t = node.input_types[0];
  return KernelInit{std::make_unique<MatMulKernel>(node.name, t), {t}};
}

// Gemm: Y = alpha * op(A) * op(B) + beta * C, C unidirectionally broadcast to [M, N].
class GemmKernel final : public Kernel {
 public:
  GemmKernel(std::string name, float alpha, float beta, bool trans_a, bool trans_b)
      : name_(std::move(name)), alpha_(alpha), beta_(beta), trans_a_(trans_a), trans_b_(trans_b) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    const Tensor* c = ctx.input(2);
    if (a.rank() != 2 || b.rank() != 2) {
      return InvalidArgument("node '" + name_ + "' (Gemm): A and B must be 2-D, got " +
                             ShapeToString(a.shape()) + " and " + ShapeToString(b.shape()));
    }
    const int64_t m = trans_a_ ? a.dim(1) : a.dim(0);
    const int64_t k = trans_a_ ? a.dim(0) : a.dim(1);
    const int64_t kb = trans_b_ ? b.dim(1) : b.dim(0);
    const int64_t n = trans_b_ ? b.dim(0) : b.dim(1);
    if (k != kb) {
      return InvalidArgument("node '" + name_ + "' (Gemm): inner dimensions differ: A " +
                             ShapeToString(a.shape()) + (trans_a_ ? "^T" : "") + " x B " +
                             ShapeToString(b.shape()) + (trans_b_ ? "^T" : ""));
    }
    const Shape out_shape{m, n};
    if (c != nullptr && !IsUnidirectionallyBroadcastable(c->shape(), out_shape)) {
      return InvalidArgument("node '" + name_ + "' (Gemm): C of shape " +
                             ShapeToString(c->shape()) + " does not broadcast to " +
                             ShapeToString(out_shape));
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, out_shape);
    if (y.numel() == 0) return OkStatus();
    float* yd = y.data<float>();
    float beta = 0.0f;
    if (c != nullptr && beta_ != 0.0f) {
      // Y = beta * broadcast(C); the GEMM then accumulates into it.
      const auto strides = BroadcastStrides(c->shape(), out_shape);
      const float* cd = c->data<float>();
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) yd[i * n + j] = beta_ * cd[i * strides[0] + j * strides[1]];
      }
      beta = 1.0f;
    }
    GemmParams g{.m = m,
                 .n = n,
                 .k = k,
                 .trans_a = trans_a_,
                 .trans_b = trans_b_,
                 .alpha = alpha_,
                 .beta = beta};
    return Sgemm(g, a.data<float>(), b.data<float>(), yd);
  }

 private:
  std::string name_;
  float alpha_, beta_;
  bool trans_a_, trans_b_;
};

Result<KernelInit> MakeGemm(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 3));
  for (size_t i = 0; i < 3; ++i) IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32}));
  const float alpha = node.attrs.GetFloat("alpha", 1.0f);
  const float beta = node.attrs.GetFloat("beta", 1.0f);
  const int64_t trans_a = node.attrs.GetInt("transA", 0);
  const int64_t trans_b = node.attrs.GetInt("transB", 0);
  if ((trans_a != 0 && trans_a != 1) || (trans_b != 0 && trans_b != 1)) {
    return node.Error("transA and transB must be 0 or 1");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{
      std::make_unique<GemmKernel>(node.name, alpha, beta, trans_a != 0, trans_b != 0),
      {DataType::kFloat32}};
}

}  // namespace

void RegisterMatMulKernels(KernelRegistry& r) {
  r.Add("MatMul", 1, MakeMatMul);
  // Opset 7 replaced the `broadcast` attribute with unidirectional broadcasting of C;
  // opset 11 made C optional (accepted here for 7..10 too).
  r.Add("Gemm", 7, MakeGemm);
}

}  // namespace infermesh::runtime::math
