// Multidirectional (numpy-style) broadcasting for elementwise kernels.
//
//   IM_ASSIGN_OR_RETURN(Shape out_shape, BroadcastShapes(a.shape(), b.shape()));
//   BroadcastPlan plan({&a.shape(), &b.shape()}, out_shape);
//   ctx.ParallelFor(plan.numel(), kGrain, [&](int64_t begin, int64_t end) {
//     plan.ForEachRun(begin, end, [&](const int64_t* in, int64_t out, int64_t n) {
//       // input k starts at element in[k] and advances by plan.inner_step(k) (0 or 1);
//       // the output starts at element `out` and advances by 1, for n elements.
//     });
//   });
//
// The plan drops size-1 output dimensions and merges adjacent dimensions wherever every
// input stays contiguous (or stays broadcast) across them, so the common cases become
// one long innermost run: same shape and scalar operands collapse to a single dimension,
// and a bias add [B,S,H] + [H] becomes [B*S, H] with runs of H.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "core/status.h"
#include "runtime/tensor.h"

namespace infermesh::runtime {

// The broadcast of all `shapes` (numpy rules: align right, each dimension equal or 1).
// InvalidArgument names the shapes when they are incompatible.
Result<Shape> BroadcastShapes(std::span<const Shape* const> shapes);
Result<Shape> BroadcastShapes(const Shape& a, const Shape& b);

// True if `from` broadcasts to exactly `to` (unidirectional: PRelu slope, Expand checks).
bool IsUnidirectionallyBroadcastable(const Shape& from, const Shape& to);

// Element strides of a row-major tensor of shape `in` viewed as shape `out` (which it must
// broadcast to): rank(out) entries, 0 along broadcast (and leading, missing) dimensions.
std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out);

// Iteration plan for up to kMaxInputs inputs broadcast to one output shape.
class BroadcastPlan {
 public:
  static constexpr size_t kMaxInputs = 4;

  // Every shape in `inputs` must broadcast to `out` (check with BroadcastShapes first).
  BroadcastPlan(std::span<const Shape* const> inputs, const Shape& out);
  BroadcastPlan(std::initializer_list<const Shape*> inputs, const Shape& out)
      : BroadcastPlan(std::span<const Shape* const>(inputs.begin(), inputs.size()), out) {}

  int64_t numel() const { return numel_; }
  size_t num_inputs() const { return num_inputs_; }
  // Length of the innermost (coalesced) dimension; numel() when everything collapsed.
  int64_t inner() const { return dims_.back(); }
  // How input k advances within a run: 1 (contiguous) or 0 (broadcast).
  int64_t inner_step(size_t k) const { return strides_.back()[k]; }
  // Number of dimensions after coalescing (1 for same-shape and scalar cases).
  size_t coalesced_rank() const { return dims_.size(); }

  // Calls fn(const int64_t* in_offsets, int64_t out_offset, int64_t count) for each run of
  // consecutive output elements in [begin, end), begin <= end <= numel(). Within a run,
  // input k advances by inner_step(k) per element.
  template <typename Fn>
  void ForEachRun(int64_t begin, int64_t end, Fn&& fn) const {
    if (begin >= end) return;
    const size_t rank = dims_.size();
    const int64_t inner_len = dims_.back();
    std::array<int64_t, kMaxInputs> off{};
    std::array<int64_t, kMaxInputs> run_off{};
    // Odometer over the outer dimensions (all but the innermost).
    std::vector<int64_t> idx(rank, 0);
    int64_t outer = begin / inner_len;
    int64_t pos_in_inner = begin % inner_len;
    for (size_t d = rank - 1; d-- > 0;) {
      idx[d] = outer % dims_[d];
      outer /= dims_[d];
      for (size_t k = 0; k < num_inputs_; ++k) off[k] += idx[d] * strides_[d][k];
    }
    int64_t pos = begin;
    while (pos < end) {
      const int64_t count = std::min(inner_len - pos_in_inner, end - pos);
      for (size_t k = 0; k < num_inputs_; ++k) {
        run_off[k] = off[k] + pos_in_inner * strides_[rank - 1][k];
      }
      fn(run_off.data(), pos, count);
      pos += count;
      pos_in_inner = 0;
      if (pos >= end) break;
      // Advance the odometer by one outer step.
      for (size_t d = rank - 1; d-- > 0;) {
        ++idx[d];
        for (size_t k = 0; k < num_inputs_; ++k) off[k] += strides_[d][k];
        if (idx[d] < dims_[d]) break;
        for (size_t k = 0; k < num_inputs_; ++k) off[k] -= idx[d] * strides_[d][k];
        idx[d] = 0;
      }
    }
  }

 private:
  size_t num_inputs_ = 0;
  int64_t numel_ = 0;
  std::vector<int64_t> dims_;                             // coalesced, outermost first
  std::vector<std::array<int64_t, kMaxInputs>> strides_;  // per coalesced dim, per input
};

}  // namespace infermesh::runtime
