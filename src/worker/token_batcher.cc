#include "worker/token_batcher.h"

#include <algorithm>
#include <utility>

#include "core/log.h"

namespace infermesh::worker {

// A queued request. Owned by queue_ until all its inputs are taken into a batch,
// then by that batch until it completes. Only the thread running a batch (the
// inference thread, or the RunOnce() caller under run_mu_) reads or writes the
// fields below `enqueued`; mu_ guards only the queue_ structure around it.
struct TokenBudgetBatcher::Entry {
  TokenBatchItem item;
  TimePoint enqueued;
  size_t next = 0;          // next input to take into a batch
  int64_t tokens_left = 0;  // cost of inputs not yet taken
  std::vector<std::vector<float>> rows;
  size_t rows_done = 0;
  std::chrono::nanoseconds inference{0};
  int batches = 0;
};

struct TokenBudgetBatcher::Batch {
  std::vector<runtime::Encoding> inputs;
  struct Slot {
    Entry* entry;
    size_t row;
  };
  std::vector<Slot> slots;                    // one per input, same order
  std::vector<std::unique_ptr<Entry>> whole;  // entries whose last input is in this batch
  Entry* partial = nullptr;                   // head of queue_, only part of it taken
  std::vector<std::pair<std::unique_ptr<Entry>, Status>> dead;  // expired or cancelled
  int64_t tokens = 0;                                           // real tokens
  int64_t requests = 0;
};

namespace {

int64_t RealTokens(const runtime::Encoding& e) {
  // An input always costs something, so a batch of empty encodings still ends.
  return std::max<int64_t>(1, static_cast<int64_t>(e.ids.size()));
}

void Complete(TokenBatchItem& item, Result<std::vector<std::vector<float>>> result,
              BatchTimings timings) {
  auto done = std::move(item.done);
  done(std::move(result), timings);
}

}  // namespace

TokenBudgetBatcher::TokenBudgetBatcher(TokenBatcherConfig config, TokenBatchBackend backend)
    : config_(std::move(config)), backend_(std::move(backend)) {
  if (config_.start_thread) {
    thread_ = std::thread([this] { Loop(); });
    thread_id_ = thread_.get_id();
  }
}

TokenBudgetBatcher::~TokenBudgetBatcher() { Shutdown(); }

int64_t TokenBudgetBatcher::CostOf(const runtime::Encoding& e) const { return RealTokens(e); }

Status TokenBudgetBatcher::Enqueue(TokenBatchItem&& item) {
  if (item.encodings.empty()) return InvalidArgument("a request needs at least one input");
  if (!item.done) return InvalidArgument("a request needs a completion callback");
  int64_t tokens = 0;
  for (const auto& e : item.encodings) tokens += CostOf(e);
  const auto inputs = static_cast<int64_t>(item.encodings.size());

  // Allocate outside the lock; on refusal the item is moved back, untouched.
  auto entry = std::make_unique<Entry>();
  entry->item = std::move(item);
  entry->tokens_left = tokens;
  entry->rows.resize(entry->item.encodings.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    Status refusal;
    if (stopping_) {
      refusal = Unavailable("batcher is shutting down");
    } else if (config_.max_queue_requests > 0 &&
               static_cast<int64_t>(queue_.size()) >= config_.max_queue_requests) {
      ++counters_.rejected;
      refusal = ResourceExhausted("model is overloaded: queue holds " +
                                  std::to_string(queue_.size()) + " requests");
    } else if (config_.max_queue_tokens > 0 && queued_tokens_ > 0 &&
               queued_tokens_ + tokens > config_.max_queue_tokens) {
      ++counters_.rejected;
      refusal = ResourceExhausted("model is overloaded: queue holds " +
                                  std::to_string(queued_tokens_) + " tokens");
    }
    if (!refusal.ok()) {
      item = std::move(entry->item);
      return refusal;
    }
    entry->enqueued = config_.now();
    queued_tokens_ += tokens;
    queued_inputs_ += inputs;
    queue_.push_back(std::move(entry));
  }
  cv_.notify_one();
  return OkStatus();
}

bool TokenBudgetBatcher::ReadyLocked(TimePoint now, std::chrono::nanoseconds* wait) const {
  *wait = std::chrono::nanoseconds(0);
  if (queue_.empty()) return false;
  if (stopping_ || config_.max_queue_delay.count() <= 0) return true;
  if (queued_tokens_ >= config_.max_batch_tokens) return true;
  if (config_.max_batch_requests > 0 && queued_inputs_ >= config_.max_batch_requests) return true;
  const TimePoint due = queue_.front()->enqueued + config_.max_queue_delay;
  if (now >= due) return true;
  *wait = due - now;
  return false;
}

void TokenBudgetBatcher::FormLocked(TimePoint now, Batch& batch) {
  // Exception safety (a push_back may throw std::bad_alloc): every step moves one
  // thing and then updates the counters, so a throw leaves queue_ and the counters
  // agreeing, and the head entry's `next > rows_done` tells which of its inputs went
  // into this batch (see FailFormingLocked).
  int64_t budget_used = 0;  // real tokens, or padded tokens when count_padding
  int64_t longest = 0;
  while (!queue_.empty()) {
    Entry* e = queue_.front().get();
    Status alive = internal::CheckAlive(e->item.deadline, e->item.cancel, now);
    if (!alive.ok()) {
      const int64_t tokens = e->tokens_left;
      const auto inputs = static_cast<int64_t>(e->item.encodings.size() - e->next);
      batch.dead.emplace_back(std::move(queue_.front()), std::move(alive));
      queue_.pop_front();
      queued_tokens_ -= tokens;
      queued_inputs_ -= inputs;
      continue;
    }
    bool took = false;
    const size_t n = e->item.encodings.size();
    while (e->next < n) {
      runtime::Encoding& enc = e->item.encodings[e->next];
      const int64_t real = CostOf(enc);
      const int64_t rows = static_cast<int64_t>(batch.inputs.size());
      const int64_t cost =
          config_.count_padding ? (rows + 1) * std::max(longest, real) : budget_used + real;
      const bool fits = cost <= config_.max_batch_tokens &&
                        (config_.max_batch_requests <= 0 || rows < config_.max_batch_requests);
      // An input larger than the whole budget runs alone rather than never.
      if (!fits && !batch.inputs.empty()) break;
      batch.slots.push_back({e, e->next});
      batch.inputs.push_back(std::move(enc));
      budget_used = cost;
      longest = std::max(longest, real);
      batch.tokens += real;
      e->tokens_left -= real;
      queued_tokens_ -= real;
      --queued_inputs_;
      ++e->next;
      took = true;
    }
    if (took) ++batch.requests;
    if (e->next < n) {
      // The rest of this request goes first in the next batch; it stays at the head.
      if (took) batch.partial = e;
      break;
    }
    batch.whole.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

void TokenBudgetBatcher::FailFormingLocked(Batch& batch) {
  // Inputs of the head request taken into this batch are lost with it; Run() then
  // fails the whole request, as it does when a part of a split request fails.
  if (!queue_.empty() && queue_.front()->next > queue_.front()->rows_done) {
    batch.partial = queue_.front().get();
  }
}

void TokenBudgetBatcher::Run(Batch& batch, Status form_error, std::string form_failure) {
  int64_t thrown = 0;  // completions and the observer that threw
  const std::string& thread = config_.thread_name;
  // Requests that will never be computed are answered first.
  for (auto& dead : batch.dead) {
    // Not a structured binding: clang before 16 cannot capture one in the lambda.
    Entry& entry = *dead.first;
    Status& status = dead.second;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (status.code() == StatusCode::kCancelled) {
        ++counters_.cancelled;
      } else {
        ++counters_.expired;
      }
    }
    BatchTimings t;
    t.inference = entry.inference;
    t.queue = std::chrono::duration_cast<std::chrono::nanoseconds>(config_.now() - entry.enqueued) -
              entry.inference;
    t.batches = entry.batches;
    internal::RunCaught("a completion callback", thread, &thrown,
                        [&] { Complete(entry.item, std::move(status), t); });
  }
  batch.dead.clear();
  if (batch.inputs.empty() && batch.whole.empty() && batch.partial == nullptr) {
    // Nothing was taken (forming failed before the first input, if at all): the
    // queue is as it was and the next round tries again.
    if (!form_error.ok()) {
      log::Error("batch failed", {{"thread", thread}, {"error", form_error.message()}});
    }
    AddThrown(thrown);
    return;
  }

  // The backend is caller code: whatever it throws fails this batch only.
  Status error = std::move(form_error);
  std::string failure = std::move(form_failure);
  const bool called = error.ok();
  bool threw = !error.ok();
  const TimePoint start = config_.now();
  Result<runtime::Tensor> out = Internal("the backend was not called");
  if (called) {
    try {
      out = backend_(batch.inputs);
    } catch (...) {
      error = internal::StatusFromException("inference", &failure);
      threw = true;
    }
  }
  const TimePoint end = config_.now();
  const auto elapsed = called ? std::chrono::duration_cast<std::chrono::nanoseconds>(end - start)
                              : std::chrono::nanoseconds(0);
  const auto rows = static_cast<int64_t>(batch.inputs.size());
  batch.inputs.clear();

  if (!error.ok()) {
    // Already failed: forming the batch or the backend threw.
  } else if (!out.ok()) {
    error = out.status();
    failure = "backend_error";
  } else if (out->dtype() != runtime::DataType::kFloat32 || out->rank() < 1 ||
             out->dim(0) != rows) {
    error = Internal("backend returned " + out->DebugString() + " for a batch of " +
                     std::to_string(rows) + " inputs");
    failure = "bad_output";
  }

  // Charge the batch's time to each request in it once (a batch that failed while
  // forming never ran, and its last slot may name an input that stayed queued).
  Entry* previous = nullptr;
  for (size_t i = 0; called && i < batch.slots.size(); ++i) {
    const Batch::Slot& slot = batch.slots[i];
    if (slot.entry != previous) {
      slot.entry->inference += elapsed;
      ++slot.entry->batches;
      previous = slot.entry;
    }
  }
  // Fill rows; copying a large output can run out of memory too.
  if (error.ok()) {
    try {
      const int64_t width = rows > 0 ? out->numel() / rows : 0;
      for (size_t i = 0; i < batch.slots.size(); ++i) {
        const Batch::Slot& slot = batch.slots[i];
        const float* src = out->data<float>() + static_cast<int64_t>(i) * width;
        slot.entry->rows[slot.row].assign(src, src + width);
        ++slot.entry->rows_done;
      }
    } catch (...) {
      error = internal::StatusFromException("copying the batch's output", &failure);
      threw = true;
    }
  }

  // A split request whose part failed is finished now: take its rest off the queue.
  std::unique_ptr<Entry> failed_partial;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (called) {
      ++counters_.batches;
      counters_.batch_rows += rows;
      counters_.batch_tokens += batch.tokens;
    }
    if (threw) ++counters_.backend_exceptions;
    const auto whole = static_cast<int64_t>(batch.whole.size());
    if (error.ok()) {
      counters_.completed += whole;
    } else {
      counters_.failed += whole;
      if (batch.partial != nullptr && !queue_.empty() && queue_.front().get() == batch.partial) {
        failed_partial = std::move(queue_.front());
        queue_.pop_front();
        queued_tokens_ -= failed_partial->tokens_left;
        queued_inputs_ -=
            static_cast<int64_t>(failed_partial->item.encodings.size() - failed_partial->next);
        ++counters_.failed;
      }
    }
  }
  if (!error.ok()) {
    log::Error("batch failed",
               {{"thread", thread},
                {"reason", failure},
                {"requests", static_cast<int64_t>(batch.whole.size()) + (failed_partial ? 1 : 0)},
                {"error", error.message()}});
  }

  // Each completion runs whatever the others do: one that throws is counted and
  // the rest of the batch is still answered.
  const TimePoint now = config_.now();
  auto finish = [&](Entry& entry) {
    BatchTimings t;
    t.inference = entry.inference;
    t.queue = std::chrono::duration_cast<std::chrono::nanoseconds>(now - entry.enqueued) -
              entry.inference;
    t.batches = entry.batches;
    internal::RunCaught("a completion callback", thread, &thrown, [&] {
      if (error.ok()) {
        Complete(entry.item, std::move(entry.rows), t);
      } else {
        Complete(entry.item, error, t);
      }
    });
  };
  for (auto& entry : batch.whole) finish(*entry);
  if (failed_partial) finish(*failed_partial);
  batch.whole.clear();

  if (config_.on_batch) {
    BatchRecord record;
    record.rows = rows;
    record.tokens = batch.tokens;
    record.requests = batch.requests;
    record.inference = elapsed;
    record.ok = error.ok();
    record.failure = failure;
    internal::RunCaught("the batch observer", thread, &thrown, [&] { config_.on_batch(record); });
  }
  AddThrown(thrown);
}

void TokenBudgetBatcher::AddThrown(int64_t thrown) {
  if (thrown == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  counters_.callback_exceptions += thrown;
}

void TokenBudgetBatcher::Loop() {
  internal::SetCurrentThreadName(config_.thread_name);
  for (;;) {
    Batch batch;
    Status form_error;
    std::string failure;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        std::chrono::nanoseconds wait;
        if (ReadyLocked(config_.now(), &wait)) break;
        if (queue_.empty() && stopping_) return;
        if (wait.count() > 0) {
          cv_.wait_for(lock, wait);
        } else {
          cv_.wait(lock);
        }
      }
      try {
        FormLocked(config_.now(), batch);
      } catch (...) {
        form_error = internal::StatusFromException("forming a batch", &failure);
        FailFormingLocked(batch);
      }
    }
    Run(batch, std::move(form_error), std::move(failure));
  }
}

