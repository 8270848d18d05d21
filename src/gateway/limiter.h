// An adaptive concurrency limit on the gradient of round-trip times, as Envoy's
// adaptive-concurrency filter computes it (and Netflix's concurrency-limits "Gradient"):
// admit while in flight < limit; move the limit by how far the recent RTT sits above
// the upstream's minimum RTT.
//
//   AdaptiveLimiter limiter({});
//   if (!limiter.TryAcquire(now)) return Reply429(limiter.RetryAfterSeconds());
//   ... call ...
//   limiter.Release(rtt, now);            // Release(rtt, now, false): not a sample
//
// Two phases:
//   probe: the limit is pinned at min_limit until min_rtt_samples calls admitted during
//          the probe have completed; their median is the minimum RTT (the upstream's latency
//          without queueing). Probes start at once and then every min_rtt_interval, so a step
//          change in the upstream's own latency is learned.
//   run:   every update_interval, with the interval's median RTT as `sample`:
//            gradient = clamp(min_rtt x (1 + buffer) / sample, 0.5, 2)
//            limit    = clamp(limit x gradient + sqrt(limit), min_limit, max_limit)
//          so the limit settles where queueing adds about `buffer` to the RTT, halves at
//          most once per interval when the upstream slows, and grows back when it recovers.
// Time enters only through the arguments, so tests drive it with a simulated clock.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

namespace infermesh::gateway {

struct LimiterOptions {
  double initial_limit = 32;  // the first run phase starts here
  double min_limit = 4;       // also the concurrency of a probe
  double max_limit = 4096;
  double buffer = 0.1;
  std::chrono::milliseconds update_interval{100};
  std::chrono::milliseconds min_rtt_interval{60000};
  int min_rtt_samples = 50;
  // A probe that has not gathered min_rtt_samples by then ends with what it has (when
  // most calls never reach the upstream, cache hits say, samples come slowly): the limit
  // is never held at min_limit for long.
  std::chrono::milliseconds probe_timeout{2000};
};

class AdaptiveLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit AdaptiveLimiter(LimiterOptions options = {});

  // Admits one call, or refuses it (counted in rejected() unless `count` is false: a
  // caller that lets the request wait counts it with CountRejection() if it gives up).
  bool TryAcquire(Clock::time_point now, bool count = true);
  void CountRejection();
  // Ends an admitted call. `sample`: whether its RTT says something about the upstream
  // (false for calls refused for the client's own fault, such as a bad input).
  void Release(std::chrono::nanoseconds rtt, Clock::time_point now, bool sample = true);
  // One RTT sample without a call of its own: a caller whose admitted calls fan out (the
  // gateway's client requests into sub-batches, some answered from its cache) samples the
  // upstream calls and releases with sample = false.
  void Sample(std::chrono::nanoseconds rtt, Clock::time_point now);

  int limit() const;
  int in_flight() const;
  uint64_t rejected() const;
  bool probing() const;
  std::chrono::nanoseconds min_rtt() const;     // 0 before the first probe ends
  std::chrono::nanoseconds sample_rtt() const;  // the last interval's median
  // Seconds a refused client should wait: the time for the calls in flight to drain below
  // the limit at the recent RTT; at least 1, at most 60.
  int RetryAfterSeconds() const;

 private:
  void StartProbe(Clock::time_point now);  // under mu_
  void SampleLocked(std::chrono::nanoseconds rtt, Clock::time_point now);
  void EndProbe(Clock::time_point now);  // under mu_
  static double Median(std::vector<double>& v);

  LimiterOptions options_;
  mutable std::mutex mu_;
  double limit_;
  double run_limit_;  // the limit to return to after a probe
  bool probing_ = false;
  bool probe_saturated_ = false;  // the probe had min_limit calls in flight at some point
  int in_flight_ = 0;
  uint64_t rejected_ = 0;
  double min_rtt_ns_ = 0, sample_rtt_ns_ = 0;
  std::vector<double> samples_;
  Clock::time_point interval_end_{}, next_probe_{}, probe_started_{};
};

}  // namespace infermesh::gateway
