#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
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
  EXPECT_EQ(pool.Stats().failed, 1);
}

// A chunk that throws on a helper thread used to leave the caller waiting forever
// for a count-down that never came; the exception now reaches the caller once every
// chunk has stopped touching the caller's stack.
TEST(ThreadPoolTest, ParallelForRethrowsOnTheCaller) {
  ThreadPool pool("pfor", 3);
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> chunks{0};
    EXPECT_THROW(pool.ParallelFor(300, 1,
                                  [&](int64_t b, int64_t) {
                                    chunks.fetch_add(1);
                                    if (b == 0 || b >= 200) throw std::runtime_error("chunk");
                                  }),
                 std::runtime_error);
  }
  // The pool still works, and helper throws were not counted as task failures:
  // ParallelFor hands them to its caller.
  std::atomic<int64_t> sum{0};
  pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
  });
  EXPECT_EQ(sum.load(), 4950);
  EXPECT_EQ(pool.Stats().failed, 0);
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
