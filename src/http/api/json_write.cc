// JSON writing primitives; see json_write.h.
#include "http/api/json_write.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>

namespace infermesh::http::api {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
// Longest shortest-round-trip float is 15 chars ("-1.17549435e-38"); keep slack.
constexpr size_t kMaxFloatChars = 24;

// Length of the valid UTF-8 sequence at s[i], or 0 if invalid (RFC 3629: no
// overlongs, no surrogates, nothing above U+10FFFF).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  const size_t left = s.size() - i;
  if (c < 0x80) return 1;
  const auto cont = [&](size_t k) { return (b(i + k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return left >= 2 && cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || !cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

int B64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    // Copy the longest run that needs no escaping in one append.
    size_t run = i;
    while (run < s.size()) {
      const auto c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
      ++run;
    }
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out.append("\xEF\xBF\xBD");  // U+FFFD
        ++i;
      } else {
        out.append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out.append(esc, 6);
      }
    }
    ++i;
  }
  out.push_back('"');
}

// to_chars writes -0.0f as "-0", which JSON parsers (Boost.JSON, Python) read as the
// integer 0 and lose the sign; "-0.0" is read as a double and keeps it.
static char* WriteFloat(char* p, char* end, float f) {
  if (std::bit_cast<uint32_t>(f) == 0x80000000u) {
    std::memcpy(p, "-0.0", 4);
    return p + 4;
  }
  return std::to_chars(p, end, f).ptr;
}

void AppendFloat(std::string& out, float f) {
  char buf[kMaxFloatChars];
  out.append(buf, WriteFloat(buf, buf + sizeof(buf), f));
}

size_t AppendFloatArray(std::string& out, std::span<const float> values) {
  const size_t start = out.size();
  out.resize(start + 2 + values.size() * (kMaxFloatChars + 1));
  char* p = out.data() + start;
  char* const end = out.data() + out.size();
  *p++ = '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      out.resize(start);
      return i;
    }
    if (i != 0) *p++ = ',';
    p = WriteFloat(p, end, values[i]);
  }
  *p++ = ']';
  out.resize(static_cast<size_t>(p - out.data()));
  return kAllFinite;
}

size_t AppendFloatRows(std::string& out, const FloatRowsView& rows, size_t* bad_row,
                       size_t* bad_col) {
  const size_t start = out.size();
  size_t flat = 0;
  out.push_back('[');
  for (size_t r = 0; r < rows.rows(); ++r) {
    if (r != 0) out.push_back(',');
    const std::span<const float> row = rows.row(r);
    const size_t bad = AppendFloatArray(out, row);
    if (bad != kAllFinite) {
      out.resize(start);
      if (bad_row != nullptr) *bad_row = r;
      if (bad_col != nullptr) *bad_col = bad;
      return flat + bad;
    }
    flat += row.size();
  }
  out.push_back(']');
  return kAllFinite;
}

void AppendDouble(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out.append("null");
    return;
  }
  char buf[32];
  out.append(buf, std::to_chars(buf, buf + sizeof(buf), d).ptr);
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

void AppendUint(std::string& out, uint64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

void AppendBase64(std::string& out, std::span<const uint8_t> bytes) {
  const size_t start = out.size();
  out.resize(start + (bytes.size() + 2) / 3 * 4);
  char* p = out.data() + start;
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    *p++ = kB64[v >> 18];
    *p++ = kB64[(v >> 12) & 63];
    *p++ = kB64[(v >> 6) & 63];
    *p++ = kB64[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest != 0) {
    uint32_t v = uint32_t{bytes[i]} << 16;
    if (rest == 2) v |= uint32_t{bytes[i + 1]} << 8;
    *p++ = kB64[v >> 18];
    *p++ = kB64[(v >> 12) & 63];
    *p++ = rest == 2 ? kB64[(v >> 6) & 63] : '=';
    *p++ = '=';
  }
}

void AppendBase64Floats(std::string& out, std::span<const float> values) {
  if constexpr (std::endian::native == std::endian::little) {
    AppendBase64(out, {reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4});
  } else {
    std::vector<uint8_t> le(values.size() * 4);
    for (size_t i = 0; i < values.size(); ++i) {
      const auto bits = std::bit_cast<uint32_t>(values[i]);
      for (int k = 0; k < 4; ++k) le[i * 4 + k] = static_cast<uint8_t>(bits >> (8 * k));
    }
    AppendBase64(out, le);
  }
}

std::optional<std::vector<uint8_t>> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad != 0) return std::nullopt;  // data after '='
      v[k] = B64Value(c);
      if (v[k] < 0) return std::nullopt;
    }
    const uint32_t bits =
        (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    if (pad == 1 && (bits & 0xFF) != 0) return std::nullopt;    // non-canonical
    if (pad == 2 && (bits & 0xFFFF) != 0) return std::nullopt;  // non-canonical
    out.push_back(static_cast<uint8_t>(bits >> 16));
    if (pad < 2) out.push_back(static_cast<uint8_t>(bits >> 8));
    if (pad < 1) out.push_back(static_cast<uint8_t>(bits));
  }
  return out;
}

std::optional<std::vector<float>> Base64DecodeFloats(std::string_view text) {
  auto bytes = Base64Decode(text);
  if (!bytes || bytes->size() % 4 != 0) return std::nullopt;
  std::vector<float> out(bytes->size() / 4);
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t* b = bytes->data() + i * 4;
    const uint32_t bits =
        uint32_t{b[0]} | (uint32_t{b[1]} << 8) | (uint32_t{b[2]} << 16) | (uint32_t{b[3]} << 24);
    out[i] = std::bit_cast<float>(bits);
  }
  return out;
}

}  // namespace infermesh::http::api
