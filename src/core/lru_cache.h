// ShardedLruCache<V>: a thread-safe, byte-bounded LRU keyed by a 128-bit hash whose
// hits are confirmed against the full key material, so a hash collision is a miss,
// never a wrong answer.
//
//   ShardedLruCache<Embedding> cache({.capacity_bytes = 256 << 20},
//                                    [](const Embedding& e) { return e.bytes(); });
//   KeyBuilder kb; kb.AddString(model).AddString(text);
//   cache.Insert(kb.Hash(), kb.material(), std::make_shared<const Embedding>(...));
//   std::shared_ptr<const Embedding> hit = cache.Lookup(kb.Hash(), kb.material());
//
// Each entry keeps a copy of its material (the canonical bytes the hash was computed
// from) and Lookup compares it byte for byte on every hit. The cost is memory (the
// material is charged to the capacity) and one memcmp; the benefit is that
// correctness never rests on the hash. See docs/decisions.md, "Cache keys".
//
// Capacity is split evenly across shards (a shard is picked by the hash's high
// word); an entry whose charge exceeds one shard's capacity is not inserted.
// Values are immutable and shared: a Lookup result stays valid after eviction.
// Evicted values are released outside the shard lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/hash.h"

namespace infermesh {

struct LruCacheOptions {
  size_t capacity_bytes = 64 << 20;
  int shards = 16;
};

struct LruCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;      // includes collisions
  uint64_t collisions = 0;  // the hash matched, the material did not
  uint64_t inserts = 0;
  uint64_t evictions = 0;  // removed to make room (not Erase, not replacement)
  uint64_t rejected = 0;   // Insert of an entry larger than a shard
  uint64_t entries = 0;
  uint64_t bytes = 0;  // sum of entry charges
};

// Bookkeeping charged per entry on top of material and value: list and hash-map
// nodes, the shared_ptr control block and the Entry itself. An estimate, not exact.
inline constexpr size_t kLruEntryOverheadBytes = 160;

template <typename V>
class ShardedLruCache {
 public:
  // Bytes charged for a value (excluding material and overhead).
  using ChargeFn = std::function<size_t(const V&)>;

  explicit ShardedLruCache(LruCacheOptions options, ChargeFn value_charge = DefaultCharge)
      : value_charge_(std::move(value_charge)) {
    int n = options.shards < 1 ? 1 : options.shards;
    shard_capacity_ = options.capacity_bytes / static_cast<size_t>(n);
    shards_ = std::vector<Shard>(static_cast<size_t>(n));
  }
  ShardedLruCache(const ShardedLruCache&) = delete;
  ShardedLruCache& operator=(const ShardedLruCache&) = delete;

