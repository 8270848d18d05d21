#include "worker/tensor_batcher.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "core/log.h"

namespace infermesh::worker {

namespace {

std::chrono::nanoseconds Nanos(SteadyClock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d);
}

}  // namespace

SizeDelayBatcher::SizeDelayBatcher(TensorBatcherConfig config, TensorBatchBackend backend)
    : config_(std::move(config)), backend_(std::move(backend)) {
  if (config_.start_thread) {
    thread_ = std::thread([this] { Loop(); });
    thread_id_ = thread_.get_id();
  }
}

SizeDelayBatcher::~SizeDelayBatcher() { Shutdown(); }

Status SizeDelayBatcher::Enqueue(TensorBatchItem&& item) {
  if (item.input.empty()) return InvalidArgument("a request needs a non-empty input row");
  if (config_.feature_size > 0 && static_cast<int64_t>(item.input.size()) != config_.feature_size) {
    return InvalidArgument("input has " + std::to_string(item.input.size()) +
                           " values; the model takes " + std::to_string(config_.feature_size));
  }
  if (!item.done) return InvalidArgument("a request needs a completion callback");
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Unavailable("batcher is shutting down");
    if (config_.max_queue_requests > 0 &&
        static_cast<int64_t>(queue_.size()) >= config_.max_queue_requests) {
      ++counters_.rejected;
      return ResourceExhausted("model is overloaded: queue holds " + std::to_string(queue_.size()) +
                               " requests");
    }
    queue_.push_back(Entry{std::move(item), config_.now()});
    // The thread needs waking only when the first row arrives (to start its timer)
    // or when a full batch is ready; other arrivals change nothing it waits for.
    const auto size = static_cast<int64_t>(queue_.size());
    wake = size == 1 || size >= config_.max_batch_size || config_.max_queue_delay.count() <= 0;
  }
  if (wake) cv_.notify_one();
  return OkStatus();
}

bool SizeDelayBatcher::ReadyLocked(TimePoint now, std::chrono::nanoseconds* wait, Trigger* trigger,
                                   std::vector<std::pair<Entry, Status>>* dead) {
  static_assert(std::is_nothrow_move_constructible_v<Entry> &&
                std::is_nothrow_move_assignable_v<Entry>);
  *wait = std::chrono::nanoseconds(0);
  // Drop dead rows first so they neither count toward a full batch nor hold the timer.
  size_t n_dead = 0;
  for (const Entry& e : queue_) {
    if (!internal::CheckAlive(e.item.deadline, e.item.cancel, now).ok()) ++n_dead;
  }
  if (n_dead > 0) {
    // The only step that can throw (std::bad_alloc) is this reserve, before anything
    // moves; the moves and the compaction below do not allocate.
    dead->reserve(dead->size() + n_dead);
    auto keep = queue_.begin();
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      Status alive = internal::CheckAlive(it->item.deadline, it->item.cancel, now);
      if (alive.ok()) {
        if (keep != it) *keep = std::move(*it);
        ++keep;
      } else {
        dead->emplace_back(std::move(*it), std::move(alive));
      }
    }
    queue_.erase(keep, queue_.end());
  }
  if (queue_.empty()) return false;
  if (stopping_) {
    *trigger = Trigger::kDrain;
    return true;
  }
  if (static_cast<int64_t>(queue_.size()) >= config_.max_batch_size) {
    *trigger = Trigger::kFull;
    return true;
  }
  const TimePoint due = queue_.front().enqueued + config_.max_queue_delay;
  if (now >= due) {
    *trigger = Trigger::kTimeout;
    return true;
  }
  *wait = Nanos(due - now);
  return false;
}

