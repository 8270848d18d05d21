// ModelRegistry: the models one worker serves, loaded from a model repository.
//
//   models/
//     bge-small/      a Hugging Face–layout directory → a text (embedding) model
//     mlp.onnx        a plain ONNX file               → a tensor model
//
//   ModelRegistry registry = ModelRegistry::LoadRepository("models", options);
//   const ModelEntry* m = registry.Find("bge-small");
//
// A model that fails to load is kept with its error (reported at /info and in the
// logs); the others are served. Each model has a name (folder or file stem) and a
// version ("1": one version per name for now). Loading and warming happen before the
// registry is returned, so a worker is ready exactly when its registry exists.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace infermesh::worker {

enum class ModelKind { kText, kTensor };

struct ModelEntry {
  std::string name;
  std::string version = "1";
  std::string path;
  ModelKind kind = ModelKind::kTensor;
  Status status;  // OK when loaded and warmed
  double load_seconds = 0;
  std::unique_ptr<runtime::EmbeddingModel> text;  // kText
  std::unique_ptr<runtime::Session> session;      // kTensor
  // kTensor models with one float32 input [batch, F] and a float32 output whose
  // first dimension is the batch can serve /infer: F here, 0 otherwise.
  int64_t feature_size = 0;

  bool ok() const { return status.ok(); }
  // The declared graph inputs and outputs (the text model's or the tensor model's);
  // empty when the model failed to load.
  const std::vector<runtime::ValueInfo>& graph_inputs() const {
    static const std::vector<runtime::ValueInfo> kNone;
    return text ? text->graph_inputs() : session ? session->inputs() : kNone;
  }
  const std::vector<runtime::ValueInfo>& graph_outputs() const {
    static const std::vector<runtime::ValueInfo> kNone;
    return text ? text->graph_outputs() : session ? session->outputs() : kNone;
  }
};

class ModelRegistry {
 public:
  // Loads every model in `dir` (sorted by name). An unreadable `dir` is an error;
  // a model that fails is recorded, not fatal.
  static Result<ModelRegistry> LoadRepository(const std::string& dir,
                                              const runtime::SessionOptions& options);

  const ModelEntry* Find(const std::string& name) const;  // loaded or failed
  // The first loaded model of each kind, or the named default.
  const ModelEntry* DefaultText() const;
  const ModelEntry* DefaultTensor() const;
  const std::vector<std::unique_ptr<ModelEntry>>& models() const { return models_; }
  size_t loaded_count() const;

 private:
  std::vector<std::unique_ptr<ModelEntry>> models_;
};

}  // namespace infermesh::worker
