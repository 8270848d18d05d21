#include "runtime/onnx_tensor.h"

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <limits>

namespace infermesh::runtime {
namespace {

// A tensor larger than this is rejected as absurd rather than allocated.
constexpr uint64_t kMaxTensorBytes = uint64_t{16} << 30;

Result<std::string> ReadFileRange(const std::string& path, uint64_t offset, int64_t length) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open external data file '" + path + "'");
  f.seekg(0, std::ios::end);
  auto size = static_cast<uint64_t>(f.tellg());
  if (offset > size) return DataLoss("external data offset beyond end of '" + path + "'");
  uint64_t len = length < 0 ? size - offset : static_cast<uint64_t>(length);
  if (offset + len > size) return DataLoss("external data range beyond end of '" + path + "'");
  std::string data(len, '\0');
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(data.data(), static_cast<std::streamsize>(len));
  if (!f) return DataLoss("short read from '" + path + "'");
  return data;
}

template <typename Dst, typename Field>
Status CopyTyped(const Field& field, Tensor& t, int64_t numel) {
  if (field.size() != numel) {
    return DataLoss("tensor has " + std::to_string(field.size()) + " values, shape needs " +
                    std::to_string(numel));
  }
  Dst* out = t.data<Dst>();
  for (int64_t i = 0; i < numel; ++i) out[i] = static_cast<Dst>(field.Get(static_cast<int>(i)));
  return OkStatus();
}

}  // namespace

Result<Tensor> TensorFromProto(const onnx::TensorProto& proto, const std::string& base_dir,
                               std::shared_ptr<const void> owner) {
  auto dtype = static_cast<DataType>(proto.data_type());
  const std::string label = proto.name().empty() ? "tensor" : "tensor '" + proto.name() + "'";
  if (!IsSupportedStorageType(dtype)) {
    return Unimplemented(label + " has unsupported data type " + DataTypeName(dtype));
  }
  Shape shape(proto.dims().begin(), proto.dims().end());
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument(label + " has negative dimension " + std::to_string(d));
    if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d)) {
      return ResourceExhausted(label + " has absurd shape " + ShapeToString(shape));
    }
    numel *= static_cast<uint64_t>(d);
  }
  uint64_t bytes = numel * DataTypeSize(dtype);
  if (numel > kMaxTensorBytes || bytes > kMaxTensorBytes) {
    return ResourceExhausted(label + " of shape " + ShapeToString(shape) + " exceeds " +
                             std::to_string(kMaxTensorBytes >> 30) + " GiB");
  }

  const std::string* raw = nullptr;
  std::string external;
  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    uint64_t offset = 0;
    int64_t length = -1;
    for (const auto& kv : proto.external_data()) {
      try {
        if (kv.key() == "location") location = kv.value();
        if (kv.key() == "offset") offset = std::stoull(kv.value());
        if (kv.key() == "length") length = std::stoll(kv.value());
      } catch (const std::exception&) {
        return InvalidArgument(label + " has malformed external_data '" + kv.key() + "'");
      }
    }
    if (location.empty()) return InvalidArgument(label + " has external data without location");
    std::filesystem::path rel(location);
    if (rel.is_absolute() || location.find("..") != std::string::npos) {
      return InvalidArgument(label + " external data location must be relative: " + location);
    }
    IM_ASSIGN_OR_RETURN(
        external, ReadFileRange((std::filesystem::path(base_dir) / rel).string(), offset, length));
    raw = &external;
  } else if (proto.has_raw_data()) {
    raw = &proto.raw_data();
  }

  const auto n = static_cast<int64_t>(numel);
  if (raw != nullptr) {
    if (raw->size() != bytes) {
      return DataLoss(label + " raw data has " + std::to_string(raw->size()) +
                      " bytes, shape needs " + std::to_string(bytes));
    }
    const bool aligned =
        reinterpret_cast<uintptr_t>(raw->data()) % std::max<size_t>(DataTypeSize(dtype), 1) == 0;
    if (owner && raw == &proto.raw_data() && aligned && bytes > 0) {
      auto view = std::make_shared<Buffer>();
      view->data = const_cast<char*>(raw->data());
      view->bytes = bytes;
      view->release = [owner](void*, size_t) {};
      return Tensor::FromBuffer(dtype, std::move(shape), std::move(view));
    }
    // Every byte is written below: no zero fill (for big weights, that pass alone
    // costs as much as the copy).
    Tensor t = Tensor::FromBuffer(dtype, std::move(shape), AllocateBuffer(bytes, false));
    if (bytes) std::memcpy(t.raw_data(), raw->data(), bytes);
    return t;
  }
  Tensor t = Tensor::Empty(dtype, std::move(shape));
  Status s;
  switch (dtype) {
    case DataType::kFloat32:
      s = CopyTyped<float>(proto.float_data(), t, n);
      break;
    case DataType::kFloat64:
      s = CopyTyped<double>(proto.double_data(), t, n);
      break;
    case DataType::kInt64:
      s = CopyTyped<int64_t>(proto.int64_data(), t, n);
      break;
    case DataType::kInt32:
      s = CopyTyped<int32_t>(proto.int32_data(), t, n);
      break;
    case DataType::kInt16:
      s = CopyTyped<int16_t>(proto.int32_data(), t, n);
      break;
    case DataType::kInt8:
      s = CopyTyped<int8_t>(proto.int32_data(), t, n);
      break;
    case DataType::kUint8:
      s = CopyTyped<uint8_t>(proto.int32_data(), t, n);
      break;
    case DataType::kBool:
      s = CopyTyped<uint8_t>(proto.int32_data(), t, n);
      break;
    case DataType::kUint16:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      s = CopyTyped<uint16_t>(proto.int32_data(), t, n);
      break;
    case DataType::kUint32:
      s = CopyTyped<uint32_t>(proto.uint64_data(), t, n);
      break;
    case DataType::kUint64:
      s = CopyTyped<uint64_t>(proto.uint64_data(), t, n);
      break;
    default:
      return Unimplemented(label + " has unsupported data type");
  }
  if (!s.ok()) return s.WithContext(label);
  return t;
}

Result<Tensor> ReadTensorFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open '" + path + "'");
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) return DataLoss("'" + path + "' is not a TensorProto");
  auto dir = std::filesystem::path(path).parent_path().string();
  return TensorFromProto(proto, dir);
}

void TensorToProto(const Tensor& t, onnx::TensorProto* proto) {
  proto->Clear();
  proto->set_data_type(static_cast<int32_t>(t.dtype()));
  for (int64_t d : t.shape()) proto->add_dims(d);
  if (t.defined()) proto->set_raw_data(t.raw_data(), t.nbytes());
}

}  // namespace infermesh::runtime
