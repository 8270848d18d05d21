// A circuit breaker per worker, with time passed in (so tests control it).
//
//   CircuitBreaker b({});                       // 5 failures, 30 s open, 2 successes
//   if (b.Allow(now)) { send; b.Record(Outcome::kSuccess / kFailure / kBackpressure, now); }
//
// closed ──(failure_threshold consecutive failures)──▶ open
// open ──(open_timeout elapsed; the next Allow)──▶ half-open: at most half_open_probes
//   calls at a time; success_threshold successes close it, one failure reopens it.
// A 429 (kBackpressure) is the worker saying "slow down", not "broken": it neither
// counts as a failure nor resets the count; the router lowers the worker's weight instead.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>

namespace infermesh::gateway {

struct BreakerOptions {
  int failure_threshold = 5;
  std::chrono::milliseconds open_timeout{30000};
  int success_threshold = 2;
  int half_open_probes = 1;  // calls admitted at once while half-open
};

enum class BreakerState { kClosed, kOpen, kHalfOpen };
std::string_view BreakerStateName(BreakerState s);  // "closed", "open", "half_open"

enum class Outcome { kSuccess, kFailure, kBackpressure };

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  explicit CircuitBreaker(BreakerOptions options = {}) : options_(options) {}

  // Whether a call may go now; a half-open breaker counts the admitted probe, which the
  // caller must finish with Record(). `epoch` (optional) receives the breaker's half-open
  // epoch, for Record: a call admitted before the breaker last went half-open is not
  // one of its probes, and its outcome must not close or reopen it.
  bool Allow(Clock::time_point now, uint64_t* epoch = nullptr);
  // Whether a call could go now, without admitting one (for routing decisions).
  bool Available(Clock::time_point now) const;
  // `epoch`: what Allow gave the call; a call from an earlier epoch that ends while the
  // breaker is half-open is only counted in the totals. Without it every outcome counts.
  void Record(Outcome outcome, Clock::time_point now, std::optional<uint64_t> epoch = {});

  struct Snapshot {
    BreakerState state = BreakerState::kClosed;
    int consecutive_failures = 0;
    uint64_t failures = 0;   // total
    uint64_t successes = 0;  // total
    uint64_t opened = 0;     // times it opened
  };
  Snapshot snapshot(Clock::time_point now) const;

 private:
  BreakerState StateAt(Clock::time_point now) const;  // under mu_

  BreakerOptions options_;
  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;
  Clock::time_point opened_at_{};
  int consecutive_failures_ = 0;
  int half_open_successes_ = 0;
  int half_open_in_flight_ = 0;
  uint64_t epoch_ = 0;  // times it went half-open
  uint64_t failures_ = 0, successes_ = 0, opened_ = 0;
};

}  // namespace infermesh::gateway
