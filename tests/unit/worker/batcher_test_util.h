// Test helpers for the batcher tests: a hand-driven clock and a gate that holds a
// stub backend until the test lets it go.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "worker/batcher_common.h"

namespace infermesh::worker::testing {

// Time moves only when the test says so.
class FakeClock {
 public:
  TimePoint Now() const { return TimePoint(std::chrono::nanoseconds(ns_.load())); }
  void Advance(std::chrono::nanoseconds d) { ns_.fetch_add(d.count()); }
  NowFn Fn() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> ns_{1'000'000'000};
};

// The backend calls Enter() and blocks until the test calls Open(); the test can
// wait until the backend has entered. Waits are bounded so a bug fails, not hangs.
class Gate {
 public:
  void Enter() {
    std::unique_lock<std::mutex> lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return open_; });
  }
  bool WaitEntered(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return entered_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
};

// Counts down to zero; Wait() returns false after 60 s.
class CountDown {
 public:
  explicit CountDown(int n) : n_(n) {}
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--n_ <= 0) cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return n_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
};

}  // namespace infermesh::worker::testing
