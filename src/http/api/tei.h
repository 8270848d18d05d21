// Text Embeddings Inference (TEI) compatible API: POST /embed, POST /tokenize, GET /info.
// Field names and shapes follow huggingface/text-embeddings-inference's OpenAPI.
//
//   auto req = ParseTeiEmbedRequest(body, limits);
//   if (!req.ok()) return Reply(req.error().status, TeiErrorBody(req.error()));
//   ...
//   auto json = SerializeTeiEmbedResponse(FloatRowsView(out.data(), rows, dims));
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/api/api_error.h"
#include "http/api/json_write.h"

namespace infermesh::http::api {

enum class TruncationDirection { kRight, kLeft };

// POST /embed {inputs: string | [string], truncate?, truncation_direction?: "Left"|"Right"
// (lower case accepted), normalize? (default true), prompt_name?}. Unknown fields are
// ignored (as serde does). prompt_name is rejected with 413 Validation: no infermesh model
// defines prompts, and silently ignoring it would change the embeddings.
struct TeiEmbedRequest {
  std::vector<std::string> inputs;
  bool single = false;           // `inputs` was a bare string
  std::optional<bool> truncate;  // unset: the server's auto_truncate applies
  TruncationDirection truncation_direction = TruncationDirection::kRight;
  bool normalize = true;
};
ApiResult<TeiEmbedRequest> ParseTeiEmbedRequest(std::string_view body,
                                                const ParseLimits& limits = {});

// [[f32,...],...] (TEI answers a nested array for a single input too). A NaN/Inf value
// cannot be JSON: 424 Backend naming its row and column.
ApiResult<std::string> SerializeTeiEmbedResponse(const FloatRowsView& rows);

// Client side (gateway to a TEI peer, tests): [[number]] → rows.
ApiResult<std::vector<std::vector<float>>> ParseTeiEmbedResponse(std::string_view body,
                                                                 const ParseLimits& limits = {});

// POST /tokenize {inputs: string | [string], add_special_tokens? (default true)}.
struct TeiTokenizeRequest {
  std::vector<std::string> inputs;
  bool single = false;
  bool add_special_tokens = true;
};
ApiResult<TeiTokenizeRequest> ParseTeiTokenizeRequest(std::string_view body,
                                                      const ParseLimits& limits = {});

// One token of the /tokenize answer; start/stop are byte offsets into the input, absent
// (null) for special tokens that do not come from the text.
struct TeiToken {
  uint32_t id = 0;
  std::string text;
  bool special = false;
  std::optional<uint64_t> start;
  std::optional<uint64_t> stop;
};
// [[{"id","text","special","start","stop"}]]
std::string SerializeTeiTokenizeResponse(const std::vector<std::vector<TeiToken>>& tokens);

// GET /info.
struct TeiInfo {
  std::string model_id;
  std::optional<std::string> model_sha;
  std::string model_dtype = "float32";
  std::string pooling = "cls";  // model_type: {"embedding": {"pooling": ...}}
  uint64_t max_concurrent_requests = 0;
  uint64_t max_input_length = 0;
  uint64_t max_batch_tokens = 0;
  std::optional<uint64_t> max_batch_requests;  // null when unbounded
  uint64_t max_client_batch_size = 0;
  bool auto_truncate = false;
  uint64_t tokenization_workers = 0;
  std::string version;
};
std::string SerializeTeiInfo(const TeiInfo& info);

}  // namespace infermesh::http::api
