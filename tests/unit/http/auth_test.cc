#include "http/auth.h"

#include <gtest/gtest.h>

namespace infermesh::http {
namespace {

Request WithAuth(std::string value) {
  Request r;
  if (!value.empty()) r.headers.emplace_back("authorization", std::move(value));
  return r;
}

TEST(ConstantTimeEquals, ComparesBytesAndLengths) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secre"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(BearerAuth, OpenWithoutKeys) {
  BearerAuth open;
  EXPECT_FALSE(open.enabled());
  EXPECT_EQ(open.Check(WithAuth("")), AuthResult::kOk);
  EXPECT_EQ(BearerAuth({"", ""}).Check(WithAuth("")), AuthResult::kOk);
}

TEST(BearerAuth, MissingMalformedWrongAndRight) {
  BearerAuth auth({"key-one", "key-two"});
  EXPECT_EQ(auth.Check(WithAuth("")), AuthResult::kMissing);
  EXPECT_EQ(auth.Check(WithAuth("Basic a2V5LW9uZQ==")), AuthResult::kMissing);
  EXPECT_EQ(auth.Check(WithAuth("Bearer ")), AuthResult::kMissing);
  EXPECT_EQ(auth.Check(WithAuth("Bearer key-three")), AuthResult::kDenied);
  EXPECT_EQ(auth.Check(WithAuth("Bearer key-on")), AuthResult::kDenied);
  EXPECT_EQ(auth.Check(WithAuth("Bearer key-one")), AuthResult::kOk);
  EXPECT_EQ(auth.Check(WithAuth("bearer   key-two ")), AuthResult::kOk);
}

TEST(SplitKeyList, TrimsAndDropsEmpties) {
  EXPECT_EQ(SplitKeyList(" a, b ,,c "), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(SplitKeyList("").empty());
  EXPECT_TRUE(SplitKeyList(" , ").empty());
}

}  // namespace
}  // namespace infermesh::http
