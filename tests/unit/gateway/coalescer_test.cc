#include "gateway/coalescer.h"

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace infermesh::gateway {
namespace {

TEST(Coalescer, IdenticalKeysShareOneCallAndAllGetTheResult) {
  Coalescer<std::vector<float>> c;
  std::vector<float> got_a, got_b;
  EXPECT_TRUE(c.Join("k", [&](const Result<std::vector<float>>& r) { got_a = *r; }));
  EXPECT_FALSE(c.Join("k", [&](const Result<std::vector<float>>& r) { got_b = *r; }));
  EXPECT_TRUE(c.Join("other", [](const Result<std::vector<float>>&) {}));
  EXPECT_EQ(c.in_flight(), 2u);
  EXPECT_EQ(c.coalesced(), 1u);
  c.Complete("k", std::vector<float>{1, 2});
  EXPECT_EQ(got_a, (std::vector<float>{1, 2}));
  EXPECT_EQ(got_b, (std::vector<float>{1, 2}));
  EXPECT_EQ(c.in_flight(), 1u);
  // Completed keys are not remembered: the next Join leads a new call.
  EXPECT_TRUE(c.Join("k", [](const Result<std::vector<float>>&) {}));
}

TEST(Coalescer, ErrorsReachEveryWaiterAndKeysCompareByteForByte) {
  Coalescer<int> c;
  int errors = 0;
  const std::string a("a\0b", 3), b("a\0c", 3);
  EXPECT_TRUE(c.Join(a, [&](const Result<int>& r) { errors += !r.ok(); }));
  EXPECT_FALSE(c.Join(a, [&](const Result<int>& r) { errors += !r.ok(); }));
  EXPECT_TRUE(c.Join(b, [&](const Result<int>&) {}));  // differs after the NUL
  c.Complete(a, Unavailable("worker gone"));
  EXPECT_EQ(errors, 2);
  c.Complete("never joined", 1);  // ignored
}

TEST(Coalescer, ConcurrentJoinsHaveExactlyOneLeader) {
  Coalescer<int> c;
  std::atomic<int> leaders{0}, results{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 200; ++k) {
        if (c.Join("key" + std::to_string(k), [&](const Result<int>&) { ++results; })) ++leaders;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(leaders.load(), 200);
  for (int k = 0; k < 200; ++k) c.Complete("key" + std::to_string(k), k);
  EXPECT_EQ(results.load(), 8 * 200);
  EXPECT_EQ(c.coalesced(), 7u * 200);
}

}  // namespace
}  // namespace infermesh::gateway
