#include "runtime/graph_fusion.h"

#include <omp.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "runtime/encoder/kernels.h"
#include "runtime/encoder/linear.h"
#include "runtime/gemm.h"
#include "runtime/ops/elementwise_fast_math.h"

namespace infermesh::runtime {
namespace {

using encoder::Epilogue;
using encoder::LinearKind;
using encoder::PackedWeight;

// Rows per oneDNN call: LinearKind creates a primitive per row count, so row counts
// are bounded to full 1024-row chunks, multiples of 16 below that, and a tail under
// 16 (at most 1 + 63 + 15 shapes per kind, within its primitive cache).
constexpr int64_t kChunkRows = 1024;
constexpr int64_t kRowQuantum = 16;
// Elements below which a fused pass runs on one thread (waking the second costs
// more than it saves on small tensors).
constexpr int64_t kSerialElements = 1 << 14;

// ---------------------------------------------------------------------------------
// Fused kernels

class LinearKernel final : public Kernel {
 public:
  LinearKernel(std::shared_ptr<LinearKind> kind, PackedWeight w, int threads)
      : kind_(std::move(kind)), w_(std::move(w)), threads_(threads) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const int64_t k = kind_->spec().k, n = kind_->spec().n;
    if (x.dtype() != DataType::kFloat32 || x.rank() < 1 || x.shape().back() != k) {
      return InvalidArgument("Linear: input " + x.DebugString() + " is not [..., " +
                             std::to_string(k) + "] float32");
    }
    Shape shape = x.shape();
    shape.back() = n;
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, shape);
    const int64_t rows = x.numel() / std::max<int64_t>(k, 1);
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    for (int64_t begin = 0; begin < rows;) {
      int64_t chunk = std::min(kChunkRows, rows - begin);
      if (chunk < kChunkRows && chunk >= kRowQuantum) chunk -= chunk % kRowQuantum;
      // Small products run on this thread alone (kSerialGemmMacs). The choice depends
      // only on the row count, as does LinearKind's primitive, so a primitive always
      // runs with the team it was created with.
      omp_set_num_threads(chunk * k * n < kSerialGemmMacs ? 1 : threads_);
      IM_RETURN_IF_ERROR(kind_->Run(w_, chunk, xp + begin * k, yp + begin * n));
      begin += chunk;
    }
    return OkStatus();
  }

 private:
  std::shared_ptr<LinearKind> kind_;
  PackedWeight w_;
  int threads_;
};

// out = LayerNorm(a [+ b]) over the last axis. A residual that does not have a's shape
// goes through the original Add kernel (ONNX broadcasting) first.
class LayerNormKernel final : public Kernel {
 public:
  LayerNormKernel(std::vector<float> gamma, std::vector<float> beta, float eps,
                  std::unique_ptr<Kernel> add, int threads)
      : gamma_(std::move(gamma)),
        beta_(std::move(beta)),
        eps_(eps),
        add_(std::move(add)),
        threads_(threads) {}

  // A LayerNormalization node written with a positive axis: the fused pass serves it
  // when that axis is the last one at run time, and the node's own kernel otherwise.
  void SetAxis(int64_t axis, std::unique_ptr<Kernel> node, Tensor gamma, Tensor beta) {
    axis_ = axis;
    node_ = std::move(node);
    gamma_t_ = std::move(gamma);
    beta_t_ = std::move(beta);
  }

