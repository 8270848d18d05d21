#include "runtime/session.h"

#include <google/protobuf/io/coded_stream.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "core/config.h"
#include "runtime/graph_fusion.h"
#include "runtime/kernel.h"
#include "runtime/memory_pool.h"
#include "runtime/onnx_tensor.h"
#include "runtime/parallel.h"

namespace infermesh::runtime {
namespace {

// The default-domain opsets we load. Kernels are written against 11..17; older
// and slightly newer models load when every node's kernel covers its version.
constexpr int kMinOpset = 1;
constexpr int kMaxOpset = 18;
// Cached freed buffers per session; beyond this they return to the system.
constexpr size_t kPoolBytes = size_t{1} << 30;

class GraphSession final : public Session {
 public:
  const std::vector<ValueInfo>& inputs() const override { return inputs_; }
  const std::vector<ValueInfo>& outputs() const override { return outputs_; }
  FusionCounts fusions() const override { return fusions_; }
  size_t planned_nodes() const override { return nodes_.size(); }
  size_t weight_bytes() const override {
    size_t bytes = fusions_.packed_bytes;
    for (const auto& c : constants_) {
      if (c) bytes += c->nbytes();
    }
    return bytes;
  }
  Result<std::vector<Tensor>> Run(
      const std::vector<std::pair<std::string, Tensor>>& inputs) const override;

  Status Build(onnx::ModelProto& model, const std::string& base_dir, const SessionOptions& options,
               std::shared_ptr<const void> owner);

 private:
  int ValueId(const std::string& name) {
    auto [it, inserted] = value_ids_.emplace(name, static_cast<int>(value_names_.size()));
    if (inserted) {
      value_names_.push_back(name);
      value_types_.push_back(DataType::kUndefined);
      constants_.emplace_back();
    }
    return it->second;
  }
  Status CheckInput(const ValueInfo& info, const Tensor& t) const;

