#include "runtime/tensor.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace infermesh::runtime {

size_t DataTypeSize(DataType t) {
  switch (t) {
    case DataType::kFloat32:
      return 4;
    case DataType::kUint8:
      return 1;
    case DataType::kInt8:
      return 1;
    case DataType::kUint16:
      return 2;
    case DataType::kInt16:
      return 2;
    case DataType::kInt32:
      return 4;
    case DataType::kInt64:
      return 8;
    case DataType::kBool:
      return 1;
    case DataType::kFloat16:
      return 2;
    case DataType::kFloat64:
      return 8;
    case DataType::kUint32:
      return 4;
    case DataType::kUint64:
      return 8;
    case DataType::kBFloat16:
      return 2;
    default:
      return 0;
  }
}

std::string DataTypeName(DataType t) {
  switch (t) {
    case DataType::kUndefined:
      return "undefined";
    case DataType::kFloat32:
      return "float32";
    case DataType::kUint8:
      return "uint8";
    case DataType::kInt8:
      return "int8";
    case DataType::kUint16:
      return "uint16";
    case DataType::kInt16:
      return "int16";
    case DataType::kInt32:
      return "int32";
    case DataType::kInt64:
      return "int64";
    case DataType::kString:
      return "string";
    case DataType::kBool:
      return "bool";
    case DataType::kFloat16:
      return "float16";
    case DataType::kFloat64:
      return "float64";
    case DataType::kUint32:
      return "uint32";
    case DataType::kUint64:
      return "uint64";
    case DataType::kBFloat16:
      return "bfloat16";
  }
  return "onnx_type_" + std::to_string(static_cast<int>(t));
}

bool IsSupportedStorageType(DataType t) { return DataTypeSize(t) != 0; }

int64_t NumElements(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

float HalfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // below 2^-14: half subnormal (or zero)
    float a;
    std::memcpy(&a, &abs, 4);
    // a * 2^24 is exact; nearbyint rounds to nearest even in the default mode.
    auto r = static_cast<uint32_t>(std::nearbyint(a * 16777216.0f));
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t e = (abs >> 23) - 127 + 15;
  uint32_t m = abs & 0x7fffffu;
  uint32_t r = (e << 10) | (m >> 13);
  uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) ++r;  // may carry into exponent: fine
  return static_cast<uint16_t>(sign | r);
}

uint16_t FloatToBFloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // nan
  uint32_t rounding = 0x7fffu + ((x >> 16) & 1);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

std::shared_ptr<Buffer> AllocateBuffer(size_t bytes, bool zero) {
  auto b = std::make_shared<Buffer>();
  size_t rounded = ((bytes == 0 ? 1 : bytes) + 63) / 64 * 64;
  b->data = std::aligned_alloc(64, rounded);
  if (b->data == nullptr) throw std::bad_alloc();
  if (zero) std::memset(b->data, 0, rounded);
  b->bytes = rounded;
  b->release = [](void* p, size_t) { std::free(p); };
  return b;
}

Tensor Tensor::Empty(DataType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = NumElements(shape);
  t.shape_ = std::move(shape);
  t.buffer_ = AllocateBuffer(t.nbytes(), /*zero=*/true);
  return t;
}

Tensor Tensor::FromBuffer(DataType dtype, Shape shape, std::shared_ptr<Buffer> buffer,
                          size_t offset) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = NumElements(shape);
  t.shape_ = std::move(shape);
  t.buffer_ = std::move(buffer);
  t.offset_ = offset;
  return t;
}

Result<Tensor> Tensor::Reshaped(Shape shape) const {
  if (NumElements(shape) != numel_) {
    return InvalidArgument("cannot reshape " + ShapeToString(shape_) + " to " +
                           ShapeToString(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Clone() const {
  Tensor t = Empty(dtype_, shape_);
  if (nbytes()) std::memcpy(t.raw_data(), raw_data(), nbytes());
  return t;
}

double Tensor::GetAsDouble(int64_t i) const {
  switch (dtype_) {
    case DataType::kFloat32:
      return data<float>()[i];
    case DataType::kFloat64:
      return data<double>()[i];
    case DataType::kFloat16:
      return HalfToFloat(data<uint16_t>()[i]);
    case DataType::kBFloat16:
      return BFloat16ToFloat(data<uint16_t>()[i]);
    case DataType::kInt64:
      return static_cast<double>(data<int64_t>()[i]);
    case DataType::kInt32:
      return data<int32_t>()[i];
    case DataType::kInt16:
      return data<int16_t>()[i];
    case DataType::kInt8:
      return data<int8_t>()[i];
    case DataType::kUint8:
      return data<uint8_t>()[i];
    case DataType::kUint16:
      return data<uint16_t>()[i];
    case DataType::kUint32:
      return data<uint32_t>()[i];
    case DataType::kUint64:
      return static_cast<double>(data<uint64_t>()[i]);
    case DataType::kBool:
      return data<uint8_t>()[i] ? 1.0 : 0.0;
    default:
      return std::nan("");
  }
}

int64_t Tensor::GetAsInt64(int64_t i) const {
  switch (dtype_) {
    case DataType::kInt64:
      return data<int64_t>()[i];
    case DataType::kInt32:
      return data<int32_t>()[i];
    case DataType::kInt16:
      return data<int16_t>()[i];
    case DataType::kInt8:
      return data<int8_t>()[i];
    case DataType::kUint8:
      return data<uint8_t>()[i];
    case DataType::kUint16:
      return data<uint16_t>()[i];
    case DataType::kUint32:
      return data<uint32_t>()[i];
    case DataType::kUint64:
      return static_cast<int64_t>(data<uint64_t>()[i]);
    case DataType::kBool:
      return data<uint8_t>()[i] ? 1 : 0;
    default:
      return static_cast<int64_t>(GetAsDouble(i));
  }
}

std::vector<int64_t> Tensor::ToInt64Vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[i] = GetAsInt64(i);
  return v;
}

std::string Tensor::DebugString() const { return DataTypeName(dtype_) + ShapeToString(shape_); }

}  // namespace infermesh::runtime
