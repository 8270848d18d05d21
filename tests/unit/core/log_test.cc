#include "core/log.h"

#include <gtest/gtest.h>

namespace infermesh::log {
namespace {

TEST(LogTest, LogfmtQuotesWhatNeedsQuoting) {
  std::string line =
      FormatEvent(Level::kInfo, "model loaded", {{"model", "bge small"}, {"ms", 12}, {"ok", true}},
                  Format::kLogfmt);
  EXPECT_NE(line.find("level=info msg=\"model loaded\" model=\"bge small\" ms=12 ok=true"),
            std::string::npos)
      << line;
}

TEST(LogTest, JsonEscapes) {
  std::string line = FormatEvent(Level::kError, "bad \"input\"\n", {{"n", 1.5}}, Format::kJson);
  EXPECT_NE(line.find("\"level\":\"error\",\"msg\":\"bad \\\"input\\\"\\n\",\"n\":1.5}"),
            std::string::npos)
      << line;
}

TEST(LogTest, LevelFiltering) {
  Config c = Config::WithDefaults();
  ASSERT_TRUE(c.SetFromFlag("log.level=warn").ok());
  ASSERT_TRUE(Configure(c).ok());
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kError));
  ASSERT_TRUE(c.SetFromFlag("log.level=loud").ok());
  EXPECT_FALSE(Configure(c).ok());
  SetLevel(Level::kInfo);
}

}  // namespace
}  // namespace infermesh::log
