// The serving front for text embeddings, shared by the worker and the gateway: TEI's
// POST /embed and OpenAI's POST /v1/embeddings. It owns everything between the socket
// and the compute: admission (through a hook), parsing and limits, the per-input cache,
// response encoding (JSON, or binary float32 rows for the gateway's hop) and the one
// Status → HTTP mapping. What computes the rows is an EmbedBackend:
//
//   worker:   EmbedBackend = tokenize on its pool → token-budget batcher → runtime
//   gateway:  EmbedBackend = split per owner on the ring → pooled HTTP to the workers
//
//   TextFront front(options, cache.get(), &backend, hooks);
//   router.Add("POST", "/embed", [&](Request& q, Responder r) { front.HandleEmbed(q, std::move(r));
//   });
//
// The line between the two (docs/decisions.md, "One front, two backends"): the front
// never tokenizes and never knows where rows are computed; the backend never sees HTTP,
// JSON or the cache. A backend gets only the cache misses, in client order, and answers
// un-normalized pooled rows (normalization and OpenAI's `dimensions` are per request,
// so one cached row serves every variant).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/lru_cache.h"
#include "http/api/api_error.h"
#include "http/api/tei.h"
#include "http/message.h"

namespace infermesh::front {

// One text input: text, or pre-tokenized ids (OpenAI's token arrays).
struct TextInput {
  std::string text;
  std::vector<uint32_t> ids;
  bool is_ids = false;
};

// A cached result: the pooled, un-normalized row and the input's token count (for
// OpenAI's usage).
struct CachedRow {
  std::vector<float> values;
  int64_t tokens = 0;
};
using RowCache = ShardedLruCache<CachedRow>;
inline size_t CachedRowBytes(const CachedRow& r) {
  return r.values.size() * sizeof(float) + sizeof(r);
}

struct TextModelInfo {
  std::string name;
  std::string version;
  int64_t dim = 0;
  bool normalize_by_default = true;
};

// What the backend computes for the misses it was given, in order.
struct EmbeddedRows {
  std::vector<std::vector<float>> rows;  // un-normalized pooled rows
  std::vector<int64_t> tokens;           // per row
  std::chrono::nanoseconds tokenization{0}, queue{0}, inference{0};
};

using CancelFlag = std::shared_ptr<const std::atomic<bool>>;

struct EmbedCall {
  TextModelInfo model;
  std::vector<TextInput> inputs;  // the cache misses
  std::vector<size_t> positions;  // each one's index in the client's batch (for messages)
  bool truncate = false;
  http::api::TruncationDirection direction = http::api::TruncationDirection::kRight;
  std::chrono::steady_clock::time_point deadline;
  CancelFlag cancel;  // null = never cancelled
};

class EmbedBackend {
 public:
  using Done = std::function<void(http::api::ApiResult<EmbeddedRows>)>;
  virtual ~EmbedBackend() = default;
  // Calls `done` exactly once, on any thread, with one row per input or an error that
  // names the input by its position.
  virtual void Embed(EmbedCall call, Done done) = 0;
};

// The pipeline's result: rows in client order.
struct EmbedOutcome {
  std::vector<std::shared_ptr<const CachedRow>> rows;
  int64_t prompt_tokens = 0;
  std::chrono::nanoseconds tokenization{0}, queue{0}, inference{0};
  bool all_cached = true;
};

struct TextFrontOptions {
  int64_t max_client_batch_size = 512;
  bool auto_truncate = false;
  std::chrono::milliseconds request_timeout{30000};
  http::api::ParseLimits limits;
};

class TextFront {
 public:
  struct Hooks {
    // Admission: calls `proceed` with a ticket (held until the response is sent) at once
    // or later (a bounded wait), or answers the refusal (429/503) in the family's error
    // shape through the responder and never calls it.
    using Proceed = std::function<void(std::shared_ptr<void> ticket)>;
    std::function<void(const std::shared_ptr<http::Responder>&, http::api::ApiFamily, Proceed)>
        admit;
    // The model for a request: by name, or the default for "" (TEI names none). nullopt:
    // not served here.
    std::function<std::optional<TextModelInfo>(const std::string& name)> model;
  };

