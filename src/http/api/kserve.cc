// KServe v2 codecs; see kserve.h.
#include "http/api/kserve.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "http/api/json_read.h"
#include "http/api/json_write.h"

namespace infermesh::http::api {
namespace {

using internal::DataError;
using internal::IndexedParam;
using internal::kKServeStyle;
using internal::WrongType;

template <typename T>
void PutLe(std::vector<uint8_t>& out, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
  out.insert(out.end(), b, b + sizeof(T));
}

template <typename T>
T GetLe(const uint8_t* p) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

constexpr KServeDataType kDataTypes[] = {
    {"BOOL", 1, KServeKind::kBool},       {"UINT8", 1, KServeKind::kUnsigned},
    {"UINT16", 2, KServeKind::kUnsigned}, {"UINT32", 4, KServeKind::kUnsigned},
    {"UINT64", 8, KServeKind::kUnsigned}, {"INT8", 1, KServeKind::kSigned},
    {"INT16", 2, KServeKind::kSigned},    {"INT32", 4, KServeKind::kSigned},
    {"INT64", 8, KServeKind::kSigned},    {"FP16", 2, KServeKind::kFloat},
    {"BF16", 2, KServeKind::kFloat},      {"FP32", 4, KServeKind::kFloat},
    {"FP64", 8, KServeKind::kFloat},      {"BYTES", 0, KServeKind::kBytes},
};

std::string DataTypeNames() {
  std::string out;
  for (const KServeDataType& t : kDataTypes) {
    if (!out.empty()) out += ", ";
    out += t.name;
  }
  return out;
}

// Little-endian integers of any width up to 8 bytes, independent of the host's order.
void PutLeN(std::vector<uint8_t>& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t GetLeN(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}
int64_t SignExtend(uint64_t v, int n) {
  if (n == 8) return static_cast<int64_t>(v);
  const uint64_t sign = uint64_t{1} << (8 * n - 1);
  return static_cast<int64_t>((v ^ sign) - sign);
}

// bfloat16: the top half of a float, rounded to nearest even; NaN stays a quiet NaN.
uint16_t FloatToBf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
float Bf16ToFloat(uint16_t b) { return std::bit_cast<float>(uint32_t{b} << 16); }

struct Flattener {
  const KServeDataType& type;
  const std::string& param;  // "inputs[0].data"
  int64_t expected;
  int64_t count = 0;
  std::vector<uint8_t>& out;

  ApiResult<bool> Float(const boost::json::value& v, const std::string& where) {
    if (type.element_size == 8) {
      IM_API_ASSIGN_OR_RETURN(double d, internal::NumberAsDouble(v, kKServeStyle, where));
      // Boost.JSON parses an overflowing literal (1e999) to inf.
      if (!std::isfinite(d)) {
        return DataError(kKServeStyle, where, "`" + where + "`: number out of FP64 range");
      }
      PutLe(out, std::bit_cast<uint64_t>(d));
      return true;
    }
    IM_API_ASSIGN_OR_RETURN(float f, internal::NumberAsFloat(v, kKServeStyle, where));
    if (type.element_size == 4) {
      PutLe(out, std::bit_cast<uint32_t>(f));
      return true;
    }
    const bool half = type.name == "FP16";
    const uint16_t h = half ? FloatToHalf(f) : FloatToBf16(f);
    if (!std::isfinite(half ? HalfToFloat(h) : Bf16ToFloat(h))) {
      return DataError(kKServeStyle, where,
                       "`" + where + "`: number out of " + std::string(type.name) + " range");
    }
    PutLe(out, h);
    return true;
  }

  ApiResult<bool> Integer(const boost::json::value& v, const std::string& where) {
    const int bits = 8 * type.element_size;
    const auto out_of_range = [&] {
      return DataError(kKServeStyle, where,
                       "`" + where + "`: integer out of " + std::string(type.name) + " range");
    };
    if (!v.is_int64() && !v.is_uint64()) return WrongType(kKServeStyle, where, "an integer", v);
    if (type.kind == KServeKind::kUnsigned) {
      if (v.is_int64() && v.get_int64() < 0) return out_of_range();
      const uint64_t u = v.is_int64() ? static_cast<uint64_t>(v.get_int64()) : v.get_uint64();
      if (bits < 64 && u >> bits != 0) return out_of_range();
      PutLeN(out, u, type.element_size);
      return true;
    }
    if (!v.is_int64()) return out_of_range();  // a uint64 above INT64's range
    const int64_t i = v.get_int64();
    if (bits < 64) {
      const int64_t lo = -(int64_t{1} << (bits - 1));
      const int64_t hi = (int64_t{1} << (bits - 1)) - 1;
      if (i < lo || i > hi) return out_of_range();
    }
    PutLeN(out, static_cast<uint64_t>(i), type.element_size);
    return true;
  }

  ApiResult<bool> Element(const boost::json::value& v) {
    if (count >= expected) {
      return DataError(
          kKServeStyle, param,
          "`" + param + "`: more elements than the shape holds (" + std::to_string(expected) + ")");
    }
    const std::string where = IndexedParam(param, static_cast<size_t>(count));
    ++count;
    switch (type.kind) {
      case KServeKind::kFloat:
        return Float(v, where);
      case KServeKind::kSigned:
      case KServeKind::kUnsigned:
        return Integer(v, where);
      case KServeKind::kBool:
        if (!v.is_bool()) return WrongType(kKServeStyle, where, "a boolean", v);
        out.push_back(v.get_bool() ? 1 : 0);
        return true;
      case KServeKind::kBytes:
        break;
    }
    if (!v.is_string()) return WrongType(kKServeStyle, where, "a string", v);
    const boost::json::string& s = v.get_string();
    PutLe(out, static_cast<uint32_t>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
    return true;
  }

  // Depth is bounded by the parser's max_depth.
  ApiResult<bool> Visit(const boost::json::value& v) {
    if (!v.is_array()) return Element(v);
    for (const boost::json::value& e : v.get_array()) {
      IM_API_ASSIGN_OR_RETURN([[maybe_unused]] bool ok, Visit(e));
    }
    return true;
  }
};

ApiResult<bool> RejectBinaryExtension(const boost::json::object& obj, const std::string& param) {
  const boost::json::value* params = internal::FindField(obj, "parameters");
  if (params == nullptr) return true;
  if (!params->is_object())
    return WrongType(kKServeStyle, param + ".parameters", "an object", *params);
  for (const char* key : {"binary_data_size", "binary_data"}) {
    const boost::json::value* b = internal::FindField(params->get_object(), key);
    if (b != nullptr && !(b->is_bool() && !b->get_bool())) {
      return DataError(kKServeStyle, param + ".parameters." + key,
                       "`" + param + ".parameters." + key +
                           "`: the binary tensor data extension is not supported; send JSON data");
    }
  }
  return true;
}

ApiResult<TensorData> ParseInput(const boost::json::value& v, const std::string& param,
                                 const ParseLimits& limits) {
  if (!v.is_object()) return WrongType(kKServeStyle, param, "an object", v);
  const boost::json::object& obj = v.get_object();
  TensorData t;
  const boost::json::value* name = internal::FindField(obj, "name");
  if (name == nullptr) return internal::MissingField(kKServeStyle, param + ".name");
  if (!name->is_string()) return WrongType(kKServeStyle, param + ".name", "a string", *name);
  t.name = std::string(name->get_string());

  const boost::json::value* dtype = internal::FindField(obj, "datatype");
  if (dtype == nullptr) return internal::MissingField(kKServeStyle, param + ".datatype");
  if (!dtype->is_string()) {
    return WrongType(kKServeStyle, param + ".datatype", "a string", *dtype);
  }
  t.datatype = std::string(dtype->get_string());
  const KServeDataType* type = FindKServeDataType(t.datatype);
  if (type == nullptr) {
    return DataError(kKServeStyle, param + ".datatype",
                     "`" + param + ".datatype`: unsupported datatype \"" + t.datatype +
                         "\" (expected one of " + DataTypeNames() + ")");
  }
  const int elem_size = type->element_size;

  const boost::json::value* shape = internal::FindField(obj, "shape");
  if (shape == nullptr) return internal::MissingField(kKServeStyle, param + ".shape");
  if (!shape->is_array()) {
    return WrongType(kKServeStyle, param + ".shape", "an array of integers", *shape);
  }
  int64_t count = 1;
  for (size_t i = 0; i < shape->get_array().size(); ++i) {
    const boost::json::value& d = shape->get_array()[i];
    const std::string where = IndexedParam(param + ".shape", i);
    if (!d.is_int64()) {
      if (d.is_uint64()) return DataError(kKServeStyle, where, "`" + where + "`: dim too large");
      return WrongType(kKServeStyle, where, "an integer", d);
    }
    const int64_t dim = d.get_int64();
    if (dim < 0) {
      return DataError(kKServeStyle, where,
                       "`" + where + "`: negative dimension " + std::to_string(dim));
    }
    if (dim > static_cast<int64_t>(limits.max_tensor_elements)) {
      // Even beside a zero dimension: a huge dimension would overflow shape
      // arithmetic downstream.
      return DataError(kKServeStyle, where,
                       "`" + where + "`: dimension " + std::to_string(dim) + " exceeds " +
                           std::to_string(limits.max_tensor_elements));
    }
    t.shape.push_back(dim);
    // Overflow-safe: count <= max_tensor_elements before multiplying.
    if (dim != 0 && count > static_cast<int64_t>(limits.max_tensor_elements) / dim) {
      count = static_cast<int64_t>(limits.max_tensor_elements) + 1;
    } else {
      count *= dim;
    }
  }
  if (count > static_cast<int64_t>(limits.max_tensor_elements)) {
    return DataError(kKServeStyle, param + ".shape",
                     "`" + param + ".shape`: more than " +
                         std::to_string(limits.max_tensor_elements) + " elements");
  }
  IM_API_ASSIGN_OR_RETURN([[maybe_unused]] bool no_binary, RejectBinaryExtension(obj, param));

  const boost::json::value* data = internal::FindField(obj, "data");
  const std::string data_param = param + ".data";
  if (data == nullptr) return internal::MissingField(kKServeStyle, data_param);
  // Reserve no more than the body can hold: a tiny body may declare a big shape.
  if (elem_size > 0 && data->is_array()) {
    t.bytes.reserve(std::min<size_t>(static_cast<size_t>(count), data->as_array().size()) *
                    elem_size);
  }
  Flattener f{*type, data_param, count, 0, t.bytes};
  IM_API_ASSIGN_OR_RETURN([[maybe_unused]] bool ok, f.Visit(*data));
  if (f.count != count) {
    return DataError(kKServeStyle, data_param,
                     "`" + data_param + "`: has " + std::to_string(f.count) +
                         " elements, shape needs " + std::to_string(count));
  }
  return t;
}

void AppendShape(std::string& out, const std::vector<int64_t>& shape) {
  out += '[';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) out += ',';
    AppendInt(out, shape[i]);
  }
  out += ']';
}

// Appends the flat data array of `t`; errors name the tensor.
ApiResult<bool> AppendTensorData(std::string& out, const TensorData& t) {
  const int64_t count = t.element_count();
  const KServeDataType* type = FindKServeDataType(t.datatype);
  const auto inconsistent = [&](std::string what) {
    return ApiError{500, std::string(kTeiBackend), "output `" + t.name + "`: " + what, {}};
  };
  if (type == nullptr) return inconsistent("unsupported datatype \"" + t.datatype + "\"");
  const int elem = type->element_size;
  if (count < 0) return inconsistent("negative dimension");
  if (elem > 0 && t.bytes.size() != static_cast<uint64_t>(count) * elem) {
    return inconsistent(std::to_string(t.bytes.size()) + " bytes for " + std::to_string(count) +
                        " " + t.datatype + " elements");
  }
  const uint8_t* p = t.bytes.data();
  out += '[';
  if (type->kind == KServeKind::kBytes) {
    size_t off = 0;
    for (int64_t i = 0; i < count; ++i) {
      if (t.bytes.size() - off < 4) return inconsistent("BYTES data truncated");
      const uint32_t len = GetLe<uint32_t>(p + off);
      off += 4;
      if (t.bytes.size() - off < len) return inconsistent("BYTES data truncated");
      if (i != 0) out += ',';
      AppendJsonString(out, {reinterpret_cast<const char*>(p + off), len});
      off += len;
    }
    if (off != t.bytes.size()) return inconsistent("trailing BYTES data");
    out += ']';
    return true;
  }
  for (int64_t i = 0; i < count; ++i) {
    if (i != 0) out += ',';
    const uint64_t raw = GetLeN(p + i * elem, elem);
    switch (type->kind) {
      case KServeKind::kFloat: {
        double d;
        if (elem == 8) {
          d = std::bit_cast<double>(raw);
        } else if (elem == 4) {
          d = std::bit_cast<float>(static_cast<uint32_t>(raw));
        } else if (type->name == "FP16") {
          d = HalfToFloat(static_cast<uint16_t>(raw));
        } else {
          d = Bf16ToFloat(static_cast<uint16_t>(raw));
        }
        if (!std::isfinite(d)) {
          return ApiError{424,
                          std::string(kTeiBackend),
                          "output `" + t.name + "` has a non-finite value at " + std::to_string(i) +
                              " (NaN/Inf cannot be JSON)",
                          {}};
        }
        // Narrower types print as floats: their shortest round-trip text is shorter.
        if (elem == 8) {
          AppendDouble(out, d);
        } else {
          AppendFloat(out, static_cast<float>(d));
        }
        break;
      }
      case KServeKind::kSigned:
        AppendInt(out, SignExtend(raw, elem));
        break;
      case KServeKind::kUnsigned:
        AppendUint(out, raw);
        break;
      case KServeKind::kBool:
      case KServeKind::kBytes:
        out += raw != 0 ? "true" : "false";
        break;
    }
  }
  out += ']';
  return true;
}

void AppendTensorMetadata(std::string& out, const std::vector<KServeTensorMetadata>& ts) {
  out += '[';
  for (size_t i = 0; i < ts.size(); ++i) {
    if (i != 0) out += ',';
    out += "{\"name\":";
    AppendJsonString(out, ts[i].name);
    out += ",\"datatype\":";
    AppendJsonString(out, ts[i].datatype);
    out += ",\"shape\":";
    AppendShape(out, ts[i].shape);
    out += '}';
  }
  out += ']';
}

void AppendStringArray(std::string& out, const std::vector<std::string>& v) {
  out += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i != 0) out += ',';
    AppendJsonString(out, v[i]);
  }
  out += ']';
}

}  // namespace

