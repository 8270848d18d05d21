// Fast JSON writing primitives shared by the API codecs: escaped strings, shortest
// round-trip floats (std::to_chars(float), never via double), float arrays and rows,
// base64. Output goes into a caller-owned std::string so a response is one buffer.
//
//   std::string out;
//   size_t bad = AppendFloatArray(out, row);   // "[0.1,-0.0,1e-45]"
//   if (bad != kAllFinite) ...                  // JSON cannot carry NaN/Inf
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace infermesh::http::api {

inline constexpr size_t kAllFinite = std::numeric_limits<size_t>::max();

// A read-only view of float rows (embeddings, output tensors) without copying them:
// one contiguous matrix, or separate rows (e.g. some from the cache, some computed).
class FloatRowsView {
 public:
  FloatRowsView() = default;
  FloatRowsView(const float* data, size_t rows, size_t dims)
      : data_(data), rows_(rows), dims_(dims) {}
  FloatRowsView(std::span<const std::span<const float>> rows)  // NOLINT: implicit
      : spans_(rows.data()), rows_(rows.size()) {}
  FloatRowsView(const std::vector<std::vector<float>>& rows)  // NOLINT: implicit
      : vectors_(&rows), rows_(rows.size()) {}

  size_t rows() const { return rows_; }
  std::span<const float> row(size_t i) const {
    if (spans_ != nullptr) return spans_[i];
    if (vectors_ != nullptr) return (*vectors_)[i];
    return {data_ + i * dims_, dims_};
  }

 private:
  const float* data_ = nullptr;
  const std::span<const float>* spans_ = nullptr;
  const std::vector<std::vector<float>>* vectors_ = nullptr;
  size_t rows_ = 0;
  size_t dims_ = 0;
};

// Appends `s` as a JSON string literal. Control characters are escaped; invalid
// UTF-8 sequences are replaced by U+FFFD so that the output is always valid JSON.
void AppendJsonString(std::string& out, std::string_view s);

// Appends the shortest decimal that parses back to exactly `f` ("0.1", "1e-45"); -0 is
// written "-0.0" so that parsers which read "-0" as the integer 0 keep the sign.
// Precondition: f is finite.
void AppendFloat(std::string& out, float f);

// Appends "[a,b,...]". Returns kAllFinite, or the index of the first NaN/Inf, in which
// case `out` is restored to its size on entry.
size_t AppendFloatArray(std::string& out, std::span<const float> values);

// Appends "[[...],[...]]". Returns kAllFinite or the flat index row * dims + col of the
// first non-finite value (and restores `out`); `bad_row`/`bad_col` receive its position.
size_t AppendFloatRows(std::string& out, const FloatRowsView& rows, size_t* bad_row = nullptr,
                       size_t* bad_col = nullptr);

// Appends a double for statistics (shortest round trip); NaN/Inf become null.
void AppendDouble(std::string& out, double d);
void AppendInt(std::string& out, int64_t v);
void AppendUint(std::string& out, uint64_t v);

// Standard base64 (RFC 4648, with padding).
void AppendBase64(std::string& out, std::span<const uint8_t> bytes);
// Base64 of the little-endian IEEE-754 bytes of `values` (OpenAI encoding_format=base64).
void AppendBase64Floats(std::string& out, std::span<const float> values);
// Strict decoder: padding required, no whitespace, non-zero trailing bits rejected.
std::optional<std::vector<uint8_t>> Base64Decode(std::string_view text);
// Decodes base64 little-endian floats; nullopt if not base64 or not a multiple of 4 bytes.
std::optional<std::vector<float>> Base64DecodeFloats(std::string_view text);

bool IsValidUtf8(std::string_view s);

}  // namespace infermesh::http::api
