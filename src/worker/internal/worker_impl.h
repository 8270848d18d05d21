// Internals of WorkerService shared by its .cc files: the Impl struct, the
// per-model state and small response helpers. Not part of the worker's API.
#pragma once

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "core/hash.h"
#include "core/log.h"
#include "core/lru_cache.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "core/version.h"
#include "front/text_front.h"
#include "http/api/api_error.h"
#include "http/api/f32_binary.h"
#include "http/api/kserve.h"
#include "http/api/openai.h"
#include "http/api/seed.h"
#include "http/api/tei.h"
#include "http/router.h"
#include "http/server.h"
#include "worker/model_registry.h"
#include "worker/registrar.h"
#include "worker/worker_metrics.h"
#include "worker/worker_service.h"

namespace infermesh::worker {
namespace internal {

using http::Request;
using http::Responder;
using http::Response;
using http::api::ApiError;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

inline constexpr const char* kVersion = kInfermeshVersion;

// The serving front's types and response helpers (src/front/text_front.h).
using front::CachedRow;
using front::L2Normalize;
using front::RowCache;
using front::Send;
using front::SendKServeError;
using front::SendOpenAiError;
using front::SendTeiError;
using front::SharedResponder;
using front::TextInput;

inline std::string Millis(nanoseconds d) {
  return std::to_string(duration_cast<milliseconds>(d).count());
}

// Keeps a request counted in max_concurrent_requests until its response is sent.
class AdmissionTicket {
 public:
  explicit AdmissionTicket(std::atomic<int64_t>* in_flight) : in_flight_(in_flight) {}
  ~AdmissionTicket() { in_flight_->fetch_sub(1, std::memory_order_relaxed); }
  AdmissionTicket(const AdmissionTicket&) = delete;
  AdmissionTicket& operator=(const AdmissionTicket&) = delete;

 private:
  std::atomic<int64_t>* in_flight_;
};

// Batches of one model in compute now (0 or 1: one inference thread per model), kept by
// the backend call itself so /health/thread-pools reports what runs, not what is
// configured. Held by pointer: the backend closure outlives moves of the model struct.
class RunningCount {
 public:
  class Scope {
   public:
    explicit Scope(std::atomic<int64_t>* n) : n_(n) { n_->fetch_add(1, std::memory_order_relaxed); }
    ~Scope() { n_->fetch_sub(1, std::memory_order_relaxed); }  // also when the backend throws
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    std::atomic<int64_t>* n_;
  };
  std::atomic<int64_t>* get() { return n_.get(); }
  int64_t load() const { return n_->load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<std::atomic<int64_t>> n_ = std::make_unique<std::atomic<int64_t>>(0);
};

struct TextModel {
  const ModelEntry* entry = nullptr;
  std::unique_ptr<TokenBudgetBatcher> batcher;
  RunningCount running;
};

struct TensorModel {
  const ModelEntry* entry = nullptr;
  std::unique_ptr<SizeDelayBatcher> batcher;
  RunningCount running;
};

// Bytes of weights a loaded model holds, on whichever path it runs (fused encoder or
// graph); 0 for a model that failed to load.
inline size_t WeightBytes(const ModelEntry& m) {
  if (m.text) return m.text->weight_bytes();
  return m.session ? m.session->weight_bytes() : 0;
}

}  // namespace internal

struct WorkerService::Impl {
  using Request = http::Request;
  using Responder = http::Responder;
  using ApiError = http::api::ApiError;
  using AdmissionTicket = internal::AdmissionTicket;
  using CachedRow = internal::CachedRow;
  using RowCache = internal::RowCache;
  using TensorModel = internal::TensorModel;
  using TextInput = internal::TextInput;
  using TextModel = internal::TextModel;
  using nanoseconds = std::chrono::nanoseconds;
  using steady_clock = std::chrono::steady_clock;

  WorkerOptions options;
  ModelRegistry registry;
  std::map<std::string, TextModel> text_models;
  std::map<std::string, TensorModel> tensor_models;
  std::unique_ptr<ThreadPool> tokenize_pool;
  std::unique_ptr<ThreadPool> kserve_pool;  // runs KServe requests on tensor models
  std::unique_ptr<RowCache> cache;
  // The serving front for /embed and /v1/embeddings, over `text_backend`.
  std::unique_ptr<front::EmbedBackend> text_backend;
  std::unique_ptr<front::TextFront> text_front;
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<http::HttpServer> server;
  std::unique_ptr<GatewayRegistrar> registrar;  // worker.gateway
  std::atomic<bool> ready{false};
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> total_requests{0};
  std::atomic<uint64_t> cache_hits{0};
  std::once_flag shutdown_once;
  http::api::ParseLimits limits;

  // ---- admission -------------------------------------------------------------
  // Returns a ticket, or null after answering 429 (or 503 when not ready).
  std::shared_ptr<AdmissionTicket> Admit(Responder& r, bool openai);
  // node_id is completed (hostname:port) after the listener binds, while I/O
  // threads may already serve /health: read it through this.
  std::string NodeId() const {
    std::lock_guard<std::mutex> lock(node_id_mu);
    return options.node_id;
  }
  mutable std::mutex node_id_mu;
  void CountDropped(const Status& s);
  // ---- the embedding backend (tokenize pool → batcher → runtime) ------------
  // Tokenizes `call`'s inputs on the tokenize pool and queues them in the model's
  // batcher; `done` exactly once. The serving front calls it with its cache misses.
  void EmbedMisses(front::EmbedCall call, front::EmbedBackend::Done done);
  TextModel* TextModelFor(const std::string& name);
  std::optional<front::TextModelInfo> TextModelInfoFor(const std::string& name);
  // ---- TEI -------------------------------------------------------------------
  void HandleTokenize(Request& req, Responder responder);
  // 413 when a request carries more inputs than worker.max_client_batch_size.
  std::optional<ApiError> CheckClientBatch(size_t inputs) const;
  void HandleInfo(Request&, Responder responder);
  // ---- seed /infer and /health ---------------------------------------------
  void HandleInfer(Request& req, Responder responder);
  // The gateway's binary hop: one float32 row, x-node-id and x-cached headers.
  void SendInferRow(Responder& responder, const std::vector<float>& row, bool cached);
  void HandleHealth(Request&, Responder responder);
  void HandleThreadPools(Request&, Responder responder);
  // POST /health/thread-pools/log-status: logs the table, then answers it.
  void HandleThreadPoolsLog(Request&, Responder responder);
  // Every pool's numbers, read now: I/O, tokenize, KServe, each model's inference
  // thread and the intra-op team.
  std::vector<http::api::SeedThreadPool> ThreadPoolTable() const;
  // ---- KServe v2 -------------------------------------------------------------
  void HandleKServeModel(Request& req, Responder responder, bool ready_only);
  static std::string KServeTypeName(runtime::DataType t);
  static Result<runtime::DataType> RuntimeType(const std::string& kserve);
  void HandleKServeInfer(Request& req, Responder responder);
  void BuildRouter(http::Router& r);
};

}  // namespace infermesh::worker
