#include "gateway/ring.h"

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/hash.h"

namespace infermesh::gateway {
namespace {

std::vector<std::string> Members(int n, int first = 0) {
  std::vector<std::string> out;
  for (int i = first; i < first + n; ++i) out.push_back("10.0.0." + std::to_string(i) + ":8080");
  return out;
}

std::vector<uint64_t> Keys(int n) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; ++i) {
    KeyBuilder k;
    k.AddString("text").AddString("input number " + std::to_string(i));
    out.push_back(RingHash(k.material()));
  }
  return out;
}

std::vector<std::string> Owners(const HashRing& ring, const std::vector<uint64_t>& keys) {
  std::vector<std::string> out;
  for (uint64_t k : keys) out.push_back(ring.members()[ring.Owner(k)]);
  return out;
}

TEST(HashRing, SameMembershipSameOwnersWhateverTheOrder) {
  // Two gateways, no shared state: members listed in different orders, with a duplicate.
  HashRing a, b;
  auto m = Members(5);
  a.SetMembers(m);
  std::reverse(m.begin(), m.end());
  m.push_back(m.front());
  b.SetMembers(m);
  const auto keys = Keys(5000);
  EXPECT_EQ(Owners(a, keys), Owners(b, keys));
  EXPECT_EQ(b.size(), 5u);
}

TEST(HashRing, SpreadsKeysEvenly) {
  HashRing ring;
  ring.SetMembers(Members(4));
  std::map<size_t, int> count;
  const auto keys = Keys(40000);
  for (uint64_t k : keys) ++count[ring.Owner(k)];
  for (const auto& [m, c] : count) {
    EXPECT_GT(c, 40000 / 4 * 0.8) << ring.members()[m];
    EXPECT_LT(c, 40000 / 4 * 1.2) << ring.members()[m];
  }
}

// Joining or leaving moves about 1/N of the keys, and only keys that must move.
TEST(HashRing, JoinAndLeaveMoveAboutOneNth) {
  const auto keys = Keys(20000);
  for (int n : {3, 5, 10}) {
    HashRing before, after;
    before.SetMembers(Members(n));
    after.SetMembers(Members(n + 1));  // one joins
    const auto a = Owners(before, keys), b = Owners(after, keys);
    const std::string joined = Members(1, n)[0];
    int moved = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (a[i] != b[i]) {
        ++moved;
        EXPECT_EQ(b[i], joined) << "a key moved between two members that stayed";
      }
    }
    const double expected = 1.0 / (n + 1);
    const double got = double(moved) / keys.size();
    EXPECT_NEAR(got, expected, expected * 0.25) << "join to " << n + 1 << " members";
    // One of the n leaves: exactly its keys move, about 1/n of them.
    HashRing left;
    auto rest = Members(n);
    const std::string leaver = rest[1];
    rest.erase(rest.begin() + 1);
    left.SetMembers(rest);
    const auto c = Owners(left, keys);
    int moved_leave = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      EXPECT_EQ(a[i] != c[i], a[i] == leaver) << "key " << i;
      moved_leave += a[i] != c[i];
    }
    EXPECT_NEAR(double(moved_leave) / keys.size(), 1.0 / n, 0.25 / n) << "leave from " << n;
  }
}

TEST(HashRing, SuccessorsAreDistinctAndStartAtTheOwner) {
  HashRing ring;
  ring.SetMembers(Members(4));
  for (uint64_t k : Keys(200)) {
    auto s = ring.Successors(k, 10);
    ASSERT_EQ(s.size(), 4u);
    EXPECT_EQ(s[0], ring.Owner(k));
    std::sort(s.begin(), s.end());
    EXPECT_EQ(std::unique(s.begin(), s.end()), s.end());
  }
  EXPECT_TRUE(HashRing().Successors(1, 3).empty());
}

TEST(PickBounded, NoMemberExceedsCTimesTheAverage) {
  HashRing ring;
  ring.SetMembers(Members(5));
  std::vector<double> loads(5, 0.0);
  auto all = [](size_t) { return true; };
  // A skewed stream: half the keys are one hot input (same hash), the rest spread.
  // Without the bound its owner would carry half of all the load.
  const auto keys = Keys(2000);
  std::mt19937 rng(1);
  for (int i = 0; i < 4000; ++i) {
    const uint64_t k = (i % 2 == 0) ? keys[0] : keys[rng() % keys.size()];
    const double cost = 1 + rng() % 64;  // tokens
    auto m = PickBounded(ring, k, loads, all, 1.25, cost);
    ASSERT_TRUE(m.has_value());
    loads[*m] += cost;
    double total = 0;
    for (double l : loads) total += l;
    const double max = *std::max_element(loads.begin(), loads.end());
    // With weighted keys the bound holds up to one key's cost (the largest is 64).
    ASSERT_LE(max, 1.25 * total / 5 + 64) << "after key " << i;
  }
}

TEST(PickBounded, OwnerKeepsItsKeysWhileWithinTheBound) {
  HashRing ring;
  ring.SetMembers(Members(3));
  std::vector<double> loads = {10, 10, 10};
  auto all = [](size_t) { return true; };
  for (uint64_t k : Keys(300)) {
    EXPECT_EQ(PickBounded(ring, k, loads, all, 1.25, 1), ring.Owner(k));
  }
}

TEST(PickBounded, OverloadedOrIneligibleOwnerPassesToItsSuccessor) {
  HashRing ring;
  ring.SetMembers(Members(3));
  const uint64_t k = Keys(1)[0];
  const auto order = ring.Successors(k, 3);
  std::vector<double> loads(3, 10.0);
  loads[order[0]] = 100;  // far over 1.25 x average
  EXPECT_EQ(PickBounded(
                ring, k, loads, [](size_t) { return true; }, 1.25, 1),
            order[1]);
  std::vector<double> even(3, 0.0);
  auto not_owner = [&](size_t m) { return m != order[0]; };
  EXPECT_EQ(PickBounded(ring, k, even, not_owner, 1.25, 1), order[1]);
  EXPECT_FALSE(PickBounded(
                   ring, k, even, [](size_t) { return false; }, 1.25, 1)
                   .has_value());
  EXPECT_FALSE(PickBounded(
      HashRing(), k, even, [](size_t) { return true; }, 1.25, 1));
}

}  // namespace
}  // namespace infermesh::gateway
