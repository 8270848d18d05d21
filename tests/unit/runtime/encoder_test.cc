// Unit tests of the fused encoder (runtime/encoder/): each kernel against a plain
// double-precision reference, and the whole encoder against a reference forward pass
// written out loop by loop. Parity with PyTorch on exported models is in
// tests/parity/encoder_parity_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "runtime/encoder/fused_encoder.h"
#include "runtime/encoder/kernels.h"
#include "runtime/encoder/linear.h"
#include "runtime/encoder/quantize.h"

namespace infermesh::runtime::encoder {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

void RefLayerNorm(std::vector<double>& x, const std::vector<float>& g, const std::vector<float>& b,
                  double eps) {
  const size_t n = x.size();
  double mean = 0, var = 0;
  for (double v : x) mean += v;
  mean /= n;
  for (double v : x) var += (v - mean) * (v - mean);
  var /= n;
  for (size_t i = 0; i < n; ++i) x[i] = (x[i] - mean) / std::sqrt(var + eps) * g[i] + b[i];
}

TEST(EncoderKernels, Bf16RoundsToNearestEven) {
  EXPECT_EQ(ToBf16(1.0f), 0x3F80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even 1.0.
  EXPECT_EQ(ToBf16(1.00390625f), 0x3F80);
  // 1 + 3·2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even): rounds up.
  EXPECT_EQ(ToBf16(1.01171875f), 0x3F82);
  EXPECT_EQ(ToBf16(-2.0f), 0xC000);
  EXPECT_TRUE(std::isnan(FromBf16(ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(FromBf16(ToBf16(std::numeric_limits<float>::infinity()))));
  for (float v : {0.1f, -3.7f, 1e-20f, 6.5e4f}) {
    EXPECT_NEAR(FromBf16(ToBf16(v)), v, std::fabs(v) / 256) << v;
  }
}

class LayerNormTest : public ::testing::TestWithParam<int64_t> {};

// Widths that are multiples of 16 take the AVX-512 body; 40 takes the portable one.
TEST_P(LayerNormTest, MatchesReferenceAndWritesBf16) {
  const int64_t rows = 37, n = GetParam();
  auto x = Random(rows * n, 1, 3.0f);
  auto g = Random(n, 2), b = Random(n, 3);
  std::vector<float> got = x;
  std::vector<bf16> got16(rows * n);
  LayerNormRows(got.data(), rows, n, {g.data(), b.data(), 1e-5f}, got16.data(), 2);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> ref(x.begin() + r * n, x.begin() + (r + 1) * n);
    RefLayerNorm(ref, g, b, 1e-5);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(got[r * n + i], ref[i], 1e-4) << r << "," << i;
      ASSERT_EQ(got16[r * n + i], ToBf16(got[r * n + i]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Widths, LayerNormTest, ::testing::Values(96, 384, 40));

TEST(EncoderKernels, EmbeddingSumsTablesThenNormalizes) {
  const int64_t n = 48, vocab = 20, maxpos = 10;
  auto word = Random(vocab * n, 4), pos = Random(maxpos * n, 5), type = Random(2 * n, 6);
  auto g = Random(n, 7), b = Random(n, 8);
  std::vector<int64_t> ids = {3, 19, 0, 7}, positions = {0, 1, 2, 9}, types = {0, 1, 1, 0};
  std::vector<float> got(ids.size() * n);
  EmbedRows({word.data(), pos.data(), type.data(), n}, ids.data(), positions.data(), types.data(),
            4, {g.data(), b.data(), 1e-12f}, got.data(), nullptr, 1);
  for (size_t t = 0; t < ids.size(); ++t) {
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; ++i) {
      ref[i] = double(word[ids[t] * n + i]) + pos[positions[t] * n + i] + type[types[t] * n + i];
    }
    RefLayerNorm(ref, g, b, 1e-12);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[t * n + i], ref[i], 1e-4);
  }
}

// softmax(scale·Q·Kᵀ + bias)·V per sequence and head, in double; bias(h, i - j) is the
// relative-position bias of query i and key j (positions within the sequence).
std::vector<double> RefAttention(const std::vector<float>& qkv, int64_t hidden, int heads,
                                 const std::vector<int64_t>& cu,
                                 const std::function<double(int, int64_t)>& bias = nullptr) {
  const int dh = static_cast<int>(hidden / heads);
  const double scale = 1.0 / std::sqrt(double(dh));
  std::vector<double> out(static_cast<size_t>(cu.back() * hidden));
  for (size_t b = 0; b + 1 < cu.size(); ++b) {
    for (int h = 0; h < heads; ++h) {
      for (int64_t i = cu[b]; i < cu[b + 1]; ++i) {
        std::vector<double> s;
        double mx = -1e300;
        for (int64_t j = cu[b]; j < cu[b + 1]; ++j) {
          double d = 0;
          for (int c = 0; c < dh; ++c) {
            d += double(qkv[i * 3 * hidden + h * dh + c]) *
                 qkv[j * 3 * hidden + hidden + h * dh + c];
          }
          d *= scale;
          if (bias) d += bias(h, (i - cu[b]) - (j - cu[b]));
          s.push_back(d);
          mx = std::max(mx, d);
        }
        double sum = 0;
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int c = 0; c < dh; ++c) {
          double acc = 0;
          for (int64_t j = cu[b]; j < cu[b + 1]; ++j) {
            acc += s[j - cu[b]] * qkv[j * 3 * hidden + 2 * hidden + h * dh + c];
          }
          out[i * hidden + h * dh + c] = acc / sum;
        }
      }
    }
  }
  return out;
}

struct AttnCase {
  int heads, head_dim, threads;
};

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesReferenceOnPackedSequences) {
  const auto [heads, dh, threads] = GetParam();
  const int64_t hidden = int64_t(heads) * dh;
  // Lengths around the 16- and 32-query blocks, the 8-key blocks and the packed-K/V
  // threshold (> 32), plus a single token.
  const std::vector<int64_t> lens = {1, 15, 16, 17, 33, 5, 64, 32, 47};
  std::vector<int64_t> cu = {0};
  for (int64_t l : lens) cu.push_back(cu.back() + l);
  const int64_t tokens = cu.back();
  auto qkv = Random(tokens * 3 * hidden, 11, 2.0f);
  auto ref = RefAttention(qkv, hidden, heads, cu);

  std::vector<float> scratch(AttentionScratchFloats(64, dh, threads));
  AttentionParams p;
  p.qkv = qkv.data();
  p.ld_qkv = 3 * hidden;
  p.hidden = hidden;
  p.heads = heads;
  p.head_dim = dh;
  p.scale = 1.0f / std::sqrt(float(dh));
  p.cu = cu.data();
  p.batch = static_cast<int64_t>(lens.size());
  p.max_len = 64;
  p.scratch = scratch.data();
  p.threads = threads;
  std::vector<float> out(tokens * hidden, NAN);
  p.out = out.data();
  Attention(p);
  for (int64_t i = 0; i < tokens * hidden; ++i) ASSERT_NEAR(out[i], ref[i], 2e-5) << i;

  std::vector<bf16> out16(tokens * hidden);
  p.out = nullptr;
  p.out16 = out16.data();
  Attention(p);
  for (int64_t i = 0; i < tokens * hidden; ++i) ASSERT_EQ(out16[i], ToBf16(out[i])) << i;

  // With a relative-position bias (MPNet): a table per head over query - key distance
  // x in [-(64 - 1), 64 - 1 + 32], centred at rel_offset.
  const int64_t offset = 63, stride = 2 * 64 + 32;
  auto table = Random(stride * heads, 12, 1.5f);
  auto ref_bias = RefAttention(qkv, hidden, heads, cu, [&](int h, int64_t x) {
    return double(table[h * stride + offset + x]);
  });
  p.rel_bias = table.data();
  p.rel_stride = stride;
  p.rel_offset = offset;
  p.out = out.data();
  p.out16 = nullptr;
  Attention(p);
  double moved = 0;
  for (int64_t i = 0; i < tokens * hidden; ++i) {
    ASSERT_NEAR(out[i], ref_bias[i], 2e-5) << i;
    moved = std::max(moved, std::fabs(ref_bias[i] - ref[i]));
  }
  EXPECT_GT(moved, 0.05) << "the bias should change the output";
}

INSTANTIATE_TEST_SUITE_P(HeadSizes, AttentionTest,
                         ::testing::Values(AttnCase{2, 16, 1}, AttnCase{3, 32, 2},
                                           AttnCase{2, 64, 2}, AttnCase{1, 80, 1},
                                           AttnCase{2, 128, 2},
                                           AttnCase{2, 24, 2}));  // 24: the portable body

// y = epilogue(x·W + b) in double.
std::vector<double> RefLinear(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& b, int64_t rows, int64_t k, int64_t n,
                              Epilogue e, const std::vector<float>& y0) {
  std::vector<double> y(rows * n);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double acc = b[c];
      for (int64_t i = 0; i < k; ++i) acc += double(x[r * k + i]) * w[i * n + c];
      if (e == Epilogue::kBiasGeluErf) acc = 0.5 * acc * (1 + std::erf(acc / std::sqrt(2.0)));
      if (e == Epilogue::kBiasGeluTanh) {
        acc = 0.5 * acc * (1 + std::tanh(std::sqrt(2 / M_PI) * (acc + 0.044715 * acc * acc * acc)));
      }
      if (e == Epilogue::kBiasAccumulate) acc += y0[r * n + c];
      y[r * n + c] = acc;
    }
  }
  return y;
}

