// SizeDelayBatcher through its public API against a stub backend, with a FakeClock
// and hand-driven batching for the size/delay decisions.
#include "worker/tensor_batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "batcher_test_util.h"

namespace infermesh::worker {
namespace {

using namespace std::chrono_literals;
using testing::CountDown;
using testing::FakeClock;
using testing::Gate;

// Backend stub: out[i] = {2 * in[i][0], sum(in[i])}; records the first value of
// each row per batch.
struct StubBackend {
  std::mutex mu;
  std::vector<std::vector<float>> batches;
  Gate* gate = nullptr;
  Status fail;

  TensorBatchBackend Fn() {
    return [this](const runtime::Tensor& in) -> Result<runtime::Tensor> {
      const int64_t n = in.dim(0);
      const int64_t w = in.dim(1);
      std::vector<float> firsts;
      for (int64_t i = 0; i < n; ++i) firsts.push_back(in.data<float>()[i * w]);
      bool first;
      {
        std::lock_guard<std::mutex> lock(mu);
        first = batches.empty();
        batches.push_back(firsts);
      }
      if (gate != nullptr && first) gate->Enter();
      if (!fail.ok()) return fail;
      runtime::Tensor out = runtime::Tensor::Empty(runtime::DataType::kFloat32, {n, 2});
      for (int64_t i = 0; i < n; ++i) {
        float sum = 0;
        for (int64_t j = 0; j < w; ++j) sum += in.data<float>()[i * w + j];
        out.data<float>()[2 * i] = 2 * in.data<float>()[i * w];
        out.data<float>()[2 * i + 1] = sum;
      }
      return out;
    };
  }
  std::vector<std::vector<float>> Batches() {
    std::lock_guard<std::mutex> lock(mu);
    return batches;
  }
};

struct Outcome {
  int calls = 0;
  Status status;
  std::vector<float> row;
  BatchTimings timings;
};

TensorBatchItem Item(std::vector<float> input, std::shared_ptr<Outcome> out,
                     TimePoint deadline = kNoDeadline, CancelFlag cancel = nullptr) {
  TensorBatchItem item;
  item.input = std::move(input);
  item.deadline = deadline;
  item.cancel = std::move(cancel);
  item.done = [out](Result<std::vector<float>> r, BatchTimings t) {
    ++out->calls;
    out->timings = t;
    if (r.ok()) {
      out->row = std::move(r).value();
    } else {
      out->status = r.status();
    }
  };
  return item;
}

TensorBatcherConfig Manual(FakeClock& clock, int64_t max_batch = 4) {
  TensorBatcherConfig c;
  c.max_batch_size = max_batch;
  c.max_queue_delay = 20ms;
  c.start_thread = false;
  c.now = clock.Fn();
  return c;
}

TEST(SizeDelayBatcher, FormsFullAndTimeoutBatches) {
  FakeClock clock;
  StubBackend backend;
  SizeDelayBatcher b(Manual(clock), backend.Fn());
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < 6; ++i) {
    outs.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE(b.Enqueue(Item({float(i), 1, 1}, outs.back())).ok());
  }
  ASSERT_TRUE(b.RunOnce());   // 4 queued: full
  EXPECT_FALSE(b.RunOnce());  // 2 left, nobody waited 20 ms yet
  clock.Advance(19ms);
  EXPECT_FALSE(b.RunOnce());
  clock.Advance(1ms);
  ASSERT_TRUE(b.RunOnce());  // the oldest waited 20 ms
  EXPECT_FALSE(b.RunOnce());

  std::vector<std::vector<float>> want = {{0, 1, 2, 3}, {4, 5}};
  EXPECT_EQ(backend.Batches(), want);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(outs[i]->calls, 1);
    EXPECT_EQ(outs[i]->row, (std::vector<float>{2.f * i, i + 2.f}));
  }
  EXPECT_EQ(outs[5]->timings.queue, 20ms);
  EXPECT_EQ(outs[5]->timings.batches, 1);
  TensorBatcherStats s = b.Stats();
  EXPECT_EQ(s.total_batches, 2);
  EXPECT_EQ(s.full_batches, 1);
  EXPECT_EQ(s.timeout_batches, 1);
  EXPECT_DOUBLE_EQ(s.avg_batch_size, 3.0);
  EXPECT_EQ(s.completed, 6);
}

