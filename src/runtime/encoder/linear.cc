#include "runtime/encoder/linear.h"

#include <dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace infermesh::runtime::encoder {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

constexpr int64_t kReferenceRows = 1024;  // the row count the weight layout is chosen for

dnnl::engine& Engine() {
  static dnnl::engine* e = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *e;
}

}  // namespace

struct LinearKind::Impl {
  dt src_dt = dt::f32;
  dt dst_dt = dt::f32;
  dnnl::memory::desc weights_md;
  dnnl::memory::desc bias_md;
  dnnl::primitive_attr attr;
  mutable std::mutex mu;
  mutable std::list<int64_t> lru;  // most recent first
  struct Entry {
    std::shared_ptr<dnnl::matmul> prim;
    size_t scratchpad_bytes = 0;
    std::list<int64_t>::iterator pos;
  };
  mutable std::unordered_map<int64_t, Entry> cache;

  bool int8 = false;

  dnnl::matmul::primitive_desc Describe(int64_t rows, int64_t k, int64_t n,
                                        const dnnl::memory::desc& w) const {
    dnnl::memory::desc src({rows, k}, src_dt, tag::ab);
    dnnl::memory::desc dst({rows, n}, dst_dt, tag::ab);
    if (int8) {  // no bias: it must be added after the caller's row scale
      return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, dst), attr, Engine());
    }
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, bias_md, dst), attr, Engine());
  }
};

LinearKind::LinearKind(const LinearSpec& spec) : spec_(spec), impl_(std::make_unique<Impl>()) {}
LinearKind::~LinearKind() = default;

Result<std::unique_ptr<LinearKind>> LinearKind::Create(const LinearSpec& spec) {
  if (spec.k <= 0 || spec.n <= 0) return InvalidArgument("linear layer with an empty shape");
  auto kind = std::unique_ptr<LinearKind>(new LinearKind(spec));
  Impl& im = *kind->impl_;
  const bool bf16 = spec.precision == Precision::kBf16;
  const bool int8 = spec.precision == Precision::kInt8;
  if (int8 && (spec.epilogue != Epilogue::kBias || spec.out_bf16)) {
    return InvalidArgument("int8 linear layers leave the epilogue to the caller");
  }
  im.int8 = int8;
  im.src_dt = bf16 ? dt::bf16 : int8 ? dt::s8 : dt::f32;
  im.dst_dt = spec.out_bf16 ? dt::bf16 : dt::f32;
  try {
    dnnl::post_ops po;
    switch (spec.epilogue) {
      case Epilogue::kBias:
        break;
      case Epilogue::kBiasGeluErf:
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
        break;
      case Epilogue::kBiasGeluTanh:
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0.0f, 0.0f);
        break;
      case Epilogue::kBiasAccumulate:
        po.append_sum(1.0f);
        break;
    }
    im.attr.set_post_ops(po);
    // Our scratchpad, not the library's: with the library's, distinct primitives
    // executed at once from different threads (two models, or two runs with different
    // row counts) share one global buffer and corrupt each other's results.
    im.attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (int8) im.attr.set_output_scales(2, {DNNL_RUNTIME_F32_VAL});
    im.bias_md = dnnl::memory::desc({1, spec.n}, dt::f32, tag::ab);
    dnnl::memory::desc any({spec.k, spec.n}, bf16 ? dt::bf16 : int8 ? dt::s8 : dt::f32, tag::any);
    auto pd = im.Describe(kReferenceRows, spec.k, spec.n, any);
    im.weights_md = pd.weights_desc();
  } catch (const dnnl::error& e) {
    return Internal(std::string("oneDNN matmul setup failed: ") + e.what());
  }
  return kind;
}

