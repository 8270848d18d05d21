// Unit tests for the shape and data-movement operator family (ops/shape*.cc):
// views, dtype-agnostic copies, index checking, size guards and opset variants.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "op_runner.h"
#include "runtime/kernel.h"

namespace infermesh::runtime {
namespace {

using testing::OpRunner;

// Shape-family nodes are named "n_<op>", run on two threads and check the declared output types.
OpRunner ShapeOp(const std::string& op, int opset, size_t outputs = 1) {
  OpRunner r(op, opset);
  r.Name("n_" + op).Outputs(outputs).Threads(2).CheckOutputTypes();
  return r;
}

template <typename T>
std::vector<T> Values(const Tensor& t) {
  auto v = t.values<T>();
  return {v.begin(), v.end()};
}

Tensor I64(Shape s, std::vector<int64_t> v) { return Tensor::FromVector<int64_t>(s, v); }
Tensor I64s(std::vector<int64_t> v) {
  auto n = static_cast<int64_t>(v.size());
  return I64({n}, std::move(v));
}
Tensor Iota(DataType dtype, Shape s) {
  Tensor t = Tensor::Empty(dtype, s);
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (dtype) {
      case DataType::kFloat32:
        t.data<float>()[i] = static_cast<float>(i);
        break;
      case DataType::kInt64:
        t.data<int64_t>()[i] = i;
        break;
      case DataType::kFloat16:
        t.data<uint16_t>()[i] = FloatToHalf(static_cast<float>(i));
        break;
      case DataType::kBool:
        t.data<uint8_t>()[i] = static_cast<uint8_t>(i % 3 == 0);
        break;
      default:
        ADD_FAILURE() << "unsupported in Iota";
    }
  }
  return t;
}

TEST(ShapeOpsTest, ReshapeIsAViewAndHandlesZeroAndMinusOne) {
  Tensor x = Iota(DataType::kFloat32, {2, 3, 4});
  auto out = ShapeOp("Reshape", 14).RunValues({x, I64s({0, -1})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 12}));
  EXPECT_EQ((*out)[0].raw_data(), x.raw_data());  // shares the buffer

  // allowzero: 0 is a real zero dimension.
  Tensor empty = Tensor::Empty(DataType::kFloat32, {0, 3});
  out = ShapeOp("Reshape", 14).Int("allowzero", 1).RunValues({empty, I64s({3, 0})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{3, 0}));

  for (auto bad : {std::vector<int64_t>{-1, -1}, {-2, 12}, {5, -1}, {7}}) {
    out = ShapeOp("Reshape", 14).RunValues({x, I64s(bad)});
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find("n_Reshape"), std::string::npos);
  }
  // allowzero is an opset-14 attribute: unknown before.
  auto st = ShapeOp("Reshape", 13).Int("allowzero", 1).Load({x, I64s({1})});
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
}

TEST(ShapeOpsTest, SqueezeUnsqueezeAttributeAndInputForms) {
  Tensor x = Iota(DataType::kInt64, {1, 3, 1});
  auto out = ShapeOp("Squeeze", 11).Ints("axes", {-1}).RunValues({x});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{1, 3}));
  out = ShapeOp("Squeeze", 13).RunValues({x});  // no axes: all ones
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{3}));
  out = ShapeOp("Squeeze", 13).RunValues({x, I64s({1})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);  // dimension 3 is not 1

  out = ShapeOp("Unsqueeze", 13).RunValues({x, I64s({0, -1})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{1, 1, 3, 1, 1}));
  out = ShapeOp("Unsqueeze", 11).Ints("axes", {1}).RunValues({x});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{1, 1, 3, 1}));
  out = ShapeOp("Unsqueeze", 13).RunValues({x, I64s({0, 0})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
}

TEST(ShapeOpsTest, ShapeStartEndAndSize) {
  Tensor x = Tensor::Empty(DataType::kBool, {2, 3, 4, 5});
  auto out = ShapeOp("Shape", 15).Int("start", 1).Int("end", -1).RunValues({x});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{3, 4}));
  out = ShapeOp("Shape", 15).Int("start", -10).Int("end", 10).RunValues({x});
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_FALSE(ShapeOp("Shape", 13).Int("start", 1).Load({x}).ok());
  out = ShapeOp("Size", 13).RunValues({x});
  EXPECT_EQ((*out)[0].data<int64_t>()[0], 120);
}

