// KServe v2 / Triton inference protocol (JSON, no binary-data extension):
// POST /v2/models/{m}/infer, GET /v2/models/{m}, GET /v2, /v2/health/{live,ready}.
//
//   auto req = ParseKServeInferRequest(body, limits);
//   if (!req.ok()) return Reply(req.error().status, KServeErrorBody(req.error()));
//   for (const TensorData& t : req->inputs) ...   // t.bytes: little-endian elements
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/api/api_error.h"

namespace infermesh::http::api {

// One tensor as raw little-endian bytes: each fixed-size datatype of KServeDataTypes()
// at its width (FP16 as IEEE half bits, BF16 as the top half of a float, BOOL 1 B 0/1);
// BYTES: per element a uint32 LE length then the bytes (Triton's serialization).
struct TensorData {
  std::string name;
  std::string datatype;  // a name from KServeDataTypes()
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  int64_t element_count() const;  // product of shape (1 for a scalar)
};

// The one table of KServe v2 datatypes: what the codec reads and writes, and so the only
// names a model's metadata may advertise (the worker maps runtime types onto it; a test
// checks every advertised type round-trips here). The v2 protocol's list, plus Triton's BF16.
enum class KServeKind { kFloat, kSigned, kUnsigned, kBool, kBytes };
struct KServeDataType {
  std::string_view name;  // "FP32"
  int element_size;       // bytes; 0 for BYTES (variable length)
  KServeKind kind;
};
std::span<const KServeDataType> KServeDataTypes();
// The table's row for `name`, or null.
const KServeDataType* FindKServeDataType(std::string_view name);

// Bytes per element of a datatype in the table; 0 for BYTES (variable), -1 unknown.
int KServeElementSize(std::string_view datatype);

// {id?, parameters?, inputs: [{name, shape, datatype, data, parameters?}], outputs?: [{name}]}
// `data` may be flat or nested; its element count must equal product(shape). Rejects:
// datatypes outside KServeDataTypes() (naming the type), negative dims, element counts over
// limits.max_tensor_elements, strings where numbers are expected ("NaN"), numbers outside the
// type's range (FP16 above 65504 after rounding, integer overflow of INT*/UINT*, non-integers for
// them), duplicate input names, and the binary-data extension (binary_data_size / binary_data). All
// 400.
struct KServeInferRequest {
  std::string id;
  std::vector<TensorData> inputs;
  std::vector<std::string> outputs;  // requested output names; empty = all
};
ApiResult<KServeInferRequest> ParseKServeInferRequest(std::string_view body,
                                                      const ParseLimits& limits = {});

struct KServeInferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;  // echoed when non-empty
  std::vector<TensorData> outputs;
};
// {"model_name","model_version","id"?,"outputs":[{"name","datatype","shape","data"}]},
// data flat. NaN/Inf → 424; bytes inconsistent with shape/datatype → 500.
ApiResult<std::string> SerializeKServeInferResponse(const KServeInferResponse& r);

struct KServeTensorMetadata {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;  // -1 for a dynamic dimension
};
struct KServeModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::string platform = "infermesh";
  std::vector<KServeTensorMetadata> inputs;
  std::vector<KServeTensorMetadata> outputs;
};
std::string SerializeKServeModelMetadata(const KServeModelMetadata& m);

struct KServeServerMetadata {
  std::string name = "infermesh";
  std::string version;
  std::vector<std::string> extensions;
};
std::string SerializeKServeServerMetadata(const KServeServerMetadata& m);

// {"live":b}, {"ready":b}, {"name":..,"ready":b} (Triton answers only the status code;
// KServe clients read these bodies).
std::string SerializeKServeLive(bool live);
std::string SerializeKServeReady(bool ready);
std::string SerializeKServeModelReady(std::string_view name, bool ready);

// IEEE half conversions, round to nearest even; overflow gives ±Inf.
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);

}  // namespace infermesh::http::api
