#include "gateway/ring.h"

#include <algorithm>

#include "core/hash.h"

namespace infermesh::gateway {

HashRing::HashRing(int points_per_member) : points_per_member_(std::max(1, points_per_member)) {}

uint64_t RingHash(std::string_view material) { return HashBytes128(material).low; }

void HashRing::SetMembers(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  members_ = std::move(ids);
  points_.clear();
  points_.reserve(members_.size() * static_cast<size_t>(points_per_member_));
  for (size_t m = 0; m < members_.size(); ++m) {
    for (int i = 0; i < points_per_member_; ++i) {
      KeyBuilder k;
      k.AddString("ring").AddString(members_[m]).AddInt(i);
      points_.push_back({k.Hash().low, static_cast<uint32_t>(m)});
    }
  }
  // Ties (astronomically rare) break by member id, so the order is still a function of
  // the member set alone.
  std::sort(points_.begin(), points_.end(), [this](const Point& a, const Point& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    return members_[a.member] < members_[b.member];
  });
}

size_t HashRing::FirstPoint(uint64_t key_hash) const {
  auto it = std::lower_bound(points_.begin(), points_.end(), key_hash,
                             [](const Point& p, uint64_t h) { return p.hash < h; });
  return it == points_.end() ? 0 : static_cast<size_t>(it - points_.begin());
}

size_t HashRing::Owner(uint64_t key_hash) const { return points_[FirstPoint(key_hash)].member; }

void HashRing::VisitSuccessors(uint64_t key_hash, const std::function<bool(size_t)>& visit) const {
  if (points_.empty()) return;
  std::vector<bool> seen(members_.size(), false);
  size_t left = members_.size();
  const size_t start = FirstPoint(key_hash);
  for (size_t k = 0; k < points_.size() && left > 0; ++k) {
    const uint32_t m = points_[(start + k) % points_.size()].member;
    if (seen[m]) continue;
    seen[m] = true;
    --left;
    if (!visit(m)) return;
  }
}

std::vector<size_t> HashRing::Successors(uint64_t key_hash, size_t max) const {
  std::vector<size_t> out;
  max = std::min(max, members_.size());
  if (max == 0) return out;
  VisitSuccessors(key_hash, [&](size_t m) {
    out.push_back(m);
    return out.size() < max;
  });
  return out;
}

std::optional<size_t> PickBounded(const HashRing& ring, uint64_t key_hash,
                                  const std::vector<double>& loads,
                                  const std::function<bool(size_t)>& eligible, double c,
                                  double cost, double incoming) {
  if (ring.empty()) return std::nullopt;
  double total = 0;
  size_t n = 0;
  for (size_t m = 0; m < ring.size(); ++m) {
    if (!eligible(m)) continue;
    total += m < loads.size() ? loads[m] : 0.0;
    ++n;
  }
  if (n == 0) return std::nullopt;
  const double bound =
      std::max(c, 1.0) * (total + std::max(cost, incoming)) / static_cast<double>(n);
  // Clockwise from the key, stopping at the first member that fits (usually the owner),
  // so a pick costs the walk to it, not the whole ring.
  std::optional<size_t> fits, least;
  ring.VisitSuccessors(key_hash, [&](size_t m) {
    if (!eligible(m)) return true;
    const double load = m < loads.size() ? loads[m] : 0.0;
    if (load + cost <= bound || load <= 0) {
      fits = m;
      return false;
    }
    if (!least || load < (*least < loads.size() ? loads[*least] : 0.0)) least = m;
    return true;
  });
  // Otherwise every eligible member is busy and would pass the bound with this key (a key
  // costing more than c x the average does so everywhere): the least loaded takes it.
  return fits ? fits : least;
}

}  // namespace infermesh::gateway