void SizeDelayBatcher::FormLocked(TimePoint /*now*/, Trigger trigger,
                                  std::vector<std::pair<Entry, Status>>& dead, Batch& batch) {
  batch.trigger = trigger;
  batch.dead = std::move(dead);
  dead.clear();
  const size_t width = queue_.front().item.input.size();
  // Reserving first means the moves below cannot throw, so a std::bad_alloc here
  // leaves every row in queue_.
  batch.live.reserve(static_cast<size_t>(
      std::min<int64_t>(config_.max_batch_size, static_cast<int64_t>(queue_.size()))));
  while (!queue_.empty() && static_cast<int64_t>(batch.live.size()) < config_.max_batch_size &&
         queue_.front().item.input.size() == width) {
    batch.live.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  // A batch cut short by a row of another length did not fill up.
  if (trigger == Trigger::kFull &&
      static_cast<int64_t>(batch.live.size()) < config_.max_batch_size) {
    batch.trigger = Trigger::kTimeout;
  }
}

void SizeDelayBatcher::CompleteDead(std::vector<std::pair<Entry, Status>>& dead) {
  if (dead.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& d : dead) {
      if (d.second.code() == StatusCode::kCancelled) {
        ++counters_.cancelled;
      } else {
        ++counters_.expired;
      }
    }
  }
  int64_t thrown = 0;
  const TimePoint now = config_.now();
  for (auto& [entry, status] : dead) {
    BatchTimings t;
    t.queue = Nanos(now - entry.enqueued);
    auto done = std::move(entry.item.done);
    // Moved out here: clang before 16 cannot capture a structured binding.
    Result<std::vector<float>> result = std::move(status);
    internal::RunCaught("a completion callback", config_.thread_name, &thrown,
                        [&] { done(std::move(result), t); });
  }
  dead.clear();
  AddThrown(thrown);
}

void SizeDelayBatcher::AddThrown(int64_t thrown) {
  if (thrown == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  counters_.callback_exceptions += thrown;
}

void SizeDelayBatcher::Run(Batch& batch) {
  CompleteDead(batch.dead);
  if (batch.live.empty()) return;

  const std::string& thread = config_.thread_name;
  const auto n = static_cast<int64_t>(batch.live.size());
  const auto width = static_cast<int64_t>(batch.live.front().item.input.size());
  // Assembling the batch tensor and the backend are where memory runs out; either
  // failing fails this batch only.
  Status error;
  std::string failure;
  Result<runtime::Tensor> out = Internal("the backend was not called");
  const TimePoint start = config_.now();
  try {
    runtime::Tensor input = runtime::Tensor::Empty(runtime::DataType::kFloat32, {n, width});
    float* dst = input.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      std::vector<float>& row = batch.live[i].item.input;
      std::memcpy(dst + i * width, row.data(), static_cast<size_t>(width) * sizeof(float));
      std::vector<float>().swap(row);  // the tensor holds the data now
    }
    out = backend_(input);
  } catch (...) {
    error = internal::StatusFromException("inference", &failure);
  }
  const auto elapsed = Nanos(config_.now() - start);
  const bool threw = !error.ok();

  if (!error.ok()) {
    // Already failed: the tensor allocation or the backend threw.
  } else if (!out.ok()) {
    error = out.status();
    failure = "backend_error";
  } else if (out->dtype() != runtime::DataType::kFloat32 || out->rank() < 1 || out->dim(0) != n) {
    error = Internal("backend returned " + out->DebugString() + " for a batch of " +
                     std::to_string(n) + " rows");
    failure = "bad_output";
  }
  if (!error.ok()) {
    log::Error(
        "batch failed",
        {{"thread", thread}, {"reason", failure}, {"requests", n}, {"error", error.message()}});
  }

  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.total_batches;
    counters_.batch_rows += n;
    switch (batch.trigger) {
      case Trigger::kFull:
        ++counters_.full_batches;
        break;
      case Trigger::kTimeout:
        ++counters_.timeout_batches;
        break;
      case Trigger::kDrain:
        ++counters_.drain_batches;
        break;
    }
    if (threw) ++counters_.backend_exceptions;
    if (error.ok()) {
      counters_.completed += n;
    } else {
      counters_.failed += n;
    }
  }

  // Each row is answered whatever the others do: a completion that throws is
  // counted, and one whose output cannot be copied gets that error instead.
  int64_t thrown = 0;
  int64_t copy_failed = 0;
  const TimePoint now = config_.now();
  const int64_t out_width = error.ok() ? out->numel() / n : 0;
  for (int64_t i = 0; i < n; ++i) {
    Entry& entry = batch.live[i];
    BatchTimings t;
    t.inference = elapsed;
    t.queue = Nanos(now - entry.enqueued) - elapsed;
    t.batches = 1;
    auto done = std::move(entry.item.done);
    auto answer = [&]() -> Result<std::vector<float>> {
      if (!error.ok()) return error;
      try {
        const float* src = out->data<float>() + i * out_width;
        return std::vector<float>(src, src + out_width);
      } catch (...) {
        std::string ignored;
        ++copy_failed;
        return internal::StatusFromException("copying the batch's output", &ignored);
      }
    };
    Result<std::vector<float>> result = answer();
    internal::RunCaught("a completion callback", thread, &thrown,
                        [&] { done(std::move(result), t); });
  }
  if (copy_failed > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.completed -= copy_failed;
    counters_.failed += copy_failed;
  }

  if (config_.on_batch) {
    BatchRecord record;
    record.rows = n;
    record.requests = n;
    record.inference = elapsed;
    record.ok = error.ok();
    record.failure = failure;
    internal::RunCaught("the batch observer", thread, &thrown, [&] { config_.on_batch(record); });
  }
  AddThrown(thrown);
}