  TextFront(TextFrontOptions options, RowCache* cache, EmbedBackend* backend, Hooks hooks);

  void HandleEmbed(http::Request& req, http::Responder responder);
  void HandleOpenAi(http::Request& req, http::Responder responder);

  // Cache lookups per input, the misses to the backend, rows back in order; `finish`
  // exactly once, on some thread.
  void Embed(const TextModelInfo& model, std::vector<TextInput> inputs, bool truncate,
             http::api::TruncationDirection direction,
             std::chrono::steady_clock::time_point deadline, CancelFlag cancel,
             std::function<void(http::api::ApiResult<EmbedOutcome>)> finish);

  // The cache key material of an input (stable: it may feed shared caches and routing).
  static std::string TextKey(const TextModelInfo& m, const TextInput& in, bool truncate,
                             http::api::TruncationDirection direction);

  uint64_t cache_hits() const { return cache_hits_.load(std::memory_order_relaxed); }
  const TextFrontOptions& options() const { return options_; }

 private:
  struct Pending;
  std::shared_ptr<Pending> Keep(http::Request& req) const;
  void RunEmbed(const std::shared_ptr<http::Responder>& shared, Pending& req,
                std::shared_ptr<void> ticket);
  void RunOpenAi(const std::shared_ptr<http::Responder>& shared, Pending& req,
                 std::shared_ptr<void> ticket);
  std::optional<http::api::ApiError> CheckClientBatch(size_t inputs) const;
  static void SendBinaryRows(http::Responder& r, const EmbedOutcome& outcome,
                             const std::vector<std::vector<float>>& rows,
                             std::vector<std::pair<std::string, std::string>> headers,
                             void (*send_error)(http::Responder&, const http::api::ApiError&));
  std::chrono::steady_clock::time_point Deadline(const http::Request& req) const;

  TextFrontOptions options_;
  RowCache* cache_;
  EmbedBackend* backend_;
  Hooks hooks_;
  std::atomic<uint64_t> cache_hits_{0};
};

// ---- response helpers shared by the worker's and the gateway's other handlers ------
using SharedResponder = std::shared_ptr<http::Responder>;
void Send(http::Responder& r, int status, std::string body,
          std::vector<std::pair<std::string, std::string>> headers = {},
          std::string content_type = "application/json");
void SendTeiError(http::Responder& r, const http::api::ApiError& e);
void SendOpenAiError(http::Responder& r, const http::api::ApiError& e);
void SendKServeError(http::Responder& r, const http::api::ApiError& e);
void L2Normalize(std::vector<float>& v);
// TEI's timing headers (x-compute-time, x-tokenization-time, x-queue-time, ...).
std::vector<std::pair<std::string, std::string>> TimingHeaders(const EmbedOutcome& o,
                                                               std::chrono::nanoseconds total);

// The header carrying per-row token counts on the binary hop ("12,7,33"), so that a
// gateway can answer OpenAI's usage and correct its token estimates.
inline constexpr const char* kTokenCountsHeader = "x-token-counts";
// A caller's deadline in milliseconds from the request's arrival; the front uses the
// earlier of it and its own request_timeout, and a gateway forwards what is left of its
// client's.
inline constexpr const char* kRequestTimeoutHeader = "x-request-timeout";
// A request's deadline: `request_timeout` after it arrived, or sooner when it carries
// x-request-timeout (a larger value never extends it).
std::chrono::steady_clock::time_point RequestDeadline(const http::Request& req,
                                                      std::chrono::milliseconds request_timeout);
// The worker that computed a row (the seed's node_id) and whether it came from its cache,
// on the binary /infer hop.
inline constexpr const char* kNodeIdHeader = "x-node-id";
inline constexpr const char* kCachedHeader = "x-cached";

}  // namespace infermesh::front
