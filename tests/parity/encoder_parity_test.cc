// Parity of our runtime with PyTorch and ONNX Runtime on the reference models that
// tests/fixtures/make_encoders.py generates (BERT-style encoders at opsets 14 and 17, an MLP
// and a small CNN). Each model folder holds ONNX node-test data sets:
// test_data_set_N/input_K.pb, output_0.pb (PyTorch) and output_0.ort.pb (ONNX Runtime).
//
// The fixture folder comes from $INFERMESH_FIXTURE_DIR, or else the compile-time default
// (${CMAKE_BINARY_DIR}/fixtures, filled by the encoder_fixtures CTest fixture step).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "runtime/onnx_tensor.h"
#include "runtime/session.h"
#include "runtime/tensor.h"

namespace infermesh::runtime {
namespace {

namespace fs = std::filesystem;

// Acceptance thresholds, per output row (one token vector, or one sample's logits).
constexpr double kMinRowCosine = 0.99999;
constexpr double kMaxRelAbsError = 1e-4;  // times max |reference| over the whole output

std::string FixtureDir() {
  if (const char* env = std::getenv("INFERMESH_FIXTURE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return INFERMESH_FIXTURE_DIR;
}

struct ModelCase {
  const char* name;        // test name suffix
  const char* model_path;  // relative to the fixture folder
};

void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

const ModelCase kModels[] = {
    {"tiny_op14", "tiny-op14/onnx/model.onnx"},
    {"tiny_op17", "tiny-op17/onnx/model.onnx"},
    {"bge_small_op14", "bge-small-op14/onnx/model.onnx"},
    {"bge_small_op17", "bge-small-op17/onnx/model.onnx"},
    {"mlp", "mlp/model.onnx"},
    {"cnn", "cnn/model.onnx"},
};

Result<std::unique_ptr<Session>> LoadModel(const std::string& path) {
  SessionOptions options;
  options.intra_op_threads = 2;
  return Session::Load(path, options);
}

double MillisecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<fs::path> DataSets(const fs::path& model_dir) {
  std::vector<fs::path> sets;
  for (const auto& entry : fs::directory_iterator(model_dir)) {
    if (entry.is_directory() && entry.path().filename().string().starts_with("test_data_set_")) {
      sets.push_back(entry.path());
    }
  }
  std::sort(sets.begin(), sets.end());
  return sets;
}

// Compares `got` against `ref` row by row (rows = last dimension) and reports the worst row.
void ExpectClose(const Tensor& ref, const Tensor& got, const std::string& what) {
  ASSERT_EQ(got.dtype(), DataType::kFloat32) << what << ": got " << got.DebugString();
  ASSERT_EQ(ShapeToString(got.shape()), ShapeToString(ref.shape())) << what;
  ASSERT_GT(ref.rank(), 0u) << what;
  const int64_t width = ref.shape().back();
  const int64_t rows = width == 0 ? 0 : ref.numel() / width;
  const float* r = ref.data<float>();
  const float* g = got.data<float>();

  double max_ref = 0, max_err = 0, min_cos = 1;
  int64_t worst_err_at = 0, worst_cos_row = 0, nonfinite = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    if (!std::isfinite(g[i])) ++nonfinite;
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(r[i])));
    const double err = std::fabs(static_cast<double>(r[i]) - g[i]);
    if (!(err <= max_err)) {  // also catches NaN
      max_err = std::isnan(err) ? INFINITY : err;
      worst_err_at = i;
    }
  }
  for (int64_t row = 0; row < rows; ++row) {
    double dot = 0, nr = 0, ng = 0;
    for (int64_t j = 0; j < width; ++j) {
      const double a = r[row * width + j], b = g[row * width + j];
      dot += a * b;
      nr += a * a;
      ng += b * b;
    }
    double cos = (nr == 0 && ng == 0) ? 1.0 : dot / std::sqrt(std::max(nr * ng, 1e-300));
    if (std::isnan(cos)) cos = -1;
    if (cos < min_cos) {
      min_cos = cos;
      worst_cos_row = row;
    }
  }
  EXPECT_EQ(nonfinite, 0) << what << ": non-finite outputs";
  EXPECT_GE(min_cos, kMinRowCosine)
      << what << ": row " << worst_cos_row << " of " << rows << " (width " << width << ")";
  EXPECT_LE(max_err, kMaxRelAbsError * max_ref)
      << what << ": max abs error at flat index " << worst_err_at << " (ref " << r[worst_err_at]
      << ", got " << g[worst_err_at] << "), max |ref| " << max_ref;
  std::printf("  %s: min row cosine %.9f, max abs error %.3g (max |ref| %.3g)\n", what.c_str(),
              min_cos, max_err, max_ref);
}

class EncoderParity : public ::testing::TestWithParam<ModelCase> {};

TEST_P(EncoderParity, MatchesPyTorchAndOnnxRuntime) {
  const fs::path model = fs::path(FixtureDir()) / GetParam().model_path;
  ASSERT_TRUE(fs::exists(model)) << model << " is missing; run tests/fixtures/make_encoders.py"
                                 << " --out " << FixtureDir();
  auto t0 = std::chrono::steady_clock::now();
  auto session = LoadModel(model.string());
  ASSERT_TRUE(session.ok()) << "Session::Load(" << model << "): " << session.status().ToString();
  std::printf("  load: %.0f ms\n", MillisecondsSince(t0));
  const auto& declared = (*session)->inputs();

  const auto sets = DataSets(model.parent_path());
  ASSERT_FALSE(sets.empty()) << "no test_data_set_* next to " << model;
  bool saw_ort = false;
  for (const auto& set : sets) {
    SCOPED_TRACE(set.string());
    // ONNX node-test layout: input_K.pb is the K-th graph input.
    std::vector<std::pair<std::string, Tensor>> feeds;
    for (size_t k = 0; k < declared.size(); ++k) {
      const fs::path file = set / ("input_" + std::to_string(k) + ".pb");
      auto tensor = ReadTensorFile(file.string());
      ASSERT_TRUE(tensor.ok()) << file << ": " << tensor.status().ToString();
      feeds.emplace_back(declared[k].name, std::move(tensor).value());
    }
    t0 = std::chrono::steady_clock::now();
    auto outputs = (*session)->Run(feeds);
    ASSERT_TRUE(outputs.ok()) << "Run: " << outputs.status().ToString();
    std::printf("  %s run: %.0f ms\n", set.filename().c_str(), MillisecondsSince(t0));
    ASSERT_EQ(outputs->size(), (*session)->outputs().size());

    for (size_t k = 0; k < outputs->size(); ++k) {
      const std::string stem = "output_" + std::to_string(k);
      auto torch_ref = ReadTensorFile((set / (stem + ".pb")).string());
      ASSERT_TRUE(torch_ref.ok()) << torch_ref.status().ToString();
      ExpectClose(*torch_ref, (*outputs)[k], set.filename().string() + " vs PyTorch");

      const fs::path ort_file = set / (stem + ".ort.pb");
      if (!fs::exists(ort_file)) continue;
      saw_ort = true;
      auto ort_ref = ReadTensorFile(ort_file.string());
      ASSERT_TRUE(ort_ref.ok()) << ort_ref.status().ToString();
      ExpectClose(*ort_ref, (*outputs)[k], set.filename().string() + " vs ONNX Runtime");
    }
  }
  if (!saw_ort) {
    // The generator writes ORT references only when tools/ref/node_modules is installed.
    GTEST_SKIP() << "PyTorch parity passed; no ONNX Runtime references (install tools/ref)";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, EncoderParity, ::testing::ValuesIn(kModels),
                         [](const auto& info) { return std::string(info.param.name); });

// Bad inputs must come back as a clear InvalidArgument from Run, never a crash.
class EncoderInputValidation : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path model = fs::path(FixtureDir()) / "tiny-op17/onnx/model.onnx";
    ASSERT_TRUE(fs::exists(model)) << model << " is missing";
    auto session = LoadModel(model.string());
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    session_ = std::move(session).value();
  }

