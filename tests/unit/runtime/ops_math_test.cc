// Unit tests for runtime/gemm.h and the math operator family (ops/math*.cc),
// checked against naive double-precision references.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "op_runner.h"
#include "runtime/gemm.h"
#include "runtime/kernel.h"
#include "runtime/onnx_tensor.h"

namespace infermesh::runtime {
namespace {

// Math nodes poison fresh outputs so that unwritten elements show up.
testing::OpRunner MathOp(const std::string& op, int opset) {
  testing::OpRunner r(op, opset);
  r.PoisonOutputs();
  return r;
}

std::vector<float> RandomVector(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

Tensor RandomTensor(const Shape& shape, uint32_t seed) {
  return Tensor::FromVector<float>(shape,
                                   RandomVector(static_cast<size_t>(NumElements(shape)), seed));
}

void ExpectNear(const Tensor& got, const Shape& shape, const std::vector<double>& want,
                double tol = 1e-5) {
  ASSERT_EQ(got.shape(), shape);
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (int64_t i = 0; i < got.numel(); ++i) {
    ASSERT_NEAR(got.GetAsDouble(i), want[i], tol * (1.0 + std::fabs(want[i]))) << "at " << i;
  }
}

// ---------------------------------------------------------------- gemm.h

std::vector<double> NaiveGemm(const GemmParams& p, const std::vector<float>& a,
                              const std::vector<float>& b, const std::vector<float>& c) {
  const int64_t lda = p.trans_a ? p.m : p.k, ldb = p.trans_b ? p.k : p.n;
  std::vector<double> out(static_cast<size_t>(p.m * p.n));
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < p.k; ++k) {
        const double av = p.trans_a ? a[k * lda + i] : a[i * lda + k];
        const double bv = p.trans_b ? b[j * ldb + k] : b[k * ldb + j];
        s += av * bv;
      }
      out[i * p.n + j] = p.alpha * s + (p.beta == 0 ? 0.0 : p.beta * c[i * p.n + j]);
    }
  }
  return out;
}

TEST(GemmTest, AllTransposesAndScalars) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      GemmParams p{.m = 7,
                   .n = 13,
                   .k = 33,
                   .trans_a = ta,
                   .trans_b = tb,
                   .alpha = 0.5f,
                   .beta = ta ? 2.0f : 0.0f};
      auto a = RandomVector(7 * 33, 1), b = RandomVector(33 * 13, 2), c = RandomVector(7 * 13, 3);
      auto want = NaiveGemm(p, a, b, c);
      if (p.beta == 0) c.assign(c.size(), std::nanf(""));  // must not be read
      ASSERT_TRUE(Sgemm(p, a.data(), b.data(), c.data()).ok());
      for (size_t i = 0; i < c.size(); ++i) ASSERT_NEAR(c[i], want[i], 1e-4) << ta << tb << i;
    }
  }
}

TEST(GemmTest, DegenerateAndInvalid) {
  std::vector<float> c(6, 3.0f);
  ASSERT_TRUE(Sgemm({.m = 2, .n = 3, .k = 0, .beta = 0.5f}, nullptr, nullptr, c.data()).ok());
  for (float x : c) EXPECT_EQ(x, 1.5f);
  EXPECT_FALSE(Sgemm({.m = -1, .n = 3, .k = 1}, nullptr, nullptr, c.data()).ok());
  EXPECT_FALSE(Sgemm({.m = 2, .n = 3, .k = 4, .lda = 2}, nullptr, nullptr, c.data()).ok());
}

TEST(GemmTest, BatchedWithBroadcastWeight) {
  auto pool = MakeIntraOpPool(2);
  const int64_t batch = 9, m = 3, n = 5, k = 4;
  auto a = RandomVector(batch * m * k, 4), b = RandomVector(k * n, 5);
  std::vector<float> c(batch * m * n, std::nanf(""));
  GemmParams p{.m = m, .n = n, .k = k};
  ASSERT_TRUE(
      SgemmBatched(p, batch, a.data(), m * k, b.data(), 0, c.data(), m * n, pool.get()).ok());
  for (int64_t i = 0; i < batch; ++i) {
    std::vector<float> ai(a.begin() + i * m * k, a.begin() + (i + 1) * m * k);
    auto want = NaiveGemm(p, ai, b, {});
    for (int64_t j = 0; j < m * n; ++j) ASSERT_NEAR(c[i * m * n + j], want[j], 1e-5);
  }
}

