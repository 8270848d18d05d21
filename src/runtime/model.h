// EmbeddingModel: a Hugging Face–layout model directory turned into embeddings
// (tokenizer + session + pooling + normalization).
//
//   IM_ASSIGN_OR_RETURN(auto model, EmbeddingModel::Load("/models/bge-small-en-v1.5"));
//   IM_ASSIGN_OR_RETURN(auto vecs, model->Embed({"hello", "world"}, {}));
//
// Directory layout: model.onnx or onnx/model.onnx; tokenizer.json (or vocab.txt);
// config.json (max_position_embeddings, model_type); 1_Pooling/config.json (cls,
// mean or last token; cls when absent); modules.json (a Normalize module turns
// normalization on by default).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/session.h"
#include "runtime/tensor.h"
#include "runtime/tokenizer.h"

namespace infermesh::runtime::encoder {
class FusedEncoder;
}

namespace infermesh::runtime {

enum class Pooling { kCls, kMean, kLastToken };
std::string PoolingName(Pooling p);

struct EmbedOptions {
  // Unset: the model's default (modules.json).
  std::optional<bool> normalize;
  // Inputs longer than the model's maximum are truncated when true; an error
  // (OutOfRange) names the input otherwise.
  bool truncate = true;
  TruncationSide side = TruncationSide::kRight;
};

class EmbeddingModel {
 public:
  static Result<std::unique_ptr<EmbeddingModel>> Load(const std::string& dir,
                                                      const SessionOptions& options = {});

  // Tokenizes with the model's maximum length (truncating or failing per options).
  Result<Encoding> Tokenize(std::string_view text, const EmbedOptions& options) const;
  // Runs one padded batch and pools: returns [encodings.size(), dim] float32.
  Result<Tensor> EmbedEncodings(const std::vector<Encoding>& encodings, bool normalize) const;
  // Convenience: tokenize + embed, one row per text.
  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts,
                                                const EmbedOptions& options) const;

  int64_t dim() const { return dim_; }
  size_t max_length() const { return max_length_; }
  Pooling pooling() const { return pooling_; }
  bool normalize_by_default() const { return normalize_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The ONNX graph's session; null once the fused encoder has taken over (its weights
  // are released then, so the model holds them once).
  const Session* session() const { return session_.get(); }
  // The graph's declared inputs and outputs (kept when the graph itself is released).
  const std::vector<ValueInfo>& graph_inputs() const { return graph_inputs_; }
  const std::vector<ValueInfo>& graph_outputs() const { return graph_outputs_; }
  // Bytes of weights this model holds, on whichever path it runs.
  size_t weight_bytes() const;
  // The fused encoder path, when this model uses it (null: the generic graph runs).
  const encoder::FusedEncoder* fused_encoder() const { return encoder_.get(); }
  // The precision actually in use ("fp32" or "bf16").
  Precision precision() const { return precision_; }
  // Final hidden states through the generic graph: [batch, longest, hidden], padded.
  Result<Tensor> RunGraph(const std::vector<Encoding>& encodings) const;

  ~EmbeddingModel();

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Session> session_;
  std::vector<ValueInfo> graph_inputs_, graph_outputs_;
  std::unique_ptr<encoder::FusedEncoder> encoder_;
  Precision precision_ = Precision::kFp32;
  Pooling pooling_ = Pooling::kCls;
  bool normalize_ = false;
  size_t max_length_ = 512;
  int64_t dim_ = 0;
  bool wants_token_type_ids_ = false;
  bool wants_position_ids_ = false;

  Status TryFusedEncoder(const std::shared_ptr<onnx::ModelProto>& proto,
                         const std::string& base_dir, const SessionOptions& options, int heads_hint,
                         bool roberta_positions);
  Result<Tensor> EmbedFused(const std::vector<Encoding>& encodings, bool normalize) const;
  Result<Tensor> Pool(const Tensor& hidden, const std::vector<Encoding>& encodings) const;
};

// L2-normalizes each row of a [n, d] float32 tensor in place.
void NormalizeRows(Tensor& t);

}  // namespace infermesh::runtime
