// FusedEncoder: a BERT-family transformer encoder lifted out of its ONNX graph and run
// as a handful of fused kernels over packed sequences.
//
//   ONNX graph ──ExtractEncoderWeights──▶ EncoderWeights ──FusedEncoder::Create──▶ encoder
//
// Per layer it runs four oneDNN matmuls on pre-packed weights (Q, K and V as one; the
// attention output with the residual added in the matmul; the first feed-forward with
// GELU; the second with the residual), one attention kernel over variable-length
// sequences, and two LayerNorms. Sequences are packed back to back without padding.
//
// The graph is only read for its weights: which layer is which comes from the order
// of LayerNorms and weight MatMuls. EmbeddingModel therefore checks the result against
// the ONNX graph on a probe input before it uses this path (see VerifyAgainstGraph in
// model.cc), and runs the graph itself when the two disagree.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/encoder/kernels.h"
#include "runtime/session.h"

namespace onnx {
class ModelProto;
}

namespace infermesh::runtime::encoder {

enum class Activation { kGeluErf, kGeluTanh };

struct LayerNormWeights {
  std::vector<float> gamma, beta;
  float eps = 1e-12f;
};

struct EncoderLayerWeights {
  // Query, key and value projections, as extracted: one [H, 3H] matrix, or three
  // [H, H] ones (order as in the graph).
  std::vector<std::vector<float>> qkv_w, qkv_b;
  std::vector<float> out_w, out_b;  // [H, H]
  LayerNormWeights ln1;
  std::vector<float> ffn1_w, ffn1_b;  // [H, F]
  std::vector<float> ffn2_w, ffn2_b;  // [F, H]
  LayerNormWeights ln2;
};

struct EncoderWeights {
  int64_t hidden = 0, ffn = 0, vocab = 0, max_positions = 0, type_vocab = 0;
  std::vector<float> word, position, type;  // [vocab,H], [max_positions,H], [type_vocab,H]
  LayerNormWeights embedding_ln;
  std::vector<EncoderLayerWeights> layers;
  Activation activation = Activation::kGeluErf;
  // MPNet's relative position bias, shared by every layer (empty for BERT/RoBERTa):
  // rel_bias[k * rel_heads + h] is bucket k's bias for head h, and rel_bucket[d +
  // rel_max] the bucket of key position minus query position d, |d| <= rel_max, as
  // the graph itself computes it.
  std::vector<float> rel_bias;
  int64_t rel_buckets = 0, rel_heads = 0, rel_max = 0;
  std::vector<int64_t> rel_bucket;
};

// Reads a post-LayerNorm BERT-style encoder from the graph feeding the model's first
// output. Unimplemented (with the reason) for anything else.
// With an `owner` keeping `model` alive, weights are read from it without an
// intermediate copy.
Result<EncoderWeights> ExtractEncoderWeights(const onnx::ModelProto& model,
                                             const std::string& base_dir,
                                             std::shared_ptr<const void> owner = {});

struct FusedEncoderOptions {
  int heads = 0;
  int64_t position_offset = 0;  // position id of a sequence's first token
  // The order of three separate Q/K/V projections: qkv_order[i] is the index of
  // the extracted matrix used as Q (i=0), K (1) and V (2).
  std::array<int, 3> qkv_order = {0, 1, 2};
  Precision precision = Precision::kFp32;
  int threads = 0;  // 0 = all cores
};

// A batch of packed sequences: the tokens of sequence b are ids[cu[b]..cu[b+1]).
struct PackedBatch {
  std::vector<int64_t> ids;
  std::vector<int64_t> type_ids;  // empty = all zero
  std::vector<int64_t> cu;        // batch + 1 offsets, cu[0] = 0
  // The token rows whose final hidden state the caller reads (CLS or last-token
  // pooling reads one row per sequence). Empty = all of them. When set, the last
  // layer runs its attention output, feed-forward and LayerNorms on these rows only
  // (its keys and values still cover every token), and the other rows handed to
  // `consume` hold unspecified values.
  std::vector<int64_t> needed_rows;
};

class FusedEncoder {
 public:
  ~FusedEncoder();
  static Result<std::unique_ptr<FusedEncoder>> Create(const EncoderWeights& weights,
                                                      const FusedEncoderOptions& options);

  // Runs the encoder and hands the final hidden states ([T, hidden], row t for token
  // t) to `consume` before returning. Thread-safe; steady-state calls allocate nothing
  // but small bookkeeping.
  Status Run(const PackedBatch& batch,
             const std::function<void(const float* hidden)>& consume) const;

  int64_t hidden() const { return hidden_; }
  int64_t max_positions() const { return max_positions_; }
  Precision precision() const { return options_.precision; }
  const FusedEncoderOptions& options() const { return options_; }
  // Bytes of weights this encoder holds (packed matrices, embeddings, norms, biases).
  size_t weight_bytes() const { return weight_bytes_; }

 private:
  struct Impl;
  FusedEncoder() = default;
  FusedEncoderOptions options_;
  int64_t hidden_ = 0;
  int64_t max_positions_ = 0;
  size_t weight_bytes_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infermesh::runtime::encoder
