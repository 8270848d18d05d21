#include "cli/tensor_json.h"

#include <charconv>
#include <cmath>

namespace infermesh::cli {

using runtime::DataType;
using runtime::Tensor;

Result<DataType> ParseDataType(std::string_view name) {
  static const std::pair<const char*, DataType> kNames[] = {
      {"float32", DataType::kFloat32}, {"float", DataType::kFloat32},
      {"float16", DataType::kFloat16}, {"int64", DataType::kInt64},
      {"int32", DataType::kInt32},     {"int8", DataType::kInt8},
      {"uint8", DataType::kUint8},     {"bool", DataType::kBool},
      {"float64", DataType::kFloat64}, {"bfloat16", DataType::kBFloat16}};
  for (const auto& [n, t] : kNames) {
    if (name == n) return t;
  }
  return InvalidArgument("unknown dtype '" + std::string(name) + "'");
}

namespace {

Status CollectShape(const boost::json::value& v, size_t depth, runtime::Shape& shape) {
  if (!v.is_array()) return OkStatus();
  const auto& a = v.as_array();
  if (depth == shape.size()) shape.push_back(static_cast<int64_t>(a.size()));
  if (shape[depth] != static_cast<int64_t>(a.size())) {
    return InvalidArgument("ragged nested array at depth " + std::to_string(depth));
  }
  if (!a.empty()) IM_RETURN_IF_ERROR(CollectShape(a[0], depth + 1, shape));
  return OkStatus();
}

Status Flatten(const boost::json::value& v, size_t depth, const runtime::Shape& shape,
               std::vector<double>& out) {
  if (depth == shape.size()) {
    if (v.is_number()) {
      out.push_back(v.to_number<double>());
    } else if (v.is_bool()) {
      out.push_back(v.as_bool() ? 1.0 : 0.0);
    } else {
      return InvalidArgument("tensor element is not a number");
    }
    return OkStatus();
  }
  if (!v.is_array() || v.as_array().size() != static_cast<size_t>(shape[depth])) {
    return InvalidArgument("ragged nested array at depth " + std::to_string(depth));
  }
  for (const auto& e : v.as_array()) IM_RETURN_IF_ERROR(Flatten(e, depth + 1, shape, out));
  return OkStatus();
}

}  // namespace

Result<Tensor> TensorFromJson(const boost::json::value& v, DataType declared) {
  DataType dtype = declared;
  runtime::Shape shape;
  std::vector<double> values;
  try {
    if (v.is_object()) {
      const auto& o = v.as_object();
      if (o.contains("dtype")) {
        IM_ASSIGN_OR_RETURN(dtype, ParseDataType(std::string(o.at("dtype").as_string())));
      }
      if (!o.contains("data")) return InvalidArgument("tensor object needs \"data\"");
      const auto& data = o.at("data");
      if (o.contains("shape")) {
        for (const auto& d : o.at("shape").as_array()) shape.push_back(d.to_number<int64_t>());
        // data may be flat or nested; flatten it either way.
        runtime::Shape data_shape;
        IM_RETURN_IF_ERROR(CollectShape(data, 0, data_shape));
        IM_RETURN_IF_ERROR(Flatten(data, 0, data_shape, values));
      } else {
        IM_RETURN_IF_ERROR(CollectShape(data, 0, shape));
        IM_RETURN_IF_ERROR(Flatten(data, 0, shape, values));
      }
    } else {
      IM_RETURN_IF_ERROR(CollectShape(v, 0, shape));
      IM_RETURN_IF_ERROR(Flatten(v, 0, shape, values));
    }
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("malformed tensor JSON: ") + e.what());
  }
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument("negative dimension in shape");
  }
  if (runtime::NumElements(shape) != static_cast<int64_t>(values.size())) {
    return InvalidArgument("shape " + runtime::ShapeToString(shape) + " needs " +
                           std::to_string(runtime::NumElements(shape)) + " values, got " +
                           std::to_string(values.size()));
  }
  if (!runtime::IsSupportedStorageType(dtype)) {
    return InvalidArgument("unsupported dtype " + runtime::DataTypeName(dtype));
  }
  Tensor t = Tensor::Empty(dtype, shape);
  for (size_t i = 0; i < values.size(); ++i) {
    double x = values[i];
    switch (dtype) {
      case DataType::kFloat32:
        t.data<float>()[i] = static_cast<float>(x);
        break;
      case DataType::kFloat64:
        t.data<double>()[i] = x;
        break;
      case DataType::kFloat16:
        t.data<uint16_t>()[i] = runtime::FloatToHalf(float(x));
        break;
      case DataType::kBFloat16:
        t.data<uint16_t>()[i] = runtime::FloatToBFloat16(float(x));
        break;
      case DataType::kInt64:
        t.data<int64_t>()[i] = static_cast<int64_t>(x);
        break;
      case DataType::kInt32:
        t.data<int32_t>()[i] = static_cast<int32_t>(x);
        break;
      case DataType::kInt8:
        t.data<int8_t>()[i] = static_cast<int8_t>(x);
        break;
      case DataType::kUint8:
        t.data<uint8_t>()[i] = static_cast<uint8_t>(x);
        break;
      case DataType::kBool:
        t.data<uint8_t>()[i] = x != 0;
        break;
      default:
        return InvalidArgument("cannot build a " + runtime::DataTypeName(dtype) + " tensor");
    }
  }
  return t;
}

void AppendFloat(std::string& out, float f) {
  if (!std::isfinite(f)) {
    out += "null";
    return;
  }
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, f);
  out.append(buf, p);
}

std::string TensorToJsonText(const Tensor& t) {
  std::string out = "{\"dtype\":\"" + runtime::DataTypeName(t.dtype()) + "\",\"shape\":[";
  for (size_t i = 0; i < t.rank(); ++i) {
    if (i) out += ",";
    out += std::to_string(t.dim(i));
  }
  out += "],\"data\":[";
  const bool is_float = t.dtype() == DataType::kFloat32 || t.dtype() == DataType::kFloat16 ||
                        t.dtype() == DataType::kFloat64 || t.dtype() == DataType::kBFloat16;
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (i) out += ",";
    if (t.dtype() == DataType::kFloat64) {
      double x = t.data<double>()[i];
      char buf[32];
      auto [p, ec] = std::to_chars(buf, buf + sizeof buf, x);
      out.append(std::isfinite(x) ? std::string(buf, p) : "null");
    } else if (is_float) {
      AppendFloat(out, static_cast<float>(t.GetAsDouble(i)));
    } else if (t.dtype() == DataType::kBool) {
      out += t.GetAsInt64(i) ? "true" : "false";
    } else {
      out += std::to_string(t.GetAsInt64(i));
    }
  }
  return out + "]}";
}

}  // namespace infermesh::cli
