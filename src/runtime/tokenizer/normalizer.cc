// HF-compatible normalizers over NText; see normalizer.h.
#include "runtime/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <regex>

#include "runtime/tokenizer/json_util.h"
#include "runtime/tokenizer/precompiled.h"
#include "runtime/tokenizer/unicode.h"

namespace infermesh::runtime::tok {

NText ToNText(std::string_view s, uint32_t base) {
  NText out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    char32_t c = DecodeUtf8(s, i);
    out.push_back({c, base + static_cast<uint32_t>(start), base + static_cast<uint32_t>(i)});
  }
  return out;
}

std::string ToUtf8(const NText& t) {
  std::string out;
  out.reserve(t.size());
  for (const NChar& c : t) AppendUtf8(c.c, out);
  return out;
}

namespace {

// Hugging Face computes the alignments of NFD/NFKD/NFC/NFKC (and of BertNormalizer's
// accent stripping, an NFD) without tracking which input char each output char came
// from: the unicode-normalization-alignments crate tags every output char with a
// "change" (0: replaces one input char, +1: inserted, -N: replaces one and removes N
// more), and NormalizedString::transform walks the input left to right, giving a
// change <= 0 char the range of the next unconsumed input char and a +1 char the range
// of the last consumed one. Reordering and composition move and merge the tags, so the
// ranges are positional, not per origin: in "\u0623\u064f" (alef+hamza, damma) NFC
// reorders the decomposed U+0627 U+0654 U+064F to U+0627 U+064F U+0654 and composes
// U+0623 back, and the damma reports the range of the second input char because it is
// the second output char, whatever its origin (found by the tokenizer parity test).
struct TaggedChar {
  char32_t c;
  int change;
};
using TaggedText = std::vector<TaggedChar>;

// Full decomposition, then a stable sort of each run of non-starters by canonical
// combining class (Unicode's canonical ordering); the tags move with their chars.
TaggedText DecomposeTagged(const NText& t, bool compat) {
  TaggedText out;
  out.reserve(t.size());
  std::u32string buf;
  for (const NChar& nc : t) {
    buf.clear();
    Decompose(nc.c, compat, buf);
    for (size_t k = 0; k < buf.size(); ++k) out.push_back({buf[k], k == 0 ? 0 : 1});
  }
  size_t i = 0;
  while (i < out.size()) {
    if (CombiningClass(out[i].c) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && CombiningClass(out[j].c) != 0) ++j;
    std::stable_sort(out.begin() + static_cast<ptrdiff_t>(i),
                     out.begin() + static_cast<ptrdiff_t>(j),
                     [](const TaggedChar& a, const TaggedChar& b) {
                       return CombiningClass(a.c) < CombiningClass(b.c);
                     });
    i = j;
  }
  return out;
}

// NormalizedString::transform over the tagged output of normalizing `in`.
NText ApplyTags(const NText& in, const TaggedText& tagged) {
  NText out;
  out.reserve(tagged.size());
  size_t next = 0;  // input chars consumed so far
  for (const TaggedChar& tc : tagged) {
    if (tc.change > 0) {
      // HF gives an insertion before any consumed char the empty range at the start.
      NChar at = next > 0 ? in[next - 1] : NChar{0, in[0].begin, in[0].begin};
      out.push_back({tc.c, at.begin, at.end});
      continue;
    }
    const NChar& at = in[std::min(next, in.size() - 1)];
    out.push_back({tc.c, at.begin, at.end});
    next += 1 + static_cast<size_t>(-tc.change);
  }
  return out;
}

void DecomposeText(NText& t, bool compat) {
  if (t.empty()) return;
  t = ApplyTags(t, DecomposeTagged(t, compat));
}

// Returns the primary composite of (a, b), or 0 when they do not compose.
char32_t ComposePair(char32_t a, char32_t b) {
  if (b < 0x300) return 0;  // every second half of a composition is >= U+0300
  utf8proc_int32_t buf[2] = {static_cast<utf8proc_int32_t>(a), static_cast<utf8proc_int32_t>(b)};
  utf8proc_ssize_t n =
      utf8proc_normalize_utf32(buf, 2, static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE));
  return n == 1 ? static_cast<char32_t>(buf[0]) : 0;
}

