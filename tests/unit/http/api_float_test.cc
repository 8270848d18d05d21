// Float formatting exactness, base64, UTF-8 escaping, FP16 and the binary f32 format.
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "http/api/f32_binary.h"
#include "http/api/json_write.h"
#include "http/api/kserve.h"

namespace infermesh::http::api {
namespace {

std::vector<float> InterestingFloats() {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          -1.0f,
                          0.1f,
                          1.0f / 3,
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::lowest(),
                          std::nextafter(std::numeric_limits<float>::min(), 0.0f),
                          16777216.0f,
                          16777217.0f,
                          1e-38f,
                          3.4028235e38f};
  std::mt19937 rng(42);
  for (int i = 0; i < 200000; ++i) {
    float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isfinite(f)) v.push_back(f);
  }
  for (uint32_t m = 1; m < 1u << 23; m = m * 3 + 1)
    v.push_back(std::bit_cast<float>(m));  // subnormals
  return v;
}

TEST(ApiFloat, ShortestRoundTripBitExactViaFromChars) {
  const std::vector<float> values = InterestingFloats();
  std::string out;
  ASSERT_EQ(AppendFloatArray(out, values), kAllFinite);
  ASSERT_EQ(out.front(), '[');
  ASSERT_EQ(out.back(), ']');
  const char* p = out.data() + 1;
  const char* end = out.data() + out.size() - 1;
  for (size_t i = 0; i < values.size(); ++i) {
    float f;
    auto r = std::from_chars(p, end, f);
    ASSERT_EQ(r.ec, std::errc()) << i;
    ASSERT_EQ(std::bit_cast<uint32_t>(f), std::bit_cast<uint32_t>(values[i])) << i;
    p = r.ptr + 1;  // skip ','
  }
}

TEST(ApiFloat, RoundTripThroughBoostJsonParse) {
  const std::vector<float> values = InterestingFloats();
  std::string out;
  ASSERT_EQ(AppendFloatArray(out, values), kAllFinite);
  boost::json::value v = boost::json::parse(out);
  const boost::json::array& arr = v.as_array();
  ASSERT_EQ(arr.size(), values.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double d = arr[i].is_double() ? arr[i].get_double() : double(arr[i].to_number<int64_t>());
    if (std::bit_cast<uint32_t>(static_cast<float>(d)) != std::bit_cast<uint32_t>(values[i])) {
      ++mismatches;
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST(ApiFloat, FormatsSpecialValues) {
  std::string out;
  AppendFloat(out, -0.0f);
  EXPECT_EQ(out, "-0.0");
  out.clear();
  AppendFloat(out, std::numeric_limits<float>::denorm_min());
  EXPECT_EQ(out, "1e-45");
  out.clear();
  AppendFloat(out, 0.1f);
  EXPECT_EQ(out, "0.1");
}

TEST(ApiFloat, NonFiniteIsReportedAndOutputRestored) {
  std::string out = "x";
  const float v[] = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(AppendFloatArray(out, v), 1u);
  EXPECT_EQ(out, "x");
  const float w[] = {std::numeric_limits<float>::infinity()};
  EXPECT_EQ(AppendFloatArray(out, w), 0u);
  std::vector<std::vector<float>> rows = {{1, 2}, {3, -std::numeric_limits<float>::infinity()}};
  size_t r = 9, c = 9;
  EXPECT_EQ(AppendFloatRows(out, rows, &r, &c), 3u);
  EXPECT_EQ(r, 1u);
  EXPECT_EQ(c, 1u);
  EXPECT_EQ(out, "x");
}

TEST(ApiFloat, Base64MatchesFloatsBitExact) {
  std::vector<float> values = InterestingFloats();
  values.resize(1001);
  std::string b64;
  AppendBase64Floats(b64, values);
  auto back = Base64DecodeFloats(b64);
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->size(), values.size());
  EXPECT_EQ(std::memcmp(back->data(), values.data(), values.size() * 4), 0);
}

TEST(ApiFloat, Base64KnownVectorsAndStrictDecode) {
  const auto enc = [](std::string_view s) {
    std::string out;
    AppendBase64(out, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
    return out;
  };
  EXPECT_EQ(enc(""), "");
  EXPECT_EQ(enc("f"), "Zg==");
  EXPECT_EQ(enc("fo"), "Zm8=");
  EXPECT_EQ(enc("foo"), "Zm9v");
  EXPECT_EQ(enc("foobar"), "Zm9vYmFy");
  auto d = Base64Decode("Zm9vYg==");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(std::string(d->begin(), d->end()), "foob");
  EXPECT_FALSE(Base64Decode("Zm9"));         // length
  EXPECT_FALSE(Base64Decode("Zm9v\n"));      // whitespace
  EXPECT_FALSE(Base64Decode("Zh=="));        // non-zero trailing bits
  EXPECT_FALSE(Base64Decode("Z=9v"));        // padding inside
  EXPECT_FALSE(Base64Decode("Zm9v===="));    // all padding
  EXPECT_FALSE(Base64Decode("Zm-v"));        // url alphabet
  EXPECT_FALSE(Base64DecodeFloats("Zm8="));  // 2 bytes, not a float
  // 1.0f little-endian = 00 00 80 3f
  auto one = Base64DecodeFloats("AACAPw==");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ((*one)[0], 1.0f);
}

TEST(ApiJsonString, EscapesAndRepairsUtf8) {
  std::string out;
  AppendJsonString(out, std::string_view("a\"b\\c\n\x01\xC3\xA9", 9));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\u0001\xC3\xA9\"");
  out.clear();
  AppendJsonString(out, "\xFF\xC3");
  EXPECT_EQ(out, "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  // Output always parses.
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 12, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    out.clear();
    AppendJsonString(out, s);
    boost::system::error_code ec;
    (void)boost::json::parse(out, ec);
    ASSERT_FALSE(ec) << i;
  }
}

TEST(ApiHalf, AllHalvesRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), h) << h;
  }
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);            // rounds to inf
  EXPECT_EQ(FloatToHalf(1.0f + 1.0f / 2048), 0x3C00);  // tie to even
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::denorm_min()), 0);
  EXPECT_EQ(HalfToFloat(1), 0x1p-24f);
}