TEST(LinearKindTest, Float32EpiloguesMatchReference) {
  const int64_t k = 40, n = 72;
  auto w = Random(k * n, 21, 0.2f), b = Random(n, 22);
  for (Epilogue e : {Epilogue::kBias, Epilogue::kBiasGeluErf, Epilogue::kBiasGeluTanh,
                     Epilogue::kBiasAccumulate}) {
    auto kind = LinearKind::Create({k, n, e, Precision::kFp32, false});
    ASSERT_TRUE(kind.ok()) << kind.status().ToString();
    auto packed = (*kind)->Pack(w.data(), b.data());
    ASSERT_TRUE(packed.ok()) << packed.status().ToString();
    for (int64_t rows : {1, 7, 8, 33}) {
      auto x = Random(rows * k, 23 + rows);
      auto y = Random(rows * n, 24 + rows);
      auto ref = RefLinear(x, w, b, rows, k, n, e, y);
      ASSERT_TRUE((*kind)->Run(*packed, rows, x.data(), y.data()).ok());
      for (int64_t i = 0; i < rows * n; ++i) {
        ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << int(e) << " rows " << rows;
      }
    }
  }
}

TEST(LinearKindTest, Bf16RoundsInputsAndWeights) {
  if (!CpuHasAvx512Bf16()) GTEST_SKIP() << "no AVX512-BF16";
  const int64_t k = 64, n = 48, rows = 19;
  auto w = Random(k * n, 31, 0.2f), b = Random(n, 32), x = Random(rows * k, 33);
  // The reference sees the same bf16-rounded operands, so only accumulation differs.
  std::vector<float> xr(x.size()), wr(w.size());
  std::vector<bf16> x16(x.size());
  for (size_t i = 0; i < x.size(); ++i) xr[i] = FromBf16(x16[i] = ToBf16(x[i]));
  for (size_t i = 0; i < w.size(); ++i) wr[i] = FromBf16(ToBf16(w[i]));
  auto ref = RefLinear(xr, wr, b, rows, k, n, Epilogue::kBiasGeluErf, {});
  auto kind = LinearKind::Create({k, n, Epilogue::kBiasGeluErf, Precision::kBf16, false});
  ASSERT_TRUE(kind.ok()) << kind.status().ToString();
  auto packed = (*kind)->Pack(w.data(), b.data());
  ASSERT_TRUE(packed.ok());
  std::vector<float> y(rows * n);
  ASSERT_TRUE((*kind)->Run(*packed, rows, x16.data(), y.data()).ok());
  for (int64_t i = 0; i < rows * n; ++i) ASSERT_NEAR(y[i], ref[i], 1e-3 * (1 + std::fabs(ref[i])));

  // bf16 output: the float result rounded.
  auto kind16 = LinearKind::Create({k, n, Epilogue::kBiasGeluErf, Precision::kBf16, true});
  ASSERT_TRUE(kind16.ok());
  auto packed16 = (*kind16)->Pack(w.data(), b.data());
  ASSERT_TRUE(packed16.ok());
  std::vector<bf16> y16(rows * n);
  ASSERT_TRUE((*kind16)->Run(*packed16, rows, x16.data(), y16.data()).ok());
  for (int64_t i = 0; i < rows * n; ++i) {
    ASSERT_NEAR(FromBf16(y16[i]), y[i], std::fabs(y[i]) / 128 + 1e-6);
  }
}

