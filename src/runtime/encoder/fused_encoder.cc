#include "runtime/encoder/fused_encoder.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "core/thread_pool.h"
#include "runtime/encoder/linear.h"
#include "runtime/encoder/quantize.h"

namespace infermesh::runtime::encoder {
namespace {

// The per-token work (matmuls, LayerNorms) runs in chunks of at most kChunkRows
// rows, the last one rounded up to a multiple of kRowQuantum. So a linear layer sees
// at most kChunkRows / kRowQuantum + 1 row counts, whatever the batch: its primitive
// cache (each new row count costs ~1 ms to create) never thrashes, and the
// feed-forward buffer stays at kChunkRows rows, however many tokens a batch has.
// 1024 rows is where oneDNN's matmul reaches full speed on both cores at bge-small's
// shapes (bench/micro/encoder_micro.cc).
constexpr int64_t kChunkRows = 1024;
constexpr int64_t kRowQuantum = 16;

template <typename T>
T* Grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

struct PackedLayer {
  PackedWeight qkv, out, ffn1, ffn2;
  LayerNormParams ln1, ln2;
};

// Per-run buffers, reused across runs (they only grow).
struct Arena {
  std::vector<float> hidden, qkv, ctx, ffn, scratch;
  std::vector<bf16> hidden16, ctx16, ffn16;
  std::vector<int64_t> positions;
  // int8 mode: quantized activations and their per-row scales, and the float32
  // output of the residual matmuls before the epilogue.
  std::vector<int8_t> hidden8, ctx8, ffn8;
  std::vector<float> hidden_scale, ctx_scale, ffn_scale, out;
  // The last layer's compact rows (PackedBatch::needed_rows).
  std::vector<float> last_hidden, last_ctx, last_hidden_scale, last_ctx_scale;
  std::vector<bf16> last_hidden16, last_ctx16;
  std::vector<int8_t> last_hidden8, last_ctx8;
};

}  // namespace

struct FusedEncoder::Impl {
  EncoderWeights weights;  // embeddings and norms (linears are packed below)
  std::unique_ptr<LinearKind> qkv, out, ffn1, ffn2;
  std::vector<PackedLayer> layers;
  LayerNormParams embedding_ln;
  int threads = 1;
  bool bf16 = false;
  bool int8 = false;
  bool gelu_tanh = false;
  int64_t hidden = 0, ffn = 0;
  int heads = 0, head_dim = 0;
  // Relative position bias by head and query-minus-key distance (AttentionParams).
  std::vector<float> rel;
  int64_t rel_stride = 0, rel_offset = 0;

  mutable std::mutex mu;
  mutable std::vector<std::unique_ptr<Arena>> free_arenas;

