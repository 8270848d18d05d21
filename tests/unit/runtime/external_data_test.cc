// Initializers stored in ONNX external-data files: loaded relative to the model,
// with bounds and path checks.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>

#include "runtime/onnx_tensor.h"
#include "runtime/session.h"

namespace infermesh::runtime {
namespace {

namespace fs = std::filesystem;

class ExternalDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("infermesh_ext_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    // weights.bin holds 8 bytes of padding, then the 3 floats of w.
    std::ofstream f(dir_ / "weights.bin", std::ios::binary);
    const float w[3] = {1.f, 2.f, 3.f};
    f.write("PADDING!", 8);
    f.write(reinterpret_cast<const char*>(w), sizeof w);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // y = x + w, with w external at (location, offset, length).
  std::string WriteModel(const std::string& location, const std::string& offset,
                         const std::string& length) {
    onnx::ModelProto m;
    m.set_ir_version(8);
    m.add_opset_import()->set_version(17);
    auto* g = m.mutable_graph();
    auto* in = g->add_input();
    in->set_name("x");
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_value(3);
    auto* w = g->add_initializer();
    w->set_name("w");
    w->set_data_type(onnx::TensorProto::FLOAT);
    w->add_dims(3);
    w->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add_kv = [&](const char* k, const std::string& v) {
      auto* kv = w->add_external_data();
      kv->set_key(k);
      kv->set_value(v);
    };
    add_kv("location", location);
    if (!offset.empty()) add_kv("offset", offset);
    if (!length.empty()) add_kv("length", length);
    auto* n = g->add_node();
    n->set_op_type("Add");
    n->add_input("x");
    n->add_input("w");
    n->add_output("y");
    auto* out = g->add_output();
    out->set_name("y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    std::string path = (dir_ / "model.onnx").string();
    std::ofstream(path, std::ios::binary) << m.SerializeAsString();
    return path;
  }

  fs::path dir_;
};

TEST_F(ExternalDataTest, LoadsWeightsAtOffset) {
  auto s = Session::Load(WriteModel("weights.bin", "8", "12"));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto out = (*s)->Run({{"x", Tensor::FromVector<float>({3}, {10, 20, 30})}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  auto v = (*out)[0].values<float>();
  EXPECT_EQ(std::vector<float>(v.begin(), v.end()), (std::vector<float>{11, 22, 33}));
}

TEST_F(ExternalDataTest, RejectsBadRangesAndPaths) {
  auto missing = Session::Load(WriteModel("nothere.bin", "", ""));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nothere.bin"), std::string::npos);

  auto beyond = Session::Load(WriteModel("weights.bin", "16", "12"));
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.status().code(), StatusCode::kDataLoss);

  auto wrong_length = Session::Load(WriteModel("weights.bin", "0", "8"));
  ASSERT_FALSE(wrong_length.ok());
  EXPECT_NE(wrong_length.status().message().find("shape needs 12"), std::string::npos);

  auto escape = Session::Load(WriteModel("../../etc/passwd", "", ""));
  ASSERT_FALSE(escape.ok());
  EXPECT_NE(escape.status().message().find("must be relative"), std::string::npos);

  auto garbage_offset = Session::Load(WriteModel("weights.bin", "eight", ""));
  ASSERT_FALSE(garbage_offset.ok());
  EXPECT_NE(garbage_offset.status().message().find("malformed"), std::string::npos);
}

}  // namespace
}  // namespace infermesh::runtime
