// Pieces of `infermesh bench` that hold no sockets, so they are unit-tested alone:
// the open-loop schedule (when each request is meant to start) and the latency
// recorder (exact percentiles over every recorded sample).
//
//   OpenLoopSchedule schedule(start_ns, /*rate=*/500.0);
//   int64_t due = schedule.IntendedStartNs(i);  // request i starts here, sent or not
//   LatencyRecorder latencies;
//   latencies.Record(done_ns - due);             // from the intended start: no
//   double p99 = latencies.PercentileNs(0.99);   // coordinated omission
#pragma once

#include <cstdint>
#include <vector>

namespace infermesh::cli {

// Request i of an open-loop run is due at start + i / rate, whatever happened to
// the requests before it. Latency measured from that instant includes the time a
// request waited for a free connection, which a closed loop would hide.
class OpenLoopSchedule {
 public:
  OpenLoopSchedule(int64_t start_ns, double rate_per_s);

  int64_t IntendedStartNs(uint64_t index) const;
  // How many requests are due at `now_ns` (indices [0, result) have intended starts <= now).
  uint64_t DueBy(int64_t now_ns) const;

 private:
  int64_t start_ns_;
  double period_ns_;
};

// Collects latencies (nanoseconds) and answers nearest-rank percentiles. Keeps every
// sample: a run of a few minutes at tens of thousands of requests/s is a few MB.
class LatencyRecorder {
 public:
  void Record(int64_t latency_ns);
  void Merge(const LatencyRecorder& other);

  uint64_t count() const { return samples_.size(); }
  // Nearest rank: the smallest sample such that at least q of all samples are <= it.
  // q in [0, 1]; 0 with no samples.
  int64_t PercentileNs(double q) const;
  int64_t MaxNs() const;
  double MeanNs() const;

 private:
  void Sort() const;

  mutable std::vector<int64_t> samples_;
  mutable bool sorted_ = true;
};

}  // namespace infermesh::cli
