// Conversion between ONNX TensorProto and Tensor, including external data.
#pragma once

#include <string>

#include "core/status.h"
#include "runtime/tensor.h"

namespace onnx {
class TensorProto;
}

namespace infermesh::runtime {

// Decodes a TensorProto (raw_data or typed fields, or external data relative to
// base_dir). Validates sizes against the declared shape; never reads out of bounds.
Result<Tensor> TensorFromProto(const onnx::TensorProto& proto, const std::string& base_dir);
// Reads a serialized TensorProto file (as in ONNX's test_data_set_*/input_*.pb).
Result<Tensor> ReadTensorFile(const std::string& path);
// Encodes a tensor as a TensorProto with raw_data.
void TensorToProto(const Tensor& t, onnx::TensorProto* proto);

}  // namespace infermesh::runtime
