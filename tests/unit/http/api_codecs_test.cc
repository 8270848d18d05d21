// TEI, OpenAI and seed codecs: round trips and every error path.
#include <bit>
#include <cstring>
#include <limits>
#include <string>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "http/api/api_error.h"
#include "http/api/openai.h"
#include "http/api/seed.h"
#include "http/api/tei.h"

namespace infermesh::http::api {
namespace {

template <typename T>
ApiError ErrorOf(const ApiResult<T>& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? ApiError{} : r.error();
}

TEST(ApiTei, EmbedRequestDefaultsAndFields) {
  auto r = ParseTeiEmbedRequest(R"({"inputs":"hello"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->inputs, std::vector<std::string>{"hello"});
  EXPECT_TRUE(r->single);
  EXPECT_TRUE(r->normalize);
  EXPECT_FALSE(r->truncate.has_value());
  EXPECT_EQ(r->truncation_direction, TruncationDirection::kRight);

  r = ParseTeiEmbedRequest(
      R"({"inputs":["a","b"],"truncate":true,"truncation_direction":"left","normalize":false,)"
      R"("unknown":1,"prompt_name":null})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->inputs.size(), 2u);
  EXPECT_FALSE(r->single);
  EXPECT_EQ(r->truncate, true);
  EXPECT_FALSE(r->normalize);
  EXPECT_EQ(r->truncation_direction, TruncationDirection::kLeft);
  EXPECT_TRUE(ParseTeiEmbedRequest(R"({"inputs":"x","truncation_direction":"Left"})").ok());
}

TEST(ApiTei, EmbedRequestErrors) {
  // Malformed JSON: 400 (axum JsonSyntaxError), with the byte offset.
  ApiError e = ErrorOf(ParseTeiEmbedRequest(R"({"inputs": "a",)"));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("malformed JSON"), std::string::npos) << e.message;
  EXPECT_EQ(ErrorOf(ParseTeiEmbedRequest("")).status, 400);
  EXPECT_EQ(ErrorOf(ParseTeiEmbedRequest(R"({"inputs":"a"} x)")).status, 400);
  EXPECT_EQ(ErrorOf(ParseTeiEmbedRequest("{\"inputs\":\"\xFF\"}")).status, 400);  // bad UTF-8
  // Too deep.
  std::string deep = R"({"inputs":)" + std::string(100, '[') + std::string(100, ']') + "}";
  e = ErrorOf(ParseTeiEmbedRequest(deep));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("nesting deeper than 32"), std::string::npos) << e.message;
  // Wrong types / missing: 422 (axum JsonDataError).
  e = ErrorOf(ParseTeiEmbedRequest(R"([1])"));
  EXPECT_EQ(e.status, 422);
  e = ErrorOf(ParseTeiEmbedRequest(R"({"input":"a"})"));
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.message, "missing field `inputs`");
  e = ErrorOf(ParseTeiEmbedRequest(R"({"inputs":["a",3]})"));
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.param, "inputs[1]");
  EXPECT_EQ(e.message, "`inputs[1]`: expected a string, got number");
  e = ErrorOf(ParseTeiEmbedRequest(R"({"inputs":"a","normalize":"yes"})"));
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.message, "`normalize`: expected a boolean, got string \"yes\"");
  e = ErrorOf(ParseTeiEmbedRequest(R"({"inputs":"a","truncation_direction":"up"})"));
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.param, "truncation_direction");
  // Empty batch: 400 Empty.
  e = ErrorOf(ParseTeiEmbedRequest(R"({"inputs":[]})"));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.type, "Empty");
  // Too many inputs: 413 Validation.
  ParseLimits limits;
  limits.max_inputs = 2;
  e = ErrorOf(ParseTeiEmbedRequest(R"({"inputs":["a","b","c"]})", limits));
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.type, "Validation");
  EXPECT_EQ(e.message, "batch size 3 > maximum allowed batch size 2");
  // prompt_name: 413 Validation.
  e = ErrorOf(ParseTeiEmbedRequest(R"({"inputs":"a","prompt_name":"query"})"));
  EXPECT_EQ(e.status, 413);
}

