// TokenBudgetBatcher: the text-model scheduler, batching by tokens as TEI does.
//
//   TokenBudgetBatcher batcher(config, [&](const std::vector<runtime::Encoding>& batch) {
//     return model.EmbedEncodings(batch, normalize);  // [batch.size(), dim] float32
//   });
//   TokenBatchItem item;
//   item.encodings = std::move(encodings);
//   item.deadline = now + 30s;
//   item.cancel = connection->cancelled_flag();
//   item.done = [](Result<std::vector<std::vector<float>>> rows, BatchTimings t) { ... };
//   Status s = batcher.Enqueue(std::move(item));  // ResourceExhausted → 429
//
// Policy (every limit is a config value):
// - One bounded FIFO queue of client requests. A request of one input and a request
//   of N inputs are admitted by the same rule (TEI issue #662): it is refused at
//   once, never awaited, when the queue holds max_queue_requests requests or when
//   its tokens would push the queued tokens past max_queue_tokens.
// - One named inference thread takes batches FIFO while the sum of real (unpadded)
//   tokens stays within max_batch_tokens and the rows within max_batch_requests. A
//   single input longer than the budget runs alone rather than starving. A request
//   whose inputs do not all fit is split across consecutive batches; its completion
//   still fires once, with every row in input order.
// - Continuous batching: with max_queue_delay == 0 there is no idle timer; the next
//   batch is taken the moment the backend returns, from whatever queued meanwhile.
//   With max_queue_delay > 0 a batch waits until the budget is full or the oldest
//   request has waited that long.
// - Expired and cancelled requests are completed with DeadlineExceeded / Cancelled
//   when they reach the head of the queue, before compute. (A request is checked when
//   a batch is formed, not while it waits behind a running batch.)
// - Within a batch rows keep FIFO order: padding is set by the longest row, so
//   reordering inside one batch would not reduce it.
//
// Failures: an exception from the backend (std::bad_alloc from a tensor allocation,
// say) fails that batch's requests with Internal naming it, is counted in
// backend_exceptions and BatchRecord::failure, and the next batch runs as usual. A
// completion that throws is counted in callback_exceptions; the batch's other
// requests are still answered, each `done` exactly once.
//
// Threads: Enqueue(), Stats() and Shutdown() may be called from any thread. The
// backend, the completion callbacks and the observer run on the inference thread (or
// on the RunOnce() caller), never under the batcher's lock. A callback may call
// Enqueue(), and Shutdown() (which then only stops admission: the thread drains and
// exits, and the owner's Shutdown() or destructor joins it); it must not destroy the
// batcher, and should hand work off rather than block, since it delays the next batch.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "runtime/tensor.h"
#include "runtime/tokenizer.h"
#include "worker/batcher_common.h"