  std::vector<ValueInfo> inputs_;
  std::vector<ValueInfo> outputs_;
  std::vector<int> input_ids_;
  std::vector<int> output_ids_;
  std::unordered_map<std::string, int> value_ids_;
  std::vector<std::string> value_names_;
  std::vector<DataType> value_types_;
  std::vector<std::optional<Tensor>> constants_;
  std::vector<PlannedNode> nodes_;
  FusionCounts fusions_;
  std::unique_ptr<IntraOpPool> pool_;
  std::shared_ptr<BufferPool> buffers_;
};

ValueInfo ToValueInfo(const onnx::ValueInfoProto& v) {
  ValueInfo info;
  info.name = v.name();
  if (v.type().has_tensor_type()) {
    const auto& tt = v.type().tensor_type();
    info.dtype = static_cast<DataType>(tt.elem_type());
    if (tt.has_shape()) {
      info.has_shape = true;
      for (const auto& d : tt.shape().dim()) {
        info.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
        info.dim_params.push_back(d.has_dim_param() ? d.dim_param() : "");
      }
    }
  }
  return info;
}

// Kahn's algorithm over value dependencies; fails on cycles or undefined inputs.
Result<std::vector<int>> TopologicalOrder(const onnx::GraphProto& graph,
                                          const std::unordered_map<std::string, bool>& known) {
  const int n = graph.node_size();
  std::unordered_map<std::string, int> producer;
  for (int i = 0; i < n; ++i) {
    for (const auto& out : graph.node(i).output()) {
      if (out.empty()) continue;
      if (known.count(out) || !producer.emplace(out, i).second) {
        return InvalidArgument("value '" + out + "' is produced more than once (node '" +
                               graph.node(i).name() + "')");
      }
    }
  }
  std::vector<int> indegree(n, 0);
  std::vector<std::vector<int>> consumers(n);
  for (int i = 0; i < n; ++i) {
    for (const auto& in : graph.node(i).input()) {
      if (in.empty() || known.count(in)) continue;
      auto it = producer.find(in);
      if (it == producer.end()) {
        return InvalidArgument("node '" + graph.node(i).name() + "' (" + graph.node(i).op_type() +
                               ") reads undefined value '" + in + "'");
      }
      ++indegree[i];
      consumers[it->second].push_back(i);
    }
  }
  std::vector<int> order;
  order.reserve(n);
  std::vector<int> ready;
  for (int i = n - 1; i >= 0; --i) {
    if (indegree[i] == 0) ready.push_back(i);
  }
  while (!ready.empty()) {
    int i = ready.back();
    ready.pop_back();
    order.push_back(i);
    for (int c : consumers[i]) {
      if (--indegree[c] == 0) ready.push_back(c);
    }
  }
  if (static_cast<int>(order.size()) != n) {
    for (int i = 0; i < n; ++i) {
      if (indegree[i] > 0) {
        return InvalidArgument("graph has a cycle through node '" + graph.node(i).name() + "' (" +
                               graph.node(i).op_type() + ")");
      }
    }
  }
  return order;
}

std::string NodeLabel(const onnx::NodeProto& node, int index) {
  return node.name().empty() ? node.op_type() + "#" + std::to_string(index) : node.name();
}

// libonnx 1.12's Conv-family shape inference indexes its per-axis vectors by the
// weight's rank and crashes when the weight has more dimensions than the input. Where
// both ranks are declared (graph inputs, initializers, value_info) we say so first.
Status CheckConvRanks(const onnx::GraphProto& graph) {
  std::unordered_map<std::string, int> ranks;
  auto declare = [&](const onnx::ValueInfoProto& v) {
    if (v.type().has_tensor_type() && v.type().tensor_type().has_shape()) {
      ranks[v.name()] = v.type().tensor_type().shape().dim_size();
    }
  };
  for (const auto& v : graph.input()) declare(v);
  for (const auto& v : graph.value_info()) declare(v);
  for (const auto& t : graph.initializer()) ranks[t.name()] = t.dims_size();
  for (const auto& n : graph.node()) {
    // (input, weight) positions of the operators that share convPoolShapeInference.
    int x = -1, w = -1;
    if (n.op_type() == "Conv" || n.op_type() == "ConvInteger" || n.op_type() == "ConvTranspose") {
      x = 0;
      w = 1;
    } else if (n.op_type() == "QLinearConv") {
      x = 0;
      w = 3;
    }
    if (x < 0 || n.input_size() <= w) continue;
    auto xr = ranks.find(n.input(x));
    auto wr = ranks.find(n.input(w));
    if (xr == ranks.end() || wr == ranks.end()) continue;
    if (xr->second != wr->second || xr->second < 3) {
      return InvalidArgument("node '" + n.name() + "' (" + n.op_type() + "): input has rank " +
                             std::to_string(xr->second) + " and weight rank " +
                             std::to_string(wr->second) +
                             "; both must be the same, at least 3 ([N, C, spatial...])");
    }
  }
  return OkStatus();
}

}  // namespace

Status GraphSession::Build(onnx::ModelProto& model, const std::string& base_dir,
                           const SessionOptions& options, std::shared_ptr<const void> owner) {
  if (!model.has_graph()) return InvalidArgument("model has no graph");
  std::unordered_map<std::string, int> opsets;
  for (const auto& op : model.opset_import()) {
    std::string domain = op.domain() == "ai.onnx" ? "" : op.domain();
    opsets[domain] = static_cast<int>(op.version());
  }
  if (model.opset_import_size() == 0) opsets[""] = 1;  // IR < 3 models
  if (opsets.count("")) {
    int v = opsets[""];
    if (v < kMinOpset || v > kMaxOpset) {
      return Unimplemented("model uses opset " + std::to_string(v) + "; supported are " +
                           std::to_string(kMinOpset) + ".." + std::to_string(kMaxOpset));
    }
  }
  const auto& graph = model.graph();

  pool_ = MakeIntraOpPool(options.intra_op_threads);
  buffers_ = BufferPool::Create(kPoolBytes);

  // Initializers are constants. A graph input with the same name is an
  // overridable default in ONNX; we treat it as the constant and do not list it.
  std::unordered_map<std::string, bool> known;
  for (const auto& init : graph.initializer()) {
    Result<Tensor> t = TensorFromProto(init, base_dir, owner);
    if (!t.ok()) return t.status().WithContext("initializer '" + init.name() + "'");
    int id = ValueId(init.name());
    value_types_[id] = t->dtype();
    constants_[id] = std::move(t).value();
    known[init.name()] = true;
  }
  for (const auto& in : graph.input()) {
    if (known.count(in.name())) continue;
    ValueInfo info = ToValueInfo(in);
    if (!in.type().has_tensor_type()) {
      return Unimplemented("graph input '" + in.name() + "' is not a tensor");
    }
    if (!IsSupportedStorageType(info.dtype)) {
      return Unimplemented("graph input '" + in.name() + "' has unsupported data type " +
                           DataTypeName(info.dtype));
    }
    int id = ValueId(in.name());
    value_types_[id] = info.dtype;
    input_ids_.push_back(id);
    inputs_.push_back(std::move(info));
    known[in.name()] = true;
  }

  IM_ASSIGN_OR_RETURN(std::vector<int> order, TopologicalOrder(graph, known));

  const KernelRegistry& registry = KernelRegistry::Global();
  for (int index : order) {
    const onnx::NodeProto& proto = graph.node(index);
    NodeInfo info(&proto);
    info.name = NodeLabel(proto, index);
    info.op_type = proto.op_type();
    info.domain = proto.domain() == "ai.onnx" ? "" : proto.domain();
    auto opset_it = opsets.find(info.domain);
    if (opset_it == opsets.end()) {
      return Unimplemented("node '" + info.name + "' (" + info.op_type + "): domain '" +
                           info.domain + "' is not imported by the model");
    }
    info.opset = opset_it->second;
    info.num_outputs = static_cast<size_t>(proto.output_size());
    PlannedNode planned;
    planned.proto = &proto;
    planned.name = info.name;
    planned.op_type = info.op_type;
    bool all_const = true;
    for (const auto& in : proto.input()) {
      if (in.empty()) {
        info.input_types.push_back(DataType::kUndefined);
        info.const_inputs.emplace_back();
        planned.inputs.push_back(-1);
        continue;
      }
      int id = value_ids_.at(in);
      info.input_types.push_back(value_types_[id]);
      info.const_inputs.push_back(constants_[id]);
      if (!constants_[id]) all_const = false;
      planned.inputs.push_back(id);
    }
    const KernelFactory* factory = registry.Find(info.domain, info.op_type, info.opset);
    if (factory == nullptr) {
      return Unimplemented("node '" + info.name + "' (" + info.op_type + "): operator " +
                           (info.domain.empty() ? "" : info.domain + ".") + info.op_type +
                           " is not supported at opset " + std::to_string(info.opset));
    }
    Result<KernelInit> init = (*factory)(info);
    if (!init.ok()) return init.status();
    if (init->output_types.size() < info.num_outputs) {
      return Internal("node '" + info.name + "' (" + info.op_type + "): kernel declared " +
                      std::to_string(init->output_types.size()) + " output types for " +
                      std::to_string(info.num_outputs) + " outputs");
    }
    for (size_t o = 0; o < info.num_outputs; ++o) {
      const std::string& out = proto.output(static_cast<int>(o));
      if (out.empty()) {
        planned.outputs.push_back(-1);
        continue;
      }
      int id = ValueId(out);
      value_types_[id] = init->output_types[o];
      planned.outputs.push_back(id);
    }
    planned.kernel = std::move(init->kernel);

    // Constant folding: a node whose inputs are all known at load runs now.
    if (all_const) {
      std::vector<const Tensor*> ins;
      for (int id : planned.inputs) ins.push_back(id < 0 ? nullptr : &*constants_[id]);
      KernelContext ctx(
          std::move(ins), planned.outputs.size(),
          [](DataType d, const Shape& s) { return Tensor::Empty(d, s); }, pool_.get());
      Status s = planned.kernel->Run(ctx);
      if (!s.ok()) return s.WithContext("while folding constants");
      for (size_t o = 0; o < planned.outputs.size(); ++o) {
        if (planned.outputs[o] >= 0) constants_[planned.outputs[o]] = ctx.outputs()[o];
      }
      continue;
    }
    nodes_.push_back(std::move(planned));
  }

  // ONNX's own shape inference runs once, strictly: it rejects graphs whose
  // declared shapes and types contradict their operators, naming the node, and
  // records symbolic shapes (batch, sequence) for every value. It runs only after
  // every kernel factory has validated its node's attributes: libonnx 1.12 divides
  // by a zero Conv stride, for one, where our factory has already said no.
  IM_RETURN_IF_ERROR(CheckConvRanks(graph));
  try {
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true,
                                                                   /*strict_mode=*/1,
                                                                   /*data_prop=*/false));
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("shape inference failed: ") + e.what());
  }

  for (const auto& out : graph.output()) {
    auto it = value_ids_.find(out.name());
    if (it == value_ids_.end()) {
      return InvalidArgument("graph output '" + out.name() + "' is never produced");
    }
    ValueInfo info = ToValueInfo(out);
    if (!info.has_shape) {
      for (const auto& vi : graph.value_info()) {
        if (vi.name() == out.name()) info = ToValueInfo(vi);
      }
    }
    info.dtype = value_types_[it->second];
    output_ids_.push_back(it->second);
    outputs_.push_back(std::move(info));
  }

  if (options.graph_fusion) {
    IM_ASSIGN_OR_RETURN(fusions_,
                        FuseGraph(nodes_, constants_, value_types_, output_ids_, pool_->threads()));
    // Constants only the fused kernels read (now packed inside them) are dropped, so
    // that weights are held once.
    std::vector<bool> read(constants_.size(), false);
    for (const auto& n : nodes_) {
      for (int id : n.inputs) {
        if (id >= 0) read[static_cast<size_t>(id)] = true;
      }
    }
    for (int id : output_ids_) read[static_cast<size_t>(id)] = true;
    for (size_t v = 0; v < constants_.size(); ++v) {
      if (!read[v]) constants_[v].reset();
    }
  }
  for (auto& n : nodes_) n.proto = nullptr;

  // Memory plan: each value is released after the last node that reads it.
  std::vector<int> last_use(value_names_.size(), -1);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    for (int id : nodes_[i].inputs) {
      if (id >= 0) last_use[id] = static_cast<int>(i);
    }
    for (int id : nodes_[i].outputs) {
      if (id >= 0 && last_use[id] < static_cast<int>(i)) last_use[id] = static_cast<int>(i);
    }
  }
  for (int id : output_ids_) last_use[id] = -1;  // graph outputs live to the end
  for (size_t v = 0; v < last_use.size(); ++v) {
    if (last_use[v] >= 0 && !constants_[v]) nodes_[last_use[v]].release.push_back(int(v));
  }
  return OkStatus();
}