TEST(SizeDelayBatcher, ZeroDelayRunsWhateverIsQueued) {
  FakeClock clock;
  StubBackend backend;
  TensorBatcherConfig c = Manual(clock);
  c.max_queue_delay = 0ms;
  SizeDelayBatcher b(c, backend.Fn());
  ASSERT_TRUE(b.Enqueue(Item({1}, std::make_shared<Outcome>())).ok());
  EXPECT_TRUE(b.RunOnce());
  EXPECT_EQ(b.Stats().timeout_batches, 1);
}

TEST(SizeDelayBatcher, RowsOfAnotherLengthGoToTheNextBatch) {
  FakeClock clock;
  StubBackend backend;
  SizeDelayBatcher b(Manual(clock), backend.Fn());
  auto odd = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({1, 1}, std::make_shared<Outcome>())).ok());
  ASSERT_TRUE(b.Enqueue(Item({2, 1, 1}, odd)).ok());
  ASSERT_TRUE(b.Enqueue(Item({3, 1}, std::make_shared<Outcome>())).ok());
  clock.Advance(20ms);
  while (b.RunOnce()) {
  }
  std::vector<std::vector<float>> want = {{1}, {2}, {3}};
  EXPECT_EQ(backend.Batches(), want);
  EXPECT_EQ(odd->row, (std::vector<float>{4, 4}));
}

TEST(SizeDelayBatcher, FeatureSizeIsChecked) {
  FakeClock clock;
  StubBackend backend;
  TensorBatcherConfig c = Manual(clock);
  c.feature_size = 3;
  SizeDelayBatcher b(c, backend.Fn());
  auto out = std::make_shared<Outcome>();
  TensorBatchItem wrong = Item({1, 2}, out);
  EXPECT_EQ(b.Enqueue(std::move(wrong)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong.input.size(), 2u);
  EXPECT_EQ(b.Enqueue(Item({}, out)).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.Enqueue(Item({1, 2, 3}, out)).ok());
}

TEST(SizeDelayBatcher, FullQueueRefusesWithoutCallingBack) {
  FakeClock clock;
  StubBackend backend;
  TensorBatcherConfig c = Manual(clock, 8);
  c.max_queue_requests = 2;
  SizeDelayBatcher b(c, backend.Fn());
  auto refused = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({1}, std::make_shared<Outcome>())).ok());
  ASSERT_TRUE(b.Enqueue(Item({2}, std::make_shared<Outcome>())).ok());
  TensorBatchItem third = Item({3}, refused);
  EXPECT_EQ(b.Enqueue(std::move(third)).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(third.input, std::vector<float>{3});  // still the caller's
  b.Shutdown();
  EXPECT_EQ(refused->calls, 0);
  TensorBatcherStats s = b.Stats();
  EXPECT_EQ(s.rejected, 1);
  EXPECT_EQ(s.drain_batches, 1);
  EXPECT_EQ(s.completed, 2);
}

TEST(SizeDelayBatcher, ExpiredAndCancelledNeverReachTheBackend) {
  FakeClock clock;
  StubBackend backend;
  SizeDelayBatcher b(Manual(clock), backend.Fn());
  auto expired = std::make_shared<Outcome>();
  auto cancelled = std::make_shared<Outcome>();
  auto live = std::make_shared<Outcome>();
  auto flag = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(b.Enqueue(Item({1}, expired, clock.Now() + 5ms)).ok());
  ASSERT_TRUE(b.Enqueue(Item({2}, cancelled, kNoDeadline, flag)).ok());
  ASSERT_TRUE(b.Enqueue(Item({3}, live)).ok());
  ASSERT_TRUE(b.Enqueue(Item({4}, live)).ok());
  clock.Advance(6ms);
  flag->store(true);
  // Four were queued, but two are dead: not a full batch. The dead are answered now.
  EXPECT_TRUE(b.RunOnce());
  EXPECT_EQ(expired->status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(cancelled->status.code(), StatusCode::kCancelled);
  EXPECT_TRUE(backend.Batches().empty());
  EXPECT_FALSE(b.RunOnce());
  clock.Advance(14ms);
  EXPECT_TRUE(b.RunOnce());
  std::vector<std::vector<float>> want = {{3, 4}};
  EXPECT_EQ(backend.Batches(), want);
  TensorBatcherStats s = b.Stats();
  EXPECT_EQ(s.expired, 1);
  EXPECT_EQ(s.cancelled, 1);
  EXPECT_EQ(s.timeout_batches, 1);
  EXPECT_EQ(expired->calls, 1);
  EXPECT_EQ(cancelled->calls, 1);
  EXPECT_EQ(live->calls, 2);
}

TEST(SizeDelayBatcher, BackendErrorReachesEveryRow) {
  FakeClock clock;
  StubBackend backend;
  backend.fail = Unavailable("device lost");
  SizeDelayBatcher b(Manual(clock, 3), backend.Fn());
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < 3; ++i) {
    outs.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE(b.Enqueue(Item({float(i)}, outs.back())).ok());
  }
  ASSERT_TRUE(b.RunOnce());
  for (auto& o : outs) {
    EXPECT_EQ(o->calls, 1);
    EXPECT_EQ(o->status.code(), StatusCode::kUnavailable);
  }
  EXPECT_EQ(b.Stats().failed, 3);
}

