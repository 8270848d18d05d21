// HF-compatible pre-tokenizers; see pre_tokenizer.h.
#include "runtime/tokenizer/pre_tokenizer.h"

#include <array>
#include <string>

#include "runtime/tokenizer/json_util.h"
#include "runtime/tokenizer/unicode.h"

namespace infermesh::runtime::tok {
namespace {

void PushIfNotEmpty(std::vector<NText>& out, NText&& piece) {
  if (!piece.empty()) out.push_back(std::move(piece));
}

// Whitespace splits (whitespace removed), then each punctuation char stands alone.
class BertPreTokenizer final : public PreTokenizer {
 public:
  void Split(std::vector<NText>& pieces) const override {
    std::vector<NText> out;
    for (NText& p : pieces) {
      NText cur;
      for (const NChar& c : p) {
        if (IsWhitespace(c.c)) {
          PushIfNotEmpty(out, std::move(cur));
          cur.clear();
        } else if (IsBertPunct(c.c)) {
          PushIfNotEmpty(out, std::move(cur));
          cur.clear();
          out.push_back(NText{c});
        } else {
          cur.push_back(c);
        }
      }
      PushIfNotEmpty(out, std::move(cur));
    }
    pieces.swap(out);
  }
};

class WhitespaceSplitPreTokenizer final : public PreTokenizer {
 public:
  void Split(std::vector<NText>& pieces) const override {
    std::vector<NText> out;
    for (NText& p : pieces) {
      NText cur;
      for (const NChar& c : p) {
        if (IsWhitespace(c.c)) {
          PushIfNotEmpty(out, std::move(cur));
          cur.clear();
        } else {
          cur.push_back(c);
        }
      }
      PushIfNotEmpty(out, std::move(cur));
    }
    pieces.swap(out);
  }
};

enum class PrependScheme { kAlways, kFirst, kNever };

// Replaces ' ' with the replacement char (U+2581), optionally prepends one, then
// splits so that every replacement char starts a new piece (MergedWithNext).
class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t rep, PrependScheme scheme, bool split)
      : rep_(rep), scheme_(scheme), split_(split) {}
  void Split(std::vector<NText>& pieces) const override {
    std::vector<NText> out;
    for (NText& p : pieces) {
      if (p.empty()) continue;
      for (NChar& c : p) {
        if (c.c == U' ') c.c = rep_;
      }
      bool prepend = scheme_ == PrependScheme::kAlways ||
                     (scheme_ == PrependScheme::kFirst && p.front().begin == 0);
      if (prepend && p.front().c != rep_) {
        p.insert(p.begin(), NChar{rep_, p.front().begin, p.front().end});
      }
      if (!split_) {
        out.push_back(std::move(p));
        continue;
      }
      NText cur;
      for (const NChar& c : p) {
        if (c.c == rep_) {
          PushIfNotEmpty(out, std::move(cur));
          cur.clear();
        }
        cur.push_back(c);
      }
      PushIfNotEmpty(out, std::move(cur));
    }
    pieces.swap(out);
  }

 private:
  char32_t rep_;
  PrependScheme scheme_;
  bool split_;
};

bool IsContraction(const NText& p, size_t i, size_t& len) {
  if (p[i].c != U'\'' || i + 1 >= p.size()) return false;
  char32_t a = p[i + 1].c;
  if (a == U's' || a == U't' || a == U'm' || a == U'd') {
    len = 2;
    return true;
  }
  if (i + 2 < p.size()) {
    char32_t b = p[i + 2].c;
    if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) {
      len = 3;
      return true;
    }
  }
  return false;
}

bool IsOther(char32_t c) { return !IsWhitespace(c) && !IsLetter(c) && !IsNumber(c); }