Status GraphSession::CheckInput(const ValueInfo& info, const Tensor& t) const {
  if (t.dtype() != info.dtype) {
    return InvalidArgument("input '" + info.name + "' must be " + DataTypeName(info.dtype) +
                           ", got " + DataTypeName(t.dtype()));
  }
  if (!info.has_shape) return OkStatus();
  if (t.rank() != info.shape.size()) {
    return InvalidArgument("input '" + info.name + "' must have rank " +
                           std::to_string(info.shape.size()) + ", got shape " +
                           ShapeToString(t.shape()));
  }
  for (size_t i = 0; i < info.shape.size(); ++i) {
    if (info.shape[i] >= 0 && info.shape[i] != t.dim(i)) {
      return InvalidArgument("input '" + info.name + "' dimension " + std::to_string(i) +
                             " must be " + std::to_string(info.shape[i]) + ", got shape " +
                             ShapeToString(t.shape()));
    }
  }
  return OkStatus();
}

Result<std::vector<Tensor>> GraphSession::Run(
    const std::vector<std::pair<std::string, Tensor>>& inputs) const {
  std::vector<Tensor> values(value_names_.size());
  std::vector<bool> provided(inputs_.size(), false);
  for (const auto& [name, tensor] : inputs) {
    size_t k = 0;
    while (k < inputs_.size() && inputs_[k].name != name) ++k;
    if (k == inputs_.size()) {
      std::string expected;
      for (const auto& in : inputs_) expected += (expected.empty() ? "" : ", ") + in.name;
      return InvalidArgument("unknown input '" + name + "'; the model expects: " + expected);
    }
    if (!tensor.defined()) return InvalidArgument("input '" + name + "' is empty");
    IM_RETURN_IF_ERROR(CheckInput(inputs_[k], tensor));
    values[input_ids_[k]] = tensor;
    provided[k] = true;
  }
  for (size_t k = 0; k < inputs_.size(); ++k) {
    if (!provided[k]) return InvalidArgument("missing input '" + inputs_[k].name + "'");
  }

  auto alloc = [pool = buffers_](DataType d, const Shape& s) { return pool->AllocateTensor(d, s); };
  for (const PlannedNode& node : nodes_) {
    std::vector<const Tensor*> ins;
    ins.reserve(node.inputs.size());
    for (int id : node.inputs) {
      if (id < 0) {
        ins.push_back(nullptr);
      } else if (constants_[id]) {
        ins.push_back(&*constants_[id]);
      } else {
        ins.push_back(&values[id]);
      }
    }
    KernelContext ctx(std::move(ins), node.outputs.size(), alloc, pool_.get());
    Status s = node.kernel->Run(ctx);
    if (!s.ok()) {
      if (s.message().find(node.name) != std::string::npos) return s;
      return s.WithContext("node '" + node.name + "' (" + node.op_type + ")");
    }
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      int id = node.outputs[o];
      if (id < 0) continue;
      Tensor& out = ctx.outputs()[o];
      if (!out.defined() || out.dtype() != value_types_[id]) {
        return Internal("node '" + node.name + "' (" + node.op_type + ") produced " +
                        (out.defined() ? out.DebugString() : "nothing") + " for output '" +
                        value_names_[id] + "', expected " + DataTypeName(value_types_[id]));
      }
      values[id] = std::move(out);
    }
    for (int id : node.release) values[id] = Tensor();
  }

  std::vector<Tensor> outputs;
  outputs.reserve(output_ids_.size());
  for (int id : output_ids_) {
    outputs.push_back(constants_[id] ? *constants_[id] : values[id]);
  }
  return outputs;
}

