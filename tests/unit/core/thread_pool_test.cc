#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <vector>

namespace infermesh {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  ThreadPool pool("test", 3);
  std::vector<std::atomic<int>> hits(1000);
  pool.ParallelFor(1000, 7, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPoolTest, SubmitRunsAndShutdownDrains) {
  std::atomic<int> done{0};
  {
    ThreadPool pool("drain", 2);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(pool.Submit([&] { done.fetch_add(1); }));
    pool.Shutdown();
    EXPECT_FALSE(pool.Submit([] {}));
    EXPECT_EQ(pool.Stats().completed, 100);
  }
  EXPECT_EQ(done.load(), 100);
}

TEST(ThreadPoolTest, ThrowingTaskDoesNotStopThePool) {
  ThreadPool pool("throws", 2);
  std::atomic<int> done{0};
  ASSERT_TRUE(pool.Submit([] { throw std::runtime_error("boom"); }));
  ASSERT_TRUE(pool.Submit([&] { done.fetch_add(1); }));
  pool.Shutdown();
  EXPECT_EQ(done.load(), 1);
  EXPECT_EQ(pool.Stats().completed, 2);
}

TEST(ThreadPoolTest, StatsNameTheWorkers) {
  ThreadPool pool("inference", 1);
  auto s = pool.Stats();
  EXPECT_EQ(s.name, "inference");
  EXPECT_EQ(s.workers, 1);
  EXPECT_EQ(s.queued, 0);
  int64_t sum = 0;
  pool.ParallelFor(10, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum, 45);  // parallelism 1 runs inline, so no race on sum
}

}  // namespace
}  // namespace infermesh
