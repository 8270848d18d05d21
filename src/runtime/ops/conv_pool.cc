// Pooling: MaxPool (with Indices, storage_order, dilations, ceil_mode),
// AveragePool (count_include_pad), LpPool, and the Global* variants, for any
// number of spatial dims. Each (n, c) plane is pooled independently; planes are
// spread over the intra-op pool.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/conv_internal.h"

namespace infermesh::runtime::conv_internal {
namespace {

enum class PoolKind { kMax, kAverage, kLp };

const char* KindName(PoolKind k) {
  switch (k) {
    case PoolKind::kMax:
      return "MaxPool";
    case PoolKind::kAverage:
      return "AveragePool";
    case PoolKind::kLp:
      return "LpPool";
  }
  return "Pool";
}

// Per spatial dim and output index: the first window coordinate and the range
// of kernel taps that land inside the input, plus the number of taps inside
// the padded input (the count_include_pad divisor).
struct DimTable {
  std::vector<int64_t> start, tap_lo, tap_hi, padded_count;
};

std::vector<DimTable> MakeTables(const WindowGeometry& g) {
  std::vector<DimTable> t(g.rank);
  for (size_t i = 0; i < g.rank; ++i) {
    const int64_t s = g.stride[i], d = g.dilation[i], k = g.kernel[i], in = g.in[i];
    for (int64_t o = 0; o < g.out[i]; ++o) {
      const int64_t start = o * s - g.pad_begin[i];
      int64_t lo = k, hi = 0, padded = 0;
      for (int64_t tap = 0; tap < k; ++tap) {
        const int64_t c = start + tap * d;
        if (c >= 0 && c < in) {
          lo = std::min(lo, tap);
          hi = std::max(hi, tap + 1);
        }
        if (c >= -g.pad_begin[i] && c < in + g.pad_end[i]) ++padded;
      }
      if (hi < lo) lo = hi = 0;
      t[i].start.push_back(start);
      t[i].tap_lo.push_back(lo);
      t[i].tap_hi.push_back(hi);
      t[i].padded_count.push_back(padded);
    }
  }
  return t;
}

// Visits every in-input tap of the window at output multi-index `o`:
// fn(offset within the plane). Returns the number of taps visited.
template <typename Fn>
int64_t ForEachTap(const WindowGeometry& g, const std::vector<DimTable>& t,
                   const std::vector<int64_t>& in_strides, const int64_t* o, Fn&& fn) {
  const size_t r = g.rank;
  int64_t tap[8];
  for (size_t i = 0; i < r; ++i) {
    if (t[i].tap_lo[o[i]] >= t[i].tap_hi[o[i]]) return 0;
    tap[i] = t[i].tap_lo[o[i]];
  }
  const size_t last = r - 1;
  const int64_t lo = t[last].tap_lo[o[last]], hi = t[last].tap_hi[o[last]];
  const int64_t d = g.dilation[last];
  int64_t count = 0;
  while (true) {
    int64_t base = 0;
    for (size_t i = 0; i < last; ++i) {
      base += (t[i].start[o[i]] + tap[i] * g.dilation[i]) * in_strides[i];
    }
    base += t[last].start[o[last]];
    for (int64_t k = lo; k < hi; ++k) fn(base + k * d);
    count += hi - lo;
    // Advance the odometer over dims [0, last).
    size_t i = last;
    while (i > 0) {
      --i;
      if (++tap[i] < t[i].tap_hi[o[i]]) break;
      tap[i] = t[i].tap_lo[o[i]];
      if (i == 0) return count;
    }
    if (last == 0) return count;
  }
}

template <typename T>
class PoolKernel final : public Kernel {
 public:
  PoolKernel(std::string name, PoolKind kind, WindowAttrs w, bool count_include_pad, int64_t p,
             int64_t storage_order)
      : name_(std::move(name)),
        kind_(kind),
        w_(std::move(w)),
        count_include_pad_(count_include_pad),
        p_(p),
        storage_order_(storage_order) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.rank() < 3) {
      return RunError(
          name_, KindName(kind_),
          "input rank must be >= 3 (N, C, spatial...), got " + ShapeToString(x.shape()));
    }
    if (x.rank() - 2 > 8) return RunError(name_, KindName(kind_), "more than 8 spatial dims");
    std::vector<int64_t> in(x.shape().begin() + 2, x.shape().end());
    IM_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindow(name_, w_, in, w_.kernel));
    Shape out_shape{x.dim(0), x.dim(1)};
    out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
    Tensor& y = ctx.AllocateOutput(0, DataTypeOf<T>(), out_shape);
    int64_t* indices = nullptr;
    if (ctx.num_outputs() > 1) {
      indices = ctx.AllocateOutput(1, DataType::kInt64, out_shape).template data<int64_t>();
    }
    if (y.numel() == 0) return OkStatus();