Result<std::unique_ptr<onnx::ModelProto>> Session::ParseModel(std::string_view bytes) {
  auto model = std::make_unique<onnx::ModelProto>();
  google::protobuf::io::CodedInputStream stream(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                static_cast<int>(bytes.size()));
  stream.SetTotalBytesLimit(INT32_MAX);
  if (bytes.empty() || !model->ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage()) {
    return InvalidArgument("not a valid ONNX model (protobuf parse failed)");
  }
  return model;
}

Result<std::unique_ptr<Session>> Session::LoadFromProto(onnx::ModelProto& model,
                                                        const std::string& base_dir,
                                                        const SessionOptions& options,
                                                        std::shared_ptr<const void> owner) {
  auto session = std::make_unique<GraphSession>();
  IM_RETURN_IF_ERROR(session->Build(model, base_dir, options, std::move(owner)));
  return std::unique_ptr<Session>(std::move(session));
}

Result<std::unique_ptr<Session>> Session::LoadFromBytes(std::string_view bytes,
                                                        const std::string& base_dir,
                                                        const SessionOptions& options) {
  IM_ASSIGN_OR_RETURN(auto model, ParseModel(bytes));
  return LoadFromProto(*model, base_dir, options);
}

std::string_view PrecisionName(Precision p) {
  switch (p) {
    case Precision::kBf16:
      return "bf16";
    case Precision::kInt8:
      return "int8";
    case Precision::kFp32:
      break;
  }
  return "fp32";
}

