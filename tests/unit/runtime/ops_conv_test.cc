// Unit tests for the CNN operator family (ops/conv*.cc): grouped, dilated,
// strided and padded Conv and ConvTranspose against naive loops, pooling
// corner cases, and load/run-time validation. The ONNX node tests cover the
// plain cases; these cover what they do not (groups, depthwise, threads).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <random>

#include "op_runner.h"
#include "runtime/kernel.h"
#include "runtime/parallel.h"

namespace infermesh::runtime {
namespace {

using testing::OpRunner;

// CNN nodes run on two threads unless a test says otherwise.
OpRunner ConvOp(const std::string& op, int opset = 17) {
  OpRunner r(op, opset);
  r.Threads(2);
  return r;
}

Tensor Random(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor t = Tensor::Empty(DataType::kFloat32, shape);
  for (float& v : t.mutable_values<float>()) v = dist(rng);
  return t;
}

void ExpectNear(const Tensor& got, const std::vector<float>& want, float tol = 1e-4f) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got.data<float>()[i], want[i], tol) << "at " << i;
  }
}

struct ConvCase {
  Shape x, w;
  int64_t group;
  std::vector<int64_t> strides, dilations, pads;
};

// Naive 2-D convolution with explicit pads.
std::vector<float> NaiveConv2d(const Tensor& x, const Tensor& w, const Tensor& b, const ConvCase& c,
                               Shape* out_shape) {
  const int64_t n = x.dim(0), ci = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t m = w.dim(0), cg = w.dim(1), kh = w.dim(2), kw = w.dim(3);
  const int64_t mg = m / c.group;
  const int64_t oh =
      (h + c.pads[0] + c.pads[2] - ((kh - 1) * c.dilations[0] + 1)) / c.strides[0] + 1;
  const int64_t ow =
      (wd + c.pads[1] + c.pads[3] - ((kw - 1) * c.dilations[1] + 1)) / c.strides[1] + 1;
  *out_shape = {n, m, oh, ow};
  std::vector<float> y(n * m * oh * ow);
  const float* xd = x.data<float>();
  const float* wdat = w.data<float>();
  for (int64_t in = 0; in < n; ++in)
    for (int64_t om = 0; om < m; ++om)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double sum = b.data<float>()[om];
          const int64_t g = om / mg;
          for (int64_t cc = 0; cc < cg; ++cc)
            for (int64_t ky = 0; ky < kh; ++ky)
              for (int64_t kx = 0; kx < kw; ++kx) {
                int64_t iy = oy * c.strides[0] - c.pads[0] + ky * c.dilations[0];
                int64_t ix = ox * c.strides[1] - c.pads[1] + kx * c.dilations[1];
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                sum += xd[((in * ci + g * cg + cc) * h + iy) * wd + ix] *
                       wdat[((om * cg + cc) * kh + ky) * kw + kx];
              }
          y[((in * m + om) * oh + oy) * ow + ox] = static_cast<float>(sum);
        }
  return y;
}

TEST(ConvOpsTest, Conv2dMatchesNaive) {
  const std::vector<ConvCase> cases = {
      {{2, 4, 9, 7}, {6, 2, 3, 3}, 2, {1, 1}, {1, 1}, {1, 1, 1, 1}},    // grouped
      {{1, 8, 10, 10}, {8, 1, 3, 3}, 8, {2, 2}, {1, 1}, {1, 0, 2, 1}},  // depthwise
      {{2, 3, 11, 9}, {5, 3, 3, 2}, 1, {2, 1}, {2, 3}, {2, 1, 0, 3}},   // dilated
      {{1, 16, 6, 5}, {4, 16, 1, 1}, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}},  // pointwise
      {{3, 6, 7, 7}, {12, 2, 2, 2}, 3, {3, 2}, {1, 2}, {0, 1, 1, 0}},   // everything
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    for (int threads : {1, 2}) {
      Tensor x = Random(c.x, seed++), w = Random(c.w, seed++), b = Random({c.w[0]}, seed++);
      auto r = ConvOp("Conv", 11);
      r.Int("group", c.group)
          .Ints("strides", c.strides)
          .Ints("dilations", c.dilations)
          .Ints("pads", c.pads);
      auto out = r.Run({&x, &w, &b}, threads);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      Shape shape;
      auto want = NaiveConv2d(x, w, b, c, &shape);
      EXPECT_EQ((*out)[0].shape(), shape);
      ExpectNear((*out)[0], want);
    }
  }
}

