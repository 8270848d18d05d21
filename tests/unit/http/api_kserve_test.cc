// KServe v2 codecs: tensor parsing by datatype, shape checks, responses, metadata.
#include <bit>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "http/api/kserve.h"

namespace infermesh::http::api {
namespace {

ApiError Err(std::string_view body, const ParseLimits& limits = {}) {
  auto r = ParseKServeInferRequest(body, limits);
  EXPECT_FALSE(r.ok());
  return r.ok() ? ApiError{} : r.error();
}

std::string Input(std::string_view dtype, std::string_view shape, std::string_view data) {
  return R"({"inputs":[{"name":"x","datatype":")" + std::string(dtype) + R"(","shape":)" +
         std::string(shape) + R"(,"data":)" + std::string(data) + "}]}";
}

TEST(ApiKServe, ParsesEachDatatype) {
  auto r = ParseKServeInferRequest(
      R"({"id":"q1","parameters":{},"inputs":[)"
      R"({"name":"a","datatype":"FP32","shape":[2,2],"data":[[1,2.5],[-0.0,3]]},)"
      R"({"name":"b","datatype":"INT64","shape":[2],"data":[-9007199254740993,7]},)"
      R"({"name":"c","datatype":"INT32","shape":[1],"data":[-2147483648]},)"
      R"({"name":"d","datatype":"BOOL","shape":[3],"data":[true,false,true]},)"
      R"({"name":"e","datatype":"FP16","shape":[2],"data":[1.0,65504]},)"
      R"({"name":"f","datatype":"BYTES","shape":[2],"data":["hi",""]}],)"
      R"("outputs":[{"name":"y"}]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->id, "q1");
  ASSERT_EQ(r->inputs.size(), 6u);
  EXPECT_EQ(r->outputs, std::vector<std::string>{"y"});
  const TensorData& a = r->inputs[0];
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
  ASSERT_EQ(a.bytes.size(), 16u);
  float f[4];
  std::memcpy(f, a.bytes.data(), 16);
  EXPECT_EQ(f[1], 2.5f);
  EXPECT_EQ(std::bit_cast<uint32_t>(f[2]), 0x80000000u);
  int64_t b[2];
  std::memcpy(b, r->inputs[1].bytes.data(), 16);
  EXPECT_EQ(b[0], -9007199254740993);
  int32_t c;
  std::memcpy(&c, r->inputs[2].bytes.data(), 4);
  EXPECT_EQ(c, std::numeric_limits<int32_t>::min());
  EXPECT_EQ(r->inputs[3].bytes, (std::vector<uint8_t>{1, 0, 1}));
  uint16_t h[2];
  std::memcpy(h, r->inputs[4].bytes.data(), 4);
  EXPECT_EQ(h[0], 0x3C00);
  EXPECT_EQ(h[1], 0x7BFF);
  EXPECT_EQ(r->inputs[5].bytes, (std::vector<uint8_t>{2, 0, 0, 0, 'h', 'i', 0, 0, 0, 0}));
  // Scalar (shape []) and empty tensor (a zero dim).
  EXPECT_TRUE(ParseKServeInferRequest(Input("FP32", "[]", "5")).ok());
  auto empty = ParseKServeInferRequest(Input("FP32", "[0,4]", "[]"));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->inputs[0].bytes.empty());
}

TEST(ApiKServe, RejectsBadTensors) {
  EXPECT_EQ(Err(Input("FP32", "[2]", "[1,2,3]")).param, "inputs[0].data");
  EXPECT_EQ(Err(Input("FP32", "[3]", "[1,2]")).message,
            "`inputs[0].data`: has 2 elements, shape needs 3");
  ApiError e = Err(Input("FP32", "[2]", R"([1,"NaN"])"));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "inputs[0].data[1]");
  EXPECT_NE(e.message.find("NaN"), std::string::npos);
  EXPECT_EQ(Err(Input("FP32", "[1]", R"(["Infinity"])")).param, "inputs[0].data[0]");
  EXPECT_EQ(Err(Input("FP32", "[1]", "[1e39]")).message,
            "`inputs[0].data[0]`: number out of float32 range");
  // FP64 goes through the same number reading: a string or an overflow is an error.
  EXPECT_EQ(Err(Input("FP64", "[2]", R"([1,"NaN"])")).param, "inputs[0].data[1]");
  EXPECT_EQ(Err(Input("FP64", "[1]", "[1e999]")).message,
            "`inputs[0].data[0]`: number out of FP64 range");
  EXPECT_EQ(Err(Input("FP16", "[1]", "[65520]")).message,
            "`inputs[0].data[0]`: number out of FP16 range");
  EXPECT_EQ(Err(Input("INT32", "[1]", "[2147483648]")).param, "inputs[0].data[0]");
  EXPECT_EQ(Err(Input("INT64", "[1]", "[1.0]")).param, "inputs[0].data[0]");
  EXPECT_EQ(Err(Input("INT64", "[1]", "[18446744073709551615]")).param, "inputs[0].data[0]");
  EXPECT_EQ(Err(Input("BOOL", "[1]", "[1]")).param, "inputs[0].data[0]");
  EXPECT_EQ(Err(Input("BYTES", "[1]", "[1]")).param, "inputs[0].data[0]");
  EXPECT_EQ(Err(Input("FP8", "[1]", "[1]")).param, "inputs[0].datatype");
  EXPECT_EQ(Err(Input("FP32", "[-1]", "[1]")).message,
            "`inputs[0].shape[0]`: negative dimension -1");
  EXPECT_EQ(Err(Input("FP32", "[1.5]", "[1]")).param, "inputs[0].shape[0]");
  EXPECT_EQ(Err(Input("FP32", "3", "[1]")).param, "inputs[0].shape");
  // Absurd sizes are rejected before any data is read, without overflow.
  EXPECT_EQ(Err(Input("FP32", "[4294967296,4294967296,4294967296]", "[]")).param,
            "inputs[0].shape[0]");
  ParseLimits limits;
  limits.max_tensor_elements = 3;
  EXPECT_EQ(Err(Input("FP32", "[2,2]", "[1,2,3,4]"), limits).param, "inputs[0].shape");
  // Structure.
  EXPECT_EQ(Err(R"({"inputs":[]})").message, "`inputs` must not be empty");
  EXPECT_EQ(Err(R"({"inputs":{}})").param, "inputs");
  EXPECT_EQ(Err(R"({})").message, "missing field `inputs`");
  EXPECT_EQ(Err(R"({"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]})").param,
            "inputs[0].name");
  EXPECT_EQ(Err(R"({"inputs":[{"name":"x","shape":[1],"data":[1]}]})").param, "inputs[0].datatype");
  EXPECT_EQ(Err(R"({"inputs":[{"name":"x","datatype":"FP32","data":[1]}]})").param,
            "inputs[0].shape");
  EXPECT_EQ(Err(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]})").param,
            "inputs[0].data");
  EXPECT_EQ(Err(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]},)"
                R"({"name":"x","datatype":"FP32","shape":[1],"data":[1]}]})")
                .param,
            "inputs[1].name");
  EXPECT_EQ(Err(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1],)"
                R"("parameters":{"binary_data_size":4}}]})")
                .param,
            "inputs[0].parameters.binary_data_size");
  EXPECT_EQ(Err(Input("FP32", "[1]", "[1]")
                    .insert(1, R"("outputs":[{"name":"y","parameters":)"
                               R"({"binary_data":true}}],)"))
                .param,
            "outputs[0].parameters.binary_data");
  EXPECT_EQ(Err(R"({"inputs":[1]})").param, "inputs[0]");
  EXPECT_EQ(Err("[").status, 400);
}

