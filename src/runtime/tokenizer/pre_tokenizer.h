// Pre-tokenizers: split normalized text into words (pieces) that the model tokenizes
// independently; like HF, each one refines the pieces left by the previous one.
#pragma once

#include <memory>
#include <vector>

#include <boost/json/fwd.hpp>

#include "core/status.h"
#include "runtime/tokenizer/normalizer.h"

namespace infermesh::runtime::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` with their refinement. Empty pieces are dropped.
  virtual void Split(std::vector<NText>& pieces) const = 0;
};

std::unique_ptr<PreTokenizer> MakeBertPreTokenizer();
Result<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const boost::json::value& v);

// GPT-2's byte-to-unicode table: byte b is written as this code point.
char32_t ByteToChar(uint8_t b);

}  // namespace infermesh::runtime::tok
