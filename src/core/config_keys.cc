// The one list of configuration keys. docs/configuration.md mirrors it; a unit
// test checks that every key here appears there.
#include "core/config.h"

namespace infermesh {

const std::vector<ConfigKey>& DeclaredConfigKeys() {
  static const std::vector<ConfigKey> keys = {
      {"log.level", "info", "trace, debug, info, warn, error or off"},
      {"log.format", "logfmt", "logfmt or json"},
      {"runtime.intra_op_threads", "0", "threads per inference (0 = all cores)"},
      {"runtime.max_model_bytes", "2GiB", "largest model file accepted"},
      {"runtime.precision", "",
       "fp32 or bf16 for every model (empty: each model's infermesh.json)"},
      {"runtime.fused_encoder", "true", "run BERT-family encoders through the fused packed path"},
      {"runtime.graph_fusion", "true",
       "fuse MatMul+bias+GELU, residual+LayerNorm and scale+mask+Softmax on the graph path"},
      {"worker.host", "127.0.0.1", "address the worker listens on"},
      {"worker.port", "8000", "port the worker listens on (0 = ephemeral)"},
      {"worker.models", "", "model repository: one folder or .onnx file per model"},
      {"worker.node_id", "", "name reported as node_id (default: hostname:port)"},
      {"worker.io_threads", "1", "HTTP I/O threads"},
      {"worker.tokenize_threads", "1", "tokenization threads"},
      {"worker.max_concurrent_requests", "512", "requests in flight before 429"},
      {"worker.max_body_bytes", "2MiB", "largest request body (413 beyond)"},
      {"worker.max_client_batch_size", "32", "inputs per request (413 beyond)"},
      {"worker.max_batch_tokens", "16384", "real tokens per text batch"},
      {"worker.max_batch_requests", "0", "inputs per text batch (0 = token budget only)"},
      {"worker.max_queue_requests", "1024", "queued requests per model before 429"},
      {"worker.max_queue_delay", "0ms", "text batching idle timer (0 = continuous)"},
      {"worker.auto_truncate", "false", "truncate over-long inputs when the request does not say"},
      {"worker.request_timeout", "30s", "deadline of a request; expired requests are not computed"},
      {"worker.shutdown_grace", "30s", "time in-flight requests get after SIGTERM"},
      {"worker.tensor_max_batch_size", "32", "rows per tensor-model batch"},
      {"worker.tensor_max_queue_delay", "20ms", "tensor batching delay"},
      {"worker.test_backend_delay", "0ms",
       "TEST ONLY: every model call sleeps this long first (holds requests in batchers)"},
      {"cache.max_bytes", "256MiB", "in-process result cache (0 = off)"},
      // The gateway (src/gateway/gateway_service.h).
      {"gateway.host", "127.0.0.1", "address the gateway listens on"},
      {"gateway.port", "8000", "port the gateway listens on (0 = ephemeral)"},
      {"gateway.workers", "", "workers, host:port,... (static membership)"},
      {"gateway.io_threads", "2", "HTTP I/O threads"},
      {"gateway.max_client_batch_size", "512", "inputs per client request (413 beyond)"},
      {"gateway.max_sub_batch", "0",
       "inputs per sub-batch to one worker (0 = the worker's own max_client_batch_size)"},
      {"gateway.max_body_bytes", "8MiB", "largest request body (413 beyond)"},
      {"gateway.request_timeout", "30s",
       "deadline of a request; the rest travels to the worker in x-request-timeout"},
      {"gateway.balance_factor", "1.25",
       "bounded loads: no worker above this times the average outstanding tokens"},
      {"gateway.max_attempts", "3", "tries per sub-batch, on successive workers of the ring"},
      {"gateway.retry_budget", "0.2",
       "retries in flight at most this share of sub-batches in flight (at least 3)"},
      {"gateway.adaptive_limit", "true", "adaptive concurrency limit (429 beyond it)"},
      {"gateway.min_concurrency", "4", "adaptive limit floor, and its probe concurrency"},
      {"gateway.max_concurrency", "4096", "adaptive limit ceiling"},
      {"gateway.max_connections_per_worker", "64", "pooled keep-alive connections per worker"},
      {"gateway.breaker_failures", "5", "consecutive failures that open a worker's breaker"},
      {"gateway.breaker_open_time", "30s", "time an open breaker waits before a probe"},
      {"gateway.breaker_successes", "2", "probe successes that close a breaker"},
      {"gateway.health_interval", "1s", "time between health checks of each worker"},
      {"gateway.health_timeout", "1s", "a health check slower than this fails"},
      // The HTTP server (src/http/server.h, ServerLimits).
      {"server.max_connections", "1024",
       "client connections; beyond, the longest-waiting idle or header-stalled one is shed"},
      {"server.max_header_bytes", "16KiB", "request line and header fields (431 beyond)"},
      {"server.header_timeout", "10s", "time for a request's headers to arrive"},
      {"server.body_timeout", "60s", "time for a request's body to arrive after its headers"},
      {"server.idle_timeout", "60s", "keep-alive idle time; also bounds writing one response"},
      {"server.shutdown_delay", "2s",
       "after SIGTERM, how long the listener stays open answering not-ready (503)"},
  };
  return keys;
}

}  // namespace infermesh
