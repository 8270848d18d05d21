// SizeDelayBatcher: the tensor-model scheduler, batching by size and delay as
// Triton's dynamic batcher does.
//
//   SizeDelayBatcher batcher(config, [&](const runtime::Tensor& batch) {
//     return session.Run(batch);  // batch: [n, feature] float32 → [n, ...] float32
//   });
//   TensorBatchItem item;
//   item.input = std::move(row);  // one row of the model's feature size
//   item.deadline = now + 30s;
//   item.done = [](Result<std::vector<float>> out, BatchTimings t) { ... };
//   Status s = batcher.Enqueue(std::move(item));  // ResourceExhausted → 429
//
// Policy (every limit is a config value):
// - One bounded FIFO queue of rows (one client request = one row); it refuses at
//   once, never waits, beyond max_queue_requests.
// - A batch forms when max_batch_size live rows are queued (a "full" batch) or when
//   the oldest has waited max_queue_delay (a "timeout" batch). With max_queue_delay
//   == 0 a batch forms as soon as a row is queued and the thread is free. Batches
//   formed while draining in Shutdown() are "drain" batches.
// - Rows in one batch have the same length: a row whose length differs from the
//   head's ends the batch (FIFO is kept), and goes first into the next one.
// - Expired and cancelled rows are completed with DeadlineExceeded / Cancelled when a
//   batch is formed, before compute, and never reach the backend.
//
// Failures: as TokenBudgetBatcher (an exception from the backend fails that batch
// with Internal; a throwing completion does not stop the others; both are counted).
//
// Threads: as TokenBudgetBatcher. Enqueue(), Stats() and Shutdown() from any thread;
// backend, callbacks and observer on the inference thread, never under the lock.
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
#include "worker/batcher_common.h"

namespace infermesh::worker {

struct TensorBatcherConfig {
  int64_t max_batch_size = 32;
  std::chrono::microseconds max_queue_delay{20000};  // 20 ms, as in the seed
  int64_t max_queue_requests = 1024;                 // 0 = unbounded
  // Row length every input must have; 0 = any (rows of differing lengths are
  // batched separately).
  int64_t feature_size = 0;
  std::string thread_name = "infer-tensor";
  // False: no thread; the owner drives batching with RunOnce().
  bool start_thread = true;
  NowFn now = SystemNow();
  BatchObserver on_batch;  // optional
};

// Receives [n, row length] float32 and returns a float32 tensor whose first
// dimension is n; row i of the output (flattened) answers row i of the input.
// An error fails every request in the batch.
using TensorBatchBackend = std::function<Result<runtime::Tensor>(const runtime::Tensor& batch)>;

struct TensorBatchItem {
  std::vector<float> input;  // one row; moved into the batch tensor
  TimePoint deadline = kNoDeadline;
  CancelFlag cancel;  // may be null
  // Called exactly once, on the inference thread.
  std::function<void(Result<std::vector<float>>, BatchTimings)> done;
};

// The batch fields are the ones /health reports as batch_processor{...}.
struct TensorBatcherStats {
  int64_t total_batches = 0;    // backend calls
  double avg_batch_size = 0;    // rows per backend call
  int64_t full_batches = 0;     // formed by reaching max_batch_size
  int64_t timeout_batches = 0;  // formed by max_queue_delay
  int64_t drain_batches = 0;    // formed while draining in Shutdown()
  int64_t batch_rows = 0;
  int64_t completed = 0;
  int64_t failed = 0;
  // Batches failed by an exception on the inference thread (the tensor allocation or
  // the backend threw, e.g. std::bad_alloc); their rows count in `failed`.
  int64_t backend_exceptions = 0;
  // Completion callbacks (and batch observers) that threw; caught and logged, the
  // batch's other rows were still answered.
  int64_t callback_exceptions = 0;
  int64_t rejected = 0;
  int64_t expired = 0;
  int64_t cancelled = 0;
  int64_t queue_requests = 0;  // rows queued now
};

class SizeDelayBatcher {
 public:
  SizeDelayBatcher(TensorBatcherConfig config, TensorBatchBackend backend);
  ~SizeDelayBatcher();  // Shutdown()
  SizeDelayBatcher(const SizeDelayBatcher&) = delete;
  SizeDelayBatcher& operator=(const SizeDelayBatcher&) = delete;

  // Queues one row without blocking.
  // - OK: the batcher owns the item; `done` will be called exactly once.
  // - Not OK: `item` is left as passed (not moved from), `done` is never called, and
  //   the caller still owns the request: ResourceExhausted when the queue is full,
  //   Unavailable after Shutdown(), InvalidArgument for an empty row, a row of the
  //   wrong feature_size or no callback.
  Status Enqueue(TensorBatchItem&& item);

  // Stops accepting, completes everything queued and in flight without waiting for
  // max_queue_delay, joins. Idempotent.
  void Shutdown();

  // Without a thread (start_thread == false): runs one batch if one is due at now();
  // true if it did. Returns false when a thread is running.
  bool RunOnce();

  TensorBatcherStats Stats() const;
  const TensorBatcherConfig& config() const { return config_; }

 private:
  struct Entry {
    TensorBatchItem item;
    TimePoint enqueued;
  };
  enum class Trigger { kFull, kTimeout, kDrain };
  struct Batch {
    std::vector<Entry> live;
    std::vector<std::pair<Entry, Status>> dead;
    Trigger trigger = Trigger::kTimeout;
  };

  void Loop();
  // Completes dead rows found in queue_ into *dead, then decides whether a batch is
  // due; if not, sets *wait (0 = until notified).
  bool ReadyLocked(TimePoint now, std::chrono::nanoseconds* wait, Trigger* trigger,
                   std::vector<std::pair<Entry, Status>>* dead);
  // Moves `dead` and the next batch's rows from queue_ into `batch`. If it throws
  // (std::bad_alloc), no row has left queue_.
  void FormLocked(TimePoint now, Trigger trigger, std::vector<std::pair<Entry, Status>>& dead,
                  Batch& batch);
  // ReadyLocked, then FormLocked when ready (*ready), catching what they throw: false
  // if they threw (logged; rows stay queued or in `dead`/`batch`, nothing is lost).
  bool FormCaught(TimePoint now, std::chrono::nanoseconds* wait, Trigger* trigger,
                  std::vector<std::pair<Entry, Status>>& dead, Batch& batch, bool* ready);
  // Never throws: see batcher_common.h.
  void Run(Batch& batch);
  void CompleteDead(std::vector<std::pair<Entry, Status>>& dead);
  void AddThrown(int64_t thrown);

  const TensorBatcherConfig config_;
  const TensorBatchBackend backend_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry> queue_;      // GUARDED_BY(mu_)
  bool stopping_ = false;        // GUARDED_BY(mu_)
  TensorBatcherStats counters_;  // GUARDED_BY(mu_)

  std::mutex run_mu_;       // one batch in flight without a thread (RunOnce callers)
  std::mutex shutdown_mu_;  // held while joining
  std::thread thread_;
  std::thread::id thread_id_;  // set once in the constructor
};

}  // namespace infermesh::worker
