// TokenBudgetBatcher through its public API against a stub backend. Timing is
// deterministic: most tests drive batching by hand (start_thread = false) with a
// FakeClock; the threaded tests synchronise on gates, never on sleeps.
#include "worker/token_batcher.h"

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

// An input of `tokens` tokens whose first id is `tag`, so the backend can tell
// inputs apart.
runtime::Encoding Input(int64_t tag, int64_t tokens) {
  runtime::Encoding e;
  e.ids.assign(static_cast<size_t>(tokens), 7);
  e.ids[0] = tag;
  e.attention_mask.assign(static_cast<size_t>(tokens), 1);
  return e;
}

// Backend stub: answers each input with {tag, tokens}, and records every batch.
struct StubBackend {
  std::mutex mu;
  std::vector<std::vector<int64_t>> batches;  // tags per batch
  std::vector<int64_t> batch_tokens;
  FakeClock* clock = nullptr;  // advanced by `cost` per call when set
  std::chrono::nanoseconds cost{0};
  Gate* gate = nullptr;  // first call blocks on it when set
  Status fail;           // returned for every call when not OK

  TokenBatchBackend Fn() {
    return [this](const std::vector<runtime::Encoding>& batch) -> Result<runtime::Tensor> {
      std::vector<int64_t> tags;
      int64_t tokens = 0;
      for (const auto& e : batch) {
        tags.push_back(e.ids[0]);
        tokens += static_cast<int64_t>(e.ids.size());
      }
      bool first;
      {
        std::lock_guard<std::mutex> lock(mu);
        first = batches.empty();
        batches.push_back(tags);
        batch_tokens.push_back(tokens);
      }
      if (gate != nullptr && first) gate->Enter();
      if (clock != nullptr) clock->Advance(cost);
      if (!fail.ok()) return fail;
      const auto n = static_cast<int64_t>(batch.size());
      runtime::Tensor out = runtime::Tensor::Empty(runtime::DataType::kFloat32, {n, 2});
      for (int64_t i = 0; i < n; ++i) {
        out.data<float>()[2 * i] = static_cast<float>(batch[i].ids[0]);
        out.data<float>()[2 * i + 1] = static_cast<float>(batch[i].ids.size());
      }
      return out;
    };
  }
  std::vector<std::vector<int64_t>> Batches() {
    std::lock_guard<std::mutex> lock(mu);
    return batches;
  }
};

// What one request's completion saw.
struct Outcome {
  int calls = 0;
  Status status;
  std::vector<std::vector<float>> rows;
  BatchTimings timings;
};

TokenBatchItem Item(std::vector<runtime::Encoding> inputs, std::shared_ptr<Outcome> out,
                    TimePoint deadline = kNoDeadline, CancelFlag cancel = nullptr) {
  TokenBatchItem item;
  item.encodings = std::move(inputs);
  item.deadline = deadline;
  item.cancel = std::move(cancel);
  item.done = [out](Result<std::vector<std::vector<float>>> r, BatchTimings t) {
    ++out->calls;
    out->timings = t;
    if (r.ok()) {
      out->rows = std::move(r).value();
    } else {
      out->status = r.status();
    }
  };
  return item;
}

TokenBatcherConfig Manual(FakeClock& clock, int64_t budget) {
  TokenBatcherConfig c;
  c.max_batch_tokens = budget;
  c.start_thread = false;
  c.now = clock.Fn();
  return c;
}

void RunAll(TokenBudgetBatcher& b) {
  while (b.RunOnce()) {
  }
}

