// Failure injection for both batchers: a backend that throws (std::bad_alloc from a
// tensor allocation, any other exception) and completion callbacks that throw. An
// accepted request must still be answered exactly once, the failure must be counted,
// and the batcher must go on serving later batches.
#include <gtest/gtest.h>

#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "batcher_test_util.h"
#include "worker/tensor_batcher.h"
#include "worker/token_batcher.h"

namespace infermesh::worker {
namespace {

using namespace std::chrono_literals;
using testing::CountDown;
using testing::FakeClock;

// What a backend call does, by call number: answer, throw bad_alloc or throw
// runtime_error.
enum class Act { kAnswer, kBadAlloc, kRuntimeError };

void MaybeThrow(Act act) {
  if (act == Act::kBadAlloc) throw std::bad_alloc();
  if (act == Act::kRuntimeError) throw std::runtime_error("kernel exploded");
}

struct Script {
  std::vector<Act> acts;  // acts[i] for call i; calls past the end answer
  int calls = 0;
  Act Next() {
    return calls < static_cast<int>(acts.size()) ? acts[calls++] : (++calls, Act::kAnswer);
  }
};

// ---- TokenBudgetBatcher ------------------------------------------------------

runtime::Encoding Input(int64_t tag, int64_t tokens) {
  runtime::Encoding e;
  e.ids.assign(static_cast<size_t>(tokens), 7);
  e.ids[0] = tag;
  e.attention_mask.assign(static_cast<size_t>(tokens), 1);
  return e;
}

// Answers each input with {tag}.
TokenBatchBackend TokenBackend(Script* script) {
  return [script](const std::vector<runtime::Encoding>& batch) -> Result<runtime::Tensor> {
    MaybeThrow(script->Next());
    const auto n = static_cast<int64_t>(batch.size());
    runtime::Tensor out = runtime::Tensor::Empty(runtime::DataType::kFloat32, {n, 1});
    for (int64_t i = 0; i < n; ++i) out.data<float>()[i] = static_cast<float>(batch[i].ids[0]);
    return out;
  };
}

struct TokenOutcome {
  int calls = 0;
  Status status;
  std::vector<std::vector<float>> rows;
};

TokenBatchItem TokenItem(std::vector<runtime::Encoding> inputs, std::shared_ptr<TokenOutcome> out,
                         bool throw_after = false, TimePoint deadline = kNoDeadline) {
  TokenBatchItem item;
  item.encodings = std::move(inputs);
  item.deadline = deadline;
  item.done = [out, throw_after](Result<std::vector<std::vector<float>>> r, BatchTimings) {
    ++out->calls;
    if (r.ok()) {
      out->rows = std::move(r).value();
    } else {
      out->status = r.status();
    }
    if (throw_after) throw std::runtime_error("completion failed");
  };
  return item;
}

TokenBatcherConfig ManualToken(FakeClock& clock, int64_t budget, std::vector<BatchRecord>* seen) {
  TokenBatcherConfig c;
  c.max_batch_tokens = budget;
  c.start_thread = false;
  c.now = clock.Fn();
  c.on_batch = [seen](const BatchRecord& r) { seen->push_back(r); };
  return c;
}

TEST(TokenBatcherFailures, BadAllocFailsTheBatchAndTheNextOneRuns) {
  FakeClock clock;
  Script script{{Act::kBadAlloc}};
  std::vector<BatchRecord> seen;
  TokenBudgetBatcher b(ManualToken(clock, 8, &seen), TokenBackend(&script));
  auto a = std::make_shared<TokenOutcome>();
  auto c = std::make_shared<TokenOutcome>();
  auto next = std::make_shared<TokenOutcome>();
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(1, 4)}, a)).ok());
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(2, 4)}, c)).ok());
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(3, 4)}, next)).ok());

  ASSERT_TRUE(b.RunOnce());  // [1, 2]: the backend throws
  for (const auto& o : {a, c}) {
    EXPECT_EQ(o->calls, 1);
    EXPECT_EQ(o->status.code(), StatusCode::kInternal);
    EXPECT_NE(o->status.message().find("out of memory"), std::string::npos) << o->status.message();
  }
  ASSERT_TRUE(b.RunOnce());  // [3]
  EXPECT_FALSE(b.RunOnce());
  ASSERT_EQ(next->calls, 1);
  ASSERT_TRUE(next->status.ok());
  EXPECT_EQ(next->rows, (std::vector<std::vector<float>>{{3.f}}));

  TokenBatcherStats s = b.Stats();
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.completed, 1);
  EXPECT_EQ(s.backend_exceptions, 1);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_FALSE(seen[0].ok);
  EXPECT_EQ(seen[0].failure, "out_of_memory");
  EXPECT_TRUE(seen[1].ok);
  EXPECT_EQ(seen[1].failure, "");
}

