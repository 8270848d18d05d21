#include "runtime/kernel.h"

#include <onnx/onnx_pb.h>

#include "runtime/onnx_tensor.h"

namespace infermesh::runtime {

Attributes::Attributes(const onnx::NodeProto* node) : node_(node) {
  if (node_ == nullptr) return;
  for (const auto& a : node_->attribute()) used_[a.name()] = false;
}

const onnx::AttributeProto* Attributes::Find(const std::string& name) const {
  if (node_ == nullptr) return nullptr;
  for (const auto& a : node_->attribute()) {
    if (a.name() == name) {
      used_[name] = true;
      return &a;
    }
  }
  return nullptr;
}

bool Attributes::Has(const std::string& name) const { return Find(name) != nullptr; }

int64_t Attributes::GetInt(const std::string& name, int64_t default_value) const {
  const auto* a = Find(name);
  return a ? a->i() : default_value;
}

float Attributes::GetFloat(const std::string& name, float default_value) const {
  const auto* a = Find(name);
  return a ? a->f() : default_value;
}

std::string Attributes::GetString(const std::string& name, const std::string& default_value) const {
  const auto* a = Find(name);
  return a ? a->s() : default_value;
}

std::vector<int64_t> Attributes::GetInts(const std::string& name,
                                         const std::vector<int64_t>& default_value) const {
  const auto* a = Find(name);
  if (!a) return default_value;
  return {a->ints().begin(), a->ints().end()};
}

std::vector<float> Attributes::GetFloats(const std::string& name,
                                         const std::vector<float>& default_value) const {
  const auto* a = Find(name);
  if (!a) return default_value;
  return {a->floats().begin(), a->floats().end()};
}

std::vector<std::string> Attributes::GetStrings(const std::string& name) const {
  const auto* a = Find(name);
  if (!a) return {};
  return {a->strings().begin(), a->strings().end()};
}

Result<Tensor> Attributes::GetTensor(const std::string& name) const {
  const auto* a = Find(name);
  if (!a) return NotFound("attribute '" + name + "' is missing");
  if (!a->has_t()) return InvalidArgument("attribute '" + name + "' is not a tensor");
  return TensorFromProto(a->t(), /*base_dir=*/"");
}

std::vector<std::string> Attributes::Unused() const {
  std::vector<std::string> out;
  for (const auto& [name, used] : used_) {
    if (!used) out.push_back(name);
  }
  return out;
}

Status NodeInfo::Error(const std::string& reason) const {
  return InvalidArgument("node '" + name + "' (" + op_type + "): " + reason);
}

Status NodeInfo::Unsupported(const std::string& reason) const {
  return Unimplemented("node '" + name + "' (" + op_type + "): unsupported: " + reason);
}

Status NodeInfo::RequireInputCount(size_t min, size_t max) const {
  if (input_types.size() < min || input_types.size() > max) {
    return Error("expects " + std::to_string(min) + ".." + std::to_string(max) + " inputs, got " +
                 std::to_string(input_types.size()));
  }
  for (size_t i = 0; i < min; ++i) {
    if (input_types[i] == DataType::kUndefined) {
      return Error("required input " + std::to_string(i) + " is missing");
    }
  }
  return OkStatus();
}

Status NodeInfo::RequireType(size_t i, std::initializer_list<DataType> allowed) const {
  if (!HasInput(i)) return OkStatus();
  for (DataType t : allowed) {
    if (input_types[i] == t) return OkStatus();
  }
  return Unsupported("input " + std::to_string(i) + " has data type " +
                     DataTypeName(input_types[i]));
}

Status NodeInfo::CheckAllAttributesUsed() const {
  auto unused = attrs.Unused();
  if (unused.empty()) return OkStatus();
  std::string list;
  for (const auto& u : unused) list += (list.empty() ? "" : ", ") + u;
  return Unsupported("attribute(s) not supported: " + list);
}

void KernelRegistry::Add(const std::string& op_type, int since_version, KernelFactory factory,
                         const std::string& domain) {
  factories_[domain + ":" + op_type][since_version] = std::move(factory);
}

const KernelFactory* KernelRegistry::Find(const std::string& domain, const std::string& op_type,
                                          int opset) const {
  std::string d = (domain == "ai.onnx") ? "" : domain;
  auto it = factories_.find(d + ":" + op_type);
  if (it == factories_.end()) return nullptr;
  // Newest registration whose since_version <= opset.
  auto v = it->second.upper_bound(opset);
  if (v == it->second.begin()) return nullptr;
  --v;
  return &v->second;
}

std::vector<std::string> KernelRegistry::SupportedOps() const {
  std::vector<std::string> out;
  for (const auto& [key, _] : factories_) out.push_back(key);
  return out;
}

const KernelRegistry& KernelRegistry::Global() {
  static const KernelRegistry* registry = [] {
    auto* r = new KernelRegistry();
    RegisterElementwiseKernels(*r);
    RegisterShapeKernels(*r);
    RegisterMathKernels(*r);
    RegisterConvKernels(*r);
    return r;
  }();
  return *registry;
}

}  // namespace infermesh::runtime
