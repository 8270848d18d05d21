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

}  // namespace
}  // namespace infermesh::gateway