  Status Run(KernelContext& ctx) const override {
    const Tensor* a = &ctx.in(0);
    Tensor summed;
    const bool other_axis =
        node_ && axis_ != -1 && axis_ != static_cast<int64_t>(ctx.in(0).rank()) - 1;
    if (add_ && (other_axis || ctx.in(1).shape() != a->shape())) {
      KernelContext sub(
          {a, &ctx.in(1)}, 1, [&ctx](DataType d, const Shape& s) { return ctx.Scratch(d, s); },
          &ctx.pool());
      IM_RETURN_IF_ERROR(add_->Run(sub));
      summed = std::move(sub.outputs()[0]);
      a = &summed;
    }
    if (other_axis) {
      KernelContext sub(
          {a, &gamma_t_, &beta_t_}, 1,
          [&ctx](DataType d, const Shape& s) { return ctx.Scratch(d, s); }, &ctx.pool());
      IM_RETURN_IF_ERROR(node_->Run(sub));
      ctx.SetOutput(0, std::move(sub.outputs()[0]));
      return OkStatus();
    }
    const int64_t n = static_cast<int64_t>(gamma_.size());
    if (a->dtype() != DataType::kFloat32 || a->rank() < 1 || a->shape().back() != n) {
      return InvalidArgument("LayerNorm: input " + a->DebugString() + " is not [..., " +
                             std::to_string(n) + "] float32");
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, a->shape());
    const float* ap = a->data<float>();
    float* yp = y.data<float>();
    const int64_t total = a->numel();
    if (add_ && a == &ctx.in(0)) {
      const float* bp = ctx.in(1).data<float>();
      for (int64_t i = 0; i < total; ++i) yp[i] = ap[i] + bp[i];
    } else {
      std::copy(ap, ap + total, yp);
    }
    encoder::LayerNormParams ln{gamma_.data(), beta_.data(), eps_};
    encoder::LayerNormRows(yp, total / std::max<int64_t>(n, 1), n, ln, nullptr,
                           total < kSerialElements ? 1 : threads_);
    return OkStatus();
  }

 private:
  std::vector<float> gamma_, beta_;
  float eps_;
  std::unique_ptr<Kernel> add_;
  int threads_;
  int64_t axis_ = -1;
  std::unique_ptr<Kernel> node_;
  Tensor gamma_t_, beta_t_;
};

// out = softmax(scores · scale + mask) over the last axis, the mask broadcast to the
// scores' shape (BERT's [batch, 1, 1, keys] against [batch, heads, queries, keys]).
class ScaledMaskedSoftmaxKernel final : public Kernel {
 public:
  explicit ScaledMaskedSoftmaxKernel(float scale) : scale_(scale) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& s = ctx.in(0);
    const Tensor& m = ctx.in(1);
    if (s.dtype() != DataType::kFloat32 || m.dtype() != DataType::kFloat32 || s.rank() < 1 ||
        m.rank() > s.rank()) {
      return InvalidArgument("ScaledMaskedSoftmax: scores " + s.DebugString() + ", mask " +
                             m.DebugString());
    }
    // Mask strides aligned to the scores' dimensions (0 where the mask broadcasts).
    const size_t r = s.rank();
    std::vector<int64_t> stride(r, 0);
    int64_t acc = 1;
    for (size_t i = 0; i < m.rank(); ++i) {
      const size_t md = m.rank() - 1 - i, sd = r - 1 - i;
      if (m.dim(md) != 1 && m.dim(md) != s.dim(sd)) {
        return InvalidArgument("mask " + ShapeToString(m.shape()) +
                               " does not broadcast to the scores " + ShapeToString(s.shape()));
      }
      stride[sd] = m.dim(md) == 1 ? 0 : acc;
      acc *= m.dim(md);
    }
    const int64_t len = s.shape().back();
    const int64_t rows = len == 0 ? 0 : s.numel() / len;
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, s.shape());
    const float* sp = s.data<float>();
    const float* mp = m.data<float>();
    float* yp = y.data<float>();
    const int64_t last_stride = stride[r - 1];
    const float scale = scale_;
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        // Offset of this row's mask: mixed-radix digits of the row over dims[:-1].
        int64_t off = 0, rest = row;
        for (size_t d = r - 1; d-- > 0;) {
          off += (rest % s.dim(d)) * stride[d];
          rest /= s.dim(d);
        }
        const float* x = sp + row * len;
        const float* mk = mp + off;
        float* out = yp + row * len;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < len; ++j) {
          out[j] = x[j] * scale + mk[j * last_stride];
          mx = std::max(mx, out[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < len; ++j) {
          out[j] = elementwise::FastExp(out[j] - mx);
          sum += out[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < len; ++j) out[j] *= inv;
      }
    };
    if (s.numel() < kSerialElements) {
      body(0, rows);
    } else {
      ctx.ParallelFor(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(len, 1)), body);
    }
    return OkStatus();
  }

 private:
  float scale_;
};

