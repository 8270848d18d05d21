// Conv and ConvTranspose (1-D, 2-D, 3-D and beyond; groups, dilations, strides,
// pads, auto_pad) by im2col / col2im around a single-precision GEMM.
//
// Conv, per image n and group g:  Y_g[Mg, S_out] = W_g[Mg, K] * col[K, S_out] (+ bias),
// where K = (C / group) * prod(kernel) and col is the im2col unfolding of X_g.
// ConvTranspose:  col[Mg * prod(kernel), S_in] = W_g^T * X_g, then col2im scatters
// col into Y_g. A 1x1 stride-1 unpadded Conv skips im2col (col is X_g itself).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/gemm.h"
#include "runtime/kernel.h"
#include "runtime/ops/conv_internal.h"

namespace infermesh::runtime::conv_internal {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Loop indices i in [0, loop_len) with 0 <= i * s + off < target_len, as [lo, hi).
inline void ValidRange(int64_t off, int64_t s, int64_t loop_len, int64_t target_len, int64_t* lo,
                       int64_t* hi) {
  int64_t l = off >= 0 ? 0 : CeilDiv(-off, s);
  int64_t h = (target_len - 1 - off) < 0 ? 0 : (target_len - 1 - off) / s + 1;
  h = std::min(h, loop_len);
  l = std::min(l, h);
  *lo = l;
  *hi = h;
}

// The spatial layout shared by im2col (X -> col) and col2im (col -> Y): the
// "image" side has dims `img`, the "grid" side (one col column per position)
// has dims `grid`; position p on the grid with kernel tap t reads/writes image
// coordinate p * stride - pad_begin + t * dilation.
struct Unfold {
  size_t rank;
  std::vector<int64_t> img, grid, kernel, stride, dilation, pad_begin;
  int64_t img_size, grid_size, kernel_size;

  // Calls fn(kernel tap offsets per dim) ... helpers below do the iteration.
  void TapOffsets(int64_t tap, int64_t* off) const {
    for (size_t i = rank; i-- > 0;) {
      int64_t k = tap % kernel[i];
      tap /= kernel[i];
      off[i] = k * dilation[i] - pad_begin[i];
    }
  }

