// Helpers shared by the shape and data-movement kernels: see shape_internal.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <onnx/onnx_pb.h>

#include "runtime/ops/shape_internal.h"

namespace infermesh::runtime::shape_ops {

Status NodeTag::Error(const std::string& reason) const {
  return InvalidArgument("node '" + name + "' (" + op + "): " + reason);
}

Status NodeTag::Exhausted(const std::string& reason) const {
  return ResourceExhausted("node '" + name + "' (" + op + "): " + reason);
}

Status NodeTag::Unsupported(const std::string& reason) const {
  return Unimplemented("node '" + name + "' (" + op + "): unsupported: " + reason);
}

Status RequireStorageType(const NodeInfo& node, size_t i) {
  if (i >= node.input_types.size()) return node.Error("input " + std::to_string(i) + " is missing");
  if (!IsSupportedStorageType(node.input_types[i])) {
    return node.Unsupported("input " + std::to_string(i) + " has data type " +
                            DataTypeName(node.input_types[i]));
  }
  return OkStatus();
}

Status RequireIndexType(const NodeInfo& node, size_t i) {
  return node.RequireType(i, {DataType::kInt64, DataType::kInt32});
}

Status CheckShape(const NodeTag& tag, const Shape& shape, DataType dtype) {
  const int64_t elem = static_cast<int64_t>(std::max<size_t>(DataTypeSize(dtype), 1));
  const int64_t max_elems = kMaxOutputBytes / elem;
  for (int64_t d : shape) {
    if (d < 0) return tag.Error("negative dimension in output shape " + ShapeToString(shape));
  }
  int64_t n = 1;
  bool zero = std::find(shape.begin(), shape.end(), 0) != shape.end();
  if (zero) return OkStatus();
  for (int64_t d : shape) {
    if (d > max_elems / n) {
      return tag.Exhausted("output shape " + ShapeToString(shape) + " of " + DataTypeName(dtype) +
                           " exceeds " + std::to_string(kMaxOutputBytes) + " bytes");
    }
    n *= d;
  }
  return OkStatus();
}

Result<Tensor*> AllocChecked(KernelContext& ctx, const NodeTag& tag, size_t i, DataType dtype,
                             const Shape& shape) {
  IM_RETURN_IF_ERROR(CheckShape(tag, shape, dtype));
  return &ctx.AllocateOutput(i, dtype, shape);
}

Result<int64_t> NormalizeAxis(const NodeTag& tag, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) {
    return tag.Error("axis " + std::to_string(axis) + " is out of range for rank " +
                     std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> DenseStrides(const Shape& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) s[i - 1] = s[i] * shape[i];
  return s;
}

bool OutputWanted(const NodeInfo& node, size_t i) {
  if (i >= node.num_outputs) return false;
  if (node.proto == nullptr || static_cast<int>(i) >= node.proto->output_size()) return true;
  return !node.proto->output(static_cast<int>(i)).empty();
}

void FillElements(void* dst, int64_t n, size_t es, const void* value) {
  auto fill = [&](auto tag) {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, value, sizeof(T));
    std::fill(static_cast<T*>(dst), static_cast<T*>(dst) + n, v);
  };
  switch (es) {
    case 1:
      return fill(uint8_t{});
    case 2:
      return fill(uint16_t{});
    case 4:
      return fill(uint32_t{});
    case 8:
      return fill(uint64_t{});
    default:
      for (int64_t i = 0; i < n; ++i) std::memcpy(static_cast<char*>(dst) + i * es, value, es);
  }
}

std::vector<int64_t> ReadInts(const Tensor& t) { return t.ToInt64Vector(); }

namespace {

template <typename T>
void CopyStridedRow(const char* src, int64_t n, int64_t stride, char* dst) {
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  if (stride == 0) {
    std::fill(d, d + n, *s);
    return;
  }
  for (int64_t i = 0; i < n; ++i) d[i] = s[i * stride];
}

void CopyRow(size_t es, const char* src, int64_t n, int64_t stride, char* dst) {
  if (stride == 1) {
    std::memcpy(dst, src, static_cast<size_t>(n) * es);
    return;
  }
  switch (es) {
    case 1:
      return CopyStridedRow<uint8_t>(src, n, stride, dst);
    case 2:
      return CopyStridedRow<uint16_t>(src, n, stride, dst);
    case 4:
      return CopyStridedRow<uint32_t>(src, n, stride, dst);
    case 8:
      return CopyStridedRow<uint64_t>(src, n, stride, dst);
    default:
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(dst + i * es, src + i * stride * static_cast<int64_t>(es), es);
      }
  }
}

// dst[a * b_total + b] = src[b * src_stride + a] over an a_n x b_n tile: the
// input's contiguous axis became the output's second-to-last axis (2-D transpose).
template <typename T>
void TransposeTile(const char* src, int64_t src_stride, char* dst, int64_t b_total, int64_t a_n,
                   int64_t b_n) {
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  for (int64_t b = 0; b < b_n; ++b) {
    for (int64_t a = 0; a < a_n; ++a) d[a * b_total + b] = s[b * src_stride + a];
  }
}

void TransposeTileBySize(size_t es, const char* src, int64_t src_stride, char* dst, int64_t b_total,
                         int64_t a_n, int64_t b_n) {
  switch (es) {
    case 1:
      return TransposeTile<uint8_t>(src, src_stride, dst, b_total, a_n, b_n);
    case 2:
      return TransposeTile<uint16_t>(src, src_stride, dst, b_total, a_n, b_n);
    case 4:
      return TransposeTile<uint32_t>(src, src_stride, dst, b_total, a_n, b_n);
    default:
      return TransposeTile<uint64_t>(src, src_stride, dst, b_total, a_n, b_n);
  }
}

// Cache-blocked copy for dims [rest..., A, B] whose strides are [rest..., 1, S].
void BlockedTransposeCopy(KernelContext& ctx, size_t es, const char* s, const Shape& dims,
                          const std::vector<int64_t>& st, char* d) {
  constexpr int64_t kTile = 8;  // 8 rows: power-of-two strides stay within cache associativity
  const size_t rest_rank = dims.size() - 2;
  const int64_t a_total = dims[rest_rank], b_total = dims[rest_rank + 1];
  const int64_t src_stride = st[rest_rank + 1];
  int64_t rest = 1;
  for (size_t i = 0; i < rest_rank; ++i) rest *= dims[i];
  const int64_t a_tiles = (a_total + kTile - 1) / kTile;
  const auto ies = static_cast<int64_t>(es);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / (kTile * b_total * ies));
  ctx.ParallelFor(rest * a_tiles, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t r = u / a_tiles, a0 = (u % a_tiles) * kTile;
      int64_t off = 0;
      for (size_t k = rest_rank, q = static_cast<size_t>(r); k-- > 0;) {
        off += static_cast<int64_t>(q % static_cast<size_t>(dims[k])) * st[k];
        q /= static_cast<size_t>(dims[k]);
      }
      const int64_t a_n = std::min(kTile, a_total - a0);
      char* dst = d + (r * a_total + a0) * b_total * ies;
      for (int64_t b0 = 0; b0 < b_total; b0 += kTile) {
        TransposeTileBySize(es, s + (off + a0 + b0 * src_stride) * ies, src_stride, dst + b0 * ies,
                            b_total, a_n, std::min(kTile, b_total - b0));
      }
    }
  });
}

}  // namespace