// NFC/NFKC: decompose, order, then compose canonically. A composite takes the tag
// starter + mark - 1 (the crate's Recompositions), so it consumes both input positions.
void ComposeText(NText& t, bool compat) {
  if (t.empty()) return;
  TaggedText d = DecomposeTagged(t, compat);
  TaggedText out;
  out.reserve(d.size());
  size_t starter = SIZE_MAX;
  int last_ccc = -1;  // ccc of the last char kept after the starter; -1: none
  for (const TaggedChar& tc : d) {
    int ccc = CombiningClass(tc.c);
    if (starter != SIZE_MAX && (last_ccc == -1 || (last_ccc != 0 && last_ccc < ccc))) {
      if (char32_t p = ComposePair(out[starter].c, tc.c)) {
        out[starter].c = p;
        out[starter].change += tc.change - 1;
        continue;
      }
    }
    out.push_back(tc);
    if (ccc == 0) {
      starter = out.size() - 1;
      last_ccc = -1;
    } else {
      last_ccc = ccc;
    }
  }
  t = ApplyTags(t, out);
}

class BertNormalizer final : public Normalizer {
 public:
  explicit BertNormalizer(const BertNormalizerOptions& o) : o_(o) {}
  void Normalize(NText& t) const override {
    NText out;
    out.reserve(t.size());
    for (const NChar& nc : t) {
      char32_t c = nc.c;
      if (o_.clean_text) {
        if (IsBertRemoved(c)) continue;
        if (IsBertSpace(c)) c = U' ';
      }
      if (o_.handle_chinese_chars && IsChineseChar(c)) {
        out.push_back({U' ', nc.begin, nc.end});
        out.push_back({c, nc.begin, nc.end});
        out.push_back({U' ', nc.begin, nc.end});
      } else {
        out.push_back({c, nc.begin, nc.end});
      }
    }
    if (o_.strip_accents) {
      DecomposeText(out, /*compat=*/false);
      std::erase_if(out, [](const NChar& nc) { return IsBertNonspacingMark(nc.c); });
    }
    if (o_.lowercase) LowercaseText(out);
    t.swap(out);
  }

  static void LowercaseText(NText& t) {
    bool ascii = std::all_of(t.begin(), t.end(), [](const NChar& c) { return c.c < 0x80; });
    if (ascii) {
      for (NChar& c : t) {
        if (c.c >= 'A' && c.c <= 'Z') c.c += 32;
      }
      return;
    }
    NText out;
    out.reserve(t.size());
    std::u32string buf;
    for (const NChar& nc : t) {
      buf.clear();
      Lowercase(nc.c, buf);
      for (char32_t c : buf) out.push_back({c, nc.begin, nc.end});
    }
    t.swap(out);
  }

 private:
  BertNormalizerOptions o_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void Normalize(NText& t) const override { BertNormalizer::LowercaseText(t); }
};

class UnicodeNormalizer final : public Normalizer {
 public:
  UnicodeNormalizer(bool compose, bool compat) : compose_(compose), compat_(compat) {}
  void Normalize(NText& t) const override {
    if (compose_) {
      ComposeText(t, compat_);
    } else {
      DecomposeText(t, compat_);
    }
  }

 private:
  bool compose_, compat_;
};

class StripAccentsNormalizer final : public Normalizer {
 public:
  void Normalize(NText& t) const override {
    std::erase_if(t, [](const NChar& nc) { return IsCombiningMark(nc.c); });
  }
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(NText& t) const override {
    size_t b = 0, e = t.size();
    if (left_) {
      while (b < e && IsWhitespace(t[b].c)) ++b;
    }
    if (right_) {
      while (e > b && IsWhitespace(t[e - 1].c)) --e;
    }
    t = NText(t.begin() + b, t.begin() + e);
  }

 private:
  bool left_, right_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::u32string s) : s_(std::move(s)) {}
  void Normalize(NText& t) const override {
    if (t.empty()) return;
    NText out;
    out.reserve(t.size() + s_.size());
    for (char32_t c : s_) out.push_back({c, t[0].begin, t[0].end});
    out.insert(out.end(), t.begin(), t.end());
    t.swap(out);
  }

 private:
  std::u32string s_;
};

