// Unit tests for the broadcasting helper and the elementwise operator family.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <limits>

#include "runtime/kernel.h"
#include "runtime/ops/broadcast.h"

namespace infermesh::runtime {
namespace {

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

}  // namespace
}  // namespace infermesh::runtime
