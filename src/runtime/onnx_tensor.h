// Conversion between ONNX TensorProto and Tensor, including external data.
#pragma once

#include <memory>

#include <string>

#include "core/status.h"
#include "runtime/tensor.h"

namespace onnx {
class TensorProto;
}

namespace infermesh::runtime {

// Decodes a TensorProto (raw_data or typed fields, or external data relative to
// base_dir). Validates sizes against the declared shape; never reads out of bounds.
//
// With an `owner` (something that keeps `proto` alive), raw data held in the proto is
// not copied: the tensor points into it and keeps `owner` alive. Only for read-only
// uses that end before the proto would be changed.
Result<Tensor> TensorFromProto(const onnx::TensorProto& proto, const std::string& base_dir,
                               std::shared_ptr<const void> owner = nullptr);
// Reads a serialized TensorProto file (as in ONNX's test_data_set_*/input_*.pb).
Result<Tensor> ReadTensorFile(const std::string& path);
// Encodes a tensor as a TensorProto with raw_data.
void TensorToProto(const Tensor& t, onnx::TensorProto* proto);

}  // namespace infermesh::runtime