  // For one kernel tap, visits each run of grid positions along the last dim:
  // fn(grid_offset, img_offset_or_-1, lo, hi) where [lo, hi) is the valid part
  // of the last-dim run (img_offset is the image index of grid position 0 of the
  // run, which may be out of range for positions outside [lo, hi)).
  template <typename Fn>
  void ForEachRun(const int64_t* off, Fn&& fn) const {
    const size_t last = rank - 1;
    int64_t lo, hi;
    ValidRange(off[last], stride[last], grid[last], img[last], &lo, &hi);
    int64_t outer = 1;
    for (size_t i = 0; i < last; ++i) outer *= grid[i];
    std::vector<int64_t> idx(rank, 0);
    for (int64_t o = 0; o < outer; ++o) {
      // Decode o into grid coordinates of dims [0, last).
      int64_t rem = o;
      bool valid = true;
      int64_t img_off = 0;
      for (size_t i = last; i-- > 0;) {
        idx[i] = rem % grid[i];
        rem /= grid[i];
      }
      for (size_t i = 0; i < last; ++i) {
        int64_t c = idx[i] * stride[i] + off[i];
        if (c < 0 || c >= img[i]) valid = false;
        img_off = img_off * img[i] + c;
      }
      img_off = img_off * img[last] + off[last];
      fn(o * grid[last], valid ? img_off : -1, valid ? lo : 0, valid ? hi : 0);
    }
  }
};

// col[channels * kernel_size, grid_size] from src[channels, img...].
void Im2Col(const Unfold& u, const float* src, int64_t channels, float* col, IntraOpPool* pool) {
  const int64_t rows = channels * u.kernel_size;
  const int64_t last_len = u.grid[u.rank - 1];
  const int64_t s = u.stride[u.rank - 1];
  auto body = [&](int64_t begin, int64_t end) {
    std::vector<int64_t> off(u.rank);
    for (int64_t r = begin; r < end; ++r) {
      const float* plane = src + (r / u.kernel_size) * u.img_size;
      float* dst = col + r * u.grid_size;
      u.TapOffsets(r % u.kernel_size, off.data());
      u.ForEachRun(off.data(), [&](int64_t g, int64_t img_off, int64_t lo, int64_t hi) {
        float* d = dst + g;
        std::fill(d, d + lo, 0.0f);
        if (hi > lo) {
          const float* p = plane + (img_off + lo * s);
          if (s == 1) {
            std::memcpy(d + lo, p, static_cast<size_t>(hi - lo) * sizeof(float));
          } else {
            for (int64_t j = lo; j < hi; ++j) d[j] = p[(j - lo) * s];
          }
        }
        std::fill(d + std::max(lo, hi), d + last_len, 0.0f);
      });
    }
  };
  if (pool != nullptr && rows * u.grid_size > 32768) {
    pool->ParallelFor(rows, 4, body);
  } else {
    body(0, rows);
  }
}

// dst[channels, img...] += scatter of col[channels * kernel_size, grid_size].
// Parallel over channels: rows of one channel only touch that channel's plane.
void Col2Im(const Unfold& u, const float* col, int64_t channels, float* dst, IntraOpPool* pool) {
  const int64_t s = u.stride[u.rank - 1];
  auto body = [&](int64_t begin, int64_t end) {
    std::vector<int64_t> off(u.rank);
    for (int64_t c = begin; c < end; ++c) {
      float* plane = dst + c * u.img_size;
      for (int64_t t = 0; t < u.kernel_size; ++t) {
        const float* src = col + (c * u.kernel_size + t) * u.grid_size;
        u.TapOffsets(t, off.data());
        u.ForEachRun(off.data(), [&](int64_t g, int64_t img_off, int64_t lo, int64_t hi) {
          if (hi <= lo) return;
          const float* sp = src + g;
          float* p = plane + (img_off + lo * s);
          for (int64_t j = lo; j < hi; ++j) p[(j - lo) * s] += sp[j];
        });
      }
    }
  };
  if (pool != nullptr && channels * u.kernel_size * u.grid_size > 32768) {
    pool->ParallelFor(channels, 1, body);
  } else {
    body(0, channels);
  }
}

void AddBias(const float* bias, int64_t channels, int64_t plane, float* y) {
  if (bias == nullptr) return;
  for (int64_t c = 0; c < channels; ++c) {
    float b = bias[c];
    float* p = y + c * plane;
    for (int64_t j = 0; j < plane; ++j) p[j] += b;
  }
}

// Shared input checks of Conv and ConvTranspose.
Status CheckBias(const std::string& name, const char* op, const Tensor* b, int64_t m) {
  if (b == nullptr) return OkStatus();
  if (b->rank() != 1 || b->dim(0) != m) {
    return RunError(
        name, op,
        "bias shape " + ShapeToString(b->shape()) + " must be [" + std::to_string(m) + "]");
  }
  return OkStatus();
}

Result<std::vector<int64_t>> KernelFromWeight(const std::string& name, const char* op,
                                              const WindowAttrs& w, const Tensor& x,
                                              const Tensor& weight) {
  if (x.rank() < 3) {
    return RunError(name, op,
                    "input rank must be >= 3 (N, C, spatial...), got " + ShapeToString(x.shape()));
  }
  if (weight.rank() != x.rank()) {
    return RunError(name, op,
                    "weight shape " + ShapeToString(weight.shape()) +
                        " must have the input's rank " + std::to_string(x.rank()));
  }
  std::vector<int64_t> kernel(weight.shape().begin() + 2, weight.shape().end());
  if (!w.kernel.empty() && w.kernel != kernel) {
    return RunError(name, op,
                    "kernel_shape " + ShapeToString(w.kernel) + " disagrees with weight shape " +
                        ShapeToString(weight.shape()));
  }
  return kernel;
}

Unfold MakeUnfold(std::vector<int64_t> img, std::vector<int64_t> grid, const WindowGeometry& g) {
  Unfold u;
  u.rank = g.rank;
  u.img = std::move(img);
  u.grid = std::move(grid);
  u.kernel = g.kernel;
  u.stride = g.stride;
  u.dilation = g.dilation;
  u.pad_begin = g.pad_begin;
  u.img_size = Product(u.img);
  u.grid_size = Product(u.grid);
  u.kernel_size = Product(u.kernel);
  return u;
}

class ConvKernel final : public Kernel {
 public:
  ConvKernel(std::string name, WindowAttrs w, int64_t group)
      : name_(std::move(name)), w_(std::move(w)), group_(group) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    const Tensor& weight = ctx.in(1);
    const Tensor* bias = ctx.input(2);
    IM_ASSIGN_OR_RETURN(std::vector<int64_t> kernel,
                        KernelFromWeight(name_, "Conv", w_, x, weight));
    const int64_t n = x.dim(0), c = x.dim(1), m = weight.dim(0), cg = weight.dim(1);
    if (cg * group_ != c) {
      return RunError(name_, "Conv",
                      "input channels " + std::to_string(c) + " != weight channels " +
                          std::to_string(cg) + " * group " + std::to_string(group_));
    }
    if (m % group_ != 0) {
      return RunError(name_, "Conv",
                      "output channels " + std::to_string(m) + " not divisible by group " +
                          std::to_string(group_));
    }
    IM_RETURN_IF_ERROR(CheckBias(name_, "Conv", bias, m));
    std::vector<int64_t> in(x.shape().begin() + 2, x.shape().end());
    IM_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindow(name_, w_, in, kernel));
    Shape out_shape{n, m};
    out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, out_shape);
    if (y.numel() == 0) return OkStatus();

    const Unfold u = MakeUnfold(in, g.out, g);
    const int64_t mg = m / group_;
    const int64_t k = cg * u.kernel_size;
    bool pointwise = true;
    for (size_t i = 0; i < g.rank; ++i) {
      if (g.kernel[i] != 1 || g.stride[i] != 1 || g.pad_begin[i] != 0 || g.pad_end[i] != 0) {
        pointwise = false;
      }
    }
    const float* xd = x.data<float>();
    const float* wd = weight.data<float>();
    const float* bd = bias ? bias->data<float>() : nullptr;
    float* yd = y.data<float>();
    const int64_t tasks = n * group_;

    // One (image, group) step; `col` is scratch of k * grid_size floats.
    auto step = [&](int64_t task, float* col, IntraOpPool* pool) -> Status {
      const int64_t ni = task / group_, gi = task % group_;
      const float* src = xd + (ni * c + gi * cg) * u.img_size;
      if (!pointwise) {
        Im2Col(u, src, cg, col, pool);
        src = col;
      }
      float* dst = yd + (ni * m + gi * mg) * u.grid_size;
      IM_RETURN_IF_ERROR(Sgemm({.m = mg, .n = u.grid_size, .k = k}, wd + gi * mg * k, src, dst));
      AddBias(bd ? bd + gi * mg : nullptr, mg, u.grid_size, dst);
      return OkStatus();
    };

    const size_t col_floats = pointwise ? 0 : static_cast<size_t>(k * u.grid_size);
    if (tasks > 1 && ctx.pool().threads() > 1 && group_ > 1) {
      // Many small GEMMs (grouped / depthwise): one task per thread, each GEMM
      // single-threaded (OpenMP nesting is off inside ParallelFor).
      std::vector<Status> failures(static_cast<size_t>(tasks));
      ctx.ParallelFor(tasks, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> col(col_floats);
        for (int64_t t = begin; t < end; ++t) failures[t] = step(t, col.data(), nullptr);
      });
      for (auto& s : failures) IM_RETURN_IF_ERROR(s);
      return OkStatus();
    }
    Tensor col;
    if (col_floats > 0) {
      col = ctx.Scratch(DataType::kFloat32, {static_cast<int64_t>(col_floats)});
    }
    for (int64_t t = 0; t < tasks; ++t) {
      IM_RETURN_IF_ERROR(step(t, col_floats ? col.data<float>() : nullptr, &ctx.pool()));
    }
    return OkStatus();
  }

 private:
  std::string name_;
  WindowAttrs w_;
  int64_t group_;
};