    const std::vector<DimTable> tables = MakeTables(g);
    const size_t r = g.rank;
    std::vector<int64_t> in_strides(r, 1);
    for (size_t i = r - 1; i-- > 0;) in_strides[i] = in_strides[i + 1] * in[i + 1];
    const int64_t in_plane = Product(in), out_plane = Product(g.out);
    const int64_t planes = x.dim(0) * x.dim(1);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();

    ctx.ParallelFor(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, in_plane)),
                    [&](int64_t begin, int64_t end) {
                      std::vector<int64_t> o(r);
                      for (int64_t pl = begin; pl < end; ++pl) {
                        const T* src = xd + pl * in_plane;
                        std::fill(o.begin(), o.end(), 0);
                        for (int64_t j = 0; j < out_plane; ++j) {
                          const int64_t out_index = pl * out_plane + j;
                          PoolOne(g, tables, in_strides, o.data(), src, pl * in_plane,
                                  yd + out_index, indices ? indices + out_index : nullptr);
                          for (size_t i = r; i-- > 0;) {
                            if (++o[i] < g.out[i]) break;
                            o[i] = 0;
                          }
                        }
                      }
                    });
    return OkStatus();
  }

 private:
  void PoolOne(const WindowGeometry& g, const std::vector<DimTable>& t,
               const std::vector<int64_t>& in_strides, const int64_t* o, const T* src,
               int64_t plane_offset, T* out, int64_t* index) const {
    if (kind_ == PoolKind::kMax) {
      T best = std::numeric_limits<T>::lowest();
      int64_t best_off = -1;
      ForEachTap(g, t, in_strides, o, [&](int64_t off) {
        if (best_off < 0 || src[off] > best) {
          best = src[off];
          best_off = off;
        }
      });
      *out = best;
      if (index != nullptr) *index = plane_offset + SpatialIndex(g, best_off < 0 ? 0 : best_off);
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      double sum = 0;
      int64_t n;
      if (kind_ == PoolKind::kAverage) {
        n = ForEachTap(g, t, in_strides, o, [&](int64_t off) { sum += src[off]; });
        if (count_include_pad_) {
          n = 1;
          for (size_t i = 0; i < g.rank; ++i) n *= t[i].padded_count[o[i]];
        }
        *out = static_cast<float>(sum / static_cast<double>(n));
      } else {
        const double p = static_cast<double>(p_);
        ForEachTap(g, t, in_strides, o, [&](int64_t off) {
          const double v = std::fabs(static_cast<double>(src[off]));
          sum += p_ == 1 ? v : (p_ == 2 ? v * v : std::pow(v, p));
        });
        *out =
            static_cast<float>(p_ == 1 ? sum : (p_ == 2 ? std::sqrt(sum) : std::pow(sum, 1 / p)));
      }
    }
  }

  // Maps a row-major offset within a plane to the Indices convention: row-major
  // (storage_order 0) or column-major (storage_order 1) over the spatial dims.
  int64_t SpatialIndex(const WindowGeometry& g, int64_t off) const {
    if (storage_order_ == 0) return off;
    int64_t coords[8];
    for (size_t i = g.rank; i-- > 0;) {
      coords[i] = off % g.in[i];
      off /= g.in[i];
    }
    int64_t idx = 0;
    for (size_t i = g.rank; i-- > 0;) idx = idx * g.in[i] + coords[i];
    return idx;
  }

  std::string name_;
  PoolKind kind_;
  WindowAttrs w_;
  bool count_include_pad_;
  int64_t p_;
  int64_t storage_order_;
};

