// application/x-infermesh-f32: the gateway<->worker hop carries float32 rows as bytes,
// so floats are formatted as decimal text once, at the edge.
//
// Layout (all little-endian), 16-byte header then payload:
//   0  4  magic "IMF1"
//   4  2  version (1)
//   6  2  flags (0; reserved, decoders reject non-zero)
//   8  4  rows
//  12  4  dims
//  16  rows * dims * 4   IEEE-754 float32, row-major
//
//   std::string body = EncodeF32Rows(rows);           // worker
//   auto m = DecodeF32Rows(body, max_elements);       // gateway; strict length checks
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "http/api/json_write.h"

namespace infermesh::http::api {

inline constexpr std::string_view kF32ContentType = "application/x-infermesh-f32";
inline constexpr size_t kF32HeaderBytes = 16;

struct F32Rows {
  uint32_t rows = 0;
  uint32_t dims = 0;
  std::vector<float> values;  // rows * dims

  FloatRowsView view() const { return {values.data(), rows, dims}; }
};

// Every row must have the same length; InvalidArgument otherwise or if rows/dims exceed
// uint32. Non-finite values are carried as is (the JSON edge rejects them).
Result<std::string> EncodeF32Rows(const FloatRowsView& rows);

// DataLoss on a short or long body, bad magic, unknown version or flags; ResourceExhausted
// when rows * dims, or rows alone, exceeds max_elements.
Result<F32Rows> DecodeF32Rows(std::string_view body, size_t max_elements);

}  // namespace infermesh::http::api
