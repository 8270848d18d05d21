#include "gateway/outlier.h"

#include <algorithm>
#include <cmath>

namespace infermesh::gateway {

void OutlierDetector::MaybeEvaluate(Clock::time_point now) {
  if (!started_) {
    started_ = true;
    interval_end_ = now + options_.interval;
    return;
  }
  if (now < interval_end_) return;
  interval_end_ = now + options_.interval;
  size_t out = 0;
  for (const auto& [id, m] : members_) out += m.ejected_until > now;
  const size_t n = members_.size();
  const size_t cap =
      n < 2 ? 0
            : std::max<size_t>(1, static_cast<size_t>(std::floor(options_.max_ejected_fraction *
                                                                 static_cast<double>(n))));
  for (auto& [id, m] : members_) {
    const bool eject =
        m.ejected_until <= now &&
        m.calls >= static_cast<uint64_t>(std::max(1, options_.min_requests)) &&
        static_cast<double>(m.failures) >= options_.failure_rate * static_cast<double>(m.calls);
    if (eject && out < cap) {
      ++m.times_ejected;
      const auto d = std::min<std::chrono::milliseconds>(options_.base_ejection * m.times_ejected,
                                                         options_.max_ejection);
      m.ejected_until = now + d;
      ++out;
      ++ejections_;
    } else if (!eject && m.ejected_until <= now && m.times_ejected > 0) {
      --m.times_ejected;  // a good interval: the next ejection is shorter again
    }
    m.calls = m.failures = 0;
  }
}

void OutlierDetector::Record(const std::string& member, bool failed, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeEvaluate(now);
  Member& m = members_[member];
  ++m.calls;
  if (failed) ++m.failures;
}

bool OutlierDetector::Ejected(const std::string& member, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeEvaluate(now);
  auto it = members_.find(member);
  return it != members_.end() && it->second.ejected_until > now;
}

void OutlierDetector::Remove(const std::string& member) {
  std::lock_guard<std::mutex> lock(mu_);
  members_.erase(member);
}

size_t OutlierDetector::ejected_count(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeEvaluate(now);
  size_t out = 0;
  for (const auto& [id, m] : members_) out += m.ejected_until > now;
  return out;
}

uint64_t OutlierDetector::ejections_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ejections_;
}

}  // namespace infermesh::gateway