// y = 0.5 · x · (1 + erf(x / √2)), where the GELU chain does not follow a linear layer
// (a Reshape between them, as when a Gemm runs on flattened rows).
class GeluKernel final : public Kernel {
 public:
  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.dtype() != DataType::kFloat32) return InvalidArgument("Gelu: input is not float32");
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, x.shape());
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        yp[i] = 0.5f * xp[i] * (1.0f + std::erf(xp[i] * 0.70710678118654752f));
      }
    };
    if (x.numel() < kSerialElements) {
      body(0, x.numel());
    } else {
      ctx.ParallelFor(x.numel(), 4096, body);
    }
    return OkStatus();
  }
};

// ---------------------------------------------------------------------------------
// Matching

const onnx::AttributeProto* Attr(const PlannedNode& n, const char* name) {
  if (!n.proto) return nullptr;
  for (const auto& a : n.proto->attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}
int64_t AttrInt(const PlannedNode& n, const char* name, int64_t dflt) {
  const auto* a = Attr(n, name);
  return a ? a->i() : dflt;
}
float AttrFloat(const PlannedNode& n, const char* name, float dflt) {
  const auto* a = Attr(n, name);
  return a ? a->f() : dflt;
}

class Plan {
 public:
  Plan(std::vector<PlannedNode>& nodes, const std::vector<std::optional<Tensor>>& constants,
       const std::vector<DataType>& types, const std::vector<int>& outputs)
      : nodes_(nodes), constants_(constants), types_(types) {
    producer_.assign(constants.size(), -1);
    readers_.assign(constants.size(), {});
    for (size_t i = 0; i < nodes.size(); ++i) {
      for (int v : nodes[i].outputs) {
        if (v >= 0) producer_[static_cast<size_t>(v)] = static_cast<int>(i);
      }
      for (int v : nodes[i].inputs) {
        if (v >= 0) readers_[static_cast<size_t>(v)].push_back(static_cast<int>(i));
      }
    }
    for (int v : outputs) outputs_.insert(v);
  }

  PlannedNode& node(int i) { return nodes_[static_cast<size_t>(i)]; }
  const PlannedNode& node(int i) const { return nodes_[static_cast<size_t>(i)]; }
  bool dead(int i) const { return dead_.count(i) > 0; }
  const std::optional<Tensor>& Const(int v) const {
    static const std::optional<Tensor> kNone;
    return v < 0 ? kNone : constants_[static_cast<size_t>(v)];
  }
  bool IsFloat(int v) const {
    return v >= 0 && types_[static_cast<size_t>(v)] == DataType::kFloat32;
  }
  // The live node producing v, if it is `op` (any op when empty) and v is read only
  // by `readers` nodes and is not a graph output.
  int InternalProducer(int v, const std::string& op, size_t readers = 1) const {
    if (v < 0 || outputs_.count(v)) return -1;
    const int p = producer_[static_cast<size_t>(v)];
    if (p < 0 || dead(p)) return -1;
    if (!op.empty() && nodes_[static_cast<size_t>(p)].op_type != op) return -1;
    if (readers_[static_cast<size_t>(v)].size() != readers) return -1;
    return p;
  }
  // The one live reader of v, if it is `op` and v is not a graph output.
  int SoleReader(int v, const std::string& op) const {
    if (v < 0 || outputs_.count(v)) return -1;
    const auto& r = readers_[static_cast<size_t>(v)];
    if (r.size() != 1 || dead(r[0])) return -1;
    return nodes_[static_cast<size_t>(r[0])].op_type == op ? r[0] : -1;
  }
  const std::vector<int>& Readers(int v) const { return readers_[static_cast<size_t>(v)]; }
  bool IsOutput(int v) const { return outputs_.count(v) > 0; }
  // Index of the constant operand of a two-input node (-1 if none or both).
  int ConstSide(const PlannedNode& n) const {
    if (n.inputs.size() != 2) return -1;
    const bool c0 = Const(n.inputs[0]).has_value(), c1 = Const(n.inputs[1]).has_value();
    if (c0 == c1) return -1;
    return c0 ? 0 : 1;
  }
  // A float32 scalar constant (any shape with one element).
  std::optional<float> Scalar(int v) const {
    const auto& c = Const(v);
    if (!c || c->dtype() != DataType::kFloat32 || c->numel() != 1) return std::nullopt;
    return c->data<float>()[0];
  }

  // Replaces the group (its last member is `last`) by one node.
  void Replace(const std::vector<int>& group, int last, PlannedNode fused) {
    for (int i : group) {
      if (i != last) dead_.insert(i);
    }
    fused.proto = nullptr;
    nodes_[static_cast<size_t>(last)] = std::move(fused);
  }
  void Compact(int* removed) {
    std::vector<PlannedNode> kept;
    kept.reserve(nodes_.size() - dead_.size());
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!dead(static_cast<int>(i))) kept.push_back(std::move(nodes_[i]));
    }
    *removed += static_cast<int>(dead_.size());
    nodes_ = std::move(kept);
  }

 private:
  std::vector<PlannedNode>& nodes_;
  const std::vector<std::optional<Tensor>>& constants_;
  const std::vector<DataType>& types_;
  std::vector<int> producer_;
  std::vector<std::vector<int>> readers_;
  std::set<int> outputs_;
  std::set<int> dead_;
};

