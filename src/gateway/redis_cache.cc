#include "gateway/redis_cache.h"

#include <hiredis/hiredis.h>
#include <zstd.h>

#include <cstring>

#include "core/hash.h"
#include "core/log.h"
#include "http/client.h"

namespace infermesh::gateway {

using Clock = std::chrono::steady_clock;

Result<RedisOptions> ParseRedisUrl(const std::string& url, RedisOptions base) {
  std::string rest = url;
  if (rest.starts_with("redis://")) rest = rest.substr(8);
  if (rest.find('@') != std::string::npos || rest.find('/') != std::string::npos) {
    // Only host:port: AUTH and database numbers are not supported yet; say so.
    while (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.find('@') != std::string::npos || rest.find('/') != std::string::npos) {
      return InvalidArgument("'" + url +
                             "': only redis://host:port is supported (no password or database)");
    }
  }
  auto ep = http::ParseEndpoint(rest);
  if (!ep.ok()) return InvalidArgument("'" + url + "' is not redis://host:port");
  base.host = ep->host;
  base.port = ep->port;
  return base;
}

struct RedisCache::Conn {
  redisContext* ctx = nullptr;
  ~Conn() {
    if (ctx) redisFree(ctx);
  }
};

RedisCache::RedisCache(RedisOptions options)
    : options_(std::move(options)), breaker_(options_.breaker) {
  writer_ = std::thread([this] { WriterLoop(); });
}

RedisCache::~RedisCache() {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    stopping_ = true;
  }
  write_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

std::string RedisCache::Key(const std::string& material) const {
  return options_.key_prefix + HashBytes128(material).ToHex();
}

std::string RedisCache::Encode(const std::string& material, const front::CachedRow& row,
                               int level) {
  std::string raw;
  const uint32_t mlen = static_cast<uint32_t>(material.size());
  const int64_t tokens = row.tokens;
  const uint32_t dims = static_cast<uint32_t>(row.values.size());
  raw.resize(4 + material.size() + 8 + 4 + row.values.size() * sizeof(float));
  char* p = raw.data();
  std::memcpy(p, &mlen, 4);
  p += 4;
  std::memcpy(p, material.data(), material.size());
  p += material.size();
  std::memcpy(p, &tokens, 8);
  p += 8;
  std::memcpy(p, &dims, 4);
  p += 4;
  std::memcpy(p, row.values.data(), row.values.size() * sizeof(float));
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n)) return {};
  out.resize(n);
  return out;
}

std::shared_ptr<front::CachedRow> RedisCache::Decode(std::string_view value,
                                                     const std::string& material, bool* collision) {
  *collision = false;
  const unsigned long long size = ZSTD_getFrameContentSize(value.data(), value.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (64u << 20)) {
    return nullptr;
  }
  std::string raw(static_cast<size_t>(size), '\0');
  const size_t n = ZSTD_decompress(raw.data(), raw.size(), value.data(), value.size());
  if (ZSTD_isError(n) || n != raw.size() || n < 16) return nullptr;
  const char* p = raw.data();
  uint32_t mlen = 0;
  std::memcpy(&mlen, p, 4);
  if (4 + static_cast<size_t>(mlen) + 12 > n) return nullptr;
  if (std::string_view(p + 4, mlen) != material) {
    *collision = true;
    return nullptr;
  }
  p += 4 + mlen;
  auto row = std::make_shared<front::CachedRow>();
  std::memcpy(&row->tokens, p, 8);
  uint32_t dims = 0;
  std::memcpy(&dims, p + 8, 4);
  p += 12;
  if (static_cast<size_t>(p - raw.data()) + size_t{dims} * sizeof(float) != n) return nullptr;
  row->values.resize(dims);
  std::memcpy(row->values.data(), p, size_t{dims} * sizeof(float));
  return row;
}

std::unique_ptr<RedisCache::Conn> RedisCache::Take() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(options_.timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((options_.timeout.count() % 1000) * 1000);
  auto c = std::make_unique<Conn>();
  c->ctx = redisConnectWithTimeout(options_.host.c_str(), options_.port, tv);
  if (c->ctx == nullptr || c->ctx->err) return nullptr;
  redisSetTimeout(c->ctx, tv);
  return c;
}

void RedisCache::Give(std::unique_ptr<Conn> c) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (idle_.size() < static_cast<size_t>(std::max(1, options_.pool_size))) {
    idle_.push_back(std::move(c));
  }
}

