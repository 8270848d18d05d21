// Reads the weights of a BERT-style encoder out of an ONNX graph.
//
// Only the part of the graph that feeds the first output is considered (so that a
// pooler head is ignored). Within it, in the graph's (topological) order:
//   - Gathers from a rank-2 initializer are the embedding tables: the one indexed by
//     input_ids is the word table, by token_type_ids the type table; any other is the
//     position table when it is as wide as the word table, else MPNet's relative
//     position bias ([buckets, heads], whose bucket indices are read off the graph);
//   - LayerNormalization nodes, or the decomposed form PyTorch exports below opset 17
//     (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β), are the norms;
//   - MatMuls (or Gemms) with a rank-2 initializer weight and an added rank-1
//     initializer bias are the linear layers.
// A post-LN encoder with L layers has 2L + 1 norms and 4L (fused QKV) or 6L linears.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "runtime/encoder/fused_encoder.h"
#include "runtime/onnx_tensor.h"

namespace infermesh::runtime::encoder {
namespace {

class GraphView {
 public:
  GraphView(const onnx::GraphProto& g, std::string base_dir, std::shared_ptr<const void> owner = {})
      : g_(g), base_dir_(std::move(base_dir)), owner_(std::move(owner)) {
    for (const auto& t : g.initializer()) init_[t.name()] = &t;
    for (int i = 0; i < g.node_size(); ++i) {
      const auto& n = g.node(i);
      for (const auto& o : n.output()) producer_[o] = i;
      for (const auto& in : n.input()) consumers_[in].push_back(i);
      if (n.op_type() == "Constant" && n.output_size() == 1) {
        for (const auto& a : n.attribute()) {
          if (a.name() == "value" && a.has_t()) init_[n.output(0)] = &a.t();
        }
      }
    }
  }

  const onnx::NodeProto& node(int i) const { return g_.node(i); }
  int size() const { return g_.node_size(); }
  bool IsConst(const std::string& name) const { return init_.count(name) > 0; }
  const onnx::NodeProto* Producer(const std::string& name) const {
    auto it = producer_.find(name);
    return it == producer_.end() ? nullptr : &g_.node(it->second);
  }
  std::vector<const onnx::NodeProto*> Consumers(const std::string& name) const {
    std::vector<const onnx::NodeProto*> out;
    auto it = consumers_.find(name);
    if (it != consumers_.end()) {
      for (int i : it->second) out.push_back(&g_.node(i));
    }
    return out;
  }
  // Float32 constant (initializer or Constant node).
  Result<Tensor> Const(const std::string& name) const {
    auto it = init_.find(name);
    if (it == init_.end()) return NotFound("'" + name + "' is not a constant");
    IM_ASSIGN_OR_RETURN(Tensor t, TensorFromProto(*it->second, base_dir_, owner_));
    if (t.dtype() != DataType::kFloat32) return Unimplemented("'" + name + "' is not float32");
    return t;
  }
  std::vector<int64_t> ConstShape(const std::string& name) const {
    auto it = init_.find(name);
    if (it == init_.end()) return {};
    return {it->second->dims().begin(), it->second->dims().end()};
  }
  // Nodes whose outputs reach `output`.
  std::vector<bool> Ancestors(const std::string& output) const {
    std::vector<bool> keep(static_cast<size_t>(g_.node_size()), false);
    std::vector<std::string> stack{output};
    std::set<std::string> seen;
    while (!stack.empty()) {
      std::string v = stack.back();
      stack.pop_back();
      if (!seen.insert(v).second) continue;
      auto it = producer_.find(v);
      if (it == producer_.end()) continue;
      keep[static_cast<size_t>(it->second)] = true;
      for (const auto& in : g_.node(it->second).input()) stack.push_back(in);
    }
    return keep;
  }