bool Near(float a, float b) { return std::fabs(a - b) <= 1e-5f * std::max(1.0f, std::fabs(b)); }

// GELU as PyTorch exports it: y = (x · (erf(x / √2) + 1)) · 0.5, the 1/√2 also as a
// Mul. Returns the group (Div, Erf, Add, Mul, Mul) and the final node, or {} .
std::vector<int> MatchGeluErf(const Plan& plan, int x, int* last) {
  const auto& readers = plan.Readers(x);
  if (readers.size() != 2) return {};
  // x itself stays (it is the fused node's input) unless it came out of a Linear being
  // fused, whose caller then makes the GELU's output its own: x must not be needed.
  if (plan.IsOutput(x)) return {};
  int scale_node = -1, mul_node = -1;
  for (int r : readers) {
    const PlannedNode& n = plan.node(r);
    if (plan.dead(r)) return {};
    const int cs = plan.ConstSide(n);
    if (cs >= 0 && (n.op_type == "Div" || n.op_type == "Mul")) {
      auto c = plan.Scalar(n.inputs[static_cast<size_t>(cs)]);
      if (cs == 1 && c &&
          ((n.op_type == "Div" && Near(*c, std::sqrt(2.0f))) ||
           (n.op_type == "Mul" && Near(*c, 1.0f / std::sqrt(2.0f))))) {
        scale_node = r;
        continue;
      }
    }
    if (n.op_type == "Mul" && cs < 0) mul_node = r;
  }
  if (scale_node < 0 || mul_node < 0) return {};
  const int erf = plan.SoleReader(plan.node(scale_node).outputs[0], "Erf");
  if (erf < 0) return {};
  const int add = plan.SoleReader(plan.node(erf).outputs[0], "Add");
  if (add < 0) return {};
  const PlannedNode& addn = plan.node(add);
  const int acs = plan.ConstSide(addn);
  if (acs < 0 || !plan.Scalar(addn.inputs[static_cast<size_t>(acs)]) ||
      !Near(*plan.Scalar(addn.inputs[static_cast<size_t>(acs)]), 1.0f)) {
    return {};
  }
  if (plan.SoleReader(addn.outputs[0], "Mul") != mul_node) return {};
  const int half = plan.SoleReader(plan.node(mul_node).outputs[0], "Mul");
  if (half < 0) return {};
  const PlannedNode& halfn = plan.node(half);
  const int hcs = plan.ConstSide(halfn);
  if (hcs < 0 || !plan.Scalar(halfn.inputs[static_cast<size_t>(hcs)]) ||
      !Near(*plan.Scalar(halfn.inputs[static_cast<size_t>(hcs)]), 0.5f)) {
    return {};
  }
  *last = half;
  return {scale_node, erf, add, mul_node, half};
}

