// Request bodies for `infermesh bench`: unique texts of about N tokens built from a
// model's real WordPiece vocabulary, so each input tokenizes to N tokens (plus
// [CLS]/[SEP]) and never hits a cache.
//
//   IM_ASSIGN_OR_RETURN(auto words, LoadVocabularyWords("build/demo-models/bge-small-demo"));
//   auto texts = UniqueTexts(words, /*count=*/1000, /*tokens=*/16, /*seed=*/1);
//   std::string body = EmbedBody("/embed", {texts[0]}, "");  // {"inputs":"..."}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace infermesh::cli {

// Whole lowercase words (a-z, 2+ letters, no "##" continuation, no [SPECIAL]) from
// DIR/tokenizer.json's model.vocab or DIR/vocab.txt, in id order. Each is one token.
[[nodiscard]] Result<std::vector<std::string>> LoadVocabularyWords(const std::string& model_dir);

// `count` distinct texts of `tokens` space-separated words, deterministic for a seed.
std::vector<std::string> UniqueTexts(const std::vector<std::string>& words, size_t count,
                                     int tokens, uint64_t seed);

// A request body for the API at `path`: OpenAI's {"input": ...} for /v1/embeddings,
// TEI's {"inputs": ...} otherwise (`openai_model` names OpenAI's model); a single string for one
// text, an array for more.
std::string EmbedBody(const std::string& path, const std::vector<std::string>& texts,
                      const std::string& openai_model);

}  // namespace infermesh::cli
