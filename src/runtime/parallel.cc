#include "runtime/parallel.h"

#include <omp.h>

#include <algorithm>

#include "core/thread_pool.h"

namespace infermesh::runtime {
namespace {

class OmpIntraOpPool final : public IntraOpPool {
 public:
  explicit OmpIntraOpPool(int threads) : threads_(threads > 0 ? threads : HardwareThreads()) {}
  int threads() const override { return threads_; }

  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t, int64_t)>& fn) override {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    int64_t chunks = std::min<int64_t>(threads_, (n + grain - 1) / grain);
    if (chunks <= 1) {
      fn(0, n);
      return;
    }
    int64_t step = (n + chunks - 1) / chunks;
#pragma omp parallel for num_threads(chunks) schedule(static, 1)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t b = c * step;
      int64_t e = std::min(n, b + step);
      if (b < e) fn(b, e);
    }
  }

 private:
  int threads_;
};

}  // namespace

std::unique_ptr<IntraOpPool> MakeIntraOpPool(int threads) {
  auto pool = std::make_unique<OmpIntraOpPool>(threads);
  omp_set_num_threads(pool->threads());
  return pool;
}

}  // namespace infermesh::runtime
