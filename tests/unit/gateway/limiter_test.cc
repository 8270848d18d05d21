// The adaptive limit against a simulated upstream, on a simulated clock: C requests run
// in parallel at service time S each; beyond C they share it, so a request admitted with
// k in flight takes S x max(1, k / C). 200 closed-loop clients retry every millisecond.
#include "gateway/limiter.h"

#include <cstdio>
#include <map>

#include <gtest/gtest.h>

namespace infermesh::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = AdaptiveLimiter::Clock;

struct Upstream {
  int capacity = 16;
  std::chrono::milliseconds service{10};
};

class Sim {
 public:
  explicit Sim(LimiterOptions o) : limiter(o) {}

  // Runs for `d`; returns the mean limit and mean RTT (ms) over its last `tail`.
  std::pair<double, double> Run(std::chrono::milliseconds d, const Upstream& up,
                                std::chrono::milliseconds tail) {
    const auto end = now + d;
    double limit_sum = 0, rtt_sum = 0;
    int64_t ticks = 0, rtts = 0;
    while (now < end) {
      // Completions due now.
      while (!running.empty() && running.begin()->first <= now) {
        auto [finish, start] = *running.begin();
        running.erase(running.begin());
        limiter.Release(finish - start, now);
        if (now >= end - tail) {
          rtt_sum += std::chrono::duration<double, std::milli>(finish - start).count();
          ++rtts;
        }
      }
      // Idle clients try; admitted ones start now.
      const int idle = kClients - static_cast<int>(running.size());
      for (int i = 0; i < idle; ++i) {
        if (!limiter.TryAcquire(now)) break;
        const int k = static_cast<int>(running.size()) + 1;
        const auto rtt = up.service * std::max(1.0, double(k) / up.capacity);
        running.emplace(now + std::chrono::duration_cast<Clock::duration>(rtt), now);
      }
      if (now >= end - tail) {
        limit_sum += limiter.limit();
        ++ticks;
      }
      now += 1ms;
    }
    return {limit_sum / std::max<int64_t>(ticks, 1), rtt_sum / std::max<int64_t>(rtts, 1)};
  }

  static constexpr int kClients = 200;
  AdaptiveLimiter limiter;
  Clock::time_point now = Clock::time_point{} + 1h;
  std::multimap<Clock::time_point, Clock::time_point> running;  // finish -> start
};