using KindKey = std::tuple<int64_t, int64_t, int>;

Status FuseLinears(Plan& plan, size_t count, int threads, FusionCounts* counts) {
  std::map<KindKey, std::shared_ptr<LinearKind>> kinds;
  for (size_t i = 0; i < count; ++i) {
    const int idx = static_cast<int>(i);
    if (plan.dead(idx)) continue;
    PlannedNode& mm = plan.node(idx);
    const bool gemm = mm.op_type == "Gemm";
    if (mm.op_type != "MatMul" && !gemm) continue;
    if (mm.inputs.size() < 2 || !plan.IsFloat(mm.inputs[0]) || plan.Const(mm.inputs[0])) continue;
    const auto& w = plan.Const(mm.inputs[1]);
    if (!w || w->dtype() != DataType::kFloat32 || w->rank() != 2) continue;
    bool trans_b = false;
    std::optional<Tensor> bias;
    if (gemm) {
      if (AttrInt(mm, "transA", 0) != 0 || AttrFloat(mm, "alpha", 1) != 1.0f ||
          AttrFloat(mm, "beta", 1) != 1.0f) {
        continue;
      }
      trans_b = AttrInt(mm, "transB", 0) != 0;
      if (mm.inputs.size() == 3 && mm.inputs[2] >= 0) {
        bias = plan.Const(mm.inputs[2]);
        if (!bias) continue;  // a run-time C
      }
    }
    const int64_t k = trans_b ? w->dim(1) : w->dim(0);
    const int64_t n = trans_b ? w->dim(0) : w->dim(1);
    if (bias && (bias->dtype() != DataType::kFloat32 || bias->numel() != n ||
                 (bias->rank() > 0 && bias->shape().back() != n))) {
      continue;  // Gemm's C broadcast over rows too: not a per-column bias
    }
    std::vector<int> group = {idx};
    int last = idx, out = mm.outputs[0];
    // MatMul + Add(bias).
    if (!bias) {
      const int add = plan.SoleReader(out, "Add");
      if (add >= 0) {
        const PlannedNode& a = plan.node(add);
        const int cs = plan.ConstSide(a);
        if (cs >= 0) {
          const auto& c = plan.Const(a.inputs[static_cast<size_t>(cs)]);
          if (c->dtype() == DataType::kFloat32 && c->numel() == n && c->rank() >= 1 &&
              c->shape().back() == n) {
            bias = c;
            group.push_back(add);
            last = add;
            out = a.outputs[0];
          }
        }
      }
    }
    Epilogue epilogue = Epilogue::kBias;
    int gelu_last = -1;
    auto gelu = MatchGeluErf(plan, out, &gelu_last);
    if (!gelu.empty()) {
      epilogue = Epilogue::kBiasGeluErf;
      group.insert(group.end(), gelu.begin(), gelu.end());
      last = gelu_last;
      out = plan.node(gelu_last).outputs[0];
    }

    std::vector<float> wk(static_cast<size_t>(k * n));
    const float* wp = w->data<float>();
    for (int64_t r = 0; r < k; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        wk[static_cast<size_t>(r * n + c)] = trans_b ? wp[c * k + r] : wp[r * n + c];
      }
    }
    std::vector<float> b(static_cast<size_t>(n), 0.0f);
    if (bias) std::copy(bias->data<float>(), bias->data<float>() + n, b.begin());
    auto& kind = kinds[{k, n, static_cast<int>(epilogue)}];
    if (!kind) {
      auto made = LinearKind::Create({k, n, epilogue, Precision::kFp32, false});
      if (!made.ok()) return made.status();
      kind = std::move(made).value();
    }
    IM_ASSIGN_OR_RETURN(PackedWeight packed, kind->Pack(wk.data(), b.data()));

    PlannedNode fused;
    fused.name = mm.name + "+fused";
    fused.op_type = "Linear";
    fused.kernel = std::make_unique<LinearKernel>(kind, std::move(packed), threads);
    fused.inputs = {mm.inputs[0]};
    fused.outputs = {out};
    counts->linear++;
    counts->packed_bytes += kind->packed_bytes() + static_cast<size_t>(n) * sizeof(float);
    if (bias) counts->bias++;
    if (!gelu.empty()) counts->gelu++;
    plan.Replace(group, last, std::move(fused));
  }
  return OkStatus();
}

