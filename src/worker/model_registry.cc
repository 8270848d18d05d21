#include "worker/model_registry.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/log.h"

namespace infermesh::worker {
namespace {

namespace fs = std::filesystem;

// Runs one small input through the model so that first requests do not pay for
// lazy initialisation (oneDNN kernels, buffer pool growth).
Status Warm(ModelEntry& m) {
  if (m.kind == ModelKind::kText) {
    IM_ASSIGN_OR_RETURN(runtime::Encoding e, m.text->Tokenize("warm up", {}));
    IM_ASSIGN_OR_RETURN(runtime::Tensor t, m.text->EmbedEncodings({e, e}, true));
    (void)t;
    return OkStatus();
  }
  std::vector<std::pair<std::string, runtime::Tensor>> feeds;
  for (const auto& in : m.session->inputs()) {
    runtime::Shape shape;
    for (int64_t d : in.shape) shape.push_back(d < 0 ? 1 : d);
    feeds.emplace_back(in.name, runtime::Tensor::Empty(in.dtype, shape));
  }
  IM_ASSIGN_OR_RETURN(auto out, m.session->Run(feeds));
  (void)out;
  return OkStatus();
}

void Describe(ModelEntry& m) {
  if (m.kind != ModelKind::kTensor) return;
  const auto& ins = m.session->inputs();
  const auto& outs = m.session->outputs();
  if (ins.size() == 1 && ins[0].dtype == runtime::DataType::kFloat32 && ins[0].has_shape &&
      ins[0].shape.size() == 2 && ins[0].shape[1] > 0 && !outs.empty() &&
      outs[0].dtype == runtime::DataType::kFloat32) {
    m.feature_size = ins[0].shape[1];
  }
}

// A folder that is itself a Hugging Face–layout model (a tokenizer or a config.json at
// its top), not a repository of models: a repository holds model folders and .onnx files.
bool IsModelFolder(const std::string& dir) {
  std::error_code ec;
  for (const char* f : {"tokenizer.json", "vocab.txt", "config.json"}) {
    if (fs::is_regular_file(fs::path(dir) / f, ec)) return true;
  }
  return false;
}

// The folder's own name ("bge-small-en-v1.5"), also for "dir/" and ".".
std::string ModelNameOf(const fs::path& p) {
  std::error_code ec;
  std::string s = fs::absolute(p, ec).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  const std::string name = fs::path(s).filename().string();
  return name.empty() ? "model" : name;
}

}  // namespace

Result<ModelRegistry> ModelRegistry::LoadRepository(const std::string& dir,
                                                    const runtime::SessionOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return NotFound("model repository '" + dir + "' is not a directory");
  std::vector<fs::path> paths;
  // One model folder, as TEI's --model-id takes it: the repository is that one model.
  const bool single = IsModelFolder(dir);
  if (single) paths.push_back(fs::path(dir));
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (single) break;
    const auto name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (e.is_directory() || (e.is_regular_file() && e.path().extension() == ".onnx")) {
      paths.push_back(e.path());
    }
  }
  if (ec) return NotFound("cannot list model repository '" + dir + "': " + ec.message());
  std::sort(paths.begin(), paths.end());

  ModelRegistry registry;
  for (const auto& p : paths) {
    auto m = std::make_unique<ModelEntry>();
    m->path = p.string();
    const auto start = std::chrono::steady_clock::now();
    if (fs::is_directory(p)) {
      m->name = ModelNameOf(p);
      m->kind = ModelKind::kText;
      auto loaded = runtime::EmbeddingModel::Load(m->path, options);
      if (loaded.ok()) {
        m->text = std::move(loaded).value();
      } else {
        m->status = loaded.status();
      }
    } else {
      m->name = p.stem().string();
      m->kind = ModelKind::kTensor;
      auto loaded = runtime::Session::Load(m->path, options);
      if (loaded.ok()) {
        m->session = std::move(loaded).value();
        Describe(*m);
      } else {
        m->status = loaded.status();
      }
    }
    if (m->status.ok()) m->status = Warm(*m).WithContext("warm-up");
    m->load_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (m->status.ok()) {
      log::Info("model loaded", {{"model", m->name},
                                 {"kind", m->kind == ModelKind::kText ? "text" : "tensor"},
                                 {"seconds", m->load_seconds}});
    } else {
      log::Error("model failed to load",
                 {{"model", m->name}, {"path", m->path}, {"error", m->status.ToString()}});
    }
    registry.models_.push_back(std::move(m));
  }
  return registry;
}

const ModelEntry* ModelRegistry::Find(const std::string& name) const {
  for (const auto& m : models_) {
    if (m->name == name) return m.get();
  }
  return nullptr;
}

const ModelEntry* ModelRegistry::DefaultText() const {
  for (const auto& m : models_) {
    if (m->ok() && m->kind == ModelKind::kText) return m.get();
  }
  return nullptr;
}

const ModelEntry* ModelRegistry::DefaultTensor() const {
  for (const auto& m : models_) {
    if (m->ok() && m->kind == ModelKind::kTensor && m->feature_size > 0) return m.get();
  }
  return nullptr;
}

size_t ModelRegistry::loaded_count() const {
  return static_cast<size_t>(
      std::count_if(models_.begin(), models_.end(), [](const auto& m) { return m->ok(); }));
}

}  // namespace infermesh::worker
