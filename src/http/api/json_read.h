// Internal to the codecs in src/http/api: bounded JSON parsing and typed field access
// whose errors name the field, the expected type and what was found, with the status
// conventions of each API family (see api_error.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "http/api/api_error.h"

namespace infermesh::http::api::internal {

// How one API family reports request errors.
struct ErrorStyle {
  int syntax_status;      // body is not JSON, too deep, invalid UTF-8
  int data_status;        // wrong type, missing field, bad value
  std::string_view type;  // ApiError::type
};
inline constexpr ErrorStyle kTeiStyle{400, 422, kTeiValidation};
inline constexpr ErrorStyle kOpenAiStyle{400, 400, kOpenAiInvalidRequest};
inline constexpr ErrorStyle kKServeStyle{400, 400, kTeiValidation};

ApiError DataError(const ErrorStyle& style, std::string param, std::string message);

// Parses `body` with max_depth; the root must be an object. The value's memory comes
// from `sp` (a monotonic_resource in the caller keeps parsing allocation-light).
ApiResult<boost::json::value> ParseJsonObject(std::string_view body, size_t max_depth,
                                              boost::json::storage_ptr sp, const ErrorStyle& style);

// "string", "number", "boolean", "null", "array", "object".
std::string_view KindName(const boost::json::value& v);

// The field's value, or nullptr if it is absent or null (serde's Option semantics).
const boost::json::value* FindField(const boost::json::object& obj, std::string_view key);

// `key`: expected <what>, got <kind>
ApiError WrongType(const ErrorStyle& style, std::string_view param, std::string_view expected,
                   const boost::json::value& got);
ApiError MissingField(const ErrorStyle& style, std::string_view key);

ApiResult<std::optional<bool>> OptionalBool(const boost::json::object& obj, std::string_view key,
                                            const ErrorStyle& style);
ApiResult<std::optional<std::string>> OptionalString(const boost::json::object& obj,
                                                     std::string_view key, const ErrorStyle& style);
// Integers only (1.0 is rejected, as serde does for integer fields).
ApiResult<std::optional<int64_t>> OptionalInt(const boost::json::object& obj, std::string_view key,
                                              const ErrorStyle& style);

// Numbers of any JSON kind as double (an overflowing literal such as 1e999 arrives as
// inf: callers check the range they need); anything else is a type error.
ApiResult<double> NumberAsDouble(const boost::json::value& v, const ErrorStyle& style,
                                 const std::string& param);

// Numbers of any JSON kind as float; rejects values outside float's finite range.
// `param` names the element in errors, e.g. "input_data[3]".
ApiResult<float> NumberAsFloat(const boost::json::value& v, const ErrorStyle& style,
                               const std::string& param);

std::string IndexedParam(std::string_view key, size_t index);

}  // namespace infermesh::http::api::internal
