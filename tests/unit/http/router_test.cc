#include "http/router.h"

#include <gtest/gtest.h>

namespace infermesh::http {
namespace {

Handler Tag(int* out, int value) {
  return [out, value](Request&, Responder) { *out = value; };
}

int Call(const Router& router, std::string_view method, std::string_view path,
         std::map<std::string, std::string>* params = nullptr) {
  Router::Match m = router.Find(method, path, params);
  if (m.handler == nullptr) return -m.status;
  Request req;
  (*m.handler)(req, Responder());  // writes its tag through the captured pointer
  return 0;
}

TEST(RouterTest, ExactParamsAndStatuses) {
  Router router;
  int tag = 0;
  router.Add("GET", "/health", Tag(&tag, 1));
  router.Add("POST", "/v2/models/{model}/infer", Tag(&tag, 2));
  router.Add("GET", "/v2/models/{model}", Tag(&tag, 3));
  router.Add("GET", "/", Tag(&tag, 4));

  EXPECT_EQ(Call(router, "GET", "/health"), 0);
  EXPECT_EQ(tag, 1);
  std::map<std::string, std::string> params;
  EXPECT_EQ(Call(router, "POST", "/v2/models/bge/infer", &params), 0);
  EXPECT_EQ(tag, 2);
  EXPECT_EQ(params.at("model"), "bge");
  Router::Match m = router.Find("POST", "/v2/models/bge/infer", nullptr);
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(*m.route, "/v2/models/{model}/infer");
  EXPECT_EQ(Call(router, "GET", "/v2/models/x%2Fy", &params), 0);
  EXPECT_EQ(tag, 3);
  EXPECT_EQ(params.at("model"), "x/y");
  EXPECT_EQ(Call(router, "GET", "/"), 0);
  EXPECT_EQ(tag, 4);

  EXPECT_EQ(Call(router, "GET", "/nope"), -404);
  EXPECT_EQ(Call(router, "GET", "/health/"), -404);
  EXPECT_EQ(Call(router, "GET", "/v2/models/"), -404);  // empty segment is not a param
  EXPECT_EQ(Call(router, "GET", "/v2/models/bge/infer/x"), -404);
  EXPECT_EQ(Call(router, "", "/health"), -405);  // known path, no such method

  m = router.Find("POST", "/health", nullptr);
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.allow, "GET");
  m = router.Find("DELETE", "/v2/models/bge/infer", nullptr);
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.allow, "POST");
}

TEST(RouterTest, ExactBeatsParamAndMethodSelectsBranch) {
  Router router;
  int tag = 0;
  router.Add("GET", "/jobs/{id}", Tag(&tag, 1));
  router.Add("DELETE", "/jobs/{id}", Tag(&tag, 2));
  router.Add("GET", "/jobs/stats", Tag(&tag, 3));
  std::map<std::string, std::string> params;
  EXPECT_EQ(Call(router, "GET", "/jobs/stats", &params), 0);
  EXPECT_EQ(tag, 3);
  EXPECT_TRUE(params.empty());
  EXPECT_EQ(Call(router, "GET", "/jobs/42", &params), 0);
  EXPECT_EQ(tag, 1);
  EXPECT_EQ(params.at("id"), "42");
  // The exact route lacks DELETE, the param route has it: the param route wins.
  EXPECT_EQ(Call(router, "DELETE", "/jobs/stats", &params), 0);
  EXPECT_EQ(tag, 2);
  EXPECT_EQ(params.at("id"), "stats");
  Router::Match m = router.Find("PUT", "/jobs/42", nullptr);
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.allow, "DELETE, GET");
}

TEST(RouterTest, ReplaceAndList) {
  Router router;
  int tag = 0;
  router.Add("GET", "/a/{x}/b/{y}", Tag(&tag, 1));
  router.Add("GET", "/a/{x}/b/{y}", Tag(&tag, 2));
  router.Add("POST", "/a", Tag(&tag, 3));
  std::map<std::string, std::string> params;
  EXPECT_EQ(Call(router, "GET", "/a/1/b/2", &params), 0);
  EXPECT_EQ(tag, 2);
  EXPECT_EQ(params.at("x"), "1");
  EXPECT_EQ(params.at("y"), "2");
  EXPECT_EQ(router.Routes(), (std::vector<std::string>{"GET /a/{x}/b/{y}", "POST /a"}));
}

TEST(RouterTest, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%20b"), "a b");
  EXPECT_EQ(PercentDecode("%41%4a%4A"), "AJJ");
  EXPECT_EQ(PercentDecode("100%"), "100%");
  EXPECT_EQ(PercentDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(PercentDecode("a+b"), "a+b");
}

}  // namespace
}  // namespace infermesh::http