// ---------------------------------------------------------------- MatMul, Gemm

std::vector<double> NaiveMatMul(const Tensor& a, const Tensor& b, const Shape& out) {
  // Promote 1-D operands, broadcast batches by index arithmetic.
  Shape as = a.shape(), bs = b.shape();
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  const size_t rank = std::max(as.size(), bs.size());
  as.insert(as.begin(), rank - as.size(), 1);
  bs.insert(bs.begin(), rank - bs.size(), 1);
  Shape batch(rank - 2);
  for (size_t d = 0; d + 2 < rank; ++d) batch[d] = as[d] == 1 ? bs[d] : as[d];
  std::vector<double> y;
  const int64_t count = NumElements(batch);
  for (int64_t bi = 0; bi < count; ++bi) {
    int64_t rem = bi, oa = 0, ob = 0, sa = 1, sb = 1;
    for (size_t d = batch.size(); d-- > 0;) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      oa += (as[d] == 1 ? 0 : idx) * sa;
      ob += (bs[d] == 1 ? 0 : idx) * sb;
      sa *= as[d];
      sb *= bs[d];
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t kk = 0; kk < k; ++kk) {
          s += a.GetAsDouble(oa * m * k + i * k + kk) * b.GetAsDouble(ob * k * n + kk * n + j);
        }
        y.push_back(s);
      }
    }
  }
  EXPECT_EQ(static_cast<int64_t>(y.size()), NumElements(out));
  return y;
}

TEST(MatMulTest, BroadcastingAndVectors) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 4}, {4, 5}},          {{2, 3, 4}, {4, 5}},
      {{2, 3, 4}, {2, 4, 5}},    {{4}, {2, 4, 5}},
      {{2, 3, 4}, {4}},          {{4}, {4}},
      {{2, 1, 3, 4}, {3, 4, 5}}, {{2, 1, 3, 4}, {1, 2, 4, 5}},
      {{3, 4}, {6, 4, 2}},       {{1, 3, 4}, {2, 4, 70}},
      {{0, 3, 4}, {4, 5}}};
  for (const auto& [sa, sb] : cases) {
    Tensor a = RandomTensor(sa, 11), b = RandomTensor(sb, 12);
    for (int threads : {1, 2}) {
      auto out = MathOp("MatMul", 13).Input(&a).Input(&b).Run(threads);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      const Tensor& y = (*out)[0];
      ExpectNear(y, y.shape(), NaiveMatMul(a, b, y.shape()), 1e-5);
    }
  }
  Tensor a = RandomTensor({2, 3, 4}, 1), b = RandomTensor({2, 4}, 2);
  auto y = MathOp("MatMul", 13).Input(&a).Input(&b).Run();
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.status().message().find("n0"), std::string::npos) << y.status().ToString();
}

TEST(MatMulTest, Int64) {
  Tensor a = Tensor::FromVector<int64_t>({2, 2}, {1, 2, 3, 4});
  Tensor b = Tensor::FromVector<int64_t>({2}, {5, 6});
  auto out = MathOp("MatMul", 13).Input(&a).Input(&b).Run();
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].shape(), (Shape{2}));
  EXPECT_EQ((*out)[0].ToInt64Vector(), (std::vector<int64_t>{17, 39}));
}

TEST(GemmOpTest, BroadcastCAndTransposes) {
  Tensor a = RandomTensor({4, 3}, 1), b = RandomTensor({5, 4}, 2), c = RandomTensor({3, 1}, 3);
  auto out = MathOp("Gemm", 13)
                 .Int("transA", 1)
                 .Int("transB", 1)
                 .Float("alpha", 0.25f)
                 .Float("beta", 2.0f)
                 .Input(&a)
                 .Input(&b)
                 .Input(&c)
                 .Run();
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  std::vector<double> want;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 5; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k) s += a.GetAsDouble(k * 3 + i) * b.GetAsDouble(j * 4 + k);
      want.push_back(0.25 * s + 2.0 * c.GetAsDouble(i));
    }
  }
  ExpectNear((*out)[0], {3, 5}, want);

  Tensor bad = RandomTensor({2, 5}, 4);
  EXPECT_FALSE(MathOp("Gemm", 13)
                   .Int("transA", 1)
                   .Int("transB", 1)
                   .Input(&a)
                   .Input(&b)
                   .Input(&bad)
                   .Run()
                   .ok());
  EXPECT_FALSE(MathOp("Gemm", 13).Int("transA", 2).Input(&a).Input(&b).Make().ok());
}

