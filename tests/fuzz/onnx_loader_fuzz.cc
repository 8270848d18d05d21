// libFuzzer target: arbitrary bytes as an ONNX model. Loading must either fail
// with a Status or succeed; a loaded model is then run once on small inputs
// (dynamic dimensions set to 1). Any crash, leak or UB is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runtime/session.h"

using infermesh::runtime::Session;
using infermesh::runtime::SessionOptions;
using infermesh::runtime::Tensor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  SessionOptions options;
  options.intra_op_threads = 1;
  auto session = Session::LoadFromBytes(std::string_view(reinterpret_cast<const char*>(data), size),
                                        "/nonexistent", options);
  if (!session.ok()) return 0;
  std::vector<std::pair<std::string, Tensor>> feeds;
  for (const auto& in : (*session)->inputs()) {
    infermesh::runtime::Shape shape;
    for (int64_t d : in.shape) shape.push_back(d < 0 ? 1 : d);
    if (infermesh::runtime::NumElements(shape) > (1 << 16)) return 0;
    feeds.emplace_back(in.name, Tensor::Empty(in.dtype, shape));
  }
  (void)(*session)->Run(feeds);
  return 0;
}
