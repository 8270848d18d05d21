// TEI codecs; see tei.h.
#include "http/api/tei.h"

#include "http/api/json_read.h"

namespace infermesh::http::api {
namespace {

using internal::DataError;
using internal::FindField;
using internal::kTeiStyle;

// inputs: string | [string], non-empty, at most limits.max_inputs.
ApiResult<bool> ReadInputs(const boost::json::object& obj, const ParseLimits& limits,
                           std::vector<std::string>& out) {
  const boost::json::value* v = FindField(obj, "inputs");
  if (v == nullptr) return internal::MissingField(kTeiStyle, "inputs");
  if (v->is_string()) {
    out.emplace_back(v->get_string());
    return true;
  }
  if (!v->is_array()) {
    return internal::WrongType(kTeiStyle, "inputs", "a string or an array of strings", *v);
  }
  const boost::json::array& arr = v->get_array();
  if (arr.empty()) return TeiEmptyError("`inputs` cannot be empty", "inputs");
  if (arr.size() > limits.max_inputs) {
    return TeiValidationError("batch size " + std::to_string(arr.size()) +
                                  " > maximum allowed batch size " +
                                  std::to_string(limits.max_inputs),
                              "inputs");
  }
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) {
      return internal::WrongType(kTeiStyle, internal::IndexedParam("inputs", i), "a string",
                                 arr[i]);
    }
    out.emplace_back(arr[i].get_string());
  }
  return false;
}

}  // namespace

ApiResult<TeiEmbedRequest> ParseTeiEmbedRequest(std::string_view body, const ParseLimits& limits) {
  boost::json::monotonic_resource mr;
  IM_API_ASSIGN_OR_RETURN(boost::json::value root,
                          internal::ParseJsonObject(body, limits.max_depth, &mr, kTeiStyle));
  const boost::json::object& obj = root.get_object();
  TeiEmbedRequest req;
  IM_API_ASSIGN_OR_RETURN(req.single, ReadInputs(obj, limits, req.inputs));
  IM_API_ASSIGN_OR_RETURN(req.truncate, internal::OptionalBool(obj, "truncate", kTeiStyle));
  IM_API_ASSIGN_OR_RETURN(std::optional<bool> normalize,
                          internal::OptionalBool(obj, "normalize", kTeiStyle));
  req.normalize = normalize.value_or(true);
  IM_API_ASSIGN_OR_RETURN(std::optional<std::string> dir,
                          internal::OptionalString(obj, "truncation_direction", kTeiStyle));
  if (dir) {
    if (*dir == "Right" || *dir == "right") {
      req.truncation_direction = TruncationDirection::kRight;
    } else if (*dir == "Left" || *dir == "left") {
      req.truncation_direction = TruncationDirection::kLeft;
    } else {
      return DataError(kTeiStyle, "truncation_direction",
                       "`truncation_direction`: unknown variant \"" + *dir +
                           "\", expected \"Left\" or \"Right\"");
    }
  }
  IM_API_ASSIGN_OR_RETURN(std::optional<std::string> prompt,
                          internal::OptionalString(obj, "prompt_name", kTeiStyle));
  if (prompt) {
    return TeiValidationError("`prompt_name` is not supported: the model defines no prompts",
                              "prompt_name");
  }
  return req;
}

ApiResult<std::string> SerializeTeiEmbedResponse(const FloatRowsView& rows) {
  std::string out;
  size_t dims = rows.rows() == 0 ? 0 : rows.row(0).size();
  out.reserve(2 + rows.rows() * (2 + dims * 12));
  size_t bad_row = 0;
  size_t bad_col = 0;
  if (AppendFloatRows(out, rows, &bad_row, &bad_col) != kAllFinite) {
    return TeiBackendError("embedding " + std::to_string(bad_row) + " has a non-finite value at " +
                           std::to_string(bad_col) + " (NaN/Inf cannot be JSON)");
  }
  return out;
}