Result<Precision> ParsePrecision(std::string_view name) {
  if (name == "fp32" || name == "float32") return Precision::kFp32;
  if (name == "bf16" || name == "bfloat16") return Precision::kBf16;
  if (name == "int8") return Precision::kInt8;
  return InvalidArgument("unknown precision '" + std::string(name) +
                         "' (expected fp32, bf16 or int8)");
}

Status ReadRuntimeConfig(const Config& config, SessionOptions* options) {
  IM_ASSIGN_OR_RETURN(int64_t threads, config.GetInt("runtime.intra_op_threads"));
  if (threads < 0 || threads > 1024) {
    return InvalidArgument("runtime.intra_op_threads must be 0..1024, got " +
                           std::to_string(threads));
  }
  options->intra_op_threads = static_cast<int>(threads);
  IM_ASSIGN_OR_RETURN(options->max_model_bytes, config.GetBytes("runtime.max_model_bytes"));
  IM_ASSIGN_OR_RETURN(std::string precision, config.GetString("runtime.precision"));
  if (!precision.empty()) {
    auto p = ParsePrecision(precision);
    if (!p.ok()) return p.status().WithContext("runtime.precision");
    options->precision = *p;
  }
  IM_ASSIGN_OR_RETURN(options->fused_encoder, config.GetBool("runtime.fused_encoder"));
  IM_ASSIGN_OR_RETURN(options->graph_fusion, config.GetBool("runtime.graph_fusion"));
  return OkStatus();
}

