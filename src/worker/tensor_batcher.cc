#include "worker/tensor_batcher.h"

#include <algorithm>
#include <cstring>
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
  *wait = std::chrono::nanoseconds(0);
  // Drop dead rows first so they neither count toward a full batch nor hold the timer.
  std::deque<Entry> kept;
  bool any_dead = false;
  for (Entry& e : queue_) {
    if (!internal::CheckAlive(e.item.deadline, e.item.cancel, now).ok()) {
      any_dead = true;
      break;
    }
  }
  if (any_dead) {
    for (Entry& e : queue_) {
      Status alive = internal::CheckAlive(e.item.deadline, e.item.cancel, now);
      if (alive.ok()) {
        kept.push_back(std::move(e));
      } else {
        dead->emplace_back(std::move(e), std::move(alive));
      }
    }
    queue_.swap(kept);
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

SizeDelayBatcher::Batch SizeDelayBatcher::FormLocked(TimePoint /*now*/, Trigger trigger,
                                                     std::vector<std::pair<Entry, Status>> dead) {
  Batch batch;
  batch.trigger = trigger;
  batch.dead = std::move(dead);
  const size_t width = queue_.front().item.input.size();
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
  return batch;
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
  const TimePoint now = config_.now();
  for (auto& [entry, status] : dead) {
    BatchTimings t;
    t.queue = Nanos(now - entry.enqueued);
    auto done = std::move(entry.item.done);
    done(std::move(status), t);
  }
  dead.clear();
}

void SizeDelayBatcher::Run(Batch& batch) {
  CompleteDead(batch.dead);
  if (batch.live.empty()) return;

  const auto n = static_cast<int64_t>(batch.live.size());
  const auto width = static_cast<int64_t>(batch.live.front().item.input.size());
  runtime::Tensor input = runtime::Tensor::Empty(runtime::DataType::kFloat32, {n, width});
  float* dst = input.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float>& row = batch.live[i].item.input;
    std::memcpy(dst + i * width, row.data(), static_cast<size_t>(width) * sizeof(float));
    std::vector<float>().swap(row);  // the tensor holds the data now
  }

  const TimePoint start = config_.now();
  Result<runtime::Tensor> out = backend_(input);
  const auto elapsed = Nanos(config_.now() - start);

  Status error;
  if (!out.ok()) {
    error = out.status();
  } else if (out->dtype() != runtime::DataType::kFloat32 || out->rank() < 1 || out->dim(0) != n) {
    error = Internal("backend returned " + out->DebugString() + " for a batch of " +
                     std::to_string(n) + " rows");
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
    if (error.ok()) {
      counters_.completed += n;
    } else {
      counters_.failed += n;
    }
  }

  const TimePoint now = config_.now();
  const int64_t out_width = error.ok() ? out->numel() / n : 0;
  for (int64_t i = 0; i < n; ++i) {
    Entry& entry = batch.live[i];
    BatchTimings t;
    t.inference = elapsed;
    t.queue = Nanos(now - entry.enqueued) - elapsed;
    t.batches = 1;
    auto done = std::move(entry.item.done);
    if (error.ok()) {
      const float* src = out->data<float>() + i * out_width;
      done(std::vector<float>(src, src + out_width), t);
    } else {
      done(error, t);
    }
  }

  if (config_.on_batch) {
    BatchRecord record;
    record.rows = n;
    record.requests = n;
    record.inference = elapsed;
    record.ok = error.ok();
    config_.on_batch(record);
  }
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
        if (ReadyLocked(now, &wait, &trigger, &dead)) {
          batch = FormLocked(now, trigger, std::move(dead));
          dead.clear();
          break;
        }
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

bool SizeDelayBatcher::RunOnce() {
  if (config_.start_thread) return false;
  std::lock_guard<std::mutex> run_lock(run_mu_);
  Batch batch;
  std::vector<std::pair<Entry, Status>> dead;
  bool ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::chrono::nanoseconds wait;
    Trigger trigger = Trigger::kTimeout;
    const TimePoint now = config_.now();
    ready = ReadyLocked(now, &wait, &trigger, &dead);
    if (ready) {
      batch = FormLocked(now, trigger, std::move(dead));
      dead.clear();
    }
  }
  const bool did = ready || !dead.empty();
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
