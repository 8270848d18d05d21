#include "runtime/memory_pool.h"

#include <cstdlib>
#include <new>

namespace infermesh::runtime {

std::shared_ptr<BufferPool> BufferPool::Create(size_t max_cached_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_cached_bytes));
}

BufferPool::~BufferPool() {
  for (auto& [bytes, data] : free_) std::free(data);
}

std::shared_ptr<Buffer> BufferPool::Allocate(size_t bytes) {
  size_t rounded = ((bytes == 0 ? 1 : bytes) + 63) / 64 * 64;
  void* data = nullptr;
  size_t capacity = rounded;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Best fit, but never waste more than half a block.
    auto it = free_.lower_bound(rounded);
    if (it != free_.end() && it->first <= rounded * 2) {
      capacity = it->first;
      data = it->second;
      cached_bytes_ -= capacity;
      free_.erase(it);
    } else {
      ++system_allocations_;
    }
  }
  if (data == nullptr) {
    data = std::aligned_alloc(64, rounded);
    if (data == nullptr) throw std::bad_alloc();
  }
  auto b = std::make_shared<Buffer>();
  b->data = data;
  b->bytes = capacity;
  std::weak_ptr<BufferPool> weak = weak_from_this();
  b->release = [weak](void* p, size_t n) {
    if (auto pool = weak.lock()) {
      pool->Return(p, n);
    } else {
      std::free(p);
    }
  };
  return b;
}

Tensor BufferPool::AllocateTensor(DataType dtype, const Shape& shape) {
  size_t bytes = static_cast<size_t>(NumElements(shape)) * DataTypeSize(dtype);
  return Tensor::FromBuffer(dtype, shape, Allocate(bytes));
}

void BufferPool::Return(void* data, size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_bytes_ + bytes <= max_cached_bytes_) {
      free_.emplace(bytes, data);
      cached_bytes_ += bytes;
      return;
    }
  }
  std::free(data);
}

size_t BufferPool::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_bytes_;
}

size_t BufferPool::system_allocations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return system_allocations_;
}

}  // namespace infermesh::runtime