TEST(SizeDelayBatcher, ThreadedBatchesFormWhileBackendRuns) {
  StubBackend backend;
  Gate gate;
  backend.gate = &gate;
  TensorBatcherConfig c;
  c.max_batch_size = 3;
  c.max_queue_delay = 0ms;
  SizeDelayBatcher b(c, backend.Fn());
  CountDown done(4);
  auto enqueue = [&](float v) {
    TensorBatchItem item;
    item.input = {v};
    item.done = [&done](Result<std::vector<float>> r, BatchTimings) {
      EXPECT_TRUE(r.ok());
      done.Done();
    };
    ASSERT_TRUE(b.Enqueue(std::move(item)).ok());
  };
  enqueue(1);
  ASSERT_TRUE(gate.WaitEntered(1));
  enqueue(2);
  enqueue(3);
  enqueue(4);
  gate.Open();
  ASSERT_TRUE(done.Wait());
  std::vector<std::vector<float>> want = {{1}, {2, 3, 4}};
  EXPECT_EQ(backend.Batches(), want);
  TensorBatcherStats s = b.Stats();
  EXPECT_EQ(s.timeout_batches, 1);
  EXPECT_EQ(s.full_batches, 1);
}

TEST(SizeDelayBatcher, ShutdownDrainsAndRefusesNewWork) {
  StubBackend backend;
  TensorBatcherConfig c;
  c.max_batch_size = 64;
  c.max_queue_delay = std::chrono::hours(1);  // only Shutdown can form this batch
  SizeDelayBatcher b(c, backend.Fn());
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < 5; ++i) {
    outs.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE(b.Enqueue(Item({float(i)}, outs.back())).ok());
  }
  b.Shutdown();
  for (auto& o : outs) EXPECT_EQ(o->calls, 1);
  EXPECT_EQ(b.Enqueue(Item({9}, std::make_shared<Outcome>())).code(), StatusCode::kUnavailable);
  TensorBatcherStats s = b.Stats();
  EXPECT_EQ(s.drain_batches, 1);
  EXPECT_EQ(s.total_batches, 1);
}

TEST(SizeDelayBatcher, StressEveryCallbackFiresOnce) {
  StubBackend backend;
  TensorBatcherConfig c;
  c.max_batch_size = 8;
  c.max_queue_delay = 200us;
  c.max_queue_requests = 16;
  auto b = std::make_unique<SizeDelayBatcher>(c, backend.Fn());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  std::vector<std::atomic<int>> calls(kThreads * kPerThread);
  std::atomic<int> accepted{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        const int id = t * kPerThread + i;
        TensorBatchItem item;
        item.input = {float(id), 1};
        item.cancel = std::make_shared<std::atomic<bool>>(rng() % 10 == 0);
        item.done = [&, id](Result<std::vector<float>> r, BatchTimings) {
          calls[id].fetch_add(1);
          if (r.ok() ? (*r)[0] != 2.f * id : r.status().code() != StatusCode::kCancelled) {
            wrong.fetch_add(1);
          }
        };
        if (b->Enqueue(std::move(item)).ok()) {
          accepted.fetch_add(1);
        } else {
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  b->Shutdown();
  int answered = 0;
  for (auto& n : calls) {
    EXPECT_LE(n.load(), 1);
    answered += n.load();
  }
  EXPECT_EQ(answered, accepted.load());
  EXPECT_EQ(wrong.load(), 0);
  TensorBatcherStats s = b->Stats();
  EXPECT_EQ(s.total_batches, s.full_batches + s.timeout_batches + s.drain_batches);
  EXPECT_EQ(s.completed + s.cancelled, accepted.load());
  for (const auto& batch : backend.Batches()) EXPECT_LE(batch.size(), 8u);
}

}  // namespace
}  // namespace infermesh::worker
