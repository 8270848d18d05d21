// Einsum (opset 12) for float32: explicit ("ij,jk->ik") and implicit ("ij,jk")
// output, ellipsis broadcasting, repeated labels within an operand (diagonals) and
// summation over labels absent from the output.
//
// The kernel is a direct loop over every label combination, accumulating in double:
// exact and general, but O(product of all label sizes). Encoders rarely carry Einsum;
// a GEMM-based path can be added here if one does.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/ops/math_internal.h"

namespace infermesh::runtime::math {
namespace {

// Labels are 0..51 for letters; ellipsis dimensions get kEllipsisBase + j, counted
// from the leftmost broadcast dimension.
constexpr int kEllipsisBase = 64;
constexpr int kEllipsisMark = -1;

int LetterLabel(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= 'A' && c <= 'Z') return 26 + (c - 'A');
  return -2;
}

// One side of the equation: labels, with kEllipsisMark standing for "...".
Result<std::vector<int>> ParseTerm(const std::string& term) {
  std::vector<int> out;
  bool seen_ellipsis = false;
  for (size_t i = 0; i < term.size(); ++i) {
    if (term[i] == '.') {
      if (seen_ellipsis || term.compare(i, 3, "...") != 0) {
        return InvalidArgument("bad ellipsis in einsum term '" + term + "'");
      }
      seen_ellipsis = true;
      out.push_back(kEllipsisMark);
      i += 2;
      continue;
    }
    const int l = LetterLabel(term[i]);
    if (l < 0) return InvalidArgument("bad character in einsum term '" + term + "'");
    out.push_back(l);
  }
  return out;
}

struct EinsumSpec {
  std::vector<std::vector<int>> inputs;
  std::vector<int> output;
  bool explicit_output = false;
};

Result<EinsumSpec> ParseEquation(std::string eq) {
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  EinsumSpec spec;
  std::string lhs = eq;
  const size_t arrow = eq.find("->");
  if (arrow != std::string::npos) {
    lhs = eq.substr(0, arrow);
    IM_ASSIGN_OR_RETURN(spec.output, ParseTerm(eq.substr(arrow + 2)));
    spec.explicit_output = true;
  }
  size_t start = 0;
  while (true) {
    const size_t comma = lhs.find(',', start);
    IM_ASSIGN_OR_RETURN(auto term, ParseTerm(lhs.substr(start, comma - start)));
    spec.inputs.push_back(std::move(term));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return spec;
}

class EinsumKernel final : public Kernel {
 public:
  EinsumKernel(std::string name, EinsumSpec spec)
      : name_(std::move(name)), spec_(std::move(spec)) {}

  Status Run(KernelContext& ctx) const override {
    const size_t n_in = spec_.inputs.size();
    if (ctx.num_inputs() != n_in) {
      return InvalidArgument("node '" + name_ + "': equation has " + std::to_string(n_in) +
                             " operands, node has " + std::to_string(ctx.num_inputs()));
    }
    // Expand each operand's labels (its ellipsis becomes its broadcast dims,
    // right-aligned against the widest ellipsis) and learn label sizes.
    std::vector<int64_t> ell_dims(n_in, 0);
    int64_t ell_rank = 0;
    for (size_t k = 0; k < n_in; ++k) {
      const auto& term = spec_.inputs[k];
      const bool has_ell = std::count(term.begin(), term.end(), kEllipsisMark) > 0;
      const int64_t named = static_cast<int64_t>(term.size()) - (has_ell ? 1 : 0);
      const int64_t rank = static_cast<int64_t>(ctx.in(k).rank());
      if (rank < named || (!has_ell && rank != named)) {
        return InvalidArgument("node '" + name_ + "': operand " + std::to_string(k) + " of shape " +
                               ShapeToString(ctx.in(k).shape()) + " does not match its term");
      }
      ell_dims[k] = rank - named;
      ell_rank = std::max(ell_rank, ell_dims[k]);
    }
    std::vector<std::vector<int>> labels(n_in);
    for (size_t k = 0; k < n_in; ++k) {
      for (int l : spec_.inputs[k]) {
        if (l != kEllipsisMark) {
          labels[k].push_back(l);
          continue;
        }
        for (int64_t j = ell_rank - ell_dims[k]; j < ell_rank; ++j) {
          labels[k].push_back(kEllipsisBase + static_cast<int>(j));
        }
      }
    }
    std::map<int, int64_t> size;
    for (size_t k = 0; k < n_in; ++k) {
      for (size_t d = 0; d < labels[k].size(); ++d) {
        const int l = labels[k][d];
        const int64_t s = ctx.in(k).dim(d);
        auto [it, inserted] = size.emplace(l, s);
        if (inserted || it->second == s) continue;
        if (l >= kEllipsisBase && (s == 1 || it->second == 1)) {
          it->second = std::max(it->second, s);  // ellipsis dims broadcast
          continue;
        }
        return InvalidArgument("node '" + name_ + "': label size mismatch (" +
                               std::to_string(it->second) + " vs " + std::to_string(s) + ")");
      }
    }
    // Output labels.
    std::vector<int> out_labels;
    if (spec_.explicit_output) {
      for (int l : spec_.output) {
        if (l == kEllipsisMark) {
          for (int64_t j = 0; j < ell_rank; ++j) out_labels.push_back(kEllipsisBase + int(j));
        } else {
          if (!size.count(l)) {
            return InvalidArgument("node '" + name_ + "': output label not in any input");
          }
          out_labels.push_back(l);
        }
      }
    } else {
      std::map<int, int> count;
      for (const auto& ls : labels) {
        for (int l : ls) ++count[l];
      }
      for (int64_t j = 0; j < ell_rank; ++j) out_labels.push_back(kEllipsisBase + int(j));
      for (const auto& [l, c] : count) {
        if (l < kEllipsisBase && c == 1) out_labels.push_back(l);
      }
    }
    std::vector<int> sum_labels;
    for (const auto& [l, s] : size) {
      if (std::find(out_labels.begin(), out_labels.end(), l) == out_labels.end()) {
        sum_labels.push_back(l);
      }
    }
    // Per operand, stride along each output and summed label (0 when absent or broadcast).
    const size_t n_out = out_labels.size(), n_sum = sum_labels.size();
    std::vector<std::vector<int64_t>> out_stride(n_in, std::vector<int64_t>(n_out, 0));
    std::vector<std::vector<int64_t>> sum_stride(n_in, std::vector<int64_t>(n_sum, 0));
    for (size_t k = 0; k < n_in; ++k) {
      const Shape& s = ctx.in(k).shape();
      int64_t stride = 1;
      for (size_t d = s.size(); d-- > 0;) {
        const int l = labels[k][d];
        if (s[d] != 1) {
          auto o = std::find(out_labels.begin(), out_labels.end(), l);
          if (o != out_labels.end()) out_stride[k][o - out_labels.begin()] += stride;
          auto u = std::find(sum_labels.begin(), sum_labels.end(), l);
          if (u != sum_labels.end()) sum_stride[k][u - sum_labels.begin()] += stride;
        }
        stride *= s[d];
      }
    }
    Shape out_shape, sum_shape;
    for (int l : out_labels) out_shape.push_back(size[l]);
    for (int l : sum_labels) sum_shape.push_back(size[l]);
    Tensor& y = ctx.AllocateOutput(0, DataType::kFloat32, out_shape);
    if (y.numel() == 0) return OkStatus();
    const int64_t sum_count = NumElements(sum_shape);
    std::vector<const float*> data(n_in);
    for (size_t k = 0; k < n_in; ++k) data[k] = ctx.in(k).data<float>();
    float* yd = y.data<float>();
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(sum_count * n_in, 1));
    ctx.ParallelFor(y.numel(), grain, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> base(n_in), off(n_in), idx(n_sum);
      for (int64_t o = begin; o < end; ++o) {
        std::fill(base.begin(), base.end(), 0);
        int64_t rem = o;
        for (size_t d = n_out; d-- > 0;) {
          const int64_t i = rem % out_shape[d];
          rem /= out_shape[d];
          for (size_t k = 0; k < n_in; ++k) base[k] += i * out_stride[k][d];
        }
        double acc = 0.0;
        if (sum_count > 0) {
          off = base;
          std::fill(idx.begin(), idx.end(), 0);
          for (int64_t t = 0; t < sum_count; ++t) {
            double p = 1.0;
            for (size_t k = 0; k < n_in; ++k) p *= data[k][off[k]];
            acc += p;
            for (size_t d = n_sum; d-- > 0;) {
              for (size_t k = 0; k < n_in; ++k) off[k] += sum_stride[k][d];
              if (++idx[d] < sum_shape[d]) break;
              for (size_t k = 0; k < n_in; ++k) off[k] -= idx[d] * sum_stride[k][d];
              idx[d] = 0;
            }
          }
        }
        yd[o] = static_cast<float>(acc);
      }
    });
    return OkStatus();
  }

