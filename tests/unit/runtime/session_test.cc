// Session loading and execution, including every kind of bad model and bad input
// the runtime must reject with a clear error rather than crash.
#include "runtime/session.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <fstream>

#include "runtime/memory_pool.h"
#include "runtime/onnx_tensor.h"

namespace infermesh::runtime {
namespace {

void AddInput(onnx::GraphProto* g, const std::string& name, int elem_type,
              std::vector<int64_t> dims) {
  auto* v = g->add_input();
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  auto* shape = tt->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d < 0) {
      dim->set_dim_param("batch");
    } else {
      dim->set_dim_value(d);
    }
  }
}

void AddOutput(onnx::GraphProto* g, const std::string& name) {
  auto* v = g->add_output();
  v->set_name(name);
  v->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
}

onnx::NodeProto* AddNode(onnx::GraphProto* g, const std::string& op, std::vector<std::string> ins,
                         std::vector<std::string> outs) {
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(op + "_" + std::to_string(g->node_size()));
  for (auto& i : ins) n->add_input(i);
  for (auto& o : outs) n->add_output(o);
  return n;
}

onnx::ModelProto BaseModel(int opset = 17) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  return m;
}

// y = Relu(x + w) with w an initializer.
onnx::ModelProto AddReluModel() {
  auto m = BaseModel();
  auto* g = m.mutable_graph();
  AddInput(g, "x", onnx::TensorProto::FLOAT, {-1, 3});
  TensorToProto(Tensor::FromVector<float>({3}, {1.f, -2.f, 0.5f}), g->add_initializer());
  g->mutable_initializer(0)->set_name("w");
  AddNode(g, "Add", {"x", "w"}, {"s"});
  AddNode(g, "Relu", {"s"}, {"y"});
  AddOutput(g, "y");
  return m;
}

Result<std::unique_ptr<Session>> LoadModel(const onnx::ModelProto& m) {
  SessionOptions options;
  options.intra_op_threads = 1;
  return Session::LoadFromBytes(m.SerializeAsString(), "", options);
}

