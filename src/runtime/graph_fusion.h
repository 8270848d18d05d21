// Graph-level fusions for the generic executor: after every node has its kernel and
// constants are folded, runs of nodes that match a known pattern are replaced by one
// fused kernel, as ONNX Runtime's transformer optimizer fuses Attention, SkipLayerNorm
// and BiasGelu. Matching is by pattern (data flow and constant operands), never by a
// node's position or name, so it applies to any model that contains the pattern, BERT
// or not:
//
//   MatMul(x, W) [+ Add(b)] [+ GELU]     → Linear: one oneDNN matmul on W pre-packed at
//   Gemm(x, W, b) [+ GELU]                 load, bias and erf-GELU in its epilogue
//   [Add(a, r) →] LayerNorm over the last → LayerNorm: one pass, the residual added in it
//     axis (LayerNormalization, or the
//     decomposed form opset < 17 exports)
//   Div/Mul(S, c) → Add(S, mask) →         → ScaledMaskedSoftmax: one pass over the scores
//     Softmax(axis = -1)
//
// A fused group's intermediate values must have no other reader and must not be graph
// outputs; otherwise the nodes stay as they are. The fused node takes the place of the
// group's last node, so the plan stays in topological order.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/session.h"
#include "runtime/tensor.h"

namespace onnx {
class NodeProto;
}

namespace infermesh::runtime {

// One node of a session's execution plan.
struct PlannedNode {
  std::string name;
  std::string op_type;
  std::unique_ptr<Kernel> kernel;
  std::vector<int> inputs;   // value ids; -1 for omitted optional inputs
  std::vector<int> outputs;  // value ids; -1 for omitted outputs
  std::vector<int> release;  // values whose last use is this node
  // The node's definition; valid only while the session is being built.
  const onnx::NodeProto* proto = nullptr;
};

// Rewrites `nodes` in place. `constants[id]` holds the values known at load;
// `types[id]` the data type of each value; `graph_outputs` the ids that must survive.
// `threads` sizes the fused kernels' OpenMP teams.
Result<FusionCounts> FuseGraph(std::vector<PlannedNode>& nodes,
                               const std::vector<std::optional<Tensor>>& constants,
                               const std::vector<DataType>& types,
                               const std::vector<int>& graph_outputs, int threads);

}  // namespace infermesh::runtime