TEST(LinearKindTest, Int8QuantizesWeightsPerColumn) {
  if (!CpuHasAvx512Vnni()) GTEST_SKIP() << "no AVX512-VNNI";
  const int64_t k = 64, n = 48, rows = 19;
  auto w = Random(k * n, 51, 0.2f), b = Random(n, 52), x = Random(rows * k, 53);
  std::vector<int8_t> xq(x.size());
  std::vector<float> xs(rows);
  QuantizeRows(x.data(), rows, k, xq.data(), xs.data(), 1);
  auto kind = LinearKind::Create({k, n, Epilogue::kBias, Precision::kInt8, false});
  ASSERT_TRUE(kind.ok()) << kind.status().ToString();
  auto packed = (*kind)->Pack(w.data(), b.data());
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  std::vector<float> y(rows * n);
  Status st = (*kind)->Run(*packed, rows, xq.data(), y.data());
  ASSERT_TRUE(st.ok()) << st.ToString();
  ScaleBiasRows(y.data(), rows, n, xs.data(), b.data(), 1);
  auto ref = RefLinear(x, w, b, rows, k, n, Epilogue::kBias, {});
  double dot = 0, nr = 0, ng = 0;
  for (int64_t i = 0; i < rows * n; ++i) {
    // Two int8 roundings: about 1% of each term's magnitude, averaged over k terms.
    ASSERT_NEAR(y[i], ref[i], 0.05 * (1 + std::fabs(ref[i]))) << i;
    dot += y[i] * ref[i];
    nr += ref[i] * ref[i];
    ng += double(y[i]) * y[i];
  }
  EXPECT_GT(dot / std::sqrt(nr * ng), 0.999);
  // Epilogues other than kBias are the caller's in int8 mode.
  EXPECT_FALSE(LinearKind::Create({k, n, Epilogue::kBiasGeluErf, Precision::kInt8, false}).ok());
}

