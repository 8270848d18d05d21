// SentencePiece's precompiled normalization rules (HF "Precompiled" normalizer).
//
// `precompiled_charsmap` is SentencePiece's normalizer_spec.precompiled_charsmap: a
// little-endian uint32 trie size in bytes, a Darts-clone double-array trie over UTF-8
// bytes (uint32 units), then a pool of NUL-terminated replacement strings that the
// trie's values point into.
//
//   auto m = PrecompiledCharsmap::FromBase64(b64);   // InvalidArgument if malformed
//   m->LongestPrefix("\uFB01x");                     // {3, "fi"}
//   auto n = MakePrecompiledNormalizer(std::move(*m));
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "runtime/tokenizer/normalizer.h"

namespace infermesh::runtime::tok {

class PrecompiledCharsmap {
 public:
  // A prefix of the searched key that is a rule: its byte length and replacement.
  struct Match {
    size_t length;
    std::string_view replacement;
  };

  // Rejects (InvalidArgument) anything malformed: bad base64, a trie size that is not a
  // multiple of 4 or exceeds the data, an empty trie, a replacement pool that is not
  // UTF-8. Lookups bounds-check every access, so no input can make them crash.
  static Result<PrecompiledCharsmap> FromBase64(std::string_view b64);
  static Result<PrecompiledCharsmap> FromBytes(std::string_view bytes);

  // Every rule that is a prefix of `key`, shortest first (Darts common-prefix search).
  std::vector<Match> CommonPrefixSearch(std::string_view key) const;
  // The longest rule that is a prefix of `key` (SentencePiece's lookup).
  std::optional<Match> LongestPrefix(std::string_view key) const;
  // Hugging Face's lookup (spm_precompiled `transform`): the replacement of the
  // SHORTEST rule that is a prefix of `chunk`, even when it covers only part of it.
  std::optional<std::string_view> Transform(std::string_view chunk) const;

 private:
  std::optional<std::string_view> ReplacementAt(uint32_t offset) const;

  std::vector<uint32_t> units_;
  std::string pool_;
};

// HF's Precompiled normalizer: walks the text grapheme cluster by grapheme cluster; a
// cluster shorter than 6 bytes that Transform()s is replaced as a unit, otherwise each
// character is Transform()ed or kept. Output characters take the input ranges of the
// characters they replace (extra ones share the last), as HF's alignments do.
std::unique_ptr<Normalizer> MakePrecompiledNormalizer(PrecompiledCharsmap charsmap);

// {"type": "Precompiled", "precompiled_charsmap": "<base64>"}.
Result<std::unique_ptr<Normalizer>> PrecompiledNormalizerFromJson(const boost::json::value& v);

}  // namespace infermesh::runtime::tok