Result<KernelInit> MakeConv(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 3));
  for (size_t i = 0; i < 3; ++i) IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32}));
  IM_ASSIGN_OR_RETURN(WindowAttrs w, ParseWindowAttrs(node, {.dilations = true}));
  const int64_t group = node.attrs.GetInt("group", 1);
  if (group < 1) return node.Error("group must be >= 1");
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<ConvKernel>(node.name, std::move(w), group),
                    {DataType::kFloat32}};
}

// ---------------------------------------------------------------------------
// ConvTranspose

class ConvTransposeKernel final : public Kernel {
 public:
  ConvTransposeKernel(std::string name, WindowAttrs w, int64_t group,
                      std::vector<int64_t> output_padding, std::vector<int64_t> output_shape)
      : name_(std::move(name)),
        w_(std::move(w)),
        group_(group),
        output_padding_(std::move(output_padding)),
        output_shape_(std::move(output_shape)) {}

  Status Run(KernelContext& ctx) const override {
    static constexpr const char* kOp = "ConvTranspose";
    const Tensor& x = ctx.in(0);
    const Tensor& weight = ctx.in(1);
    const Tensor* bias = ctx.input(2);
    IM_ASSIGN_OR_RETURN(std::vector<int64_t> kernel, KernelFromWeight(name_, kOp, w_, x, weight));
    const int64_t n = x.dim(0), c = x.dim(1), mg = weight.dim(1);
    if (weight.dim(0) != c || c % group_ != 0) {
      return RunError(name_, kOp,
                      "weight shape " + ShapeToString(weight.shape()) + " does not fit " +
                          std::to_string(c) + " input channels in " + std::to_string(group_) +
                          " groups");
    }
    const int64_t cg = c / group_, m = mg * group_;
    IM_RETURN_IF_ERROR(CheckBias(name_, kOp, bias, m));
    std::vector<int64_t> in(x.shape().begin() + 2, x.shape().end());
    IM_ASSIGN_OR_RETURN(WindowGeometry g, Geometry(in, kernel));

    Shape out_shape{n, m};
    out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, out_shape);
    if (y.numel() == 0) return OkStatus();
    float* yd = y.data<float>();
    std::fill(yd, yd + y.numel(), 0.0f);