void StridedCopy(KernelContext& ctx, size_t es, const void* src, Shape shape,
                 std::vector<int64_t> strides, void* dst) {
  for (int64_t d : shape) {
    if (d == 0) return;
  }
  // Drop unit dimensions, then merge each dimension into its inner neighbour when
  // stepping over the inner one lands exactly on the next outer element.
  Shape dims;
  std::vector<int64_t> st;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (!dims.empty() && st.back() == strides[i] * shape[i]) {
      dims.back() *= shape[i];
      st.back() = strides[i];
    } else {
      dims.push_back(shape[i]);
      st.push_back(strides[i]);
    }
  }
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  if (dims.empty()) {
    std::memcpy(d, s, es);
    return;
  }
  const int64_t inner = dims.back();
  const int64_t inner_stride = st.back();
  const size_t outer_rank = dims.size() - 1;
  if (inner_stride != 1 && outer_rank >= 1 && st[outer_rank - 1] == 1 && inner >= 8 &&
      dims[outer_rank - 1] >= 8 && (es == 1 || es == 2 || es == 4 || es == 8)) {
    BlockedTransposeCopy(ctx, es, s, dims, st, d);
    return;
  }
  int64_t rows = 1;
  for (size_t i = 0; i < outer_rank; ++i) rows *= dims[i];
  const int64_t ies = static_cast<int64_t>(es);
  const int64_t row_bytes = inner * ies;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(row_bytes, 1));
  ctx.ParallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(outer_rank, 0);
    int64_t off = 0;
    int64_t r = begin;
    for (size_t k = outer_rank; k-- > 0;) {
      idx[k] = r % dims[k];
      r /= dims[k];
      off += idx[k] * st[k];
    }
    for (int64_t row = begin; row < end; ++row) {
      CopyRow(es, s + off * ies, inner, inner_stride, d + row * row_bytes);
      // Advance the odometer over the outer dimensions.
      for (size_t k = outer_rank; k-- > 0;) {
        off += st[k];
        if (++idx[k] < dims[k]) break;
        off -= st[k] * dims[k];
        idx[k] = 0;
      }
    }
  });
}

namespace {
template <typename T>
void Store(T v, void* out) {
  std::memcpy(out, &v, sizeof(T));
}
// Saturating double -> integer conversion (a plain cast of NaN or out-of-range values is UB).
template <typename T>
T ToInt(double v) {
  if (std::isnan(v)) return 0;
  if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) {
    return std::numeric_limits<T>::lowest();
  }
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}
}  // namespace

bool EncodeScalar(DataType dtype, double value, void* out) {
  switch (dtype) {
    case DataType::kFloat32:
      Store(static_cast<float>(value), out);
      return true;
    case DataType::kFloat64:
      Store(value, out);
      return true;
    case DataType::kFloat16:
      Store(FloatToHalf(static_cast<float>(value)), out);
      return true;
    case DataType::kBFloat16:
      Store(FloatToBFloat16(static_cast<float>(value)), out);
      return true;
    case DataType::kBool:
      Store(static_cast<uint8_t>(value != 0.0 ? 1 : 0), out);
      return true;
    case DataType::kInt8:
      Store(ToInt<int8_t>(value), out);
      return true;
    case DataType::kUint8:
      Store(ToInt<uint8_t>(value), out);
      return true;
    case DataType::kInt16:
      Store(ToInt<int16_t>(value), out);
      return true;
    case DataType::kUint16:
      Store(ToInt<uint16_t>(value), out);
      return true;
    case DataType::kInt32:
      Store(ToInt<int32_t>(value), out);
      return true;
    case DataType::kUint32:
      Store(ToInt<uint32_t>(value), out);
      return true;
    case DataType::kInt64:
      Store(ToInt<int64_t>(value), out);
      return true;
    case DataType::kUint64:
      Store(ToInt<uint64_t>(value), out);
      return true;
    default:
      return false;
  }
}

}  // namespace infermesh::runtime::shape_ops
