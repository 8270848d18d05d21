// Binary float32 rows for the internal hop; see f32_binary.h.
#include "http/api/f32_binary.h"

#include <bit>
#include <cstring>
#include <limits>

namespace infermesh::http::api {
namespace {

constexpr char kMagic[4] = {'I', 'M', 'F', '1'};
constexpr uint16_t kVersion = 1;

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

}  // namespace

Result<std::string> EncodeF32Rows(const FloatRowsView& rows) {
  const size_t dims = rows.rows() == 0 ? 0 : rows.row(0).size();
  if (rows.rows() > std::numeric_limits<uint32_t>::max() ||
      dims > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("f32 rows: too many rows or dims for the binary format");
  }
  std::string out(kF32HeaderBytes + rows.rows() * dims * 4, '\0');
  std::memcpy(out.data(), kMagic, 4);
  out[4] = static_cast<char>(kVersion & 0xFF);
  out[5] = static_cast<char>(kVersion >> 8);
  PutU32(out.data() + 8, static_cast<uint32_t>(rows.rows()));
  PutU32(out.data() + 12, static_cast<uint32_t>(dims));
  char* p = out.data() + kF32HeaderBytes;
  for (size_t r = 0; r < rows.rows(); ++r) {
    const std::span<const float> row = rows.row(r);
    if (row.size() != dims) {
      return InvalidArgument("f32 rows: row " + std::to_string(r) + " has " +
                             std::to_string(row.size()) + " values, row 0 has " +
                             std::to_string(dims));
    }
    if constexpr (std::endian::native == std::endian::little) {
      if (dims != 0) std::memcpy(p, row.data(), dims * 4);
      p += dims * 4;
    } else {
      for (float f : row) {
        PutU32(p, std::bit_cast<uint32_t>(f));
        p += 4;
      }
    }
  }
  return out;
}

Result<F32Rows> DecodeF32Rows(std::string_view body, size_t max_elements) {
  if (body.size() < kF32HeaderBytes) {
    return DataLoss("f32 rows: " + std::to_string(body.size()) + " bytes, shorter than the " +
                    std::to_string(kF32HeaderBytes) + "-byte header");
  }
  if (std::memcmp(body.data(), kMagic, 4) != 0) return DataLoss("f32 rows: bad magic");
  const uint16_t version = static_cast<uint16_t>(static_cast<unsigned char>(body[4]) |
                                                 (static_cast<unsigned char>(body[5]) << 8));
  if (version != kVersion) {
    return DataLoss("f32 rows: unsupported version " + std::to_string(version));
  }
  if (body[6] != 0 || body[7] != 0) return DataLoss("f32 rows: non-zero reserved flags");
  F32Rows m;
  m.rows = GetU32(body.data() + 8);
  m.dims = GetU32(body.data() + 12);
  const uint64_t elements = uint64_t{m.rows} * m.dims;  // < 2^64, no overflow
  // rows alone is bounded too: 4e9 rows of 0 dims is no data but a long loop downstream.
  if (elements > max_elements || m.rows > max_elements) {
    return ResourceExhausted("f32 rows: " + std::to_string(m.rows) + " x " +
                             std::to_string(m.dims) + " exceeds the limit of " +
                             std::to_string(max_elements) + " values");
  }
  // Compare element counts, not byte sizes: elements * 4 can overflow 64 bits.
  const uint64_t payload = body.size() - kF32HeaderBytes;
  if (payload % 4 != 0 || payload / 4 != elements) {
    return DataLoss("f32 rows: payload is " + std::to_string(payload) + " bytes, header says " +
                    std::to_string(m.rows) + " x " + std::to_string(m.dims) + " floats");
  }
  m.values.resize(elements);
  const char* p = body.data() + kF32HeaderBytes;
  if constexpr (std::endian::native == std::endian::little) {
    if (elements != 0) std::memcpy(m.values.data(), p, elements * 4);
  } else {
    for (uint64_t i = 0; i < elements; ++i) m.values[i] = std::bit_cast<float>(GetU32(p + i * 4));
  }
  return m;
}

}  // namespace infermesh::http::api
