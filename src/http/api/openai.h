// OpenAI-compatible embeddings: POST /v1/embeddings, as the npm `openai` client sends it
// (recent clients ask for encoding_format=base64 by default and decode it themselves).
//
//   auto req = ParseOpenAiEmbeddingRequest(body, limits);
//   if (!req.ok()) return Reply(req.error().status, OpenAiErrorBody(req.error()));
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/api/api_error.h"
#include "http/api/json_write.h"

namespace infermesh::http::api {

enum class EncodingFormat { kFloat, kBase64 };

// {input: string | [string] | [int] | [[int]], model?, encoding_format?: "float"|"base64",
//  dimensions?: int > 0, user?}. Exactly one of `texts` / `token_ids` is non-empty.
// `model` may be absent (TEI does the same): the handler serves its default model.
// Errors are 400 invalid_request_error with `param` naming the field.
struct OpenAiEmbeddingRequest {
  std::vector<std::string> texts;
  std::vector<std::vector<uint32_t>> token_ids;  // pre-tokenized input
  std::string model;
  EncodingFormat encoding_format = EncodingFormat::kFloat;
  std::optional<int64_t> dimensions;  // > 0; handler checks against the model's size
  std::string user;

  bool is_tokens() const { return !token_ids.empty(); }
  size_t size() const { return is_tokens() ? token_ids.size() : texts.size(); }
};
ApiResult<OpenAiEmbeddingRequest> ParseOpenAiEmbeddingRequest(std::string_view body,
                                                              const ParseLimits& limits = {});

struct OpenAiEmbeddingResponse {
  FloatRowsView embeddings;  // row i is data[i], index i
  std::string model;
  EncodingFormat encoding_format = EncodingFormat::kFloat;
  uint64_t prompt_tokens = 0;  // usage.prompt_tokens == usage.total_tokens
};
// {"object":"list","data":[{"object":"embedding","index":i,"embedding":[...]|"b64"}],
//  "model":...,"usage":{"prompt_tokens":n,"total_tokens":n}}. NaN/Inf → 424 (both
// encodings, so the answer does not depend on the encoding asked for).
ApiResult<std::string> SerializeOpenAiEmbeddingResponse(const OpenAiEmbeddingResponse& r);

}  // namespace infermesh::http::api
