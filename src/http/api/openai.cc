// OpenAI embeddings codec; see openai.h.
#include "http/api/openai.h"

#include <cmath>
#include <limits>

#include "http/api/json_read.h"

namespace infermesh::http::api {
namespace {

using internal::DataError;
using internal::IndexedParam;
using internal::kOpenAiStyle;
using internal::WrongType;

ApiResult<uint32_t> TokenId(const boost::json::value& v, const std::string& param) {
  if (v.is_int64() && v.get_int64() >= 0 && v.get_int64() <= std::numeric_limits<uint32_t>::max()) {
    return static_cast<uint32_t>(v.get_int64());
  }
  if (v.is_int64() || v.is_uint64()) {
    return DataError(kOpenAiStyle, param, "`" + param + "`: token id out of range [0, 2^32)");
  }
  return WrongType(kOpenAiStyle, param, "a token id (non-negative integer)", v);
}

ApiResult<std::vector<uint32_t>> TokenArray(const boost::json::array& arr,
                                            const std::string& param) {
  if (arr.empty()) {
    return DataError(kOpenAiStyle, param, "`" + param + "`: token array must not be empty");
  }
  std::vector<uint32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    IM_API_ASSIGN_OR_RETURN(uint32_t id, TokenId(arr[i], IndexedParam(param, i)));
    ids.push_back(id);
  }
  return ids;
}

// Fills texts or token_ids from `input`; the first element decides the array's kind.
ApiResult<bool> ReadInput(const boost::json::value* v, const ParseLimits& limits,
                          OpenAiEmbeddingRequest& req) {
  if (v == nullptr) return internal::MissingField(kOpenAiStyle, "input");
  if (v->is_string()) {
    req.texts.emplace_back(v->get_string());
    return true;
  }
  constexpr std::string_view kExpected =
      "a string, an array of strings, an array of token ids or an array of token arrays";
  if (!v->is_array()) return WrongType(kOpenAiStyle, "input", kExpected, *v);
  const boost::json::array& arr = v->get_array();
  if (arr.empty()) return DataError(kOpenAiStyle, "input", "`input` must not be empty");
  if (arr.front().is_number()) {  // one pre-tokenized input
    IM_API_ASSIGN_OR_RETURN(auto ids, TokenArray(arr, "input"));
    req.token_ids.push_back(std::move(ids));
    return true;
  }
  if (arr.size() > limits.max_inputs) {
    return DataError(kOpenAiStyle, "input",
                     "`input` has " + std::to_string(arr.size()) +
                         " items, more than the maximum " + std::to_string(limits.max_inputs));
  }
  if (arr.front().is_string()) {
    req.texts.reserve(arr.size());
    for (size_t i = 0; i < arr.size(); ++i) {
      if (!arr[i].is_string()) {
        return WrongType(kOpenAiStyle, IndexedParam("input", i), "a string (input[0] is a string)",
                         arr[i]);
      }
      req.texts.emplace_back(arr[i].get_string());
    }
    return false;
  }
  if (arr.front().is_array()) {
    req.token_ids.reserve(arr.size());
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string param = IndexedParam("input", i);
      if (!arr[i].is_array()) {
        return WrongType(kOpenAiStyle, param, "an array of token ids (input[0] is one)", arr[i]);
      }
      IM_API_ASSIGN_OR_RETURN(auto ids, TokenArray(arr[i].get_array(), param));
      req.token_ids.push_back(std::move(ids));
    }
    return false;
  }
  return WrongType(kOpenAiStyle, "input[0]", "a string, a token id or an array of token ids",
                   arr.front());
}

}  // namespace

ApiResult<OpenAiEmbeddingRequest> ParseOpenAiEmbeddingRequest(std::string_view body,
                                                              const ParseLimits& limits) {
  boost::json::monotonic_resource mr;
  IM_API_ASSIGN_OR_RETURN(boost::json::value root,
                          internal::ParseJsonObject(body, limits.max_depth, &mr, kOpenAiStyle));
  const boost::json::object& obj = root.get_object();
  OpenAiEmbeddingRequest req;
  IM_API_ASSIGN_OR_RETURN([[maybe_unused]] bool single,
                          ReadInput(internal::FindField(obj, "input"), limits, req));
  IM_API_ASSIGN_OR_RETURN(auto model, internal::OptionalString(obj, "model", kOpenAiStyle));
  req.model = model.value_or("");
  IM_API_ASSIGN_OR_RETURN(auto format,
                          internal::OptionalString(obj, "encoding_format", kOpenAiStyle));
  if (format) {
    if (*format == "float") {
      req.encoding_format = EncodingFormat::kFloat;
    } else if (*format == "base64") {
      req.encoding_format = EncodingFormat::kBase64;
    } else {
      return DataError(
          kOpenAiStyle, "encoding_format",
          "`encoding_format`: expected \"float\" or \"base64\", got \"" + *format + "\"");
    }
  }
  IM_API_ASSIGN_OR_RETURN(req.dimensions, internal::OptionalInt(obj, "dimensions", kOpenAiStyle));
  if (req.dimensions && *req.dimensions <= 0) {
    return DataError(
        kOpenAiStyle, "dimensions",
        "`dimensions`: must be a positive integer, got " + std::to_string(*req.dimensions));
  }
  IM_API_ASSIGN_OR_RETURN(auto user, internal::OptionalString(obj, "user", kOpenAiStyle));
  req.user = user.value_or("");
  return req;
}

ApiResult<std::string> SerializeOpenAiEmbeddingResponse(const OpenAiEmbeddingResponse& r) {
  const FloatRowsView& rows = r.embeddings;
  const size_t dims = rows.rows() == 0 ? 0 : rows.row(0).size();
  std::string out;
  out.reserve(128 + r.model.size() + rows.rows() * (48 + dims * 12));
  out += "{\"object\":\"list\",\"data\":[";
  for (size_t i = 0; i < rows.rows(); ++i) {
    const std::span<const float> row = rows.row(i);
    if (i != 0) out += ',';
    out += "{\"object\":\"embedding\",\"index\":";
    AppendUint(out, i);
    out += ",\"embedding\":";
    size_t bad = kAllFinite;
    if (r.encoding_format == EncodingFormat::kFloat) {
      bad = AppendFloatArray(out, row);
    } else {
      for (size_t k = 0; k < row.size() && bad == kAllFinite; ++k) {
        if (!std::isfinite(row[k])) bad = k;
      }
      if (bad == kAllFinite) {
        out += '"';
        AppendBase64Floats(out, row);
        out += '"';
      }
    }
    if (bad != kAllFinite) {
      return TeiBackendError("embedding " + std::to_string(i) + " has a non-finite value at " +
                             std::to_string(bad) + " (NaN/Inf cannot be JSON)");
    }
    out += '}';
  }
  out += "],\"model\":";
  AppendJsonString(out, r.model);
  out += ",\"usage\":{\"prompt_tokens\":";
  AppendUint(out, r.prompt_tokens);
  out += ",\"total_tokens\":";
  AppendUint(out, r.prompt_tokens);
  out += "}}";
  return out;
}

}  // namespace infermesh::http::api
