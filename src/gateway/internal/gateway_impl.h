// Internals of GatewayService shared by its .cc files: the worker state, the sub-batch and
// forward records, and the Impl struct itself. Not part of the gateway's API.
#pragma once

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "core/hash.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "core/version.h"
#include "front/text_front.h"
#include "gateway/coalescer.h"
#include "gateway/gateway_service.h"
#include "gateway/redis_cache.h"
#include "gateway/ring.h"
#include "gateway/status_page.h"
#include "http/api/f32_binary.h"
#include "http/api/kserve.h"
#include "http/api/seed.h"
#include "http/api/tei.h"
#include "http/auth.h"
#include "http/request_metrics.h"
#include "http/router.h"

namespace infermesh::gateway {
namespace internal {

using http::api::ApiError;
using std::chrono::steady_clock;
using Clock = steady_clock;

inline constexpr const char* kVersion = kInfermeshVersion;

// A tensor model a worker serves (its /info): /infer rows are keyed by its name and
// version, as the worker keys its cache.
struct TensorModelInfo {
  std::string name, version;
  int64_t feature_size = 0;
};

struct WorkerState {
  std::string id;
  http::Endpoint endpoint;
  std::shared_ptr<CircuitBreaker> breaker;     // shared: OnResponse records after unlocking
  bool ready = false;                          // membership's view
  bool info_ok = false;                        // its /info was read
  std::vector<front::TextModelInfo> models;    // text models it serves
  std::vector<TensorModelInfo> tensor_models;  // ready tensor models, in its order
  std::vector<std::string> all_models;         // every model it lists, loaded or not
  boost::json::array info_models;              // its /info "models" entries
  int64_t max_batch = 32;                      // its max_client_batch_size
  double outstanding = 0;                      // estimated tokens in flight
  bool drained = false;                        // by /admin: no new traffic
  enum class Source { kStatic, kDns, kRegistered } source = Source::kStatic;
  Clock::time_point last_heartbeat{};  // kRegistered
  // Our wall clock at a heartbeat's arrival minus the worker's when it sent it (one-way
  // network time included), when its heartbeats carry sent_unix_ms.
  std::optional<int64_t> clock_skew_ms;
  uint64_t sent = 0, ok = 0, failed = 0, backpressure = 0;
};

// What one input's upstream call produced: a row, or the error to answer with.
struct KeyResult {
  std::vector<float> values;
  int64_t tokens = 0;
  std::optional<ApiError> error;
  std::string node_id;  // /infer rows: the worker that answered, and from its cache
  bool cached = false;
};
using KeyCoalescer = Coalescer<std::shared_ptr<const KeyResult>>;

// The attempts at one sub-batch: the first, its retries and its hedge. Exactly one of them
// settles it (completes its inputs, with rows or an error); the others' answers are dropped.
struct AttemptGroup {
  std::atomic<bool> settled{false};
  std::atomic<int> in_flight{0};  // attempts sent and not answered
  std::atomic<bool> hedged{false};
  std::atomic<bool> retried{false};  // a failed attempt went to another worker
};

// A sub-batch on its way to a worker.
struct Sub {
  std::string model;
  std::vector<std::string> materials;
  std::vector<std::string> texts;
  // OpenAI token-id inputs (instead of texts): sent to the worker's /v1/embeddings.
  bool is_ids = false;
  std::vector<std::vector<uint32_t>> ids;
  std::vector<double> ests;  // per input, whole tokens
  double est_tokens = 0;     // their sum
  bool truncate = false;
  http::api::TruncationDirection direction = http::api::TruncationDirection::kRight;
  Clock::time_point deadline;
  uint64_t ring_hash = 0;
  int attempt = 0;
  bool is_retry = false;
  std::vector<std::string> tried;
  Clock::time_point sent_at;  // the current attempt's
  std::shared_ptr<AttemptGroup> group = std::make_shared<AttemptGroup>();
  std::string first_worker;  // where the first attempt went (set before it is sent)
  bool is_hedge = false;
  uint64_t breaker_epoch = 0;  // the current attempt's, from its worker's breaker
};

// A whole request forwarded to one worker (an /infer row, a KServe call, /tokenize,
// model metadata) and, after a transport failure, a 5xx or a 429, to another that serves
// its model, within the retry budget. Keyed requests (/infer rows) go to their ring owner
// under bounded loads; others to the less loaded of two random eligible workers.
struct Forward {
  std::string model;
  bool keyed = false;
  uint64_t ring_hash = 0;
  double cost = 1;  // estimated tokens, counted in the worker's outstanding load
  Clock::time_point deadline;
  http::ClientRequest request;
  // Whether a 200 is well formed (a malformed one counts as the worker's failure).
  std::function<bool(const http::ClientResponse&)> valid;
  // Whether its round trip is an RTT sample for the limiter: only calls that compute
  // (not metadata, /tokenize or an answer from the worker's cache).
  bool sample = false;
  using Done = std::function<void(Result<http::ClientResponse>, const std::string& worker)>;
  Done done;
  int attempt = 0;
  std::vector<std::string> tried;
  Clock::time_point sent_at;                         // the current attempt's
  uint64_t breaker_epoch = 0;                        // the current attempt's
  std::optional<Result<http::ClientResponse>> last;  // the last attempt's answer
  std::string last_worker;
};

// One client call's misses on their way through the gateway: rows come back per input.
struct PendingEmbed {
  std::mutex mu;
  size_t remaining = 0;
  front::EmbeddedRows out;
  std::optional<ApiError> error;
  front::EmbedBackend::Done done;
  Clock::time_point start;
  std::vector<size_t> positions;  // each miss's index in the client's batch
};

// Redis lookups waiting for a lookup thread beyond which a request skips Redis.
inline constexpr int64_t kMaxRedisQueue = 256;

// The x-request-timeout value for what is left until `deadline` (> now): whole
// milliseconds rounded up, so the worker never gets "0" for a call still in time.
inline std::string MillisLeft(Clock::time_point deadline, Clock::time_point now) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
  return std::to_string(std::max<int64_t>(1, (ns + 999'999) / 1'000'000));
}

// A worker's TEI error body {error, error_type} with its status, as our ApiError.
inline ApiError ErrorFromWorker(int status, const std::string& body, const std::string& worker) {
  ApiError e;
  e.status = status;
  e.type = "Backend";
  e.message = "worker " + worker + " answered " + std::to_string(status);
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    if (auto* m = o.if_contains("error"); m && m->is_string()) e.message = m->as_string().c_str();
    if (auto* t = o.if_contains("error_type"); t && t->is_string()) e.type = t->as_string().c_str();
    // OpenAI's shape (token-id sub-batches go to /v1/embeddings): {"error": {message, type,
    // param}}.
    if (auto* eo = o.if_contains("error"); eo && eo->is_object()) {
      const auto& x = eo->as_object();
      if (auto* m = x.if_contains("message"); m && m->is_string())
        e.message = m->as_string().c_str();
      if (auto* t = x.if_contains("type"); t && t->is_string()) e.type = t->as_string().c_str();
      if (auto* p = x.if_contains("param"); p && p->is_string()) e.param = p->as_string().c_str();
    }
  }
  return e;
}

}  // namespace internal

struct GatewayService::Impl {
  using ApiError = internal::ApiError;
  using AttemptGroup = internal::AttemptGroup;
  using Clock = internal::Clock;
  using Forward = internal::Forward;
  using KeyCoalescer = internal::KeyCoalescer;
  using KeyResult = internal::KeyResult;
  using PendingEmbed = internal::PendingEmbed;
  using Sub = internal::Sub;
  using TensorModelInfo = internal::TensorModelInfo;
  using WorkerState = internal::WorkerState;