TEST(SessionTest, RunsAGraphWithInitializers) {
  auto s = LoadModel(AddReluModel());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ((*s)->inputs().size(), 1u);
  EXPECT_EQ((*s)->inputs()[0].shape, (Shape{-1, 3}));
  EXPECT_EQ((*s)->inputs()[0].dim_params[0], "batch");
  auto out = (*s)->Run({{"x", Tensor::FromVector<float>({2, 3}, {0, 0, 0, -5, 5, 1})}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  auto v = (*out)[0].values<float>();
  std::vector<float> got(v.begin(), v.end());
  EXPECT_EQ(got, (std::vector<float>{1, 0, 0.5f, 0, 3, 1.5f}));
}

// Buffer reuse itself is checked by BufferPoolTest; this checks that recycled
// buffers never leak one run's values into the next.
TEST(SessionTest, RepeatedRunsStayCorrect) {
  auto s = LoadModel(AddReluModel());
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 50; ++i) {
    auto out = (*s)->Run({{"x", Tensor::FromVector<float>({1, 3}, {float(i), 0, 0})}});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ((*out)[0].values<float>()[0], float(i) + 1);
  }
}

TEST(SessionTest, GarbageAndTruncatedBytesFailCleanly) {
  EXPECT_EQ(Session::LoadFromBytes("", "").status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(Session::LoadFromBytes("definitely not protobuf \xff\xff\xff", "").ok());
  std::string bytes = AddReluModel().SerializeAsString();
  for (size_t cut : {bytes.size() / 2, bytes.size() - 3, size_t{5}}) {
    auto r = Session::LoadFromBytes(bytes.substr(0, cut), "");
    EXPECT_FALSE(r.ok()) << "cut at " << cut;
  }
  EXPECT_EQ(Session::Load("/nonexistent/model.onnx").status().code(), StatusCode::kNotFound);
}

TEST(SessionTest, CycleIsRejectedWithTheNodeName) {
  auto m = BaseModel();
  auto* g = m.mutable_graph();
  AddInput(g, "x", onnx::TensorProto::FLOAT, {3});
  AddNode(g, "Add", {"x", "b"}, {"a"});
  AddNode(g, "Relu", {"a"}, {"b"});
  AddOutput(g, "b");
  auto r = LoadModel(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cycle"), std::string::npos) << r.status().ToString();
}

TEST(SessionTest, UndefinedValueAndMissingOutputAreErrors) {
  auto m = BaseModel();
  auto* g = m.mutable_graph();
  AddInput(g, "x", onnx::TensorProto::FLOAT, {3});
  AddNode(g, "Relu", {"nope"}, {"y"});
  AddOutput(g, "y");
  auto r = LoadModel(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("undefined value 'nope'"), std::string::npos);

  auto m2 = AddReluModel();
  AddOutput(m2.mutable_graph(), "ghost");
  auto r2 = LoadModel(m2);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("ghost"), std::string::npos);
}

TEST(SessionTest, UnsupportedOperatorNamesNodeAndOp) {
  auto m = BaseModel();
  auto* g = m.mutable_graph();
  AddInput(g, "x", onnx::TensorProto::FLOAT, {3});
  AddNode(g, "FrobnicateV9", {"x"}, {"y"})->set_name("the_node");
  AddOutput(g, "y");
  auto r = LoadModel(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("the_node"), std::string::npos);
  EXPECT_NE(r.status().message().find("FrobnicateV9"), std::string::npos);
}

TEST(SessionTest, UnsupportedDataTypeFailsAtLoad) {
  auto m = BaseModel();
  auto* g = m.mutable_graph();
  AddInput(g, "x", onnx::TensorProto::STRING, {3});
  AddNode(g, "Identity", {"x"}, {"y"});
  AddOutput(g, "y");
  auto r = LoadModel(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("string"), std::string::npos);
}

TEST(SessionTest, AbsurdInitializerDimensionsAreRejected) {
  auto m = AddReluModel();
  auto* init = m.mutable_graph()->mutable_initializer(0);
  init->clear_dims();
  init->add_dims(int64_t{1} << 40);
  init->add_dims(int64_t{1} << 40);
  auto r = LoadModel(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("absurd"), std::string::npos) << r.status().ToString();

  init->clear_dims();
  init->add_dims(-4);
  EXPECT_FALSE(LoadModel(m).ok());

  init->clear_dims();
  init->add_dims(1000);  // raw_data holds 3 floats
  auto short_data = LoadModel(m);
  ASSERT_FALSE(short_data.ok());
  EXPECT_EQ(short_data.status().code(), StatusCode::kDataLoss);
}

// Loads a regression seed of the onnx_loader fuzzer.
Result<std::unique_ptr<Session>> LoadFuzzSeed(const std::string& name) {
  std::ifstream f(std::string(INFERMESH_SOURCE_DIR) + "/tests/fuzz/corpus/onnx_loader/" + name,
                  std::ios::binary);
  if (!f) return NotFound("missing fuzz seed " + name);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return Session::LoadFromBytes(bytes, "");
}

TEST(SessionTest, FuzzRegressionConvWithZeroStride) {
  // Found by onnx_loader_fuzz: libonnx's shape inference divides by the stride.
  auto r = LoadFuzzSeed("regression-conv-zero-stride.onnx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("Conv"), std::string::npos) << r.status().ToString();
}

TEST(SessionTest, FuzzRegressionConvWeightRankDiffersFromInput) {
  // Found by onnx_loader_fuzz: X declared [1,1,7], W [1,1,3,3]; libonnx's Conv shape
  // inference reads past its per-axis vectors and crashes.
  auto r = LoadFuzzSeed("regression-conv-rank-mismatch.onnx");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("rank"), std::string::npos) << r.status().ToString();
}

TEST(SessionTest, OpsetOutOfRangeIsRejected) {
  auto m = AddReluModel();
  m.mutable_opset_import(0)->set_version(99);
  auto r = LoadModel(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("opset 99"), std::string::npos);
}

TEST(SessionTest, WrongInputsGetClearErrors) {
  auto s = LoadModel(AddReluModel());
  ASSERT_TRUE(s.ok());
  auto& session = **s;
  auto wrong_name = session.Run({{"X", Tensor::FromVector<float>({1, 3}, {1, 2, 3})}});
  ASSERT_FALSE(wrong_name.ok());
  EXPECT_NE(wrong_name.status().message().find("unknown input 'X'"), std::string::npos);
  auto missing = session.Run({});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing input 'x'"), std::string::npos);
  auto wrong_type = session.Run({{"x", Tensor::FromVector<int64_t>({1, 3}, {1, 2, 3})}});
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.status().message().find("float32"), std::string::npos);
  auto wrong_rank = session.Run({{"x", Tensor::FromVector<float>({3}, {1, 2, 3})}});
  ASSERT_FALSE(wrong_rank.ok());
  EXPECT_NE(wrong_rank.status().message().find("rank 2"), std::string::npos);
  auto wrong_dim = session.Run({{"x", Tensor::FromVector<float>({1, 4}, {1, 2, 3, 4})}});
  ASSERT_FALSE(wrong_dim.ok());
  EXPECT_NE(wrong_dim.status().message().find("dimension 1 must be 3"), std::string::npos);
}

TEST(SessionTest, ConstantSubgraphsAreFoldedAtLoad) {
  // y = x + (c1 * c2): the Mul has only constant inputs and runs at load.
  auto m = BaseModel();
  auto* g = m.mutable_graph();
  AddInput(g, "x", onnx::TensorProto::FLOAT, {2});
  TensorToProto(Tensor::FromVector<float>({2}, {2, 3}), g->add_initializer());
  g->mutable_initializer(0)->set_name("c1");
  TensorToProto(Tensor::FromVector<float>({2}, {10, 100}), g->add_initializer());
  g->mutable_initializer(1)->set_name("c2");
  AddNode(g, "Mul", {"c1", "c2"}, {"p"});
  AddNode(g, "Add", {"x", "p"}, {"y"});
  AddOutput(g, "y");
  auto s = LoadModel(m);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto out = (*s)->Run({{"x", Tensor::FromVector<float>({2}, {1, 1})}});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].values<float>()[0], 21.f);
  EXPECT_EQ((*out)[0].values<float>()[1], 301.f);
}