// Replace with a literal pattern: each match becomes `content`, whose characters span
// the whole matched input range.
class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::u32string pattern, std::u32string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(NText& t) const override {
    if (pattern_.empty()) return;
    NText out;
    out.reserve(t.size());
    size_t i = 0;
    while (i < t.size()) {
      bool match = i + pattern_.size() <= t.size();
      for (size_t k = 0; match && k < pattern_.size(); ++k) match = t[i + k].c == pattern_[k];
      if (!match) {
        out.push_back(t[i++]);
        continue;
      }
      uint32_t b = t[i].begin, e = t[i + pattern_.size() - 1].end;
      for (char32_t c : content_) out.push_back({c, b, e});
      i += pattern_.size();
    }
    t.swap(out);
  }

 private:
  std::u32string pattern_, content_;
};

// Replace with a {"Regex": ...} pattern (HF compiles it with Oniguruma; we use
// std::regex over the UTF-8 bytes). Only a subset whose std::regex meaning is provably
// the same as Oniguruma's on any UTF-8 text is accepted (see CheckRegexSubset):
//
//   pattern := atom* (atom quantifier)?
//   atom    := ASCII literal | \ + ASCII punctuation | \t \n \r | [positive ASCII class]
//   quantifier := * | + | ? | {n} | {n,} | {n,m}   (greedy, n, m <= kMaxRepeat)
//
// Every match then consists of ASCII bytes only (so it starts and ends on character
// boundaries), and the matches from one start differ only in the repeat count, so
// leftmost-greedy (Oniguruma, ECMAScript) and libstdc++'s polynomial (Thompson/BFS)
// executor agree. That executor keeps no per-character recursion, so there is no stack
// overflow on long inputs (the default DFS executor recurses once per matched char and
// overflows an 8 MiB stack at ~25k spaces) and no catastrophic backtracking: a failed
// attempt at one start costs O(pattern length + kMaxRepeat), hence no input-size bound.
#if !defined(__GLIBCXX__)
#error "Regex Replace relies on libstdc++'s std::regex_constants::__polynomial executor"
#endif
constexpr std::regex::flag_type kRegexFlags =
    std::regex::ECMAScript | std::regex_constants::__polynomial;
constexpr unsigned kMaxRepeat = 64;
constexpr size_t kMaxRegexPattern = 256;

bool IsAsciiPunct(unsigned char c) {
  bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return c >= 0x20 && c < 0x7f && !alnum;  // space too: "\\ " is a literal space
}

// Returns "" when `p` lies in the subset above, else why not. Malformed syntax inside
// the subset (unterminated class, quantifier with nothing to repeat, {3,2}) is left to
// std::regex, which rejects it.
std::string CheckRegexSubset(std::string_view p) {
  if (p.empty()) return "empty pattern";
  if (p.size() > kMaxRegexPattern) return "pattern longer than 256 bytes";
  for (unsigned char c : p) {
    if (c == 0 || c >= 0x80) return "non-ASCII or NUL character (Oniguruma matches characters)";
  }
  // \` \' (GNU buffer anchors) and \< \> (GNU word bounds) may be anchors in Oniguruma.
  auto escape_ok = [](char c) {
    return c == 't' || c == 'n' || c == 'r' ||
           (IsAsciiPunct(c) && std::string_view("`'<>").find(c) == std::string_view::npos);
  };
  size_t i = 0;
  bool quantified = false;
  while (i < p.size()) {
    if (quantified) return "only the last atom may be quantified";
    char c = p[i];
    if (c == '\\') {
      if (i + 1 < p.size() && !escape_ok(p[i + 1])) {
        return std::string("escape \\") + p[i + 1] +
               " (classes like \\s \\w \\d \\p{..} \\X, anchors and back-references differ)";
      }
      i += 2;
    } else if (c == '[') {
      ++i;
      if (i < p.size() && p[i] == '^') return "negated character class";
      if (i < p.size() && p[i] == ']') return "empty character class";
      while (i < p.size() && p[i] != ']') {
        if (p[i] == '[') return "nested character class / POSIX bracket";
        if (p.substr(i, 2) == "&&") return "class intersection &&";
        if (p[i] == '\\') {
          if (i + 1 < p.size() && !escape_ok(p[i + 1])) {
            return std::string("escape \\") + p[i + 1] + " in a class";
          }
          ++i;
        }
        ++i;
      }
      ++i;
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
      if (c == '{') {
        size_t close = p.find('}', i);
        if (close == std::string_view::npos) return "'{' that is not a repeat";
        std::string_view body = p.substr(i + 1, close - i - 1);
        size_t comma = body.find(',');
        std::string_view lo = body.substr(0, comma);
        std::string_view hi =
            comma == std::string_view::npos ? std::string_view() : body.substr(comma + 1);
        auto number = [](std::string_view d) {
          if (d.empty() || d.size() > 3) return -1;
          int v = 0;
          for (char x : d) {
            if (x < '0' || x > '9') return -1;
            v = v * 10 + (x - '0');
          }
          return v;
        };
        if (number(lo) < 0 || (!hi.empty() && number(hi) < 0)) {
          return "'{' that is not a {n}, {n,} or {n,m} repeat";
        }
        if (number(lo) > static_cast<int>(kMaxRepeat) ||
            (!hi.empty() && number(hi) > static_cast<int>(kMaxRepeat))) {
          return "repeat count above 64";
        }
        i = close + 1;
      } else {
        ++i;
      }
      if (i < p.size() && (p[i] == '?' || p[i] == '+')) {
        return "lazy or possessive quantifier";
      }
      quantified = true;
    } else if (std::string_view(".^$|()]}").find(c) != std::string_view::npos) {
      return std::string("'") + c + "' (only literals, classes and one final quantifier)";
    } else {
      ++i;
    }
  }
  return "";
}

