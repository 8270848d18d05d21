// Shared helper for the operator unit tests: builds one ONNX node with
// attributes, makes its kernel through the global registry and runs it.
#ifndef INFERMESH_TESTS_UNIT_RUNTIME_OP_RUNNER_H_
#define INFERMESH_TESTS_UNIT_RUNTIME_OP_RUNNER_H_

#include <onnx/onnx_pb.h>

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/parallel.h"

namespace infermesh::runtime::testing {

class OpRunner {
 public:
  explicit OpRunner(const std::string& op, int opset = 17)
      : proto_(std::make_unique<onnx::NodeProto>()), opset_(opset) {
    proto_->set_op_type(op);
    proto_->set_name("n0");
  }

  // Node name, which error messages carry ("n0" unless set).
  OpRunner& Name(const std::string& name) {
    proto_->set_name(name);
    return *this;
  }

  // --- Attributes ------------------------------------------------------------------------------
  OpRunner& Int(const std::string& name, int64_t v) {
    auto* a = Attr(name, onnx::AttributeProto::INT);
    a->set_i(v);
    return *this;
  }
  OpRunner& Float(const std::string& name, float v) {
    auto* a = Attr(name, onnx::AttributeProto::FLOAT);
    a->set_f(v);
    return *this;
  }
  OpRunner& String(const std::string& name, const std::string& v) {
    auto* a = Attr(name, onnx::AttributeProto::STRING);
    a->set_s(v);
    return *this;
  }
  OpRunner& Ints(const std::string& name, const std::vector<int64_t>& v) {
    auto* a = Attr(name, onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
    return *this;
  }

  // --- Inputs, outputs and run options ---------------------------------------------------------
  // A null entry is an omitted optional input. `constant` marks a value known at load time.
  OpRunner& Input(const Tensor* t, bool constant = false) {
    inputs_.push_back(t);
    constant_.push_back(constant);
    return *this;
  }
  OpRunner& Outputs(size_t n) {
    outputs_ = n;
    return *this;
  }
  // Intra-op threads used by Run() calls that do not name a count.
  OpRunner& Threads(int n) {
    threads_ = n;
    return *this;
  }
  // Fills fresh float32 outputs with NaN so that unwritten elements show up.
  OpRunner& PoisonOutputs(bool on = true) {
    poison_ = on;
    return *this;
  }
  // Fails Run() when a defined output's type differs from the type declared at load.
  OpRunner& CheckOutputTypes(bool on = true) {
    check_types_ = on;
    return *this;
  }

  // --- Load --------------------------------------------------------------------------------------
  // Makes the kernel for the inputs given with Input().
  Result<KernelInit> Make() {
    std::vector<DataType> types;
    std::vector<std::optional<Tensor>> consts;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      types.push_back(inputs_[i] ? inputs_[i]->dtype() : DataType::kUndefined);
      consts.push_back(inputs_[i] && constant_[i] ? std::optional<Tensor>(*inputs_[i])
                                                  : std::nullopt);
    }
    return MakeFor(types, std::move(consts));
  }
  // Makes the kernel for these input types (kUndefined = omitted), none known at load time.
  Result<KernelInit> Make(const std::vector<DataType>& types) {
    return MakeFor(types, std::vector<std::optional<Tensor>>(types.size()));
  }
  Status Load(const std::vector<DataType>& types) { return Make(types).status(); }
  // Load for the types of these values (undefined tensors are omitted inputs).
  Status Load(const std::vector<Tensor>& inputs) {
    std::vector<DataType> types;
    for (const Tensor& t : inputs) types.push_back(t.defined() ? t.dtype() : DataType::kUndefined);
    return Make(types).status();
  }

  // --- Run ---------------------------------------------------------------------------------------
  // Loads and runs with the inputs given with Input(); returns all outputs.
  Result<std::vector<Tensor>> Run(int threads) {
    IM_ASSIGN_OR_RETURN(KernelInit init, Make());
    auto pool = MakeIntraOpPool(threads);
    KernelContext ctx(
        inputs_, outputs_,
        [poison = poison_](DataType d, const Shape& s) {
          Tensor t = Tensor::Empty(d, s);
          if (poison && d == DataType::kFloat32) {
            for (float& x : t.mutable_values<float>()) x = std::nanf("");
          }
          return t;
        },
        pool.get());
    IM_RETURN_IF_ERROR(init.kernel->Run(ctx));
    if (check_types_) {
      for (size_t i = 0; i < ctx.outputs().size(); ++i) {
        const Tensor& t = ctx.outputs()[i];
        if (t.defined() && init.output_types[i] != t.dtype()) {
          return Internal("output type differs from the declared type");
        }
      }
    }
    return ctx.outputs();
  }
  Result<std::vector<Tensor>> Run() { return Run(threads_); }
  // Replaces the inputs with `inputs` (null = omitted) and runs.
  Result<std::vector<Tensor>> Run(const std::vector<const Tensor*>& inputs, int threads) {
    inputs_ = inputs;
    constant_.assign(inputs.size(), false);
    return Run(threads);
  }
  Result<std::vector<Tensor>> Run(const std::vector<const Tensor*>& inputs) {
    return Run(inputs, threads_);
  }
  // Runs with these values as inputs (undefined tensors are omitted inputs).
  Result<std::vector<Tensor>> RunValues(const std::vector<Tensor>& inputs) {
    std::vector<const Tensor*> ptrs;
    for (const Tensor& t : inputs) ptrs.push_back(t.defined() ? &t : nullptr);
    return Run(ptrs, threads_);
  }
  // As Run(), for single-output operators: returns output 0.
  Result<Tensor> RunOne(const std::vector<const Tensor*>& inputs, int threads = 1) {
    IM_ASSIGN_OR_RETURN(std::vector<Tensor> out, Run(inputs, threads));
    return out[0];
  }

 private:
  onnx::AttributeProto* Attr(const std::string& name, onnx::AttributeProto::AttributeType type) {
    auto* a = proto_->add_attribute();
    a->set_name(name);
    a->set_type(type);
    return a;
  }

  Result<KernelInit> MakeFor(const std::vector<DataType>& types,
                             std::vector<std::optional<Tensor>> consts) {
    proto_->clear_input();
    proto_->clear_output();
    for (size_t i = 0; i < types.size(); ++i) {
      proto_->add_input(types[i] != DataType::kUndefined ? "in" + std::to_string(i) : "");
    }
    for (size_t i = 0; i < outputs_; ++i) proto_->add_output("out" + std::to_string(i));
    // Kept alive while the kernel runs.
    info_ = std::make_unique<NodeInfo>(proto_.get());
    info_->name = proto_->name();
    info_->op_type = proto_->op_type();
    info_->opset = opset_;
    info_->num_outputs = outputs_;
    info_->input_types = types;
    info_->const_inputs = std::move(consts);
    const KernelFactory* f = KernelRegistry::Global().Find("", proto_->op_type(), opset_);
    if (f == nullptr) return NotFound("no kernel for " + proto_->op_type());
    return (*f)(*info_);
  }

  std::unique_ptr<onnx::NodeProto> proto_;
  int opset_;
  std::vector<const Tensor*> inputs_;
  std::vector<bool> constant_;
  size_t outputs_ = 1;
  int threads_ = 1;
  bool poison_ = false;
  bool check_types_ = false;
  std::unique_ptr<NodeInfo> info_;
};

}  // namespace infermesh::runtime::testing

#endif  // INFERMESH_TESTS_UNIT_RUNTIME_OP_RUNNER_H_