Result<KernelInit> MakePool(const NodeInfo& node, PoolKind kind) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  const bool max = kind == PoolKind::kMax;
  if (max && node.opset >= 12) {
    IM_RETURN_IF_ERROR(
        node.RequireType(0, {DataType::kFloat32, DataType::kInt8, DataType::kUint8}));
  } else {
    IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
  }
  WindowAttrSet set;
  switch (kind) {
    case PoolKind::kMax:
      set = {.dilations = node.opset >= 10, .ceil_mode = node.opset >= 10};
      break;
    case PoolKind::kAverage:
      set = {.dilations = node.opset >= 19, .ceil_mode = node.opset >= 10};
      break;
    case PoolKind::kLp:
      set = {.dilations = node.opset >= 18, .ceil_mode = node.opset >= 18};
      break;
  }
  IM_ASSIGN_OR_RETURN(WindowAttrs w, ParseWindowAttrs(node, set));
  if (w.kernel.empty()) return node.Error("kernel_shape is required");
  bool count_include_pad = false;
  if (kind == PoolKind::kAverage && node.opset >= 7) {
    int64_t c = node.attrs.GetInt("count_include_pad", 0);
    if (c != 0 && c != 1) return node.Error("count_include_pad must be 0 or 1");
    count_include_pad = c == 1;
  }
  int64_t p = 2;
  if (kind == PoolKind::kLp) {
    p = node.attrs.GetInt("p", 2);
    if (p < 1) return node.Error("p must be >= 1");
  }
  int64_t storage_order = 0;
  if (max && node.opset >= 8) {
    storage_order = node.attrs.GetInt("storage_order", 0);
    if (storage_order != 0 && storage_order != 1) {
      return node.Error("storage_order must be 0 or 1");
    }
  }
  const size_t max_outputs = (max && node.opset >= 8) ? 2 : 1;
  if (node.num_outputs < 1 || node.num_outputs > max_outputs) {
    return node.Error("expects 1.." + std::to_string(max_outputs) + " outputs");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  const DataType t = node.input_types[0];
  std::vector<DataType> outs{t};
  if (node.num_outputs == 2) outs.push_back(DataType::kInt64);
  std::unique_ptr<Kernel> k;
  if (t == DataType::kInt8) {
    k = std::make_unique<PoolKernel<int8_t>>(node.name, kind, std::move(w), count_include_pad, p,
                                             storage_order);
  } else if (t == DataType::kUint8) {
    k = std::make_unique<PoolKernel<uint8_t>>(node.name, kind, std::move(w), count_include_pad, p,
                                              storage_order);
  } else {
    k = std::make_unique<PoolKernel<float>>(node.name, kind, std::move(w), count_include_pad, p,
                                            storage_order);
  }
  return KernelInit{std::move(k), std::move(outs)};
}

// ---------------------------------------------------------------------------
// GlobalAveragePool, GlobalMaxPool, GlobalLpPool: one value per (n, c) plane.

class GlobalPoolKernel final : public Kernel {
 public:
  GlobalPoolKernel(std::string name, std::string op, PoolKind kind, int64_t p)
      : name_(std::move(name)), op_(std::move(op)), kind_(kind), p_(p) {}

  Status Run(KernelContext& ctx) const override {
    const Tensor& x = ctx.in(0);
    if (x.rank() < 2) {
      return RunError(name_, op_, "input rank must be >= 2, got " + ShapeToString(x.shape()));
    }
    Shape out_shape(x.rank(), 1);
    out_shape[0] = x.dim(0);
    out_shape[1] = x.dim(1);
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, out_shape);
    const int64_t planes = x.dim(0) * x.dim(1);
    const int64_t plane = planes == 0 ? 0 : x.numel() / planes;
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    if (planes == 0) return OkStatus();
    ctx.ParallelFor(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plane)),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t pl = begin; pl < end; ++pl) {
                        yd[pl] = Reduce(xd + pl * plane, plane);
                      }
                    });
    return OkStatus();
  }

 private:
  float Reduce(const float* p, int64_t n) const {
    if (kind_ == PoolKind::kMax) {
      if (n == 0) return std::numeric_limits<float>::lowest();
      float m = p[0];
      for (int64_t i = 1; i < n; ++i) m = std::max(m, p[i]);
      return m;
    }
    double sum = 0;
    if (kind_ == PoolKind::kAverage) {
      for (int64_t i = 0; i < n; ++i) sum += p[i];
      return static_cast<float>(sum / static_cast<double>(n));
    }
    for (int64_t i = 0; i < n; ++i) sum += std::pow(std::fabs(static_cast<double>(p[i])), p_);
    return static_cast<float>(std::pow(sum, 1.0 / static_cast<double>(p_)));
  }

  std::string name_, op_;
  PoolKind kind_;
  int64_t p_;
};

Result<KernelInit> MakeGlobalPool(const NodeInfo& node, PoolKind kind) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(1, 1));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
  int64_t p = 2;
  if (kind == PoolKind::kLp) {
    p = node.attrs.GetInt("p", 2);
    if (p < 1) return node.Error("p must be >= 1");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<GlobalPoolKernel>(node.name, node.op_type, kind, p),
                    {DataType::kFloat32}};
}

// ---------------------------------------------------------------------------
// MaxUnpool: scatters X into a zero tensor at the flat indices MaxPool produced.

class MaxUnpoolKernel final : public Kernel {
 public:
  MaxUnpoolKernel(std::string name, WindowAttrs w) : name_(std::move(name)), w_(std::move(w)) {}

