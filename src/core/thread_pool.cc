#include "core/thread_pool.h"

#include "core/log.h"

#include <pthread.h>

#include <algorithm>
#include <latch>

namespace infermesh {

int HardwareThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(std::string name, int threads)
    : name_(std::move(name)), parallelism_(std::max(threads, 1)) {
  int workers = std::max(parallelism_ - 1, 1);
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() { Shutdown(); }

void ThreadPool::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

bool ThreadPool::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void ThreadPool::WorkerLoop(int index) {
  std::string thread_name = name_.substr(0, 11) + "-" + std::to_string(index);
  pthread_setname_np(pthread_self(), thread_name.substr(0, 15).c_str());
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    active_.fetch_add(1, std::memory_order_relaxed);
    // A throwing task must not take the process down: whatever it owned (a
    // Responder, say) is released by unwinding, and the pool goes on.
    try {
      task();
    } catch (const std::exception& e) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      log::Error("thread pool task threw", {{"pool", name_}, {"what", e.what()}});
    } catch (...) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      log::Error("thread pool task threw", {{"pool", name_}, {"what", "unknown"}});
    }
    active_.fetch_sub(1, std::memory_order_relaxed);
    completed_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t max_chunks = (n + grain - 1) / grain;
  int64_t chunks = std::min<int64_t>(parallelism_, max_chunks);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  // Chunks are claimed dynamically so a slow thread does not hold the others up.
  // Helpers reference this frame (next, fn, the latch), so the caller must not
  // leave, by return or by exception, before every helper has counted down: a chunk
  // that throws records the first exception, stops further chunks, and the caller
  // rethrows it after the wait.
  std::atomic<int64_t> next{0};
  std::mutex error_mu;
  std::exception_ptr error;  // guarded by error_mu
  int64_t step = (n + chunks - 1) / chunks;
  auto run_chunks = [&]() noexcept {
    try {
      for (;;) {
        int64_t c = next.fetch_add(1, std::memory_order_relaxed);
        if (c >= chunks) return;
        int64_t b = c * step;
        int64_t e = std::min(n, b + step);
        if (b < e) fn(b, e);
      }
    } catch (...) {
      next.store(chunks, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
    }
  };
  int64_t helpers = chunks - 1;
  std::latch done(helpers);
  for (int64_t i = 0; i < helpers; ++i) {
    bool queued = false;
    try {
      queued = Submit([&] {
        run_chunks();
        done.count_down();
      });
    } catch (...) {  // no memory to queue it: the caller runs that share itself
    }
    if (!queued) done.count_down();
  }
  run_chunks();
  done.wait();
  if (error) std::rethrow_exception(error);
}

ThreadPoolStats ThreadPool::Stats() const {
  ThreadPoolStats s;
  s.name = name_;
  s.workers = static_cast<int>(workers_.size());
  s.active = active_.load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.queued = static_cast<int64_t>(queue_.size());
  }
  s.completed = completed_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace infermesh
