#include "runtime/model.h"

#include <onnx/onnx_pb.h>

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/log.h"
#include "runtime/encoder/fused_encoder.h"

namespace infermesh::runtime {
namespace {

namespace fs = std::filesystem;

Result<boost::json::value> ReadJson(const fs::path& path) {
  std::ifstream f(path);
  if (!f) return NotFound("cannot read " + path.string());
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec) return InvalidArgument(path.string() + " is not valid JSON: " + ec.message());
  return v;
}

bool JsonBool(const boost::json::object& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_bool() && it->value().as_bool();
}

}  // namespace

std::string PoolingName(Pooling p) {
  switch (p) {
    case Pooling::kCls:
      return "cls";
    case Pooling::kMean:
      return "mean";
    case Pooling::kLastToken:
      return "last_token";
  }
  return "cls";
}

void NormalizeRows(Tensor& t) {
  int64_t n = t.dim(0), d = t.dim(1);
  float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < d; ++j) sum += double(p[i * d + j]) * p[i * d + j];
    double norm = std::sqrt(sum);
    if (norm < 1e-12) continue;
    float inv = static_cast<float>(1.0 / norm);
    for (int64_t j = 0; j < d; ++j) p[i * d + j] *= inv;
  }
}

Result<std::unique_ptr<EmbeddingModel>> EmbeddingModel::Load(const std::string& dir,
                                                             const SessionOptions& options) {
  fs::path root(dir);
  if (!fs::is_directory(root)) return NotFound("model directory '" + dir + "' does not exist");
  auto model = std::unique_ptr<EmbeddingModel>(new EmbeddingModel());

  fs::path onnx_path = root / "model.onnx";
  if (!fs::exists(onnx_path)) onnx_path = root / "onnx" / "model.onnx";
  if (!fs::exists(onnx_path)) {
    return NotFound("no model.onnx or onnx/model.onnx in '" + dir + "'");
  }

  if (fs::exists(root / "tokenizer.json")) {
    IM_ASSIGN_OR_RETURN(model->tokenizer_,
                        Tokenizer::FromJsonFile((root / "tokenizer.json").string()));
  } else if (fs::exists(root / "vocab.txt")) {
    bool lowercase = true;
    if (fs::exists(root / "tokenizer_config.json")) {
      IM_ASSIGN_OR_RETURN(auto cfg, ReadJson(root / "tokenizer_config.json"));
      if (cfg.is_object()) {
        auto it = cfg.as_object().find("do_lower_case");
        if (it != cfg.as_object().end() && it->value().is_bool()) lowercase = it->value().as_bool();
      }
    }
    IM_ASSIGN_OR_RETURN(model->tokenizer_,
                        Tokenizer::FromVocabTxt((root / "vocab.txt").string(), lowercase));
  } else {
    return NotFound("no tokenizer.json or vocab.txt in '" + dir + "'");
  }

  int heads_hint = 0;
  bool roberta_positions = false;
  if (fs::exists(root / "config.json")) {
    IM_ASSIGN_OR_RETURN(auto cfg, ReadJson(root / "config.json"));
    if (cfg.is_object()) {
      const auto& o = cfg.as_object();
      auto heads = o.find("num_attention_heads");
      if (heads != o.end() && heads->value().is_int64()) {
        heads_hint = static_cast<int>(heads->value().as_int64());
      }
      auto it = o.find("max_position_embeddings");
      if (it != o.end() && it->value().is_int64()) {
        int64_t m = it->value().as_int64();
        // RoBERTa-family (and MPNet) position ids start after the padding index.
        auto type = o.find("model_type");
        if (type != o.end() && type->value().is_string()) {
          std::string t(type->value().as_string());
          if (t == "roberta" || t == "xlm-roberta" || t == "camembert" || t == "mpnet") {
            m -= 2;
            roberta_positions = true;
          }
        }
        if (m > 0) model->max_length_ = static_cast<size_t>(m);
      }
    }
  }
  if (fs::exists(root / "1_Pooling" / "config.json")) {
    IM_ASSIGN_OR_RETURN(auto cfg, ReadJson(root / "1_Pooling" / "config.json"));
    if (cfg.is_object()) {
      const auto& o = cfg.as_object();
      if (JsonBool(o, "pooling_mode_mean_tokens")) model->pooling_ = Pooling::kMean;
      if (JsonBool(o, "pooling_mode_lasttoken")) model->pooling_ = Pooling::kLastToken;
      if (JsonBool(o, "pooling_mode_cls_token")) model->pooling_ = Pooling::kCls;
    }
  }
  if (fs::exists(root / "modules.json")) {
    IM_ASSIGN_OR_RETURN(auto mods, ReadJson(root / "modules.json"));
    if (mods.is_array()) {
      for (const auto& m : mods.as_array()) {
        if (!m.is_object()) continue;
        auto it = m.as_object().find("type");
        if (it != m.as_object().end() && it->value().is_string() &&
            std::string(it->value().as_string()).find("Normalize") != std::string::npos) {
          model->normalize_ = true;
        }
      }
    }
  }

  // The file is read and parsed once: the session is built from the parsed model, and
  // the fused encoder (below) reads its weights from the same one.
  std::shared_ptr<onnx::ModelProto> proto;
  {
    IM_ASSIGN_OR_RETURN(auto read, Session::ReadModel(onnx_path.string(), options));
    proto = std::move(read);
  }
  {
    // While the fused encoder may still take over, the graph is built without its
    // fusions: it only serves the load-time check, and packing its weights would be
    // wasted work (it is rebuilt with them if the fused encoder is refused).
    // It also reads the weights in place from the parsed file, without a copy: it
    // lives no longer than the file does.
    SessionOptions first = options;
    std::shared_ptr<const void> owner;
    if (options.fused_encoder) {
      first.graph_fusion = false;
      owner = proto;
    }
    auto session = Session::LoadFromProto(*proto, onnx_path.parent_path().string(), first, owner);
    if (!session.ok()) return session.status().WithContext(onnx_path.string());
    model->session_ = std::move(session).value();
  }
  model->graph_inputs_ = model->session_->inputs();
  model->graph_outputs_ = model->session_->outputs();
  bool has_ids = false;
  for (const auto& in : model->session_->inputs()) {
    if (in.name == "input_ids") {
      has_ids = true;
    } else if (in.name == "token_type_ids") {
      model->wants_token_type_ids_ = true;
    } else if (in.name == "position_ids") {
      model->wants_position_ids_ = true;
    } else if (in.name != "attention_mask") {
      return Unimplemented("model input '" + in.name +
                           "' is not one of input_ids, attention_mask, token_type_ids, "
                           "position_ids");
    }
    if (in.dtype != DataType::kInt64 && in.dtype != DataType::kInt32) {
      return Unimplemented("model input '" + in.name + "' must be int64 or int32");
    }
  }
  if (!has_ids) return Unimplemented("model has no 'input_ids' input");
  const auto& out = model->session_->outputs().at(0);
  if (out.dtype != DataType::kFloat32) return Unimplemented("model output must be float32");
  if (!out.shape.empty() && out.shape.back() > 0) model->dim_ = out.shape.back();
  if (model->dim_ == 0) {
    // Dynamic hidden size in the declaration: run one tiny input to learn it.
    IM_ASSIGN_OR_RETURN(Encoding e, model->Tokenize("", {}));
    IM_ASSIGN_OR_RETURN(Tensor t, model->EmbedEncodings({e}, false));
    model->dim_ = t.dim(1);
  }

  // The precision: the caller's, else the model directory's infermesh.json.
  SessionOptions opts = options;
  if (!opts.precision && fs::exists(root / "infermesh.json")) {
    IM_ASSIGN_OR_RETURN(auto cfg, ReadJson(root / "infermesh.json"));
    if (cfg.is_object()) {
      auto it = cfg.as_object().find("precision");
      if (it != cfg.as_object().end()) {
        if (!it->value().is_string()) {
          return InvalidArgument((root / "infermesh.json").string() +
                                 ": \"precision\" must be a string");
        }
        auto p = ParsePrecision(std::string(it->value().as_string()));
        if (!p.ok()) return p.status().WithContext((root / "infermesh.json").string());
        opts.precision = *p;
      }
    }
  }
  if (opts.fused_encoder) {
    Status st = model->TryFusedEncoder(proto, onnx_path.parent_path().string(), opts, heads_hint,
                                       roberta_positions);
    if (!st.ok()) {
      log::Info("fused encoder not used; running the ONNX graph",
                {{"model", dir}, {"reason", st.ToString()}});
      if (options.graph_fusion) {
        auto fused = Session::LoadFromProto(*proto, onnx_path.parent_path().string(), options);
        if (!fused.ok()) return fused.status().WithContext(onnx_path.string());
        model->session_ = std::move(fused).value();
      }
    } else {
      model->session_.reset();  // the graph's weights: the encoder holds its own
    }
    proto.reset();
  }
  if (opts.precision.value_or(Precision::kFp32) != model->precision_) {
    log::Warn("requested precision not available; running float32",
              {{"model", dir}, {"requested", std::string(PrecisionName(*opts.precision))}});
  }
  return model;
}

