// BufferPool: recycles tensor buffers between kernel runs so that the steady
// state of a session allocates nothing from the system.
//
// The executor frees each value after its last use (computed at load, the memory
// plan); the freed buffer's deleter returns it here, and the next allocation of a
// similar size takes it back. Views (Reshape) share a buffer, so a buffer returns
// only when its last view is dropped. The pool is bounded: beyond `max_cached_bytes`
// freed buffers go back to the system.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

#include "runtime/tensor.h"

namespace infermesh::runtime {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static std::shared_ptr<BufferPool> Create(size_t max_cached_bytes);
  ~BufferPool();

  // A buffer of at least `bytes`, contents unspecified.
  std::shared_ptr<Buffer> Allocate(size_t bytes);
  Tensor AllocateTensor(DataType dtype, const Shape& shape);

  size_t cached_bytes() const;
  size_t system_allocations() const;

 private:
  explicit BufferPool(size_t max_cached_bytes) : max_cached_bytes_(max_cached_bytes) {}
  void Return(void* data, size_t bytes);

  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;  // guarded by mu_: capacity -> block
  size_t cached_bytes_ = 0;            // guarded by mu_
  size_t system_allocations_ = 0;      // guarded by mu_
  size_t max_cached_bytes_;
};

}  // namespace infermesh::runtime
