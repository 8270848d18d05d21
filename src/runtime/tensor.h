// Tensor: a typed, shaped view of a reference-counted, 64-byte-aligned buffer.
//
//   Tensor t = Tensor::Empty(DataType::kFloat32, {2, 3});
//   float* p = t.data<float>();
//   Tensor v = t.Reshaped({3, 2});  // shares t's buffer
//
// Tensors are always dense and row-major. Copies share the buffer; use Clone()
// for a deep copy. Data type values equal ONNX's TensorProto.DataType values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infermesh::runtime {

enum class DataType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUint32 = 12,
  kUint64 = 13,
  kBFloat16 = 16,
};

// Bytes per element; 0 for kUndefined and kString (unsupported as tensors).
size_t DataTypeSize(DataType t);
// "float32", "int64", ... ; names the ONNX value for unknown types.
std::string DataTypeName(DataType t);
// True for the types our tensors can hold: f32, f16, bf16, f64, i64, i32, i16, i8, u8, u16,
// u32, u64, bool. (f64 and the wide unsigned types are storage-only: few kernels accept them.)
bool IsSupportedStorageType(DataType t);

using Shape = std::vector<int64_t>;
// Product of dims; 1 for a scalar (rank 0).
int64_t NumElements(std::span<const int64_t> shape);
// "[2,3,4]"
std::string ShapeToString(std::span<const int64_t> shape);

// IEEE half and bfloat16 conversions (round to nearest even).
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
inline float BFloat16ToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t FloatToBFloat16(float f);

// Maps a C++ type to its DataType. bool maps to kBool (1 byte).
template <typename T>
constexpr DataType DataTypeOf();
template <>
constexpr DataType DataTypeOf<float>() {
  return DataType::kFloat32;
}
template <>
constexpr DataType DataTypeOf<double>() {
  return DataType::kFloat64;
}
template <>
constexpr DataType DataTypeOf<int64_t>() {
  return DataType::kInt64;
}
template <>
constexpr DataType DataTypeOf<int32_t>() {
  return DataType::kInt32;
}
template <>
constexpr DataType DataTypeOf<int16_t>() {
  return DataType::kInt16;
}
template <>
constexpr DataType DataTypeOf<int8_t>() {
  return DataType::kInt8;
}
template <>
constexpr DataType DataTypeOf<uint8_t>() {
  return DataType::kUint8;
}
template <>
constexpr DataType DataTypeOf<uint16_t>() {
  return DataType::kUint16;
}
template <>
constexpr DataType DataTypeOf<uint32_t>() {
  return DataType::kUint32;
}
template <>
constexpr DataType DataTypeOf<uint64_t>() {
  return DataType::kUint64;
}
template <>
constexpr DataType DataTypeOf<bool>() {
  return DataType::kBool;
}

// Aligned storage. The deleter decides where memory goes when the last
// reference drops (freed, or returned to a pool by the memory planner).
struct Buffer {
  void* data = nullptr;
  size_t bytes = 0;
  std::function<void(void*, size_t)> release;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (release) release(data, bytes);
  }
};

// Allocates `bytes` (at least 1) aligned to 64 bytes, zero-filled only if asked.
std::shared_ptr<Buffer> AllocateBuffer(size_t bytes, bool zero = false);

class Tensor {
 public:
  Tensor() = default;

  // Allocates a new zero-initialised tensor.
  static Tensor Empty(DataType dtype, Shape shape);
  // Uses an existing buffer (which must hold at least numel*size bytes at `offset`).
  static Tensor FromBuffer(DataType dtype, Shape shape, std::shared_ptr<Buffer> buffer,
                           size_t offset = 0);
  // Copies `values` into a new tensor of the given shape (numel must match).
  template <typename T>
  static Tensor FromVector(Shape shape, const std::vector<T>& values) {
    Tensor t = Empty(DataTypeOf<T>(), std::move(shape));
    if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
    return t;
  }
  template <typename T>
  static Tensor Scalar(T value) {
    return FromVector<T>({}, {value});
  }

  bool defined() const { return buffer_ != nullptr; }
  DataType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  size_t rank() const { return shape_.size(); }
  int64_t dim(size_t i) const { return shape_[i]; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DataTypeSize(dtype_); }

  void* raw_data() { return static_cast<char*>(buffer_->data) + offset_; }
  const void* raw_data() const { return static_cast<const char*>(buffer_->data) + offset_; }
  template <typename T>
  T* data() {
    return static_cast<T*>(raw_data());
  }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(raw_data());
  }
  template <typename T>
  std::span<const T> values() const {
    return {data<T>(), static_cast<size_t>(numel_)};
  }
  template <typename T>
  std::span<T> mutable_values() {
    return {data<T>(), static_cast<size_t>(numel_)};
  }

  // Same buffer, new shape; numel must match (checked).
  Result<Tensor> Reshaped(Shape shape) const;
  // Deep copy into a fresh buffer.
  Tensor Clone() const;
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }

  // Reads element i as double / int64, whatever the dtype (slow: tests and shape code).
  double GetAsDouble(int64_t i) const;
  int64_t GetAsInt64(int64_t i) const;
  // Contents as int64 (any integer dtype), for shape-carrying tensors.
  std::vector<int64_t> ToInt64Vector() const;

  std::string DebugString() const;  // "float32[2,3]"

 private:
  DataType dtype_ = DataType::kUndefined;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;
};

}  // namespace infermesh::runtime