TEST(QuantizeKernels, RowsRoundTripWithinHalfAStep) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "no AVX-512";
  const int64_t rows = 5, n = 64;
  auto x = Random(rows * n, 61, 3.0f);
  std::fill(x.begin() + 2 * n, x.begin() + 3 * n, 0.0f);  // an all-zero row
  std::vector<int8_t> q(rows * n);
  std::vector<float> s(rows);
  QuantizeRows(x.data(), rows, n, q.data(), s.data(), 1);
  EXPECT_EQ(s[2], 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    int max_q = 0;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(q[r * n + i] * s[r], x[r * n + i], s[r] / 2 + 1e-6);
      max_q = std::max(max_q, std::abs(int(q[r * n + i])));
    }
    if (r != 2) {
      EXPECT_EQ(max_q, 127);
    }
  }
}

TEST(QuantizeKernels, EpiloguesMatchReference) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "no AVX-512";
  const int64_t rows = 6, n = 48;
  auto y0 = Random(rows * n, 71), x0 = Random(rows * n, 72), bias = Random(n, 73);
  auto g = Random(n, 74), beta = Random(n, 75);
  std::vector<float> rs = {0.5f, 1.0f, 2.0f, 0.1f, 3.0f, 1.5f};
  for (bool tanh_form : {false, true}) {
    std::vector<float> y = y0, qs(rows);
    std::vector<int8_t> q(rows * n);
    ScaleBiasGeluQuantizeRows(y.data(), rows, n, rs.data(), bias.data(), tanh_form, q.data(),
                              qs.data(), 1);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < n; ++i) {
        const double v = double(y0[r * n + i]) * rs[r] + bias[i];
        const double want =
            tanh_form ? 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
                      : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        ASSERT_NEAR(y[r * n + i], want, 1e-5 * (1 + std::fabs(want)));
        ASSERT_NEAR(q[r * n + i] * qs[r], want, qs[r] / 2 + 1e-5);
      }
    }
  }
  std::vector<float> x = x0, qs(rows);
  std::vector<int8_t> q(rows * n);
  ResidualLayerNormQuantizeRows(x.data(), y0.data(), rows, n, rs.data(), bias.data(),
                                {g.data(), beta.data(), 1e-5f}, q.data(), qs.data(), 1);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; ++i) {
      ref[i] = double(x0[r * n + i]) + double(y0[r * n + i]) * rs[r] + bias[i];
    }
    RefLayerNorm(ref, g, beta, 1e-5);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(x[r * n + i], ref[i], 1e-4);
      ASSERT_NEAR(q[r * n + i] * qs[r], x[r * n + i], qs[r] / 2 + 1e-6);
    }
  }
}

