#include "core/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <string_view>

namespace infermesh {
namespace {

std::vector<ConfigKey> Keys() {
  return {{"worker.max_batch_tokens", "16384", ""},
          {"http.max_body", "2MiB", ""},
          {"http.timeout", "5s", ""},
          {"cache.enabled", "true", ""},
          {"worker.max_queue_delay", "0ms", ""},
          {"cache.fraction", "0.5", ""}};
}

std::string_view Trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value reaches each getter through the environment and through --set; both must
// reject it with InvalidArgument naming the key and the value, and never throw.
template <typename Get>
void ExpectRejected(const std::string& key, const std::string& value, Get get) {
  SCOPED_TRACE(key + "='" + value + "'");
  Config env(Keys());
  ASSERT_TRUE(env.LoadEnvironment({Config::EnvName(key) + "=" + value}).ok());
  Config flag(Keys());
  ASSERT_TRUE(flag.SetFromFlag(key + "=" + value).ok());
  for (Config* c : {&env, &flag}) {
    auto r = get(*c, key);
    ASSERT_FALSE(r.ok()) << "accepted as " << *r;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("'" + key + "'"), std::string::npos)
        << r.status().message();
    // --set trims, so the message quotes the trimmed value there.
    const std::string shown = c == &flag ? std::string(Trimmed(value)) : value;
    EXPECT_NE(r.status().message().find("'" + shown + "'"), std::string::npos)
        << r.status().message();
  }
}

TEST(ConfigTest, DefaultsThenFileThenEnvThenFlags) {
  Config c(Keys());
  EXPECT_EQ(*c.GetInt("worker.max_batch_tokens"), 16384);
  ASSERT_TRUE(c.LoadYamlString("worker:\n  max_batch_tokens: 100\nhttp:\n  max_body: 1KiB\n").ok());
  EXPECT_EQ(*c.GetInt("worker.max_batch_tokens"), 100);
  EXPECT_EQ(c.SourceOf("worker.max_batch_tokens"), "file");
  ASSERT_TRUE(c.LoadEnvironment(
                   {"INFERMESH_WORKER_MAX_BATCH_TOKENS=200", "PATH=/bin", "INFERMESH_UNRELATED=1"})
                  .ok());
  EXPECT_EQ(*c.GetInt("worker.max_batch_tokens"), 200);
  ASSERT_TRUE(c.SetFromFlag("worker.max_batch_tokens=300").ok());
  EXPECT_EQ(*c.GetInt("worker.max_batch_tokens"), 300);
  EXPECT_EQ(c.SourceOf("worker.max_batch_tokens"), "flag");
  EXPECT_EQ(*c.GetBytes("http.max_body"), 1024);
}

TEST(ConfigTest, UnknownKeysAndBadValuesAreErrors) {
  Config c(Keys());
  Status s = c.LoadYamlString("worker:\n  max_batch_tokenz: 1\n");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("max_batch_tokenz"), std::string::npos);
  EXPECT_FALSE(c.SetFromFlag("novalue").ok());
  EXPECT_FALSE(c.LoadYamlString("worker: [1, 2").ok());
  ASSERT_TRUE(c.SetFromFlag("worker.max_batch_tokens=12x").ok());
  auto bad = c.GetInt("worker.max_batch_tokens");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("12x"), std::string::npos);
  ASSERT_TRUE(c.SetFromFlag("cache.enabled=maybe").ok());
  EXPECT_FALSE(c.GetBool("cache.enabled").ok());
  EXPECT_EQ(c.LoadYamlFile("/nonexistent/x.yaml").code(), StatusCode::kNotFound);
}

TEST(ConfigTest, Units) {
  Config c(Keys());
  EXPECT_EQ(*c.GetMillis("http.timeout"), 5000);
  ASSERT_TRUE(c.SetFromFlag("http.timeout=250ms").ok());
  EXPECT_EQ(*c.GetMillis("http.timeout"), 250);
  ASSERT_TRUE(c.SetFromFlag("http.max_body=1.5GiB").ok());
  EXPECT_EQ(*c.GetBytes("http.max_body"), 1610612736);
  ASSERT_TRUE(c.SetFromFlag("http.max_body=3 parsecs").ok());
  EXPECT_FALSE(c.GetBytes("http.max_body").ok());
  EXPECT_EQ(Config::EnvName("http.max_body"), "INFERMESH_HTTP_MAX_BODY");
}