TEST(TokenBatcherFailures, RuntimeErrorIsNamedInTheStatus) {
  FakeClock clock;
  Script script{{Act::kRuntimeError}};
  std::vector<BatchRecord> seen;
  TokenBudgetBatcher b(ManualToken(clock, 100, &seen), TokenBackend(&script));
  auto a = std::make_shared<TokenOutcome>();
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(1, 4)}, a)).ok());
  ASSERT_TRUE(b.RunOnce());
  EXPECT_EQ(a->calls, 1);
  EXPECT_EQ(a->status.code(), StatusCode::kInternal);
  EXPECT_NE(a->status.message().find("kernel exploded"), std::string::npos) << a->status.message();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].failure, "exception");
  EXPECT_EQ(b.Stats().backend_exceptions, 1);
}

TEST(TokenBatcherFailures, ReturnedErrorIsCountedAsBackendError) {
  FakeClock clock;
  std::vector<BatchRecord> seen;
  TokenBudgetBatcher b(ManualToken(clock, 100, &seen),
                       [](const std::vector<runtime::Encoding>&) -> Result<runtime::Tensor> {
                         return Unavailable("device lost");
                       });
  auto a = std::make_shared<TokenOutcome>();
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(1, 4)}, a)).ok());
  ASSERT_TRUE(b.RunOnce());
  EXPECT_EQ(a->status.code(), StatusCode::kUnavailable);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].failure, "backend_error");
  EXPECT_EQ(b.Stats().backend_exceptions, 0);
}

TEST(TokenBatcherFailures, SplitRequestWhosePartThrowsFailsOnce) {
  FakeClock clock;
  Script script{{Act::kAnswer, Act::kBadAlloc}};
  std::vector<BatchRecord> seen;
  TokenBudgetBatcher b(ManualToken(clock, 8, &seen), TokenBackend(&script));
  auto split = std::make_shared<TokenOutcome>();
  auto after = std::make_shared<TokenOutcome>();
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(1, 4), Input(2, 4), Input(3, 4)}, split)).ok());
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(4, 4)}, after)).ok());
  ASSERT_TRUE(b.RunOnce());  // [1, 2]
  EXPECT_EQ(split->calls, 0);
  ASSERT_TRUE(b.RunOnce());  // [3, 4]: throws
  EXPECT_EQ(split->calls, 1);
  EXPECT_EQ(split->status.code(), StatusCode::kInternal);
  EXPECT_EQ(after->calls, 1);
  EXPECT_EQ(after->status.code(), StatusCode::kInternal);
  EXPECT_FALSE(b.RunOnce());
  EXPECT_EQ(b.Stats().queue_requests, 0);
  EXPECT_EQ(b.Stats().queue_tokens, 0);
}

TEST(TokenBatcherFailures, ThrowingCompletionDoesNotStopTheOthers) {
  FakeClock clock;
  Script script;
  std::vector<BatchRecord> seen;
  TokenBudgetBatcher b(ManualToken(clock, 100, &seen), TokenBackend(&script));
  std::vector<std::shared_ptr<TokenOutcome>> outs;
  for (int i = 0; i < 3; ++i) {
    outs.push_back(std::make_shared<TokenOutcome>());
    // The first two completions throw: the third must still be answered.
    ASSERT_TRUE(b.Enqueue(TokenItem({Input(i, 4)}, outs.back(), /*throw_after=*/i < 2)).ok());
  }
  ASSERT_TRUE(b.RunOnce());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(outs[i]->calls, 1) << i;
    ASSERT_TRUE(outs[i]->status.ok());
    EXPECT_EQ(outs[i]->rows, (std::vector<std::vector<float>>{{float(i)}}));
  }
  // A throwing completion of a request that expired before compute is caught too.
  auto expired = std::make_shared<TokenOutcome>();
  auto next = std::make_shared<TokenOutcome>();
  ASSERT_TRUE(
      b.Enqueue(TokenItem({Input(8, 4)}, expired, /*throw_after=*/true, clock.Now() + 1ms)).ok());
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(9, 4)}, next)).ok());
  clock.Advance(2ms);
  ASSERT_TRUE(b.RunOnce());
  EXPECT_EQ(expired->calls, 1);
  EXPECT_EQ(expired->status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(next->calls, 1);
  EXPECT_TRUE(next->status.ok());

  TokenBatcherStats s = b.Stats();
  EXPECT_EQ(s.callback_exceptions, 3);
  EXPECT_EQ(s.completed, 4);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[0].ok);  // the batch itself succeeded
}

