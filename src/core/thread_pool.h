// Named thread pools with statistics, and a blocking ParallelFor for intra-op work.
//
//   ThreadPool pool("tokenize", 2);
//   pool.Submit([] { ... });                       // fire and forget
//   pool.ParallelFor(n, 64, [&](int64_t b, int64_t e) { ... });  // caller helps
//
// A pool of size 1 (or 0) runs ParallelFor inline on the caller, so the total
// threads used by one ParallelFor is the pool size, with the caller counted as one.
// The destructor drains queued tasks and joins (a gate: stop, drain, exit).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace infermesh {

struct ThreadPoolStats {
  std::string name;
  int workers = 0;
  int64_t active = 0;     // tasks running now
  int64_t queued = 0;     // tasks waiting
  int64_t completed = 0;  // tasks finished since start (failed ones included)
  int64_t failed = 0;     // Submit() tasks that threw; the pool caught, logged and went on
};

class ThreadPool {
 public:
  // `threads` is the total parallelism of ParallelFor; Submit() runs on
  // max(threads - 1, 1) background workers... unless threads <= 1, in which case
  // one background worker exists for Submit() and ParallelFor runs inline.
  ThreadPool(std::string name, int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues a task. Returns false if the pool is shutting down.
  bool Submit(std::function<void()> task);

  // Splits [0, n) into chunks of at least `grain` and runs fn(begin, end) on the
  // pool and the calling thread; returns when all chunks finish. If fn throws, the
  // remaining chunks are skipped and the first exception is rethrown on the caller
  // once no chunk is running (so none outlives the caller's frame).
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  int parallelism() const { return parallelism_; }
  const std::string& name() const { return name_; }
  ThreadPoolStats Stats() const;

  // Stops accepting work, finishes queued tasks, joins workers. Idempotent.
  void Shutdown();

 private:
  void WorkerLoop(int index);

  std::string name_;
  int parallelism_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> completed_{0};
  std::atomic<int64_t> failed_{0};
  std::vector<std::thread> workers_;
};

// Default size for a pool: the number of online cores (at least 1).
int HardwareThreads();

}  // namespace infermesh
