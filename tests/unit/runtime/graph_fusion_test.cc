// Graph fusions of the generic executor (runtime/graph_fusion.h): each pattern, built
// here as a small ONNX graph, must be fused (the session reports it) and give the same
// outputs as the same graph run node by node; groups whose intermediate values are read
// elsewhere must be left alone and stay correct.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <random>

#include "runtime/onnx_tensor.h"
#include "runtime/session.h"

namespace infermesh::runtime {
namespace {

Tensor RandomInput(Shape shape, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return Tensor::FromVector<float>(shape, v);
}

class GraphBuilder {
 public:
  explicit GraphBuilder(int opset) {
    m_.set_ir_version(8);
    auto* op = m_.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
    g_ = m_.mutable_graph();
    g_->set_name("fusion_test");
  }
  // A float input with dynamic leading dimensions given as -1.
  void Input(const std::string& name, std::vector<int64_t> dims) {
    auto* v = g_->add_input();
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    int unknown = 0;
    for (int64_t d : dims) {
      auto* dim = tt->mutable_shape()->add_dim();
      if (d < 0) {
        dim->set_dim_param("d" + std::to_string(unknown++));
      } else {
        dim->set_dim_value(d);
      }
    }
  }
  void Output(const std::string& name) {
    auto* v = g_->add_output();
    v->set_name(name);
    v->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  void Const(const std::string& name, const Tensor& t) {
    auto* p = g_->add_initializer();
    TensorToProto(t, p);
    p->set_name(name);
  }
  void Scalar(const std::string& name, float v) { Const(name, Tensor::FromVector<float>({}, {v})); }
  void Random(const std::string& name, Shape shape, float scale, uint32_t seed) {
    Const(name, RandomInput(std::move(shape), seed, scale));
  }
  onnx::NodeProto* Node(const std::string& op, std::vector<std::string> ins,
                        std::vector<std::string> outs) {
    auto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(op + "_" + std::to_string(g_->node_size()));
    for (auto& i : ins) n->add_input(i);
    for (auto& o : outs) n->add_output(o);
    return n;
  }
  static void IntAttr(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void IntsAttr(onnx::NodeProto* n, const std::string& name, std::vector<int64_t> v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void FloatAttr(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
  // Decomposed LayerNorm as PyTorch exports it below opset 17.
  void DecomposedNorm(const std::string& x, const std::string& y, int64_t width, uint32_t seed) {
    const std::string p = y + "_";
    IntsAttr(Node("ReduceMean", {x}, {p + "mean"}), "axes", {-1});
    Node("Sub", {x, p + "mean"}, {p + "d"});
    Scalar(p + "two", 2.0f);
    Node("Pow", {p + "d", p + "two"}, {p + "sq"});
    IntsAttr(Node("ReduceMean", {p + "sq"}, {p + "var"}), "axes", {-1});
    Scalar(p + "eps", 1e-12f);
    Node("Add", {p + "var", p + "eps"}, {p + "ve"});
    Node("Sqrt", {p + "ve"}, {p + "sd"});
    Node("Div", {p + "d", p + "sd"}, {p + "n"});
    Random(p + "gamma", {width}, 0.1f, seed);
    Random(p + "beta", {width}, 0.1f, seed + 1);
    Node("Mul", {p + "n", p + "gamma"}, {p + "g"});
    Node("Add", {p + "g", p + "beta"}, {y});
  }
  // GELU as PyTorch exports it.
  void Gelu(const std::string& x, const std::string& y) {
    const std::string p = y + "_";
    Scalar(p + "sqrt2", std::sqrt(2.0f));
    Scalar(p + "one", 1.0f);
    Scalar(p + "half", 0.5f);
    Node("Div", {x, p + "sqrt2"}, {p + "s"});
    Node("Erf", {p + "s"}, {p + "e"});
    Node("Add", {p + "e", p + "one"}, {p + "e1"});
    Node("Mul", {x, p + "e1"}, {p + "m"});
    Node("Mul", {p + "m", p + "half"}, {y});
  }
  std::string Bytes() const { return m_.SerializeAsString(); }

 private:
  onnx::ModelProto m_;
  onnx::GraphProto* g_;
};

struct Runs {
  FusionCounts fused_counts;
  size_t fused_nodes = 0, plain_nodes = 0;
};

// Runs the model with and without fusion on the same inputs and expects the same
// outputs (to float rounding).
Runs ExpectSameWithAndWithoutFusion(const std::string& bytes,
                                    const std::vector<std::pair<std::string, Tensor>>& feeds) {
  Runs r;
  SessionOptions on, off;
  on.intra_op_threads = off.intra_op_threads = 2;
  off.graph_fusion = false;
  auto fused = Session::LoadFromBytes(bytes, "", on);
  auto plain = Session::LoadFromBytes(bytes, "", off);
  EXPECT_TRUE(fused.ok()) << fused.status().ToString();
  EXPECT_TRUE(plain.ok()) << plain.status().ToString();
  if (!fused.ok() || !plain.ok()) return r;
  r.fused_counts = (*fused)->fusions();
  r.fused_nodes = (*fused)->planned_nodes();
  r.plain_nodes = (*plain)->planned_nodes();
  EXPECT_EQ((*plain)->fusions().removed, 0);
  auto a = (*fused)->Run(feeds);
  auto b = (*plain)->Run(feeds);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  if (!a.ok() || !b.ok()) return r;
  EXPECT_EQ(a->size(), b->size());
  for (size_t o = 0; o < a->size(); ++o) {
    const Tensor& x = (*a)[o];
    const Tensor& y = (*b)[o];
    EXPECT_EQ(ShapeToString(x.shape()), ShapeToString(y.shape())) << "output " << o;
    if (x.shape() != y.shape()) continue;
    double max_ref = 0, max_err = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      max_ref = std::max(max_ref, std::fabs(double(y.data<float>()[i])));
      max_err = std::max(max_err, std::fabs(double(x.data<float>()[i]) - y.data<float>()[i]));
    }
    EXPECT_LE(max_err, 2e-5 * std::max(1.0, max_ref)) << "output " << o;
  }
  return r;
}

// x [..., k] → MatMul(w [k, n]) = "mm" → Add(bias) = "h" → GELU = "y", the graph output,
// plus `extra` outputs.
std::string LinearBiasGeluModel(std::vector<int64_t> x_dims, int64_t n, uint32_t seed,
                                const std::vector<std::string>& extra = {}) {
  GraphBuilder b(14);
  const int64_t k = x_dims.back();
  b.Input("x", std::move(x_dims));
  b.Random("w", {k, n}, 0.3f, seed);
  b.Random("bias", {n}, 0.1f, seed + 1);
  b.Node("MatMul", {"x", "w"}, {"mm"});
  b.Node("Add", {"mm", "bias"}, {"h"});
  b.Gelu("h", "y");
  b.Output("y");
  for (const auto& e : extra) b.Output(e);
  return b.Bytes();
}

TEST(GraphFusion, MatMulBiasGeluBecomesOneLinear) {
  const std::string model = LinearBiasGeluModel({-1, -1, 24}, 40, 1);
  // 37 rows: one block of 32 plus a tail of 5 (the row-count chunking).
  auto r = ExpectSameWithAndWithoutFusion(model, {{"x", RandomInput({1, 37, 24}, 3)}});
  EXPECT_EQ(r.fused_counts.linear, 1);
  EXPECT_EQ(r.fused_counts.bias, 1);
  EXPECT_EQ(r.fused_counts.gelu, 1);
  EXPECT_EQ(r.fused_nodes, 1u);
  EXPECT_EQ(r.plain_nodes, 7u);
}

TEST(GraphFusion, LargeBatchesRunInChunks) {
  GraphBuilder b(14);
  b.Input("x", {-1, 16});
  b.Random("w", {16, 8}, 0.3f, 4);
  b.Random("bias", {8}, 0.1f, 5);
  b.Node("MatMul", {"x", "w"}, {"mm"});
  b.Node("Add", {"bias", "mm"}, {"y"});  // bias on the left
  b.Output("y");
  auto r = ExpectSameWithAndWithoutFusion(b.Bytes(), {{"x", RandomInput({2500, 16}, 6)}});
  EXPECT_EQ(r.fused_counts.linear, 1);
  EXPECT_EQ(r.fused_counts.bias, 1);
}

TEST(GraphFusion, GemmWithTransposedWeightAndBias) {
  GraphBuilder b(13);
  b.Input("x", {-1, 12});
  b.Random("w", {20, 12}, 0.3f, 7);  // [n, k] with transB
  b.Random("c", {20}, 0.1f, 8);
  GraphBuilder::IntAttr(b.Node("Gemm", {"x", "w", "c"}, {"y"}), "transB", 1);
  b.Output("y");
  auto r = ExpectSameWithAndWithoutFusion(b.Bytes(), {{"x", RandomInput({3, 12}, 9)}});
  EXPECT_EQ(r.fused_counts.linear, 1);
  EXPECT_EQ(r.fused_counts.bias, 1);
}

TEST(GraphFusion, ResidualAndDecomposedLayerNorm) {
  GraphBuilder b(14);
  b.Input("x", {-1, -1, 32});
  b.Input("r", {-1, -1, 32});
  b.Node("Add", {"x", "r"}, {"s"});
  b.DecomposedNorm("s", "y", 32, 10);
  b.Output("y");
  auto r = ExpectSameWithAndWithoutFusion(
      b.Bytes(), {{"x", RandomInput({2, 5, 32}, 11)}, {"r", RandomInput({2, 5, 32}, 12)}});
  EXPECT_EQ(r.fused_counts.layer_norm, 1);
  EXPECT_EQ(r.fused_counts.skip, 1);
  EXPECT_EQ(r.fused_nodes, 1u);
}

TEST(GraphFusion, LayerNormalizationWithABroadcastResidual) {
  GraphBuilder b(17);
  b.Input("x", {-1, 6, 16});
  b.Input("pos", {1, 6, 16});  // position embeddings: broadcast over the batch
  b.Node("Add", {"x", "pos"}, {"s"});
  b.Random("gamma", {16}, 0.2f, 13);
  b.Random("beta", {16}, 0.2f, 14);
  auto* ln = b.Node("LayerNormalization", {"s", "gamma", "beta"}, {"y"});
  GraphBuilder::IntAttr(ln, "axis", -1);
  GraphBuilder::FloatAttr(ln, "epsilon", 1e-5f);
  b.Output("y");
  auto r = ExpectSameWithAndWithoutFusion(
      b.Bytes(), {{"x", RandomInput({3, 6, 16}, 15)}, {"pos", RandomInput({1, 6, 16}, 16)}});
  EXPECT_EQ(r.fused_counts.layer_norm, 1);
  EXPECT_EQ(r.fused_counts.skip, 1);
}

TEST(GraphFusion, LayerNormalizationWithAPositiveAxis) {
  // axis = 2 on a rank-3 input, as exporters other than PyTorch's write it.
  GraphBuilder b(17);
  b.Input("x", {-1, -1, 16});
  b.Random("gamma", {16}, 0.2f, 24);
  b.Random("beta", {16}, 0.2f, 25);
  GraphBuilder::IntAttr(b.Node("LayerNormalization", {"x", "gamma", "beta"}, {"y"}), "axis", 2);
  b.Output("y");
  auto r = ExpectSameWithAndWithoutFusion(b.Bytes(), {{"x", RandomInput({2, 3, 16}, 26)}});
  EXPECT_EQ(r.fused_counts.layer_norm, 1);
}

TEST(GraphFusion, APositiveAxisThatIsNotTheLastRunsTheNodesOwnKernel) {
  // axis = 1 with a [16] scale on a [2, 3, 16] input normalizes [3, 16]: not the fused
  // pass's case, so the node's own kernel runs inside the fused one (residual included).
  GraphBuilder b(17);
  b.Input("x", {-1, 3, 16});
  b.Input("r", {-1, 3, 16});
  b.Node("Add", {"x", "r"}, {"s"});
  b.Random("gamma", {16}, 0.2f, 30);
  b.Random("beta", {16}, 0.2f, 31);
  GraphBuilder::IntAttr(b.Node("LayerNormalization", {"s", "gamma", "beta"}, {"y"}), "axis", 1);
  b.Output("y");
  auto r = ExpectSameWithAndWithoutFusion(
      b.Bytes(), {{"x", RandomInput({2, 3, 16}, 32)}, {"r", RandomInput({2, 3, 16}, 33)}});
  EXPECT_EQ(r.fused_counts.layer_norm, 1);
  EXPECT_EQ(r.fused_counts.skip, 1);
}

TEST(GraphFusion, AMaskThatDoesNotBroadcastIsAnError) {
  GraphBuilder b(14);
  b.Input("q", {-1, 2, -1, 8});
  b.Input("kt", {-1, 2, 8, -1});
  b.Input("mask", {-1, 1, 1, -1});
  b.Node("MatMul", {"q", "kt"}, {"scores"});
  b.Scalar("c", 2.0f);
  b.Node("Mul", {"scores", "c"}, {"scaled"});
  b.Node("Add", {"scaled", "mask"}, {"masked"});
  GraphBuilder::IntAttr(b.Node("Softmax", {"masked"}, {"y"}), "axis", -1);
  b.Output("y");
  SessionOptions options;
  options.intra_op_threads = 2;
  auto s = Session::LoadFromBytes(b.Bytes(), "", options);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ((*s)->fusions().softmax, 1);
  // 5 mask columns against 7 keys.
  auto out = (*s)->Run({{"q", RandomInput({2, 2, 7, 8}, 34)},
                        {"kt", RandomInput({2, 2, 8, 7}, 35)},
                        {"mask", RandomInput({2, 1, 1, 5}, 36)}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("does not broadcast"), std::string::npos)
      << out.status().ToString();
}

TEST(GraphFusion, ScaledMaskedSoftmaxBroadcastsTheMask) {
  GraphBuilder b(14);
  b.Input("q", {-1, 2, -1, 8});
  b.Input("kt", {-1, 2, 8, -1});
  b.Input("mask", {-1, 1, 1, -1});
  b.Node("MatMul", {"q", "kt"}, {"scores"});
  b.Scalar("c", std::sqrt(8.0f));
  b.Node("Div", {"scores", "c"}, {"scaled"});
  b.Node("Add", {"scaled", "mask"}, {"masked"});
  GraphBuilder::IntAttr(b.Node("Softmax", {"masked"}, {"y"}), "axis", -1);
  b.Output("y");
  // A mask as Hugging Face builds it: 0 for keys kept, the float minimum for padding.
  std::vector<float> mask(2 * 7, 0.0f);
  for (int j = 4; j < 7; ++j) mask[7 + j] = -3.4028234663852886e38f;
  auto r = ExpectSameWithAndWithoutFusion(
      b.Bytes(), {{"q", RandomInput({2, 2, 7, 8}, 17)},
                  {"kt", RandomInput({2, 2, 8, 7}, 18)},
                  {"mask", Tensor::FromVector<float>({2, 1, 1, 7}, mask)}});
  EXPECT_EQ(r.fused_counts.softmax, 1);
  EXPECT_EQ(r.fused_nodes, 2u);  // the MatMul of two run-time values stays
}

TEST(GraphFusion, IntermediatesReadElsewhereAreNotFused) {
  // The product itself is an output: the bias cannot be folded into the Linear, so the
  // GELU (on the Add's output) is fused on its own.
  auto r = ExpectSameWithAndWithoutFusion(LinearBiasGeluModel({-1, 8}, 8, 19, {"mm"}),
                                          {{"x", RandomInput({4, 8}, 21)}});
  EXPECT_EQ(r.fused_counts.linear, 1);
  EXPECT_EQ(r.fused_counts.bias, 0);
  EXPECT_EQ(r.fused_counts.gelu, 1);
  EXPECT_EQ(r.fused_nodes, 3u);  // Linear, Add, Gelu
}

TEST(GraphFusion, AGeluInputThatIsAnOutputSurvives) {
  // The pre-activation is wanted too: the bias folds in, the GELU stays five nodes.
  auto r = ExpectSameWithAndWithoutFusion(LinearBiasGeluModel({-1, 8}, 8, 27, {"h"}),
                                          {{"x", RandomInput({4, 8}, 29)}});
  EXPECT_EQ(r.fused_counts.linear, 1);
  EXPECT_EQ(r.fused_counts.bias, 1);
  EXPECT_EQ(r.fused_counts.gelu, 0);
  EXPECT_EQ(r.fused_nodes, 6u);
}

TEST(GraphFusion, ANonGeluChainIsLeftAlone) {
  GraphBuilder b(14);
  b.Input("x", {-1, 8});
  b.Random("w", {8, 8}, 0.3f, 22);
  b.Node("MatMul", {"x", "w"}, {"h"});
  // Like GELU but with a different constant: must not be taken for it.
  b.Scalar("k", 1.5f);
  b.Scalar("one", 1.0f);
  b.Scalar("half", 0.5f);
  b.Node("Div", {"h", "k"}, {"s"});
  b.Node("Erf", {"s"}, {"e"});
  b.Node("Add", {"e", "one"}, {"e1"});
  b.Node("Mul", {"h", "e1"}, {"m"});
  b.Node("Mul", {"m", "half"}, {"y"});
  b.Output("y");
  auto r = ExpectSameWithAndWithoutFusion(b.Bytes(), {{"x", RandomInput({3, 8}, 23)}});
  EXPECT_EQ(r.fused_counts.linear, 1);
  EXPECT_EQ(r.fused_counts.gelu, 0);
  EXPECT_EQ(r.fused_nodes, 6u);
}

}  // namespace
}  // namespace infermesh::runtime