TEST(TokenBatcherFailures, ThrowingObserverIsCaught) {
  FakeClock clock;
  Script script;
  TokenBatcherConfig c = ManualToken(clock, 100, nullptr);
  c.on_batch = [](const BatchRecord&) { throw std::runtime_error("observer failed"); };
  TokenBudgetBatcher b(c, TokenBackend(&script));
  auto a = std::make_shared<TokenOutcome>();
  ASSERT_TRUE(b.Enqueue(TokenItem({Input(1, 4)}, a)).ok());
  ASSERT_TRUE(b.RunOnce());
  EXPECT_EQ(a->calls, 1);
  EXPECT_TRUE(a->status.ok());
}

TEST(TokenBatcherFailures, InferenceThreadSurvivesThrows) {
  Script script{{Act::kBadAlloc, Act::kRuntimeError}};
  TokenBatcherConfig c;
  c.max_batch_tokens = 4;  // one request per batch
  TokenBudgetBatcher b(c, TokenBackend(&script));
  std::vector<std::shared_ptr<TokenOutcome>> outs;
  CountDown all(4);
  for (int i = 0; i < 4; ++i) {
    outs.push_back(std::make_shared<TokenOutcome>());
    TokenBatchItem item = TokenItem({Input(i, 4)}, outs.back(), /*throw_after=*/i == 2);
    item.done = [inner = std::move(item.done), &all](auto r, BatchTimings t) {
      all.Done();
      inner(std::move(r), t);
    };
    ASSERT_TRUE(b.Enqueue(std::move(item)).ok());
  }
  ASSERT_TRUE(all.Wait());
  b.Shutdown();
  EXPECT_EQ(outs[0]->status.code(), StatusCode::kInternal);
  EXPECT_EQ(outs[1]->status.code(), StatusCode::kInternal);
  EXPECT_TRUE(outs[2]->status.ok());
  EXPECT_TRUE(outs[3]->status.ok());
  for (const auto& o : outs) EXPECT_EQ(o->calls, 1);
  TokenBatcherStats s = b.Stats();
  EXPECT_EQ(s.backend_exceptions, 2);
  EXPECT_EQ(s.callback_exceptions, 1);
}

// ---- SizeDelayBatcher --------------------------------------------------------

TensorBatchBackend TensorBackend(Script* script) {
  return [script](const runtime::Tensor& in) -> Result<runtime::Tensor> {
    MaybeThrow(script->Next());
    const int64_t n = in.dim(0);
    runtime::Tensor out = runtime::Tensor::Empty(runtime::DataType::kFloat32, {n, 1});
    for (int64_t i = 0; i < n; ++i) out.data<float>()[i] = 2 * in.data<float>()[i * in.dim(1)];
    return out;
  };
}

struct TensorOutcome {
  int calls = 0;
  Status status;
  std::vector<float> row;
};

TensorBatchItem TensorItem(float value, std::shared_ptr<TensorOutcome> out,
                           bool throw_after = false) {
  TensorBatchItem item;
  item.input = {value};
  item.done = [out, throw_after](Result<std::vector<float>> r, BatchTimings) {
    ++out->calls;
    if (r.ok()) {
      out->row = std::move(r).value();
    } else {
      out->status = r.status();
    }
    if (throw_after) throw std::runtime_error("completion failed");
  };
  return item;
}

TensorBatcherConfig ManualTensor(FakeClock& clock, int64_t max_batch,
                                 std::vector<BatchRecord>* seen) {
  TensorBatcherConfig c;
  c.max_batch_size = max_batch;
  c.max_queue_delay = 0ms;
  c.start_thread = false;
  c.now = clock.Fn();
  c.on_batch = [seen](const BatchRecord& r) { seen->push_back(r); };
  return c;
}