// Matches the decomposed LayerNorm whose normalizing Div is `div`: ReduceMean(x),
// Sub(x, mean), Pow(d, 2), ReduceMean, Add(ε), Sqrt, Div(d, ·), Mul(γ), Add(β).
struct NormMatch {
  std::vector<int> group;
  int last = -1, input = -1, output = -1, gamma = -1, beta = -1;
  float eps = 0;
};

bool ReducesLastAxis(const PlannedNode& n) {
  const auto* axes = Attr(n, "axes");
  return axes && axes->ints_size() == 1 && axes->ints(0) == -1 && AttrInt(n, "keepdims", 1) == 1 &&
         n.inputs.size() == 1;
}

std::optional<NormMatch> MatchDecomposedNorm(Plan& plan, int div) {
  const PlannedNode& dv = plan.node(div);
  if (dv.inputs.size() != 2) return std::nullopt;
  const int sqrt = plan.InternalProducer(dv.inputs[1], "Sqrt");
  if (sqrt < 0) return std::nullopt;
  const int add = plan.InternalProducer(plan.node(sqrt).inputs[0], "Add");
  if (add < 0) return std::nullopt;
  const PlannedNode& addn = plan.node(add);
  const int cs = plan.ConstSide(addn);
  if (cs < 0) return std::nullopt;
  auto eps = plan.Scalar(addn.inputs[static_cast<size_t>(cs)]);
  if (!eps) return std::nullopt;
  const int mean2 = plan.InternalProducer(addn.inputs[static_cast<size_t>(1 - cs)], "ReduceMean");
  if (mean2 < 0 || !ReducesLastAxis(plan.node(mean2))) return std::nullopt;
  const int pow = plan.InternalProducer(plan.node(mean2).inputs[0], "Pow");
  if (pow < 0) return std::nullopt;
  auto two = plan.Scalar(plan.node(pow).inputs.size() == 2 ? plan.node(pow).inputs[1] : -1);
  if (!two || *two != 2.0f) return std::nullopt;
  const int d = plan.node(pow).inputs[0];
  if (d != dv.inputs[0]) return std::nullopt;
  const int sub = plan.InternalProducer(d, "Sub", 2);
  if (sub < 0) return std::nullopt;
  const PlannedNode& subn = plan.node(sub);
  const int mean = plan.InternalProducer(subn.inputs[1], "ReduceMean");
  if (mean < 0 || !ReducesLastAxis(plan.node(mean))) return std::nullopt;
  const int x = subn.inputs[0];
  if (plan.node(mean).inputs[0] != x) return std::nullopt;
  // x feeds exactly the mean and the Sub.
  if (plan.Readers(x).size() != 2) return std::nullopt;
  const int mul = plan.SoleReader(dv.outputs[0], "Mul");
  if (mul < 0) return std::nullopt;
  const int gs = plan.ConstSide(plan.node(mul));
  if (gs < 0) return std::nullopt;
  const int badd = plan.SoleReader(plan.node(mul).outputs[0], "Add");
  if (badd < 0) return std::nullopt;
  const int bs = plan.ConstSide(plan.node(badd));
  if (bs < 0) return std::nullopt;
  NormMatch m;
  m.group = {mean, sub, pow, mean2, add, sqrt, div, mul, badd};
  m.last = badd;
  m.input = x;
  m.output = plan.node(badd).outputs[0];
  m.gamma = plan.node(mul).inputs[static_cast<size_t>(gs)];
  m.beta = plan.node(badd).inputs[static_cast<size_t>(bs)];
  m.eps = *eps;
  return m;
}

