// HF-compatible normalizers over NText; see normalizer.h.
#include "runtime/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <algorithm>

#include "runtime/tokenizer/json_util.h"
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

// Stable-sorts each run of non-starters by canonical combining class (Unicode's
// canonical ordering), as NFD/NFKD require.
void CanonicalOrder(NText& t) {
  size_t i = 0;
  while (i < t.size()) {
    if (CombiningClass(t[i].c) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < t.size() && CombiningClass(t[j].c) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(t.begin() + i, t.begin() + j, [](const NChar& a, const NChar& b) {
        return CombiningClass(a.c) < CombiningClass(b.c);
      });
    }
    i = j;
  }
}

void DecomposeText(NText& t, bool compat) {
  NText out;
  out.reserve(t.size());
  std::u32string buf;
  for (const NChar& nc : t) {
    buf.clear();
    Decompose(nc.c, compat, buf);
    for (char32_t c : buf) out.push_back({c, nc.begin, nc.end});
  }
  CanonicalOrder(out);
  t.swap(out);
}

bool IsHangulVowelOrTrail(char32_t c) {
  return (c >= 0x1161 && c <= 0x1175) || (c >= 0x11A8 && c <= 0x11C2);
}

// NFC/NFKC: composition may join a character with its predecessors, so the text is cut
// into chunks that start at a character which cannot compose backwards; each chunk is
// composed by utf8proc and its output characters share the chunk's input range.
void ComposeText(NText& t, bool compat) {
  NText out;
  out.reserve(t.size());
  std::u32string chunk, tmp;
  uint32_t cb = 0, ce = 0;
  auto flush = [&]() {
    if (chunk.empty()) return;
    std::vector<utf8proc_int32_t> buf(chunk.begin(), chunk.end());
    utf8proc_ssize_t n = utf8proc_normalize_utf32(
        buf.data(), static_cast<utf8proc_ssize_t>(buf.size()),
        static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_STABLE));
    if (n < 0) n = static_cast<utf8proc_ssize_t>(buf.size());
    for (utf8proc_ssize_t i = 0; i < n; ++i) {
      out.push_back({static_cast<char32_t>(buf[static_cast<size_t>(i)]), cb, ce});
    }
    chunk.clear();
  };
  for (const NChar& nc : t) {
    tmp.clear();
    Decompose(nc.c, compat, tmp);
    char32_t first = tmp.empty() ? nc.c : tmp[0];
    auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(first));
    bool starter = CombiningClass(first) == 0 && cat != UTF8PROC_CATEGORY_MN &&
                   cat != UTF8PROC_CATEGORY_MC && cat != UTF8PROC_CATEGORY_ME &&
                   !IsHangulVowelOrTrail(first);
    if (starter || chunk.empty()) {
      flush();
      cb = nc.begin;
    }
    ce = nc.end;
    chunk += tmp;
  }
  flush();
  // Canonical ordering inside a chunk was done by utf8proc; across chunks the boundary
  // is a starter, so nothing needs reordering.
  t.swap(out);
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
    if (!literal) return Unimplemented("Replace normalizer supports only String patterns");
    return std::unique_ptr<Normalizer>(
        new ReplaceNormalizer(ToU32(*literal), ToU32(StringField(v, "content").value_or(""))));
  }
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