TEST(TokenBudgetBatcher, BatchesRespectTheTokenBudget) {
  FakeClock clock;
  StubBackend backend;
  TokenBudgetBatcher b(Manual(clock, 20), backend.Fn());
  std::vector<std::shared_ptr<Outcome>> outs;
  const int64_t sizes[] = {5, 9, 3, 12, 7, 1, 20, 4, 8, 8, 8};
  for (int i = 0; i < 11; ++i) {
    outs.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE(b.Enqueue(Item({Input(i, sizes[i])}, outs.back())).ok());
  }
  RunAll(b);
  for (int64_t t : backend.batch_tokens) EXPECT_LE(t, 20);
  // FIFO, greedy: [5,9,3]=17, [12,7,1]=20, [20], [4,8,8]=20, [8]
  std::vector<std::vector<int64_t>> want = {{0, 1, 2}, {3, 4, 5}, {6}, {7, 8, 9}, {10}};
  EXPECT_EQ(backend.Batches(), want);
  for (int i = 0; i < 11; ++i) {
    ASSERT_EQ(outs[i]->calls, 1);
    ASSERT_EQ(outs[i]->rows.size(), 1u);
    EXPECT_EQ(outs[i]->rows[0], (std::vector<float>{float(i), float(sizes[i])}));
  }
  TokenBatcherStats s = b.Stats();
  EXPECT_EQ(s.batches, 5);
  EXPECT_EQ(s.batch_rows, 11);
  EXPECT_EQ(s.batch_tokens, 85);
  EXPECT_EQ(s.completed, 11);
  EXPECT_EQ(s.queue_requests, 0);
  EXPECT_EQ(s.queue_tokens, 0);
}

TEST(TokenBudgetBatcher, OversizedInputRunsAlone) {
  FakeClock clock;
  StubBackend backend;
  TokenBudgetBatcher b(Manual(clock, 10), backend.Fn());
  auto small = std::make_shared<Outcome>();
  auto big = std::make_shared<Outcome>();
  auto after = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 4)}, small)).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(2, 50)}, big)).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(3, 4)}, after)).ok());
  RunAll(b);
  std::vector<std::vector<int64_t>> want = {{1}, {2}, {3}};
  EXPECT_EQ(backend.Batches(), want);
  EXPECT_EQ(big->calls, 1);
  EXPECT_TRUE(big->status.ok());
  EXPECT_EQ(big->rows[0][1], 50.f);
}

TEST(TokenBudgetBatcher, SplitRequestCompletesOnceWithRowsInOrder) {
  FakeClock clock;
  StubBackend backend;
  backend.clock = &clock;
  backend.cost = 1ms;
  TokenBudgetBatcher b(Manual(clock, 10), backend.Fn());
  auto first = std::make_shared<Outcome>();
  auto split = std::make_shared<Outcome>();
  auto last = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({Input(100, 6)}, first)).ok());
  std::vector<runtime::Encoding> five;
  for (int i = 0; i < 5; ++i) five.push_back(Input(200 + i, 4));
  ASSERT_TRUE(b.Enqueue(Item(std::move(five), split)).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(300, 2)}, last)).ok());
  clock.Advance(2ms);

  ASSERT_TRUE(b.RunOnce());  // [100, 200]: the split request is half taken
  EXPECT_EQ(split->calls, 0);
  EXPECT_EQ(b.Stats().queue_requests, 2);
  EXPECT_EQ(b.Stats().queue_tokens, 4 * 4 + 2);
  RunAll(b);

  std::vector<std::vector<int64_t>> want = {{100, 200}, {201, 202}, {203, 204, 300}};
  EXPECT_EQ(backend.Batches(), want);
  ASSERT_EQ(split->calls, 1);
  ASSERT_TRUE(split->status.ok());
  ASSERT_EQ(split->rows.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(split->rows[i][0], float(200 + i));
  // Enqueued at t0, waited 2 ms, ran in three 1 ms batches back to back.
  EXPECT_EQ(split->timings.batches, 3);
  EXPECT_EQ(split->timings.inference, 3ms);
  EXPECT_EQ(split->timings.queue, 2ms);
  EXPECT_EQ(first->timings.inference, 1ms);
  EXPECT_EQ(first->timings.queue, 2ms);
  EXPECT_EQ(last->timings.inference, 1ms);
  EXPECT_EQ(last->timings.queue, 4ms);
  EXPECT_EQ(b.Stats().completed, 3);
}

TEST(TokenBudgetBatcher, MaxBatchRequestsLimitsRows) {
  FakeClock clock;
  StubBackend backend;
  TokenBatcherConfig c = Manual(clock, 1000);
  c.max_batch_requests = 2;
  TokenBudgetBatcher b(c, backend.Fn());
  auto multi = std::make_shared<Outcome>();
  auto single = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 3), Input(2, 3), Input(3, 3)}, multi)).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(4, 3)}, single)).ok());
  RunAll(b);
  std::vector<std::vector<int64_t>> want = {{1, 2}, {3, 4}};
  EXPECT_EQ(backend.Batches(), want);
  EXPECT_EQ(multi->rows.size(), 3u);
  EXPECT_EQ(single->rows.size(), 1u);
}