 private:
  const onnx::GraphProto& g_;
  std::string base_dir_;
  std::shared_ptr<const void> owner_;
  std::unordered_map<std::string, const onnx::TensorProto*> init_;
  std::unordered_map<std::string, int> producer_;
  std::unordered_map<std::string, std::vector<int>> consumers_;
};

std::vector<float> ToVector(const Tensor& t) {
  const float* p = t.data<float>();
  return {p, p + t.numel()};
}

float AttrFloat(const onnx::NodeProto& n, const std::string& name, float dflt) {
  for (const auto& a : n.attribute()) {
    if (a.name() == name) return a.f();
  }
  return dflt;
}
int64_t AttrInt(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  for (const auto& a : n.attribute()) {
    if (a.name() == name) return a.i();
  }
  return dflt;
}

// The constant operand of a binary node, if exactly one side is constant.
std::optional<std::string> ConstOperand(const GraphView& g, const onnx::NodeProto& n,
                                        std::string* other = nullptr) {
  if (n.input_size() != 2) return std::nullopt;
  const bool c0 = g.IsConst(n.input(0)), c1 = g.IsConst(n.input(1));
  if (c0 == c1) return std::nullopt;
  if (other) *other = c0 ? n.input(1) : n.input(0);
  return c0 ? n.input(0) : n.input(1);
}

const onnx::NodeProto* SoleConsumer(const GraphView& g, const std::string& v,
                                    const std::string& op) {
  auto cs = g.Consumers(v);
  if (cs.size() != 1 || cs[0]->op_type() != op) return nullptr;
  return cs[0];
}

// Matches the decomposed LayerNorm whose normalizing Div is `div`.
Result<std::optional<LayerNormWeights>> MatchDecomposedNorm(const GraphView& g,
                                                            const onnx::NodeProto& div) {
  const std::optional<LayerNormWeights> kNoMatch;
  const onnx::NodeProto* sqrt = g.Producer(div.input(1));
  if (!sqrt || sqrt->op_type() != "Sqrt") return kNoMatch;
  const onnx::NodeProto* add = g.Producer(sqrt->input(0));
  if (!add || add->op_type() != "Add") return kNoMatch;
  std::string var;
  auto eps_name = ConstOperand(g, *add, &var);
  if (!eps_name) return kNoMatch;
  const onnx::NodeProto* mean2 = g.Producer(var);
  if (!mean2 || mean2->op_type() != "ReduceMean") return kNoMatch;
  const onnx::NodeProto* sub = g.Producer(div.input(0));
  if (!sub || sub->op_type() != "Sub") return kNoMatch;
  const onnx::NodeProto* mul = SoleConsumer(g, div.output(0), "Mul");
  if (!mul) return kNoMatch;
  auto gamma = ConstOperand(g, *mul);
  if (!gamma) return kNoMatch;
  const onnx::NodeProto* badd = SoleConsumer(g, mul->output(0), "Add");
  if (!badd) return kNoMatch;
  auto beta = ConstOperand(g, *badd);
  if (!beta) return kNoMatch;
  LayerNormWeights ln;
  IM_ASSIGN_OR_RETURN(Tensor e, g.Const(*eps_name));
  if (e.numel() != 1) return kNoMatch;
  ln.eps = e.data<float>()[0];
  IM_ASSIGN_OR_RETURN(Tensor gt, g.Const(*gamma));
  IM_ASSIGN_OR_RETURN(Tensor bt, g.Const(*beta));
  ln.gamma = ToVector(gt);
  ln.beta = ToVector(bt);
  return std::optional<LayerNormWeights>(std::move(ln));
}

struct Linear {
  std::vector<float> w;  // [k, n]
  std::vector<float> b;  // [n]
  int64_t k = 0, n = 0;
};

// The bucket of each key-minus-query distance, read off the graph: the part of the graph
// that computes `index` (MPNet's relative_position_bucket: Range, Sub, Log, Where, ...)
// is copied into a model of its own and run on one sequence of `len` tokens. Taking the
// graph's own numbers, rather than re-deriving a formula, keeps the float rounding of
// its logarithms exactly as the exporter wrote it.
Result<std::vector<int64_t>> RelativeBuckets(const onnx::ModelProto& model,
                                             const std::string& base_dir, const std::string& index,
                                             int64_t len, int64_t vocab, int64_t buckets) {
  const auto& graph = model.graph();
  GraphView g(graph, base_dir);
  const std::vector<bool> keep = g.Ancestors(index);
  onnx::ModelProto mini;
  mini.set_ir_version(model.ir_version());
  *mini.mutable_opset_import() = model.opset_import();
  onnx::GraphProto* mg = mini.mutable_graph();
  mg->set_name("relative_position_buckets");
  std::set<std::string> used;
  for (int i = 0; i < graph.node_size(); ++i) {
    if (!keep[static_cast<size_t>(i)]) continue;
    *mg->add_node() = graph.node(i);
    for (const auto& in : graph.node(i).input()) used.insert(in);
  }
  for (const auto& t : graph.initializer()) {
    if (used.count(t.name())) *mg->add_initializer() = t;
  }
  std::vector<std::pair<std::string, Tensor>> feeds;
  for (const auto& in : graph.input()) {
    if (!used.count(in.name())) continue;
    *mg->add_input() = in;
    std::vector<int64_t> v(static_cast<size_t>(len), 0);
    if (in.name() == "input_ids") {
      std::fill(v.begin(), v.end(), std::min<int64_t>(5, vocab - 1));
    } else if (in.name() == "attention_mask") {
      std::fill(v.begin(), v.end(), 1);
    } else if (in.name() == "position_ids") {
      for (int64_t i = 0; i < len; ++i) v[static_cast<size_t>(i)] = i;
    } else if (in.name() != "token_type_ids") {
      return Unimplemented("relative position buckets depend on input '" + in.name() + "'");
    }
    Tensor t = Tensor::FromVector<int64_t>({1, len}, v);
    if (in.type().tensor_type().elem_type() == onnx::TensorProto::INT32) {
      std::vector<int32_t> v32(v.begin(), v.end());
      t = Tensor::FromVector<int32_t>({1, len}, v32);
    }
    feeds.emplace_back(in.name(), std::move(t));
  }
  onnx::ValueInfoProto* out = mg->add_output();
  out->set_name(index);
  out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
  SessionOptions options;
  options.intra_op_threads = 1;
  auto session = Session::LoadFromProto(mini, base_dir, options);
  if (!session.ok()) {
    return Unimplemented("cannot evaluate the relative position buckets: " +
                         session.status().ToString());
  }
  auto outs = (*session)->Run(feeds);
  if (!outs.ok()) {
    return Unimplemented("cannot evaluate the relative position buckets: " +
                         outs.status().ToString());
  }
  const Tensor& b = outs->at(0);
  if (b.dtype() != DataType::kInt64 || b.rank() < 2 || b.numel() != len * len) {
    return Unimplemented("relative position buckets are not one [sequence, sequence] table");
  }
  const int64_t* p = b.data<int64_t>();
  // rel[d + len - 1] for d = j - i; the table must depend on the distance only.
  std::vector<int64_t> rel(static_cast<size_t>(2 * len - 1));
  for (int64_t j = 0; j < len; ++j) rel[static_cast<size_t>(j + len - 1)] = p[j];
  for (int64_t i = 0; i < len; ++i) rel[static_cast<size_t>(len - 1 - i)] = p[i * len];
  for (int64_t i = 0; i < len; ++i) {
    for (int64_t j = 0; j < len; ++j) {
      const int64_t k = p[i * len + j];
      if (k != rel[static_cast<size_t>(j - i + len - 1)]) {
        return Unimplemented("relative position bias is not a function of the distance");
      }
      if (k < 0 || k >= buckets) {
        return Unimplemented("relative position bucket " + std::to_string(k) + " out of range");
      }
    }
  }
  return rel;
}

}  // namespace

Result<EncoderWeights> ExtractEncoderWeights(const onnx::ModelProto& model,
                                             const std::string& base_dir,
                                             std::shared_ptr<const void> owner) {
  const auto& graph = model.graph();
  if (graph.output_size() == 0) return Unimplemented("graph has no outputs");
  GraphView g(graph, base_dir, std::move(owner));
  const std::vector<bool> used = g.Ancestors(graph.output(0).name());

  EncoderWeights w;
  std::vector<const onnx::NodeProto*> other_tables;
  std::string rel_index;  // the relative-position bias's bucket indices
  std::vector<LayerNormWeights> norms;
  std::vector<Linear> linears;
  bool erf = false, tanh = false;
  std::string gelu_mode;

  for (int i = 0; i < g.size(); ++i) {
    if (!used[static_cast<size_t>(i)]) continue;
    const onnx::NodeProto& n = g.node(i);
    const std::string& op = n.op_type();
    if (op == "Gather" && n.input_size() == 2 && g.IsConst(n.input(0)) &&
        g.ConstShape(n.input(0)).size() == 2) {
      if (n.input(1) == "input_ids" || n.input(1) == "token_type_ids") {
        IM_ASSIGN_OR_RETURN(Tensor t, g.Const(n.input(0)));
        std::vector<float>* dst = n.input(1) == "input_ids" ? &w.word : &w.type;
        if (!dst->empty()) return Unimplemented("more than one embedding table of a kind");
        *dst = ToVector(t);
        (dst == &w.word ? w.vocab : w.type_vocab) = t.dim(0);
      } else {
        // Positions, or a relative-position bias: told apart by width below.
        other_tables.push_back(&n);
      }
    } else if (op == "LayerNormalization") {
      // A 1-D scale means one normalized axis, the last, whatever `axis` says (other
      // exporters write the positive index); the load-time check catches the rest.
      if (n.input_size() < 3 || !g.IsConst(n.input(1)) || !g.IsConst(n.input(2))) {
        return Unimplemented("LayerNormalization '" + n.name() +
                             "' has no constant scale and bias");
      }
      if (AttrInt(n, "axis", -1) != -1 && g.ConstShape(n.input(1)).size() != 1) {
        return Unimplemented("LayerNormalization '" + n.name() + "' is not over the last axis");
      }
      LayerNormWeights ln;
      ln.eps = AttrFloat(n, "epsilon", 1e-5f);
      IM_ASSIGN_OR_RETURN(Tensor gt, g.Const(n.input(1)));
      IM_ASSIGN_OR_RETURN(Tensor bt, g.Const(n.input(2)));
      ln.gamma = ToVector(gt);
      ln.beta = ToVector(bt);
      norms.push_back(std::move(ln));
    } else if (op == "Div") {
      IM_ASSIGN_OR_RETURN(auto ln, MatchDecomposedNorm(g, n));
      if (ln) norms.push_back(std::move(*ln));
    } else if ((op == "MatMul" || op == "Gemm") && n.input_size() >= 2 && g.IsConst(n.input(1)) &&
               g.ConstShape(n.input(1)).size() == 2) {
      Linear l;
      IM_ASSIGN_OR_RETURN(Tensor wt, g.Const(n.input(1)));
      const bool trans_b = op == "Gemm" && AttrInt(n, "transB", 0) != 0;
      if (op == "Gemm" && (AttrInt(n, "transA", 0) != 0 || AttrFloat(n, "alpha", 1) != 1.0f ||
                           AttrFloat(n, "beta", 1) != 1.0f)) {
        return Unimplemented("Gemm '" + n.name() + "' with transA, alpha or beta");
      }
      l.k = trans_b ? wt.dim(1) : wt.dim(0);
      l.n = trans_b ? wt.dim(0) : wt.dim(1);
      l.w = ToVector(wt);
      if (trans_b) {
        std::vector<float> t(l.w.size());
        for (int64_t r = 0; r < l.k; ++r) {
          for (int64_t c = 0; c < l.n; ++c) t[r * l.n + c] = l.w[c * l.k + r];
        }
        l.w = std::move(t);
      }
      std::string bias;
      if (op == "Gemm" && n.input_size() == 3 && g.IsConst(n.input(2))) {
        bias = n.input(2);
      } else if (const onnx::NodeProto* add = SoleConsumer(g, n.output(0), "Add")) {
        auto c = ConstOperand(g, *add);
        if (c && g.ConstShape(*c).size() == 1) bias = *c;
      }
      if (bias.empty()) {
        l.b.assign(static_cast<size_t>(l.n), 0.0f);  // a layer without bias (bias=False)
      } else {
        IM_ASSIGN_OR_RETURN(Tensor bt, g.Const(bias));
        if (bt.numel() != l.n) {
          return Unimplemented("bias of '" + n.name() + "' has the wrong size");
        }
        l.b = ToVector(bt);
      }
      linears.push_back(std::move(l));
    } else if (op == "Erf") {
      erf = true;
    } else if (op == "Tanh") {
      tanh = true;
    } else if (op == "Gelu") {
      for (const auto& a : n.attribute()) {
        if (a.name() == "approximate") gelu_mode = a.s();
      }
      (gelu_mode == "tanh" ? tanh : erf) = true;
    } else if (op == "Relu" || op == "Sigmoid" || op == "Softplus") {
      return Unimplemented("activation " + op + " in an encoder");
    }
  }

  if (w.word.empty()) return Unimplemented("no word-embedding Gather indexed by input_ids");
  w.hidden = static_cast<int64_t>(w.word.size()) / w.vocab;
  for (const onnx::NodeProto* n : other_tables) {
    IM_ASSIGN_OR_RETURN(Tensor t, g.Const(n->input(0)));
    if (t.dim(1) == w.hidden) {
      if (!w.position.empty()) return Unimplemented("more than one position-embedding table");
      w.position = ToVector(t);
      w.max_positions = t.dim(0);
    } else {
      if (!w.rel_bias.empty()) return Unimplemented("more than one relative-position table");
      w.rel_bias = ToVector(t);
      w.rel_buckets = t.dim(0);
      w.rel_heads = t.dim(1);
      rel_index = n->input(1);
    }
  }
  if (w.position.empty()) return Unimplemented("no position-embedding table");
  if (!w.type.empty() && static_cast<int64_t>(w.type.size()) != w.type_vocab * w.hidden) {
    return Unimplemented("token-type table is not as wide as the word table");
  }
  if (!w.rel_bias.empty()) {
    const int64_t len = std::max<int64_t>(w.max_positions - 2, 1);
    IM_ASSIGN_OR_RETURN(w.rel_bucket,
                        RelativeBuckets(model, base_dir, rel_index, len, w.vocab, w.rel_buckets));
    w.rel_max = len - 1;
  }
  if (erf == tanh) return Unimplemented("cannot tell the feed-forward activation");
  w.activation = erf ? Activation::kGeluErf : Activation::kGeluTanh;
  const int64_t h = w.hidden;
  if (norms.size() < 3 || norms.size() % 2 != 1) {
    return Unimplemented("found " + std::to_string(norms.size()) +
                         " LayerNorms; a post-LN encoder has 2 per layer plus 1");
  }
  const size_t layers = (norms.size() - 1) / 2;
  const size_t per_layer = linears.size() / layers;
  if (linears.size() % layers != 0 || (per_layer != 4 && per_layer != 6)) {
    return Unimplemented("found " + std::to_string(linears.size()) + " linear layers for " +
                         std::to_string(layers) + " layers (expected 4 or 6 per layer)");
  }
  for (const auto& ln : norms) {
    if (static_cast<int64_t>(ln.gamma.size()) != h || static_cast<int64_t>(ln.beta.size()) != h) {
      return Unimplemented("a LayerNorm is not over the hidden size");
    }
  }
  w.embedding_ln = norms[0];
  w.ffn = linears[per_layer - 2].n;
  for (size_t l = 0; l < layers; ++l) {
    EncoderLayerWeights lw;
    Linear* lin = &linears[l * per_layer];
    const size_t nqkv = per_layer - 3;
    for (size_t q = 0; q < nqkv; ++q) {
      if (lin[q].k != h || lin[q].n != h * 3 / static_cast<int64_t>(nqkv)) {
        return Unimplemented("layer " + std::to_string(l) + ": unexpected Q/K/V shape");
      }
      lw.qkv_w.push_back(std::move(lin[q].w));
      lw.qkv_b.push_back(std::move(lin[q].b));
    }
    Linear& o = lin[nqkv];
    Linear& f1 = lin[nqkv + 1];
    Linear& f2 = lin[nqkv + 2];
    if (o.k != h || o.n != h || f1.k != h || f1.n != w.ffn || f2.k != w.ffn || f2.n != h) {
      return Unimplemented("layer " + std::to_string(l) + ": unexpected linear shapes");
    }
    lw.out_w = std::move(o.w);
    lw.out_b = std::move(o.b);
    lw.ffn1_w = std::move(f1.w);
    lw.ffn1_b = std::move(f1.b);
    lw.ffn2_w = std::move(f2.w);
    lw.ffn2_b = std::move(f2.b);
    lw.ln1 = norms[1 + 2 * l];
    lw.ln2 = norms[2 + 2 * l];
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace infermesh::runtime::encoder