class RegexReplaceNormalizer final : public Normalizer {
 public:
  RegexReplaceNormalizer(std::regex re, std::u32string content)
      : re_(std::move(re)), content_(std::move(content)) {}

  // Empty text stays empty (no content is inserted for an empty match on it).
  void Normalize(NText& t) const override {
    if (t.empty()) return;
    std::string s;
    std::vector<uint32_t> char_at;  // byte offset → index of the char starting there
    s.reserve(t.size());
    char_at.reserve(t.size() + 1);
    for (size_t k = 0; k < t.size(); ++k) {
      AppendUtf8(t[k].c, s);
      char_at.resize(s.size(), static_cast<uint32_t>(k));
    }
    char_at.push_back(static_cast<uint32_t>(t.size()));
    NText out;
    out.reserve(t.size());
    size_t copied = 0;  // chars of t already emitted or replaced
    auto emit = [&](size_t ci, size_t cj) {
      out.insert(out.end(), t.begin() + static_cast<ptrdiff_t>(copied),
                 t.begin() + static_cast<ptrdiff_t>(ci));
      // HF's NormalizedString::replace: the matched chars are removed first and the
      // content chars are inserted after them, so each takes the range of the char just
      // before it: the match's last char (measured: HF maps "   " → " " to [2, 3)), or
      // for an empty match the char before it (an empty range at the very start).
      NChar at = cj > 0 ? t[cj - 1] : NChar{0, t[0].begin, t[0].begin};
      for (char32_t c : content_) out.push_back({c, at.begin, at.end});
      copied = cj;
    };
    // Oniguruma's find_iter (onig crate): an empty match right where the previous match
    // ended is skipped by advancing one character.
    size_t last_end = 0;
    std::optional<size_t> last_match_end;
    std::cmatch m;
    const char* base = s.data();
    while (last_end <= s.size()) {
      auto flags = last_end > 0 ? std::regex_constants::match_prev_avail
                                : std::regex_constants::match_default;
      if (!std::regex_search(base + last_end, base + s.size(), m, re_, flags)) break;
      size_t ms = last_end + static_cast<size_t>(m.position(0));
      size_t me = ms + static_cast<size_t>(m.length(0));
      if (ms == me && last_match_end == me) {
        last_end += last_end < s.size() ? Utf8Len(s[last_end]) : 1;
        continue;
      }
      last_end = me;
      last_match_end = me;
      // ASCII-only matches start and end on char boundaries; an empty match inside a
      // multi-byte char cannot occur either (nothing in the subset matches there).
      size_t ci = char_at[ms], cj = me < s.size() ? char_at[me] : t.size();
      if (cj < ci || ci < copied) continue;
      emit(ci, cj);
    }
    out.insert(out.end(), t.begin() + static_cast<ptrdiff_t>(copied), t.end());
    t.swap(out);
  }