EmbeddingModel::~EmbeddingModel() = default;

namespace {

// Largest difference between the fused encoder and the graph on real tokens, relative
// to the graph's largest magnitude.
Result<double> CompareWithGraph(const encoder::FusedEncoder& enc, const Tensor& graph_hidden,
                                const std::vector<Encoding>& probe) {
  encoder::PackedBatch pb;
  pb.cu.push_back(0);
  for (const auto& e : probe) {
    pb.ids.insert(pb.ids.end(), e.ids.begin(), e.ids.end());
    pb.cu.push_back(static_cast<int64_t>(pb.ids.size()));
  }
  const int64_t seq = graph_hidden.dim(1), d = graph_hidden.dim(2);
  double max_err = 0, max_ref = 0;
  IM_RETURN_IF_ERROR(enc.Run(pb, [&](const float* x) {
    for (size_t b = 0; b < probe.size(); ++b) {
      const float* ref = graph_hidden.data<float>() + static_cast<int64_t>(b) * seq * d;
      const float* got = x + pb.cu[b] * d;
      for (int64_t i = 0; i < (pb.cu[b + 1] - pb.cu[b]) * d; ++i) {
        max_err = std::max(max_err, static_cast<double>(std::fabs(ref[i] - got[i])));
        max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[i])));
      }
    }
  }));
  if (!std::isfinite(max_err)) return std::numeric_limits<double>::infinity();
  return max_err / std::max(max_ref, 1e-6);
}

}  // namespace