Status FuseLayerNorms(Plan& plan, size_t count, int threads, FusionCounts* counts) {
  for (size_t i = 0; i < count; ++i) {
    const int idx = static_cast<int>(i);
    if (plan.dead(idx)) continue;
    PlannedNode& n = plan.node(idx);
    std::optional<NormMatch> m;
    if (n.op_type == "Div") {
      m = MatchDecomposedNorm(plan, idx);
    } else if (n.op_type == "LayerNormalization" && n.outputs.size() == 1 && n.inputs.size() == 3 &&
               AttrInt(n, "stash_type", 1) == 1) {
      m.emplace();
      m->group = {idx};
      m->last = idx;
      m->input = n.inputs[0];
      m->output = n.outputs[0];
      m->gamma = n.inputs[1];
      m->beta = n.inputs[2];
      m->eps = AttrFloat(n, "epsilon", 1e-5f);
    }
    if (!m || !plan.IsFloat(m->input)) continue;
    const auto& g = plan.Const(m->gamma);
    const auto& b = plan.Const(m->beta);
    if (!g || !b || g->dtype() != DataType::kFloat32 || b->dtype() != DataType::kFloat32 ||
        g->rank() != 1 || b->rank() != 1 || g->numel() != b->numel()) {
      continue;
    }
    // A residual Add of two run-time values just before.
    std::unique_ptr<Kernel> add;
    std::vector<int> inputs = {m->input};
    const int readers = n.op_type == "Div" ? 2 : 1;
    const int add_idx = plan.InternalProducer(m->input, "Add", static_cast<size_t>(readers));
    if (add_idx >= 0 && plan.ConstSide(plan.node(add_idx)) < 0 &&
        plan.node(add_idx).inputs.size() == 2 && plan.IsFloat(plan.node(add_idx).inputs[0]) &&
        plan.IsFloat(plan.node(add_idx).inputs[1])) {
      PlannedNode& a = plan.node(add_idx);
      inputs = a.inputs;
      add = std::move(a.kernel);
      m->group.push_back(add_idx);
      counts->skip++;
    }
    PlannedNode fused;
    fused.name = n.name + "+fused";
    fused.op_type = "LayerNorm";
    auto kernel = std::make_unique<LayerNormKernel>(
        std::vector<float>(g->data<float>(), g->data<float>() + g->numel()),
        std::vector<float>(b->data<float>(), b->data<float>() + b->numel()), m->eps, std::move(add),
        threads);
    if (n.op_type == "LayerNormalization" && AttrInt(n, "axis", -1) != -1) {
      kernel->SetAxis(AttrInt(n, "axis", -1), std::move(n.kernel), *g, *b);
    }
    fused.kernel = std::move(kernel);
    fused.inputs = inputs;
    fused.outputs = {m->output};
    counts->layer_norm++;
    counts->packed_bytes += 2 * static_cast<size_t>(g->numel()) * sizeof(float);
    plan.Replace(m->group, m->last, std::move(fused));
  }
  return OkStatus();
}