  std::unique_ptr<Arena> TakeArena() const {
    std::lock_guard<std::mutex> lock(mu);
    if (free_arenas.empty()) return std::make_unique<Arena>();
    auto a = std::move(free_arenas.back());
    free_arenas.pop_back();
    return a;
  }
  void ReturnArena(std::unique_ptr<Arena> a) const {
    std::lock_guard<std::mutex> lock(mu);
    free_arenas.push_back(std::move(a));
  }
};

FusedEncoder::~FusedEncoder() = default;

Result<std::unique_ptr<FusedEncoder>> FusedEncoder::Create(const EncoderWeights& w,
                                                           const FusedEncoderOptions& options) {
  const int64_t h = w.hidden;
  if (options.heads <= 0 || h % options.heads != 0) {
    return InvalidArgument("hidden size " + std::to_string(h) + " is not divisible by " +
                           std::to_string(options.heads) + " heads");
  }
  if (options.precision == Precision::kBf16 && !CpuHasAvx512Bf16()) {
    return Unimplemented("bf16 precision needs a CPU with AVX512-BF16");
  }
  if (options.precision == Precision::kInt8) {
    if (!CpuHasAvx512Vnni()) return Unimplemented("int8 precision needs a CPU with AVX512-VNNI");
    if (h % 16 != 0 || w.ffn % 16 != 0) {
      return Unimplemented("int8 precision needs hidden and FFN sizes that are multiples of 16");
    }
  }
  auto enc = std::unique_ptr<FusedEncoder>(new FusedEncoder());
  enc->options_ = options;
  enc->hidden_ = h;
  enc->max_positions_ = w.max_positions;
  enc->impl_ = std::make_unique<Impl>();
  Impl& im = *enc->impl_;
  im.threads = options.threads > 0 ? options.threads : static_cast<int>(HardwareThreads());
  im.bf16 = options.precision == Precision::kBf16;
  im.int8 = options.precision == Precision::kInt8;
  im.gelu_tanh = w.activation == Activation::kGeluTanh;
  im.hidden = h;
  im.ffn = w.ffn;
  im.heads = options.heads;
  im.head_dim = static_cast<int>(h / options.heads);
  const Precision p = options.precision;
  const Epilogue gelu =
      w.activation == Activation::kGeluErf ? Epilogue::kBiasGeluErf : Epilogue::kBiasGeluTanh;
  // int8 matmuls leave bias and epilogue to the quantize.h kernels.
  const Epilogue acc = im.int8 ? Epilogue::kBias : Epilogue::kBiasAccumulate;
  IM_ASSIGN_OR_RETURN(im.qkv, LinearKind::Create({h, 3 * h, Epilogue::kBias, p, false}));
  IM_ASSIGN_OR_RETURN(im.out, LinearKind::Create({h, h, acc, p, false}));
  IM_ASSIGN_OR_RETURN(im.ffn1,
                      LinearKind::Create({h, w.ffn, im.int8 ? Epilogue::kBias : gelu, p, im.bf16}));
  IM_ASSIGN_OR_RETURN(im.ffn2, LinearKind::Create({w.ffn, h, acc, p, false}));

  // Embeddings and norms are copied; the big matrices go straight into packed form.
  im.weights.hidden = h;
  im.weights.ffn = w.ffn;
  im.weights.vocab = w.vocab;
  im.weights.max_positions = w.max_positions;
  im.weights.type_vocab = w.type_vocab;
  im.weights.word = w.word;
  im.weights.position = w.position;
  im.weights.type = w.type;
  im.weights.embedding_ln = w.embedding_ln;
  if (!w.rel_bias.empty()) {
    if (w.rel_heads != options.heads) {
      return InvalidArgument("relative position bias has " + std::to_string(w.rel_heads) +
                             " heads, not " + std::to_string(options.heads));
    }
    // x = query - key position covers -(P - 1) .. P - 1 + 32 (see AttentionParams).
    const int64_t reach = std::max<int64_t>(w.max_positions, 1);
    im.rel_offset = reach - 1;
    im.rel_stride = 2 * reach + 32;
    im.rel.resize(static_cast<size_t>(im.rel_stride * options.heads));
    for (int hd = 0; hd < options.heads; ++hd) {
      for (int64_t x = 0; x < im.rel_stride; ++x) {
        const int64_t d = std::clamp(im.rel_offset - x, -w.rel_max, w.rel_max);
        const int64_t bucket = w.rel_bucket[static_cast<size_t>(d + w.rel_max)];
        im.rel[static_cast<size_t>(hd * im.rel_stride + x)] =
            w.rel_bias[static_cast<size_t>(bucket * w.rel_heads + hd)];
      }
    }
  }
  im.weights.layers.resize(w.layers.size());
  im.embedding_ln = {im.weights.embedding_ln.gamma.data(), im.weights.embedding_ln.beta.data(),
                     im.weights.embedding_ln.eps};
  std::vector<float> wqkv(static_cast<size_t>(h * 3 * h)), bqkv(static_cast<size_t>(3 * h));
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const EncoderLayerWeights& src = w.layers[l];
    EncoderLayerWeights& keep = im.weights.layers[l];
    keep.ln1 = src.ln1;
    keep.ln2 = src.ln2;
    PackedLayer pl;
    const float* qkv_w;
    const float* qkv_b;
    if (src.qkv_w.size() == 1) {
      qkv_w = src.qkv_w[0].data();
      qkv_b = src.qkv_b[0].data();
    } else if (src.qkv_w.size() == 3) {
      for (int part = 0; part < 3; ++part) {
        const auto& m = src.qkv_w[static_cast<size_t>(options.qkv_order[part])];
        const auto& b = src.qkv_b[static_cast<size_t>(options.qkv_order[part])];
        for (int64_t r = 0; r < h; ++r) {
          std::copy(m.begin() + r * h, m.begin() + (r + 1) * h,
                    wqkv.begin() + r * 3 * h + part * h);
        }
        std::copy(b.begin(), b.end(), bqkv.begin() + part * h);
      }
      qkv_w = wqkv.data();
      qkv_b = bqkv.data();
    } else {
      return InvalidArgument("layer needs one or three Q/K/V projections");
    }
    IM_ASSIGN_OR_RETURN(pl.qkv, im.qkv->Pack(qkv_w, qkv_b));
    IM_ASSIGN_OR_RETURN(pl.out, im.out->Pack(src.out_w.data(), src.out_b.data()));
    IM_ASSIGN_OR_RETURN(pl.ffn1, im.ffn1->Pack(src.ffn1_w.data(), src.ffn1_b.data()));
    IM_ASSIGN_OR_RETURN(pl.ffn2, im.ffn2->Pack(src.ffn2_w.data(), src.ffn2_b.data()));
    pl.ln1 = {keep.ln1.gamma.data(), keep.ln1.beta.data(), keep.ln1.eps};
    pl.ln2 = {keep.ln2.gamma.data(), keep.ln2.beta.data(), keep.ln2.eps};
    im.layers.push_back(std::move(pl));
  }
  {
    // What this encoder holds: per layer four packed matrices and their biases (and
    // int8 scales), two norms; the embedding tables; the relative-position table.
    size_t bytes = 0;
    const size_t f = sizeof(float);
    for (size_t l = 0; l < w.layers.size(); ++l) {
      bytes += im.qkv->packed_bytes() + im.out->packed_bytes() + im.ffn1->packed_bytes() +
               im.ffn2->packed_bytes();
      bytes += (3 * h + h + w.ffn + h) * f * (im.int8 ? 2 : 1);
      bytes += 4 * h * f;  // two LayerNorms
    }
    bytes += (im.weights.word.size() + im.weights.position.size() + im.weights.type.size() +
              2 * static_cast<size_t>(h) + im.rel.size()) *
             f;
    enc->weight_bytes_ = bytes;
  }
  return enc;
}