TEST(ApiKServe, RejectsHugeDimensionsEvenWithZeroElements) {
  // A zero dimension makes the element count 0, but the huge one would overflow
  // shape arithmetic downstream (found in review).
  ApiError e = Err(Input("FP32", "[4611686018427387904,4,0]", "[]"));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("exceeds"), std::string::npos) << e.message;
  EXPECT_TRUE(ParseKServeInferRequest(Input("FP32", "[3,0]", "[]")).ok());
}

TEST(ApiKServe, ResponseRoundTrip) {
  TensorData fp32{"y", "FP32", {2}, {}};
  const float vals[] = {0.1f, -1e-45f};
  fp32.bytes.assign(reinterpret_cast<const uint8_t*>(vals),
                    reinterpret_cast<const uint8_t*>(vals) + 8);
  TensorData i64{"z", "INT64", {1}, {}};
  const int64_t iv = -5;
  i64.bytes.assign(reinterpret_cast<const uint8_t*>(&iv),
                   reinterpret_cast<const uint8_t*>(&iv) + 8);
  TensorData bytes{"s", "BYTES", {1}, {3, 0, 0, 0, 'a', '"', 'b'}};
  TensorData boolean{"b", "BOOL", {2}, {1, 0}};
  TensorData half{"h", "FP16", {1}, {0x00, 0x3C}};
  KServeInferResponse resp{"m", "1", "q1", {fp32, i64, bytes, boolean, half}};
  auto json = SerializeKServeInferResponse(resp);
  ASSERT_TRUE(json.ok()) << json.error().message;
  EXPECT_EQ(*json, R"({"model_name":"m","model_version":"1","id":"q1","outputs":[)"
                   R"({"name":"y","datatype":"FP32","shape":[2],"data":[0.1,-1e-45]},)"
                   R"({"name":"z","datatype":"INT64","shape":[1],"data":[-5]},)"
                   R"({"name":"s","datatype":"BYTES","shape":[1],"data":["a\"b"]},)"
                   R"({"name":"b","datatype":"BOOL","shape":[2],"data":[true,false]},)"
                   R"({"name":"h","datatype":"FP16","shape":[1],"data":[1]}]})");
  // Feed the outputs back in as inputs: the same bytes come out.
  std::string as_request =
      R"({"inputs":)" + boost::json::serialize(boost::json::parse(*json).at("outputs")) + "}";
  auto back = ParseKServeInferRequest(as_request);
  ASSERT_TRUE(back.ok()) << back.error().message;
  for (size_t i = 0; i < resp.outputs.size(); ++i) {
    EXPECT_EQ(back->inputs[i].bytes, resp.outputs[i].bytes) << i;
  }

  TensorData nan{"y", "FP32", {1}, {0, 0, 0xC0, 0x7F}};
  auto bad = SerializeKServeInferResponse({"m", "1", "", {nan}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().status, 424);
  TensorData short_data{"y", "FP32", {2}, {0, 0, 0, 0}};
  EXPECT_EQ(SerializeKServeInferResponse({"m", "1", "", {short_data}}).error().status, 500);
  TensorData bad_bytes{"s", "BYTES", {1}, {9, 0, 0, 0, 'a'}};
  EXPECT_EQ(SerializeKServeInferResponse({"m", "1", "", {bad_bytes}}).error().status, 500);
}

