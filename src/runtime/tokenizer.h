// Tokenizer: turns UTF-8 text into model input ids, compatible with Hugging Face
// `tokenizer.json` files (WordPiece, Unigram, byte-level BPE) and BERT `vocab.txt`.
//
//   IM_ASSIGN_OR_RETURN(auto tok, Tokenizer::FromJsonFile(dir + "/tokenizer.json"));
//   IM_ASSIGN_OR_RETURN(Encoding enc, tok->Encode("Hello world", {.max_length = 512}));
//   // enc.ids = [101, 7592, 2088, 102]
//
// Ids are verified identical to Hugging Face tokenizers 0.22 on a multilingual corpus
// (tests/parity/tokenizer.cmake). Offsets are byte offsets into the original input;
// special tokens have offsets (0, 0). A Tokenizer is immutable after loading, so
// Encode may be called from many threads at once. Encode runs in time linear in the
// input length; invalid UTF-8 is an InvalidArgument error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace infermesh::runtime {

enum class TruncationSide { kRight, kLeft };

struct EncodeOptions {
  bool add_special_tokens = true;
  // Maximum number of ids including special tokens; 0 means no truncation.
  size_t max_length = 0;
  TruncationSide side = TruncationSide::kRight;
};

struct Encoding {
  std::vector<int64_t> ids;
  std::vector<int64_t> type_ids;
  std::vector<int64_t> attention_mask;
  std::vector<std::pair<uint32_t, uint32_t>> offsets;  // [begin, end) bytes of the input
  std::vector<std::string> tokens;
  bool truncated = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  [[nodiscard]] static Result<std::unique_ptr<Tokenizer>> FromJsonFile(const std::string& path);
  [[nodiscard]] static Result<std::unique_ptr<Tokenizer>> FromJson(std::string_view json);
  // BERT defaults: BertNormalizer(lowercase), BertPreTokenizer, WordPiece with "##",
  // [CLS] x [SEP] post-processing, [UNK] as unknown token and [PAD] as padding.
  [[nodiscard]] static Result<std::unique_ptr<Tokenizer>> FromVocabTxt(const std::string& path,
                                                                       bool lowercase = true);

  [[nodiscard]] virtual Result<Encoding> Encode(std::string_view text,
                                                const EncodeOptions& opts = {}) const = 0;

  virtual int64_t pad_id() const = 0;
  virtual size_t vocab_size() const = 0;
  virtual std::optional<int64_t> TokenToId(std::string_view token) const = 0;
  // How many tokens the post-processor adds to one sequence (2 for "[CLS] x [SEP]").
  virtual size_t num_special_tokens() const = 0;
};

}  // namespace infermesh::runtime