TEST(TokenBudgetBatcher, CountPaddingUsesRowsTimesLongest) {
  FakeClock clock;
  StubBackend backend;
  TokenBatcherConfig c = Manual(clock, 20);
  c.count_padding = true;
  TokenBudgetBatcher b(c, backend.Fn());
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int64_t len : {2, 9, 2, 2}) {
    outs.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE(b.Enqueue(Item({Input(len * 10 + int64_t(outs.size()), len)}, outs.back())).ok());
  }
  RunAll(b);
  // [2, 9] pads to 18; a third row would make 27 > 20.
  ASSERT_EQ(backend.Batches().size(), 2u);
  EXPECT_EQ(backend.Batches()[0].size(), 2u);
  EXPECT_EQ(backend.Batches()[1].size(), 2u);
}

TEST(TokenBudgetBatcher, FullQueueRefusesWithoutCallingBack) {
  FakeClock clock;
  StubBackend backend;
  TokenBatcherConfig c = Manual(clock, 100);
  c.max_queue_requests = 2;
  c.max_queue_tokens = 30;
  TokenBudgetBatcher b(c, backend.Fn());
  auto a = std::make_shared<Outcome>();
  auto refused = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 10)}, a)).ok());

  // By tokens: 10 queued + 25 > 30.
  TokenBatchItem big = Item({Input(2, 25)}, refused);
  Status s = b.Enqueue(std::move(big));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(big.encodings.size(), 1u);  // not moved from: the caller still owns it
  EXPECT_TRUE(static_cast<bool>(big.done));

  // By requests: the second fits, the third is refused, one input or several alike.
  ASSERT_TRUE(b.Enqueue(Item({Input(3, 5)}, std::make_shared<Outcome>())).ok());
  TokenBatchItem single = Item({Input(4, 1)}, refused);
  TokenBatchItem batch = Item({Input(5, 1), Input(6, 1)}, refused);
  EXPECT_EQ(b.Enqueue(std::move(single)).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(b.Enqueue(std::move(batch)).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(batch.encodings.size(), 2u);
  EXPECT_EQ(b.Stats().rejected, 3);

  RunAll(b);
  EXPECT_EQ(refused->calls, 0);
  EXPECT_EQ(a->calls, 1);
  // Room again once the queue drained; a request alone above max_queue_tokens is
  // admitted into an empty queue.
  EXPECT_TRUE(b.Enqueue(Item({Input(7, 40)}, std::make_shared<Outcome>())).ok());
}

TEST(TokenBudgetBatcher, InvalidItemsAreRefused) {
  FakeClock clock;
  StubBackend backend;
  TokenBudgetBatcher b(Manual(clock, 100), backend.Fn());
  EXPECT_EQ(b.Enqueue(Item({}, std::make_shared<Outcome>())).code(), StatusCode::kInvalidArgument);
  TokenBatchItem no_callback;
  no_callback.encodings.push_back(Input(1, 2));
  EXPECT_EQ(b.Enqueue(std::move(no_callback)).code(), StatusCode::kInvalidArgument);
}

TEST(TokenBudgetBatcher, ExpiredAndCancelledNeverReachTheBackend) {
  FakeClock clock;
  StubBackend backend;
  TokenBudgetBatcher b(Manual(clock, 100), backend.Fn());
  auto expired = std::make_shared<Outcome>();
  auto cancelled = std::make_shared<Outcome>();
  auto live = std::make_shared<Outcome>();
  auto flag = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 3)}, expired, clock.Now() + 5ms)).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(2, 3)}, cancelled, kNoDeadline, flag)).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(3, 3)}, live, clock.Now() + 1s)).ok());
  clock.Advance(10ms);
  flag->store(true);
  RunAll(b);
  std::vector<std::vector<int64_t>> want = {{3}};
  EXPECT_EQ(backend.Batches(), want);
  EXPECT_EQ(expired->calls, 1);
  EXPECT_EQ(expired->status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(expired->timings.queue, 10ms);
  EXPECT_EQ(cancelled->calls, 1);
  EXPECT_EQ(cancelled->status.code(), StatusCode::kCancelled);
  EXPECT_EQ(live->calls, 1);
  EXPECT_TRUE(live->status.ok());
  TokenBatcherStats s = b.Stats();
  EXPECT_EQ(s.expired, 1);
  EXPECT_EQ(s.cancelled, 1);
  EXPECT_EQ(s.completed, 1);
  EXPECT_EQ(s.batch_rows, 1);
}