Status FusedEncoder::Run(const PackedBatch& batch,
                         const std::function<void(const float* hidden)>& consume) const {
  const Impl& im = *impl_;
  const int64_t nseq = static_cast<int64_t>(batch.cu.size()) - 1;
  if (nseq <= 0 || batch.cu[0] != 0) return InvalidArgument("empty packed batch");
  const int64_t tokens = batch.cu.back();
  if (tokens != static_cast<int64_t>(batch.ids.size())) {
    return InvalidArgument("packed batch offsets do not match its token count");
  }
  if (!batch.type_ids.empty() && batch.type_ids.size() != batch.ids.size()) {
    return InvalidArgument("token_type_ids and input_ids differ in length");
  }
  for (int64_t r : batch.needed_rows) {
    if (r < 0 || r >= tokens) {
      return InvalidArgument("needed row " + std::to_string(r) + " is outside the batch's " +
                             std::to_string(tokens) + " tokens");
    }
  }
  int64_t max_len = 0;
  for (int64_t b = 0; b < nseq; ++b) {
    const int64_t len = batch.cu[b + 1] - batch.cu[b];
    if (len <= 0) return InvalidArgument("sequence " + std::to_string(b) + " is empty");
    max_len = std::max(max_len, len);
  }
  if (max_len + options_.position_offset > im.weights.max_positions) {
    return OutOfRange("sequence of " + std::to_string(max_len) + " tokens exceeds the model's " +
                      std::to_string(im.weights.max_positions - options_.position_offset) +
                      " positions");
  }
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t id = batch.ids[static_cast<size_t>(t)];
    if (id < 0 || id >= im.weights.vocab) {
      return InvalidArgument("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(im.weights.vocab) + ")");
    }
    if (!batch.type_ids.empty()) {
      const int64_t ty = batch.type_ids[static_cast<size_t>(t)];
      if (ty < 0 || ty >= std::max<int64_t>(im.weights.type_vocab, 1)) {
        return InvalidArgument("token type id " + std::to_string(ty) + " is out of range");
      }
    }
  }

  const int64_t h = im.hidden, f = im.ffn;
  const int64_t rows = (tokens + kRowQuantum - 1) / kRowQuantum * kRowQuantum;
  const int threads = im.threads;
  omp_set_num_threads(threads);

  std::unique_ptr<Arena> arena = im.TakeArena();
  Arena& a = *arena;
  float* x = Grow(a.hidden, rows * h);
  float* qkv = Grow(a.qkv, rows * 3 * h);
  bf16* x16 = im.bf16 ? Grow(a.hidden16, rows * h) : nullptr;
  float* ctx = im.bf16 ? nullptr : Grow(a.ctx, rows * h);
  bf16* ctx16 = im.bf16 ? Grow(a.ctx16, rows * h) : nullptr;
  const int64_t chunk_rows = std::min(rows, kChunkRows);
  float* ffn = im.bf16 ? nullptr : Grow(a.ffn, chunk_rows * f);
  bf16* ffn16 = im.bf16 ? Grow(a.ffn16, chunk_rows * f) : nullptr;
  float* scratch = Grow(a.scratch, AttentionScratchFloats(max_len, im.head_dim, threads));
  int64_t* pos = Grow(a.positions, tokens);
  for (int64_t b = 0; b < nseq; ++b) {
    for (int64_t t = batch.cu[b]; t < batch.cu[b + 1]; ++t) {
      pos[t] = t - batch.cu[b] + options_.position_offset;
    }
  }
  // Rows past the last token only feed the matmuls' own padding rows; keep them zero.
  std::memset(x + tokens * h, 0, static_cast<size_t>((rows - tokens) * h) * sizeof(float));
  if (x16) std::memset(x16 + tokens * h, 0, static_cast<size_t>((rows - tokens) * h) * 2);

  EmbeddingTables tables{im.weights.word.data(), im.weights.position.data(),
                         im.weights.type.empty() ? nullptr : im.weights.type.data(), h};
  EmbedRows(tables, batch.ids.data(), pos, batch.type_ids.empty() ? nullptr : batch.type_ids.data(),
            tokens, im.embedding_ln, x, x16, threads);

  AttentionParams ap;
  ap.qkv = qkv;
  ap.ld_qkv = 3 * h;
  ap.hidden = h;
  ap.heads = im.heads;
  ap.head_dim = im.head_dim;
  ap.scale = 1.0f / std::sqrt(static_cast<float>(im.head_dim));
  ap.cu = batch.cu.data();
  ap.batch = nseq;
  ap.out = ctx;
  ap.out16 = ctx16;
  ap.max_len = max_len;
  if (!im.rel.empty()) {
    ap.rel_bias = im.rel.data();
    ap.rel_stride = im.rel_stride;
    ap.rel_offset = im.rel_offset;
  }
  ap.scratch = scratch;
  ap.threads = threads;

  // Chunks [begin, begin + padded) of `count` rows; the last one is padded.
  auto chunks_of = [](int64_t count) {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (int64_t begin = 0; begin < count; begin += kChunkRows) {
      const int64_t n = std::min(kChunkRows, count - begin);
      out.emplace_back(begin, (n + kRowQuantum - 1) / kRowQuantum * kRowQuantum);
    }
    return out;
  };
  const auto chunks = chunks_of(tokens);
  const size_t esize = im.bf16 ? sizeof(bf16) : sizeof(float);
  auto at = [esize](const void* base, int64_t row, int64_t width) {
    return static_cast<const char*>(base) + static_cast<size_t>(row * width) * esize;
  };

  // The last layer on the needed rows only (PackedBatch::needed_rows): after its
  // attention, those rows of the residual stream and of the attention output are
  // gathered into `sel_rows` compact rows (padding zeroed), run through the rest of
  // the layer, and scattered back.
  const std::vector<int64_t>& needed = batch.needed_rows;
  const int64_t sel = static_cast<int64_t>(needed.size());
  const bool compact_last = sel > 0 && sel < tokens;
  const int64_t sel_rows = (sel + kRowQuantum - 1) / kRowQuantum * kRowQuantum;
  auto gather = [&](const void* src, void* dst, size_t width_bytes) {
    for (int64_t i = 0; i < sel; ++i) {
      std::memcpy(static_cast<char*>(dst) + static_cast<size_t>(i) * width_bytes,
                  static_cast<const char*>(src) +
                      static_cast<size_t>(needed[static_cast<size_t>(i)]) * width_bytes,
                  width_bytes);
    }
    std::memset(static_cast<char*>(dst) + static_cast<size_t>(sel) * width_bytes, 0,
                static_cast<size_t>(sel_rows - sel) * width_bytes);
  };
  auto scatter = [&](const float* src, float* dst) {
    for (int64_t i = 0; i < sel; ++i) {
      std::memcpy(dst + needed[static_cast<size_t>(i)] * h, src + i * h,
                  static_cast<size_t>(h) * sizeof(float));
    }
  };
  const size_t row_bytes = static_cast<size_t>(h) * sizeof(float);

  if (im.int8) {
    int8_t* x8 = Grow(a.hidden8, rows * h);
    float* xs = Grow(a.hidden_scale, rows);
    int8_t* c8 = Grow(a.ctx8, rows * h);
    float* cs = Grow(a.ctx_scale, rows);
    float* ctx32 = Grow(a.ctx, rows * h);
    float* y = Grow(a.out, chunk_rows * h);
    float* f32 = Grow(a.ffn, chunk_rows * f);
    int8_t* f8 = Grow(a.ffn8, chunk_rows * f);
    float* fs = Grow(a.ffn_scale, chunk_rows);
    // Padding rows stay zero (scale 1) so the matmuls' padding rows stay finite.
    auto pad8 = [h](int8_t* q, float* scale, int64_t from, int64_t to) {
      std::memset(q + from * h, 0, static_cast<size_t>((to - from) * h));
      std::fill(scale + from, scale + to, 1.0f);
    };
    pad8(x8, xs, tokens, rows);
    pad8(c8, cs, tokens, rows);
    QuantizeRows(x, tokens, h, x8, xs, threads);
    ap.out = ctx32;
    ap.out16 = nullptr;
    // Everything after attention, on `count` rows: residual xb (quantized into x8b,
    // scales xsb) and attention output cb (quantized into c8b, scales csb).
    auto after_attention = [&](const PackedLayer& layer, float* xb, int8_t* x8b, float* xsb,
                               const float* cb, int8_t* c8b, float* csb, int64_t count) -> Status {
      QuantizeRows(cb, count, h, c8b, csb, threads);
      for (const auto& [begin, n] : chunks_of(count)) {
        const int64_t real = std::min(n, count - begin);
        IM_RETURN_IF_ERROR(im.out->Run(layer.out, n, c8b + begin * h, y));
        ResidualLayerNormQuantizeRows(xb + begin * h, y, real, h, csb + begin, layer.out.bias.get(),
                                      layer.ln1, x8b + begin * h, xsb + begin, threads);
        IM_RETURN_IF_ERROR(im.ffn1->Run(layer.ffn1, n, x8b + begin * h, f32));
        ScaleBiasGeluQuantizeRows(f32, n, f, xsb + begin, layer.ffn1.bias.get(), im.gelu_tanh, f8,
                                  fs, threads);
        IM_RETURN_IF_ERROR(im.ffn2->Run(layer.ffn2, n, f8, y));
        ResidualLayerNormQuantizeRows(xb + begin * h, y, real, h, fs, layer.ffn2.bias.get(),
                                      layer.ln2, x8b + begin * h, xsb + begin, threads);
      }
      return OkStatus();
    };
    Status status;
    for (size_t l = 0; l < im.layers.size() && status.ok(); ++l) {
      const PackedLayer& layer = im.layers[l];
      for (const auto& [begin, n] : chunks) {
        float* q = qkv + begin * 3 * h;
        status = im.qkv->Run(layer.qkv, n, x8 + begin * h, q);
        if (!status.ok()) break;
        ScaleBiasRows(q, n, 3 * h, xs + begin, layer.qkv.bias.get(), threads);
      }
      if (!status.ok()) break;
      Attention(ap);
      if (compact_last && l + 1 == im.layers.size()) {
        float* cx = Grow(a.last_hidden, sel_rows * h);
        float* cc = Grow(a.last_ctx, sel_rows * h);
        int8_t* cx8 = Grow(a.last_hidden8, sel_rows * h);
        float* cxs = Grow(a.last_hidden_scale, sel_rows);
        int8_t* cc8 = Grow(a.last_ctx8, sel_rows * h);
        float* ccs = Grow(a.last_ctx_scale, sel_rows);
        gather(x, cx, row_bytes);
        gather(ctx32, cc, row_bytes);
        pad8(cx8, cxs, sel, sel_rows);
        pad8(cc8, ccs, sel, sel_rows);
        status = after_attention(layer, cx, cx8, cxs, cc, cc8, ccs, sel);
        if (status.ok()) scatter(cx, x);
      } else {
        status = after_attention(layer, x, x8, xs, ctx32, c8, cs, tokens);
      }
    }
    if (status.ok()) consume(x);
    im.ReturnArena(std::move(arena));
    return status;
  }

  const void* xin = im.bf16 ? static_cast<const void*>(x16) : x;
  const void* cin = im.bf16 ? static_cast<const void*>(ctx16) : ctx;
  void* mid = im.bf16 ? static_cast<void*>(ffn16) : ffn;

  // Everything after attention, on `count` rows: the residual stream xb (and its
  // bf16 copy xb16, the next matmul's input) and the attention output cb.
  auto after_attention = [&](const PackedLayer& layer, float* xb, bf16* xb16, const void* cb,
                             int64_t count) -> Status {
    const void* next_in = im.bf16 ? static_cast<const void*>(xb16) : xb;
    for (const auto& [begin, n] : chunks_of(count)) {
      const int64_t real = std::min(n, count - begin);
      float* xc = xb + begin * h;
      bf16* xc16 = xb16 ? xb16 + begin * h : nullptr;
      IM_RETURN_IF_ERROR(im.out->Run(layer.out, n, at(cb, begin, h), xc));  // x += ctx·Wo + bo
      LayerNormRows(xc, real, h, layer.ln1, xc16, threads);
      IM_RETURN_IF_ERROR(im.ffn1->Run(layer.ffn1, n, at(next_in, begin, h), mid));
      IM_RETURN_IF_ERROR(im.ffn2->Run(layer.ffn2, n, mid, xc));  // x += gelu(...)·W2 + b2
      LayerNormRows(xc, real, h, layer.ln2, xc16, threads);
    }
    return OkStatus();
  };
  Status status;
  for (size_t l = 0; l < im.layers.size() && status.ok(); ++l) {
    const PackedLayer& layer = im.layers[l];
    for (const auto& [begin, n] : chunks) {
      status = im.qkv->Run(layer.qkv, n, at(xin, begin, h), qkv + begin * 3 * h);
      if (!status.ok()) break;
    }
    if (!status.ok()) break;
    Attention(ap);
    if (compact_last && l + 1 == im.layers.size()) {
      float* cx = Grow(a.last_hidden, sel_rows * h);
      bf16* cx16 = im.bf16 ? Grow(a.last_hidden16, sel_rows * h) : nullptr;
      void* cc = im.bf16 ? static_cast<void*>(Grow(a.last_ctx16, sel_rows * h))
                         : static_cast<void*>(Grow(a.last_ctx, sel_rows * h));
      gather(x, cx, row_bytes);
      gather(cin, cc, static_cast<size_t>(h) * esize);
      if (cx16) {
        std::memset(cx16 + sel * h, 0, static_cast<size_t>((sel_rows - sel) * h) * sizeof(bf16));
      }
      status = after_attention(layer, cx, cx16, cc, sel);
      if (status.ok()) scatter(cx, x);
    } else {
      status = after_attention(layer, x, x16, cin, tokens);
    }
  }
  if (status.ok()) consume(x);
  im.ReturnArena(std::move(arena));
  return status;
}

}  // namespace infermesh::runtime::encoder