// ---------------------------------------------------------------- Softmax family

TEST(SoftmaxTest, LegacyFlattensNewUsesOneAxis) {
  Tensor x = RandomTensor({2, 3, 4}, 7);
  auto legacy = MathOp("Softmax", 11).Int("axis", 1).Input(&x).Run();
  auto modern = MathOp("Softmax", 13).Int("axis", 1).Input(&x).Run();
  ASSERT_TRUE(legacy.ok() && modern.ok());
  std::vector<double> want_legacy(24), want_modern(24);
  for (int o = 0; o < 2; ++o) {
    double s = 0;
    for (int i = 0; i < 12; ++i) s += std::exp(x.GetAsDouble(o * 12 + i));
    for (int i = 0; i < 12; ++i) want_legacy[o * 12 + i] = std::exp(x.GetAsDouble(o * 12 + i)) / s;
    for (int j = 0; j < 4; ++j) {
      double t = 0;
      for (int r = 0; r < 3; ++r) t += std::exp(x.GetAsDouble(o * 12 + r * 4 + j));
      for (int r = 0; r < 3; ++r) {
        want_modern[o * 12 + r * 4 + j] = std::exp(x.GetAsDouble(o * 12 + r * 4 + j)) / t;
      }
    }
  }
  ExpectNear((*legacy)[0], {2, 3, 4}, want_legacy);
  ExpectNear((*modern)[0], {2, 3, 4}, want_modern);

  auto log = MathOp("LogSoftmax", 13).Int("axis", 1).Input(&x).Run();
  ASSERT_TRUE(log.ok());
  for (double& w : want_modern) w = std::log(w);
  ExpectNear((*log)[0], {2, 3, 4}, want_modern);
  EXPECT_FALSE(MathOp("Softmax", 13).Int("axis", 3).Input(&x).Run().ok());
}

TEST(SoftmaxTest, HardmaxPicksFirstMaximum) {
  Tensor x = Tensor::FromVector<float>({2, 3}, {1, 3, 3, 2, 2, 0});
  auto out = MathOp("Hardmax", 13).Input(&x).Run();
  ASSERT_TRUE(out.ok());
  ExpectNear((*out)[0], {2, 3}, {0, 1, 0, 1, 0, 0});
  auto col = MathOp("Hardmax", 13).Int("axis", 0).Input(&x).Run();
  ASSERT_TRUE(col.ok());
  ExpectNear((*col)[0], {2, 3}, {0, 1, 1, 1, 0, 0});
}

// ---------------------------------------------------------------- LayerNormalization

TEST(LayerNormTest, PreciseOnLargeOffsetsWithStatistics) {
  // Rows of 384 values around 1e4: float32 one-pass variance would lose most digits.
  const int64_t rows = 3, n = 384;
  auto v = RandomVector(rows * n, 9, -0.5f, 0.5f);
  for (float& x : v) x += 10000.0f;
  Tensor x = Tensor::FromVector<float>({rows, n}, v);
  Tensor scale = RandomTensor({n}, 10), bias = RandomTensor({n}, 11);
  auto out = MathOp("LayerNormalization", 17)
                 .Float("epsilon", 1e-12f)
                 .Input(&x)
                 .Input(&scale)
                 .Input(&bias)
                 .Outputs(3)
                 .Run(2);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  std::vector<double> want, means, invs;
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += v[r * n + i];
    mean /= n;
    for (int64_t i = 0; i < n; ++i) var += (v[r * n + i] - mean) * (v[r * n + i] - mean);
    var /= n;
    const double inv = 1.0 / std::sqrt(var + 1e-12);
    for (int64_t i = 0; i < n; ++i) {
      want.push_back((v[r * n + i] - mean) * inv * scale.GetAsDouble(i) + bias.GetAsDouble(i));
    }
    means.push_back(mean);
    invs.push_back(inv);
  }
  ExpectNear((*out)[0], {rows, n}, want, 1e-5);
  ExpectNear((*out)[1], {rows, 1}, means, 1e-7);
  ExpectNear((*out)[2], {rows, 1}, invs, 1e-5);
}