// Every datatype of the one table parses, and its bytes come back out of a response.
TEST(ApiKServe, EveryTableDatatypeRoundTrips) {
  for (const KServeDataType& t : KServeDataTypes()) {
    SCOPED_TRACE(std::string(t.name));
    EXPECT_EQ(FindKServeDataType(t.name), &t);
    EXPECT_EQ(KServeElementSize(t.name), t.element_size);
    std::string data = "[1,0,2]";
    if (t.kind == KServeKind::kBool) data = "[true,false,true]";
    if (t.kind == KServeKind::kBytes) data = R"(["a","","bc"])";
    auto r = ParseKServeInferRequest(Input(t.name, "[3]", data));
    ASSERT_TRUE(r.ok()) << r.error().message;
    const TensorData& in = r->inputs[0];
    if (t.element_size > 0) {
      EXPECT_EQ(in.bytes.size(), 3u * t.element_size);
    }
    TensorData out{"y", std::string(t.name), {3}, in.bytes};
    auto json = SerializeKServeInferResponse({"m", "1", "", {out}});
    ASSERT_TRUE(json.ok()) << json.error().message;
    EXPECT_EQ(boost::json::serialize(boost::json::parse(*json).at("outputs").at(0).at("data")),
              data);
  }
}

TEST(ApiKServe, IntegerRangesByWidth) {
  EXPECT_TRUE(ParseKServeInferRequest(Input("INT8", "[2]", "[-128,127]")).ok());
  EXPECT_NE(Err(Input("INT8", "[1]", "[128]")).message.find("INT8"), std::string::npos);
  EXPECT_EQ(Err(Input("UINT8", "[1]", "[-1]")).status, 400);
  EXPECT_EQ(Err(Input("UINT16", "[1]", "[65536]")).status, 400);
  EXPECT_EQ(Err(Input("INT64", "[1]", "[9223372036854775808]")).status, 400);
  auto u64 = ParseKServeInferRequest(Input("UINT64", "[1]", "[18446744073709551615]"));
  ASSERT_TRUE(u64.ok()) << u64.error().message;
  EXPECT_EQ(u64->inputs[0].bytes, std::vector<uint8_t>(8, 0xFF));
  auto i16 = ParseKServeInferRequest(Input("INT16", "[1]", "[-2]"));
  ASSERT_TRUE(i16.ok());
  EXPECT_EQ(i16->inputs[0].bytes, (std::vector<uint8_t>{0xFE, 0xFF}));
  EXPECT_EQ(Err(Input("UINT32", "[1]", "[1.5]")).status, 400);
  EXPECT_TRUE(ParseKServeInferRequest(Input("FP64", "[1]", "[1e300]")).ok());
  EXPECT_EQ(Err(Input("BF16", "[1]", "[1e39]")).status, 400);
  auto unknown = Err(Input("FP8", "[1]", "[1]"));
  EXPECT_NE(unknown.message.find("FP8"), std::string::npos);
  EXPECT_NE(unknown.message.find("UINT64"), std::string::npos);  // lists the table
}

TEST(ApiKServe, Metadata) {
  KServeModelMetadata m{"bge",
                        {"1"},
                        "onnxruntime_onnx",
                        {{"input_ids", "INT64", {-1, -1}}},
                        {{"last_hidden_state", "FP32", {-1, -1, 384}}}};
  EXPECT_EQ(SerializeKServeModelMetadata(m),
            R"({"name":"bge","versions":["1"],"platform":"onnxruntime_onnx",)"
            R"("inputs":[{"name":"input_ids","datatype":"INT64","shape":[-1,-1]}],)"
            R"("outputs":[{"name":"last_hidden_state","datatype":"FP32","shape":[-1,-1,384]}]})");
  EXPECT_EQ(SerializeKServeServerMetadata({"infermesh", "0.1.0", {"model_repository"}}),
            R"({"name":"infermesh","version":"0.1.0","extensions":["model_repository"]})");
  EXPECT_EQ(SerializeKServeLive(true), R"({"live":true})");
  EXPECT_EQ(SerializeKServeReady(false), R"({"ready":false})");
  EXPECT_EQ(SerializeKServeModelReady("m", true), R"({"name":"m","ready":true})");
}

}  // namespace
}  // namespace infermesh::http::api