TEST(ConfigTest, DurationsAreParsedStrictly) {
  auto millis = [](const Config& c, const std::string& k) { return c.GetMillis(k); };
  const std::string many_nines(400, '9');
  for (const std::string& bad : std::vector<std::string>{
           "",       " ",        ".",      "..",  "1.2.3s", "1.2.3", "1e",
           "1e3",    "abc",      "10xs",   "s",   "ms",     "-5ms",  "+5ms",
           "5 ms s", "nan",      "inf",    "NaN", "0x10",   "1,5s",  "99999999999999999999999h",
           "1e400",  many_nines, "1.5.ms", "5\n", "5h6m"}) {
    ExpectRejected("worker.max_queue_delay", bad, millis);
  }
  Config c(Keys());
  const std::pair<const char*, int64_t> good[] = {
      {"0", 0},        {"0ms", 0},   {"250ms", 250}, {"5s", 5000},  {"1.5s", 1500}, {"2m", 120000},
      {"1h", 3600000}, {".5s", 500}, {"5.s", 5000},  {"10 ms", 10}, {"007", 7}};
  for (const auto& [text, want] : good) {
    ASSERT_TRUE(c.SetFromFlag(std::string("worker.max_queue_delay=") + text).ok());
    auto r = c.GetMillis("worker.max_queue_delay");
    ASSERT_TRUE(r.ok()) << text << ": " << r.status().ToString();
    EXPECT_EQ(*r, want) << text;
  }
}

TEST(ConfigTest, SizesAreParsedStrictly) {
  auto bytes = [](const Config& c, const std::string& k) { return c.GetBytes(k); };
  for (const char* bad : {"", ".", "1.2.3MiB", "1e", "1e6", "abc", "10xs", "MiB", "-1KiB", "inf",
                          "nan", "1KiB2", "9999999999GiB", "20000000000000000000"}) {
    ExpectRejected("http.max_body", bad, bytes);
  }
  Config c(Keys());
  ASSERT_TRUE(c.SetFromFlag("http.max_body=9223372036854775807").ok());
  EXPECT_EQ(*c.GetBytes("http.max_body"), 9223372036854775807LL);
  ASSERT_TRUE(c.SetFromFlag("http.max_body=64 MiB").ok());
  EXPECT_EQ(*c.GetBytes("http.max_body"), 64LL << 20);
  ASSERT_TRUE(c.SetFromFlag("http.max_body=10MB").ok());
  EXPECT_EQ(*c.GetBytes("http.max_body"), 10000000);
}

TEST(ConfigTest, IntegersAndNumbersAreParsedStrictly) {
  auto ints = [](const Config& c, const std::string& k) { return c.GetInt(k); };
  for (const char* bad :
       {"", ".", "1.5", "1e3", "abc", "12x", "0x10", "+1", "99999999999999999999", "nan", "1 2"}) {
    ExpectRejected("worker.max_batch_tokens", bad, ints);
  }
  auto doubles = [](const Config& c, const std::string& k) { return c.GetDouble(k); };
  for (const char* bad : {"", ".", "1.2.3", "1e", "abc", "10xs", "nan", "NaN", "inf", "-inf",
                          "infinity", "1e400", "0x1p3", "1,5", "- 1"}) {
    ExpectRejected("cache.fraction", bad, doubles);
  }
  Config c(Keys());
  const std::pair<const char*, double> good[] = {{"0.25", 0.25}, {"1", 1.0},  {"-2.5", -2.5},
                                                 {"1e-3", 1e-3}, {".5", 0.5}, {"3.", 3.0}};
  for (const auto& [text, want] : good) {
    ASSERT_TRUE(c.SetFromFlag(std::string("cache.fraction=") + text).ok());
    auto r = c.GetDouble("cache.fraction");
    ASSERT_TRUE(r.ok()) << text << ": " << r.status().ToString();
    EXPECT_DOUBLE_EQ(*r, want) << text;
  }
}

TEST(ConfigTest, BadValueFromYamlNamesKeyValueAndSource) {
  Config c(Keys());
  ASSERT_TRUE(c.LoadYamlString("worker:\n  max_queue_delay: 1.2.3s\n").ok());
  auto r = c.GetMillis("worker.max_queue_delay");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("'worker.max_queue_delay'"), std::string::npos);
  EXPECT_NE(r.status().message().find("'1.2.3s'"), std::string::npos);
  EXPECT_NE(r.status().message().find("file"), std::string::npos) << r.status().message();
}

TEST(ConfigTest, EveryDeclaredKeyIsDocumented) {
  std::ifstream f(std::string(INFERMESH_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(f) << "docs/configuration.md is missing";
  std::string doc((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (const auto& k : DeclaredConfigKeys()) {
    EXPECT_NE(doc.find("`" + k.key + "`"), std::string::npos) << k.key << " is not documented";
  }
  Config defaults = Config::WithDefaults();
  EXPECT_TRUE(defaults.GetInt("runtime.intra_op_threads").ok());
}

}  // namespace
}  // namespace infermesh