  GatewayOptions options;
  std::unique_ptr<http::HttpClient> client;
  std::unique_ptr<http::HttpClient> health_client;  // health checks and /info
  std::unique_ptr<Membership> membership;
  OutlierDetector outlier;
  AdaptiveLimiter limiter;
  KeyCoalescer coalescer;
  std::unique_ptr<front::RowCache> cache;
  std::unique_ptr<RedisCache> redis;       // gateway.redis
  std::unique_ptr<ThreadPool> redis_pool;  // its lookups, off the I/O threads
  std::atomic<uint64_t> redis_lookups_skipped{0};
  std::unique_ptr<front::EmbedBackend> backend;
  std::unique_ptr<front::TextFront> front;
  std::unique_ptr<http::HttpServer> server;
  std::atomic<bool> ready{false};
  std::atomic<bool> shutting_down{false};  // readiness stays false from then on

  mutable std::mutex mu;  // ring, workers, counters below
  HashRing ring;
  std::map<std::string, WorkerState> workers;
  double chars_per_token = 4.0;  // corrected by the counts workers report
  int64_t subs_in_flight = 0, retries_in_flight = 0, forwards_in_flight = 0;
  uint64_t retries_total = 0, retries_refused = 0;
  // Retry budget, a token bucket (as gRPC's retry throttling): every first send of a
  // sub-batch adds retry_budget tokens, every retry takes one; a burst allowance of
  // kRetryBurst tokens, and at most kRetryCap saved. So retries stay within
  // retry_budget of the traffic over time, and a worker dying under light load still
  // gets its few in-flight sub-batches retried.
  static constexpr double kRetryBurst = 10, kRetryCap = 100;
  double retry_tokens = kRetryBurst;