bool TokenBudgetBatcher::RunOnce() {
  if (config_.start_thread) return false;
  std::lock_guard<std::mutex> run_lock(run_mu_);
  Batch batch;
  Status form_error;
  std::string failure;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::chrono::nanoseconds wait;
    const TimePoint now = config_.now();
    if (!ReadyLocked(now, &wait)) return false;
    try {
      FormLocked(now, batch);
    } catch (...) {
      form_error = internal::StatusFromException("forming a batch", &failure);
      FailFormingLocked(batch);
    }
  }
  Run(batch, std::move(form_error), std::move(failure));
  return true;
}

void TokenBudgetBatcher::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (config_.start_thread && thread_id_ == std::this_thread::get_id()) {
    // Called from a completion callback: the thread drains and exits by itself.
    log::Warn("TokenBudgetBatcher::Shutdown called on its inference thread; not joining");
    return;
  }
  std::lock_guard<std::mutex> shutdown_lock(shutdown_mu_);
  if (!config_.start_thread) {
    while (RunOnce()) {
    }
    return;
  }
  if (thread_.joinable()) thread_.join();
}

TokenBatcherStats TokenBudgetBatcher::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  TokenBatcherStats s = counters_;
  s.queue_requests = static_cast<int64_t>(queue_.size());
  s.queue_tokens = queued_tokens_;
  return s;
}

}  // namespace infermesh::worker
