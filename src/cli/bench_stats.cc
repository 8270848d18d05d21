#include "cli/bench_stats.h"

#include <algorithm>
#include <cmath>

namespace infermesh::cli {

OpenLoopSchedule::OpenLoopSchedule(int64_t start_ns, double rate_per_s)
    : start_ns_(start_ns), period_ns_(rate_per_s > 0 ? 1e9 / rate_per_s : 0) {}

int64_t OpenLoopSchedule::IntendedStartNs(uint64_t index) const {
  return start_ns_ + static_cast<int64_t>(std::llround(static_cast<double>(index) * period_ns_));
}

uint64_t OpenLoopSchedule::DueBy(int64_t now_ns) const {
  if (now_ns < start_ns_) return 0;
  if (period_ns_ <= 0) return UINT64_MAX;
  auto n = static_cast<uint64_t>(static_cast<double>(now_ns - start_ns_) / period_ns_) + 1;
  // Rounding in IntendedStartNs may disagree with the division by one either way.
  while (n > 0 && IntendedStartNs(n - 1) > now_ns) --n;
  while (IntendedStartNs(n) <= now_ns) ++n;
  return n;
}

void LatencyRecorder::Record(int64_t latency_ns) {
  if (!samples_.empty() && latency_ns < samples_.back()) sorted_ = false;
  samples_.push_back(latency_ns);
}

void LatencyRecorder::Merge(const LatencyRecorder& other) {
  samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
  sorted_ = false;
}

void LatencyRecorder::Sort() const {
  if (!sorted_) std::sort(samples_.begin(), samples_.end());
  sorted_ = true;
}

int64_t LatencyRecorder::PercentileNs(double q) const {
  if (samples_.empty()) return 0;
  Sort();
  q = std::clamp(q, 0.0, 1.0);
  const auto n = static_cast<double>(samples_.size());
  // The epsilon keeps 0.29 * 100 = 28.999999999999996 at rank 29.
  auto rank = static_cast<size_t>(std::ceil(q * n - 1e-9));
  if (rank == 0) rank = 1;
  return samples_[rank - 1];
}

int64_t LatencyRecorder::MaxNs() const {
  if (samples_.empty()) return 0;
  return *std::max_element(samples_.begin(), samples_.end());
}

double LatencyRecorder::MeanNs() const {
  if (samples_.empty()) return 0;
  double sum = 0;
  for (int64_t s : samples_) sum += static_cast<double>(s);
  return sum / static_cast<double>(samples_.size());
}

}  // namespace infermesh::cli
