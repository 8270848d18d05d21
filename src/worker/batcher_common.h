// Types shared by the worker's batchers (TokenBudgetBatcher, SizeDelayBatcher):
// the time source, deadlines and cancellation, and the timings a completion reports.
//
// Every queued request carries a deadline and an optional cancel flag. A batcher
// checks both when it takes the request into a batch, before compute: an expired
// request completes with DeadlineExceeded, a cancelled one with Cancelled, and
// neither reaches the backend.
//
// Failures: the backend, the completions and the observer are caller code running on
// the inference thread. An exception from any of them is caught at the batch (see
// internal::StatusFromException): the batch's requests are answered with Internal
// naming it, the failure is counted, and the thread goes on to the next batch. It is
// the one place exceptions are caught on the data path; nothing else here throws.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <string>

#include "core/log.h"
#include "core/status.h"

namespace infermesh::worker {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

// The batchers read time only through this function, so tests can drive it by
// hand (see RunOnce() in each batcher for deterministic stepping).
using NowFn = std::function<TimePoint()>;
inline NowFn SystemNow() {
  return [] { return SteadyClock::now(); };
}

// Set to true by whoever notices the client went away (the HTTP layer); read by
// the inference thread. Null means "never cancelled".
using CancelFlag = std::shared_ptr<const std::atomic<bool>>;

// A deadline far enough away to mean "none".
inline constexpr TimePoint kNoDeadline = TimePoint::max();

// What a completion reports, for TEI's x-queue-time and x-inference-time headers.
// queue + inference == time from Enqueue() to completion (measured with the
// batcher's clock). A request split across several batches sums the backend time
// of each batch that carried part of it into `inference`.
struct BatchTimings {
  std::chrono::nanoseconds queue{0};
  std::chrono::nanoseconds inference{0};
  int batches = 0;  // batches that carried part of this request (0 if it never ran)
};

// One formed batch, reported to an observer (metrics: batch-size and batch-token
// histograms). Called on the inference thread after the batch completes.
struct BatchRecord {
  int64_t rows = 0;      // inputs sent to the backend
  int64_t tokens = 0;    // real (unpadded) tokens; 0 for tensor batches
  int64_t requests = 0;  // client requests with at least one row in the batch
  std::chrono::nanoseconds inference{0};
  bool ok = true;  // false when the batch's requests were answered with an error
  // Why, when !ok (a metrics label): "backend_error" (the backend returned an error),
  // "bad_output" (its tensor does not match the batch), "out_of_memory" (std::bad_alloc
  // on the inference thread) or "exception" (anything else it threw).
  std::string failure;
};
using BatchObserver = std::function<void(const BatchRecord&)>;

namespace internal {

// OK if the request should still be computed; DeadlineExceeded or Cancelled if not.
inline Status CheckAlive(TimePoint deadline, const CancelFlag& cancel, TimePoint now) {
  if (cancel && cancel->load(std::memory_order_acquire)) {
    return Status(StatusCode::kCancelled, "client went away before compute");
  }
  if (now >= deadline) return DeadlineExceeded("deadline passed while queued");
  return OkStatus();
}

// Call only inside a catch block: turns the exception being handled into an
// Internal status that names it and `during` ("inference"), and sets *reason to the
// BatchRecord::failure label. Internal maps to 500 on every route (the one mapping in
// src/http/api/api_error.h).
inline Status StatusFromException(const std::string& during, std::string* reason) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    *reason = "out_of_memory";
    return Internal("out of memory during " + during + " (std::bad_alloc)");
  } catch (const std::exception& e) {
    *reason = "exception";
    return Internal(during + " failed with an exception: " + e.what());
  } catch (...) {
    *reason = "exception";
    return Internal(during + " failed with an exception of unknown type");
  }
}

// Runs a completion callback or an observer, which must not stop the batch: an
// exception is logged and counted in *thrown, and the caller goes on with the
// next one. Returns false if it threw.
template <typename Fn>
bool RunCaught(const char* what, const std::string& thread, int64_t* thrown, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (...) {
    std::string reason;
    const Status s = StatusFromException(what, &reason);
    ++*thrown;
    log::Error("caught on the inference thread", {{"thread", thread}, {"error", s.message()}});
    return false;
  }
}

// Names the calling thread (Linux keeps at most 15 characters).
inline void SetCurrentThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace internal
}  // namespace infermesh::worker