  std::thread health_thread;
  std::mutex health_mu;
  std::condition_variable health_cv;
  bool stopping = false;
  std::vector<metrics::CallbackBinding> bindings;
  // Per-worker series (breaker, readiness, ejection, load), bound while the worker is a
  // member; under members_mu. Declared after `mu` and `workers`, which they read.
  std::map<std::string, std::vector<metrics::CallbackBinding>> worker_bindings;

  Impl(GatewayOptions o)
      : options(std::move(o)), outlier(options.outlier), limiter(options.limiter) {}

  // ---- routing --------------------------------------------------------------------
  // Whole tokens, so that loads add and subtract exactly (a residue could flip a
  // placement at the bound and send an input away from its cache).
  double Estimate(const std::string& text) const;  // under mu
  bool Serves(const WorkerState& w, const std::string& model) const;
  bool Eligible(const WorkerState& w, const std::string& model, Clock::time_point now);
  std::optional<front::TextModelInfo> ModelFor(const std::string& name) const;
  void Embed(front::EmbedCall call, front::EmbedBackend::Done done);

  // Embed's second half: the Redis lookup (when `look_up`), coalescing, owners under
  // bounded loads, sub-batches.
  void RouteEmbed(front::EmbedCall call, std::vector<std::string> materials,
                  const std::shared_ptr<PendingEmbed>& pending, bool look_up);

  // Settles `sub`'s group with `result` for every input, unless another attempt did.
  void Complete(const Sub& sub, const std::shared_ptr<const KeyResult>& result);
  void Fail(const Sub& sub, ApiError e);

  // Sends `sub` to worker `id` (its estimated tokens already counted there).
  void Dispatch(std::shared_ptr<Sub> sub, const std::string& id);

  // ---- hedging (gateway.hedging) ----------------------------------------------------
  // A sub-batch still unanswered after the hedge delay (gateway.hedge_delay, or the
  // observed p95 of sub-batch round trips) is sent once more, to the next eligible worker
  // on its ring; the first answer settles it and the other is dropped. A hedge takes a
  // token from the retry budget, so hedges and retries together stay within it.
  std::mutex hedge_mu;
  std::condition_variable hedge_cv;
  std::multimap<Clock::time_point, std::weak_ptr<Sub>> hedge_queue;
  std::thread hedge_thread;
  bool hedge_stopping = false;
  std::vector<double> rtt_window;  // under mu: recent sub-batch RTTs (ms), a ring
  size_t rtt_next = 0;
  double rtt_p95_ms = 0;  // under mu; 0 until kRttWindow / 4 samples
  static constexpr size_t kRttWindow = 256;
  uint64_t hedges_sent = 0, hedges_refused = 0;  // under mu
  std::atomic<uint64_t> hedges_won{0}, answers_dropped{0};

  // A hedge that was not sent after all (its deadline passed, or the worker's breaker
  // refused it): its retry token goes back (hedges are counted when sent).
  void UnsentHedge();
  std::optional<Clock::duration> HedgeDelay();
  void RecordRtt(Clock::duration rtt);  // under mu
  void HedgeLoop();
  void Hedge(const std::shared_ptr<Sub>& sub);
  void Unload(const std::string& id, const Sub& sub);
  void Unload(const std::string& id, double cost);