// The GPT-2 split, written out by hand (linear time):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void SplitGpt2(const NText& p, std::vector<NText>& out) {
  size_t n = p.size(), i = 0;
  auto run = [&](size_t from, bool (*pred)(char32_t)) {
    while (from < n && pred(p[from].c)) ++from;
    return from;
  };
  while (i < n) {
    size_t end = i, len = 0;
    size_t j = (p[i].c == U' ' && i + 1 < n) ? i + 1 : i;
    if (IsContraction(p, i, len)) {
      end = i + len;
    } else if (IsLetter(p[j].c)) {
      end = run(j, IsLetter);
    } else if (IsNumber(p[j].c)) {
      end = run(j, IsNumber);
    } else if (IsOther(p[j].c)) {
      end = run(j, IsOther);
    } else {
      size_t e = run(i, IsWhitespace);
      end = (e == n || e - i == 1) ? e : e - 1;
    }
    out.emplace_back(p.begin() + i, p.begin() + end);
    i = end;
  }
}

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void Split(std::vector<NText>& pieces) const override {
    std::vector<NText> split;
    for (NText& p : pieces) {
      if (p.empty()) continue;
      if (add_prefix_space_ && p.front().c != U' ') {
        p.insert(p.begin(), NChar{U' ', p.front().begin, p.front().begin});
      }
      if (use_regex_) {
        SplitGpt2(p, split);
      } else {
        split.push_back(std::move(p));
      }
    }
    std::vector<NText> out;
    out.reserve(split.size());
    std::string bytes;
    for (const NText& p : split) {
      NText b;
      b.reserve(p.size());
      for (const NChar& c : p) {
        bytes.clear();
        AppendUtf8(c.c, bytes);
        for (char ch : bytes) b.push_back({ByteToChar(static_cast<uint8_t>(ch)), c.begin, c.end});
      }
      out.push_back(std::move(b));
    }
    pieces.swap(out);
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void Split(std::vector<NText>& pieces) const override {
    for (const auto& p : parts_) p->Split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

std::array<char32_t, 256> MakeByteTable() {
  std::array<char32_t, 256> t{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    t[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return t;
}

}  // namespace

char32_t ByteToChar(uint8_t b) {
  static const std::array<char32_t, 256> table = MakeByteTable();
  return table[b];
}

std::unique_ptr<PreTokenizer> MakeBertPreTokenizer() {
  return std::make_unique<BertPreTokenizer>();
}

Result<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const boost::json::value& v) {
  auto type = StringField(v, "type");
  if (!type) return InvalidArgument("pre_tokenizer without a \"type\"");
  if (*type == "BertPreTokenizer") return MakeBertPreTokenizer();
  if (*type == "WhitespaceSplit") {
    return std::unique_ptr<PreTokenizer>(new WhitespaceSplitPreTokenizer());
  }
  if (*type == "Metaspace") {
    std::string rep = StringField(v, "replacement").value_or("\u2581");
    if (rep.empty() || FindInvalidUtf8(rep) != std::string::npos) {
      return InvalidArgument("Metaspace: bad replacement");
    }
    size_t i = 0;
    char32_t rc = DecodeUtf8(rep, i);
    PrependScheme scheme = PrependScheme::kAlways;
    if (auto s = StringField(v, "prepend_scheme")) {
      if (*s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (*s == "never") {
        scheme = PrependScheme::kNever;
      } else if (*s != "always") {
        return InvalidArgument("Metaspace: unknown prepend_scheme " + *s);
      }
    } else if (!BoolField(v, "add_prefix_space").value_or(true)) {
      scheme = PrependScheme::kNever;
    }
    return std::unique_ptr<PreTokenizer>(
        new MetaspacePreTokenizer(rc, scheme, BoolField(v, "split").value_or(true)));
  }
  if (*type == "ByteLevel") {
    return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(
        BoolField(v, "add_prefix_space").value_or(true), BoolField(v, "use_regex").value_or(true)));
  }
  if (*type == "Sequence") {
    const auto* list = Field(v, "pretokenizers");
    if (list == nullptr || !list->is_array()) return InvalidArgument("Sequence without list");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& item : list->get_array()) {
      IM_ASSIGN_OR_RETURN(auto p, PreTokenizerFromJson(item));
      parts.push_back(std::move(p));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(parts)));
  }
  return Unimplemented("unsupported pre_tokenizer type: " + *type);
}

}  // namespace infermesh::runtime::tok