Status EmbeddingModel::TryFusedEncoder(const std::shared_ptr<onnx::ModelProto>& proto,
                                       const std::string& base_dir, const SessionOptions& options,
                                       int heads_hint, bool roberta_positions) {
  if (session_->outputs().at(0).shape.size() != 3) {
    return Unimplemented("the first output is not [batch, sequence, hidden]");
  }
  if (wants_position_ids_) return Unimplemented("the model takes position_ids");
  IM_ASSIGN_OR_RETURN(encoder::EncoderWeights w,
                      encoder::ExtractEncoderWeights(*proto, base_dir, proto));
  if (!w.type.empty() && !wants_token_type_ids_) {
    return Unimplemented("a token-type table without a token_type_ids input");
  }

  // A probe batch of two sequences, checked against the graph.
  std::vector<Encoding> probe(2);
  const int64_t lens[2] = {std::min<int64_t>(11, static_cast<int64_t>(max_length_)),
                           std::min<int64_t>(4, static_cast<int64_t>(max_length_))};
  for (int b = 0; b < 2; ++b) {
    for (int64_t i = 0; i < lens[b]; ++i) {
      probe[b].ids.push_back((1000 + 7919 * (i + 13 * b)) % w.vocab);
      probe[b].type_ids.push_back(0);
      probe[b].attention_mask.push_back(1);
    }
  }
  IM_ASSIGN_OR_RETURN(Tensor graph_hidden, RunGraph(probe));
  if (graph_hidden.rank() != 3 || graph_hidden.dim(2) != w.hidden) {
    return Unimplemented("graph output does not match the hidden size");
  }

  std::vector<int> heads;
  if (heads_hint > 0) heads.push_back(heads_hint);
  for (int hd : {64, 32, 128, 96, 80, 48, 16}) {
    if (w.hidden % hd == 0 && static_cast<int>(w.hidden / hd) != heads_hint) {
      heads.push_back(static_cast<int>(w.hidden / hd));
    }
  }
  std::vector<int64_t> offsets =
      roberta_positions ? std::vector<int64_t>{2, 0} : std::vector<int64_t>{0, 2};
  std::vector<std::array<int, 3>> orders = {{0, 1, 2}};
  if (w.layers.at(0).qkv_w.size() == 3) {
    orders = {{0, 1, 2}, {1, 0, 2}, {0, 2, 1}, {2, 0, 1}, {1, 2, 0}, {2, 1, 0}};
  }
  encoder::FusedEncoderOptions eo;
  eo.threads = options.intra_op_threads;
  constexpr double kMaxRelativeError = 1e-4;
  double best = std::numeric_limits<double>::infinity();
  std::unique_ptr<encoder::FusedEncoder> fp32;
  for (int h : heads) {
    for (int64_t off : offsets) {
      for (const auto& order : orders) {
        eo.heads = h;
        eo.position_offset = off;
        eo.qkv_order = order;
        auto enc = encoder::FusedEncoder::Create(w, eo);
        if (!enc.ok()) continue;
        auto err = CompareWithGraph(**enc, graph_hidden, probe);
        if (!err.ok()) continue;
        best = std::min(best, *err);
        if (*err <= kMaxRelativeError) {
          fp32 = std::move(enc).value();
          break;
        }
      }
      if (fp32) break;
    }
    if (fp32) break;
  }
  if (!fp32) {
    return Unimplemented("fused encoder disagrees with the graph (relative error " +
                         std::to_string(best) + ")");
  }
  const Precision wanted = options.precision.value_or(Precision::kFp32);
  if (wanted != Precision::kFp32) {
    eo = fp32->options();
    eo.precision = wanted;
    auto reduced = encoder::FusedEncoder::Create(w, eo);
    if (reduced.ok()) {
      encoder_ = std::move(reduced).value();
      precision_ = wanted;
      return OkStatus();
    }
    log::Warn("reduced precision not available for this model",
              {{"precision", std::string(PrecisionName(wanted))},
               {"reason", reduced.status().ToString()}});
  }
  encoder_ = std::move(fp32);
  return OkStatus();
}