  // A call's outcome in the worker's breaker, outlier detector and counters.
  void RecordOutcome(const std::string& id, Outcome o, Clock::time_point now, uint64_t epoch);
  void OnResponse(const std::shared_ptr<Sub>& sub, const std::string& id,
                  Result<http::ClientResponse> r);
  void RetryOrFail(const std::shared_ptr<Sub>& sub, const std::string& id, ApiError error,
                   bool was_sent);

  // ---- whole requests forwarded to one worker (Forward) --------------------------------
  // Under mu: an eligible worker for `f` not tried yet (ring owner under bounded loads for
  // keyed requests, else the less loaded of two random ones), with f's cost added to its
  // load and its breaker's permission taken; nullopt when none is left.
  std::optional<std::pair<std::string, http::Endpoint>> PickLocked(Forward& f,
                                                                   Clock::time_point now);
  void SendForward(const std::shared_ptr<Forward>& f);
  void OnForward(const std::shared_ptr<Forward>& f, const std::string& id,
                 Result<http::ClientResponse> r);

  // ---- membership and worker info ---------------------------------------------------
  void RefreshWorkers();
  void ReadInfo(const std::string& id, const http::Endpoint& ep);

  // Resolves every dns: name; adds new addresses, removes vanished ones (DNS-sourced only).
  Clock::time_point next_dns{};
  void RefreshDns();

  // Registered workers that missed their heartbeats for registration_ttl leave.
  void ExpireRegistrations();
  void HealthLoop();

  // ---- handlers ---------------------------------------------------------------------
  // Admission: the adaptive limit, then a bounded FIFO wait (gateway.admission_wait,
  // gateway.max_waiting_requests) served by the admission thread as slots free up;
  // beyond either, 429 with a Retry-After from the limiter's state.
  using Proceed = front::TextFront::Hooks::Proceed;
  struct Waiter {
    std::shared_ptr<http::Responder> responder;
    http::api::ApiFamily family;
    Proceed proceed;
    Clock::time_point until;
    Clock::time_point since;
  };
  std::mutex wait_mu;
  std::condition_variable wait_cv;
  std::deque<Waiter> waiting;
  std::atomic<size_t> waiting_count{0};
  std::thread wait_thread;
  bool wait_stopping = false;
  std::atomic<uint64_t> waited{0}, wait_timeouts{0};
  std::unique_ptr<http::RequestMetrics> request_metrics =
      std::make_unique<http::RequestMetrics>(metrics::Registry::Global());
  std::atomic<uint64_t> requests_total{0};    // inference requests that reached admission
  std::atomic<uint64_t> health_rounds{0};     // health-check rounds run
  std::atomic<uint64_t> infer_cache_hits{0};  // /infer rows answered from the local tier
  http::api::ParseLimits parse_limits;

  static std::string ErrorBody(const ApiError& e, http::api::ApiFamily family);
  void Refuse(http::Responder& r, http::api::ApiFamily family, ApiError e, int retry_after);
  std::shared_ptr<void> Ticket(Clock::time_point start);

  // How long a request beyond the limit may wait for a slot: gateway.admission_wait while
  // the limiter probes (the limit is pinned low for a moment) or has no minimum RTT yet;
  // otherwise at most gateway.admission_wait_rtts x the minimum RTT (at least 5 ms).
  // Under sustained overload a wait longer than a round trip or two only turns a fast 429
  // into a slow one and a late answer, so the queue stays that deep.
  Clock::duration WaitAllowance() const;
  void Admit(const std::shared_ptr<http::Responder>& r, http::api::ApiFamily family,
             Proceed proceed);
  void WaitLoop();

  // ---- membership changes (/admin) and auth ------------------------------------------
  http::BearerAuth inference_auth, admin_auth;

  // Membership changes: the workers map and the ring change in one critical section
  // under mu (so every ring member is in the map), and the health checker's list is then
  // replaced under members_mu, which serializes whole changes (lock order: members_mu,
  // then mu), so an older list can never overwrite a newer one.
  std::mutex members_mu;

  // Under mu: the ring from the workers map; returns the endpoints for the checker.
  std::vector<http::Endpoint> RebuildRingLocked();

