#include "gateway/breaker.h"

#include <gtest/gtest.h>

namespace infermesh::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = CircuitBreaker::Clock;

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresOnly) {
  CircuitBreaker b;
  const auto t = Clock::time_point{} + 1h;
  for (int i = 0; i < 4; ++i) b.Record(Outcome::kFailure, t);
  b.Record(Outcome::kSuccess, t);  // resets the streak
  for (int i = 0; i < 4; ++i) b.Record(Outcome::kFailure, t);
  EXPECT_TRUE(b.Allow(t));
  EXPECT_EQ(b.snapshot(t).state, BreakerState::kClosed);
  b.Record(Outcome::kFailure, t);
  EXPECT_EQ(b.snapshot(t).state, BreakerState::kOpen);
  EXPECT_FALSE(b.Allow(t + 29s));
  EXPECT_FALSE(b.Available(t + 29s));
  EXPECT_EQ(b.snapshot(t).opened, 1u);
}

TEST(CircuitBreaker, BackpressureIsNeitherFailureNorSuccess) {
  CircuitBreaker b;
  const auto t = Clock::time_point{} + 1h;
  for (int i = 0; i < 100; ++i) b.Record(Outcome::kBackpressure, t);
  EXPECT_EQ(b.snapshot(t).state, BreakerState::kClosed);
  for (int i = 0; i < 4; ++i) b.Record(Outcome::kFailure, t);
  b.Record(Outcome::kBackpressure, t);  // does not reset the streak either
  b.Record(Outcome::kFailure, t);
  EXPECT_EQ(b.snapshot(t).state, BreakerState::kOpen);
}

TEST(CircuitBreaker, HalfOpenAdmitsOneProbeAndClosesAfterTwoSuccesses) {
  CircuitBreaker b;
  const auto t = Clock::time_point{} + 1h;
  for (int i = 0; i < 5; ++i) b.Record(Outcome::kFailure, t);
  const auto later = t + 30s;
  EXPECT_EQ(b.snapshot(later).state, BreakerState::kHalfOpen);
  EXPECT_TRUE(b.Available(later));
  EXPECT_TRUE(b.Allow(later));
  EXPECT_FALSE(b.Allow(later));  // one probe at a time
  EXPECT_FALSE(b.Available(later));
  b.Record(Outcome::kSuccess, later);
  EXPECT_EQ(b.snapshot(later).state, BreakerState::kHalfOpen);
  EXPECT_TRUE(b.Allow(later));
  b.Record(Outcome::kSuccess, later);
  EXPECT_EQ(b.snapshot(later).state, BreakerState::kClosed);
  EXPECT_TRUE(b.Allow(later));
}

TEST(CircuitBreaker, FailedProbeReopensForAnotherPeriod) {
  BreakerOptions o;
  o.failure_threshold = 2;
  o.open_timeout = 10s;
  CircuitBreaker b(o);
  const auto t = Clock::time_point{} + 1h;
  b.Record(Outcome::kFailure, t);
  b.Record(Outcome::kFailure, t);
  ASSERT_TRUE(b.Allow(t + 10s));
  b.Record(Outcome::kFailure, t + 11s);
  EXPECT_EQ(b.snapshot(t + 11s).state, BreakerState::kOpen);
  EXPECT_FALSE(b.Allow(t + 20s));
  EXPECT_TRUE(b.Allow(t + 21s));
  EXPECT_EQ(b.snapshot(t + 21s).opened, 2u);
}

TEST(CircuitBreaker, StateNames) {
  EXPECT_EQ(BreakerStateName(BreakerState::kClosed), "closed");
  EXPECT_EQ(BreakerStateName(BreakerState::kOpen), "open");
  EXPECT_EQ(BreakerStateName(BreakerState::kHalfOpen), "half_open");
}

// A call admitted while the breaker was closed, answering after it went half-open, is not
// one of the probes: its outcome neither closes nor reopens it.
TEST(CircuitBreaker, CallsFromBeforeHalfOpenAreNotProbes) {
  BreakerOptions o;
  o.failure_threshold = 2;
  o.success_threshold = 1;
  CircuitBreaker b(o);
  const auto t = Clock::time_point{} + 1h;
  uint64_t old_epoch = 0, probe_epoch = 0;
  ASSERT_TRUE(b.Allow(t, &old_epoch));  // a slow call, admitted while closed
  b.Record(Outcome::kFailure, t);
  b.Record(Outcome::kFailure, t);  // open
  ASSERT_FALSE(b.Allow(t + 1s));
  ASSERT_TRUE(b.Allow(t + 31s, &probe_epoch));  // half-open: the probe
  EXPECT_NE(old_epoch, probe_epoch);
  b.Record(Outcome::kSuccess, t + 31s, old_epoch);  // the slow call's success: stale
  EXPECT_EQ(b.snapshot(t + 31s).state, BreakerState::kHalfOpen);
  EXPECT_FALSE(b.Allow(t + 31s));                   // the probe is still out
  b.Record(Outcome::kFailure, t + 31s, old_epoch);  // a stale failure does not reopen it
  EXPECT_EQ(b.snapshot(t + 31s).state, BreakerState::kHalfOpen);
  b.Record(Outcome::kSuccess, t + 32s, probe_epoch);  // the probe closes it
  EXPECT_EQ(b.snapshot(t + 32s).state, BreakerState::kClosed);
  EXPECT_EQ(b.snapshot(t + 32s).successes, 2u);
}

}  // namespace
}  // namespace infermesh::gateway
