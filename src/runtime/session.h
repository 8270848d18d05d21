// Session: a loaded, validated ONNX graph ready to execute.
//
//   SessionOptions opts;  opts.intra_op_threads = 2;
//   IM_ASSIGN_OR_RETURN(auto session, Session::Load("model.onnx", opts));
//   IM_ASSIGN_OR_RETURN(std::vector<Tensor> out,
//                       session->Run({{"input_ids", ids}, {"attention_mask", mask}}));
//
// Load() parses the model, checks opsets, sorts the graph (rejecting cycles),
// creates one kernel per node (rejecting unsupported operators, attributes and
// data types with the node's name), infers data types, folds constants and
// computes each value's last use so the executor can recycle buffers.
// Run() is thread-safe: concurrent calls use separate value tables.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "runtime/tensor.h"

namespace infermesh {
class Config;
}
namespace onnx {
class ModelProto;
}

namespace infermesh::runtime {

// Arithmetic precision of the matrix products. kBf16 rounds activations and
// weights to bfloat16 (AVX512-BF16) and accumulates in float32. kInt8 quantizes
// weights per output channel and activations per token, dynamically, to int8
// (AVX512-VNNI) and accumulates in int32. Everything else (softmax, LayerNorm,
// residuals, GELU) stays float32. Only the fused transformer-encoder path honours
// it; generic graphs always run in float32.
enum class Precision { kFp32, kBf16, kInt8 };
std::string_view PrecisionName(Precision p);
// "fp32", "bf16" or "int8" (also "float32", "bfloat16"); InvalidArgument otherwise.
Result<Precision> ParsePrecision(std::string_view name);

struct SessionOptions {
  int intra_op_threads = 0;  // 0 = all cores
  // Unset: the model's own choice (EmbeddingModel reads "precision" from the model
  // directory's infermesh.json), float32 when it has none.
  std::optional<Precision> precision;
  // EmbeddingModel runs BERT-family encoders through the fused packed-sequence path
  // (runtime/encoder/) when the graph allows it; false forces the generic graph.
  bool fused_encoder = true;
  // The generic executor replaces matching node groups by fused kernels (MatMul+bias
  // +GELU, residual+LayerNorm, scale+mask+Softmax; runtime/graph_fusion.h); false
  // runs every node as written.
  bool graph_fusion = true;
  // Model files larger than this are rejected before reading (protobuf's own
  // ceiling is 2 GiB; larger weights must use external data).
  int64_t max_model_bytes = int64_t{2} << 30;
};

// Reads the runtime.* configuration keys (threads, model size limit, precision,
// fused encoder) into `options`; InvalidArgument names a bad value.
Status ReadRuntimeConfig(const Config& config, SessionOptions* options);

// What the generic executor's graph fusions (runtime/graph_fusion.h) did to a model.
struct FusionCounts {
  int linear = 0;           // MatMul/Gemm groups made Linear
  int bias = 0;             // of which with a bias Add folded in
  int gelu = 0;             // erf-GELU chains fused (into a Linear, or alone)
  int layer_norm = 0;       // LayerNorm groups
  int skip = 0;             // of which with a residual Add folded in
  int softmax = 0;          // ScaledMaskedSoftmax groups
  int removed = 0;          // nodes removed in all
  size_t packed_bytes = 0;  // weights the fused kernels hold (packed at load)
};

// A graph input or output as declared by the model.
struct ValueInfo {
  std::string name;
  DataType dtype = DataType::kUndefined;
  // -1 for a dynamic dimension; dim_params holds its symbolic name ("" if none).
  Shape shape;
  std::vector<std::string> dim_params;
  bool has_shape = false;  // false when the model declares no shape at all
};

class Session {
 public:
  virtual ~Session() = default;

  static Result<std::unique_ptr<Session>> Load(const std::string& path,
                                               const SessionOptions& options = {});
  // base_dir resolves external-data files.
  static Result<std::unique_ptr<Session>> LoadFromBytes(std::string_view bytes,
                                                        const std::string& base_dir,
                                                        const SessionOptions& options = {});

  // The steps of Load, for callers that also read the graph themselves (the fused
  // encoder): read and parse a file (checked against max_model_bytes), and build a
  // session from a parsed model, whose value_info ONNX shape inference fills in.
  static Result<std::unique_ptr<onnx::ModelProto>> ReadModel(const std::string& path,
                                                             const SessionOptions& options = {});
  static Result<std::unique_ptr<onnx::ModelProto>> ParseModel(std::string_view bytes);
  // With an `owner` keeping `model` alive, initializers' raw data is used in place
  // rather than copied (the session then keeps the whole model alive: meant for a
  // short-lived session, such as EmbeddingModel's load-time check).
  static Result<std::unique_ptr<Session>> LoadFromProto(onnx::ModelProto& model,
                                                        const std::string& base_dir,
                                                        const SessionOptions& options = {},
                                                        std::shared_ptr<const void> owner = {});

  virtual const std::vector<ValueInfo>& inputs() const = 0;
  virtual const std::vector<ValueInfo>& outputs() const = 0;
  // The graph fusions applied at load (all zero with graph_fusion off).
  virtual FusionCounts fusions() const { return {}; }
  // Nodes in the execution plan (after folding and fusion).
  virtual size_t planned_nodes() const { return 0; }
  // Bytes of weights and constants the session holds (fused kernels' included).
  virtual size_t weight_bytes() const { return 0; }

  // Runs the graph. Inputs are matched by name; each is checked against the
  // declared data type, rank and static dimensions. Returns the graph outputs in
  // declaration order.
  virtual Result<std::vector<Tensor>> Run(
      const std::vector<std::pair<std::string, Tensor>>& inputs) const = 0;
};

}  // namespace infermesh::runtime