TEST(LinearKindTest, PrimitiveCacheStaysBounded) {
  auto kind = LinearKind::Create({16, 16, Epilogue::kBias, Precision::kFp32, false});
  ASSERT_TRUE(kind.ok());
  auto w = Random(256, 41), b = Random(16, 42);
  auto packed = (*kind)->Pack(w.data(), b.data());
  ASSERT_TRUE(packed.ok());
  const int64_t max_rows = static_cast<int64_t>(kMaxCachedPrimitives) + 20;
  std::vector<float> x(max_rows * 16, 1.0f), y(max_rows * 16);
  for (int64_t rows = 1; rows <= max_rows; ++rows) {
    ASSERT_TRUE((*kind)->Run(*packed, rows, x.data(), y.data()).ok());
  }
  EXPECT_EQ((*kind)->cached_primitives(), kMaxCachedPrimitives);
  EXPECT_GE((*kind)->cached_primitives(), 1u);
}

// A small random post-LN encoder and its reference forward pass.
EncoderWeights SmallEncoder(int64_t h, int64_t f, int layers, bool separate_qkv) {
  EncoderWeights w;
  w.hidden = h;
  w.ffn = f;
  w.vocab = 50;
  w.max_positions = 40;
  w.type_vocab = 2;
  uint32_t seed = 100;
  w.word = Random(w.vocab * h, seed++);
  w.position = Random(w.max_positions * h, seed++, 0.5f);
  w.type = Random(2 * h, seed++, 0.5f);
  auto ln = [&] {
    LayerNormWeights l;
    l.gamma = Random(h, seed++, 0.3f);
    for (auto& g : l.gamma) g += 1.0f;
    l.beta = Random(h, seed++, 0.1f);
    l.eps = 1e-12f;
    return l;
  };
  w.embedding_ln = ln();
  const float s = 1.0f / std::sqrt(float(h));
  for (int l = 0; l < layers; ++l) {
    EncoderLayerWeights lw;
    if (separate_qkv) {
      for (int i = 0; i < 3; ++i) {
        lw.qkv_w.push_back(Random(h * h, seed++, s));
        lw.qkv_b.push_back(Random(h, seed++, 0.1f));
      }
    } else {
      lw.qkv_w.push_back(Random(h * 3 * h, seed++, s));
      lw.qkv_b.push_back(Random(3 * h, seed++, 0.1f));
    }
    lw.out_w = Random(h * h, seed++, s);
    lw.out_b = Random(h, seed++, 0.1f);
    lw.ln1 = ln();
    lw.ffn1_w = Random(h * f, seed++, s);
    lw.ffn1_b = Random(f, seed++, 0.1f);
    lw.ffn2_w = Random(f * h, seed++, 1.0f / std::sqrt(float(f)));
    lw.ffn2_b = Random(h, seed++, 0.1f);
    lw.ln2 = ln();
    w.layers.push_back(std::move(lw));
  }
  return w;
}

