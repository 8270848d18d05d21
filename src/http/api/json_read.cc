// Bounded JSON parsing and typed field access for the API codecs; see json_read.h.
#include "http/api/json_read.h"

#include "http/api/json_write.h"

#include <cmath>
#include <limits>

namespace infermesh::http::api::internal {

ApiError DataError(const ErrorStyle& style, std::string param, std::string message) {
  return ApiError{style.data_status, std::string(style.type), std::move(message), std::move(param)};
}

ApiResult<boost::json::value> ParseJsonObject(std::string_view body, size_t max_depth,
                                              boost::json::storage_ptr sp,
                                              const ErrorStyle& style) {
  boost::json::parse_options opts;
  opts.max_depth = max_depth;
  boost::json::stream_parser parser(boost::json::storage_ptr(), opts);
  parser.reset(std::move(sp));
  boost::system::error_code ec;
  const size_t consumed = parser.write(body.data(), body.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    std::string what = ec == boost::json::error::too_deep
                           ? "nesting deeper than " + std::to_string(max_depth) + " levels"
                           : ec.message();
    if (!IsValidUtf8(body)) {
      return ApiError{
          style.syntax_status,
          std::string(style.type),
          "request body is not valid UTF-8 (near byte " + std::to_string(consumed) + ")",
          {}};
    }
    const std::string at = body.empty() ? std::string("empty body")
                                        : "at byte " + std::to_string(consumed) + ": " + what;
    return ApiError{style.syntax_status, std::string(style.type), "malformed JSON " + at, {}};
  }
  boost::json::value root = parser.release();
  if (!root.is_object()) {
    return DataError(style, {},
                     "request body must be a JSON object, got " + std::string(KindName(root)));
  }
  return root;
}

std::string_view KindName(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null:
      return "null";
    case boost::json::kind::bool_:
      return "boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_:
      return "number";
    case boost::json::kind::string:
      return "string";
    case boost::json::kind::array:
      return "array";
    case boost::json::kind::object:
      return "object";
  }
  return "value";
}

const boost::json::value* FindField(const boost::json::object& obj, std::string_view key) {
  const boost::json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) return nullptr;
  return v;
}

ApiError WrongType(const ErrorStyle& style, std::string_view param, std::string_view expected,
                   const boost::json::value& got) {
  std::string m = "`" + std::string(param) + "`: expected " + std::string(expected) + ", got " +
                  std::string(KindName(got));
  if (got.is_string() && got.get_string().size() <= 32) {
    m += " \"" + std::string(got.get_string()) + "\"";
  }
  return DataError(style, std::string(param), std::move(m));
}

ApiError MissingField(const ErrorStyle& style, std::string_view key) {
  return DataError(style, std::string(key), "missing field `" + std::string(key) + "`");
}

ApiResult<std::optional<bool>> OptionalBool(const boost::json::object& obj, std::string_view key,
                                            const ErrorStyle& style) {
  const boost::json::value* v = FindField(obj, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_bool()) return WrongType(style, key, "a boolean", *v);
  return std::optional<bool>(v->get_bool());
}

ApiResult<std::optional<std::string>> OptionalString(const boost::json::object& obj,
                                                     std::string_view key,
                                                     const ErrorStyle& style) {
  const boost::json::value* v = FindField(obj, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return WrongType(style, key, "a string", *v);
  return std::optional<std::string>(std::string(v->get_string()));
}

ApiResult<std::optional<int64_t>> OptionalInt(const boost::json::object& obj, std::string_view key,
                                              const ErrorStyle& style) {
  const boost::json::value* v = FindField(obj, key);
  if (v == nullptr) return std::optional<int64_t>();
  if (v->is_int64()) return std::optional<int64_t>(v->get_int64());
  if (v->is_uint64()) {
    return DataError(style, std::string(key), "`" + std::string(key) + "`: integer too large");
  }
  return WrongType(style, key, "an integer", *v);
}

ApiResult<double> NumberAsDouble(const boost::json::value& v, const ErrorStyle& style,
                                 const std::string& param) {
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  std::string expected = "a number";
  if (v.is_string()) expected += " (NaN and Infinity are not representable in JSON)";
  return WrongType(style, param, expected, v);
}

ApiResult<float> NumberAsFloat(const boost::json::value& v, const ErrorStyle& style,
                               const std::string& param) {
  IM_API_ASSIGN_OR_RETURN(double d, NumberAsDouble(v, style, param));
  // Boost.JSON parses overflowing literals (1e999) to inf; a finite double beyond
  // float's range becomes inf here. Either way the value cannot be carried.
  const float f = static_cast<float>(d);
  if (!std::isfinite(f)) {
    return DataError(style, param, "`" + param + "`: number out of float32 range");
  }
  return f;
}

std::string IndexedParam(std::string_view key, size_t index) {
  return std::string(key) + "[" + std::to_string(index) + "]";
}

}  // namespace infermesh::http::api::internal