TEST(LayerNormTest, RejectsDoubleStashAndBadScale) {
  Tensor x = RandomTensor({2, 4}, 1), scale = RandomTensor({3}, 2);
  EXPECT_EQ(MathOp("LayerNormalization", 17)
                .Int("stash_type", 11)
                .Input(&x)
                .Input(&scale)
                .Make()
                .status()
                .code(),
            StatusCode::kUnimplemented);
  EXPECT_FALSE(MathOp("LayerNormalization", 17).Input(&x).Input(&scale).Run().ok());
}

// ---------------------------------------------------------------- Reduce*

// Naive reduction of a float tensor over `axes` (empty = all), keepdims=1 layout.
std::vector<double> NaiveReduce(const Tensor& x, const std::vector<int64_t>& axes,
                                const std::string& op) {
  const Shape& s = x.shape();
  std::vector<bool> red(s.size(), axes.empty());
  for (int64_t a : axes) red[a < 0 ? a + s.size() : a] = true;
  Shape out_shape = s;
  for (size_t d = 0; d < s.size(); ++d) {
    if (red[d]) out_shape[d] = 1;
  }
  const int64_t out_n = NumElements(out_shape);
  std::vector<std::vector<double>> groups(static_cast<size_t>(out_n));
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t rem = i, o = 0, stride = 1;
    for (size_t d = s.size(); d-- > 0;) {
      const int64_t idx = rem % s[d];
      rem /= s[d];
      if (!red[d]) o += idx * stride;
      stride *= out_shape[d];
    }
    groups[o].push_back(x.GetAsDouble(i));
  }
  std::vector<double> out;
  for (const auto& g : groups) {
    double r = 0;
    if (op == "ReduceSum" || op == "ReduceMean") {
      for (double v : g) r += v;
      if (op == "ReduceMean") r /= g.size();
    } else if (op == "ReduceMax") {
      r = -INFINITY;
      for (double v : g) r = std::max(r, v);
    } else if (op == "ReduceMin") {
      r = INFINITY;
      for (double v : g) r = std::min(r, v);
    } else if (op == "ReduceProd") {
      r = 1;
      for (double v : g) r *= v;
    } else if (op == "ReduceL1") {
      for (double v : g) r += std::fabs(v);
    } else if (op == "ReduceL2" || op == "ReduceSumSquare") {
      for (double v : g) r += v * v;
      if (op == "ReduceL2") r = std::sqrt(r);
    } else if (op == "ReduceLogSumExp") {
      for (double v : g) r += std::exp(v);
      r = std::log(r);
    }
    out.push_back(r);
  }
  return out;
}

TEST(ReduceTest, AllOpsAllAxisPatterns) {
  const Shape shape{3, 4, 5, 6};
  Tensor x = RandomTensor(shape, 21);
  const std::vector<std::vector<int64_t>> axis_sets = {
      {}, {0}, {3}, {1, 2}, {0, 3}, {1, 3}, {0, 2}, {-1, -3}, {0, 1, 2, 3}};
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                         "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"}) {
    for (const auto& axes : axis_sets) {
      Shape keep = shape;
      std::vector<bool> red(4, axes.empty());
      for (int64_t a : axes) red[a < 0 ? a + 4 : a] = true;
      for (int d = 0; d < 4; ++d) {
        if (red[d]) keep[d] = 1;
      }
      auto r = MathOp(op, 13);
      if (std::string(op) == "ReduceSum") {
        Tensor axes_t = Tensor::FromVector<int64_t>({static_cast<int64_t>(axes.size())}, axes);
        auto out = r.Input(&x).Input(&axes_t).Run(2);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        ExpectNear((*out)[0], keep, NaiveReduce(x, axes, op), 1e-5);
      } else {
        if (!axes.empty()) r.Ints("axes", axes);
        auto out = r.Input(&x).Run(2);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        ExpectNear((*out)[0], keep, NaiveReduce(x, axes, op), 1e-5);
      }
    }
  }
}

