// The seed-compatible generic tensor API: POST /infer, GET /health and
// GET /health/thread-pools.
//
//   auto req = ParseSeedInferRequest(body, limits);   // errors: 400 {"error": ...}
//   SeedInferResponse r{req->request_id, output, node_id, cached, micros};
//   auto json = SerializeSeedInferResponse(r);
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/api/api_error.h"

namespace infermesh::http::api {

// {request_id?: string, input_data: [number], non-empty}. A missing request_id is left
// empty for the handler to fill in.
struct SeedInferRequest {
  std::string request_id;
  std::vector<float> input_data;
};
ApiResult<SeedInferRequest> ParseSeedInferRequest(std::string_view body,
                                                  const ParseLimits& limits = {});

struct SeedInferResponse {
  std::string request_id;
  std::span<const float> output_data;
  std::string node_id;
  bool cached = false;
  int64_t inference_time_us = 0;
};
// {"request_id","output_data":[f32],"node_id","cached","inference_time_us"}; NaN/Inf → 424.
ApiResult<std::string> SerializeSeedInferResponse(const SeedInferResponse& r);

struct SeedBatchStats {
  uint64_t total_batches = 0;
  double avg_batch_size = 0;
  uint64_t timeout_batches = 0;
  uint64_t full_batches = 0;
};
struct SeedHealth {
  bool healthy = true;
  std::string node_id;
  uint64_t total_requests = 0;
  uint64_t cache_hits = 0;
  uint64_t cache_size = 0;
  double cache_hit_rate = 0;  // non-finite (0/0) is written as 0
  SeedBatchStats batch_processor;
};
std::string SerializeSeedHealth(const SeedHealth& h);

// One pool of GET /health/thread-pools, as measured when the request is served.
struct SeedThreadPool {
  std::string name;
  int64_t workers = 0;
  int64_t active_tasks = 0;
  int64_t queue = 0;
  int64_t completed = 0;
};
struct SeedThreadPoolSummary {
  int64_t total_workers = 0;  // sums of the rows
  int64_t total_active = 0;
  int64_t total_queued = 0;
  // Busy threads over all threads, each pool's active_tasks capped at its workers (a row
  // may count requests rather than threads), one decimal; 0 with no workers.
  double utilization_percent = 0;
};
SeedThreadPoolSummary SummarizeThreadPools(std::span<const SeedThreadPool> pools);
// {"pools":[{"name","workers","active_tasks","queue","completed"}],
//  "summary":{"total_workers","total_active","total_queued","utilization_percent"}}
std::string SerializeSeedThreadPools(std::span<const SeedThreadPool> pools);

}  // namespace infermesh::http::api
