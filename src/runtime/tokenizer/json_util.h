// Small, non-throwing accessors for Boost.JSON values used by the tokenizer loaders.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/json.hpp>

namespace infermesh::runtime::tok {

inline const boost::json::value* Field(const boost::json::value& v, std::string_view key) {
  const auto* o = v.if_object();
  if (o == nullptr) return nullptr;
  const auto* f = o->if_contains(key);
  return (f == nullptr || f->is_null()) ? nullptr : f;
}

inline std::optional<std::string> StringField(const boost::json::value& v, std::string_view key) {
  const auto* f = Field(v, key);
  if (f == nullptr || !f->is_string()) return std::nullopt;
  return std::string(f->get_string());
}

inline std::optional<bool> BoolField(const boost::json::value& v, std::string_view key) {
  const auto* f = Field(v, key);
  if (f == nullptr || !f->is_bool()) return std::nullopt;
  return f->get_bool();
}

inline std::optional<double> NumberField(const boost::json::value& v, std::string_view key) {
  const auto* f = Field(v, key);
  if (f == nullptr) return std::nullopt;
  if (f->is_int64()) return static_cast<double>(f->get_int64());
  if (f->is_uint64()) return static_cast<double>(f->get_uint64());
  if (f->is_double()) return f->get_double();
  return std::nullopt;
}

inline std::optional<double> AsNumber(const boost::json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

}  // namespace infermesh::runtime::tok
