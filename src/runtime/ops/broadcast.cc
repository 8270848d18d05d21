// Multidirectional broadcasting: shape inference and coalesced iteration plans.
#include "runtime/ops/broadcast.h"

#include <cassert>
#include <string>

namespace infermesh::runtime {

Result<Shape> BroadcastShapes(std::span<const Shape* const> shapes) {
  size_t rank = 0;
  for (const Shape* s : shapes) rank = std::max(rank, s->size());
  Shape out(rank, 1);
  for (const Shape* s : shapes) {
    const size_t lead = rank - s->size();
    for (size_t i = 0; i < s->size(); ++i) {
      const int64_t d = (*s)[i];
      int64_t& o = out[lead + i];
      if (d == o || d == 1) continue;
      if (o == 1) {
        o = d;
        continue;
      }
      std::string list;
      for (const Shape* t : shapes) list += (list.empty() ? "" : ", ") + ShapeToString(*t);
      return InvalidArgument("shapes " + list + " are not broadcast-compatible");
    }
  }
  return out;
}

Result<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  const Shape* shapes[] = {&a, &b};
  return BroadcastShapes(std::span<const Shape* const>(shapes, 2));
}

bool IsUnidirectionallyBroadcastable(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  const size_t lead = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i) {
    if (from[i] != 1 && from[i] != to[lead + i]) return false;
  }
  return true;
}

std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  const size_t lead = out.size() - in.size();
  int64_t stride = 1;
  for (size_t i = in.size(); i-- > 0;) {
    strides[lead + i] = (in[i] == 1 && out[lead + i] != 1) ? 0 : stride;
    stride *= in[i];
  }
  return strides;
}

BroadcastPlan::BroadcastPlan(std::span<const Shape* const> inputs, const Shape& out)
    : num_inputs_(inputs.size()), numel_(NumElements(out)) {
  assert(num_inputs_ <= kMaxInputs);
  std::vector<std::vector<int64_t>> in_strides;
  in_strides.reserve(num_inputs_);
  for (const Shape* s : inputs) in_strides.push_back(BroadcastStrides(*s, out));

  // Keep the non-trivial output dimensions, merging each into the previous kept one when
  // every input is contiguous (or broadcast) across the pair.
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;
    std::array<int64_t, kMaxInputs> st{};
    for (size_t k = 0; k < num_inputs_; ++k) st[k] = in_strides[k][d];
    if (!dims_.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < num_inputs_; ++k) {
        if (strides_.back()[k] != st[k] * out[d]) {
          mergeable = false;
          break;
        }
      }
      if (mergeable) {
        dims_.back() *= out[d];
        strides_.back() = st;
        continue;
      }
    }
    dims_.push_back(out[d]);
    strides_.push_back(st);
  }
  if (dims_.empty()) {  // scalar output (or all dims 1): one element
    dims_.push_back(1);
    strides_.push_back({});
  }
}

}  // namespace infermesh::runtime
