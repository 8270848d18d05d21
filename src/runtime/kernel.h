// The operator boundary: every ONNX operator is a Kernel made by a factory at
// load time. The factory validates attributes and input data types and states the
// output data types, so an unsupported model fails at load with a message that
// names the node, the operator and the reason, never at run time.
//
//   // in ops/elementwise.cc
//   Result<KernelInit> MakeRelu(const NodeInfo& node) {
//     IM_RETURN_IF_ERROR(node.RequireInputTypes({DataType::kFloat32}));
//     return KernelInit{std::make_unique<ReluKernel>(), {node.input_types[0]}};
//   }
//   void RegisterElementwiseKernels(KernelRegistry& r) { r.Add("Relu", 6, MakeRelu); }
//
// Ownership: the Session owns kernels; a kernel must not keep pointers to the
// tensors it receives beyond one Run() call. Kernels may be run concurrently from
// several threads (different requests), so Run() must not mutate kernel state.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/parallel.h"
#include "runtime/tensor.h"

namespace onnx {
class NodeProto;
class AttributeProto;
}  // namespace onnx

namespace infermesh::runtime {

// Typed access to a node's attributes. Every read marks the attribute as
// consumed; NodeInfo::CheckAllAttributesUsed() then rejects unknown attributes.
class Attributes {
 public:
  explicit Attributes(const onnx::NodeProto* node);
  bool Has(const std::string& name) const;
  int64_t GetInt(const std::string& name, int64_t default_value) const;
  float GetFloat(const std::string& name, float default_value) const;
  std::string GetString(const std::string& name, const std::string& default_value) const;
  std::vector<int64_t> GetInts(const std::string& name,
                               const std::vector<int64_t>& default_value = {}) const;
  std::vector<float> GetFloats(const std::string& name,
                               const std::vector<float>& default_value = {}) const;
  std::vector<std::string> GetStrings(const std::string& name) const;
  // Tensor-valued attribute (e.g. Constant.value, ConstantOfShape.value).
  Result<Tensor> GetTensor(const std::string& name) const;
  // Names of attributes present on the node that nothing has read yet.
  std::vector<std::string> Unused() const;

 private:
  const onnx::AttributeProto* Find(const std::string& name) const;
  const onnx::NodeProto* node_;
  mutable std::map<std::string, bool> used_;
};

// What a factory knows about a node at load time.
struct NodeInfo {
  const onnx::NodeProto* proto = nullptr;
  std::string name;     // node name, or "<op_type>#<index>" when the model has none
  std::string op_type;  // e.g. "MatMul"
  std::string domain;   // "" for the default ONNX domain
  int opset = 0;        // opset version of this node's domain in the model
  size_t num_outputs = 0;
  // One entry per declared input; kUndefined for an omitted optional input ("").
  std::vector<DataType> input_types;
  // Values known at load time: initializers and Constant outputs. Empty optional
  // when the value is only known at run time.
  std::vector<std::optional<Tensor>> const_inputs;
  Attributes attrs;

  explicit NodeInfo(const onnx::NodeProto* p) : proto(p), attrs(p) {}

  bool HasInput(size_t i) const {
    return i < input_types.size() && input_types[i] != DataType::kUndefined;
  }
  // Error helpers whose messages name the node and operator.
  Status Error(const std::string& reason) const;
  Status Unsupported(const std::string& reason) const;
  // Checks input count is within [min, max].
  Status RequireInputCount(size_t min, size_t max) const;
  // Checks that input i (if present) has one of the allowed types.
  Status RequireType(size_t i, std::initializer_list<DataType> allowed) const;
  // Fails if the node carries attributes that no Get* call consumed.
  Status CheckAllAttributesUsed() const;
};

// Scratch allocation and outputs for one Run() call.
class KernelContext {
 public:
  using Allocator = std::function<Tensor(DataType, const Shape&)>;
  KernelContext(std::vector<const Tensor*> inputs, size_t num_outputs, Allocator alloc,
                IntraOpPool* pool)
      : inputs_(std::move(inputs)), outputs_(num_outputs), alloc_(std::move(alloc)), pool_(pool) {}

  size_t num_inputs() const { return inputs_.size(); }
  // Null for an omitted optional input.
  const Tensor* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }
  const Tensor& in(size_t i) const { return *inputs_[i]; }

  // Allocates output i (uninitialised contents) from the session's memory pool.
  Tensor& AllocateOutput(size_t i, DataType dtype, const Shape& shape) {
    outputs_[i] = alloc_(dtype, shape);
    return outputs_[i];
  }
  // Sets output i to an existing tensor, e.g. a reshaped view of an input.
  void SetOutput(size_t i, Tensor t) { outputs_[i] = std::move(t); }
  // Allocates scratch memory that lives until the tensor is dropped.
  Tensor Scratch(DataType dtype, const Shape& shape) { return alloc_(dtype, shape); }

  size_t num_outputs() const { return outputs_.size(); }
  std::vector<Tensor>& outputs() { return outputs_; }
  // Intra-op parallelism; never null (one thread runs inline).
  IntraOpPool& pool() { return *pool_; }
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    pool_->ParallelFor(n, grain, fn);
  }

 private:
  std::vector<const Tensor*> inputs_;
  std::vector<Tensor> outputs_;
  Allocator alloc_;
  IntraOpPool* pool_;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual Status Run(KernelContext& ctx) const = 0;
};

struct KernelInit {
  std::unique_ptr<Kernel> kernel;
  // One per node output. kUndefined is allowed only for outputs the node omits.
  std::vector<DataType> output_types;
};

using KernelFactory = std::function<Result<KernelInit>(const NodeInfo&)>;

// Maps (domain, op_type, opset) to a factory. A registration covers opsets
// [since_version, next registration's since_version) of the same op.
class KernelRegistry {
 public:
  // The process-wide registry with every built-in kernel.
  static const KernelRegistry& Global();

  void Add(const std::string& op_type, int since_version, KernelFactory factory,
           const std::string& domain = "");
  // Null if no kernel covers this op at this opset.
  const KernelFactory* Find(const std::string& domain, const std::string& op_type, int opset) const;
  // Sorted list of "domain:op_type" we support.
  std::vector<std::string> SupportedOps() const;

 private:
  // key: domain + ":" + op_type -> since_version -> factory
  std::map<std::string, std::map<int, KernelFactory>> factories_;
};

// Registration hooks, one per operator family (ops/*.cc). Each adds its kernels.
void RegisterElementwiseKernels(KernelRegistry& r);  // ops/elementwise*.cc
void RegisterShapeKernels(KernelRegistry& r);        // ops/shape*.cc
void RegisterMathKernels(KernelRegistry& r);         // ops/math*.cc: MatMul, Gemm, Softmax,
                                                     // LayerNorm, Reduce*, ArgMax...
void RegisterConvKernels(KernelRegistry& r);         // ops/conv*.cc: Conv, pools, BatchNorm...

}  // namespace infermesh::runtime