Result<PackedWeight> LinearKind::Pack(const float* w, const float* bias) const {
  PackedWeight out;
  try {
    const size_t bytes = impl_->weights_md.get_size();
    std::shared_ptr<void> packed(std::aligned_alloc(64, (bytes + 63) / 64 * 64), std::free);
    if (!packed) return ResourceExhausted("cannot allocate packed weights");
    dnnl::memory dst(impl_->weights_md, Engine(), packed.get());
    dnnl::stream s(Engine());
    if (impl_->int8) {
      // Symmetric per-column scales: q = round(w / scale), scale = max|w[:, n]| / 127.
      const int64_t k = spec_.k, n = spec_.n;
      std::shared_ptr<float> scales(new float[static_cast<size_t>(n)],
                                    std::default_delete<float[]>());
      std::vector<int8_t> q(static_cast<size_t>(k * n));
      for (int64_t c = 0; c < n; ++c) {
        float m = 0;
        for (int64_t r = 0; r < k; ++r) m = std::max(m, std::fabs(w[r * n + c]));
        const float sc = m > 0 ? m / 127.0f : 1.0f;
        scales.get()[c] = sc;
        for (int64_t r = 0; r < k; ++r) {
          q[static_cast<size_t>(r * n + c)] =
              static_cast<int8_t>(std::lround(std::clamp(w[r * n + c] / sc, -127.0f, 127.0f)));
        }
      }
      dnnl::memory src(dnnl::memory::desc({k, n}, dt::s8, tag::ab), Engine(), q.data());
      dnnl::reorder(src, dst).execute(s, src, dst);
      out.scales = std::move(scales);
    } else {
      dnnl::memory::desc plain({spec_.k, spec_.n}, dt::f32, tag::ab);
      dnnl::memory src(plain, Engine(), const_cast<float*>(w));
      dnnl::reorder(src, dst).execute(s, src, dst);
    }
    s.wait();
    out.weights = std::move(packed);
  } catch (const dnnl::error& e) {
    return Internal(std::string("oneDNN weight packing failed: ") + e.what());
  }
  std::shared_ptr<float> b(
      static_cast<float*>(std::aligned_alloc(64, (spec_.n * 4 + 63) / 64 * 64)), std::free);
  if (!b) return ResourceExhausted("cannot allocate bias");
  if (bias) {
    std::memcpy(b.get(), bias, static_cast<size_t>(spec_.n) * sizeof(float));
  } else {
    std::memset(b.get(), 0, static_cast<size_t>(spec_.n) * sizeof(float));
  }
  out.bias = std::move(b);
  return out;
}

Status LinearKind::Run(const PackedWeight& w, int64_t rows, const void* x, void* y) const {
  if (rows <= 0) return OkStatus();
  Impl& im = *impl_;
  std::shared_ptr<dnnl::matmul> prim;
  size_t scratchpad_bytes = 0;
  try {
    {
      std::lock_guard<std::mutex> lock(im.mu);
      auto it = im.cache.find(rows);
      if (it != im.cache.end()) {
        im.lru.splice(im.lru.begin(), im.lru, it->second.pos);
        prim = it->second.prim;
        scratchpad_bytes = it->second.scratchpad_bytes;
      } else {
        auto pd = im.Describe(rows, spec_.k, spec_.n, im.weights_md);
        prim = std::make_shared<dnnl::matmul>(pd);
        scratchpad_bytes = pd.scratchpad_desc().get_size();
        im.lru.push_front(rows);
        im.cache[rows] = {prim, scratchpad_bytes, im.lru.begin()};
        if (im.cache.size() > kMaxCachedPrimitives) {
          im.cache.erase(im.lru.back());
          im.lru.pop_back();
        }
      }
    }
    dnnl::memory::desc src_md({rows, spec_.k}, im.src_dt, tag::ab);
    dnnl::memory::desc dst_md({rows, spec_.n}, im.dst_dt, tag::ab);
    dnnl::memory src(src_md, Engine(), const_cast<void*>(x));
    dnnl::memory wt(im.weights_md, Engine(), w.weights.get());
    dnnl::memory bias(im.bias_md, Engine(), w.bias.get());
    dnnl::memory dst(dst_md, Engine(), y);
    // One stream and one scratchpad per calling thread (CPU streams execute
    // synchronously, so the scratchpad is free again when execute returns).
    static thread_local dnnl::stream s(Engine());
    static thread_local std::vector<uint8_t> scratch;
    if (scratch.size() < scratchpad_bytes) scratch.resize(scratchpad_bytes);
    dnnl::memory pad(dnnl::memory::desc({static_cast<int64_t>(scratchpad_bytes)}, dt::u8, tag::a),
                     Engine(), scratch.data());
    if (im.int8) {
      dnnl::memory scales(dnnl::memory::desc({spec_.n}, dt::f32, tag::a), Engine(), w.scales.get());
      prim->execute(s, {{DNNL_ARG_SRC, src},
                        {DNNL_ARG_WEIGHTS, wt},
                        {DNNL_ARG_DST, dst},
                        {DNNL_ARG_SCRATCHPAD, pad},
                        {DNNL_ARG_ATTR_OUTPUT_SCALES, scales}});
    } else {
      prim->execute(s, {{DNNL_ARG_SRC, src},
                        {DNNL_ARG_WEIGHTS, wt},
                        {DNNL_ARG_BIAS, bias},
                        {DNNL_ARG_DST, dst},
                        {DNNL_ARG_SCRATCHPAD, pad}});
    }
    s.wait();
  } catch (const dnnl::error& e) {
    return Internal(std::string("oneDNN matmul failed: ") + e.what());
  }
  return OkStatus();
}

size_t LinearKind::packed_bytes() const { return impl_->weights_md.get_size(); }

size_t LinearKind::cached_primitives() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->cache.size();
}

}  // namespace infermesh::runtime::encoder
