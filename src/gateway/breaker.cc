#include "gateway/breaker.h"

namespace infermesh::gateway {

std::string_view BreakerStateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

BreakerState CircuitBreaker::StateAt(Clock::time_point now) const {
  if (state_ == BreakerState::kOpen && now - opened_at_ >= options_.open_timeout) {
    return BreakerState::kHalfOpen;
  }
  return state_;
}

bool CircuitBreaker::Available(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  switch (StateAt(now)) {
    case BreakerState::kClosed:
      return true;
    case BreakerState::kOpen:
      return false;
    case BreakerState::kHalfOpen:
      return state_ == BreakerState::kOpen || half_open_in_flight_ < options_.half_open_probes;
  }
  return false;
}

bool CircuitBreaker::Allow(Clock::time_point now, uint64_t* epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  const BreakerState s = StateAt(now);
  if (s == BreakerState::kOpen) return false;
  if (s == BreakerState::kHalfOpen && state_ == BreakerState::kOpen) {  // the open period ended
    state_ = BreakerState::kHalfOpen;
    half_open_successes_ = 0;
    half_open_in_flight_ = 0;
    ++epoch_;
  }
  if (epoch != nullptr) *epoch = epoch_;
  if (s == BreakerState::kClosed) return true;
  if (half_open_in_flight_ >= options_.half_open_probes) return false;
  ++half_open_in_flight_;
  return true;
}

void CircuitBreaker::Record(Outcome outcome, Clock::time_point now, std::optional<uint64_t> epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == BreakerState::kHalfOpen && epoch && *epoch != epoch_) {
    // Admitted before this half-open period: not a probe.
    if (outcome != Outcome::kBackpressure)
      outcome == Outcome::kSuccess ? ++successes_ : ++failures_;
    return;
  }
  if (outcome == Outcome::kBackpressure) {
    if (state_ == BreakerState::kHalfOpen && half_open_in_flight_ > 0) --half_open_in_flight_;
    return;
  }
  const bool ok = outcome == Outcome::kSuccess;
  ok ? ++successes_ : ++failures_;
  switch (state_) {
    case BreakerState::kClosed:
      consecutive_failures_ = ok ? 0 : consecutive_failures_ + 1;
      if (consecutive_failures_ >= options_.failure_threshold) {
        state_ = BreakerState::kOpen;
        opened_at_ = now;
        ++opened_;
      }
      break;
    case BreakerState::kHalfOpen:
      if (half_open_in_flight_ > 0) --half_open_in_flight_;
      if (!ok) {
        state_ = BreakerState::kOpen;
        opened_at_ = now;
        ++opened_;
        consecutive_failures_ = options_.failure_threshold;
      } else if (++half_open_successes_ >= options_.success_threshold) {
        state_ = BreakerState::kClosed;
        consecutive_failures_ = 0;
      }
      break;
    case BreakerState::kOpen:
      // A call admitted before the breaker opened has finished; only counted.
      break;
  }
}

CircuitBreaker::Snapshot CircuitBreaker::snapshot(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.state = StateAt(now);
  s.consecutive_failures = consecutive_failures_;
  s.failures = failures_;
  s.successes = successes_;
  s.opened = opened_;
  return s;
}

}  // namespace infermesh::gateway
