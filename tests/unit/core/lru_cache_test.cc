#include "core/lru_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "core/hash.h"

namespace infermesh {
namespace {

using StringCache = ShardedLruCache<std::string>;

std::shared_ptr<const std::string> Val(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

std::string Key(int i) {
  KeyBuilder kb;
  kb.AddString("model").AddInt(i);
  return std::move(kb).TakeMaterial();
}

TEST(LruCacheTest, InsertLookupErase) {
  StringCache cache({.capacity_bytes = 1 << 20, .shards = 4});
  EXPECT_TRUE(cache.Insert(Key(1), Val("one")));
  auto hit = cache.Lookup(Key(1));
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(*hit, "one");
  EXPECT_EQ(cache.Lookup(Key(2)), nullptr);
  EXPECT_TRUE(cache.Erase(HashBytes128(Key(1)), Key(1)));
  EXPECT_FALSE(cache.Erase(HashBytes128(Key(1)), Key(1)));
  EXPECT_EQ(cache.Lookup(Key(1)), nullptr);
  EXPECT_EQ(*hit, "one");  // a returned value outlives its entry

  LruCacheStats s = cache.Stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.inserts, 1u);
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.bytes, 0u);
}

TEST(LruCacheTest, ByteAccounting) {
  StringCache cache({.capacity_bytes = 1 << 20, .shards = 2});
  std::string k = Key(1);
  size_t want = k.size() + 10 + sizeof(Hash128) + kLruEntryOverheadBytes;
  EXPECT_EQ(cache.Charge(k, std::string(10, 'x')), want);
  ASSERT_TRUE(cache.Insert(k, Val(std::string(10, 'x'))));
  EXPECT_EQ(cache.Stats().bytes, want);
  // Replacing the value re-charges rather than double counting.
  ASSERT_TRUE(cache.Insert(k, Val(std::string(30, 'y'))));
  EXPECT_EQ(cache.Stats().bytes, want + 20);
  EXPECT_EQ(cache.Stats().entries, 1u);
  EXPECT_EQ(cache.Stats().evictions, 0u);
  cache.Clear();
  EXPECT_EQ(cache.Stats().bytes, 0u);
  EXPECT_EQ(cache.Stats().entries, 0u);
}

TEST(LruCacheTest, CustomChargeFunction) {
  ShardedLruCache<std::vector<float>> cache(
      {.capacity_bytes = 4096, .shards = 1},
      [](const std::vector<float>& v) { return v.size() * sizeof(float) * 2; });
  auto v = std::make_shared<const std::vector<float>>(8);
  ASSERT_TRUE(cache.Insert("k", v));
  EXPECT_EQ(cache.Stats().bytes, 1 + 64 + sizeof(Hash128) + kLruEntryOverheadBytes);
}

TEST(LruCacheTest, EvictsLeastRecentlyUsedFirst) {
  // One shard so the order is global. Each entry is charged the same.
  const size_t per = Key(0).size() + 4 + sizeof(Hash128) + kLruEntryOverheadBytes;
  StringCache cache({.capacity_bytes = 3 * per, .shards = 1});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cache.Insert(Key(i), Val("vvvv")));
  ASSERT_NE(cache.Lookup(Key(0)), nullptr);  // order now (MRU→LRU): 0, 2, 1
  ASSERT_TRUE(cache.Insert(Key(3), Val("vvvv")));
  EXPECT_EQ(cache.Lookup(Key(1)), nullptr);  // evicted
  EXPECT_NE(cache.Lookup(Key(0)), nullptr);
  EXPECT_NE(cache.Lookup(Key(2)), nullptr);
  EXPECT_NE(cache.Lookup(Key(3)), nullptr);
  // Order: 3, 2, 0 → a double-size insert evicts 0 and then 2.
  ASSERT_TRUE(cache.Insert(Key(4), Val(std::string(4 + per, 'v'))));
  EXPECT_EQ(cache.Lookup(Key(0)), nullptr);
  EXPECT_EQ(cache.Lookup(Key(2)), nullptr);
  EXPECT_NE(cache.Lookup(Key(3)), nullptr);
  EXPECT_NE(cache.Lookup(Key(4)), nullptr);
  LruCacheStats s = cache.Stats();
  EXPECT_EQ(s.evictions, 3u);
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.bytes, 3 * per);
  EXPECT_LE(s.bytes, cache.capacity_bytes());
}