TEST(ApiF32Binary, RoundTripAndStrictDecode) {
  std::vector<std::vector<float>> rows = {{1.5f, -0.0f, 1e-45f}, {3, 4, 5}};
  auto enc = EncodeF32Rows(rows);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->size(), kF32HeaderBytes + 24);
  EXPECT_EQ(enc->substr(0, 4), "IMF1");
  auto dec = DecodeF32Rows(*enc, 100);
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(dec->rows, 2u);
  EXPECT_EQ(dec->dims, 3u);
  EXPECT_EQ(std::bit_cast<uint32_t>(dec->values[1]), 0x80000000u);
  EXPECT_EQ(dec->values[5], 5.0f);

  EXPECT_EQ(DecodeF32Rows(*enc, 5).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(DecodeF32Rows(enc->substr(0, enc->size() - 1), 100).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(DecodeF32Rows(*enc + "x", 100).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeF32Rows(enc->substr(0, 10), 100).status().code(), StatusCode::kDataLoss);
  std::string bad = *enc;
  bad[0] = 'X';
  EXPECT_EQ(DecodeF32Rows(bad, 100).status().code(), StatusCode::kDataLoss);
  bad = *enc;
  bad[4] = 2;
  EXPECT_EQ(DecodeF32Rows(bad, 100).status().code(), StatusCode::kDataLoss);
  bad = *enc;
  bad[6] = 1;
  EXPECT_EQ(DecodeF32Rows(bad, 100).status().code(), StatusCode::kDataLoss);
  // Huge header dims must not allocate: 2^32-1 x 2^32-1.
  bad = enc->substr(0, 16);
  std::memset(bad.data() + 8, 0xFF, 8);
  EXPECT_EQ(DecodeF32Rows(bad, std::numeric_limits<size_t>::max()).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(DecodeF32Rows(bad, size_t{1} << 40).status().code(), StatusCode::kResourceExhausted);

  bad = enc->substr(0, 16);  // 2^32-1 rows of 0 dims: no payload, still refused
  std::memset(bad.data() + 8, 0xFF, 4);
  std::memset(bad.data() + 12, 0, 4);
  EXPECT_EQ(DecodeF32Rows(bad, 100).status().code(), StatusCode::kResourceExhausted);

  std::vector<std::vector<float>> ragged = {{1, 2}, {3}};
  EXPECT_EQ(EncodeF32Rows(ragged).status().code(), StatusCode::kInvalidArgument);
  auto empty = EncodeF32Rows(std::vector<std::vector<float>>{});
  ASSERT_TRUE(empty.ok());
  auto dempty = DecodeF32Rows(*empty, 0);
  ASSERT_TRUE(dempty.ok());
  EXPECT_EQ(dempty->rows, 0u);
}

}  // namespace
}  // namespace infermesh::http::api
