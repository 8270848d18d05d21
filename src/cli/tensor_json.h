// JSON <-> Tensor for the command line (`infermesh run`). Accepts, per input,
// either nested arrays (data type taken from the model's declaration) or
// {"dtype": "float32", "shape": [2, 3], "data": [...]}; writes the latter.
// Floats are written in the shortest form that round-trips.
#pragma once

#include <boost/json.hpp>
#include <string>

#include "core/status.h"
#include "runtime/tensor.h"

namespace infermesh::cli {

Result<runtime::DataType> ParseDataType(std::string_view name);
Result<runtime::Tensor> TensorFromJson(const boost::json::value& v,
                                       runtime::DataType declared_type);
// {"dtype": ..., "shape": [...], "data": [...]} with floats in shortest round-trip form.
std::string TensorToJsonText(const runtime::Tensor& t);
// Appends the shortest round-trip decimal form of f ("NaN"/"Infinity" as strings
// would not be JSON; non-finite values are written as null).
void AppendFloat(std::string& out, float f);

}  // namespace infermesh::cli