TEST(LruCacheTest, EntryLargerThanShardIsNotInserted) {
  StringCache cache({.capacity_bytes = 16 * 1024, .shards = 16});  // 1 KiB per shard
  ASSERT_TRUE(cache.Insert(Key(1), Val("small")));
  EXPECT_FALSE(cache.Insert(Key(2), Val(std::string(2048, 'x'))));
  EXPECT_EQ(cache.Lookup(Key(2)), nullptr);
  EXPECT_NE(cache.Lookup(Key(1)), nullptr);  // nothing was evicted for it
  LruCacheStats s = cache.Stats();
  EXPECT_EQ(s.rejected, 1u);
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_FALSE(cache.Insert(Key(3), nullptr));
}

TEST(LruCacheTest, ForcedHashCollisionIsAMissNotAWrongValue) {
  StringCache cache({.capacity_bytes = 1 << 20, .shards = 4});
  const Hash128 same{42, 7};  // two different materials forced onto one 128-bit key
  ASSERT_TRUE(cache.Insert(same, "material-A", Val("value-A")));
  auto a = cache.Lookup(same, "material-A");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(*a, "value-A");

  EXPECT_EQ(cache.Lookup(same, "material-B"), nullptr);  // collision → miss
  EXPECT_FALSE(cache.Erase(same, "material-B"));         // and cannot erase A
  EXPECT_NE(cache.Lookup(same, "material-A"), nullptr);

  // Inserting B under the same key takes the slot; A now misses, B hits.
  ASSERT_TRUE(cache.Insert(same, "material-B", Val("value-B")));
  EXPECT_EQ(cache.Lookup(same, "material-A"), nullptr);
  auto b = cache.Lookup(same, "material-B");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(*b, "value-B");

  LruCacheStats s = cache.Stats();
  EXPECT_EQ(s.collisions, 2u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.hits, 3u);
  // A prefix of the material is not a match either.
  EXPECT_EQ(cache.Lookup(same, "material-"), nullptr);
}

TEST(LruCacheTest, ConcurrentMixedOperationsKeepInvariants) {
  const size_t capacity = 64 * 1024;
  StringCache cache({.capacity_bytes = capacity, .shards = 16});
  constexpr int kThreads = 8;
  constexpr int kOps = 20000;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kOps; ++i) {
        int k = (i * 7 + t * 13) % 500;
        std::string key = Key(k);
        if (i % 3 == 0) {
          (void)cache.Insert(key, Val("v" + std::to_string(k)));
        } else if (i % 17 == 0) {
          (void)cache.Erase(HashBytes128(key), key);
        } else if (auto v = cache.Lookup(key); v != nullptr && *v != "v" + std::to_string(k)) {
          wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  LruCacheStats s = cache.Stats();
  EXPECT_LE(s.bytes, capacity);
  uint64_t inserts = 0, lookups = 0;
  for (int i = 0; i < kOps; ++i) {
    if (i % 3 == 0) {
      ++inserts;
    } else if (i % 17 != 0) {
      ++lookups;
    }
  }
  EXPECT_EQ(s.inserts + s.rejected, inserts * kThreads);
  EXPECT_EQ(s.hits + s.misses, lookups * kThreads);
  EXPECT_GT(s.hits, 0u);
  EXPECT_GT(s.evictions, 0u);  // 500 keys do not fit in 64 KiB
  // Entries and bytes agree with a full recount after the writers stop.
  uint64_t entries = 0;
  for (int k = 0; k < 500; ++k) entries += cache.Lookup(Key(k)) != nullptr;
  EXPECT_EQ(entries, s.entries);
}

}  // namespace
}  // namespace infermesh