int64_t TensorData::element_count() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

std::span<const KServeDataType> KServeDataTypes() { return kDataTypes; }

const KServeDataType* FindKServeDataType(std::string_view name) {
  for (const KServeDataType& t : kDataTypes) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

int KServeElementSize(std::string_view datatype) {
  const KServeDataType* t = FindKServeDataType(datatype);
  return t == nullptr ? -1 : t->element_size;
}

ApiResult<KServeInferRequest> ParseKServeInferRequest(std::string_view body,
                                                      const ParseLimits& limits) {
  boost::json::monotonic_resource mr;
  IM_API_ASSIGN_OR_RETURN(boost::json::value root,
                          internal::ParseJsonObject(body, limits.max_depth, &mr, kKServeStyle));
  const boost::json::object& obj = root.get_object();
  KServeInferRequest req;
  IM_API_ASSIGN_OR_RETURN(auto id, internal::OptionalString(obj, "id", kKServeStyle));
  req.id = id.value_or("");
  const boost::json::value* params = internal::FindField(obj, "parameters");
  if (params != nullptr && !params->is_object()) {
    return WrongType(kKServeStyle, "parameters", "an object", *params);
  }
  const boost::json::value* inputs = internal::FindField(obj, "inputs");
  if (inputs == nullptr) return internal::MissingField(kKServeStyle, "inputs");
  if (!inputs->is_array()) {
    return WrongType(kKServeStyle, "inputs", "an array of tensors", *inputs);
  }
  if (inputs->get_array().empty()) {
    return DataError(kKServeStyle, "inputs", "`inputs` must not be empty");
  }
  if (inputs->get_array().size() > limits.max_inputs) {
    return DataError(kKServeStyle, "inputs", "`inputs`: too many tensors");
  }
  std::unordered_set<std::string> names;
  for (size_t i = 0; i < inputs->get_array().size(); ++i) {
    const std::string param = IndexedParam("inputs", i);
    IM_API_ASSIGN_OR_RETURN(TensorData t, ParseInput(inputs->get_array()[i], param, limits));
    if (!names.insert(t.name).second) {
      return DataError(kKServeStyle, param + ".name",
                       "`" + param + ".name`: duplicate input \"" + t.name + "\"");
    }
    req.inputs.push_back(std::move(t));
  }
  const boost::json::value* outputs = internal::FindField(obj, "outputs");
  if (outputs != nullptr) {
    if (!outputs->is_array()) {
      return WrongType(kKServeStyle, "outputs", "an array of {name}", *outputs);
    }
    for (size_t i = 0; i < outputs->get_array().size(); ++i) {
      const std::string param = IndexedParam("outputs", i);
      const boost::json::value& o = outputs->get_array()[i];
      if (!o.is_object()) return WrongType(kKServeStyle, param, "an object", o);
      const boost::json::value* name = internal::FindField(o.get_object(), "name");
      if (name == nullptr) return internal::MissingField(kKServeStyle, param + ".name");
      if (!name->is_string()) return WrongType(kKServeStyle, param + ".name", "a string", *name);
      IM_API_ASSIGN_OR_RETURN([[maybe_unused]] bool ok,
                              RejectBinaryExtension(o.get_object(), param));
      req.outputs.emplace_back(name->get_string());
    }
  }
  return req;
}

ApiResult<std::string> SerializeKServeInferResponse(const KServeInferResponse& r) {
  std::string out = "{\"model_name\":";
  AppendJsonString(out, r.model_name);
  out += ",\"model_version\":";
  AppendJsonString(out, r.model_version);
  if (!r.id.empty()) {
    out += ",\"id\":";
    AppendJsonString(out, r.id);
  }
  out += ",\"outputs\":[";
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const TensorData& t = r.outputs[i];
    if (i != 0) out += ',';
    out += "{\"name\":";
    AppendJsonString(out, t.name);
    out += ",\"datatype\":";
    AppendJsonString(out, t.datatype);
    out += ",\"shape\":";
    AppendShape(out, t.shape);
    out += ",\"data\":";
    IM_API_ASSIGN_OR_RETURN([[maybe_unused]] bool ok, AppendTensorData(out, t));
    out += '}';
  }
  out += "]}";
  return out;
}