TEST(ApiTei, EmbedResponseRoundTrip) {
  std::vector<float> m = {0.1f, -0.0f, 1e-45f, 3.4028235e38f, 0.5f, -2.0f};
  auto json = SerializeTeiEmbedResponse(FloatRowsView(m.data(), 2, 3));
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(*json, "[[0.1,-0.0,1e-45],[3.4028235e+38,0.5,-2]]");
  auto back = ParseTeiEmbedResponse(*json);
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->size(), 2u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>((*back)[i / 3][i % 3]), std::bit_cast<uint32_t>(m[i]));
  }
  m[4] = std::numeric_limits<float>::quiet_NaN();
  ApiError e = ErrorOf(SerializeTeiEmbedResponse(FloatRowsView(m.data(), 2, 3)));
  EXPECT_EQ(e.status, 424);
  EXPECT_EQ(e.type, "Backend");
  EXPECT_EQ(e.message, "embedding 1 has a non-finite value at 1 (NaN/Inf cannot be JSON)");
  EXPECT_EQ(*SerializeTeiEmbedResponse(FloatRowsView()), "[]");
}

TEST(ApiTei, TokenizeAndInfo) {
  auto r = ParseTeiTokenizeRequest(R"({"inputs":["x"],"add_special_tokens":false})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->add_special_tokens);
  EXPECT_TRUE(ParseTeiTokenizeRequest(R"({"inputs":"x"})")->add_special_tokens);
  EXPECT_EQ(ErrorOf(ParseTeiTokenizeRequest(R"({"inputs":"x","add_special_tokens":1})")).status,
            422);
  std::vector<std::vector<TeiToken>> toks = {
      {{101, "[CLS]", true, std::nullopt, std::nullopt}, {7592, "hello", false, 0, 5}}};
  EXPECT_EQ(SerializeTeiTokenizeResponse(toks),
            R"([[{"id":101,"text":"[CLS]","special":true,"start":null,"stop":null},)"
            R"({"id":7592,"text":"hello","special":false,"start":0,"stop":5}]])");
  TeiInfo info;
  info.model_id = "bge";
  info.max_batch_tokens = 16384;
  info.max_client_batch_size = 32;
  info.version = "0.1.0";
  auto v = boost::json::parse(SerializeTeiInfo(info)).as_object();
  EXPECT_EQ(v["model_id"], "bge");
  EXPECT_EQ(v["model_type"].at("embedding").at("pooling"), "cls");
  EXPECT_TRUE(v["max_batch_requests"].is_null());
  EXPECT_EQ(v["max_batch_tokens"], 16384);
  for (const char* k : {"model_dtype", "max_concurrent_requests", "max_input_length",
                        "max_client_batch_size", "tokenization_workers", "version"}) {
    EXPECT_TRUE(v.contains(k)) << k;
  }
}

TEST(ApiErrors, Bodies) {
  ApiError e = TeiOverloadedError("queue \"full\"");
  EXPECT_EQ(TeiErrorBody(e), R"({"error":"queue \"full\"","error_type":"Overloaded"})");
  EXPECT_EQ(OpenAiErrorBody(e),
            R"({"error":{"message":"queue \"full\"","type":"rate_limit_error","param":null,)"
            R"("code":"Overloaded"}})");
  EXPECT_EQ(KServeErrorBody(e), R"({"error":"queue \"full\""})");
  EXPECT_EQ(ApiErrorFromStatus(ResourceExhausted("x")).status, 429);
  EXPECT_EQ(ApiErrorFromStatus(InvalidArgument("x")).status, 413);
  EXPECT_EQ(ApiErrorFromStatus(Unavailable("x")).status, 503);
  EXPECT_EQ(ApiErrorFromStatus(DeadlineExceeded("x")).status, 504);
  EXPECT_EQ(ApiErrorFromStatus(Internal("x")).status, 500);
  EXPECT_EQ(ApiErrorFromStatus(NotFound("x")).status, 404);
  EXPECT_EQ(TeiTokenizerError("x").status, 422);
  EXPECT_EQ(TeiUnhealthyError("x").status, 503);
  EXPECT_EQ(TeiEmptyError("x").status, 400);
}