// One sequence through the encoder, in double.
std::vector<double> RefEncode(const EncoderWeights& w, int heads, const std::vector<int64_t>& ids,
                              const std::vector<int64_t>& types) {
  const int64_t h = w.hidden, f = w.ffn, len = static_cast<int64_t>(ids.size());
  std::vector<double> x(len * h);
  for (int64_t t = 0; t < len; ++t) {
    std::vector<double> row(h);
    for (int64_t i = 0; i < h; ++i) {
      row[i] = double(w.word[ids[t] * h + i]) + w.position[t * h + i] + w.type[types[t] * h + i];
    }
    RefLayerNorm(row, w.embedding_ln.gamma, w.embedding_ln.beta, w.embedding_ln.eps);
    std::copy(row.begin(), row.end(), x.begin() + t * h);
  }
  auto linear = [](const std::vector<double>& in, int64_t rows, int64_t k, int64_t n,
                   const float* wt, const float* b) {
    std::vector<double> out(rows * n);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        double acc = b[c];
        for (int64_t i = 0; i < k; ++i) acc += in[r * k + i] * wt[i * n + c];
        out[r * n + c] = acc;
      }
    }
    return out;
  };
  for (const auto& lw : w.layers) {
    std::vector<float> qkv(len * 3 * h);
    for (size_t part = 0; part < 3; ++part) {
      std::vector<double> p =
          lw.qkv_w.size() == 3 ? linear(x, len, h, h, lw.qkv_w[part].data(), lw.qkv_b[part].data())
                               : std::vector<double>();
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t i = 0; i < h; ++i) {
          double v;
          if (lw.qkv_w.size() == 3) {
            v = p[t * h + i];
          } else {
            v = lw.qkv_b[0][part * h + i];
            for (int64_t k = 0; k < h; ++k)
              v += x[t * h + k] * lw.qkv_w[0][k * 3 * h + part * h + i];
          }
          qkv[t * 3 * h + part * h + i] = float(v);
        }
      }
    }
    auto ctx = RefAttention(qkv, h, heads, {0, len});
    auto o = linear(ctx, len, h, h, lw.out_w.data(), lw.out_b.data());
    for (int64_t t = 0; t < len; ++t) {
      std::vector<double> row(h);
      for (int64_t i = 0; i < h; ++i) row[i] = x[t * h + i] + o[t * h + i];
      RefLayerNorm(row, lw.ln1.gamma, lw.ln1.beta, lw.ln1.eps);
      std::copy(row.begin(), row.end(), x.begin() + t * h);
    }
    auto mid = linear(x, len, h, f, lw.ffn1_w.data(), lw.ffn1_b.data());
    for (double& v : mid) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    auto o2 = linear(mid, len, f, h, lw.ffn2_w.data(), lw.ffn2_b.data());
    for (int64_t t = 0; t < len; ++t) {
      std::vector<double> row(h);
      for (int64_t i = 0; i < h; ++i) row[i] = x[t * h + i] + o2[t * h + i];
      RefLayerNorm(row, lw.ln2.gamma, lw.ln2.beta, lw.ln2.eps);
      std::copy(row.begin(), row.end(), x.begin() + t * h);
    }
  }
  return x;
}

PackedBatch MakeBatch(const std::vector<int64_t>& lens, uint32_t seed) {
  std::mt19937 rng(seed);
  PackedBatch pb;
  pb.cu = {0};
  for (int64_t l : lens) {
    for (int64_t i = 0; i < l; ++i) {
      pb.ids.push_back(static_cast<int64_t>(rng() % 50));
      pb.type_ids.push_back(i >= l / 2 ? 1 : 0);
    }
    pb.cu.push_back(static_cast<int64_t>(pb.ids.size()));
  }
  return pb;
}