TEST(TokenBudgetBatcher, SplitRequestCancelledMidwayStopsComputing) {
  FakeClock clock;
  StubBackend backend;
  TokenBudgetBatcher b(Manual(clock, 4), backend.Fn());
  auto out = std::make_shared<Outcome>();
  auto flag = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(
      b.Enqueue(Item({Input(1, 4), Input(2, 4), Input(3, 4)}, out, kNoDeadline, flag)).ok());
  ASSERT_TRUE(b.RunOnce());
  flag->store(true);
  RunAll(b);
  EXPECT_EQ(backend.Batches().size(), 1u);
  EXPECT_EQ(out->calls, 1);
  EXPECT_EQ(out->status.code(), StatusCode::kCancelled);
  EXPECT_EQ(b.Stats().queue_tokens, 0);
  EXPECT_EQ(b.Stats().queue_requests, 0);
}

TEST(TokenBudgetBatcher, BackendErrorReachesEveryRequestInTheBatch) {
  FakeClock clock;
  StubBackend backend;
  backend.fail = Internal("kernel exploded");
  TokenBudgetBatcher b(Manual(clock, 10), backend.Fn());
  auto a = std::make_shared<Outcome>();
  auto split = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 4)}, a)).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(2, 4), Input(3, 4), Input(4, 4)}, split)).ok());
  ASSERT_TRUE(b.RunOnce());
  // The split request failed with its first part; its rest is never computed.
  EXPECT_FALSE(b.RunOnce());
  EXPECT_EQ(backend.Batches().size(), 1u);
  EXPECT_EQ(a->calls, 1);
  EXPECT_EQ(a->status.code(), StatusCode::kInternal);
  EXPECT_EQ(a->status.message(), "kernel exploded");
  EXPECT_EQ(split->calls, 1);
  EXPECT_EQ(split->status.code(), StatusCode::kInternal);
  TokenBatcherStats s = b.Stats();
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.queue_requests, 0);
  EXPECT_EQ(s.queue_tokens, 0);
}

TEST(TokenBudgetBatcher, WrongOutputShapeIsAnInternalError) {
  FakeClock clock;
  TokenBudgetBatcher b(Manual(clock, 10), [](const std::vector<runtime::Encoding>&) {
    return Result<runtime::Tensor>(runtime::Tensor::Empty(runtime::DataType::kFloat32, {3, 2}));
  });
  auto a = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 4)}, a)).ok());
  RunAll(b);
  EXPECT_EQ(a->status.code(), StatusCode::kInternal);
}

TEST(TokenBudgetBatcher, QueueDelayWaitsForBudgetOrOldest) {
  FakeClock clock;
  StubBackend backend;
  TokenBatcherConfig c = Manual(clock, 10);
  c.max_queue_delay = 5ms;
  TokenBudgetBatcher b(c, backend.Fn());
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 3)}, std::make_shared<Outcome>())).ok());
  EXPECT_FALSE(b.RunOnce());
  clock.Advance(4ms);
  ASSERT_TRUE(b.Enqueue(Item({Input(2, 3)}, std::make_shared<Outcome>())).ok());
  EXPECT_FALSE(b.RunOnce());
  clock.Advance(1ms);  // the oldest has waited 5 ms
  EXPECT_TRUE(b.RunOnce());
  // A full budget does not wait.
  ASSERT_TRUE(b.Enqueue(Item({Input(3, 6), Input(4, 6)}, std::make_shared<Outcome>())).ok());
  EXPECT_TRUE(b.RunOnce());
  std::vector<std::vector<int64_t>> want = {{1, 2}, {3}};
  EXPECT_EQ(backend.Batches(), want);
}

