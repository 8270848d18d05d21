// RedisCache against a real redis-server started by the test on a free port (Debian's
// redis-server, installed by scripts/install-deps.sh), killed and restarted mid-test.
#include "gateway/redis_cache.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

extern char** environ;

namespace infermesh::gateway {
namespace {

using namespace std::chrono_literals;

constexpr const char* kRedisServer = "/usr/bin/redis-server";

uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class RedisServer {
 public:
  explicit RedisServer(uint16_t port) : port_(port) { Start(); }
  ~RedisServer() { Kill(); }
  void Start() {
    const std::string p = std::to_string(port_);
    std::vector<std::string> args = {kRedisServer, "--port",     p,        "--bind",
                                     "127.0.0.1",  "--save",     "",       "--appendonly",
                                     "no",         "--loglevel", "warning"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, kRedisServer, nullptr, nullptr, argv.data(), environ), 0);
    for (int i = 0; i < 200; ++i) {  // until it accepts connections
      timeval tv{0, 100000};
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
      const bool up = c && !c->err;
      if (c) redisFree(c);
      if (up) return;
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "redis-server did not start on port " << port_;
  }
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  uint16_t port() const { return port_; }

 private:
  uint16_t port_;
  pid_t pid_ = -1;
};

front::CachedRow Row(float base, int64_t tokens) {
  front::CachedRow r;
  for (int i = 0; i < 8; ++i) r.values.push_back(base + float(i) * 0.25f);
  r.tokens = tokens;
  return r;
}

bool WaitStored(RedisCache& c, uint64_t n) {
  for (int i = 0; i < 200 && c.stats().stored < n; ++i) std::this_thread::sleep_for(10ms);
  return c.stats().stored >= n;
}

TEST(RedisCacheCodec, RoundTripsAndConfirmsTheKey) {
  const auto row = Row(1.5f, 7);
  const std::string v = RedisCache::Encode("material-a", row, 1);
  bool collision = false;
  auto back = RedisCache::Decode(v, "material-a", &collision);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->values, row.values);
  EXPECT_EQ(back->tokens, 7);
  EXPECT_FALSE(RedisCache::Decode(v, "material-b", &collision));
  EXPECT_TRUE(collision);
  EXPECT_FALSE(RedisCache::Decode("not zstd at all", "material-a", &collision));
  EXPECT_FALSE(RedisCache::Decode(v.substr(0, v.size() / 2), "material-a", &collision));
}

TEST(RedisCacheUrl, ParsesHostPortOnly) {
  auto o = ParseRedisUrl("redis://10.0.0.5:6380");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->host, "10.0.0.5");
  EXPECT_EQ(o->port, 6380);
  EXPECT_TRUE(ParseRedisUrl("localhost:6379").ok());
  EXPECT_FALSE(ParseRedisUrl("redis://user:pw@host:6379").ok());
  EXPECT_FALSE(ParseRedisUrl("redis://host:6379/2").ok());
  EXPECT_FALSE(ParseRedisUrl("redis://host").ok());
}

class RedisCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kRedisServer, X_OK) != 0) {
      GTEST_SKIP() << "redis-server is not installed (scripts/install-deps.sh installs it)";
    }
    server_ = std::make_unique<RedisServer>(FreePort());
    RedisOptions o;
    o.port = server_->port();
    o.timeout = 100ms;
    o.breaker.open_timeout = 300ms;
    cache_ = std::make_unique<RedisCache>(o);
  }
  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisCache> cache_;
};

TEST_F(RedisCacheTest, StoresAndFindsRowsInOnePipelinedLookup) {
  cache_->Store("a", std::make_shared<front::CachedRow>(Row(1, 3)));
  cache_->Store("b", std::make_shared<front::CachedRow>(Row(2, 4)));
  ASSERT_TRUE(WaitStored(*cache_, 2));
  auto got = cache_->Lookup({"b", "missing", "a"});
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(got[0] && got[2]);
  EXPECT_FALSE(got[1]);
  EXPECT_EQ(got[0]->values, Row(2, 4).values);
  EXPECT_EQ(got[2]->tokens, 3);
  const auto s = cache_->stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.errors, 0u);
}

TEST_F(RedisCacheTest, AValueForAnotherKeyIsAMissNotAWrongRow) {
  // Plant material "x"'s value under the key of material "y", as a hash collision would.
  redisContext* c = redisConnect("127.0.0.1", server_->port());
  ASSERT_TRUE(c && !c->err);
  const std::string key = cache_->Key("y");
  const std::string value = RedisCache::Encode("x", Row(9, 1), 1);
  auto* r = static_cast<redisReply*>(
      redisCommand(c, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
  freeReplyObject(r);
  redisFree(c);
  auto got = cache_->Lookup({"y"});
  EXPECT_FALSE(got[0]);
  EXPECT_EQ(cache_->stats().collisions, 1u);
}

TEST_F(RedisCacheTest, ADeadRedisIsMissesQuicklyThenSkippedThenBack) {
  cache_->Store("k", std::make_shared<front::CachedRow>(Row(5, 2)));
  ASSERT_TRUE(WaitStored(*cache_, 1));
  server_->Kill();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto got = cache_->Lookup({"k"});
    EXPECT_FALSE(got[0]);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  auto s = cache_->stats();
  EXPECT_EQ(s.errors, 3u);   // the breaker opened after three failures...
  EXPECT_EQ(s.skipped, 2u);  // ...and the next lookups did not touch Redis
  EXPECT_TRUE(s.breaker_open);
  // Back (empty: restarted without persistence), and used again after the open period.
  server_->Start();
  std::this_thread::sleep_for(350ms);
  EXPECT_FALSE(cache_->Lookup({"k"})[0]);
  cache_->Store("k", std::make_shared<front::CachedRow>(Row(5, 2)));
  ASSERT_TRUE(WaitStored(*cache_, 2));
  EXPECT_TRUE(cache_->Lookup({"k"})[0]);
  EXPECT_FALSE(cache_->stats().breaker_open);
}

}  // namespace
}  // namespace infermesh::gateway