// Reference transpose by multi-index arithmetic.
template <typename T>
std::vector<T> NaiveTranspose(const Tensor& x, const std::vector<int64_t>& perm) {
  Shape out_shape;
  for (int64_t p : perm) out_shape.push_back(x.dim(static_cast<size_t>(p)));
  std::vector<T> out(static_cast<size_t>(x.numel()));
  std::vector<int64_t> idx(x.rank());
  for (int64_t o = 0; o < x.numel(); ++o) {
    int64_t rem = o;
    for (size_t d = out_shape.size(); d-- > 0;) {
      idx[static_cast<size_t>(perm[d])] = rem % out_shape[d];
      rem /= out_shape[d];
    }
    int64_t src = 0;
    for (size_t d = 0; d < x.rank(); ++d) src = src * x.dim(d) + idx[d];
    out[static_cast<size_t>(o)] = x.data<T>()[src];
  }
  return out;
}

TEST(ShapeOpsTest, TransposeAllDtypesAndAttentionPermutation) {
  const std::vector<std::vector<int64_t>> perms = {{0, 2, 1, 3}, {3, 2, 1, 0}, {1, 0, 2, 3},
                                                   {0, 1, 3, 2}, {2, 3, 0, 1}, {0, 2, 3, 1},
                                                   {0, 3, 1, 2}};
  // The second shape takes the cache-blocked path (both transposed axes >= 8).
  for (DataType dt : {DataType::kFloat32, DataType::kInt64, DataType::kFloat16, DataType::kBool}) {
    for (const Shape& shape : {Shape{2, 5, 3, 7}, Shape{3, 20, 9, 17}}) {
      Tensor x = Iota(dt, shape);
      for (const auto& perm : perms) {
        auto out = ShapeOp("Transpose", 13).Ints("perm", perm).RunValues({x});
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        const Tensor& y = (*out)[0];
        ASSERT_EQ(y.dtype(), dt);
        switch (DataTypeSize(dt)) {
          case 1:
            EXPECT_EQ(Values<uint8_t>(y), NaiveTranspose<uint8_t>(x, perm));
            break;
          case 2:
            EXPECT_EQ(Values<uint16_t>(y), NaiveTranspose<uint16_t>(x, perm));
            break;
          case 4:
            EXPECT_EQ(Values<uint32_t>(y), NaiveTranspose<uint32_t>(x, perm));
            break;
          default:
            EXPECT_EQ(Values<uint64_t>(y), NaiveTranspose<uint64_t>(x, perm));
        }
      }
    }
  }
  // A big attention-shaped tensor goes through the parallel path.
  Tensor big = Iota(DataType::kFloat32, {4, 128, 12, 32});
  auto out = ShapeOp("Transpose", 13).Ints("perm", {0, 2, 1, 3}).RunValues({big});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{4, 12, 128, 32}));
  EXPECT_EQ(Values<float>((*out)[0]), NaiveTranspose<float>(big, {0, 2, 1, 3}));
  out = ShapeOp("Transpose", 13).Ints("perm", {0, 0, 1, 2}).RunValues({big});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
}

TEST(ShapeOpsTest, SliceNegativeStepsAndClamping) {
  Tensor x = Iota(DataType::kInt64, {10});
  auto out = ShapeOp("Slice", 13)
                 .RunValues({x, I64s({-1}), I64s({std::numeric_limits<int64_t>::min()}), I64s({0}),
                             I64s({-3})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{9, 6, 3, 0}));
  out = ShapeOp("Slice", 13).RunValues({x, I64s({-100}), I64s({1000})});
  EXPECT_EQ((*out)[0].numel(), 10);
  out = ShapeOp("Slice", 13).RunValues({x, I64s({5}), I64s({2})});
  EXPECT_EQ((*out)[0].numel(), 0);
  out = ShapeOp("Slice", 13).RunValues({x, I64s({0}), I64s({5}), I64s({0}), I64s({0})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);  // zero step
  // Opset 1: attributes.
  Tensor m = Iota(DataType::kFloat32, {3, 4});
  out = ShapeOp("Slice", 1).Ints("starts", {1}).Ints("ends", {3}).Ints("axes", {1}).RunValues({m});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<float>((*out)[0]), (std::vector<float>{1, 2, 5, 6, 9, 10}));
}

