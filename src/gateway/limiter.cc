#include "gateway/limiter.h"

#include <algorithm>
#include <cmath>

namespace infermesh::gateway {

AdaptiveLimiter::AdaptiveLimiter(LimiterOptions options) : options_(options) {
  options_.min_limit = std::max(1.0, options_.min_limit);
  options_.max_limit = std::max(options_.min_limit, options_.max_limit);
  options_.min_rtt_samples = std::max(1, options_.min_rtt_samples);
  run_limit_ = std::clamp(options_.initial_limit, options_.min_limit, options_.max_limit);
  probing_ = true;  // the first probe starts with the first call
  limit_ = options_.min_limit;
}

void AdaptiveLimiter::StartProbe(Clock::time_point now) {
  run_limit_ = limit_;
  probing_ = true;
  limit_ = options_.min_limit;
  samples_.clear();
  probe_started_ = now;
  probe_saturated_ = false;
  next_probe_ = now + options_.min_rtt_interval;
}

double AdaptiveLimiter::Median(std::vector<double>& v) {
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

void AdaptiveLimiter::EndProbe(Clock::time_point now) {
  // Without a sample the previous minimum stands (0 until the first one: see SampleLocked).
  // A probe that never had min_limit calls in flight measured an idle upstream, not one at
  // the probe's concurrency: for an upstream that batches (its latency grows with its
  // load long before it saturates) that minimum would throttle the next burst down to
  // the floor, so it replaces a minimum only when there is none yet.
  if (!samples_.empty() && (probe_saturated_ || min_rtt_ns_ <= 0)) min_rtt_ns_ = Median(samples_);
  samples_.clear();
  probing_ = false;
  limit_ = run_limit_;
  next_probe_ = now + options_.min_rtt_interval;
  interval_end_ = now + options_.update_interval;
}

bool AdaptiveLimiter::TryAcquire(Clock::time_point now, bool count) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!probing_ && now >= next_probe_) StartProbe(now);
  if (probing_ && probe_started_ == Clock::time_point{}) probe_started_ = now;  // the first
  if (probing_ && now - probe_started_ >= options_.probe_timeout) EndProbe(now);
  if (in_flight_ >= static_cast<int>(limit_)) {
    if (probing_) probe_saturated_ = true;
    if (count) ++rejected_;
    return false;
  }
  ++in_flight_;
  if (probing_ && in_flight_ >= static_cast<int>(limit_)) probe_saturated_ = true;
  return true;
}

void AdaptiveLimiter::Release(std::chrono::nanoseconds rtt, Clock::time_point now, bool sample) {
  std::lock_guard<std::mutex> lock(mu_);
  if (in_flight_ > 0) --in_flight_;
  if (sample) SampleLocked(rtt, now);
}

void AdaptiveLimiter::Sample(std::chrono::nanoseconds rtt, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  SampleLocked(rtt, now);
}

void AdaptiveLimiter::SampleLocked(std::chrono::nanoseconds rtt, Clock::time_point now) {
  if (rtt.count() <= 0) return;
  // A probe measures only calls it admitted itself (at its low concurrency), not the
  // ones still draining from before it.
  if (probing_ && now - rtt < probe_started_) return;
  samples_.push_back(static_cast<double>(rtt.count()));
  if (probing_) {
    if (static_cast<int>(samples_.size()) < options_.min_rtt_samples &&
        now - probe_started_ < options_.probe_timeout) {
      return;
    }
    return EndProbe(now);
  }
  if (min_rtt_ns_ <= 0) {
    // A probe that timed out without a sample: the first samples set the minimum.
    if (static_cast<int>(samples_.size()) < options_.min_rtt_samples) return;
    min_rtt_ns_ = Median(samples_);
    samples_.clear();
    return;
  }
  if (now < interval_end_) return;
  sample_rtt_ns_ = Median(samples_);
  samples_.clear();
  interval_end_ = now + options_.update_interval;
  const double gradient =
      std::clamp(min_rtt_ns_ * (1 + options_.buffer) / sample_rtt_ns_, 0.5, 2.0);
  limit_ =
      std::clamp(limit_ * gradient + std::sqrt(limit_), options_.min_limit, options_.max_limit);
}

void AdaptiveLimiter::CountRejection() {
  std::lock_guard<std::mutex> lock(mu_);
  ++rejected_;
}

int AdaptiveLimiter::limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(limit_);
}

int AdaptiveLimiter::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

uint64_t AdaptiveLimiter::rejected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rejected_;
}

bool AdaptiveLimiter::probing() const {
  std::lock_guard<std::mutex> lock(mu_);
  return probing_;
}

std::chrono::nanoseconds AdaptiveLimiter::min_rtt() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::chrono::nanoseconds(static_cast<int64_t>(min_rtt_ns_));
}

std::chrono::nanoseconds AdaptiveLimiter::sample_rtt() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::chrono::nanoseconds(static_cast<int64_t>(sample_rtt_ns_));
}

int AdaptiveLimiter::RetryAfterSeconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  const double rtt = sample_rtt_ns_ > 0 ? sample_rtt_ns_ : min_rtt_ns_;
  // (in flight + 1) / limit "generations" of calls finish before a slot is free.
  const double generations = std::max(1.0, (in_flight_ + 1) / std::max(limit_, 1.0));
  return static_cast<int>(std::clamp(std::ceil(generations * rtt / 1e9), 1.0, 60.0));
}

}  // namespace infermesh::gateway
