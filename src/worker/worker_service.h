// WorkerService: `infermesh worker`, a model server that speaks TEI, OpenAI,
// KServe v2 and the seed's generic /infer, over the models of one repository.
//
//   IM_ASSIGN_OR_RETURN(WorkerOptions opts, WorkerOptionsFromConfig(config));
//   IM_ASSIGN_OR_RETURN(auto worker, WorkerService::Start(opts));
//   ... worker->port() ...
//   worker->Shutdown();  // readiness false, stop accepting, drain, stop
//
// One request's path (text models): the I/O thread parses and validates the body,
// admits it (max_concurrent_requests, else 429) and looks each input up in the
// cache; misses are tokenized on the tokenize pool and queued in the model's
// TokenBudgetBatcher (bounded, else 429) with the request's deadline and the
// connection's cancel flag; the inference thread runs the batch, the completion
// fills the cache and sends the response. Nothing blocks an I/O thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/config.h"
#include "core/status.h"
#include "http/server.h"
#include "runtime/session.h"
#include "worker/tensor_batcher.h"
#include "worker/token_batcher.h"

namespace infermesh::worker {

struct WorkerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string models_dir;
  std::string node_id;
  int io_threads = 1;
  int tokenize_threads = 1;
  int intra_op_threads = 0;
  int64_t max_model_bytes = int64_t{2} << 30;
  std::optional<runtime::Precision> precision;  // unset: each model's own
  bool fused_encoder = true;
  int64_t max_concurrent_requests = 512;
  size_t max_body_bytes = 2 << 20;
  int64_t max_client_batch_size = 32;
  bool auto_truncate = false;
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds shutdown_grace{30000};
  http::ServerLimits server_limits;  // the server.* keys
  int64_t cache_bytes = int64_t{256} << 20;
  TokenBatcherConfig text_batcher;
  TensorBatcherConfig tensor_batcher;
  // Registration with a gateway (worker.gateway, empty = none): the address to advertise
  // (worker.advertise; default this worker's host:port, the hostname when it listens on
  // all addresses), the key (worker.gateway_key) and the heartbeat interval.
  std::string gateway;
  std::string advertise;
  std::string gateway_key;
  std::chrono::milliseconds heartbeat_interval{2000};
  // TEST ONLY (worker.test_backend_delay): every model call sleeps this long on the
  // inference thread first, so tests can hold a request in a batcher deterministically.
  std::chrono::milliseconds test_backend_delay{0};
};

// Reads the worker.*, server.* and cache.* keys (see docs/configuration.md).
Result<WorkerOptions> WorkerOptionsFromConfig(const Config& config);

class WorkerService {
 public:
  // Loads and warms every model, then starts serving. Fails only when the
  // repository cannot be read or the port cannot be bound; a model that fails to
  // load is reported at /info and the others are served.
  static Result<std::unique_ptr<WorkerService>> Start(const WorkerOptions& options);
  ~WorkerService();

  uint16_t port() const;
  bool ready() const;
  // Readiness turns false, the listener closes, requests in flight finish (up to
  // shutdown_grace), the batchers drain, and the threads join. Idempotent.
  void Shutdown();

  struct Impl;

 private:
  explicit WorkerService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace infermesh::worker
