// SentencePiece precompiled charsmap and HF's Precompiled normalizer; see precompiled.h.
#include "runtime/tokenizer/precompiled.h"

#include <utf8proc.h>

#include <algorithm>

#include "runtime/tokenizer/json_util.h"
#include "runtime/tokenizer/unicode.h"

namespace infermesh::runtime::tok {

namespace {

// Standard base64 (RFC 4648) with padding, as HF writes it; nullopt when malformed.
std::optional<std::string> DecodeBase64(std::string_view s) {
  auto sextet = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (s.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 4 * 3);
  for (size_t i = 0; i < s.size(); i += 4) {
    bool last = i + 4 == s.size();
    size_t pad = 0;
    if (last) pad = s[i + 3] == '=' ? (s[i + 2] == '=' ? 2 : 1) : 0;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      int x = k >= 4 - pad ? 0 : sextet(s[i + k]);
      if (x < 0) return std::nullopt;
      v = (v << 6) | static_cast<uint32_t>(x);
    }
    out.push_back(static_cast<char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xFF));
  }
  return out;
}

// Darts-clone unit fields.
constexpr bool HasLeaf(uint32_t u) { return ((u >> 8) & 1) != 0; }
constexpr uint32_t Value(uint32_t u) { return u & ((1u << 31) - 1); }
constexpr uint32_t Label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
constexpr uint32_t Offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

}  // namespace

Result<PrecompiledCharsmap> PrecompiledCharsmap::FromBase64(std::string_view b64) {
  auto bytes = DecodeBase64(b64);
  if (!bytes) return InvalidArgument("precompiled_charsmap is not valid base64");
  return FromBytes(*bytes);
}

Result<PrecompiledCharsmap> PrecompiledCharsmap::FromBytes(std::string_view bytes) {
  if (bytes.size() < 4) return InvalidArgument("precompiled_charsmap shorter than its header");
  uint32_t trie_size = 0;
  for (int k = 3; k >= 0; --k) trie_size = (trie_size << 8) | static_cast<uint8_t>(bytes[k]);
  if (trie_size == 0 || trie_size % 4 != 0 || trie_size > bytes.size() - 4) {
    return InvalidArgument("precompiled_charsmap trie size " + std::to_string(trie_size) +
                           " does not fit its " + std::to_string(bytes.size()) + " bytes");
  }
  PrecompiledCharsmap m;
  m.units_.resize(trie_size / 4);
  for (size_t i = 0; i < m.units_.size(); ++i) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data()) + 4 + 4 * i;
    m.units_[i] = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                  static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
  }
  m.pool_ = std::string(bytes.substr(4 + trie_size));
  if (FindInvalidUtf8(m.pool_) != std::string_view::npos) {
    return InvalidArgument("precompiled_charsmap replacements are not valid UTF-8");
  }
  return m;
}

std::vector<PrecompiledCharsmap::Match> PrecompiledCharsmap::CommonPrefixSearch(
    std::string_view key) const {
  std::vector<Match> out;
  size_t node = Offset(units_[0]);
  for (size_t i = 0; i < key.size(); ++i) {
    auto c = static_cast<uint8_t>(key[i]);
    if (c == 0) break;
    node ^= c;
    if (node >= units_.size()) break;
    uint32_t unit = units_[node];
    if (Label(unit) != c) break;
    node ^= Offset(unit);
    if (HasLeaf(unit)) {
      if (node >= units_.size()) break;
      if (auto r = ReplacementAt(Value(units_[node]))) out.push_back({i + 1, *r});
    }
  }
  return out;
}

std::optional<PrecompiledCharsmap::Match> PrecompiledCharsmap::LongestPrefix(
    std::string_view key) const {
  auto all = CommonPrefixSearch(key);
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::optional<std::string_view> PrecompiledCharsmap::Transform(std::string_view chunk) const {
  auto all = CommonPrefixSearch(chunk);
  if (all.empty()) return std::nullopt;
  return all.front().replacement;
}

// The NUL-terminated replacement at `offset`; nullopt if it lies outside the pool or
// does not start on a character boundary (data no valid charsmap contains).
std::optional<std::string_view> PrecompiledCharsmap::ReplacementAt(uint32_t offset) const {
  if (offset > pool_.size()) return std::nullopt;
  std::string_view rest = std::string_view(pool_).substr(offset);
  std::string_view r = rest.substr(0, std::min(rest.find('\0'), rest.size()));
  if (FindInvalidUtf8(r) != std::string_view::npos) return std::nullopt;
  return r;
}

namespace {

class PrecompiledNormalizer final : public Normalizer {
 public:
  explicit PrecompiledNormalizer(PrecompiledCharsmap m) : m_(std::move(m)) {}

  void Normalize(NText& t) const override {
    NText out;
    out.reserve(t.size());
    std::string buf;
    utf8proc_int32_t state = 0;
    size_t i = 0;
    while (i < t.size()) {
      size_t j = i + 1;
      size_t bytes = Utf8Length(t[i].c);
      while (j < t.size() &&
             !utf8proc_grapheme_break_stateful(static_cast<utf8proc_int32_t>(t[j - 1].c),
                                               static_cast<utf8proc_int32_t>(t[j].c), &state)) {
        bytes += Utf8Length(t[j].c);
        ++j;
      }
      if (bytes < 6) {
        buf.clear();
        for (size_t k = i; k < j; ++k) AppendUtf8(t[k].c, buf);
        if (auto r = m_.Transform(buf)) {
          Emit(t, i, j, *r, out);
          i = j;
          continue;
        }
      }
      for (; i < j; ++i) {
        buf.clear();
        AppendUtf8(t[i].c, buf);
        if (auto r = m_.Transform(buf)) {
          Emit(t, i, i + 1, *r, out);
        } else {
          out.push_back(t[i]);
        }
      }
    }
    t.swap(out);
  }

 private:
  // Replaces t[b, e) by `r`: output char k takes the range of input char min(k, e-b-1).
  static void Emit(const NText& t, size_t b, size_t e, std::string_view r, NText& out) {
    size_t pos = 0, k = 0;
    while (pos < r.size()) {
      char32_t c = DecodeUtf8(r, pos);
      const NChar& src = t[b + std::min(k, e - b - 1)];
      out.push_back({c, src.begin, src.end});
      ++k;
    }
  }

  PrecompiledCharsmap m_;
};

}  // namespace

std::unique_ptr<Normalizer> MakePrecompiledNormalizer(PrecompiledCharsmap charsmap) {
  return std::make_unique<PrecompiledNormalizer>(std::move(charsmap));
}

Result<std::unique_ptr<Normalizer>> PrecompiledNormalizerFromJson(const boost::json::value& v) {
  auto b64 = StringField(v, "precompiled_charsmap");
  if (!b64) return InvalidArgument("Precompiled normalizer without a \"precompiled_charsmap\"");
  IM_ASSIGN_OR_RETURN(auto m, PrecompiledCharsmap::FromBase64(*b64));
  return MakePrecompiledNormalizer(std::move(m));
}

}  // namespace infermesh::runtime::tok