TEST(ConvOpsTest, Conv1dAnd3dMatchFlattened2d) {
  // A 1-D conv equals a 2-D conv with a height-1 image and kernel.
  Tensor x = Random({2, 3, 13}, 7), w = Random({4, 3, 3}, 8), b = Random({4}, 9);
  auto r1 = ConvOp("Conv");
  r1.Ints("strides", {2}).Ints("dilations", {2}).Ints("pads", {1, 2});
  auto y1 = r1.Run({&x, &w, &b});
  ASSERT_TRUE(y1.ok()) << y1.status().ToString();
  Tensor x2 = *x.Reshaped({2, 3, 1, 13}), w2 = *w.Reshaped({4, 3, 1, 3});
  Shape shape;
  auto want = NaiveConv2d(x2, w2, b, {{}, {}, 1, {1, 2}, {1, 2}, {0, 1, 0, 2}}, &shape);
  EXPECT_EQ((*y1)[0].shape(), (Shape{2, 4, 6}));
  ExpectNear((*y1)[0], want);

  // A 3-D conv whose kernel depth is 1 and depth stride 1 is a 2-D conv per slice.
  Tensor x3 = Random({1, 2, 1, 6, 5}, 10), w3 = Random({3, 2, 1, 2, 2}, 11);
  auto r3 = ConvOp("Conv");
  r3.String("auto_pad", "SAME_UPPER").Ints("strides", {1, 2, 2});
  auto y3 = r3.Run({&x3, &w3});
  ASSERT_TRUE(y3.ok()) << y3.status().ToString();
  EXPECT_EQ((*y3)[0].shape(), (Shape{1, 3, 1, 3, 3}));
  // SAME_UPPER on 6 and 5 with stride 2, kernel 2: pads (0, 0) and (0, 1).
  Tensor zero = Tensor::Empty(DataType::kFloat32, {3});
  auto want3 = NaiveConv2d(*x3.Reshaped({1, 2, 6, 5}), *w3.Reshaped({3, 2, 2, 2}), zero,
                           {{}, {}, 1, {2, 2}, {1, 1}, {0, 0, 0, 1}}, &shape);
  ExpectNear((*y3)[0], want3);
}

TEST(ConvOpsTest, ConvTransposeMatchesScatter) {
  // Grouped, strided, dilated, padded, with output_padding.
  const int64_t n = 2, c = 4, group = 2, mg = 3, h = 4, wd = 3, kh = 3, kw = 2;
  const int64_t sh = 2, sw = 3, dh = 1, dw = 2, pt = 1, pl = 0, pb = 2, pr = 1, ah = 1, aw = 0;
  Tensor x = Random({n, c, h, wd}, 21), w = Random({c, mg, kh, kw}, 22),
         b = Random({mg * group}, 23);
  auto r = ConvOp("ConvTranspose");
  r.Int("group", group)
      .Ints("strides", {sh, sw})
      .Ints("dilations", {dh, dw})
      .Ints("pads", {pt, pl, pb, pr})
      .Ints("output_padding", {ah, aw});
  auto out = r.Run({&x, &w, &b});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const int64_t oh = (h - 1) * sh + ah + (kh - 1) * dh + 1 - pt - pb;
  const int64_t ow = (wd - 1) * sw + aw + (kw - 1) * dw + 1 - pl - pr;
  const int64_t m = mg * group, cg = c / group;
  ASSERT_EQ((*out)[0].shape(), (Shape{n, m, oh, ow}));
  std::vector<float> want(n * m * oh * ow);
  for (int64_t in = 0; in < n; ++in)
    for (int64_t om = 0; om < m; ++om)
      for (int64_t j = 0; j < oh * ow; ++j) want[(in * m + om) * oh * ow + j] = b.data<float>()[om];
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ic = 0; ic < c; ++ic)
      for (int64_t iy = 0; iy < h; ++iy)
        for (int64_t ix = 0; ix < wd; ++ix)
          for (int64_t m2 = 0; m2 < mg; ++m2)
            for (int64_t ky = 0; ky < kh; ++ky)
              for (int64_t kx = 0; kx < kw; ++kx) {
                int64_t oy = iy * sh - pt + ky * dh, ox = ix * sw - pl + kx * dw;
                if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                int64_t om = (ic / cg) * mg + m2;
                want[((in * m + om) * oh + oy) * ow + ox] +=
                    x.data<float>()[((in * c + ic) * h + iy) * wd + ix] *
                    w.data<float>()[((ic * mg + m2) * kh + ky) * kw + kx];
              }
  ExpectNear((*out)[0], want);
}

TEST(ConvOpsTest, MaxPoolIndicesColumnMajor3d) {
  Tensor x = Tensor::FromVector<float>({1, 1, 2, 2, 2}, {1, 8, 3, 4, 5, 6, 7, 2});
  auto r = ConvOp("MaxPool", 12);
  r.Ints("kernel_shape", {2, 2, 2}).Int("storage_order", 1).Outputs(2);
  auto out = r.Run({&x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].data<float>()[0], 8.0f);
  // Row-major offset 1 is (d=0, h=0, w=1); column-major index = w*H*D + h*D + d = 4.
  EXPECT_EQ((*out)[1].data<int64_t>()[0], 4);
}