std::vector<std::shared_ptr<const front::CachedRow>> RedisCache::Lookup(
    const std::vector<std::string>& materials) {
  std::vector<std::shared_ptr<const front::CachedRow>> out(materials.size());
  if (materials.empty()) return out;
  const auto now = Clock::now();
  if (!breaker_.Allow(now)) {
    skipped_ += materials.size();
    return out;
  }
  auto conn = Take();
  bool ok = conn != nullptr;
  for (size_t i = 0; ok && i < materials.size(); ++i) {
    const std::string key = Key(materials[i]);
    ok = redisAppendCommand(conn->ctx, "GET %b", key.data(), key.size()) == REDIS_OK;
  }
  size_t hits = 0;
  for (size_t i = 0; ok && i < materials.size(); ++i) {
    void* reply = nullptr;
    if (redisGetReply(conn->ctx, &reply) != REDIS_OK || reply == nullptr) {
      ok = false;
      break;
    }
    auto* r = static_cast<redisReply*>(reply);
    if (r->type == REDIS_REPLY_STRING) {
      bool collision = false;
      auto row = Decode(std::string_view(r->str, r->len), materials[i], &collision);
      if (collision) ++collisions_;
      if (row) {
        out[i] = std::move(row);
        ++hits;
      }
    } else if (r->type == REDIS_REPLY_ERROR) {
      ok = false;
    }
    freeReplyObject(r);
  }
  if (!ok) {
    errors_ += materials.size();
    breaker_.Record(Outcome::kFailure, Clock::now());
    std::fill(out.begin(), out.end(), nullptr);
    return out;  // the connection is dropped: it may hold unread replies
  }
  breaker_.Record(Outcome::kSuccess, Clock::now());
  hits_ += hits;
  misses_ += materials.size() - hits;
  Give(std::move(conn));
  return out;
}

void RedisCache::Store(const std::string& material, std::shared_ptr<const front::CachedRow> row) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (writes_.size() >= options_.max_pending_writes) {
    ++store_dropped_;
    return;
  }
  writes_.emplace_back(material, std::move(row));
  write_cv_.notify_one();
}

void RedisCache::WriterLoop() {
  for (;;) {
    std::deque<std::pair<std::string, std::shared_ptr<const front::CachedRow>>> batch;
    {
      std::unique_lock<std::mutex> lock(write_mu_);
      write_cv_.wait(lock, [this] { return stopping_ || !writes_.empty(); });
      if (stopping_) return;
      batch.swap(writes_);
    }
    if (!breaker_.Allow(Clock::now())) {
      store_dropped_ += batch.size();
      continue;
    }
    auto conn = Take();
    bool ok = conn != nullptr;
    const std::string ttl = std::to_string(options_.ttl.count());
    size_t queued = 0;
    for (const auto& [material, row] : batch) {
      if (!ok) break;
      const std::string key = Key(material);
      const std::string value = Encode(material, *row, options_.zstd_level);
      if (value.empty()) continue;
      ok = redisAppendCommand(conn->ctx, "SET %b %b EX %s", key.data(), key.size(), value.data(),
                              value.size(), ttl.c_str()) == REDIS_OK;
      if (ok) ++queued;
    }
    for (size_t i = 0; ok && i < queued; ++i) {
      void* reply = nullptr;
      if (redisGetReply(conn->ctx, &reply) != REDIS_OK || reply == nullptr) {
        ok = false;
        break;
      }
      auto* r = static_cast<redisReply*>(reply);
      if (r->type == REDIS_REPLY_ERROR) ok = false;
      freeReplyObject(r);
    }
    if (ok) {
      stored_ += queued;
      breaker_.Record(Outcome::kSuccess, Clock::now());
      Give(std::move(conn));
    } else {
      store_errors_ += batch.size();
      breaker_.Record(Outcome::kFailure, Clock::now());
    }
  }
}

RedisCache::Stats RedisCache::stats() const {
  Stats s;
  s.hits = hits_;
  s.misses = misses_;
  s.errors = errors_;
  s.skipped = skipped_;
  s.stored = stored_;
  s.store_errors = store_errors_;
  s.store_dropped = store_dropped_;
  s.collisions = collisions_;
  s.breaker_open = breaker_.snapshot(Clock::now()).state == BreakerState::kOpen;
  return s;
}

}  // namespace infermesh::gateway