TEST(ShapeOpsTest, GatherChecksIndices) {
  Tensor data = Iota(DataType::kFloat16, {4, 3});
  auto out = ShapeOp("Gather", 13).Int("axis", 0).RunValues({data, I64({2}, {-1, 0})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(HalfToFloat((*out)[0].data<uint16_t>()[0]), 9.0f);
  EXPECT_EQ(HalfToFloat((*out)[0].data<uint16_t>()[3]), 0.0f);
  for (int64_t bad : {4, -5}) {
    out = ShapeOp("Gather", 13).RunValues({data, I64({1}, {bad})});
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  }
  Tensor idx32 = Tensor::FromVector<int32_t>({2, 1}, {1, 2});
  out = ShapeOp("Gather", 13).Int("axis", 1).RunValues({data, idx32});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{4, 2, 1}));
  out = ShapeOp("GatherElements", 13).Int("axis", 1).RunValues({data, I64({1, 1}, {7})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  out = ShapeOp("GatherND", 13).RunValues({data, I64({1, 2}, {3, 3})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  out = ShapeOp("ScatterND", 16)
            .RunValues({data, I64({1, 1}, {4}), Iota(DataType::kFloat16, {1, 3})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
}

TEST(ShapeOpsTest, AbsurdSizesAreResourceExhausted) {
  Tensor x = Iota(DataType::kFloat32, {1});
  auto out = ShapeOp("Expand", 13).RunValues({x, I64s({1 << 20, 1 << 20, 1 << 20})});
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  out = ShapeOp("ConstantOfShape", 9).RunValues({I64s({int64_t{1} << 40, int64_t{1} << 40})});
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  out = ShapeOp("ConstantOfShape", 9).RunValues({I64s({3, -2})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  out = ShapeOp("Tile", 13).RunValues({x, I64s({std::numeric_limits<int64_t>::max()})});
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  out = ShapeOp("Range", 11)
            .RunValues({Tensor::Scalar<int64_t>(0), Tensor::Scalar<int64_t>(int64_t{1} << 62),
                        Tensor::Scalar<int64_t>(1)});
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  out = ShapeOp("Pad", 13).RunValues({x, I64s({0, int64_t{1} << 40})});
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
}

TEST(ShapeOpsTest, SplitVariants) {
  Tensor x = Iota(DataType::kFloat32, {2, 5});
  // Opset 18: num_outputs with a smaller last chunk.
  auto out = ShapeOp("Split", 18, 3).Int("axis", 1).Int("num_outputs", 3).RunValues({x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(Values<float>((*out)[0]), (std::vector<float>{0, 1, 5, 6}));
  EXPECT_EQ(Values<float>((*out)[2]), (std::vector<float>{4, 9}));
  // Opset 11: split attribute; opset 13: split input; axis 0 outputs are views.
  out = ShapeOp("Split", 11, 2).Ints("split", {1, 1}).RunValues({x});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<float>((*out)[1]), (std::vector<float>{5, 6, 7, 8, 9}));
  EXPECT_EQ((*out)[1].buffer(), x.buffer());
  out = ShapeOp("Split", 13, 2).Int("axis", -1).RunValues({x, I64s({4, 1})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<float>((*out)[1]), (std::vector<float>{4, 9}));
  out = ShapeOp("Split", 13, 2).Int("axis", 1).RunValues({x});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);  // 5 does not split in two
}

TEST(ShapeOpsTest, ConcatExpandTileOnBoolAndInt64) {
  Tensor a = Iota(DataType::kBool, {2, 2});
  Tensor b = Iota(DataType::kBool, {2, 1});
  auto out = ShapeOp("Concat", 13).Int("axis", -1).RunValues({a, b});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{1, 0, 1, 0, 1, 0}));
  EXPECT_FALSE(ShapeOp("Concat", 13).RunValues({a, b}).ok());  // axis is required

  Tensor v = I64({3, 1}, {1, 2, 3});
  out = ShapeOp("Expand", 13).RunValues({v, I64s({2, 1, 2})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}));
  out = ShapeOp("Expand", 13).RunValues({v, I64s({2, 4})});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);

  out = ShapeOp("Tile", 13).RunValues({I64({2}, {7, 8}), I64s({3})});
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{7, 8, 7, 8, 7, 8}));
}

TEST(ShapeOpsTest, PadModesAndAxes) {
  Tensor x = I64({1, 3}, {1, 2, 3});
  auto out = ShapeOp("Pad", 13).String("mode", "reflect").RunValues({x, I64s({0, 2, 0, 2})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{3, 2, 1, 2, 3, 2, 1}));
  out = ShapeOp("Pad", 13).String("mode", "edge").RunValues({x, I64s({1, 1, 0, -1})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{1, 1, 2, 1, 1, 2}));
  out = ShapeOp("Pad", 18).RunValues({x, I64s({1, 1}), Tensor::Scalar<int64_t>(9), I64s({-1})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{9, 1, 2, 3, 9}));
  out = ShapeOp("Pad", 2).Ints("pads", {0, 1, 0, 0}).Float("value", 5).RunValues({x});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{5, 1, 2, 3}));
  EXPECT_EQ(ShapeOp("Pad", 13).String("mode", "mirror").Load({x, I64s({0})}).code(),
            StatusCode::kUnimplemented);
}

TEST(ShapeOpsTest, DropoutInferenceAndTrainingMode) {
  Tensor x = Iota(DataType::kFloat32, {2, 2});
  auto out = ShapeOp("Dropout", 13, 2).RunValues({x});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].raw_data(), x.raw_data());
  EXPECT_EQ(Values<uint8_t>((*out)[1]), (std::vector<uint8_t>{1, 1, 1, 1}));
  Tensor yes = Tensor::Empty(DataType::kBool, {});
  yes.data<uint8_t>()[0] = 1;
  out = ShapeOp("Dropout", 13).RunValues({x, Tensor::Scalar<float>(0.5f), yes});
  EXPECT_EQ(out.status().code(), StatusCode::kUnimplemented);
  out = ShapeOp("Dropout", 13).RunValues({x, Tensor::Scalar<float>(0.0f), yes});
  EXPECT_TRUE(out.ok());
}