  static Tensor Ids(DataType dtype, Shape shape) {
    Tensor t = Tensor::Empty(dtype, shape);
    if (dtype == DataType::kInt64) {
      auto v = t.mutable_values<int64_t>();
      std::fill(v.begin(), v.end(), int64_t{1});
    }
    return t;
  }

  // Runs and expects an InvalidArgument whose message names `mentions`.
  void ExpectRejected(const std::vector<std::pair<std::string, Tensor>>& feeds,
                      const std::string& mentions) {
    auto out = session_->Run(feeds);
    ASSERT_FALSE(out.ok()) << "Run accepted bad inputs";
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << out.status().ToString();
    EXPECT_NE(out.status().message().find(mentions), std::string::npos)
        << "error should mention '" << mentions << "': " << out.status().ToString();
  }

  std::unique_ptr<Session> session_;
};

TEST_F(EncoderInputValidation, GoodInputsRun) {
  auto out = session_->Run({{"input_ids", Ids(DataType::kInt64, {2, 5})},
                            {"attention_mask", Ids(DataType::kInt64, {2, 5})},
                            {"token_type_ids", Tensor::Empty(DataType::kInt64, {2, 5})}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ(ShapeToString((*out)[0].shape()), "[2,5,32]");
}

TEST_F(EncoderInputValidation, WrongInputName) {
  ExpectRejected({{"input_idz", Ids(DataType::kInt64, {1, 4})},
                  {"attention_mask", Ids(DataType::kInt64, {1, 4})},
                  {"token_type_ids", Ids(DataType::kInt64, {1, 4})}},
                 "input_idz");
}

TEST_F(EncoderInputValidation, MissingInput) {
  ExpectRejected({{"input_ids", Ids(DataType::kInt64, {1, 4})},
                  {"attention_mask", Ids(DataType::kInt64, {1, 4})}},
                 "token_type_ids");
}

TEST_F(EncoderInputValidation, WrongDtype) {
  ExpectRejected({{"input_ids", Ids(DataType::kInt32, {1, 4})},
                  {"attention_mask", Ids(DataType::kInt64, {1, 4})},
                  {"token_type_ids", Ids(DataType::kInt64, {1, 4})}},
                 "input_ids");
}

TEST_F(EncoderInputValidation, WrongRank) {
  ExpectRejected({{"input_ids", Ids(DataType::kInt64, {4})},
                  {"attention_mask", Ids(DataType::kInt64, {1, 4})},
                  {"token_type_ids", Ids(DataType::kInt64, {1, 4})}},
                 "input_ids");
}

TEST(EncoderInputValidationMlp, WrongStaticDimension) {
  const fs::path model = fs::path(FixtureDir()) / "mlp/model.onnx";
  ASSERT_TRUE(fs::exists(model)) << model << " is missing";
  auto session = LoadModel(model.string());
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  auto out = (*session)->Run({{"input", Tensor::Empty(DataType::kFloat32, {2, 63})}});
  ASSERT_FALSE(out.ok()) << "Run accepted [2,63] for a [batch,64] input";
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << out.status().ToString();
  EXPECT_NE(out.status().message().find("input"), std::string::npos) << out.status().ToString();
}

}  // namespace
}  // namespace infermesh::runtime