TEST(TensorBatcherFailures, ThrowsFailTheBatchAndTheNextOneRuns) {
  FakeClock clock;
  Script script{{Act::kBadAlloc, Act::kRuntimeError}};
  std::vector<BatchRecord> seen;
  SizeDelayBatcher b(ManualTensor(clock, 2, &seen), TensorBackend(&script));
  std::vector<std::shared_ptr<TensorOutcome>> outs;
  for (int i = 0; i < 5; ++i) {
    outs.push_back(std::make_shared<TensorOutcome>());
    ASSERT_TRUE(b.Enqueue(TensorItem(float(i), outs.back())).ok());
  }
  ASSERT_TRUE(b.RunOnce());  // [0, 1]: bad_alloc
  ASSERT_TRUE(b.RunOnce());  // [2, 3]: runtime_error
  ASSERT_TRUE(b.RunOnce());  // [4]
  EXPECT_FALSE(b.RunOnce());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(outs[i]->calls, 1) << i;
  EXPECT_NE(outs[0]->status.message().find("out of memory"), std::string::npos);
  EXPECT_EQ(outs[1]->status.code(), StatusCode::kInternal);
  EXPECT_NE(outs[2]->status.message().find("kernel exploded"), std::string::npos);
  EXPECT_EQ(outs[3]->status.code(), StatusCode::kInternal);
  ASSERT_TRUE(outs[4]->status.ok());
  EXPECT_EQ(outs[4]->row, std::vector<float>{8.f});

  TensorBatcherStats s = b.Stats();
  EXPECT_EQ(s.failed, 4);
  EXPECT_EQ(s.completed, 1);
  EXPECT_EQ(s.backend_exceptions, 2);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].failure, "out_of_memory");
  EXPECT_EQ(seen[1].failure, "exception");
  EXPECT_TRUE(seen[2].ok);
}

TEST(TensorBatcherFailures, ThrowingCompletionDoesNotStopTheOthers) {
  FakeClock clock;
  Script script;
  std::vector<BatchRecord> seen;
  SizeDelayBatcher b(ManualTensor(clock, 3, &seen), TensorBackend(&script));
  std::vector<std::shared_ptr<TensorOutcome>> outs;
  for (int i = 0; i < 3; ++i) {
    outs.push_back(std::make_shared<TensorOutcome>());
    ASSERT_TRUE(b.Enqueue(TensorItem(float(i), outs.back(), /*throw_after=*/i == 0)).ok());
  }
  ASSERT_TRUE(b.RunOnce());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(outs[i]->calls, 1);
    ASSERT_TRUE(outs[i]->status.ok());
    EXPECT_EQ(outs[i]->row, std::vector<float>{2.f * i});
  }
  EXPECT_EQ(b.Stats().callback_exceptions, 1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].ok);
}

TEST(TensorBatcherFailures, InferenceThreadSurvivesThrows) {
  Script script{{Act::kBadAlloc}};
  TensorBatcherConfig c;
  c.max_batch_size = 1;
  c.max_queue_delay = 0ms;
  SizeDelayBatcher b(c, TensorBackend(&script));
  std::vector<std::shared_ptr<TensorOutcome>> outs;
  CountDown all(3);
  for (int i = 0; i < 3; ++i) {
    outs.push_back(std::make_shared<TensorOutcome>());
    TensorBatchItem item = TensorItem(float(i), outs.back(), /*throw_after=*/i == 1);
    item.done = [inner = std::move(item.done), &all](auto r, BatchTimings t) {
      all.Done();
      inner(std::move(r), t);
    };
    ASSERT_TRUE(b.Enqueue(std::move(item)).ok());
  }
  ASSERT_TRUE(all.Wait());
  b.Shutdown();
  EXPECT_EQ(outs[0]->status.code(), StatusCode::kInternal);
  EXPECT_TRUE(outs[1]->status.ok());
  EXPECT_TRUE(outs[2]->status.ok());
  for (const auto& o : outs) EXPECT_EQ(o->calls, 1);
  EXPECT_EQ(b.Stats().backend_exceptions, 1);
  EXPECT_EQ(b.Stats().callback_exceptions, 1);
}

}  // namespace
}  // namespace infermesh::worker