TEST(ReduceTest, KeepdimsNoopAndOpset18) {
  Tensor x = RandomTensor({2, 3}, 5);
  Tensor axes = Tensor::FromVector<int64_t>({1}, {-1});
  auto out = MathOp("ReduceMean", 18).Int("keepdims", 0).Input(&x).Input(&axes, true).Run();
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].shape(), (Shape{2}));
  Tensor empty = Tensor::FromVector<int64_t>({0}, {});
  auto noop = MathOp("ReduceSum", 13).Int("noop_with_empty_axes", 1).Input(&x).Input(&empty).Run();
  ASSERT_TRUE(noop.ok());
  EXPECT_EQ((*noop)[0].shape(), (Shape{2, 3}));
  auto all = MathOp("ReduceSum", 13).Int("keepdims", 0).Input(&x).Input(nullptr).Run();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)[0].shape(), Shape{});
  // Attributes of the other variant are rejected at load.
  EXPECT_FALSE(MathOp("ReduceMean", 13).Int("noop_with_empty_axes", 1).Input(&x).Make().ok());
  EXPECT_FALSE(MathOp("ReduceMean", 13).Ints("axes", {2}).Input(&x).Run().ok());
  EXPECT_FALSE(MathOp("ReduceMean", 13).Ints("axes", {1, -1}).Input(&x).Run().ok());
}

TEST(ReduceTest, EmptyInputsAndIntegers) {
  Tensor x = Tensor::FromVector<float>({2, 0}, {});
  auto sum = MathOp("ReduceSum", 11).Ints("axes", {1}).Input(&x).Run();
  auto max = MathOp("ReduceMax", 11).Ints("axes", {1}).Input(&x).Run();
  ASSERT_TRUE(sum.ok() && max.ok());
  ExpectNear((*sum)[0], {2, 1}, {0, 0});
  EXPECT_EQ((*max)[0].GetAsDouble(0), -std::numeric_limits<double>::infinity());
  Tensor shape = Tensor::FromVector<int64_t>({3}, {2, 3, 4});
  auto prod = MathOp("ReduceProd", 13).Int("keepdims", 0).Input(&shape).Run();
  ASSERT_TRUE(prod.ok());
  EXPECT_EQ((*prod)[0].ToInt64Vector(), std::vector<int64_t>{24});
}

TEST(ReduceTest, MeanOfLongRowIsExact) {
  // One million values of 1000.1: a float accumulator drifts by whole units.
  std::vector<float> v(1 << 20, 1000.1f);
  Tensor x = Tensor::FromVector<float>({1, 1 << 20}, v);
  auto out = MathOp("ReduceMean", 13).Ints("axes", {1}).Input(&x).Run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].data<float>()[0], 1000.1f);
}

// ---------------------------------------------------------------- ArgMax, TopK, CumSum