namespace infermesh::worker {

struct TokenBatcherConfig {
  // Real tokens per batch (the sum of each input's ids.size()).
  int64_t max_batch_tokens = 16384;
  // Inputs (rows) per batch; 0 = no limit beyond the token budget. Counts inputs, not
  // client requests, as TEI's --max-batch-requests does.
  int64_t max_batch_requests = 0;
  // Queued client requests (a request of N inputs counts once); 0 = unbounded.
  int64_t max_queue_requests = 1024;
  // Queued tokens not yet taken into a batch; 0 = unbounded. A request is admitted
  // into an empty queue even when it alone exceeds this, so no valid request is
  // refused forever.
  int64_t max_queue_tokens = 8 * 16384;
  // 0: continuous batching, no idle timer.
  std::chrono::microseconds max_queue_delay{0};
  // When true the budget counts padded tokens (rows × longest row), for backends
  // that pay for padding; the default counts real tokens.
  bool count_padding = false;
  std::string thread_name = "infer-text";
  // False: no thread is started and the owner drives batching with RunOnce()
  // (deterministic tests, or an external loop).
  bool start_thread = true;
  NowFn now = SystemNow();
  BatchObserver on_batch;  // optional
};

// Returns one row per input: a [batch.size(), dim] float32 tensor (any rank >= 1
// whose first dimension is batch.size() is accepted; each row is flattened). The
// encodings are unpadded; the backend pads. An error fails every request in the batch.
using TokenBatchBackend =
    std::function<Result<runtime::Tensor>(const std::vector<runtime::Encoding>& batch)>;

// One client request.
struct TokenBatchItem {
  std::vector<runtime::Encoding> encodings;  // at least one; moved into batches
  TimePoint deadline = kNoDeadline;
  CancelFlag cancel;  // may be null
  // Called exactly once, on the inference thread: rows[i] is the output for
  // encodings[i], or the first error that hit the request.
  std::function<void(Result<std::vector<std::vector<float>>>, BatchTimings)> done;
};

struct TokenBatcherStats {
  int64_t batches = 0;       // backend calls
  int64_t batch_rows = 0;    // inputs sent to the backend, all batches
  int64_t batch_tokens = 0;  // real tokens sent to the backend, all batches
  int64_t completed = 0;     // requests completed with rows
  int64_t failed = 0;        // requests completed with a backend error
  int64_t rejected = 0;      // Enqueue() refused: queue full
  int64_t expired = 0;       // completed with DeadlineExceeded before compute
  int64_t cancelled = 0;     // completed with Cancelled before compute
  // Batches failed by an exception on the inference thread (the backend threw, e.g.
  // std::bad_alloc, or copying its output did); their requests count in `failed`.
  int64_t backend_exceptions = 0;
  // Completion callbacks (and batch observers) that threw; caught, logged, and the
  // rest of the batch was still answered.
  int64_t callback_exceptions = 0;
  int64_t queue_requests = 0;  // requests in the queue now (a split one counts)
  int64_t queue_tokens = 0;    // tokens in the queue now, not yet in a batch
};

class TokenBudgetBatcher {
 public:
  // Starts the inference thread unless config.start_thread is false.
  TokenBudgetBatcher(TokenBatcherConfig config, TokenBatchBackend backend);
  // Shutdown(): drains what is queued, then joins.
  ~TokenBudgetBatcher();
  TokenBudgetBatcher(const TokenBudgetBatcher&) = delete;
  TokenBudgetBatcher& operator=(const TokenBudgetBatcher&) = delete;

  // Queues a request without blocking.
  // - OK: the batcher owns the item; `done` will be called exactly once.
  // - Not OK: `item` is left as it was passed (not moved from), `done` is never
  //   called, and the caller still owns the request and must answer the client:
  //   ResourceExhausted when the queue is full (429), Unavailable after Shutdown()
  //   (503), InvalidArgument for no encodings or no callback.
  Status Enqueue(TokenBatchItem&& item);

  // Stops accepting (Enqueue → Unavailable), completes everything queued and in
  // flight (ignoring max_queue_delay), and joins the thread. Idempotent; concurrent
  // callers all return after the drain.
  void Shutdown();

  // Without a thread (start_thread == false): forms one batch if one is due at
  // now(), runs it on the caller, completes its requests, and returns true; returns
  // false when nothing was due. Returns false when a thread is running.
  bool RunOnce();

  TokenBatcherStats Stats() const;
  const TokenBatcherConfig& config() const { return config_; }

 private:
  struct Entry;
  struct Batch;

  void Loop();
  // True when a batch should be formed now; otherwise sets *wait (0 = until notified).
  bool ReadyLocked(TimePoint now, std::chrono::nanoseconds* wait) const;
  // Moves the next batch from queue_ into `batch`. If it throws, `batch` holds what
  // was taken so far and FailFormingLocked() marks the head request it split.
  void FormLocked(TimePoint now, Batch& batch);
  void FailFormingLocked(Batch& batch);
  // Calls the backend (unless form_error is set, which then fails the batch, with
  // form_failure as its BatchRecord::failure) and completes the batch's requests.
  // Never throws: see batcher_common.h.
  void Run(Batch& batch, Status form_error = OkStatus(), std::string form_failure = "");
  void AddThrown(int64_t thrown);
  int64_t CostOf(const runtime::Encoding& e) const;

  const TokenBatcherConfig config_;
  const TokenBatchBackend backend_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Entry>> queue_;  // GUARDED_BY(mu_)
  int64_t queued_tokens_ = 0;                 // GUARDED_BY(mu_)
  int64_t queued_inputs_ = 0;                 // GUARDED_BY(mu_)
  bool stopping_ = false;                     // GUARDED_BY(mu_)
  TokenBatcherStats counters_;  // GUARDED_BY(mu_); queue_* fields are filled by Stats()

  // Serialises RunOnce() callers and the drain in Shutdown() without a thread: only
  // one batch is ever in flight, which is what lets a split request stay at the
  // head of queue_ while its first part runs.
  std::mutex run_mu_;
  std::mutex shutdown_mu_;  // held while joining
  std::thread thread_;
  std::thread::id thread_id_;  // set once in the constructor
};

}  // namespace infermesh::worker
