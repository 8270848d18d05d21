// Tokenization models: turn one pre-tokenized piece into vocabulary ids.
//   WordPiece (BERT), Unigram (SentencePiece, XLM-R), BPE (GPT-2 / RoBERTa byte-level).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/json/fwd.hpp>

#include "core/status.h"
#include "runtime/tokenizer/normalizer.h"

namespace infermesh::runtime::tok {

struct Token {
  int64_t id;
  std::string text;
  uint32_t begin, end;  // original input bytes
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

class Model {
 public:
  virtual ~Model() = default;
  virtual void Tokenize(const NText& piece, std::vector<Token>& out) const = 0;
  std::optional<int64_t> TokenToId(std::string_view token) const {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  size_t vocab_size() const { return vocab_.size(); }

 protected:
  Vocab vocab_;
};

struct WordPieceOptions {
  std::string unk_token = "[UNK]";
  std::string continuing_subword_prefix = "##";
  size_t max_input_chars_per_word = 100;
};
Result<std::unique_ptr<Model>> MakeWordPiece(Vocab vocab, const WordPieceOptions& opts);

Result<std::unique_ptr<Model>> ModelFromJson(const boost::json::value& v);

}  // namespace infermesh::runtime::tok