TEST(TokenBudgetBatcher, ObserverSeesEachBatch) {
  FakeClock clock;
  StubBackend backend;
  std::vector<BatchRecord> records;
  TokenBatcherConfig c = Manual(clock, 10);
  c.on_batch = [&](const BatchRecord& r) { records.push_back(r); };
  TokenBudgetBatcher b(c, backend.Fn());
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 3), Input(2, 4)}, std::make_shared<Outcome>())).ok());
  ASSERT_TRUE(b.Enqueue(Item({Input(3, 5)}, std::make_shared<Outcome>())).ok());
  RunAll(b);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].rows, 2);
  EXPECT_EQ(records[0].tokens, 7);
  EXPECT_EQ(records[0].requests, 1);
  EXPECT_EQ(records[1].rows, 1);
  EXPECT_EQ(records[1].tokens, 5);
  EXPECT_TRUE(records[1].ok);
}

TEST(TokenBudgetBatcher, RunOnceIsInertWithAThread) {
  StubBackend backend;
  TokenBudgetBatcher b(TokenBatcherConfig{}, backend.Fn());
  EXPECT_FALSE(b.RunOnce());
}

// While the backend is busy with batch 1, batch 2 accumulates and runs next,
// without any idle timer.
TEST(TokenBudgetBatcher, ContinuousBatching) {
  StubBackend backend;
  Gate gate;
  backend.gate = &gate;
  TokenBatcherConfig c;
  c.max_batch_tokens = 100;
  TokenBudgetBatcher b(c, backend.Fn());
  CountDown done(4);
  std::vector<std::shared_ptr<Outcome>> outs;
  auto enqueue = [&](int64_t tag) {
    auto out = std::make_shared<Outcome>();
    outs.push_back(out);
    TokenBatchItem item = Item({Input(tag, 5)}, out);
    auto inner = std::move(item.done);
    item.done = [inner, &done](Result<std::vector<std::vector<float>>> r, BatchTimings t) {
      inner(std::move(r), t);
      done.Done();
    };
    ASSERT_TRUE(b.Enqueue(std::move(item)).ok());
  };
  enqueue(1);
  ASSERT_TRUE(gate.WaitEntered(1));
  enqueue(2);
  enqueue(3);
  enqueue(4);
  EXPECT_EQ(b.Stats().queue_requests, 3);
  gate.Open();
  ASSERT_TRUE(done.Wait());
  std::vector<std::vector<int64_t>> want = {{1}, {2, 3, 4}};
  EXPECT_EQ(backend.Batches(), want);
  for (auto& o : outs) EXPECT_EQ(o->calls, 1);
}

TEST(TokenBudgetBatcher, ShutdownDrainsAndRefusesNewWork) {
  StubBackend backend;
  Gate gate;
  backend.gate = &gate;
  TokenBatcherConfig c;
  c.max_batch_tokens = 8;
  auto b = std::make_unique<TokenBudgetBatcher>(c, backend.Fn());
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < 5; ++i) {
    outs.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE(b->Enqueue(Item({Input(i, 4)}, outs.back())).ok());
    if (i == 0) {
      ASSERT_TRUE(gate.WaitEntered(1));
    }
  }
  std::thread stopper([&] { b->Shutdown(); });
  // Shutdown stops admission before it drains.
  Status s;
  const auto give_up = SteadyClock::now() + 60s;
  while (SteadyClock::now() < give_up) {
    s = b->Enqueue(Item({Input(99, 1)}, std::make_shared<Outcome>()));
    if (s.code() == StatusCode::kUnavailable) break;  // not ResourceExhausted: full
    std::this_thread::yield();
  }
  // Enqueues that got in before Shutdown are part of the drain too.
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  gate.Open();
  stopper.join();
  for (auto& o : outs) {
    EXPECT_EQ(o->calls, 1);
    EXPECT_TRUE(o->status.ok());
  }
  EXPECT_EQ(b->Stats().queue_requests, 0);
  b->Shutdown();  // idempotent
  b.reset();
}