TEST(ConvOpsTest, PoolsSmallCases) {
  Tensor x = Tensor::FromVector<float>({1, 1, 3, 3}, {1, -2, 3, 4, 5, -6, 7, 8, 9});
  {
    auto r = ConvOp("AveragePool", 11);
    r.Ints("kernel_shape", {2, 2}).Ints("pads", {1, 1, 0, 0}).Int("count_include_pad", 1);
    auto out = r.Run({&x});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ExpectNear((*out)[0], {0.25f, -0.25f, 0.25f, 1.25f, 2, 0, 2.75f, 6, 4});
  }
  {
    auto r = ConvOp("LpPool", 11);
    r.Ints("kernel_shape", {3, 3}).Int("p", 1);
    auto out = r.Run({&x});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ExpectNear((*out)[0], {45});
  }
  {
    auto r = ConvOp("GlobalLpPool", 2);
    auto out = r.Run({&x});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ExpectNear((*out)[0], {std::sqrt(285.0f)});
  }
  {
    // ceil_mode keeps the partial last window.
    auto r = ConvOp("MaxPool", 12);
    r.Ints("kernel_shape", {2, 2}).Ints("strides", {2, 2}).Int("ceil_mode", 1);
    auto out = r.Run({&x});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ((*out)[0].shape(), (Shape{1, 1, 2, 2}));
    ExpectNear((*out)[0], {5, 3, 8, 9});
  }
}

TEST(ConvOpsTest, LoadTimeValidation) {
  auto code = [](OpRunner& r, const std::vector<DataType>& t) {
    auto k = r.Make(t);
    return k.ok() ? StatusCode::kOk : k.status().code();
  };
  const DataType f = DataType::kFloat32;
  {
    auto r = ConvOp("Conv");
    EXPECT_EQ(code(r, {DataType::kFloat64, DataType::kFloat64}), StatusCode::kUnimplemented);
  }
  {
    auto r = ConvOp("Conv");
    r.Int("bogus", 1);
    EXPECT_EQ(code(r, {f, f}), StatusCode::kUnimplemented);
  }
  {
    auto r = ConvOp("Conv");
    r.String("auto_pad", "SAME_MIDDLE");
    EXPECT_EQ(code(r, {f, f}), StatusCode::kInvalidArgument);
  }
  {
    auto r = ConvOp("Conv");
    r.Ints("strides", {1, 0});
    EXPECT_EQ(code(r, {f, f}), StatusCode::kInvalidArgument);
  }
  {
    auto r = ConvOp("BatchNormalization", 15);
    r.Int("training_mode", 1).Outputs(3);
    EXPECT_EQ(code(r, {f, f, f, f, f}), StatusCode::kUnimplemented);
  }
  {
    auto r = ConvOp("MaxPool", 12);  // kernel_shape is required
    EXPECT_EQ(code(r, {f}), StatusCode::kInvalidArgument);
  }
}

TEST(ConvOpsTest, RunTimeValidation) {
  Tensor x = Random({1, 3, 5, 5}, 1), w = Random({2, 2, 3, 3}, 2);
  auto r = ConvOp("Conv");
  auto out = r.Run({&x, &w});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("n0"), std::string::npos);

  Tensor small = Random({1, 1, 2, 2}, 3);
  auto p = ConvOp("MaxPool", 12);
  p.Ints("kernel_shape", {3, 3});
  EXPECT_FALSE(p.Run({&small}).ok());

  auto bn = ConvOp("BatchNormalization", 15);
  Tensor c3 = Random({3}, 4), c2 = Random({2}, 5);
  EXPECT_FALSE(bn.Run({&x, &c3, &c3, &c2, &c3}).ok());
}

TEST(ConvOpsTest, ResizeLinearAndNearest) {
  Tensor x = Tensor::FromVector<float>({1, 1, 2, 2}, {1, 2, 3, 4});
  Tensor scales = Tensor::FromVector<float>({4}, {1, 1, 2, 2});
  {
    auto r = ConvOp("Resize", 13);
    r.String("mode", "linear").String("coordinate_transformation_mode", "align_corners");
    auto out = r.Run({&x, nullptr, &scales});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ExpectNear((*out)[0], {1, 4.f / 3, 5.f / 3, 2, 5.f / 3, 2, 7.f / 3, 8.f / 3, 7.f / 3, 8.f / 3,
                           3, 10.f / 3, 3, 10.f / 3, 11.f / 3, 4});
  }
  {
    auto r = ConvOp("Upsample", 9);
    auto out = r.Run({&x, &scales});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ExpectNear((*out)[0], {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  }
}

}  // namespace
}  // namespace infermesh::runtime