std::vector<float> RunEncoder(const FusedEncoder& enc, const PackedBatch& pb) {
  std::vector<float> out;
  Status st = enc.Run(pb, [&](const float* x) { out.assign(x, x + pb.cu.back() * enc.hidden()); });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

class FusedEncoderTest : public ::testing::TestWithParam<bool> {};

TEST_P(FusedEncoderTest, PackedBatchMatchesReferencePerSequence) {
  const bool separate = GetParam();
  const int64_t h = 64, f = 128;
  const int heads = 4;
  EncoderWeights w = SmallEncoder(h, f, 2, separate);
  FusedEncoderOptions o;
  o.heads = heads;
  o.threads = 2;
  auto enc = FusedEncoder::Create(w, o);
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  const std::vector<int64_t> lens = {5, 1, 17, 40, 9};
  PackedBatch pb = MakeBatch(lens, 7);
  auto got = RunEncoder(**enc, pb);
  ASSERT_EQ(got.size(), size_t(pb.cu.back() * h));
  for (size_t b = 0; b < lens.size(); ++b) {
    std::vector<int64_t> ids(pb.ids.begin() + pb.cu[b], pb.ids.begin() + pb.cu[b + 1]);
    std::vector<int64_t> types(pb.type_ids.begin() + pb.cu[b], pb.type_ids.begin() + pb.cu[b + 1]);
    auto ref = RefEncode(w, heads, ids, types);
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_NEAR(got[pb.cu[b] * h + i], ref[i], 2e-4) << "sequence " << b << " element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(QkvLayouts, FusedEncoderTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "separate" : "fused"; });

TEST(FusedEncoder, Bf16StaysCloseToFloat32) {
  if (!CpuHasAvx512Bf16()) GTEST_SKIP() << "no AVX512-BF16";
  EncoderWeights w = SmallEncoder(64, 128, 2, false);
  FusedEncoderOptions o;
  o.heads = 4;
  auto f32 = FusedEncoder::Create(w, o);
  o.precision = Precision::kBf16;
  auto b16 = FusedEncoder::Create(w, o);
  ASSERT_TRUE(f32.ok() && b16.ok());
  PackedBatch pb = MakeBatch({12, 30, 3}, 9);
  auto a = RunEncoder(**f32, pb), b = RunEncoder(**b16, pb);
  for (int64_t t = 0; t < pb.cu.back(); ++t) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < 64; ++i) {
      dot += double(a[t * 64 + i]) * b[t * 64 + i];
      na += double(a[t * 64 + i]) * a[t * 64 + i];
      nb += double(b[t * 64 + i]) * b[t * 64 + i];
    }
    EXPECT_GT(dot / std::sqrt(na * nb), 0.999) << "token " << t;
  }
  EXPECT_GT(MaxAbsDiff(a, b), 0.0) << "bf16 mode produced exactly the float32 result";
}

// Over 1024 tokens the per-token work runs in chunks; sequences cross chunk borders.
TEST(FusedEncoder, ChunkedBatchEqualsSequencesRunAlone) {
  EncoderWeights w = SmallEncoder(32, 64, 1, false);
  FusedEncoderOptions o;
  o.heads = 2;
  auto enc = FusedEncoder::Create(w, o);
  ASSERT_TRUE(enc.ok());
  std::vector<int64_t> lens(70, 37);
  lens.push_back(3);
  PackedBatch pb = MakeBatch(lens, 5);
  ASSERT_GT(pb.cu.back(), 2048);
  auto all = RunEncoder(**enc, pb);
  for (size_t b = 0; b < lens.size(); b += 9) {
    PackedBatch one;
    one.ids.assign(pb.ids.begin() + pb.cu[b], pb.ids.begin() + pb.cu[b + 1]);
    one.type_ids.assign(pb.type_ids.begin() + pb.cu[b], pb.type_ids.begin() + pb.cu[b + 1]);
    one.cu = {0, lens[b]};
    auto alone = RunEncoder(**enc, one);
    for (size_t i = 0; i < alone.size(); ++i) {
      ASSERT_NEAR(all[pb.cu[b] * 32 + i], alone[i], 1e-5) << "sequence " << b;
    }
  }
}

TEST(FusedEncoder, ConcurrentRunsAgree) {
  EncoderWeights w = SmallEncoder(32, 64, 1, false);
  FusedEncoderOptions o;
  o.heads = 2;
  o.threads = 1;
  auto enc = FusedEncoder::Create(w, o);
  ASSERT_TRUE(enc.ok());
  PackedBatch small = MakeBatch({3, 4}, 1), large = MakeBatch({30, 25, 8}, 2);
  const auto want_small = RunEncoder(**enc, small), want_large = RunEncoder(**enc, large);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 20; ++k) {
        const bool big = (i + k) % 2 == 0;
        if (RunEncoder(**enc, big ? large : small) != (big ? want_large : want_small)) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// CLS pooling reads one row per sequence: the last layer runs on those rows only
// (PackedBatch::needed_rows), and they equal a full run's, in every precision and
// across chunk borders.
class NeededRowsTest : public ::testing::TestWithParam<Precision> {};

TEST_P(NeededRowsTest, EqualAFullRunAndSkipTheRest) {
  const Precision p = GetParam();
  if (p == Precision::kBf16 && !CpuHasAvx512Bf16()) GTEST_SKIP() << "no AVX512-BF16";
  if (p == Precision::kInt8 && !CpuHasAvx512Vnni()) GTEST_SKIP() << "no AVX512-VNNI";
  const int64_t h = 32;
  EncoderWeights w = SmallEncoder(h, 64, 2, false);
  FusedEncoderOptions o;
  o.heads = 2;
  o.precision = p;
  auto enc = FusedEncoder::Create(w, o);
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  for (const std::vector<int64_t>& lens :
       {std::vector<int64_t>{5, 1, 17, 39, 9}, std::vector<int64_t>(70, 37)}) {
    PackedBatch pb = MakeBatch(lens, 3);
    const auto full = RunEncoder(**enc, pb);
    for (size_t b = 0; b < lens.size(); ++b) {
      // CLS rows, and the last token of every other sequence.
      pb.needed_rows.push_back(b % 2 == 0 ? pb.cu[b] : pb.cu[b + 1] - 1);
    }
    const auto part = RunEncoder(**enc, pb);
    ASSERT_EQ(part.size(), full.size());
    for (int64_t r : pb.needed_rows) {
      for (int64_t i = 0; i < h; ++i) {
        ASSERT_NEAR(part[r * h + i], full[r * h + i], 1e-5) << "row " << r << " element " << i;
      }
    }
    // The other rows skipped the last layer, so they differ from the full run.
    const int64_t other = pb.cu[1] - 1 == pb.needed_rows[0] ? pb.cu[1] - 2 : pb.cu[1] - 1;
    double diff = 0;
    for (int64_t i = 0; i < h; ++i) diff += std::fabs(part[other * h + i] - full[other * h + i]);
    EXPECT_GT(diff, 1e-3) << "row " << other << " was computed though not needed";
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, NeededRowsTest,
                         ::testing::Values(Precision::kFp32, Precision::kBf16, Precision::kInt8),
                         [](const auto& info) {
                           return std::string(info.param == Precision::kFp32   ? "fp32"
                                              : info.param == Precision::kBf16 ? "bf16"
                                                                               : "int8");
                         });

TEST(FusedEncoder, RejectsBadBatches) {
  EncoderWeights w = SmallEncoder(32, 64, 1, false);
  FusedEncoderOptions o;
  o.heads = 2;
  auto enc = FusedEncoder::Create(w, o);
  ASSERT_TRUE(enc.ok());
  auto run = [&](const PackedBatch& pb) { return (*enc)->Run(pb, [](const float*) {}); };

  PackedBatch oov = MakeBatch({4}, 1);
  oov.ids[2] = 50;
  Status st = run(oov);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("token id 50"), std::string::npos) << st.ToString();

  PackedBatch too_long = MakeBatch({41}, 1);
  EXPECT_EQ(run(too_long).code(), StatusCode::kOutOfRange);

  PackedBatch empty_seq = MakeBatch({3, 0, 2}, 1);
  EXPECT_EQ(run(empty_seq).code(), StatusCode::kInvalidArgument);

  PackedBatch bad_type = MakeBatch({3}, 1);
  bad_type.type_ids[0] = 2;
  EXPECT_EQ(run(bad_type).code(), StatusCode::kInvalidArgument);

  PackedBatch mismatched = MakeBatch({3}, 1);
  mismatched.cu.back() = 4;
  EXPECT_EQ(run(mismatched).code(), StatusCode::kInvalidArgument);

  EXPECT_EQ(run(PackedBatch{}).code(), StatusCode::kInvalidArgument);

  PackedBatch bad_row = MakeBatch({3, 2}, 1);
  bad_row.needed_rows = {0, 5};
  st = run(bad_row);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("needed row 5"), std::string::npos) << st.ToString();

  o.heads = 5;  // 32 is not divisible by 5
  EXPECT_EQ(FusedEncoder::Create(w, o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace infermesh::runtime::encoder