ApiResult<std::vector<std::vector<float>>> ParseTeiEmbedResponse(std::string_view body,
                                                                 const ParseLimits& limits) {
  boost::json::monotonic_resource mr;
  boost::json::parse_options opts;
  opts.max_depth = limits.max_depth;
  boost::system::error_code ec;
  boost::json::value root = boost::json::parse(body, ec, &mr, opts);
  if (ec) return TeiBackendError("malformed TEI embed response: " + ec.message());
  if (!root.is_array()) return TeiBackendError("TEI embed response must be an array of arrays");
  std::vector<std::vector<float>> rows;
  rows.reserve(root.get_array().size());
  for (size_t r = 0; r < root.get_array().size(); ++r) {
    const boost::json::value& row = root.get_array()[r];
    if (!row.is_array()) {
      return TeiBackendError("TEI embed response row " + std::to_string(r) + " is not an array");
    }
    std::vector<float>& out = rows.emplace_back();
    out.reserve(row.get_array().size());
    for (size_t c = 0; c < row.get_array().size(); ++c) {
      auto f = internal::NumberAsFloat(row.get_array()[c], internal::kKServeStyle,
                                       "[" + std::to_string(r) + "][" + std::to_string(c) + "]");
      if (!f.ok()) return TeiBackendError("TEI embed response: " + f.error().message);
      out.push_back(*f);
    }
  }
  return rows;
}

ApiResult<TeiTokenizeRequest> ParseTeiTokenizeRequest(std::string_view body,
                                                      const ParseLimits& limits) {
  boost::json::monotonic_resource mr;
  IM_API_ASSIGN_OR_RETURN(boost::json::value root,
                          internal::ParseJsonObject(body, limits.max_depth, &mr, kTeiStyle));
  const boost::json::object& obj = root.get_object();
  TeiTokenizeRequest req;
  IM_API_ASSIGN_OR_RETURN(req.single, ReadInputs(obj, limits, req.inputs));
  IM_API_ASSIGN_OR_RETURN(std::optional<bool> special,
                          internal::OptionalBool(obj, "add_special_tokens", kTeiStyle));
  req.add_special_tokens = special.value_or(true);
  return req;
}

std::string SerializeTeiTokenizeResponse(const std::vector<std::vector<TeiToken>>& tokens) {
  std::string out = "[";
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i != 0) out += ',';
    out += '[';
    for (size_t j = 0; j < tokens[i].size(); ++j) {
      const TeiToken& t = tokens[i][j];
      if (j != 0) out += ',';
      out += "{\"id\":";
      AppendUint(out, t.id);
      out += ",\"text\":";
      AppendJsonString(out, t.text);
      out += t.special ? ",\"special\":true,\"start\":" : ",\"special\":false,\"start\":";
      if (t.start) {
        AppendUint(out, *t.start);
      } else {
        out += "null";
      }
      out += ",\"stop\":";
      if (t.stop) {
        AppendUint(out, *t.stop);
      } else {
        out += "null";
      }
      out += '}';
    }
    out += ']';
  }
  out += ']';
  return out;
}

std::string SerializeTeiInfo(const TeiInfo& info) {
  std::string out = "{\"model_id\":";
  AppendJsonString(out, info.model_id);
  out += ",\"model_sha\":";
  if (info.model_sha) {
    AppendJsonString(out, *info.model_sha);
  } else {
    out += "null";
  }
  out += ",\"model_dtype\":";
  AppendJsonString(out, info.model_dtype);
  out += ",\"model_type\":{\"embedding\":{\"pooling\":";
  AppendJsonString(out, info.pooling);
  out += "}},\"max_concurrent_requests\":";
  AppendUint(out, info.max_concurrent_requests);
  out += ",\"max_input_length\":";
  AppendUint(out, info.max_input_length);
  out += ",\"max_batch_tokens\":";
  AppendUint(out, info.max_batch_tokens);
  out += ",\"max_batch_requests\":";
  if (info.max_batch_requests) {
    AppendUint(out, *info.max_batch_requests);
  } else {
    out += "null";
  }
  out += ",\"max_client_batch_size\":";
  AppendUint(out, info.max_client_batch_size);
  out += info.auto_truncate ? ",\"auto_truncate\":true" : ",\"auto_truncate\":false";
  out += ",\"tokenization_workers\":";
  AppendUint(out, info.tokenization_workers);
  out += ",\"version\":";
  AppendJsonString(out, info.version);
  out += ",\"sha\":null,\"docker_label\":null}";
  return out;
}

}  // namespace infermesh::http::api
