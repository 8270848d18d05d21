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
#include <fstream>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "runtime/encoder/fused_encoder.h"
#include "runtime/encoder/quantize.h"
#include "runtime/model.h"
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
    // Shaped like the files users download (tests/fixtures/make_hf_encoders.py).
    {"hf_bert_op14_matmul", "hf-bert-op14-matmul/onnx/model.onnx"},
    {"hf_bert_op14_matmul_pooler", "hf-bert-op14-matmul-pooler/onnx/model.onnx"},
    {"hf_bert_op14_gemm", "hf-bert-op14-gemm/onnx/model.onnx"},
    {"hf_bert_op14_gemm_pooler", "hf-bert-op14-gemm-pooler/onnx/model.onnx"},
    {"hf_bert_op17_matmul", "hf-bert-op17-matmul/onnx/model.onnx"},
    {"hf_bert_op17_matmul_pooler", "hf-bert-op17-matmul-pooler/onnx/model.onnx"},
    {"hf_bert_op17_gemm", "hf-bert-op17-gemm/onnx/model.onnx"},
    {"hf_bert_op17_gemm_pooler", "hf-bert-op17-gemm-pooler/onnx/model.onnx"},
    {"hf_roberta_op14_matmul_pooler", "hf-roberta-op14-matmul-pooler/onnx/model.onnx"},
    {"hf_roberta_op17_gemm", "hf-roberta-op17-gemm/onnx/model.onnx"},
    {"hf_mpnet_op14_matmul_pooler", "hf-mpnet-op14-matmul-pooler/onnx/model.onnx"},
    {"hf_mpnet_op17_gemm", "hf-mpnet-op17-gemm/onnx/model.onnx"},
    {"hf_bge_small", "hf-bge-small/onnx/model.onnx"},
    {"hf_bert_op17_relaid", "hf-bert-op17-relaid/onnx/model.onnx"},
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
void ExpectClose(const Tensor& ref, const Tensor& got, const std::string& what,
                 double min_row_cosine = kMinRowCosine,
                 double max_rel_abs_error = kMaxRelAbsError) {
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
  EXPECT_GE(min_cos, min_row_cosine)
      << what << ": row " << worst_cos_row << " of " << rows << " (width " << width << ")";
  EXPECT_LE(max_err, max_rel_abs_error * max_ref)
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
  const FusionCounts f = (*session)->fusions();
  std::printf("  fusions: %d linear (%d bias, %d gelu), %d layer norm (%d residual), %d softmax\n",
              f.linear, f.bias, f.gelu, f.layer_norm, f.skip, f.softmax);
  const std::string name = GetParam().name;
  if (name.starts_with("hf_")) {
    // Hugging Face-shaped encoders: every linear layer and norm is fused on the graph
    // path too, and BERT's attention softmax (MPNet adds its position bias first).
    EXPECT_GT(f.linear, 0);
    EXPECT_EQ(f.linear, f.bias);
    EXPECT_GT(f.gelu, 0);
    EXPECT_GT(f.layer_norm, 0);
    if (name.find("mpnet") == std::string::npos) {
      EXPECT_GT(f.softmax, 0);
    }
  }
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

// The fused encoder path (runtime/encoder/) on the same fixtures: EmbeddingModel must
// choose it for every BERT-style fixture, and its hidden states on real tokens must
// match PyTorch's like the graph's do (float32), or within bf16's rounding (bf16).
struct FusedCase {
  const char* name;
  const char* dir;
  Precision precision;
};
void PrintTo(const FusedCase& c, std::ostream* os) { *os << c.name; }

const FusedCase kFusedCases[] = {
    {"tiny_op14_fp32", "tiny-op14", Precision::kFp32},
    {"tiny_op17_fp32", "tiny-op17", Precision::kFp32},
    {"bge_small_op14_fp32", "bge-small-op14", Precision::kFp32},
    {"bge_small_op17_fp32", "bge-small-op17", Precision::kFp32},
    {"tiny_op17_bf16", "tiny-op17", Precision::kBf16},
    {"bge_small_op14_bf16", "bge-small-op14", Precision::kBf16},
    {"tiny_op17_int8", "tiny-op17", Precision::kInt8},
    {"bge_small_op14_int8", "bge-small-op14", Precision::kInt8},
    {"bge_small_op17_int8", "bge-small-op17", Precision::kInt8},
    // Hugging Face-shaped exports: every layout must take the fused path.
    {"hf_bert_op14_matmul_fp32", "hf-bert-op14-matmul", Precision::kFp32},
    {"hf_bert_op14_matmul_pooler_fp32", "hf-bert-op14-matmul-pooler", Precision::kFp32},
    {"hf_bert_op14_gemm_fp32", "hf-bert-op14-gemm", Precision::kFp32},
    {"hf_bert_op14_gemm_pooler_fp32", "hf-bert-op14-gemm-pooler", Precision::kFp32},
    {"hf_bert_op17_matmul_fp32", "hf-bert-op17-matmul", Precision::kFp32},
    {"hf_bert_op17_matmul_pooler_fp32", "hf-bert-op17-matmul-pooler", Precision::kFp32},
    {"hf_bert_op17_gemm_fp32", "hf-bert-op17-gemm", Precision::kFp32},
    {"hf_bert_op17_gemm_pooler_fp32", "hf-bert-op17-gemm-pooler", Precision::kFp32},
    {"hf_roberta_op14_matmul_pooler_fp32", "hf-roberta-op14-matmul-pooler", Precision::kFp32},
    {"hf_roberta_op17_gemm_fp32", "hf-roberta-op17-gemm", Precision::kFp32},
    {"hf_mpnet_op14_matmul_pooler_fp32", "hf-mpnet-op14-matmul-pooler", Precision::kFp32},
    {"hf_mpnet_op17_gemm_fp32", "hf-mpnet-op17-gemm", Precision::kFp32},
    {"hf_bge_small_fp32", "hf-bge-small", Precision::kFp32},
    {"hf_bert_op17_relaid_fp32", "hf-bert-op17-relaid", Precision::kFp32},
    {"hf_bge_small_bf16", "hf-bge-small", Precision::kBf16},
    {"hf_bge_small_int8", "hf-bge-small", Precision::kInt8},
    {"hf_roberta_op17_gemm_int8", "hf-roberta-op17-gemm", Precision::kInt8},
    {"hf_mpnet_op17_gemm_bf16", "hf-mpnet-op17-gemm", Precision::kBf16},
};

// bf16 rounds every matmul input to 8 significant bits: per-token hidden states must
// still point the same way (docs/testing.md states these bars).
constexpr double kBf16MinRowCosine = 0.99998;
constexpr double kBf16MaxRelAbsError = 1e-2;
// int8 quantizes every matmul input per token to 8 bits (7 plus sign).
constexpr double kInt8MinRowCosine = 0.9998;
constexpr double kInt8MaxRelAbsError = 3e-2;

class FusedEncoderParity : public ::testing::TestWithParam<FusedCase> {};

TEST_P(FusedEncoderParity, MatchesPyTorchOnRealTokens) {
  const FusedCase& c = GetParam();
  if (c.precision == Precision::kBf16 && !encoder::CpuHasAvx512Bf16()) {
    GTEST_SKIP() << "this CPU has no AVX512-BF16";
  }
  if (c.precision == Precision::kInt8 && !encoder::CpuHasAvx512Vnni()) {
    GTEST_SKIP() << "this CPU has no AVX512-VNNI";
  }
  const fs::path dir = fs::path(FixtureDir()) / c.dir;
  SessionOptions options;
  options.intra_op_threads = 2;
  options.precision = c.precision;
  auto model = EmbeddingModel::Load(dir.string(), options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const encoder::FusedEncoder* enc = (*model)->fused_encoder();
  ASSERT_NE(enc, nullptr) << "EmbeddingModel did not take the fused encoder path for " << dir;
  EXPECT_EQ((*model)->precision(), c.precision);

  for (const auto& set : DataSets(dir / "onnx")) {
    SCOPED_TRACE(set.string());
    auto ids = ReadTensorFile((set / "input_0.pb").string());
    auto mask = ReadTensorFile((set / "input_1.pb").string());
    // Models without token types (MPNet) have two inputs.
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    const bool has_types = fs::exists(set / "input_2.pb");
    auto types = has_types ? ReadTensorFile((set / "input_2.pb").string())
                           : Result<Tensor>(Tensor::FromVector<int64_t>(
                                 ids->shape(), std::vector<int64_t>(ids->numel(), 0)));
    auto ref = ReadTensorFile((set / "output_0.pb").string());
    ASSERT_TRUE(ids.ok() && mask.ok() && types.ok() && ref.ok());
    const int64_t batch = ids->dim(0), seq = ids->dim(1), hidden = ref->dim(2);
    encoder::PackedBatch pb;
    pb.cu.push_back(0);
    std::vector<float> want;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t s = 0; s < seq; ++s) {
        if (mask->data<int64_t>()[b * seq + s] == 0) continue;
        pb.ids.push_back(ids->data<int64_t>()[b * seq + s]);
        pb.type_ids.push_back(types->data<int64_t>()[b * seq + s]);
        const float* row = ref->data<float>() + (b * seq + s) * hidden;
        want.insert(want.end(), row, row + hidden);
      }
      pb.cu.push_back(static_cast<int64_t>(pb.ids.size()));
    }
    const int64_t tokens = static_cast<int64_t>(pb.ids.size());
    Tensor got = Tensor::Empty(DataType::kFloat32, {tokens, hidden});
    auto st =
        enc->Run(pb, [&](const float* x) { std::copy(x, x + tokens * hidden, got.data<float>()); });
    ASSERT_TRUE(st.ok()) << st.ToString();
    Tensor expected = Tensor::FromVector<float>({tokens, hidden}, want);
    if (c.precision == Precision::kFp32) {
      ExpectClose(expected, got, set.filename().string() + " fused fp32 vs PyTorch");
      const fs::path ort_file = set / "output_0.ort.pb";
      if (fs::exists(ort_file)) {
        auto ort = ReadTensorFile(ort_file.string());
        ASSERT_TRUE(ort.ok()) << ort.status().ToString();
        std::vector<float> ort_rows;
        for (int64_t b = 0; b < batch; ++b) {
          for (int64_t s = 0; s < seq; ++s) {
            if (mask->data<int64_t>()[b * seq + s] == 0) continue;
            const float* row = ort->data<float>() + (b * seq + s) * hidden;
            ort_rows.insert(ort_rows.end(), row, row + hidden);
          }
        }
        ExpectClose(Tensor::FromVector<float>({tokens, hidden}, ort_rows), got,
                    set.filename().string() + " fused fp32 vs ONNX Runtime");
      }
    } else if (c.precision == Precision::kBf16) {
      ExpectClose(expected, got, set.filename().string() + " fused bf16 vs PyTorch",
                  kBf16MinRowCosine, kBf16MaxRelAbsError);
    } else {
      ExpectClose(expected, got, set.filename().string() + " fused int8 vs PyTorch",
                  kInt8MinRowCosine, kInt8MaxRelAbsError);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, FusedEncoderParity, ::testing::ValuesIn(kFusedCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Sentence embeddings of a text corpus: the fused float32 against the ONNX graph (never
// skipped), and bf16 and int8 against our float32 (each skipped only on a CPU without
// its instructions). The bars are the ones docs/configuration.md states.
constexpr double kCorpusGraphMinCosine = 0.99999;
constexpr double kCorpusBf16MinCosine = 0.99999;
constexpr double kCorpusInt8MinCosine = 0.9998;

class FusedEncoderCorpus : public ::testing::TestWithParam<const char*> {};

TEST_P(FusedEncoderCorpus, EmbeddingsMatchTheGraphAndFloat32) {
  const fs::path dir = fs::path(FixtureDir()) / GetParam();
  SessionOptions options;
  options.intra_op_threads = 2;
  options.precision = Precision::kFp32;
  auto fp32 = EmbeddingModel::Load(dir.string(), options);
  ASSERT_TRUE(fp32.ok()) << fp32.status().ToString();
  ASSERT_NE((*fp32)->fused_encoder(), nullptr);
  options.fused_encoder = false;
  options.precision.reset();
  auto graph = EmbeddingModel::Load(dir.string(), options);
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();
  ASSERT_EQ((*graph)->fused_encoder(), nullptr);

  std::vector<std::string> texts;
  // The project's own prose: short and long lines, code, punctuation.
  for (const char* doc : {"/docs/api.md", "/docs/operations.md", "/docs/configuration.md"}) {
    std::ifstream corpus(std::string(INFERMESH_SOURCE_DIR) + doc);
    for (std::string line; std::getline(corpus, line) && texts.size() < 96;) {
      if (line.size() > 20) texts.push_back(line);
    }
  }
  ASSERT_GE(texts.size(), 64u);
  EmbedOptions eo;
  eo.normalize = true;
  auto a = (*fp32)->Embed(texts, eo);
  auto g = (*graph)->Embed(texts, eo);
  ASSERT_TRUE(a.ok() && g.ok());
  auto min_cosine = [&](const std::vector<std::vector<float>>& other) {
    double m = 1;
    for (size_t i = 0; i < texts.size(); ++i) {
      double dot = 0;
      for (size_t j = 0; j < (*a)[i].size(); ++j) dot += double((*a)[i][j]) * other[i][j];
      m = std::min(m, dot);
    }
    return m;
  };
  const double graph_cos = min_cosine(*g);
  std::printf("  %zu texts: min cosine fused fp32 vs graph %.9f\n", texts.size(), graph_cos);
  EXPECT_GE(graph_cos, kCorpusGraphMinCosine);

  for (Precision p : {Precision::kBf16, Precision::kInt8}) {
    const bool have =
        p == Precision::kBf16 ? encoder::CpuHasAvx512Bf16() : encoder::CpuHasAvx512Vnni();
    if (!have) {
      std::printf("  %s: skipped, this CPU lacks its instructions\n",
                  std::string(PrecisionName(p)).c_str());
      continue;
    }
    options.fused_encoder = true;
    options.precision = p;
    auto reduced = EmbeddingModel::Load(dir.string(), options);
    ASSERT_TRUE(reduced.ok()) << reduced.status().ToString();
    ASSERT_EQ((*reduced)->precision(), p);
    auto r = (*reduced)->Embed(texts, eo);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const double cos = min_cosine(*r);
    std::printf("  min cosine %s vs fp32 %.6f\n", std::string(PrecisionName(p)).c_str(), cos);
    EXPECT_GE(cos, p == Precision::kBf16 ? kCorpusBf16MinCosine : kCorpusInt8MinCosine)
        << PrecisionName(p);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, FusedEncoderCorpus,
                         ::testing::Values("bge-small-op14", "hf-bge-small"), [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

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
