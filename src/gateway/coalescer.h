// Request coalescing: identical inputs in flight at the same time share one upstream call.
//
//   Coalescer<Row> c;
//   if (c.Join(material, [](const Result<Row>& r) { ... })) {
//     // leader: compute it once, then
//     c.Complete(material, result);    // every joined callback gets `result`
//   }
//
// Keys are the inputs' full cache-key material (KeyBuilder bytes), compared byte for
// byte, so two different inputs can never share a result through a hash collision.
// Callbacks run on the thread that calls Complete, outside the lock. A leader must call
// Complete exactly once for each key it led, with an error if the call failed (the
// waiters then get that error and may retry on their own). Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/log.h"
#include "core/status.h"

namespace infermesh::gateway {

template <typename V>
class Coalescer {
 public:
  using Callback = std::function<void(const Result<V>&)>;

  // True: the caller leads the call for `key` (nothing was in flight) and must
  // Complete it; `cb` is called then too. False: joined a call in flight.
  bool Join(const std::string& key, Callback cb) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = waiting_.try_emplace(key);
    it->second.push_back(std::move(cb));
    if (!inserted) ++coalesced_;
    return inserted;
  }

  void Complete(const std::string& key, const Result<V>& result) {
    std::vector<Callback> callbacks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = waiting_.find(key);
      if (it == waiting_.end()) return;
      callbacks = std::move(it->second);
      waiting_.erase(it);
    }
    // One waiter's failure must not leave the others waiting for ever.
    for (auto& cb : callbacks) {
      try {
        cb(result);
      } catch (const std::exception& e) {
        log::Error("coalesced callback failed", {{"error", e.what()}});
      }
    }
  }

  size_t in_flight() const {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_.size();
  }
  // Joins that found a call in flight (upstream calls saved).
  uint64_t coalesced() const {
    std::lock_guard<std::mutex> lock(mu_);
    return coalesced_;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::vector<Callback>> waiting_;
  uint64_t coalesced_ = 0;
};

}  // namespace infermesh::gateway
