// Intra-op parallelism for kernels. oneDNN in Debian is built on OpenMP, so our
// own kernels use the same OpenMP team: one set of threads, sized to the cores,
// never two pools fighting over two cores (see docs/decisions.md).
//
//   IntraOpPool& pool = ...;
//   pool.ParallelFor(rows, 16, [&](int64_t begin, int64_t end) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace infermesh::runtime {

class IntraOpPool {
 public:
  virtual ~IntraOpPool() = default;
  virtual int threads() const = 0;
  // Runs fn over [0, n) in chunks of at least `grain`; returns when all finish.
  virtual void ParallelFor(int64_t n, int64_t grain,
                           const std::function<void(int64_t, int64_t)>& fn) = 0;
};

// An OpenMP-backed pool with `threads` threads (0 = all cores). Also sets the
// thread count oneDNN uses from the calling thread.
std::unique_ptr<IntraOpPool> MakeIntraOpPool(int threads);

}  // namespace infermesh::runtime