Result<Encoding> EmbeddingModel::Tokenize(std::string_view text,
                                          const EmbedOptions& options) const {
  EncodeOptions eo;
  eo.side = options.side;
  eo.max_length = options.truncate ? max_length_ : 0;
  IM_ASSIGN_OR_RETURN(Encoding e, tokenizer_->Encode(text, eo));
  if (e.ids.size() > max_length_) {
    return OutOfRange("input has " + std::to_string(e.ids.size()) +
                      " tokens, more than the model's maximum of " + std::to_string(max_length_));
  }
  return e;
}

size_t EmbeddingModel::weight_bytes() const {
  if (encoder_) return encoder_->weight_bytes();
  return session_ ? session_->weight_bytes() : 0;
}

Result<Tensor> EmbeddingModel::EmbedEncodings(const std::vector<Encoding>& encodings,
                                              bool normalize) const {
  if (encodings.empty()) return InvalidArgument("empty batch");
  if (encoder_) return EmbedFused(encodings, normalize);
  IM_ASSIGN_OR_RETURN(Tensor hidden, RunGraph(encodings));
  IM_ASSIGN_OR_RETURN(Tensor pooled, Pool(hidden, encodings));
  if (normalize) NormalizeRows(pooled);
  return pooled;
}

Result<Tensor> EmbeddingModel::EmbedFused(const std::vector<Encoding>& encodings,
                                          bool normalize) const {
  encoder::PackedBatch pb;
  pb.cu.reserve(encodings.size() + 1);
  pb.cu.push_back(0);
  bool types = false;
  for (const auto& e : encodings) {
    if (e.ids.empty()) return InvalidArgument("an input tokenized to zero tokens");
    pb.ids.insert(pb.ids.end(), e.ids.begin(), e.ids.end());
    pb.cu.push_back(static_cast<int64_t>(pb.ids.size()));
    for (int64_t t : e.type_ids) types = types || t != 0;
  }
  if (types && wants_token_type_ids_) {
    pb.type_ids.reserve(pb.ids.size());
    for (const auto& e : encodings) {
      for (size_t i = 0; i < e.ids.size(); ++i) {
        pb.type_ids.push_back(i < e.type_ids.size() ? e.type_ids[i] : 0);
      }
    }
  }
  const int64_t batch = static_cast<int64_t>(encodings.size());
  // CLS and last-token pooling read one row per sequence: the last layer need not
  // compute the others.
  if (pooling_ == Pooling::kCls || pooling_ == Pooling::kLastToken) {
    pb.needed_rows.reserve(encodings.size());
    for (int64_t b = 0; b < batch; ++b) {
      pb.needed_rows.push_back(pooling_ == Pooling::kCls ? pb.cu[b] : pb.cu[b + 1] - 1);
    }
  }
  const int64_t d = encoder_->hidden();
  Tensor pooled = Tensor::Empty(DataType::kFloat32, {batch, d});
  float* p = pooled.data<float>();
  IM_RETURN_IF_ERROR(encoder_->Run(pb, [&](const float* x) {
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t begin = pb.cu[b], end = pb.cu[b + 1];
      if (pooling_ == Pooling::kCls) {
        std::copy(x + begin * d, x + (begin + 1) * d, p + b * d);
      } else if (pooling_ == Pooling::kLastToken) {
        std::copy(x + (end - 1) * d, x + end * d, p + b * d);
      } else {
        float* out = p + b * d;
        std::fill(out, out + d, 0.0f);
        for (int64_t t = begin; t < end; ++t) {
          for (int64_t j = 0; j < d; ++j) out[j] += x[t * d + j];
        }
        const float inv = 1.0f / static_cast<float>(end - begin);
        for (int64_t j = 0; j < d; ++j) out[j] *= inv;
      }
    }
  }));
  if (normalize) NormalizeRows(pooled);
  return pooled;
}

