// Outlier ejection by failure rate, as Envoy's failure-percentage detector: a worker whose
// calls fail too often over an interval is taken out of the ring for a while, longer each
// time it is ejected again, and never more than a share of the workers at once.
//
//   OutlierDetector d({});
//   d.Record("10.0.0.1:8080", /*failed=*/true, now);   // 429s are not recorded
//   if (d.Ejected("10.0.0.1:8080", now)) skip it;
//
// Every `interval` (checked on Record and Ejected), each worker with at least
// min_requests calls in the interval and a failure share >= failure_rate is ejected for
// base_ejection x (times ejected so far + 1), at most max_ejection, unless that would
// put more than max_ejected_fraction of the known workers out (at least one may always
// be ejected when two or more are known). Ejected workers return when their time is up;
// the count of past ejections decays by one for each interval without an ejection.
// Complements the circuit breaker, which reacts to consecutive failures within seconds;
// this catches a worker failing, say, every other call. Time comes in through the
// arguments. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace infermesh::gateway {

struct OutlierOptions {
  double failure_rate = 0.5;
  int min_requests = 20;
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds base_ejection{30000};
  std::chrono::milliseconds max_ejection{300000};
  double max_ejected_fraction = 0.5;
};

class OutlierDetector {
 public:
  using Clock = std::chrono::steady_clock;
  explicit OutlierDetector(OutlierOptions options = {}) : options_(options) {}

  void Record(const std::string& member, bool failed, Clock::time_point now);
  bool Ejected(const std::string& member, Clock::time_point now);
  // Forgets a member that left the pool.
  void Remove(const std::string& member);

  size_t ejected_count(Clock::time_point now);
  uint64_t ejections_total() const;

 private:
  struct Member {
    uint64_t calls = 0, failures = 0;  // this interval
    int times_ejected = 0;
    Clock::time_point ejected_until{};
  };
  void MaybeEvaluate(Clock::time_point now);  // under mu_

  OutlierOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Member> members_;
  Clock::time_point interval_end_{};
  bool started_ = false;
  uint64_t ejections_ = 0;
};

}  // namespace infermesh::gateway