TEST(ApiOpenAi, RequestShapes) {
  auto r = ParseOpenAiEmbeddingRequest(R"({"input":"hi","model":"bge"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->texts, std::vector<std::string>{"hi"});
  EXPECT_EQ(r->model, "bge");
  EXPECT_EQ(r->encoding_format, EncodingFormat::kFloat);
  r = ParseOpenAiEmbeddingRequest(
      R"({"input":["a","b"],"model":"m","encoding_format":"base64","dimensions":8,"user":"u"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 2u);
  EXPECT_EQ(r->encoding_format, EncodingFormat::kBase64);
  EXPECT_EQ(r->dimensions, 8);
  EXPECT_EQ(r->user, "u");
  r = ParseOpenAiEmbeddingRequest(R"({"input":[1,2,3]})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->is_tokens());
  EXPECT_EQ(r->token_ids, (std::vector<std::vector<uint32_t>>{{1, 2, 3}}));
  r = ParseOpenAiEmbeddingRequest(R"({"input":[[1],[4294967295]],"encoding_format":null})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 2u);
}

TEST(ApiOpenAi, RequestErrors) {
  const auto err = [](std::string_view body) { return ErrorOf(ParseOpenAiEmbeddingRequest(body)); };
  ApiError e = err("{");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.type, "invalid_request_error");
  e = err(R"({"model":"m"})");
  EXPECT_EQ(e.param, "input");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(err(R"({"input":[]})").message, "`input` must not be empty");
  EXPECT_EQ(err(R"({"input":{}})").param, "input");
  EXPECT_EQ(err(R"({"input":["a",1]})").param, "input[1]");
  EXPECT_EQ(err(R"({"input":[1,"a"]})").param, "input[1]");
  EXPECT_EQ(err(R"({"input":[1,-1]})").param, "input[1]");
  EXPECT_EQ(err(R"({"input":[1,4294967296]})").param, "input[1]");
  EXPECT_EQ(err(R"({"input":[1,1.5]})").param, "input[1]");
  EXPECT_EQ(err(R"({"input":[[1],[]]})").param, "input[1]");
  EXPECT_EQ(err(R"({"input":[[1],[2,"x"]]})").param, "input[1][1]");
  EXPECT_EQ(err(R"({"input":[[1],2]})").param, "input[1]");
  EXPECT_EQ(err(R"({"input":[null]})").param, "input[0]");
  EXPECT_EQ(err(R"({"input":"a","encoding_format":"int8"})").param, "encoding_format");
  EXPECT_EQ(err(R"({"input":"a","dimensions":0})").param, "dimensions");
  EXPECT_EQ(err(R"({"input":"a","dimensions":-3})").param, "dimensions");
  EXPECT_EQ(err(R"({"input":"a","dimensions":1.5})").param, "dimensions");
  EXPECT_EQ(err(R"({"input":"a","dimensions":18446744073709551615})").param, "dimensions");
  EXPECT_EQ(err(R"({"input":"a","model":5})").param, "model");
  ParseLimits limits;
  limits.max_inputs = 1;
  EXPECT_EQ(ErrorOf(ParseOpenAiEmbeddingRequest(R"({"input":["a","b"]})", limits)).status, 400);
  auto body = boost::json::parse(OpenAiErrorBody(err(R"({"input":[]})"))).as_object();
  EXPECT_EQ(body["error"].at("param"), "input");
  EXPECT_EQ(body["error"].at("type"), "invalid_request_error");
}

TEST(ApiOpenAi, ResponseFloatAndBase64Agree) {
  std::vector<float> m = {0.25f, -1e-45f, 1.0f / 3, 7.0f};
  OpenAiEmbeddingResponse resp{FloatRowsView(m.data(), 2, 2), "bge", EncodingFormat::kFloat, 9};
  auto f = SerializeOpenAiEmbeddingResponse(resp);
  ASSERT_TRUE(f.ok());
  resp.encoding_format = EncodingFormat::kBase64;
  auto b = SerializeOpenAiEmbeddingResponse(resp);
  ASSERT_TRUE(b.ok());
  auto fj = boost::json::parse(*f).as_object();
  auto bj = boost::json::parse(*b).as_object();
  EXPECT_EQ(fj["object"], "list");
  EXPECT_EQ(fj["model"], "bge");
  EXPECT_EQ(fj["usage"].at("prompt_tokens"), 9);
  EXPECT_EQ(fj["usage"].at("total_tokens"), 9);
  for (size_t i = 0; i < 2; ++i) {
    const auto& fd = fj["data"].as_array()[i].as_object();
    const auto& bd = bj["data"].as_array()[i].as_object();
    EXPECT_EQ(fd.at("object"), "embedding");
    EXPECT_EQ(fd.at("index"), static_cast<int64_t>(i));
    auto decoded = Base64DecodeFloats(bd.at("embedding").as_string());
    ASSERT_TRUE(decoded.has_value());
    ASSERT_EQ(decoded->size(), 2u);
    for (size_t k = 0; k < 2; ++k) {
      const float from_text =
          static_cast<float>(fd.at("embedding").as_array()[k].to_number<double>());
      EXPECT_EQ(std::bit_cast<uint32_t>(from_text), std::bit_cast<uint32_t>((*decoded)[k]));
      EXPECT_EQ(std::bit_cast<uint32_t>(from_text), std::bit_cast<uint32_t>(m[i * 2 + k]));
    }
  }
  m[2] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(ErrorOf(SerializeOpenAiEmbeddingResponse(resp)).status, 424);
  resp.encoding_format = EncodingFormat::kFloat;
  EXPECT_EQ(ErrorOf(SerializeOpenAiEmbeddingResponse(resp)).status, 424);
  EXPECT_NE(OpenAiErrorBody(TeiBackendError("x")).find("server_error"), std::string::npos);
}

TEST(ApiSeed, ThreadPoolsSummaryIsComputedFromTheRows) {
  const std::vector<SeedThreadPool> pools = {
      {"io", 1, 5, 0, 9},  // active counts requests: capped at workers for utilization
      {"tokenize", 1, 0, 2, 3},
      {"inference:bge", 1, 1, 4, 7},
      {"intra_op", 2, 2, 0, 0}};
  const SeedThreadPoolSummary s = SummarizeThreadPools(pools);
  EXPECT_EQ(s.total_workers, 5);
  EXPECT_EQ(s.total_active, 8);
  EXPECT_EQ(s.total_queued, 6);
  EXPECT_DOUBLE_EQ(s.utilization_percent, 80.0);  // (1 + 0 + 1 + 2) / 5
  auto v = boost::json::parse(SerializeSeedThreadPools(pools)).as_object();
  ASSERT_EQ(v.at("pools").as_array().size(), 4u);
  EXPECT_EQ(v.at("pools").at(2).at("name"), "inference:bge");
  EXPECT_EQ(v.at("pools").at(2).at("queue"), 4);
  EXPECT_EQ(v.at("summary").at("total_active"), 8);
  EXPECT_DOUBLE_EQ(v.at("summary").at("utilization_percent").to_number<double>(), 80.0);
  const SeedThreadPoolSummary idle = SummarizeThreadPools(std::vector<SeedThreadPool>{});
  EXPECT_EQ(idle.total_workers, 0);
  EXPECT_EQ(idle.utilization_percent, 0.0);
  EXPECT_NE(SerializeSeedThreadPools({}).find("\"utilization_percent\":0"), std::string::npos);
}

TEST(ApiSeed, InferRoundTripAndErrors) {
  auto r = ParseSeedInferRequest(R"({"request_id":"r1","input_data":[1,2.5,-0.0,1e-45]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->request_id, "r1");
  ASSERT_EQ(r->input_data.size(), 4u);
  EXPECT_EQ(std::bit_cast<uint32_t>(r->input_data[2]), 0x80000000u);
  EXPECT_EQ(std::bit_cast<uint32_t>(r->input_data[3]), 1u);
  const auto err = [](std::string_view body) { return ErrorOf(ParseSeedInferRequest(body)); };
  EXPECT_EQ(err(R"({"request_id":"r"})").message, "missing field `input_data`");
  EXPECT_EQ(err(R"({"input_data":[]})").status, 400);
  EXPECT_EQ(err(R"({"input_data":[1,"NaN"]})").param, "input_data[1]");
  EXPECT_NE(err(R"({"input_data":[1,"NaN"]})").message.find("NaN"), std::string::npos);
  EXPECT_EQ(err(R"({"input_data":[1e39]})").message,
            "`input_data[0]`: number out of float32 range");
  EXPECT_EQ(err(R"({"input_data":[1e999]})").status, 400);
  EXPECT_EQ(err(R"({"input_data":[1],"request_id":3})").param, "request_id");
  ParseLimits limits;
  limits.max_tensor_elements = 2;
  EXPECT_EQ(ErrorOf(ParseSeedInferRequest(R"({"input_data":[1,2,3]})", limits)).status, 400);

  const float out[] = {0.5f, 2.0f};
  auto json = SerializeSeedInferResponse({"r1", out, "node-a", true, 123});
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(*json, R"({"request_id":"r1","output_data":[0.5,2],"node_id":"node-a","cached":true,)"
                   R"("inference_time_us":123})");
  const float nan[] = {std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(ErrorOf(SerializeSeedInferResponse({"r", nan, "n", false, 0})).status, 424);
}

TEST(ApiSeed, Health) {
  SeedHealth h;
  h.node_id = "n1";
  h.total_requests = 10;
  h.cache_hits = 5;
  h.cache_size = 3;
  h.cache_hit_rate = 0.5;
  h.batch_processor = {4, 2.5, 1, 3};
  EXPECT_EQ(SerializeSeedHealth(h),
            R"({"healthy":true,"node_id":"n1","total_requests":10,"cache_hits":5,)"
            R"("cache_size":3,"cache_hit_rate":0.5,"batch_processor":{"total_batches":4,)"
            R"("avg_batch_size":2.5,"timeout_batches":1,"full_batches":3}})");
  h.cache_hit_rate = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(SerializeSeedHealth(h).find("\"cache_hit_rate\":0,"), std::string::npos);
}

}  // namespace
}  // namespace infermesh::http::api
