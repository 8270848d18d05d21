// The one Status → HTTP mapping (http/api/api_error.h), over every StatusCode and every
// API family, and the error types of server-generated statuses.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "http/api/api_error.h"

namespace infermesh::http::api {
namespace {

// Every StatusCode, by its numeric range: a code added to core must get a row below.
std::vector<StatusCode> AllCodes() {
  std::vector<StatusCode> out;
  for (int c = static_cast<int>(StatusCode::kOk); c <= static_cast<int>(StatusCode::kDataLoss);
       ++c) {
    out.push_back(static_cast<StatusCode>(c));
  }
  return out;
}

struct Row {
  int status;
  std::string_view type;
};

Row Expected(StatusCode c) {
  switch (c) {
    case StatusCode::kOk:
      return {500, kTeiBackend};
    case StatusCode::kCancelled:
      return {499, kCancelledType};
    case StatusCode::kInvalidArgument:
      return {413, kTeiValidation};
    case StatusCode::kDeadlineExceeded:
      return {504, kTeiOverloaded};
    case StatusCode::kNotFound:
      return {404, kTeiValidation};
    case StatusCode::kAlreadyExists:
      return {409, kTeiValidation};
    case StatusCode::kResourceExhausted:
      return {429, kTeiOverloaded};
    case StatusCode::kFailedPrecondition:
      return {424, kTeiBackend};
    case StatusCode::kOutOfRange:
      return {413, kTeiValidation};
    case StatusCode::kUnimplemented:
      return {424, kTeiBackend};
    case StatusCode::kInternal:
      return {500, kTeiBackend};
    case StatusCode::kUnavailable:
      return {503, kTeiUnhealthy};
    case StatusCode::kDataLoss:
      return {500, kTeiBackend};
  }
  return {0, ""};
}

TEST(ApiStatusMapping, EveryCodeHasItsTeiStatusAndType) {
  for (StatusCode c : AllCodes()) {
    SCOPED_TRACE(std::string(StatusCodeName(c)));
    const ApiError e = ApiErrorFromStatus(Status(c, "what happened"));
    const Row want = Expected(c);
    EXPECT_EQ(e.status, want.status);
    EXPECT_EQ(e.type, want.type);
    if (c != StatusCode::kOk) {
      EXPECT_EQ(e.message, "what happened");
    }
    EXPECT_FALSE(e.message.empty());
  }
}

TEST(ApiStatusMapping, ServerFailuresAreNeverLabelledValidation) {
  for (StatusCode c : AllCodes()) {
    SCOPED_TRACE(std::string(StatusCodeName(c)));
    const ApiError e = ApiErrorFromStatus(Status(c, "x"));
    if (e.status >= 500) {
      EXPECT_NE(e.type, kTeiValidation);
    }
  }
  for (int s : {500, 501, 502, 503, 504, 424})
    EXPECT_NE(TeiErrorTypeForHttpStatus(s), kTeiValidation);
  EXPECT_EQ(TeiErrorTypeForHttpStatus(500), kTeiBackend);
  EXPECT_EQ(TeiErrorTypeForHttpStatus(503), kTeiUnhealthy);
  EXPECT_EQ(TeiErrorTypeForHttpStatus(429), kTeiOverloaded);
  EXPECT_EQ(TeiErrorTypeForHttpStatus(413), kTeiValidation);
  EXPECT_EQ(TeiErrorTypeForHttpStatus(400), kTeiValidation);
}

TEST(ApiStatusMapping, DeadlineIsOneStatusInEveryFamily) {
  for (ApiFamily f : {ApiFamily::kTei, ApiFamily::kOpenAi, ApiFamily::kKServe}) {
    EXPECT_EQ(ForApi(ApiErrorFromStatus(DeadlineExceeded("late")), f).status, 504);
  }
}

TEST(ApiStatusMapping, FamiliesTakeTheStatusFromTheMapping) {
  for (StatusCode c : AllCodes()) {
    SCOPED_TRACE(std::string(StatusCodeName(c)));
    const ApiError tei = ApiErrorFromStatus(Status(c, "x"));
    EXPECT_EQ(ForApi(tei, ApiFamily::kTei), tei);
    for (ApiFamily f : {ApiFamily::kOpenAi, ApiFamily::kKServe}) {
      const ApiError e = ForApi(tei, f);
      EXPECT_EQ(e.message, tei.message);
      if (tei.status == 413 || tei.status == 422) {
        EXPECT_EQ(e.status, 400);  // a request error
      } else if (tei.status == 424) {
        EXPECT_EQ(e.status, 500);  // a backend failure is a server error
      } else {
        EXPECT_EQ(e.status, tei.status);
      }
    }
  }
  EXPECT_EQ(ForApi(TeiTokenizerError("x"), ApiFamily::kOpenAi).status, 400);
  EXPECT_EQ(ForApi(TeiEmptyError("x"), ApiFamily::kKServe).status, 400);
}

TEST(ApiStatusMapping, OpenAiBodyTypeFollowsTheStatus) {
  auto type_of = [](StatusCode c) {
    const ApiError e = ForApi(ApiErrorFromStatus(Status(c, "x")), ApiFamily::kOpenAi);
    auto v = boost::json::parse(OpenAiErrorBody(e)).as_object();
    return std::string(v.at("error").at("type").as_string());
  };
  EXPECT_EQ(type_of(StatusCode::kInternal), "server_error");
  EXPECT_EQ(type_of(StatusCode::kDeadlineExceeded), "server_error");
  EXPECT_EQ(type_of(StatusCode::kResourceExhausted), "rate_limit_error");
  EXPECT_EQ(type_of(StatusCode::kInvalidArgument), "invalid_request_error");
}

}  // namespace
}  // namespace infermesh::http::api