Result<Tensor> EmbeddingModel::RunGraph(const std::vector<Encoding>& encodings) const {
  if (encodings.empty()) return InvalidArgument("empty batch");
  if (!session_) {
    return FailedPrecondition("the ONNX graph was released; this model runs the fused encoder");
  }
  const int64_t batch = static_cast<int64_t>(encodings.size());
  int64_t seq = 0;
  for (const auto& e : encodings) seq = std::max<int64_t>(seq, static_cast<int64_t>(e.ids.size()));
  if (seq == 0) return InvalidArgument("every input tokenized to zero tokens");

  auto make = [&](auto fill) {
    Tensor t = Tensor::Empty(DataType::kInt64, {batch, seq});
    int64_t* p = t.data<int64_t>();
    for (int64_t b = 0; b < batch; ++b) {
      const auto& e = encodings[b];
      for (int64_t s = 0; s < seq; ++s) p[b * seq + s] = fill(e, s);
    }
    return t;
  };
  const int64_t pad = tokenizer_->pad_id();
  auto in_range = [](const Encoding& e, int64_t s) {
    return s < static_cast<int64_t>(e.ids.size());
  };
  std::vector<std::pair<std::string, Tensor>> feeds;
  feeds.emplace_back("input_ids", make([&](const Encoding& e, int64_t s) {
                       return in_range(e, s) ? e.ids[s] : pad;
                     }));
  feeds.emplace_back("attention_mask", make([&](const Encoding& e, int64_t s) -> int64_t {
                       return in_range(e, s) ? 1 : 0;
                     }));
  if (wants_token_type_ids_) {
    feeds.emplace_back("token_type_ids", make([&](const Encoding& e, int64_t s) -> int64_t {
                         return in_range(e, s) && s < int64_t(e.type_ids.size()) ? e.type_ids[s]
                                                                                 : 0;
                       }));
  }
  if (wants_position_ids_) {
    feeds.emplace_back("position_ids", make([](const Encoding&, int64_t s) { return s; }));
  }
  // Models declaring int32 inputs get int32.
  for (auto& [name, t] : feeds) {
    for (const auto& in : session_->inputs()) {
      if (in.name == name && in.dtype == DataType::kInt32) {
        Tensor c = Tensor::Empty(DataType::kInt32, t.shape());
        for (int64_t i = 0; i < t.numel(); ++i)
          c.data<int32_t>()[i] = int32_t(t.data<int64_t>()[i]);
        t = c;
      }
    }
  }
  std::vector<std::pair<std::string, Tensor>> used;
  for (auto& f : feeds) {
    for (const auto& in : session_->inputs()) {
      if (in.name == f.first) used.push_back(f);
    }
  }
  IM_ASSIGN_OR_RETURN(std::vector<Tensor> outs, session_->Run(used));
  return outs.at(0);
}