void SizeDelayBatcher::Loop() {
  internal::SetCurrentThreadName(config_.thread_name);
  for (;;) {
    Batch batch;
    std::vector<std::pair<Entry, Status>> dead;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        std::chrono::nanoseconds wait;
        Trigger trigger = Trigger::kTimeout;
        const TimePoint now = config_.now();
        bool ready = false;
        if (!FormCaught(now, &wait, &trigger, dead, batch, &ready)) break;
        if (ready) break;
        if (!dead.empty()) break;  // answer them outside the lock, then look again
        if (stopping_) return;     // queue_ is empty
        if (wait.count() > 0) {
          cv_.wait_for(lock, wait);
        } else {
          cv_.wait(lock);
        }
      }
    }
    CompleteDead(dead);
    Run(batch);
  }
}

bool SizeDelayBatcher::FormCaught(TimePoint now, std::chrono::nanoseconds* wait, Trigger* trigger,
                                  std::vector<std::pair<Entry, Status>>& dead, Batch& batch,
                                  bool* ready) {
  try {
    *ready = ReadyLocked(now, wait, trigger, &dead);
    if (*ready) FormLocked(now, *trigger, dead, batch);
    return true;
  } catch (...) {
    // Both leave every row either in queue_ or in dead/batch (see their comments),
    // so nothing is lost: what was taken runs, the rest waits for the next round.
    std::string reason;
    const Status s = internal::StatusFromException("forming a batch", &reason);
    log::Error("batch forming failed", {{"thread", config_.thread_name}, {"error", s.message()}});
    return false;
  }
}

bool SizeDelayBatcher::RunOnce() {
  if (config_.start_thread) return false;
  std::lock_guard<std::mutex> run_lock(run_mu_);
  Batch batch;
  std::vector<std::pair<Entry, Status>> dead;
  bool ready = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::chrono::nanoseconds wait;
    Trigger trigger = Trigger::kTimeout;
    FormCaught(config_.now(), &wait, &trigger, dead, batch, &ready);
  }
  const bool did = ready || !dead.empty() || !batch.dead.empty();
  CompleteDead(dead);
  Run(batch);
  return did;
}

void SizeDelayBatcher::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (config_.start_thread && thread_id_ == std::this_thread::get_id()) {
    log::Warn("SizeDelayBatcher::Shutdown called on its inference thread; not joining");
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

TensorBatcherStats SizeDelayBatcher::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  TensorBatcherStats s = counters_;
  s.queue_requests = static_cast<int64_t>(queue_.size());
  s.avg_batch_size = s.total_batches > 0
                         ? static_cast<double>(s.batch_rows) / static_cast<double>(s.total_batches)
                         : 0.0;
  return s;
}

}  // namespace infermesh::worker