TEST(BufferPoolTest, ReusesFreedBuffers) {
  auto pool = BufferPool::Create(1 << 20);
  void* first;
  {
    Tensor t = pool->AllocateTensor(DataType::kFloat32, {256});
    first = t.raw_data();
  }
  EXPECT_EQ(pool->cached_bytes(), 1024u);
  Tensor again = pool->AllocateTensor(DataType::kFloat32, {200});
  EXPECT_EQ(again.raw_data(), first);
  EXPECT_EQ(pool->system_allocations(), 1u);
  Tensor bigger = pool->AllocateTensor(DataType::kFloat32, {4096});
  EXPECT_EQ(pool->system_allocations(), 2u);
}

TEST(TensorTest, HalfConversionsRoundTrip) {
  // Every half value, normal and subnormal, survives half -> float -> half exactly.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) continue;  // NaN payloads
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(FloatToHalf(0.1f), 0x2e66);               // rounded to nearest, not truncated (0x2e66)
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f), 0x3c00);    // a tie rounds to even
  EXPECT_EQ(FloatToHalf(1.0f + 0x1.8p-11f), 0x3c01);  // above the tie: up, not truncated
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.f), 0x7bff);
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);            // overflow to inf
  EXPECT_EQ(FloatToHalf(5.9604645e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x0001), 5.9604645e-08f);
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  EXPECT_EQ(BFloat16ToFloat(0x3f80), 1.0f);
}

}  // namespace
}  // namespace infermesh::runtime