 private:
  static size_t Utf8Len(char lead) {
    auto c = static_cast<unsigned char>(lead);
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  }

  std::regex re_;
  std::u32string content_;
};

Result<std::unique_ptr<Normalizer>> RegexReplaceFromJson(const std::string& pattern,
                                                         std::u32string content) {
  std::string why = CheckRegexSubset(pattern);
  std::regex re;
  try {
    re = std::regex(pattern, kRegexFlags);
  } catch (const std::regex_error& e) {
    // An Oniguruma-only construct is reported as such even if std::regex chokes on it.
    if (!why.empty()) {
      return Unimplemented("Replace normalizer: unsupported Regex \"" + pattern + "\": " + why);
    }
    return InvalidArgument("Replace normalizer: invalid Regex \"" + pattern + "\": " + e.what());
  }
  if (!why.empty()) {
    return Unimplemented("Replace normalizer: unsupported Regex \"" + pattern + "\": " + why);
  }
  return std::unique_ptr<Normalizer>(new RegexReplaceNormalizer(std::move(re), std::move(content)));
}

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void Normalize(NText& t) const override {
    for (const auto& p : parts_) p->Normalize(t);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

std::u32string ToU32(std::string_view s) {
  std::u32string out;
  if (FindInvalidUtf8(s) != std::string_view::npos) return out;
  size_t i = 0;
  while (i < s.size()) out.push_back(DecodeUtf8(s, i));
  return out;
}

}  // namespace

std::unique_ptr<Normalizer> MakeBertNormalizer(const BertNormalizerOptions& opts) {
  return std::make_unique<BertNormalizer>(opts);
}

Result<std::unique_ptr<Normalizer>> NormalizerFromJson(const boost::json::value& v) {
  auto type = StringField(v, "type");
  if (!type) return InvalidArgument("normalizer without a \"type\"");
  if (*type == "BertNormalizer") {
    BertNormalizerOptions o;
    o.clean_text = BoolField(v, "clean_text").value_or(true);
    o.handle_chinese_chars = BoolField(v, "handle_chinese_chars").value_or(true);
    o.lowercase = BoolField(v, "lowercase").value_or(true);
    o.strip_accents = BoolField(v, "strip_accents").value_or(o.lowercase);
    return MakeBertNormalizer(o);
  }
  if (*type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (*type == "NFD") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(false, false));
  if (*type == "NFKD") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(false, true));
  if (*type == "NFC") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(true, false));
  if (*type == "NFKC") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(true, true));
  if (*type == "StripAccents") return std::unique_ptr<Normalizer>(new StripAccentsNormalizer());
  if (*type == "Strip") {
    return std::unique_ptr<Normalizer>(new StripNormalizer(
        BoolField(v, "strip_left").value_or(true), BoolField(v, "strip_right").value_or(true)));
  }
  if (*type == "Prepend") {
    return std::unique_ptr<Normalizer>(
        new PrependNormalizer(ToU32(StringField(v, "prepend").value_or(""))));
  }
  if (*type == "Replace") {
    const auto* pattern = Field(v, "pattern");
    auto literal = pattern ? StringField(*pattern, "String") : std::nullopt;
    auto regex = pattern ? StringField(*pattern, "Regex") : std::nullopt;
    auto content = ToU32(StringField(v, "content").value_or(""));
    if (regex && !literal) return RegexReplaceFromJson(*regex, std::move(content));
    if (!literal) return Unimplemented("Replace normalizer needs a String or Regex pattern");
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(ToU32(*literal), std::move(content)));
  }
  if (*type == "Precompiled") return PrecompiledNormalizerFromJson(v);
  if (*type == "Sequence") {
    const auto* list = Field(v, "normalizers");
    if (list == nullptr || !list->is_array()) return InvalidArgument("Sequence without list");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& item : list->get_array()) {
      IM_ASSIGN_OR_RETURN(auto p, NormalizerFromJson(item));
      parts.push_back(std::move(p));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  return Unimplemented("unsupported normalizer type: " + *type);
}

}  // namespace infermesh::runtime::tok