TEST(IndexOpsTest, ArgMaxTiesAndLastIndex) {
  Tensor x = Tensor::FromVector<float>({2, 3}, {1, 5, 5, 7, 2, 7});
  auto first = MathOp("ArgMax", 13).Int("axis", 1).Input(&x).Run();
  auto last = MathOp("ArgMax", 13).Int("axis", 1).Int("select_last_index", 1).Input(&x).Run();
  auto min0 = MathOp("ArgMin", 13).Int("keepdims", 0).Input(&x).Run();
  ASSERT_TRUE(first.ok() && last.ok() && min0.ok());
  EXPECT_EQ((*first)[0].shape(), (Shape{2, 1}));
  EXPECT_EQ((*first)[0].ToInt64Vector(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ((*last)[0].ToInt64Vector(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ((*min0)[0].ToInt64Vector(), (std::vector<int64_t>{0, 1, 0}));
}

TEST(IndexOpsTest, TopKAndCumSum) {
  Tensor x = Tensor::FromVector<float>({1, 5}, {3, 1, 3, 9, 0});
  Tensor k = Tensor::FromVector<int64_t>({1}, {3});
  auto top = MathOp("TopK", 11).Input(&x).Input(&k).Outputs(2).Run();
  ASSERT_TRUE(top.ok()) << top.status().ToString();
  ExpectNear((*top)[0], {1, 3}, {9, 3, 3});
  EXPECT_EQ((*top)[1].ToInt64Vector(), (std::vector<int64_t>{3, 0, 2}));
  auto small = MathOp("TopK", 11).Int("largest", 0).Input(&x).Input(&k).Outputs(2).Run();
  ASSERT_TRUE(small.ok());
  EXPECT_EQ((*small)[1].ToInt64Vector(), (std::vector<int64_t>{4, 1, 0}));

  Tensor axis = Tensor::Scalar<int64_t>(1);
  auto cs = MathOp("CumSum", 14).Int("exclusive", 1).Int("reverse", 1).Input(&x).Input(&axis).Run();
  ASSERT_TRUE(cs.ok());
  ExpectNear((*cs)[0], {1, 5}, {13, 12, 9, 0, 0});
}

// ---------------------------------------------------------------- Einsum

Tensor ToFloat(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<float>(t.GetAsDouble(i));
  return Tensor::FromVector<float>(t.shape(), v);
}

// ONNX's Einsum node tests are float64, which we do not claim; run them in float32.
TEST(EinsumTest, MatchesOnnxNodeTestsInFloat32) {
  const std::string root = "/usr/share/libonnx-testdata/data/node/";
  if (!std::filesystem::exists(root + "test_einsum_sum")) GTEST_SKIP() << "no libonnx-testdata";
  for (const char* name : {"test_einsum_batch_diagonal", "test_einsum_batch_matmul",
                           "test_einsum_inner_prod", "test_einsum_sum", "test_einsum_transpose"}) {
    const std::string dir = root + name + "/";
    onnx::ModelProto model;
    std::ifstream in(dir + "model.onnx", std::ios::binary);
    ASSERT_TRUE(model.ParseFromIstream(&in)) << name;
    const onnx::NodeProto& node = model.graph().node(0);
    auto r = MathOp("Einsum", 12);
    r.String("equation", node.attribute(0).s());
    std::vector<Tensor> inputs;
    for (int i = 0; i < node.input_size(); ++i) {
      auto t = ReadTensorFile(dir + "test_data_set_0/input_" + std::to_string(i) + ".pb");
      ASSERT_TRUE(t.ok()) << t.status().ToString();
      inputs.push_back(ToFloat(*t));
    }
    for (const Tensor& t : inputs) r.Input(&t);
    auto want = ReadTensorFile(dir + "test_data_set_0/output_0.pb");
    ASSERT_TRUE(want.ok());
    auto out = r.Run(2);
    ASSERT_TRUE(out.ok()) << name << ": " << out.status().ToString();
    std::vector<double> w(static_cast<size_t>(want->numel()));
    for (int64_t i = 0; i < want->numel(); ++i) w[i] = want->GetAsDouble(i);
    SCOPED_TRACE(name);
    ExpectNear((*out)[0], want->shape(), w, 1e-5);
  }
}

TEST(EinsumTest, EllipsisBroadcastAndImplicitOutput) {
  Tensor a = RandomTensor({2, 1, 3, 4}, 1), b = RandomTensor({5, 4, 6}, 2);
  auto out =
      MathOp("Einsum", 12).String("equation", "...ij,...jk->...ik").Input(&a).Input(&b).Run();
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  auto mm = MathOp("MatMul", 13).Input(&a).Input(&b).Run();
  ASSERT_TRUE(mm.ok());
  std::vector<double> want((*mm)[0].numel());
  for (size_t i = 0; i < want.size(); ++i) want[i] = (*mm)[0].GetAsDouble(i);
  ExpectNear((*out)[0], {2, 5, 3, 6}, want, 1e-5);
  // Implicit output: labels seen once, alphabetically ("ba,cb" -> "ac").
  Tensor x = RandomTensor({3, 2}, 3), y = RandomTensor({4, 3}, 4);
  auto imp = MathOp("Einsum", 12).String("equation", "ba,cb").Input(&x).Input(&y).Run();
  ASSERT_TRUE(imp.ok()) << imp.status().ToString();
  EXPECT_EQ((*imp)[0].shape(), (Shape{2, 4}));
  EXPECT_FALSE(MathOp("Einsum", 12).String("equation", "ij,jk->ik").Input(&x).Make().ok());
  EXPECT_FALSE(MathOp("Einsum", 12).String("equation", "ij,jk->ik").Input(&x).Input(&x).Run().ok());
}

TEST(MathFactoriesTest, RejectDoubleAndUnknownAttributes) {
  Tensor d = Tensor::Empty(DataType::kFloat64, {2, 2});
  auto s = MathOp("MatMul", 13).Input(&d).Input(&d).Make();
  EXPECT_EQ(s.status().code(), StatusCode::kUnimplemented);
  Tensor x = RandomTensor({2, 2}, 1);
  auto u = MathOp("Softmax", 13).Int("bogus", 1).Input(&x).Make();
  EXPECT_EQ(u.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(u.status().message().find("bogus"), std::string::npos);
}

}  // namespace
}  // namespace infermesh::runtime