  // Inserts or replaces the entry for `key` (a different material under the same
  // key replaces it too: one slot per hash). Returns false, inserting nothing, if
  // the entry alone exceeds a shard's capacity or value is null.
  bool Insert(const Hash128& key, std::string_view material, std::shared_ptr<const V> value) {
    if (value == nullptr) return false;
    size_t charge = Charge(material, *value);
    Shard& s = ShardFor(key);
    if (charge > shard_capacity_) {
      s.rejected.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    std::vector<std::shared_ptr<const V>> released;  // destroyed after unlock
    std::lock_guard<std::mutex> lock(s.mu);
    if (auto it = s.index.find(key); it != s.index.end()) {
      released.push_back(std::move(it->second->value));
      RemoveLocked(s, it->second);
    }
    while (s.bytes.load(std::memory_order_relaxed) + charge > shard_capacity_) {
      auto victim = std::prev(s.lru.end());
      released.push_back(std::move(victim->value));
      RemoveLocked(s, victim);
      s.evictions.fetch_add(1, std::memory_order_relaxed);
    }
    s.lru.push_front(Entry{key, std::string(material), std::move(value), charge});
    s.index.emplace(key, s.lru.begin());
    s.bytes.fetch_add(charge, std::memory_order_relaxed);
    s.entries.fetch_add(1, std::memory_order_relaxed);
    s.inserts.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  bool Insert(std::string_view material, std::shared_ptr<const V> value) {
    return Insert(HashBytes128(material), material, std::move(value));
  }

  // The value for `key` if present AND its stored material equals `material`;
  // otherwise null (a collision counts as a miss and leaves the entry alone).
  std::shared_ptr<const V> Lookup(const Hash128& key, std::string_view material) {
    Shard& s = ShardFor(key);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.index.find(key);
    if (it == s.index.end()) {
      s.misses.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    if (it->second->material != material) {
      s.collisions.fetch_add(1, std::memory_order_relaxed);
      s.misses.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    s.hits.fetch_add(1, std::memory_order_relaxed);
    return it->second->value;
  }
  std::shared_ptr<const V> Lookup(std::string_view material) {
    return Lookup(HashBytes128(material), material);
  }

  // Removes the entry if its material matches. Returns whether one was removed.
  bool Erase(const Hash128& key, std::string_view material) {
    std::shared_ptr<const V> released;
    Shard& s = ShardFor(key);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.index.find(key);
    if (it == s.index.end() || it->second->material != material) return false;
    released = std::move(it->second->value);
    RemoveLocked(s, it->second);
    return true;
  }

  void Clear() {
    for (Shard& s : shards_) {
      std::list<Entry> dropped;
      {
        std::lock_guard<std::mutex> lock(s.mu);
        s.index.clear();
        dropped.swap(s.lru);
        s.bytes.store(0, std::memory_order_relaxed);
        s.entries.store(0, std::memory_order_relaxed);
      }
    }
  }

  // Lock-free: sums relaxed per-shard counters, so totals are approximate while
  // writers run and exact once they stop.
  LruCacheStats Stats() const {
    LruCacheStats t;
    for (const Shard& s : shards_) {
      t.hits += s.hits.load(std::memory_order_relaxed);
      t.misses += s.misses.load(std::memory_order_relaxed);
      t.collisions += s.collisions.load(std::memory_order_relaxed);
      t.inserts += s.inserts.load(std::memory_order_relaxed);
      t.evictions += s.evictions.load(std::memory_order_relaxed);
      t.rejected += s.rejected.load(std::memory_order_relaxed);
      t.entries += s.entries.load(std::memory_order_relaxed);
      t.bytes += s.bytes.load(std::memory_order_relaxed);
    }
    return t;
  }

  size_t capacity_bytes() const { return shard_capacity_ * shards_.size(); }
  size_t shard_capacity_bytes() const { return shard_capacity_; }
  int shard_count() const { return static_cast<int>(shards_.size()); }

  // What an entry is charged against the capacity.
  size_t Charge(std::string_view material, const V& value) const {
    return material.size() + value_charge_(value) + sizeof(Hash128) + kLruEntryOverheadBytes;
  }

  // Containers with size()/value_type are charged by their payload, others by sizeof.
  static size_t DefaultCharge(const V& v) {
    if constexpr (requires {
                    v.size();
                    typename V::value_type;
                  }) {
      return v.size() * sizeof(typename V::value_type);
    } else {
      return sizeof(V);
    }
  }

 private:
  struct Entry {
    Hash128 key;
    std::string material;
    std::shared_ptr<const V> value;
    size_t charge = 0;
  };
  using EntryIter = typename std::list<Entry>::iterator;

  struct Shard {
    std::mutex mu;
    std::list<Entry> lru;                                         // front = most recent; mu
    std::unordered_map<Hash128, EntryIter, Hash128Hasher> index;  // mu
    // Written under mu, read lock-free by Stats().
    std::atomic<uint64_t> bytes{0}, entries{0};
    std::atomic<uint64_t> hits{0}, misses{0}, collisions{0}, inserts{0}, evictions{0}, rejected{0};
  };

  Shard& ShardFor(const Hash128& key) { return shards_[key.high % shards_.size()]; }

  static void RemoveLocked(Shard& s, EntryIter it) {
    s.bytes.fetch_sub(it->charge, std::memory_order_relaxed);
    s.entries.fetch_sub(1, std::memory_order_relaxed);
    s.index.erase(it->key);
    s.lru.erase(it);
  }

  ChargeFn value_charge_;
  size_t shard_capacity_ = 0;
  std::vector<Shard> shards_;
};

}  // namespace infermesh