TEST(ShapeOpsTest, ScatterReductionsAndTrilu) {
  Tensor data = Tensor::FromVector<float>({4}, {1, 2, 3, 4});
  auto out = ShapeOp("ScatterND", 16)
                 .String("reduction", "add")
                 .RunValues({data, I64({2, 1}, {1, 1}), Tensor::FromVector<float>({2}, {10, 20})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<float>((*out)[0]), (std::vector<float>{1, 32, 3, 4}));
  out = ShapeOp("ScatterElements", 13)
            .RunValues({data, I64({1}, {-1}), Tensor::FromVector<float>({1}, {9})});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<float>((*out)[0]), (std::vector<float>{1, 2, 3, 9}));

  Tensor m = Iota(DataType::kInt64, {3, 3});
  out = ShapeOp("Trilu", 14).Int("upper", 0).RunValues({m, Tensor::Scalar<int64_t>(-1)});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{0, 0, 0, 3, 0, 0, 6, 7, 0}));
}

TEST(ShapeOpsTest, ConstantsAndUnknownAttributes) {
  auto out = ShapeOp("Constant", 13).Ints("value_ints", {4, 5}).Run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Values<int64_t>((*out)[0]), (std::vector<int64_t>{4, 5}));
  EXPECT_FALSE(ShapeOp("Constant", 13).Run().ok());  // no value
  auto st = ShapeOp("Transpose", 13).Int("bogus", 1).Load({Iota(DataType::kFloat32, {2})});
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("bogus"), std::string::npos);
}

// Python's slice.indices(), which ONNX Slice follows with one exception: with a
// negative step, a start before the beginning clamps to 0 (Python: empty slice).
std::vector<int64_t> PySliceIndices(int64_t start, int64_t stop, int64_t step, int64_t dim) {
  const int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? dim : dim - 1;
  auto fix = [&](int64_t v) {
    if (v < 0) {
      v += dim;
      return v < lower ? lower : v;
    }
    return v > upper ? upper : v;
  };
  int64_t first = fix(start);
  if (step < 0 && first < 0 && dim > 0) first = 0;
  std::vector<int64_t> out;
  for (int64_t i = first; step > 0 ? i < fix(stop) : i > fix(stop); i += step) {
    out.push_back(i);
  }
  return out;
}