  Status Run(KernelContext& ctx) const override {
    static constexpr const char* kOp = "MaxUnpool";
    const Tensor& x = ctx.in(0);
    const Tensor& idx = ctx.in(1);
    const Tensor* shape_t = ctx.input(2);
    if (x.rank() < 3 || x.rank() > 16) {
      return RunError(name_, kOp, "input rank must be in [3, 16], got " + ShapeToString(x.shape()));
    }
    if (idx.shape() != x.shape()) {
      return RunError(name_, kOp,
                      "indices shape " + ShapeToString(idx.shape()) + " != input shape " +
                          ShapeToString(x.shape()));
    }
    const size_t r = x.rank() - 2;
    if (w_.kernel.size() != r || (!w_.strides.empty() && w_.strides.size() != r) ||
        (!w_.pads.empty() && w_.pads.size() != 2 * r)) {
      return RunError(name_, kOp, "window attributes do not match the spatial rank");
    }
    // Indices are flat offsets into the default output (the pooled input's shape).
    Shape def{x.dim(0), x.dim(1)};
    for (size_t i = 0; i < r; ++i) {
      const int64_t s = w_.strides.empty() ? 1 : w_.strides[i];
      const int64_t pads = w_.pads.empty() ? 0 : w_.pads[i] + w_.pads[i + r];
      def.push_back((x.dim(i + 2) - 1) * s + w_.kernel[i] - pads);
      if (def.back() < 0) return RunError(name_, kOp, "pads exceed the output size");
    }
    Shape out = def;
    if (shape_t != nullptr) {
      // A larger output_shape pads the default output at the end of each dim.
      out = shape_t->ToInt64Vector();
      bool ok = out.size() == def.size() && out[0] == def[0] && out[1] == def[1];
      for (size_t i = 2; ok && i < out.size(); ++i) ok = out[i] >= def[i];
      if (!ok) {
        return RunError(name_, kOp,
                        "output_shape " + ShapeToString(out) + " must cover the default shape " +
                            ShapeToString(def));
      }
    }
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, out);
    float* yd = y.data<float>();
    std::fill(yd, yd + y.numel(), 0.0f);
    const float* xd = x.data<float>();
    const int64_t* id = idx.data<int64_t>();
    const int64_t def_numel = NumElements(def);
    for (int64_t j = 0; j < x.numel(); ++j) {
      int64_t v = id[j];
      if (v < 0 || v >= def_numel) {
        return RunError(name_, kOp,
                        "index " + std::to_string(v) + " is outside the output of " +
                            std::to_string(def_numel) + " elements");
      }
      if (out != def) {
        int64_t coords[16];
        for (size_t i = def.size(); i-- > 0;) {
          coords[i] = v % def[i];
          v /= def[i];
        }
        for (size_t i = 0; i < out.size(); ++i) v = v * out[i] + coords[i];
      }
      yd[v] = xd[j];
    }
    return OkStatus();
  }

 private:
  std::string name_;
  WindowAttrs w_;
};

Result<KernelInit> MakeMaxUnpool(const NodeInfo& node) {
  IM_RETURN_IF_ERROR(node.RequireInputCount(2, 3));
  IM_RETURN_IF_ERROR(node.RequireType(0, {DataType::kFloat32}));
  IM_RETURN_IF_ERROR(node.RequireType(1, {DataType::kInt64}));
  IM_RETURN_IF_ERROR(node.RequireType(2, {DataType::kInt64}));
  IM_ASSIGN_OR_RETURN(WindowAttrs w, ParseWindowAttrs(node, {}));
  if (w.kernel.empty()) return node.Error("kernel_shape is required");
  if (w.auto_pad != AutoPad::kNotSet) return node.Error("MaxUnpool has no auto_pad");
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<MaxUnpoolKernel>(node.name, std::move(w)),
                    {DataType::kFloat32}};
}

}  // namespace

void RegisterPoolOps(KernelRegistry& r) {
  r.Add("MaxPool", 1, [](const NodeInfo& n) { return MakePool(n, PoolKind::kMax); });
  r.Add("AveragePool", 1, [](const NodeInfo& n) { return MakePool(n, PoolKind::kAverage); });
  // LpPool-1 took a float p; version 2 made it an int.
  r.Add("LpPool", 2, [](const NodeInfo& n) { return MakePool(n, PoolKind::kLp); });
  r.Add("GlobalMaxPool", 1, [](const NodeInfo& n) { return MakeGlobalPool(n, PoolKind::kMax); });
  r.Add("GlobalAveragePool", 1,
        [](const NodeInfo& n) { return MakeGlobalPool(n, PoolKind::kAverage); });
  r.Add("MaxUnpool", 9, MakeMaxUnpool);
  r.Add("GlobalLpPool", 2, [](const NodeInfo& n) { return MakeGlobalPool(n, PoolKind::kLp); });
}

}  // namespace infermesh::runtime::conv_internal