Result<std::unique_ptr<onnx::ModelProto>> Session::ReadModel(const std::string& path,
                                                             const SessionOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFound("model file '" + path + "' does not exist");
  }
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return NotFound("cannot stat model file '" + path + "': " + ec.message());
  const auto limit = static_cast<uintmax_t>(
      std::min<int64_t>(options.max_model_bytes, static_cast<int64_t>(INT32_MAX)));
  if (size > limit) {
    return ResourceExhausted("model file '" + path + "' has " + std::to_string(size) +
                             " bytes, over the limit of " + std::to_string(limit) +
                             " (runtime.max_model_bytes; larger weights need external data)");
  }
  // The file is mapped, not read into a buffer: parsing copies every weight into the
  // model anyway, and a read buffer would be one more zero-filled copy of the whole
  // file (for bge-small, a third of the load time).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("cannot open model file '" + path + "'");
  if (size == 0) {
    ::close(fd);
    return ParseModel(std::string_view()).status().WithContext(path);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return DataLoss("cannot map model file '" + path + "'");
  auto model = ParseModel(std::string_view(static_cast<const char*>(map), size));
  ::munmap(map, size);
  if (!model.ok()) return model.status().WithContext(path);
  return model;
}

Result<std::unique_ptr<Session>> Session::Load(const std::string& path,
                                               const SessionOptions& options) {
  IM_ASSIGN_OR_RETURN(auto model, ReadModel(path, options));
  auto s = LoadFromProto(*model, std::filesystem::path(path).parent_path().string(), options);
  if (!s.ok()) return s.status().WithContext(path);
  return s;
}

}  // namespace infermesh::runtime