TEST(TokenBudgetBatcher, ManualShutdownDrains) {
  FakeClock clock;
  StubBackend backend;
  TokenBatcherConfig c = Manual(clock, 10);
  c.max_queue_delay = 1s;  // a drain does not wait for it
  TokenBudgetBatcher b(c, backend.Fn());
  auto a = std::make_shared<Outcome>();
  ASSERT_TRUE(b.Enqueue(Item({Input(1, 3)}, a)).ok());
  b.Shutdown();
  EXPECT_EQ(a->calls, 1);
  EXPECT_EQ(b.Enqueue(Item({Input(2, 3)}, a)).code(), StatusCode::kUnavailable);
}

// A callback may enqueue follow-up work, and may even stop the batcher (it then
// drains by itself; the owner's Shutdown() joins).
TEST(TokenBudgetBatcher, CallbacksMayEnqueueAndShutDown) {
  StubBackend backend;
  auto b = std::make_unique<TokenBudgetBatcher>(TokenBatcherConfig{}, backend.Fn());
  CountDown done(2);
  auto second = std::make_shared<Outcome>();
  TokenBatchItem first;
  first.encodings.push_back(Input(1, 3));
  first.done = [&](Result<std::vector<std::vector<float>>>, BatchTimings) {
    TokenBatchItem next = Item({Input(2, 3)}, second);
    auto inner = std::move(next.done);
    next.done = [inner, &done](Result<std::vector<std::vector<float>>> r, BatchTimings t) {
      inner(std::move(r), t);
      done.Done();
    };
    EXPECT_TRUE(b->Enqueue(std::move(next)).ok());
    b->Shutdown();  // on the inference thread: stops admission, does not join
    EXPECT_EQ(b->Enqueue(Item({Input(3, 3)}, second)).code(), StatusCode::kUnavailable);
    done.Done();
  };
  ASSERT_TRUE(b->Enqueue(std::move(first)).ok());
  ASSERT_TRUE(done.Wait());
  b->Shutdown();
  EXPECT_EQ(second->calls, 1);
  EXPECT_TRUE(second->status.ok());
  std::vector<std::vector<int64_t>> want = {{1}, {2}};
  EXPECT_EQ(backend.Batches(), want);
}

// Many producers, a small queue, random cancellation and a blocking-free backend:
// every accepted request is answered exactly once, with its own rows.
TEST(TokenBudgetBatcher, StressEveryCallbackFiresOnce) {
  StubBackend backend;
  TokenBatcherConfig c;
  c.max_batch_tokens = 64;
  c.max_queue_requests = 32;
  auto b = std::make_unique<TokenBudgetBatcher>(c, backend.Fn());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 400;
  std::vector<std::atomic<int>> calls(kThreads * kPerThread);
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        const int id = t * kPerThread + i;
        const int n = 1 + static_cast<int>(rng() % 4);
        std::vector<runtime::Encoding> inputs;
        for (int k = 0; k < n; ++k) inputs.push_back(Input(id * 10 + k, 1 + rng() % 30));
        auto flag = std::make_shared<std::atomic<bool>>(rng() % 10 == 0);
        TokenBatchItem item;
        item.encodings = std::move(inputs);
        item.cancel = flag;
        item.done = [&, id, n](Result<std::vector<std::vector<float>>> r, BatchTimings) {
          calls[id].fetch_add(1);
          if (r.ok()) {
            if (static_cast<int>(r->size()) != n) wrong.fetch_add(1);
            for (int k = 0; k < static_cast<int>(r->size()); ++k) {
              if ((*r)[k][0] != float(id * 10 + k)) wrong.fetch_add(1);
            }
          } else if (r.status().code() != StatusCode::kCancelled) {
            wrong.fetch_add(1);
          }
        };
        if (b->Enqueue(std::move(item)).ok()) {
          accepted.fetch_add(1);
        } else {
          refused.fetch_add(1);
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  b->Shutdown();
  int answered = 0;
  for (auto& c : calls) {
    EXPECT_LE(c.load(), 1);
    answered += c.load();
  }
  EXPECT_EQ(answered, accepted.load());
  EXPECT_EQ(wrong.load(), 0);
  TokenBatcherStats s = b->Stats();
  EXPECT_EQ(s.rejected, refused.load());
  EXPECT_EQ(s.completed + s.cancelled, accepted.load());
  for (int64_t t : backend.batch_tokens) EXPECT_LE(t, 64);
}

}  // namespace
}  // namespace infermesh::worker
