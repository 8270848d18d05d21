// Normalizers: rewrite text before it is split into words, keeping for every output
// character the byte range of the input it came from (so offsets survive).
//
//   NText t = ToNText("Héllo", 0);
//   BertNormalizer(...).Normalize(t);  // "hello", each char still maps to its bytes
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>

#include "core/status.h"

namespace infermesh::runtime::tok {

// One normalized character and the [begin, end) bytes of the original input it
// stems from. Characters produced from one input character share its range.
struct NChar {
  char32_t c;
  uint32_t begin, end;
};
using NText = std::vector<NChar>;

// Decodes valid UTF-8 `s`, whose first byte sits at `base` in the original input.
NText ToNText(std::string_view s, uint32_t base);
std::string ToUtf8(const NText& t);

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(NText& text) const = 0;
};

struct BertNormalizerOptions {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  bool strip_accents = true;
  bool lowercase = true;
};
std::unique_ptr<Normalizer> MakeBertNormalizer(const BertNormalizerOptions& opts);

// Parses one HF normalizer object ({"type": "BertNormalizer", ...}); null is not
// accepted here (the caller treats a null normalizer as "none").
Result<std::unique_ptr<Normalizer>> NormalizerFromJson(const boost::json::value& v);

}  // namespace infermesh::runtime::tok
