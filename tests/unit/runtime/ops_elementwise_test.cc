// Unit tests for the broadcasting helper and the elementwise operator family.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <limits>

#include "op_runner.h"
#include "runtime/kernel.h"
#include "runtime/ops/broadcast.h"
#include "runtime/ops/elementwise_fast_math.h"
#include "runtime/parallel.h"

namespace infermesh::runtime {
namespace {

using testing::OpRunner;

// Reference: naive multi-index broadcast of input k at output index i.
int64_t NaiveOffset(const Shape& in, const Shape& out, int64_t i) {
  auto strides = BroadcastStrides(in, out);
  int64_t off = 0;
  for (size_t d = out.size(); d-- > 0;) {
    off += (i % out[d]) * strides[d];
    i /= out[d];
  }
  return off;
}

void CheckPlan(const Shape& a, const Shape& b, size_t expected_rank) {
  auto out = BroadcastShapes(a, b);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  BroadcastPlan plan({&a, &b}, *out);
  EXPECT_EQ(plan.coalesced_rank(), expected_rank) << ShapeToString(a) << " " << ShapeToString(b);
  const int64_t n = plan.numel();
  // Every split point must give the same result.
  for (int64_t split : {int64_t{0}, n / 3, n / 2, n}) {
    std::vector<int> seen(n, 0);
    auto visit = [&](const int64_t* in, int64_t o, int64_t count) {
      for (int64_t j = 0; j < count; ++j) {
        ASSERT_EQ(in[0] + j * plan.inner_step(0), NaiveOffset(a, *out, o + j));
        ASSERT_EQ(in[1] + j * plan.inner_step(1), NaiveOffset(b, *out, o + j));
        seen[o + j]++;
      }
    };
    plan.ForEachRun(0, split, visit);
    plan.ForEachRun(split, n, visit);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1);
  }
}

TEST(BroadcastTest, Shapes) {
  EXPECT_EQ(*BroadcastShapes({2, 3, 4}, {4}), (Shape{2, 3, 4}));
  EXPECT_EQ(*BroadcastShapes({2, 1, 4}, {3, 1}), (Shape{2, 3, 4}));
  EXPECT_EQ(*BroadcastShapes({}, {5}), (Shape{5}));
  EXPECT_EQ(*BroadcastShapes({0, 3}, {1, 3}), (Shape{0, 3}));
  EXPECT_FALSE(BroadcastShapes({2, 3}, {4}).ok());
  EXPECT_TRUE(IsUnidirectionallyBroadcastable({3, 1}, {2, 3, 4}));
  EXPECT_FALSE(IsUnidirectionallyBroadcastable({2, 3, 4}, {3, 4}));
}

TEST(BroadcastTest, PlansCoalesce) {
  CheckPlan({2, 3, 4}, {2, 3, 4}, 1);  // same shape
  CheckPlan({2, 3, 4}, {}, 1);         // scalar
  CheckPlan({1}, {2, 3, 4}, 1);        // scalar as [1]
  CheckPlan({2, 3, 4}, {4}, 2);        // bias add
  CheckPlan({2, 3, 4}, {2, 3, 1}, 2);  // per-row
  CheckPlan({2, 1, 4}, {3, 1}, 3);     // general
  CheckPlan({5, 1, 3, 1}, {1, 4, 1, 2}, 4);
  CheckPlan({}, {}, 1);
  CheckPlan({0, 3}, {3}, 2);
}

// --- Kernel tests ------------------------------------------------------------------------------

template <typename T>
std::vector<T> Values(const Tensor& t) {
  auto v = t.values<T>();
  return {v.begin(), v.end()};
}

Tensor Iota(const Shape& shape, float start = 0.0f, float step = 1.0f) {
  Tensor t = Tensor::Empty(DataType::kFloat32, shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = start + step * static_cast<float>(i % 1000);
  return t;
}

void CheckAddAgainstNaive(const Shape& sa, const Shape& sb, int threads) {
  Tensor a = Iota(sa, 0.5f, 0.25f);
  Tensor b = Iota(sb, -3.0f, 1.5f);
  auto y = OpRunner("Add").RunOne({&a, &b}, threads);
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  Shape out = *BroadcastShapes(sa, sb);
  ASSERT_EQ(y->shape(), out);
  for (int64_t i = 0; i < y->numel(); ++i) {
    const float expect =
        a.data<float>()[NaiveOffset(sa, out, i)] + b.data<float>()[NaiveOffset(sb, out, i)];
    ASSERT_EQ(y->data<float>()[i], expect) << "at " << i;
  }
}

TEST(ElementwiseTest, AddBroadcastCasesMatchNaive) {
  for (int threads : {1, 2}) {
    CheckAddAgainstNaive({4, 300, 64}, {4, 300, 64}, threads);  // same shape
    CheckAddAgainstNaive({4, 300, 64}, {}, threads);            // scalar
    CheckAddAgainstNaive({1}, {4, 300, 64}, threads);           // scalar first
    CheckAddAgainstNaive({4, 300, 64}, {64}, threads);          // bias add
    CheckAddAgainstNaive({4, 300, 64}, {4, 300, 1}, threads);   // per-row
    CheckAddAgainstNaive({4, 1, 64}, {300, 1}, threads);        // general
    CheckAddAgainstNaive({0, 3}, {3}, threads);                 // empty
  }
}

TEST(ElementwiseTest, IncompatibleShapesFailAtRunWithNodeName) {
  Tensor a = Iota({2, 3});
  Tensor b = Iota({4});
  auto y = OpRunner("Mul").RunOne({&a, &b});
  ASSERT_FALSE(y.ok());
  EXPECT_EQ(y.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(y.status().message().find("n0"), std::string::npos);
}

TEST(ElementwiseTest, LoadTimeValidation) {
  EXPECT_EQ(OpRunner("Add").Load({DataType::kFloat64, DataType::kFloat64}).code(),
            StatusCode::kUnimplemented);
  EXPECT_FALSE(OpRunner("Add").Load({DataType::kFloat32, DataType::kInt64}).ok());
  EXPECT_FALSE(OpRunner("Relu").Int("bogus", 1).Load({DataType::kFloat32}).ok());
  EXPECT_FALSE(OpRunner("Mod").Load({DataType::kFloat32, DataType::kFloat32}).ok());
  EXPECT_TRUE(OpRunner("Mod").Int("fmod", 1).Load({DataType::kFloat32, DataType::kFloat32}).ok());
  EXPECT_FALSE(OpRunner("Cast").Int("to", 8).Load({DataType::kFloat32}).ok());   // string
  EXPECT_FALSE(OpRunner("Cast").Int("to", 17).Load({DataType::kFloat32}).ok());  // float8
  EXPECT_FALSE(OpRunner("Gelu", 20).String("approximate", "x").Load({DataType::kFloat32}).ok());
  EXPECT_FALSE(OpRunner("BitShift").Load({DataType::kUint8, DataType::kUint8}).ok());
}

TEST(ElementwiseTest, IntegerDivisionTruncatesAndRejectsZero) {
  Tensor a = Tensor::FromVector<int32_t>({4}, {-7, 7, std::numeric_limits<int32_t>::min(), 9});
  Tensor b = Tensor::FromVector<int32_t>({4}, {2, -2, -1, 3});
  auto y = OpRunner("Div").RunOne({&a, &b});
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(Values<int32_t>(*y),
            (std::vector<int32_t>{-3, -3, std::numeric_limits<int32_t>::min(), 3}));
  Tensor z = Tensor::FromVector<int32_t>({4}, {1, 0, 1, 1});
  auto bad = OpRunner("Div").RunOne({&a, &z});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(ElementwiseTest, ModSignFollowsDivisorOrDividend) {
  Tensor a = Tensor::FromVector<int64_t>({4}, {-7, 7, -7, 7});
  Tensor b = Tensor::FromVector<int64_t>({4}, {3, -3, -3, 3});
  auto py = OpRunner("Mod").RunOne({&a, &b});
  ASSERT_TRUE(py.ok());
  EXPECT_EQ(Values<int64_t>(*py), (std::vector<int64_t>{2, -2, -1, 1}));
  auto c = OpRunner("Mod").Int("fmod", 1).RunOne({&a, &b});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Values<int64_t>(*c), (std::vector<int64_t>{-1, 1, -1, 1}));
}

TEST(ElementwiseTest, PowMixedTypes) {
  Tensor x = Tensor::FromVector<float>({3}, {1.5f, -2.0f, 3.0f});
  Tensor e = Tensor::FromVector<int64_t>({3}, {2, 3, -1});
  auto y = OpRunner("Pow").RunOne({&x, &e});
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(y->dtype(), DataType::kFloat32);
  EXPECT_FLOAT_EQ(y->data<float>()[0], 2.25f);
  EXPECT_FLOAT_EQ(y->data<float>()[1], -8.0f);
  EXPECT_FLOAT_EQ(y->data<float>()[2], 1.0f / 3.0f);

  Tensor two = Tensor::Scalar<float>(2.0f);
  auto sq = OpRunner("Pow").RunOne({&x, &two});
  ASSERT_TRUE(sq.ok());
  EXPECT_EQ(Values<float>(*sq), (std::vector<float>{2.25f, 4.0f, 9.0f}));

  Tensor xi = Tensor::FromVector<int32_t>({3}, {2, 3, 4});
  Tensor ei = Tensor::FromVector<int32_t>({3}, {10, 0, -1});
  auto yi = OpRunner("Pow").RunOne({&xi, &ei});
  ASSERT_TRUE(yi.ok());
  EXPECT_EQ(Values<int32_t>(*yi), (std::vector<int32_t>{1024, 1, 0}));

  Tensor ef = Tensor::FromVector<float>({3}, {0.5f, 2.0f, 1.5f});
  auto yf = OpRunner("Pow").RunOne({&xi, &ef});
  ASSERT_TRUE(yf.ok());
  EXPECT_EQ(Values<int32_t>(*yf), (std::vector<int32_t>{1, 9, 8}));
}

TEST(ElementwiseTest, CastEdgeCases) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = Tensor::FromVector<float>({5}, {nan, 1e20f, -1e20f, -2.7f, 0.0f});
  auto i32 = OpRunner("Cast").Int("to", 6).RunOne({&x});
  ASSERT_TRUE(i32.ok());
  EXPECT_EQ(Values<int32_t>(*i32),
            (std::vector<int32_t>{0, std::numeric_limits<int32_t>::max(),
                                  std::numeric_limits<int32_t>::min(), -2, 0}));
  auto b = OpRunner("Cast").Int("to", 9).RunOne({&x});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(Values<uint8_t>(*b), (std::vector<uint8_t>{1, 1, 1, 1, 0}));
  auto h = OpRunner("Cast").Int("to", 10).RunOne({&x});
  ASSERT_TRUE(h.ok());
  auto back = OpRunner("Cast").Int("to", 1).RunOne({&*h});
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(std::isnan(back->data<float>()[0]));
  EXPECT_TRUE(std::isinf(back->data<float>()[1]));
  EXPECT_NEAR(back->data<float>()[3], -2.7f, 1e-3);
  Tensor like = Tensor::FromVector<int64_t>({1}, {0});
  auto cl = OpRunner("CastLike", 15).RunOne({&x, &like});
  ASSERT_TRUE(cl.ok());
  EXPECT_EQ(cl->dtype(), DataType::kInt64);
}

TEST(ElementwiseTest, Float16ArithmeticGoesThroughFloat) {
  Tensor a = Tensor::FromVector<uint16_t>({2}, {FloatToHalf(1.5f), FloatToHalf(-2.0f)});
  Tensor b = Tensor::FromVector<uint16_t>({1}, {FloatToHalf(0.25f)});
  // FromVector<uint16_t> gives uint16; relabel the buffer as float16.
  a = Tensor::FromBuffer(DataType::kFloat16, a.shape(), a.buffer());
  b = Tensor::FromBuffer(DataType::kFloat16, b.shape(), b.buffer());
  auto y = OpRunner("Add").RunOne({&a, &b});
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(y->dtype(), DataType::kFloat16);
  EXPECT_EQ(HalfToFloat(y->data<uint16_t>()[0]), 1.75f);
  EXPECT_EQ(HalfToFloat(y->data<uint16_t>()[1]), -1.75f);
}

TEST(ElementwiseTest, WhereClipAndVariadic) {
  Tensor c = Tensor::Empty(DataType::kBool, {2, 1});
  c.data<bool>()[0] = true;
  c.data<bool>()[1] = false;
  Tensor x = Tensor::FromVector<int64_t>({3}, {1, 2, 3});
  Tensor yv = Tensor::Scalar<int64_t>(-1);
  auto w = OpRunner("Where").RunOne({&c, &x, &yv});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->shape(), (Shape{2, 3}));
  EXPECT_EQ(Values<int64_t>(*w), (std::vector<int64_t>{1, 2, 3, -1, -1, -1}));

  Tensor f = Tensor::FromVector<float>({4}, {-5.0f, 0.5f, 5.0f, std::nanf("")});
  auto c6 = OpRunner("Clip", 6).Float("min", -1.0f).Float("max", 1.0f).RunOne({&f});
  ASSERT_TRUE(c6.ok());
  EXPECT_EQ(c6->data<float>()[0], -1.0f);
  EXPECT_EQ(c6->data<float>()[2], 1.0f);
  EXPECT_TRUE(std::isnan(c6->data<float>()[3]));
  Tensor lo = Tensor::Scalar<float>(0.0f);
  auto c13 = OpRunner("Clip", 13).RunOne({&f, &lo, nullptr});
  ASSERT_TRUE(c13.ok());
  EXPECT_EQ(c13->data<float>()[0], 0.0f);
  EXPECT_EQ(c13->data<float>()[2], 5.0f);

  Tensor m1 = Tensor::FromVector<float>({2, 1}, {1.0f, 2.0f});
  Tensor m2 = Tensor::FromVector<float>({3}, {10.0f, 20.0f, 30.0f});
  Tensor m3 = Tensor::Scalar<float>(3.0f);
  auto mean = OpRunner("Mean").RunOne({&m1, &m2, &m3});
  ASSERT_TRUE(mean.ok());
  EXPECT_EQ(mean->shape(), (Shape{2, 3}));
  EXPECT_FLOAT_EQ(mean->data<float>()[0], 14.0f / 3.0f);
  EXPECT_FLOAT_EQ(mean->data<float>()[5], 35.0f / 3.0f);
  auto mx = OpRunner("Max").RunOne({&m1, &m2, &m3});
  ASSERT_TRUE(mx.ok());
  EXPECT_EQ(Values<float>(*mx), (std::vector<float>{10, 20, 30, 10, 20, 30}));
}

TEST(ElementwiseTest, Activations) {
  Tensor x = Tensor::FromVector<float>({3}, {-1.0f, 0.0f, 2.0f});
  auto gelu = OpRunner("Gelu", 20).RunOne({&x});
  ASSERT_TRUE(gelu.ok());
  EXPECT_NEAR(gelu->data<float>()[0], -0.158655f, 1e-5);
  EXPECT_NEAR(gelu->data<float>()[2], 1.954500f, 1e-5);
  auto mish = OpRunner("Mish", 18).RunOne({&x});
  ASSERT_TRUE(mish.ok());
  EXPECT_NEAR(mish->data<float>()[0], -0.303401f, 1e-5);
  Tensor big = Tensor::FromVector<float>({2}, {-100.0f, 100.0f});
  auto sig = OpRunner("Sigmoid").RunOne({&big});
  ASSERT_TRUE(sig.ok());
  EXPECT_NEAR(sig->data<float>()[0], 0.0f, 1e-30f);
  EXPECT_EQ(sig->data<float>()[1], 1.0f);
  auto sp = OpRunner("Softplus").RunOne({&big});
  ASSERT_TRUE(sp.ok());
  EXPECT_EQ(sp->data<float>()[1], 100.0f);
}

TEST(ElementwiseTest, FastMathMatchesLibm) {
  using namespace elementwise;  // NOLINT
  double e_exp = 0, e_tanh = 0, e_erf = 0, e_sig = 0;
  for (double v = -110; v <= 90; v += 1e-3) {
    const auto x = static_cast<float>(v);
    const double ref = std::exp(static_cast<double>(x));
    if (ref > 1.2e-38 && ref < 3.4e38) e_exp = std::max(e_exp, std::fabs(FastExp(x) - ref) / ref);
    e_tanh = std::max(e_tanh, std::fabs(FastTanh(x) - std::tanh(static_cast<double>(x))));
    e_erf = std::max(e_erf, std::fabs(FastErf(x) - std::erf(static_cast<double>(x))));
    const double s = 1 / (1 + std::exp(-static_cast<double>(x)));
    if (s > 1e-37) e_sig = std::max(e_sig, std::fabs(FastSigmoid(x) - s) / s);
  }
  EXPECT_LT(e_exp, 3e-7);
  EXPECT_LT(e_sig, 5e-7);
  EXPECT_LT(e_tanh, 1e-6);
  EXPECT_LT(e_erf, 1e-6);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isnan(FastExp(nan)));
  EXPECT_TRUE(std::isnan(FastTanh(nan)));
  EXPECT_TRUE(std::isnan(FastErf(nan)));
  EXPECT_TRUE(std::isnan(FastSigmoid(nan)));
  EXPECT_EQ(FastExp(inf), inf);
  EXPECT_EQ(FastExp(-inf), 0.0f);
  EXPECT_EQ(FastTanh(-inf), -1.0f);
  EXPECT_EQ(FastErf(inf), 1.0f);
}

}  // namespace
}  // namespace infermesh::runtime