  // Applies `change` (under mu; returns whether membership changed), then updates the
  // ring and the health checker.
  bool ChangeMembers(const std::function<bool()>& change);

  // Binds the per-worker series of members that have none, and drops those of workers
  // that left. Under members_mu, never under mu (the callbacks take mu under the
  // registry's family lock).
  void SyncWorkerMetrics(const std::vector<std::string>& ids);
  Status AddWorker(const http::Endpoint& ep,
                   WorkerState::Source source = WorkerState::Source::kStatic);

  // `only_registered`: a deregistration removes a worker only if it registered itself
  // (one also listed statically or found in DNS stays).
  Status RemoveWorker(const std::string& id, bool only_registered = false);
  Status Drain(const std::string& id, bool drained);

  // Inference routes need an inference or the admin key when keys are configured; admin
  // routes the admin key (open only when no key at all is configured). 401 without a
  // key, 403 with a wrong one.
  bool Authorized(http::Request& q, http::Responder& r, http::api::ApiFamily family, bool admin);
  void SendStatus(http::Responder& r, const Status& st, int ok_status, boost::json::object ok);
  void HandleHealth(http::Request&, http::Responder r);

  // One entry per worker, for /stats and /admin/workers.
  boost::json::array WorkersJson(Clock::time_point now, size_t* total, size_t* up);

  // The job service's recent jobs, for the status page: its GET /jobs?limit=20, with the
  // caller's Authorization passed on (the job service checks its own keys).
  void HandleUiJobs(http::Request& q, http::Responder r);
  void HandleStats(http::Request&, http::Responder r);

  // ---- forwarded routes: /infer, KServe v2, /tokenize ---------------------------------
  // The mesh's /infer model: the first ready worker's default tensor model (its first
  // ready tensor model with a known feature size, as the worker chooses).
  std::optional<TensorModelInfo> InferModel() const;

  // Whether any worker lists `model` (loaded or not), and whether one that is ready has it.
  bool Lists(const std::string& model) const;

  // A worker's answer, relayed as it is (status, body, content type, Retry-After); a
  // transport failure in the family's error shape.
  static void Relay(http::Responder& r, const Result<http::ClientResponse>& resp,
                    http::api::ApiFamily family);
  std::shared_ptr<Forward> MakeForward(std::string method, const std::string& model,
                                       std::string target, std::string body, double cost,
                                       Clock::time_point deadline);

  // POST /infer (the seed's one row): keyed by the worker's own cache key, so the row
  // goes to the worker whose cache holds it; looked up first in the gateway's tiers and
  // coalesced with identical rows in flight.
  void HandleInfer(http::Request& q, http::Responder r);
  void RunInfer(const std::shared_ptr<http::Responder>& shared,
                const std::shared_ptr<std::string>& body, Clock::time_point deadline,
                std::shared_ptr<void> ticket);

  // /infer's miss: leads the row's call (or joins one in flight) and forwards it.
  template <typename Respond>
  void LeadInfer(std::string material, const std::string& body, const TensorModelInfo& model,
                 Clock::time_point deadline, const Respond& respond);

  // POST /v2/models/{model}/infer: to a worker serving the model (the less loaded of two).
  void HandleKServeInfer(http::Request& q, http::Responder r);

  // Admission, then `f` forwarded and its answer relayed as it is; the ticket is held
  // until the answer is sent.
  void AdmitAndRelay(const std::shared_ptr<http::Responder>& shared, http::api::ApiFamily family,
                     const std::shared_ptr<Forward>& f);

  // Whether some worker lists `model`; otherwise KServe's 404, answered here.
  bool KnownModel(const std::string& model, http::Responder& r);

  // GET /v2/models/{model}[/ready]: answered by a worker that lists the model.
  void HandleKServeModel(http::Request& q, http::Responder r);

  // POST /tokenize: to a worker serving the default text model.
  void HandleTokenize(http::Request& q, http::Responder r);

  // GET /health/thread-pools: the gateway's own threads in the seed's table.
  std::vector<http::api::SeedThreadPool> ThreadPoolTable();
  void HandleInfo(http::Request&, http::Responder r);
  void BindMetrics();
};

}  // namespace infermesh::gateway