std::string SerializeKServeModelMetadata(const KServeModelMetadata& m) {
  std::string out = "{\"name\":";
  AppendJsonString(out, m.name);
  out += ",\"versions\":";
  AppendStringArray(out, m.versions);
  out += ",\"platform\":";
  AppendJsonString(out, m.platform);
  out += ",\"inputs\":";
  AppendTensorMetadata(out, m.inputs);
  out += ",\"outputs\":";
  AppendTensorMetadata(out, m.outputs);
  out += '}';
  return out;
}

std::string SerializeKServeServerMetadata(const KServeServerMetadata& m) {
  std::string out = "{\"name\":";
  AppendJsonString(out, m.name);
  out += ",\"version\":";
  AppendJsonString(out, m.version);
  out += ",\"extensions\":";
  AppendStringArray(out, m.extensions);
  out += '}';
  return out;
}

std::string SerializeKServeLive(bool live) { return live ? "{\"live\":true}" : "{\"live\":false}"; }
std::string SerializeKServeReady(bool ready) {
  return ready ? "{\"ready\":true}" : "{\"ready\":false}";
}
std::string SerializeKServeModelReady(std::string_view name, bool ready) {
  std::string out = "{\"name\":";
  AppendJsonString(out, name);
  out += ready ? ",\"ready\":true}" : ",\"ready\":false}";
  return out;
}

// Round to nearest even through float arithmetic (the FP16 library's method): scaling
// by 2^112 then 2^-110 leaves the rounding to the float adder at half's precision.
uint16_t FloatToHalf(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  const uint32_t w = std::bit_cast<uint32_t>(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  const uint32_t man = h & 0x3FF;
  if (exp == 0) {
    const float v = static_cast<float>(man) * 0x1.0p-24f;  // exact
    return sign != 0 ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}

}  // namespace infermesh::http::api
