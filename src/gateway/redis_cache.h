// The shared cache tier: a real Redis (hiredis) behind the gateway's local LRU, so that
// several gateways, and a gateway after a restart, reuse each other's embeddings.
//
//   RedisCache redis(options);                    // connects lazily
//   auto rows = redis.Lookup(materials);          // one pipelined round trip; misses null
//   redis.Store(material, row);                   // queued; a writer thread pipelines them
//
// Keys: key_prefix + the hex XXH3-128 of the input's cache-key material. Values: zstd of
// [u32 material length][material][i64 tokens][u32 dims][dims float32], so every hit is
// confirmed against the full material (a hash collision is a miss, never a wrong row),
// as the local cache does. SET with EX ttl.
//
// Redis is an optimization, never a dependency: lookups and stores have short timeouts,
// failures are counted and answered as misses, and a breaker of its own (after
// breaker_failures consecutive failures, skip Redis for breaker_open_time) keeps a slow
// or dead Redis from slowing requests. Connections are pooled (pool_size) and re-made
// after errors. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "front/text_front.h"
#include "gateway/breaker.h"

namespace infermesh::gateway {

struct RedisOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  int pool_size = 4;
  std::chrono::milliseconds timeout{50};  // connect, and each round trip
  std::chrono::seconds ttl{86400};
  std::string key_prefix = "infermesh:v1:";
  size_t max_pending_writes = 4096;  // beyond, stores are dropped (counted)
  int zstd_level = 1;
  BreakerOptions breaker{3, std::chrono::milliseconds(2000), 1, 1};
};

// "redis://host:port" (or host:port) into options.
[[nodiscard]] Result<RedisOptions> ParseRedisUrl(const std::string& url, RedisOptions base = {});

class RedisCache {
 public:
  explicit RedisCache(RedisOptions options);
  ~RedisCache();  // flushes nothing: pending writes are dropped
  RedisCache(const RedisCache&) = delete;
  RedisCache& operator=(const RedisCache&) = delete;

  // One pipelined GET per material, one round trip; null for a miss, an error, a
  // collision or while the breaker is open.
  std::vector<std::shared_ptr<const front::CachedRow>> Lookup(
      const std::vector<std::string>& materials);
  // Queues a SET EX; the writer thread pipelines what is queued.
  void Store(const std::string& material, std::shared_ptr<const front::CachedRow> row);

  struct Stats {
    uint64_t hits = 0, misses = 0, errors = 0, skipped = 0;  // lookups (per key)
    uint64_t stored = 0, store_errors = 0, store_dropped = 0;
    uint64_t collisions = 0;
    bool breaker_open = false;
  };
  Stats stats() const;

  // Exposed for tests.
  static std::string Encode(const std::string& material, const front::CachedRow& row, int level);
  static std::shared_ptr<front::CachedRow> Decode(std::string_view value,
                                                  const std::string& material, bool* collision);
  std::string Key(const std::string& material) const;

 private:
  struct Conn;
  std::unique_ptr<Conn> Take();
  void Give(std::unique_ptr<Conn> c);
  void WriterLoop();

  RedisOptions options_;
  CircuitBreaker breaker_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::mutex write_mu_;
  std::condition_variable write_cv_;
  std::deque<std::pair<std::string, std::shared_ptr<const front::CachedRow>>> writes_;
  bool stopping_ = false;
  std::thread writer_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, errors_{0}, skipped_{0}, stored_{0}, store_errors_{0},
      store_dropped_{0}, collisions_{0};
};

}  // namespace infermesh::gateway
