// Consistent hashing with virtual nodes and bounded loads: which worker owns an input.
//
//   HashRing ring;                                   // 160 points per member
//   ring.SetMembers({"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"});
//   size_t owner = ring.Owner(key_hash);             // index into members()
//   auto order = ring.Successors(key_hash, 3);       // owner, then the next distinct ones
//   // Bounded loads: the first member clockwise whose load stays within c x average.
//   auto pick = PickBounded(ring, key_hash, loads, eligible, 1.25, cost);
//
// Points: member m's i-th point is the low 64 bits of XXH3-128 over KeyBuilder(m, i), so
// the ring depends only on the set of member ids, never on the order they were added or
// on any state: two gateways with the same membership route every key alike.
// Adding or removing one of N members moves about 1/N of the keys (those whose first
// point clockwise changes owner), no more.
//
// Bounded loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded
// Loads", 2018): with loads counted in any unit (the gateway counts outstanding tokens),
// a key goes to the first eligible member clockwise from its hash whose load after
// taking the key stays <= c x (total load + cost) / (eligible members), or that is idle
// (load 0: with weighted keys an idle member may have to take one key above the bound).
// So no busy member carries more than c times the average, and a key moves off its owner
// only while the owner is over that bound. If every eligible member is busy and over, the
// least loaded takes the key. c >= 1; c = 1 + epsilon in the paper; 1.25 by default.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace infermesh::gateway {

class HashRing {
 public:
  explicit HashRing(int points_per_member = 160);

  // Replaces the members (ids such as "host:port"; duplicates are ignored).
  void SetMembers(std::vector<std::string> ids);
  const std::vector<std::string>& members() const { return members_; }  // sorted
  size_t size() const { return members_.size(); }
  bool empty() const { return members_.empty(); }

  // Index (into members()) of the member owning `key_hash`. Requires !empty().
  size_t Owner(uint64_t key_hash) const;
  // Up to `max` distinct members in ring order from `key_hash`: the owner first.
  std::vector<size_t> Successors(uint64_t key_hash, size_t max) const;
  // Calls `visit(member)` for each distinct member in ring order from `key_hash`, owner
  // first, until it returns false or every member was visited.
  void VisitSuccessors(uint64_t key_hash, const std::function<bool(size_t)>& visit) const;

 private:
  struct Point {
    uint64_t hash;
    uint32_t member;
  };
  size_t FirstPoint(uint64_t key_hash) const;

  int points_per_member_;
  std::vector<std::string> members_;
  std::vector<Point> points_;  // sorted by hash
};

// The 64-bit ring position of a cache key's material (KeyBuilder bytes).
uint64_t RingHash(std::string_view material);

// The bounded-load choice described above. `loads[i]` is member i's current load,
// `eligible(i)` whether it may take traffic (healthy, breaker closed). Returns nullopt
// when no member is eligible. `cost` is the key's own load (its tokens).
//
// `incoming` (>= cost) is the cost of every key being routed in the same pass and not yet
// placed, this one included: a batch of keys is placed against the average it will
// produce, not the running one (which would be tiny for its first keys and push them off
// their owners).
std::optional<size_t> PickBounded(const HashRing& ring, uint64_t key_hash,
                                  const std::vector<double>& loads,
                                  const std::function<bool(size_t)>& eligible, double c,
                                  double cost, double incoming = 0);

}  // namespace infermesh::gateway
