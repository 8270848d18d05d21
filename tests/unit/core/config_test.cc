#include "core/config.h"

#include <gtest/gtest.h>

#include <fstream>

namespace infermesh {
namespace {

std::vector<ConfigKey> Keys() {
  return {{"worker.max_batch_tokens", "16384", ""},
          {"http.max_body", "2MiB", ""},
          {"http.timeout", "5s", ""},
          {"cache.enabled", "true", ""}};
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
