// Seed-compatible codecs; see seed.h.
#include "http/api/seed.h"

#include <algorithm>
#include <cmath>

#include "http/api/json_read.h"
#include "http/api/json_write.h"

namespace infermesh::http::api {
namespace {

using internal::kKServeStyle;

void AppendStat(std::string& out, double d) { AppendDouble(out, std::isfinite(d) ? d : 0.0); }

}  // namespace

ApiResult<SeedInferRequest> ParseSeedInferRequest(std::string_view body,
                                                  const ParseLimits& limits) {
  boost::json::monotonic_resource mr;
  IM_API_ASSIGN_OR_RETURN(boost::json::value root,
                          internal::ParseJsonObject(body, limits.max_depth, &mr, kKServeStyle));
  const boost::json::object& obj = root.get_object();
  SeedInferRequest req;
  IM_API_ASSIGN_OR_RETURN(auto id, internal::OptionalString(obj, "request_id", kKServeStyle));
  req.request_id = id.value_or("");
  const boost::json::value* data = internal::FindField(obj, "input_data");
  if (data == nullptr) return internal::MissingField(kKServeStyle, "input_data");
  if (!data->is_array()) {
    return internal::WrongType(kKServeStyle, "input_data", "an array of numbers", *data);
  }
  const boost::json::array& arr = data->get_array();
  if (arr.empty()) {
    return internal::DataError(kKServeStyle, "input_data", "`input_data` must not be empty");
  }
  if (arr.size() > limits.max_tensor_elements) {
    return internal::DataError(
        kKServeStyle, "input_data",
        "`input_data`: more than " + std::to_string(limits.max_tensor_elements) + " elements");
  }
  req.input_data.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    IM_API_ASSIGN_OR_RETURN(
        float f,
        internal::NumberAsFloat(arr[i], kKServeStyle, internal::IndexedParam("input_data", i)));
    req.input_data.push_back(f);
  }
  return req;
}

ApiResult<std::string> SerializeSeedInferResponse(const SeedInferResponse& r) {
  std::string out;
  out.reserve(96 + r.request_id.size() + r.node_id.size() + r.output_data.size() * 12);
  out += "{\"request_id\":";
  AppendJsonString(out, r.request_id);
  out += ",\"output_data\":";
  const size_t bad = AppendFloatArray(out, r.output_data);
  if (bad != kAllFinite) {
    return TeiBackendError("output_data has a non-finite value at " + std::to_string(bad) +
                           " (NaN/Inf cannot be JSON)");
  }
  out += ",\"node_id\":";
  AppendJsonString(out, r.node_id);
  out += r.cached ? ",\"cached\":true" : ",\"cached\":false";
  out += ",\"inference_time_us\":";
  AppendInt(out, r.inference_time_us);
  out += '}';
  return out;
}

std::string SerializeSeedHealth(const SeedHealth& h) {
  std::string out = h.healthy ? "{\"healthy\":true" : "{\"healthy\":false";
  out += ",\"node_id\":";
  AppendJsonString(out, h.node_id);
  out += ",\"total_requests\":";
  AppendUint(out, h.total_requests);
  out += ",\"cache_hits\":";
  AppendUint(out, h.cache_hits);
  out += ",\"cache_size\":";
  AppendUint(out, h.cache_size);
  out += ",\"cache_hit_rate\":";
  AppendStat(out, h.cache_hit_rate);
  out += ",\"batch_processor\":{\"total_batches\":";
  AppendUint(out, h.batch_processor.total_batches);
  out += ",\"avg_batch_size\":";
  AppendStat(out, h.batch_processor.avg_batch_size);
  out += ",\"timeout_batches\":";
  AppendUint(out, h.batch_processor.timeout_batches);
  out += ",\"full_batches\":";
  AppendUint(out, h.batch_processor.full_batches);
  out += "}}";
  return out;
}

SeedThreadPoolSummary SummarizeThreadPools(std::span<const SeedThreadPool> pools) {
  SeedThreadPoolSummary s;
  int64_t busy = 0;
  for (const SeedThreadPool& p : pools) {
    s.total_workers += p.workers;
    s.total_active += p.active_tasks;
    s.total_queued += p.queue;
    busy += std::clamp<int64_t>(p.active_tasks, 0, std::max<int64_t>(p.workers, 0));
  }
  if (s.total_workers > 0) {
    s.utilization_percent = std::round(1000.0 * double(busy) / double(s.total_workers)) / 10.0;
  }
  return s;
}

std::string SerializeSeedThreadPools(std::span<const SeedThreadPool> pools) {
  std::string out = "{\"pools\":[";
  for (size_t i = 0; i < pools.size(); ++i) {
    const SeedThreadPool& p = pools[i];
    if (i != 0) out += ',';
    out += "{\"name\":";
    AppendJsonString(out, p.name);
    out += ",\"workers\":";
    AppendInt(out, p.workers);
    out += ",\"active_tasks\":";
    AppendInt(out, p.active_tasks);
    out += ",\"queue\":";
    AppendInt(out, p.queue);
    out += ",\"completed\":";
    AppendInt(out, p.completed);
    out += '}';
  }
  const SeedThreadPoolSummary s = SummarizeThreadPools(pools);
  out += "],\"summary\":{\"total_workers\":";
  AppendInt(out, s.total_workers);
  out += ",\"total_active\":";
  AppendInt(out, s.total_active);
  out += ",\"total_queued\":";
  AppendInt(out, s.total_queued);
  out += ",\"utilization_percent\":";
  AppendStat(out, s.utilization_percent);
  out += "}}";
  return out;
}

}  // namespace infermesh::http::api