 private:
  std::string name_;
  EinsumSpec spec_;
};

Result<KernelInit> MakeEinsum(const NodeInfo& node) {
  if (node.input_types.empty()) return node.Error("needs at least one input");
  for (size_t i = 0; i < node.input_types.size(); ++i) {
    if (!node.HasInput(i)) return node.Error("input " + std::to_string(i) + " is missing");
    IM_RETURN_IF_ERROR(node.RequireType(i, {DataType::kFloat32}));
  }
  const std::string equation = node.attrs.GetString("equation", "");
  auto spec = ParseEquation(equation);
  if (!spec.ok()) return node.Error(spec.status().message());
  if (spec->inputs.size() != node.input_types.size()) {
    return node.Error("equation '" + equation + "' has " + std::to_string(spec->inputs.size()) +
                      " operands, node has " + std::to_string(node.input_types.size()));
  }
  if (spec->explicit_output &&
      std::count(spec->output.begin(), spec->output.end(), kEllipsisMark) > 1) {
    return node.Error("output has more than one ellipsis");
  }
  IM_RETURN_IF_ERROR(node.CheckAllAttributesUsed());
  return KernelInit{std::make_unique<EinsumKernel>(node.name, std::move(spec).value()),
                    {DataType::kFloat32}};
}

}  // namespace

void RegisterEinsumKernels(KernelRegistry& r) { r.Add("Einsum", 12, MakeEinsum); }

}  // namespace infermesh::runtime::math
