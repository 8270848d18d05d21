// WorkerService handlers for tensor models (seed /infer, KServe v2) and the
// health endpoints.
#include "worker/internal/worker_impl.h"

namespace infermesh::worker {

using namespace internal;  // NOLINT: this file implements the internals

// ---- seed /infer and /health ---------------------------------------------
void WorkerService::Impl::HandleInfer(Request& req, Responder responder) {
  auto ticket = Admit(responder, false);
  if (!ticket) return;
  auto parsed = http::api::ParseSeedInferRequest(req.body, limits);
  if (!parsed.ok()) return SendTeiError(responder, parsed.error());
  const ModelEntry* entry = registry.DefaultTensor();
  if (entry == nullptr) {
    return SendTeiError(responder,
                        http::api::TeiUnhealthyError("no tensor model is loaded on this worker"));
  }
  TensorModel& model = tensor_models.at(entry->name);
  if (static_cast<int64_t>(parsed->input_data.size()) != entry->feature_size) {
    return SendTeiError(
        responder,
        http::api::TeiValidationError(
            "input_data has " + std::to_string(parsed->input_data.size()) + " values; model '" +
                entry->name + "' expects " + std::to_string(entry->feature_size),
            "input_data"));
  }
  KeyBuilder k;
  k.AddString("tensor").AddString(entry->name).AddString(entry->version);
  k.AddString(std::string_view(reinterpret_cast<const char*>(parsed->input_data.data()),
                               parsed->input_data.size() * sizeof(float)));
  std::string material = std::move(k).TakeMaterial();
  // The gateway's hop asks for the row as binary float32 (exact, no text formatting),
  // with the node and whether it was cached in headers.
  const bool binary =
      req.Header("accept").find(http::api::kF32ContentType) != std::string_view::npos;
  if (cache) {
    if (auto hit = cache->Lookup(material)) {
      cache_hits.fetch_add(1, std::memory_order_relaxed);
      if (binary) return SendInferRow(responder, hit->values, true);
      http::api::SeedInferResponse out;
      out.request_id = parsed->request_id;
      out.output_data = hit->values;
      out.node_id = NodeId();
      out.cached = true;
      auto body = http::api::SerializeSeedInferResponse(out);
      if (!body.ok()) return SendTeiError(responder, body.error());
      return Send(responder, 200, std::move(body).value());
    }
  }
  auto shared = std::make_shared<Responder>(std::move(responder));
  TensorBatchItem item;
  item.input = std::move(parsed->input_data);
  item.deadline = front::RequestDeadline(req, options.request_timeout);
  item.cancel = shared->cancel_flag();
  auto request_id = std::make_shared<std::string>(std::move(parsed->request_id));
  auto key = std::make_shared<std::string>(std::move(material));
  item.done = [this, shared, ticket, request_id, key, binary](Result<std::vector<float>> r,
                                                              BatchTimings t) {
    if (!r.ok()) {
      CountDropped(r.status());
      return SendTeiError(*shared, http::api::ApiErrorFromStatus(r.status()));
    }
    auto row = std::make_shared<CachedRow>();
    row->values = std::move(r).value();
    if (cache) cache->Insert(*key, row);
    if (binary) return SendInferRow(*shared, row->values, false);
    http::api::SeedInferResponse out;
    out.request_id = *request_id;
    out.output_data = row->values;
    out.node_id = NodeId();
    out.inference_time_us = duration_cast<microseconds>(t.inference).count();
    auto body = http::api::SerializeSeedInferResponse(out);
    if (!body.ok()) return SendTeiError(*shared, body.error());
    Send(*shared, 200, std::move(body).value());
  };
  Status s = model.batcher->Enqueue(std::move(item));
  if (!s.ok()) {
    metrics->rejected.WithLabels({"queue_full"}).Inc();
    SendTeiError(*shared, http::api::ApiErrorFromStatus(s));
  }
}

void WorkerService::Impl::SendInferRow(Responder& responder, const std::vector<float>& row,
                                       bool cached) {
  auto body = http::api::EncodeF32Rows({row.data(), 1, row.size()});
  if (!body.ok()) return SendTeiError(responder, http::api::ApiErrorFromStatus(body.status()));
  Send(responder, 200, std::move(body).value(),
       {{front::kNodeIdHeader, NodeId()}, {front::kCachedHeader, cached ? "true" : "false"}},
       std::string(http::api::kF32ContentType));
}

void WorkerService::Impl::HandleHealth(Request&, Responder responder) {
  http::api::SeedHealth h;
  h.healthy = ready.load();
  h.node_id = NodeId();
  h.total_requests = total_requests.load();
  h.cache_hits = cache_hits.load() + (text_front ? text_front->cache_hits() : 0);
  if (cache) {
    auto s = cache->Stats();
    h.cache_size = s.entries;
    const double lookups = double(s.hits + s.misses);
    h.cache_hit_rate = lookups > 0 ? double(s.hits) / lookups : 0.0;
  }
  uint64_t rows = 0;
  for (auto& [name, m] : tensor_models) {
    auto s = m.batcher->Stats();
    h.batch_processor.total_batches += static_cast<uint64_t>(s.total_batches);
    h.batch_processor.full_batches += static_cast<uint64_t>(s.full_batches);
    h.batch_processor.timeout_batches += static_cast<uint64_t>(s.timeout_batches);
    rows += static_cast<uint64_t>(s.batch_rows);
  }
  for (auto& [name, m] : text_models) {
    auto s = m.batcher->Stats();
    h.batch_processor.total_batches += static_cast<uint64_t>(s.batches);
    rows += static_cast<uint64_t>(s.batch_rows);
  }
  if (h.batch_processor.total_batches > 0) {
    h.batch_processor.avg_batch_size = double(rows) / double(h.batch_processor.total_batches);
  }
  Send(responder, h.healthy ? 200 : 503, http::api::SerializeSeedHealth(h));
}

std::vector<http::api::SeedThreadPool> WorkerService::Impl::ThreadPoolTable() const {
  std::vector<http::api::SeedThreadPool> rows;
  // I/O threads never block on a request, so "active" here is what they are serving:
  // admitted requests not yet answered.
  rows.push_back(
      {"io", options.io_threads, in_flight.load(), 0, static_cast<int64_t>(total_requests.load())});
  for (const ThreadPool* pool : {tokenize_pool.get(), kserve_pool.get()}) {
    const ThreadPoolStats s = pool->Stats();
    rows.push_back({s.name, s.workers, s.active, s.queued, s.completed});
  }
  int64_t batches_running = 0;
  for (const auto& [name, m] : text_models) {
    const TokenBatcherStats s = m.batcher->Stats();
    const int64_t running = m.running.load();
    batches_running += running;
    rows.push_back({"inference:" + name, 1, running, s.queue_requests, s.batches});
  }
  for (const auto& [name, m] : tensor_models) {
    const TensorBatcherStats s = m.batcher->Stats();
    const int64_t running = m.running.load();
    batches_running += running;
    rows.push_back({"inference:" + name, 1, running, s.queue_requests, s.total_batches});
  }
  // The intra-op team: the threads one inference call computes on. Each inference thread
  // drives its own team while a batch runs, so its threads are busy exactly then; it has
  // no queue of its own (batches wait in the model queues above).
  const int64_t team = options.intra_op_threads > 0 ? options.intra_op_threads : HardwareThreads();
  rows.push_back({"intra_op", team, team * batches_running, 0, 0});
  return rows;
}

void WorkerService::Impl::HandleThreadPools(Request&, Responder responder) {
  Send(responder, 200, http::api::SerializeSeedThreadPools(ThreadPoolTable()));
}

void WorkerService::Impl::HandleThreadPoolsLog(Request&, Responder responder) {
  const std::vector<http::api::SeedThreadPool> rows = ThreadPoolTable();
  // One event per pool, then the summary: logfmt/JSON lines a log pipeline can parse.
  for (const auto& r : rows) {
    log::Info("thread pool status", {{"pool", r.name},
                                     {"workers", r.workers},
                                     {"active", r.active_tasks},
                                     {"queued", r.queue},
                                     {"completed", r.completed}});
  }
  const http::api::SeedThreadPoolSummary s = http::api::SummarizeThreadPools(rows);
  log::Info("thread pool summary", {{"total_workers", s.total_workers},
                                    {"total_active", s.total_active},
                                    {"total_queued", s.total_queued},
                                    {"utilization_percent", s.utilization_percent}});
  Send(responder, 200, http::api::SerializeSeedThreadPools(rows));
}

// ---- KServe v2 -------------------------------------------------------------
void WorkerService::Impl::HandleKServeModel(Request& req, Responder responder, bool ready_only) {
  const std::string& name = req.path_params["model"];
  const ModelEntry* m = registry.Find(name);
  if (m == nullptr) {
    return SendKServeError(
        responder, http::api::ApiErrorFromStatus(NotFound("model '" + name + "' not found")));
  }
  if (ready_only) {
    return Send(responder, m->ok() ? 200 : 503,
                http::api::SerializeKServeModelReady(name, m->ok()));
  }
  http::api::KServeModelMetadata md;
  md.name = m->name;
  md.versions = {m->version};
  auto describe = [](const runtime::ValueInfo& v) {
    http::api::KServeTensorMetadata t;
    t.name = v.name;
    t.datatype = KServeTypeName(v.dtype);
    t.shape = v.shape;
    return t;
  };
  for (const auto& in : m->graph_inputs()) md.inputs.push_back(describe(in));
  for (const auto& out : m->graph_outputs()) md.outputs.push_back(describe(out));
  Send(responder, 200, http::api::SerializeKServeModelMetadata(md));
}

// The runtime's tensor types by their KServe names: the model metadata and the infer
// handler both read this one table, and every name in it is a row of the codec's table
// (http::api::KServeDataTypes(); tests/unit/worker/kserve_types_test.cc checks both).
// KServe's BYTES has no runtime counterpart: the codec reads it, the runtime cannot run it.
namespace {
struct RuntimeKServeType {
  runtime::DataType runtime;
  std::string_view kserve;
};
constexpr RuntimeKServeType kRuntimeKServeTypes[] = {
    {runtime::DataType::kBool, "BOOL"},     {runtime::DataType::kUint8, "UINT8"},
    {runtime::DataType::kUint16, "UINT16"}, {runtime::DataType::kUint32, "UINT32"},
    {runtime::DataType::kUint64, "UINT64"}, {runtime::DataType::kInt8, "INT8"},
    {runtime::DataType::kInt16, "INT16"},   {runtime::DataType::kInt32, "INT32"},
    {runtime::DataType::kInt64, "INT64"},   {runtime::DataType::kFloat16, "FP16"},
    {runtime::DataType::kBFloat16, "BF16"}, {runtime::DataType::kFloat32, "FP32"},
    {runtime::DataType::kFloat64, "FP64"},
};
}  // namespace

std::string WorkerService::Impl::KServeTypeName(runtime::DataType t) {
  for (const auto& row : kRuntimeKServeTypes) {
    if (row.runtime == t) return std::string(row.kserve);
  }
  // No tensor of this type can be built (strings, undefined); a model declaring one fails
  // at load or at run, so the name is only ever shown, never sent back to the codec.
  return "UNSUPPORTED";
}

Result<runtime::DataType> WorkerService::Impl::RuntimeType(const std::string& kserve) {
  for (const auto& row : kRuntimeKServeTypes) {
    if (row.kserve == kserve) return row.runtime;
  }
  return InvalidArgument("datatype " + kserve + " is not supported by the runtime");
}

void WorkerService::Impl::HandleKServeInfer(Request& req, Responder responder) {
  auto ticket = Admit(responder, false);
  if (!ticket) return;
  const std::string name = req.path_params["model"];
  auto error = [&](const Status& s) {
    SendKServeError(responder, http::api::ApiErrorFromStatus(s));
  };
  const ModelEntry* m = registry.Find(name);
  if (m == nullptr) return error(NotFound("model '" + name + "' not found"));
  if (!m->ok()) {
    return error(Unavailable("model '" + name + "' failed to load: " + m->status.message()));
  }
  if (m->kind != ModelKind::kTensor) {
    return error(InvalidArgument("model '" + name +
                                 "' is a text model; use POST /embed or /v1/embeddings for text"));
  }
  auto parsed = http::api::ParseKServeInferRequest(req.body, limits);
  if (!parsed.ok()) return SendKServeError(responder, parsed.error());
  std::vector<std::pair<std::string, runtime::Tensor>> feeds;
  for (auto& in : parsed->inputs) {
    auto dtype = RuntimeType(in.datatype);
    if (!dtype.ok()) return error(dtype.status().WithContext("input '" + in.name + "'"));
    runtime::Tensor t = runtime::Tensor::Empty(*dtype, in.shape);
    if (t.nbytes() != in.bytes.size()) {
      return error(InvalidArgument("input '" + in.name + "': data does not match shape"));
    }
    if (!in.bytes.empty()) std::memcpy(t.raw_data(), in.bytes.data(), in.bytes.size());
    std::vector<uint8_t>().swap(in.bytes);  // the tensor holds the data now
    feeds.emplace_back(in.name, std::move(t));
  }
  auto shared = std::make_shared<Responder>(std::move(responder));
  auto request = std::make_shared<http::api::KServeInferRequest>(std::move(parsed).value());
  auto shared_feeds = std::make_shared<decltype(feeds)>(std::move(feeds));
  const auto deadline = front::RequestDeadline(req, options.request_timeout);
  kserve_pool->Submit([this, m, shared, request, shared_feeds, ticket, deadline] {
    auto fail = [&](const Status& s) {
      SendKServeError(*shared, http::api::ApiErrorFromStatus(s));
    };
    if (shared->cancelled()) {
      const Status s(StatusCode::kCancelled, "client went away before compute");
      CountDropped(s);
      return fail(s);
    }
    if (steady_clock::now() >= deadline) {
      const Status s = DeadlineExceeded("deadline passed while queued");
      CountDropped(s);
      return fail(s);
    }
    auto out = m->session->Run(*shared_feeds);
    if (!out.ok()) return fail(out.status());
    http::api::KServeInferResponse resp;
    resp.model_name = m->name;
    resp.model_version = m->version;
    resp.id = request->id;
    const auto& infos = m->session->outputs();
    for (size_t i = 0; i < out->size(); ++i) {
      const std::string& oname = infos[i].name;
      if (!request->outputs.empty() && std::find(request->outputs.begin(), request->outputs.end(),
                                                 oname) == request->outputs.end()) {
        continue;
      }
      const runtime::Tensor& t = (*out)[i];
      http::api::TensorData td;
      td.name = oname;
      td.datatype = KServeTypeName(t.dtype());
      td.shape = t.shape();
      const auto* p = static_cast<const uint8_t*>(t.raw_data());
      td.bytes.assign(p, p + t.nbytes());
      resp.outputs.push_back(std::move(td));
    }
    auto body = http::api::SerializeKServeInferResponse(resp);
    if (!body.ok()) return SendKServeError(*shared, body.error());
    Send(*shared, 200, std::move(body).value());
  });
}

}  // namespace infermesh::worker