double Ms(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

LimiterOptions TestOptions() {
  LimiterOptions o;
  o.min_rtt_interval = 5s;
  o.min_rtt_samples = 20;
  return o;
}

TEST(AdaptiveLimiter, ConvergesNearCapacityFollowsASlowdownAndRecovers) {
  Sim sim(TestOptions());
  // Healthy: 16 in parallel. Without a limit 200 would queue (RTT 125 ms).
  auto [healthy_limit, healthy_rtt] = sim.Run(20s, {16, 10ms}, 5s);
  EXPECT_GE(healthy_limit, 16);
  EXPECT_LE(healthy_limit, 40);
  EXPECT_LT(healthy_rtt, 30) << "queueing was not kept down";
  EXPECT_NEAR(Ms(sim.limiter.min_rtt()), 10, 1);

  // The upstream slows to a quarter of its capacity: the limit follows it down.
  auto [slow_limit, slow_rtt] = sim.Run(20s, {4, 10ms}, 5s);
  EXPECT_LE(slow_limit, 12);
  EXPECT_GE(slow_limit, 4);
  EXPECT_LT(slow_rtt, 30);

  // It recovers: the limit grows back.
  auto [back_limit, back_rtt] = sim.Run(20s, {16, 10ms}, 5s);
  EXPECT_GE(back_limit, 16);
  EXPECT_LE(back_limit, 40);
  EXPECT_LT(back_rtt, 30);
  EXPECT_GT(sim.limiter.rejected(), 0u);
  std::printf("limit / RTT (ms): healthy %.1f / %.1f, slowed %.1f / %.1f, recovered %.1f / %.1f\n",
              healthy_limit, healthy_rtt, slow_limit, slow_rtt, back_limit, back_rtt);
}

TEST(AdaptiveLimiter, LearnsANewMinimumRttAtTheNextProbe) {
  Sim sim(TestOptions());
  sim.Run(10s, {16, 10ms}, 1s);
  // Every request now takes 4x as long, capacity unchanged: the limit dips while the
  // old minimum holds, then settles where it was once a probe measures 40 ms.
  auto [limit, rtt] = sim.Run(20s, {16, 40ms}, 5s);
  EXPECT_NEAR(Ms(sim.limiter.min_rtt()), 40, 4);
  EXPECT_GE(limit, 16);
  EXPECT_LE(limit, 40);
  EXPECT_LT(rtt, 4 * 30);
  std::printf("after the step: limit %.1f, RTT %.1f ms, min RTT %.1f ms\n", limit, rtt,
              Ms(sim.limiter.min_rtt()));
}

TEST(AdaptiveLimiter, ProbesAtTheMinimumAndRefusesBeyondTheLimit) {
  LimiterOptions o;
  o.min_limit = 3;
  o.min_rtt_samples = 2;
  AdaptiveLimiter l(o);
  const auto t = Clock::time_point{} + 1h;
  EXPECT_TRUE(l.probing());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(l.TryAcquire(t));
  EXPECT_FALSE(l.TryAcquire(t));
  EXPECT_EQ(l.rejected(), 1u);
  EXPECT_GE(l.RetryAfterSeconds(), 1);
  l.Release(5ms, t + 10ms);                    // calls admitted since the probe began (at t)
  l.Release(7ms, t + 10ms, /*sample=*/false);  // not a sample: the probe needs one more
  EXPECT_TRUE(l.probing());
  l.Release(9ms, t + 10ms);
  EXPECT_FALSE(l.probing());
  EXPECT_EQ(l.limit(), 32);  // back to the run limit
  EXPECT_EQ(l.in_flight(), 0);
}

// The gateway samples its upstream calls (Sample) and releases client requests without a
// sample, so requests its cache answers never pull the minimum RTT down.
TEST(AdaptiveLimiter, SamplesApartFromReleases) {
  LimiterOptions o;
  o.min_limit = 4;
  o.min_rtt_samples = 2;
  AdaptiveLimiter l(o);
  const auto t = Clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(l.TryAcquire(t));
  l.Release(100us, t, /*sample=*/false);  // a cache hit
  l.Sample(20ms, t + 20ms);
  EXPECT_TRUE(l.probing());
  l.Sample(22ms, t + 22ms);
  EXPECT_FALSE(l.probing());
  EXPECT_EQ(l.in_flight(), 2);  // samples are not releases
  EXPECT_NEAR(Ms(l.min_rtt()), 22, 0.5);
}

// A probe that gets too few samples (almost every call a cache hit) ends at its timeout:
// the limit is not held at the minimum.
TEST(AdaptiveLimiter, AProbeWithoutSamplesEndsAtItsTimeout) {
  LimiterOptions o;
  o.min_limit = 2;
  o.initial_limit = 40;
  o.min_rtt_samples = 50;
  o.probe_timeout = 500ms;
  AdaptiveLimiter l(o);
  auto t = Clock::time_point{} + 1h;
  ASSERT_TRUE(l.TryAcquire(t));
  ASSERT_TRUE(l.TryAcquire(t));
  EXPECT_FALSE(l.TryAcquire(t));  // probing at 2
  l.Release(1ms, t, false);
  l.Release(1ms, t, false);
  t += 600ms;
  EXPECT_TRUE(l.TryAcquire(t));
  EXPECT_FALSE(l.probing());
  EXPECT_EQ(l.limit(), 40);
  EXPECT_EQ(l.min_rtt().count(), 0);  // nothing measured yet
  // The first samples then set the minimum, without lowering the limit.
  for (int i = 0; i < 50; ++i) l.Sample(10ms, t + 10ms);
  EXPECT_NEAR(Ms(l.min_rtt()), 10, 0.5);
  EXPECT_EQ(l.limit(), 40);
}

// A probe during a quiet spell (fewer calls than the probe's concurrency) measures an
// idle upstream; for one that batches, that minimum would pin the next burst to the floor.
// It keeps the minimum measured at the probe's concurrency.
TEST(AdaptiveLimiter, AnIdleProbeKeepsTheMinimumMeasuredUnderLoad) {
  LimiterOptions o;
  o.min_limit = 2;
  o.min_rtt_samples = 2;
  o.min_rtt_interval = 10s;
  AdaptiveLimiter l(o);
  auto t = Clock::time_point{} + 1h;
  // The first probe, saturated: two calls in flight at 40 ms.
  ASSERT_TRUE(l.TryAcquire(t));
  ASSERT_TRUE(l.TryAcquire(t));
  l.Release(40ms, t + 40ms);
  l.Release(40ms, t + 40ms);
  ASSERT_FALSE(l.probing());
  EXPECT_NEAR(Ms(l.min_rtt()), 40, 0.5);
  // Ten seconds later, a quiet spell: one call at a time, 5 ms each.
  t += 11s;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(l.TryAcquire(t));
    ASSERT_TRUE(l.probing());
    l.Release(5ms, t + 5ms);
    t += 10ms;
  }
  EXPECT_FALSE(l.probing());
  EXPECT_NEAR(Ms(l.min_rtt()), 40, 0.5);  // not 5
}

}  // namespace
}  // namespace infermesh::gateway