Result<Tensor> EmbeddingModel::Pool(const Tensor& hidden,
                                    const std::vector<Encoding>& encodings) const {
  const int64_t batch = static_cast<int64_t>(encodings.size());
  const int64_t seq = hidden.rank() == 3 ? hidden.dim(1) : 0;
  Tensor pooled;
  if (hidden.rank() == 2 && hidden.dim(0) == batch) {
    pooled = hidden.Clone();  // the model pools itself (sentence_embedding output)
  } else if (hidden.rank() == 3 && hidden.dim(0) == batch && hidden.dim(1) == seq) {
    const int64_t d = hidden.dim(2);
    pooled = Tensor::Empty(DataType::kFloat32, {batch, d});
    const float* h = hidden.data<float>();
    float* p = pooled.data<float>();
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len = static_cast<int64_t>(encodings[b].ids.size());
      const float* rows = h + b * seq * d;
      if (pooling_ == Pooling::kCls) {
        std::copy(rows, rows + d, p + b * d);
      } else if (pooling_ == Pooling::kLastToken) {
        std::copy(rows + (len - 1) * d, rows + len * d, p + b * d);
      } else {
        std::vector<double> acc(d, 0.0);
        for (int64_t s = 0; s < len; ++s) {
          for (int64_t j = 0; j < d; ++j) acc[j] += rows[s * d + j];
        }
        for (int64_t j = 0; j < d; ++j) p[b * d + j] = static_cast<float>(acc[j] / len);
      }
    }
  } else {
    return InvalidArgument("model output has shape " + ShapeToString(hidden.shape()) +
                           "; expected [batch, seq, hidden] or [batch, hidden]");
  }
  return pooled;
}

Result<std::vector<std::vector<float>>> EmbeddingModel::Embed(const std::vector<std::string>& texts,
                                                              const EmbedOptions& options) const {
  if (texts.empty()) return InvalidArgument("no inputs");
  std::vector<Encoding> encodings;
  encodings.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto e = Tokenize(texts[i], options);
    if (!e.ok()) return e.status().WithContext("input " + std::to_string(i));
    encodings.push_back(std::move(e).value());
  }
  IM_ASSIGN_OR_RETURN(Tensor t, EmbedEncodings(encodings, options.normalize.value_or(normalize_)));
  std::vector<std::vector<float>> rows(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const float* p = t.data<float>() + i * t.dim(1);
    rows[i].assign(p, p + t.dim(1));
  }
  return rows;
}

}  // namespace infermesh::runtime