TEST(ShapeOpsTest, RandomSlicesMatchPythonSemantics) {
  std::mt19937 rng(7);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int iter = 0; iter < 300; ++iter) {
    Shape shape = {pick(0, 5), pick(1, 5), pick(1, 6)};
    Tensor x = Iota(DataType::kInt64, shape);
    std::vector<int64_t> starts, ends, axes, steps;
    std::vector<std::vector<int64_t>> picked(3);
    for (int64_t a = 0; a < 3; ++a) {
      const int64_t dim = shape[static_cast<size_t>(a)];
      for (int64_t i = 0; i < dim; ++i) picked[static_cast<size_t>(a)].push_back(i);
      if (pick(0, 2) == 0) continue;
      int64_t st = pick(-8, 8), en = pick(-8, 8), sp = pick(1, 3) * (pick(0, 1) ? 1 : -1);
      if (pick(0, 5) == 0)
        en = sp > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
      starts.push_back(st);
      ends.push_back(en);
      axes.push_back(pick(0, 1) ? a : a - 3);
      steps.push_back(sp);
      picked[static_cast<size_t>(a)] = PySliceIndices(st, en, sp, dim);
    }
    auto out =
        ShapeOp("Slice", 13).RunValues({x, I64s(starts), I64s(ends), I64s(axes), I64s(steps)});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    std::vector<int64_t> expected;
    for (int64_t i : picked[0]) {
      for (int64_t j : picked[1]) {
        for (int64_t k : picked[2]) expected.push_back((i * shape[1] + j) * shape[2] + k);
      }
    }
    ASSERT_EQ(Values<int64_t>((*out)[0]), expected)
        << "shape " << ShapeToString(shape) << " starts " << ShapeToString(starts) << " ends "
        << ShapeToString(ends) << " axes " << ShapeToString(axes) << " steps "
        << ShapeToString(steps);
  }
}

TEST(ShapeOpsTest, RandomPadsMatchReference) {
  std::mt19937 rng(11);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const char* modes[] = {"constant", "edge", "reflect", "wrap"};
  for (int iter = 0; iter < 300; ++iter) {
    const std::string mode = modes[iter % 4];
    Shape shape = {pick(1, 4), pick(1, 4)};
    Tensor x = Iota(DataType::kInt64, shape);
    std::vector<int64_t> pads(4);
    for (size_t d = 0; d < 2; ++d) {
      pads[d] = pick(-1, 5);
      pads[d + 2] = pick(-1, 5);
      if (shape[d] + pads[d] + pads[d + 2] < 0) pads[d] = pads[d + 2] = 0;
    }
    auto out = ShapeOp("Pad", 13)
                   .String("mode", mode)
                   .RunValues({x, I64s(pads), Tensor::Scalar<int64_t>(-7)});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    // Reference: bounce (reflect), clamp (edge) or wrap each coordinate.
    auto map = [&](int64_t i, int64_t n) -> int64_t {
      if (i >= 0 && i < n) return i;
      if (mode == "constant") return -1;
      if (mode == "edge") return i < 0 ? 0 : n - 1;
      if (mode == "wrap") return ((i % n) + n) % n;
      if (n == 1) return 0;
      while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
      return i;
    };
    const Tensor& y = (*out)[0];
    ASSERT_EQ(y.shape(), (Shape{shape[0] + pads[0] + pads[2], shape[1] + pads[1] + pads[3]}));
    for (int64_t i = 0; i < y.dim(0); ++i) {
      for (int64_t j = 0; j < y.dim(1); ++j) {
        const int64_t si = map(i - pads[0], shape[0]), sj = map(j - pads[1], shape[1]);
        const int64_t want = si < 0 || sj < 0 ? -7 : si * shape[1] + sj;
        ASSERT_EQ(y.data<int64_t>()[i * y.dim(1) + j], want)
            << mode << " " << ShapeToString(shape) << " pads " << ShapeToString(pads);
      }
    }
  }
}

}  // namespace
}  // namespace infermesh::runtime