void FuseGelus(Plan& plan, size_t count, FusionCounts* counts) {
  for (size_t i = 0; i < count; ++i) {
    const int idx = static_cast<int>(i);
    if (plan.dead(idx)) continue;
    for (int out : plan.node(idx).outputs) {
      if (!plan.IsFloat(out)) continue;
      int last = -1;
      auto group = MatchGeluErf(plan, out, &last);
      if (group.empty()) continue;
      PlannedNode fused;
      fused.name = plan.node(last).name + "+fused";
      fused.op_type = "Gelu";
      fused.kernel = std::make_unique<GeluKernel>();
      fused.inputs = {out};
      fused.outputs = {plan.node(last).outputs[0]};
      counts->gelu++;
      plan.Replace(group, last, std::move(fused));
    }
  }
}

void FuseSoftmax(Plan& plan, size_t count, FusionCounts* counts) {
  for (size_t i = 0; i < count; ++i) {
    const int idx = static_cast<int>(i);
    if (plan.dead(idx)) continue;
    PlannedNode& sm = plan.node(idx);
    if (sm.op_type != "Softmax" || !Attr(sm, "axis") || AttrInt(sm, "axis", 0) != -1) continue;
    const int add = plan.InternalProducer(sm.inputs[0], "Add");
    if (add < 0 || plan.ConstSide(plan.node(add)) >= 0) continue;
    const PlannedNode& addn = plan.node(add);
    if (addn.inputs.size() != 2) continue;
    // Which side is the scaled scores: the one made by Div/Mul by a scalar constant.
    for (int side = 0; side < 2; ++side) {
      const int scaled = plan.InternalProducer(addn.inputs[static_cast<size_t>(side)], "");
      if (scaled < 0) continue;
      const PlannedNode& sn = plan.node(scaled);
      if (sn.op_type != "Div" && sn.op_type != "Mul") continue;
      if (plan.ConstSide(sn) != 1) continue;
      auto c = plan.Scalar(sn.inputs[1]);
      if (!c || *c == 0.0f || !plan.IsFloat(sn.inputs[0])) continue;
      // The scores are a product (Q·Kᵀ); a scaled mask such as (1 - m) · min is not.
      if (plan.InternalProducer(sn.inputs[0], "MatMul") < 0) continue;
      const int mask = addn.inputs[static_cast<size_t>(1 - side)];
      if (!plan.IsFloat(mask)) continue;
      PlannedNode fused;
      fused.name = sm.name + "+fused";
      fused.op_type = "ScaledMaskedSoftmax";
      fused.kernel =
          std::make_unique<ScaledMaskedSoftmaxKernel>(sn.op_type == "Div" ? 1.0f / *c : *c);
      fused.inputs = {sn.inputs[0], mask};
      fused.outputs = {sm.outputs[0]};
      counts->softmax++;
      plan.Replace({scaled, add, idx}, idx, std::move(fused));
      break;
    }
  }
}

}  // namespace

Result<FusionCounts> FuseGraph(std::vector<PlannedNode>& nodes,
                               const std::vector<std::optional<Tensor>>& constants,
                               const std::vector<DataType>& types,
                               const std::vector<int>& graph_outputs, int threads) {
  FusionCounts counts;
  // Each pass sees the previous one's result (a LayerNorm's residual input may come
  // from a fused Linear).
  {
    Plan plan(nodes, constants, types, graph_outputs);
    IM_RETURN_IF_ERROR(FuseLinears(plan, nodes.size(), threads, &counts));
    plan.Compact(&counts.removed);
  }
  {
    Plan plan(nodes, constants, types, graph_outputs);
    IM_RETURN_IF_ERROR(FuseLayerNorms(plan, nodes.size(), threads, &counts));
    plan.Compact(&counts.removed);
  }
  {
    Plan plan(nodes, constants, types, graph_outputs);
    FuseGelus(plan, nodes.size(), &counts);
    FuseSoftmax(plan, nodes.size(), &counts);
    plan.Compact(&counts.removed);
  }
  for (auto& n : nodes) n.proto = nullptr;
  return counts;
}

}  // namespace infermesh::runtime