    // Here the grid is the input (one col column per input position) and the
    // image is the output.
    const Unfold u = MakeUnfold(g.out, in, g);
    const int64_t rows = mg * u.kernel_size;
    Tensor col = ctx.Scratch(DataType::kFloat32, {rows * u.grid_size});
    const float* xd = x.data<float>();
    const float* wd = weight.data<float>();
    const float* bd = bias ? bias->data<float>() : nullptr;
    for (int64_t ni = 0; ni < n; ++ni) {
      for (int64_t gi = 0; gi < group_; ++gi) {
        const float* src = xd + (ni * c + gi * cg) * u.grid_size;
        float* dst = yd + (ni * m + gi * mg) * u.img_size;
        // W_g is stored [cg, mg * kernel_size].
        IM_RETURN_IF_ERROR(Sgemm({.m = rows, .n = u.grid_size, .k = cg, .trans_a = true},
                                 wd + gi * cg * rows, src, col.data<float>()));
        Col2Im(u, col.data<float>(), mg, dst, &ctx.pool());
        AddBias(bd ? bd + gi * mg : nullptr, mg, u.img_size, dst);
      }
    }
    return OkStatus();
  }

 private:
  Result<WindowGeometry> Geometry(const std::vector<int64_t>& in,
                                  const std::vector<int64_t>& kernel) const {
    const size_t r = in.size();
    auto error = [&](const std::string& reason) {
      return RunError(name_, "ConvTranspose", reason);
    };
    if (kernel.size() != r) return error("kernel rank mismatch");
    auto check_len = [&](const std::vector<int64_t>& v, size_t want, const char* what) -> Status {
      if (!v.empty() && v.size() != want) {
        return error(std::string(what) + " length " + std::to_string(v.size()) +
                     " != " + std::to_string(want));
      }
      return OkStatus();
    };
    IM_RETURN_IF_ERROR(check_len(w_.strides, r, "strides"));
    IM_RETURN_IF_ERROR(check_len(w_.dilations, r, "dilations"));
    IM_RETURN_IF_ERROR(check_len(w_.pads, 2 * r, "pads"));
    IM_RETURN_IF_ERROR(check_len(output_padding_, r, "output_padding"));
    // output_shape may name only the spatial dims or the whole output.
    std::vector<int64_t> os = output_shape_;
    if (os.size() == r + 2) os.erase(os.begin(), os.begin() + 2);
    IM_RETURN_IF_ERROR(check_len(os, r, "output_shape"));

    WindowGeometry g;
    g.rank = r;
    g.in = in;
    g.kernel = kernel;
    g.out.resize(r);
    g.stride.resize(r);
    g.dilation.resize(r);
    g.pad_begin.resize(r);
    g.pad_end.resize(r);
    for (size_t i = 0; i < r; ++i) {
      const int64_t s = w_.strides.empty() ? 1 : w_.strides[i];
      const int64_t d = w_.dilations.empty() ? 1 : w_.dilations[i];
      const int64_t adj = output_padding_.empty() ? 0 : output_padding_[i];
      const int64_t full = (in[i] - 1) * s + adj + (kernel[i] - 1) * d + 1;
      g.stride[i] = s;
      g.dilation[i] = d;
      const bool same = w_.auto_pad == AutoPad::kSameUpper || w_.auto_pad == AutoPad::kSameLower;
      if (!os.empty() || same) {
        const int64_t out = !os.empty() ? os[i] : in[i] * s;
        if (out < 0) return error("output_shape must be non-negative");
        // Negative total padding (output_shape larger than the full result)
        // leaves the extra tail positions at bias only.
        const int64_t total = std::max<int64_t>(0, full - out);
        g.pad_begin[i] = w_.auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
        g.pad_end[i] = total - g.pad_begin[i];
        g.out[i] = out;
      } else {
        if (w_.auto_pad == AutoPad::kNotSet && !w_.pads.empty()) {
          g.pad_begin[i] = w_.pads[i];
          g.pad_end[i] = w_.pads[i + r];
        }
        g.out[i] = full - g.pad_begin[i] - g.pad_end[i];
        if (g.out[i] < 0) return error("pads exceed the output size");
      }
    }
    return g;
  }

  std::string name_;
  WindowAttrs w_;
  int64_t group_;
  std::vector<int64_t> output_padding_;
  std::vector<int64_t> output_shape_;
};

Result<KernelInit> MakeConvTranspose(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 3));
  for (size_t i = 0; i < 3; ++i) IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32}));
  IM_ASSIGN_OR_RETURN(WindowAttrs w, ParseWindowAttrs(node, {.dilations = true}));
  const int64_t group = node.attrs.GetInt("group", 1);
  if (group < 1) return node.Error("group must be >= 1");
  std::vector<int64_t> output_padding = node.attrs.GetInts("output_padding");
  std::vector<int64_t> output_shape = node.attrs.GetInts("output_shape");
  for (int64_t p : output_padding) {
    if (p < 0) return node.Error("output_padding must be non-negative");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{
      std::make_unique<ConvTransposeKernel>(node.name, std::move(w), group,
                                            std::move(output_padding), std::move(output_shape)),
      {DataType::kFloat32}};
}

}  // namespace

void RegisterConvOps(KernelRegistry& r) {
  r.Add("Conv", 1, MakeConv);
  r.Add("ConvTranspose", 1, MakeConvTranspose);
}

}  // namespace infermesh::runtime::conv_internal
