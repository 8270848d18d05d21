#include "gateway/gateway_service.h"

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

using http::api::ApiError;
using std::chrono::steady_clock;
using Clock = steady_clock;

namespace {

constexpr const char* kVersion = kInfermeshVersion;

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
constexpr int64_t kMaxRedisQueue = 256;

// An /infer row or a KServe input costs about this many tokens' worth of load.
constexpr double kTensorRowCost = 16;

// The x-request-timeout value for what is left until `deadline` (> now): whole
// milliseconds rounded up, so the worker never gets "0" for a call still in time.
std::string MillisLeft(Clock::time_point deadline, Clock::time_point now) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
  return std::to_string(std::max<int64_t>(1, (ns + 999'999) / 1'000'000));
}

// A worker's message names a sub-batch input as "input N"; the marker stands for it until
// the error reaches each client call that contains that input.
constexpr const char* kInputMarker = "\x01input\x01";

// The sub-batch index a worker's error names ("input 3: ..."), and the message with the
// marker in its place.
std::optional<std::pair<size_t, std::string>> NamedInput(const std::string& message,
                                                         size_t inputs) {
  static const std::regex re("input ([0-9]+)");
  std::smatch m;
  if (!std::regex_search(message, m, re)) return std::nullopt;
  size_t idx = 0;
  const std::string digits = m[1].str();
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), idx);
  if (ec != std::errc() || idx >= inputs) return std::nullopt;
  return std::make_pair(idx, m.prefix().str() + "input " + kInputMarker + m.suffix().str());
}

// A worker's TEI error body {error, error_type} with its status, as our ApiError.
ApiError ErrorFromWorker(int status, const std::string& body, const std::string& worker) {
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

}  // namespace

struct GatewayService::Impl {
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
  double Estimate(const std::string& text) const {  // under mu
    return std::ceil(static_cast<double>(text.size()) / chars_per_token) + 2;
  }

  bool Serves(const WorkerState& w, const std::string& model) const {
    if (!w.info_ok) return false;
    for (const auto& m : w.models) {
      if (m.name == model) return true;
    }
    for (const auto& m : w.tensor_models) {
      if (m.name == model) return true;
    }
    return false;
  }

  bool Eligible(const WorkerState& w, const std::string& model, Clock::time_point now) {
    return w.ready && !w.drained && Serves(w, model) && w.breaker->Available(now) &&
           !outlier.Ejected(w.id, now);
  }

  std::optional<front::TextModelInfo> ModelFor(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu);
    std::optional<front::TextModelInfo> any;
    size_t distinct = 0;
    std::map<std::string, front::TextModelInfo> seen;
    for (const auto& [id, w] : workers) {
      if (!w.ready || !w.info_ok) continue;
      for (const auto& m : w.models) {
        if (m.name == name) return m;
        if (seen.emplace(m.name, m).second) ++distinct;
      }
    }
    // TEI names no model: the first one served. A single-model mesh answers any name,
    // as a single-model worker does.
    if (name.empty() || distinct == 1) {
      if (!seen.empty()) return seen.begin()->second;
    }
    return std::nullopt;
  }

  void Embed(front::EmbedCall call, front::EmbedBackend::Done done) {
    const size_t n = call.inputs.size();
    auto pending = std::make_shared<PendingEmbed>();
    pending->remaining = n;
    pending->out.rows.resize(n);
    pending->out.tokens.resize(n);
    pending->done = std::move(done);
    pending->start = Clock::now();
    pending->positions = call.positions;

    std::vector<std::string> materials(n);
    for (size_t k = 0; k < n; ++k) {
      materials[k] =
          front::TextFront::TextKey(call.model, call.inputs[k], call.truncate, call.direction);
    }
    // The shared tier: one pipelined round trip for every local miss, on the Redis lookup
    // threads (never on an I/O thread: a slow Redis must not stall other requests). When
    // their queue is full the lookup is skipped: the inputs go to the workers.
    if (redis) {
      if (redis_pool->Stats().queued < kMaxRedisQueue) {
        auto state = std::make_shared<
            std::tuple<front::EmbedCall, std::vector<std::string>, std::shared_ptr<PendingEmbed>>>(
            std::move(call), std::move(materials), pending);
        const bool queued = redis_pool->Submit([this, state] {
          auto& [c, m, p] = *state;
          try {
            RouteEmbed(std::move(c), std::move(m), p, /*look_up=*/true);
          } catch (const std::exception& e) {
            log::Error("gateway embed failed", {{"error", e.what()}});
          }
        });
        if (queued) return;
        auto& [c, m, p] = *state;  // shutting down: no lookup
        return RouteEmbed(std::move(c), std::move(m), p, false);
      }
      redis_lookups_skipped.fetch_add(1, std::memory_order_relaxed);
    }
    RouteEmbed(std::move(call), std::move(materials), pending, false);
  }

  // Embed's second half: the Redis lookup (when `look_up`), coalescing, owners under
  // bounded loads, sub-batches.
  void RouteEmbed(front::EmbedCall call, std::vector<std::string> materials,
                  const std::shared_ptr<PendingEmbed>& pending, bool look_up) {
    const size_t n = call.inputs.size();
    std::vector<size_t> leaders;
    std::vector<char> from_redis(n, 0);
    if (look_up) {
      auto found = redis->Lookup(materials);
      for (size_t k = 0; k < n; ++k) {
        if (!found[k]) continue;
        from_redis[k] = 1;
        pending->out.rows[k] = found[k]->values;
        pending->out.tokens[k] = found[k]->tokens;
        --pending->remaining;
      }
      if (pending->remaining == 0) {
        pending->out.inference = Clock::now() - pending->start;
        return pending->done(std::move(pending->out));
      }
    }
    for (size_t k = 0; k < n; ++k) {
      if (from_redis[k]) continue;
      const bool leader = coalescer.Join(
          materials[k], [pending, k](const Result<std::shared_ptr<const KeyResult>>& r) {
            front::EmbedBackend::Done finish;
            {
              std::lock_guard<std::mutex> lock(pending->mu);
              if (!r.ok()) {
                if (!pending->error) pending->error = http::api::ApiErrorFromStatus(r.status());
              } else if ((*r)->error) {
                if (!pending->error) {
                  pending->error = *(*r)->error;
                  // A worker's "input N" names its sub-batch: name this client's input.
                  std::string& msg = pending->error->message;
                  const size_t at = msg.find(kInputMarker);
                  if (at != std::string::npos) {
                    msg.replace(
                        at, std::strlen(kInputMarker),
                        std::to_string(k < pending->positions.size() ? pending->positions[k] : k));
                  }
                }
              } else {
                pending->out.rows[k] = (*r)->values;
                pending->out.tokens[k] = (*r)->tokens;
              }
              if (--pending->remaining > 0) return;
              finish = std::move(pending->done);
            }
            pending->out.inference = Clock::now() - pending->start;
            if (pending->error) return finish(*pending->error);
            finish(std::move(pending->out));
          });
      if (leader) leaders.push_back(k);
    }
    if (leaders.empty()) return;

    // Owners under bounded loads, then sub-batches per owner.
    const auto now = Clock::now();
    std::map<std::string, std::vector<size_t>> groups;
    std::vector<size_t> unroutable;
    std::map<std::string, double> est_by_key;
    {
      std::lock_guard<std::mutex> lock(mu);
      const auto& ids = ring.members();
      std::vector<double> loads(ids.size(), 0.0);
      std::vector<char> eligible(ids.size(), 0);
      for (size_t i = 0; i < ids.size(); ++i) {
        auto it = workers.find(ids[i]);  // always there: ring and map change together
        if (it == workers.end()) continue;
        loads[i] = it->second.outstanding;
        eligible[i] = Eligible(it->second, call.model.name, now) ? 1 : 0;
      }
      double incoming = 0;
      for (size_t k : leaders) {
        const double est = call.inputs[k].is_ids
                               ? static_cast<double>(call.inputs[k].ids.size()) + 2
                               : Estimate(call.inputs[k].text);
        est_by_key[materials[k]] = est;
        incoming += est;
      }
      for (size_t k : leaders) {
        const double est = est_by_key[materials[k]];
        auto m = PickBounded(
            ring, RingHash(materials[k]), loads, [&](size_t i) { return eligible[i] != 0; },
            options.balance_factor, est, incoming);
        incoming -= est;
        if (!m) {
          unroutable.push_back(k);
          continue;
        }
        loads[*m] += est;
        groups[ids[*m]].push_back(k);
      }
      for (const auto& [id, ks] : groups) {
        double sum = 0;
        for (size_t k : ks) sum += est_by_key[materials[k]];
        if (auto it = workers.find(id); it != workers.end()) it->second.outstanding += sum;
      }
    }
    for (size_t k : unroutable) {
      auto r = std::make_shared<KeyResult>();
      r->error =
          ApiError{503, "Unhealthy", "no ready worker serves model '" + call.model.name + "'", ""};
      coalescer.Complete(materials[k], std::shared_ptr<const KeyResult>(r));
    }
    for (const auto& [id, ks] : groups) {
      int64_t max_batch = options.max_sub_batch;
      if (max_batch <= 0) {
        std::lock_guard<std::mutex> lock(mu);
        auto it = workers.find(id);
        max_batch = std::max<int64_t>(1, it == workers.end() ? 1 : it->second.max_batch);
      }
      for (size_t begin = 0; begin < ks.size(); begin += static_cast<size_t>(max_batch)) {
        auto sub = std::make_shared<Sub>();
        sub->model = call.model.name;
        sub->truncate = call.truncate;
        sub->direction = call.direction;
        sub->deadline = call.deadline;
        const size_t end = std::min(ks.size(), begin + static_cast<size_t>(max_batch));
        for (size_t j = begin; j < end; ++j) {
          sub->materials.push_back(materials[ks[j]]);
          if (call.inputs[ks[j]].is_ids) {
            sub->is_ids = true;  // a call's inputs are all ids or all texts (OpenAI's rule)
            sub->ids.push_back(call.inputs[ks[j]].ids);
          }
          sub->texts.push_back(call.inputs[ks[j]].text);
          sub->ests.push_back(est_by_key[materials[ks[j]]]);
          sub->est_tokens += sub->ests.back();
        }
        sub->ring_hash = RingHash(sub->materials.front());
        sub->first_worker = id;
        Dispatch(sub, id);
      }
    }
  }

  // Settles `sub`'s group with `result` for every input, unless another attempt did.
  void Complete(const Sub& sub, const std::shared_ptr<const KeyResult>& result) {
    if (sub.group->settled.exchange(true)) return;
    for (const auto& m : sub.materials) coalescer.Complete(m, result);
  }
  void Fail(const Sub& sub, ApiError e) {
    auto r = std::make_shared<KeyResult>();
    r->error = std::move(e);
    Complete(sub, r);
  }

  // Sends `sub` to worker `id` (its estimated tokens already counted there).
  void Dispatch(std::shared_ptr<Sub> sub, const std::string& id) {
    const auto now = Clock::now();
    if (now >= sub->deadline) {
      Unload(id, *sub);
      if (sub->is_hedge) return UnsentHedge();  // the first attempt answers
      return Fail(*sub, http::api::ApiErrorFromStatus(
                            DeadlineExceeded("the request's deadline passed before it was sent")));
    }
    http::Endpoint ep;
    bool allowed = false;
    bool gone = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = workers.find(id);
      gone = it == workers.end();  // removed (by /admin) since it was chosen
      if (!gone) {
        WorkerState& w = it->second;
        ep = w.endpoint;
        allowed = w.breaker->Allow(now, &sub->breaker_epoch);
        if (allowed) {
          ++w.sent;
          ++subs_in_flight;
          if (sub->is_hedge) ++hedges_sent;
          if (sub->is_retry) {
            ++retries_in_flight;
          } else if (sub->tried.empty()) {
            retry_tokens = std::min(kRetryCap, retry_tokens + options.retry_budget);
          }
        }
      }
    }
    if (!allowed) {
      Unload(id, *sub);
      if (sub->is_hedge) return UnsentHedge();
      return RetryOrFail(
          sub, id,
          ApiError{503, "Unhealthy", "worker " + id + (gone ? " was removed" : " circuit is open"),
                   ""},
          /*was_sent=*/false);
    }
    boost::json::object body;
    boost::json::array inputs;
    http::ClientRequest req;
    req.method = "POST";
    if (sub->is_ids) {
      // Token ids only OpenAI's route takes; its binary answer is the raw pooled rows.
      for (const auto& ids : sub->ids) {
        boost::json::array a;
        a.reserve(ids.size());
        for (uint32_t id : ids) a.emplace_back(id);
        inputs.emplace_back(std::move(a));
      }
      body["input"] = std::move(inputs);
      body["model"] = sub->model;
      req.target = "/v1/embeddings";
    } else {
      for (const auto& t : sub->texts) inputs.emplace_back(t);
      body["inputs"] = std::move(inputs);
      body["normalize"] = false;
      body["truncate"] = sub->truncate;
      body["truncation_direction"] =
          sub->direction == http::api::TruncationDirection::kLeft ? "Left" : "Right";
      req.target = "/embed";
    }
    req.content_type = "application/json";
    req.body = boost::json::serialize(body);
    req.deadline = sub->deadline;
    req.headers.emplace_back("accept", std::string(http::api::kF32ContentType));
    req.headers.emplace_back(front::kRequestTimeoutHeader, MillisLeft(sub->deadline, now));
    sub->sent_at = now;
    sub->group->in_flight.fetch_add(1);
    if (options.hedging && !sub->is_hedge && !sub->is_retry && sub->tried.empty()) {
      if (auto delay = HedgeDelay()) {
        std::lock_guard<std::mutex> lock(hedge_mu);
        hedge_queue.emplace(now + *delay, sub);
        hedge_cv.notify_one();
      }
    }
    client->Send(ep, std::move(req), [this, sub, id](Result<http::ClientResponse> r) {
      OnResponse(sub, id, std::move(r));
    });
  }

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
  void UnsentHedge() {
    std::lock_guard<std::mutex> lock(mu);
    retry_tokens = std::min(kRetryCap, retry_tokens + 1.0);
  }

  std::optional<Clock::duration> HedgeDelay() {
    if (options.hedge_delay.count() > 0) return options.hedge_delay;
    std::lock_guard<std::mutex> lock(mu);
    if (rtt_p95_ms <= 0) return std::nullopt;
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(rtt_p95_ms));
  }

  void RecordRtt(Clock::duration rtt) {  // under mu
    const double ms = std::chrono::duration<double, std::milli>(rtt).count();
    if (rtt_window.size() < kRttWindow) {
      rtt_window.push_back(ms);
    } else {
      rtt_window[rtt_next] = ms;
    }
    rtt_next = (rtt_next + 1) % kRttWindow;
    if (rtt_window.size() >= kRttWindow / 4 && rtt_next % 16 == 0) {
      std::vector<double> v = rtt_window;
      auto at = v.begin() + static_cast<std::ptrdiff_t>(v.size() * 95 / 100);
      std::nth_element(v.begin(), at, v.end());
      rtt_p95_ms = *at;
    }
  }

  void HedgeLoop() {
    std::unique_lock<std::mutex> lock(hedge_mu);
    while (!hedge_stopping) {
      if (hedge_queue.empty()) {
        hedge_cv.wait(lock);
        continue;
      }
      const auto when = hedge_queue.begin()->first;
      if (Clock::now() < when) {
        hedge_cv.wait_until(lock, when);
        continue;
      }
      std::weak_ptr<Sub> weak = hedge_queue.begin()->second;
      hedge_queue.erase(hedge_queue.begin());
      lock.unlock();
      try {
        if (auto sub = weak.lock()) Hedge(sub);
      } catch (const std::exception& e) {
        log::Error("hedge failed", {{"error", e.what()}});
      }
      lock.lock();
    }
  }

  void Hedge(const std::shared_ptr<Sub>& sub) {
    const auto now = Clock::now();
    AttemptGroup& g = *sub->group;
    // Only while the first attempt is still out: not once it failed and was retried.
    if (g.settled.load() || g.retried.load() || g.in_flight.load() == 0 || now >= sub->deadline) {
      return;
    }
    if (g.hedged.exchange(true)) return;
    std::optional<std::string> next;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (retry_tokens < 1.0) {
        ++hedges_refused;
        return;
      }
      for (size_t i : ring.Successors(sub->ring_hash, ring.size())) {
        const std::string& cand = ring.members()[i];
        if (cand == sub->first_worker) continue;
        auto it = workers.find(cand);
        if (it == workers.end() || !Eligible(it->second, sub->model, now)) continue;
        next = cand;
        it->second.outstanding += sub->est_tokens;
        retry_tokens -= 1.0;
        break;
      }
    }
    if (!next) return;
    // Only the fields no other thread writes: the first attempt may be answering now.
    auto h = std::make_shared<Sub>();
    h->model = sub->model;
    h->materials = sub->materials;
    h->texts = sub->texts;
    h->is_ids = sub->is_ids;
    h->ids = sub->ids;
    h->ests = sub->ests;
    h->est_tokens = sub->est_tokens;
    h->truncate = sub->truncate;
    h->direction = sub->direction;
    h->deadline = sub->deadline;
    h->ring_hash = sub->ring_hash;
    h->group = sub->group;
    h->is_hedge = true;
    h->attempt = 1;
    h->tried = {sub->first_worker};
    h->first_worker = *next;
    Dispatch(h, *next);
  }

  void Unload(const std::string& id, const Sub& sub) { Unload(id, sub.est_tokens); }
  void Unload(const std::string& id, double cost) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = workers.find(id);
    if (it != workers.end()) it->second.outstanding = std::max(0.0, it->second.outstanding - cost);
  }

  // A call's outcome in the worker's breaker, outlier detector and counters.
  void RecordOutcome(const std::string& id, Outcome o, Clock::time_point now, uint64_t epoch) {
    std::shared_ptr<CircuitBreaker> breaker;  // kept alive even if the worker is removed
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = workers.find(id);
      if (it == workers.end()) return;
      breaker = it->second.breaker;
      if (o == Outcome::kSuccess) ++it->second.ok;
      if (o == Outcome::kFailure) ++it->second.failed;
      if (o == Outcome::kBackpressure) ++it->second.backpressure;
    }
    breaker->Record(o, now, epoch);
    if (o != Outcome::kBackpressure) outlier.Record(id, o == Outcome::kFailure, now);
  }

  void OnResponse(const std::shared_ptr<Sub>& sub, const std::string& id,
                  Result<http::ClientResponse> r) {
    const auto now = Clock::now();
    Unload(id, *sub);
    {
      std::lock_guard<std::mutex> lock(mu);
      --subs_in_flight;
      if (sub->is_retry) --retries_in_flight;
    }
    // Attempts of this sub-batch still out besides this one (a hedge or the first).
    const int others = sub->group->in_flight.fetch_sub(1) - 1;
    auto record = [&](Outcome o) { RecordOutcome(id, o, now, sub->breaker_epoch); };
    // A failed attempt retries only when no other attempt is out to settle it.
    auto RetryOrFail = [&](const std::shared_ptr<Sub>& s, const std::string& w, ApiError e,
                           bool was_sent) {
      if (s->group->settled.load() || others > 0) return;
      this->RetryOrFail(s, w, std::move(e), was_sent);
    };
    if (!r.ok()) {
      // A call that ran out of its client's deadline says the worker is slow, or the
      // deadline short, not that it is broken (a worker that hangs fails its health
      // checks): back-pressure, so a client's 2 ms deadline cannot open a breaker.
      record(r.status().code() == StatusCode::kDeadlineExceeded ? Outcome::kBackpressure
                                                                : Outcome::kFailure);
      const Status& s = r.status();
      ApiError e = s.code() == StatusCode::kDeadlineExceeded
                       ? http::api::ApiErrorFromStatus(DeadlineExceeded(
                             "worker " + id + " did not answer before the deadline"))
                       : ApiError{503, "Unhealthy", "worker " + id + ": " + s.message(), ""};
      return RetryOrFail(sub, id, e, true);
    }
    const int status = r->status;
    if (status == 200) {
      const size_t n = sub->materials.size();
      auto rows = http::api::DecodeF32Rows(r->body, n * 65536);
      std::vector<int64_t> counts;
      const std::string_view h = r->Header(front::kTokenCountsHeader);
      for (size_t pos = 0; pos < h.size();) {
        size_t comma = h.find(',', pos);
        if (comma == std::string_view::npos) comma = h.size();
        int64_t v = 0;
        auto [end, ec] = std::from_chars(h.data() + pos, h.data() + comma, v);
        if (ec != std::errc() || end != h.data() + comma) break;
        counts.push_back(v);
        pos = comma + 1;
      }
      if (!rows.ok() || rows->rows != n || counts.size() != n) {
        record(Outcome::kFailure);
        return RetryOrFail(sub, id,
                           ApiError{503, "Unhealthy",
                                    "worker " + id + " answered a malformed embedding response" +
                                        (rows.ok() ? "" : ": " + rows.status().message()),
                                    ""},
                           true);
      }
      record(Outcome::kSuccess);
      limiter.Sample(now - sub->sent_at, now);
      {
        std::lock_guard<std::mutex> lock(mu);
        RecordRtt(now - sub->sent_at);
      }
      if (sub->group->settled.exchange(true)) {
        answers_dropped.fetch_add(1, std::memory_order_relaxed);  // another attempt won
        return;
      }
      if (sub->is_hedge) hedges_won.fetch_add(1, std::memory_order_relaxed);
      double chars = 0, tokens = 0;
      for (size_t k = 0; k < n; ++k) {
        auto kr = std::make_shared<KeyResult>();
        kr->values.assign(rows->values.begin() + static_cast<std::ptrdiff_t>(k * rows->dims),
                          rows->values.begin() + static_cast<std::ptrdiff_t>((k + 1) * rows->dims));
        kr->tokens = counts[k];
        if (redis) {
          auto row = std::make_shared<front::CachedRow>();
          row->values = kr->values;
          row->tokens = kr->tokens;
          redis->Store(sub->materials[k], std::move(row));
        }
        if (!sub->is_ids) {
          chars += static_cast<double>(sub->texts[k].size());
          tokens += static_cast<double>(std::max<int64_t>(counts[k] - 2, 1));
        }
        coalescer.Complete(sub->materials[k], std::shared_ptr<const KeyResult>(kr));
      }
      if (tokens > 0) {
        std::lock_guard<std::mutex> lock(mu);
        const double observed = std::clamp(chars / std::max(tokens, 1.0), 0.5, 16.0);
        chars_per_token = 0.9 * chars_per_token + 0.1 * observed;
      }
      return;
    }
    ApiError e = ErrorFromWorker(status, r->body, id);
    if (status == 429 || status == 504) {  // busy (504: its queue outlasted the deadline)
      record(Outcome::kBackpressure);
      return RetryOrFail(sub, id, e, true);
    }
    if (status >= 400 && status < 500 && status != 408) {
      // The input, not the worker. When the worker names one input, only that input
      // fails (every client call holding it answers as the worker did, naming the
      // client's own index) and the rest of the sub-batch goes again to the same worker.
      record(Outcome::kSuccess);
      auto named = NamedInput(e.message, sub->materials.size());
      if (!named || sub->materials.size() == 1) {
        if (named) e.message = named->second;
        return Fail(*sub, e);
      }
      if (sub->group->settled.exchange(true)) return;  // another attempt answered
      const size_t bad = named->first;
      e.message = named->second;
      auto kr = std::make_shared<KeyResult>();
      kr->error = e;
      coalescer.Complete(sub->materials[bad], std::shared_ptr<const KeyResult>(kr));
      auto rest = std::make_shared<Sub>(*sub);
      rest->materials.erase(rest->materials.begin() + static_cast<std::ptrdiff_t>(bad));
      rest->texts.erase(rest->texts.begin() + static_cast<std::ptrdiff_t>(bad));
      if (rest->is_ids) rest->ids.erase(rest->ids.begin() + static_cast<std::ptrdiff_t>(bad));
      rest->est_tokens -= rest->ests[bad];
      rest->ests.erase(rest->ests.begin() + static_cast<std::ptrdiff_t>(bad));
      rest->ring_hash = RingHash(rest->materials.front());
      rest->group = std::make_shared<AttemptGroup>();
      rest->is_hedge = false;
      {
        std::lock_guard<std::mutex> lock(mu);
        auto it = workers.find(id);
        if (it != workers.end()) it->second.outstanding += rest->est_tokens;
      }
      return Dispatch(rest, id);
    }
    record(Outcome::kFailure);
    RetryOrFail(sub, id, e, true);
  }

  void RetryOrFail(const std::shared_ptr<Sub>& sub, const std::string& id, ApiError error,
                   bool was_sent) {
    const auto now = Clock::now();
    sub->tried.push_back(id);
    if (was_sent) ++sub->attempt;
    std::optional<std::string> next;
    {
      std::lock_guard<std::mutex> lock(mu);
      const bool budget = retry_tokens >= 1.0;
      if (sub->attempt < options.max_attempts && now < sub->deadline &&
          sub->tried.size() < ring.size()) {
        if (!budget) {
          ++retries_refused;
        } else {
          for (size_t i : ring.Successors(sub->ring_hash, ring.size())) {
            const std::string& cand = ring.members()[i];
            if (std::find(sub->tried.begin(), sub->tried.end(), cand) != sub->tried.end()) continue;
            auto wit = workers.find(cand);
            if (wit == workers.end() || !Eligible(wit->second, sub->model, now)) continue;
            next = cand;
            wit->second.outstanding += sub->est_tokens;
            ++retries_total;
            retry_tokens -= 1.0;
            break;
          }
        }
      }
    }
    if (!next) return Fail(*sub, std::move(error));
    sub->is_retry = true;
    sub->group->retried = true;
    Dispatch(sub, *next);
  }

  // ---- whole requests forwarded to one worker (Forward) --------------------------------
  // Under mu: an eligible worker for `f` not tried yet (ring owner under bounded loads for
  // keyed requests, else the less loaded of two random ones), with f's cost added to its
  // load and its breaker's permission taken; nullopt when none is left.
  std::optional<std::pair<std::string, http::Endpoint>> PickLocked(Forward& f,
                                                                   Clock::time_point now) {
    const auto& ids = ring.members();
    std::vector<double> loads(ids.size(), 0.0);
    std::vector<char> ok(ids.size(), 0);
    std::vector<size_t> candidates;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = workers.find(ids[i]);
      if (it == workers.end()) continue;
      loads[i] = it->second.outstanding;
      if (Eligible(it->second, f.model, now) &&
          std::find(f.tried.begin(), f.tried.end(), ids[i]) == f.tried.end()) {
        ok[i] = 1;
        candidates.push_back(i);
      }
    }
    while (!candidates.empty()) {
      size_t pick = candidates.front();
      if (f.keyed) {
        auto m = PickBounded(
            ring, f.ring_hash, loads, [&](size_t i) { return ok[i] != 0; }, options.balance_factor,
            f.cost, f.cost);
        if (!m) break;
        pick = *m;
      } else if (candidates.size() > 1) {
        thread_local std::mt19937_64 rng(std::random_device{}());
        std::uniform_int_distribution<size_t> dist(0, candidates.size() - 1);
        const size_t a = candidates[dist(rng)];
        size_t b = candidates[dist(rng)];
        while (b == a) b = candidates[dist(rng)];
        pick = loads[b] < loads[a] ? b : a;
      }
      WorkerState& w = workers.at(ids[pick]);
      if (w.breaker->Allow(now, &f.breaker_epoch)) {
        w.outstanding += f.cost;
        ++w.sent;
        return std::make_pair(w.id, w.endpoint);
      }
      ok[pick] = 0;  // its half-open probes are taken: the next one
      candidates.erase(std::find(candidates.begin(), candidates.end(), pick));
    }
    return std::nullopt;
  }

  void SendForward(const std::shared_ptr<Forward>& f) {
    const auto now = Clock::now();
    // done is called once, then dropped: what it holds (a request's ticket) must not live
    // as long as the Forward.
    auto finish = [&](Status why) {
      auto done = std::move(f->done);
      f->done = nullptr;
      try {
        if (f->last) return done(std::move(*f->last), f->last_worker);
        done(std::move(why), "");
      } catch (const std::exception& e) {
        log::Error("forwarded request failed", {{"error", e.what()}});
      }
    };
    if (now >= f->deadline) {
      return finish(DeadlineExceeded("the request's deadline passed before it was sent"));
    }
    std::optional<std::pair<std::string, http::Endpoint>> target;
    {
      std::lock_guard<std::mutex> lock(mu);
      const bool retry = !f->tried.empty();
      if (retry && (f->attempt >= options.max_attempts || f->tried.size() >= ring.size())) {
        // out of attempts or workers
      } else if (retry && retry_tokens < 1.0) {
        ++retries_refused;
      } else {
        target = PickLocked(*f, now);
        if (target) {
          ++forwards_in_flight;
          if (retry) {
            ++retries_total;
            retry_tokens -= 1.0;
          } else if (f->sample) {  // only compute calls earn retries
            retry_tokens = std::min(kRetryCap, retry_tokens + options.retry_budget);
          }
        }
      }
    }
    if (!target) {
      return finish(Unavailable("no ready worker serves model '" + f->model + "'"));
    }
    http::ClientRequest req = f->request;  // kept for a retry
    req.deadline = f->deadline;
    req.headers.emplace_back(front::kRequestTimeoutHeader, MillisLeft(f->deadline, now));
    f->sent_at = now;
    client->Send(target->second, std::move(req),
                 [this, f, id = target->first](Result<http::ClientResponse> r) {
                   OnForward(f, id, std::move(r));
                 });
  }

  void OnForward(const std::shared_ptr<Forward>& f, const std::string& id,
                 Result<http::ClientResponse> r) {
    const auto now = Clock::now();
    Unload(id, f->cost);
    {
      std::lock_guard<std::mutex> lock(mu);
      --forwards_in_flight;
    }
    Outcome o = Outcome::kSuccess;
    if (!r.ok()) {
      // As for sub-batches: a deadline is back-pressure, not a broken worker.
      o = r.status().code() == StatusCode::kDeadlineExceeded ? Outcome::kBackpressure
                                                             : Outcome::kFailure;
    } else if (r->status == 429 || r->status == 504) {
      // 504: the deadline passed in the worker's queue (it is busy), not a broken worker.
      o = Outcome::kBackpressure;
    } else if (r->status >= 500 || (r->status == 200 && f->valid && !f->valid(*r))) {
      o = Outcome::kFailure;
      if (r->status == 200) {
        r = Status(StatusCode::kUnavailable, "worker " + id + " answered a malformed response");
      }
    }
    RecordOutcome(id, o, now, f->breaker_epoch);
    if (o == Outcome::kSuccess && f->sample && r.ok() && r->status == 200 &&
        r->Header(front::kCachedHeader) != "true") {
      limiter.Sample(now - f->sent_at, now);
    }
    if (o == Outcome::kSuccess) {
      auto done = std::move(f->done);
      f->done = nullptr;
      try {
        done(std::move(r), id);
      } catch (const std::exception& e) {
        log::Error("forwarded response failed", {{"error", e.what()}});
      }
      return;
    }
    if (!r.ok() && r.status().code() != StatusCode::kDeadlineExceeded) {
      r = Status(StatusCode::kUnavailable, "worker " + id + ": " + r.status().message());
    } else if (!r.ok()) {
      r = DeadlineExceeded("worker " + id + " did not answer before the deadline");
    }
    f->last = std::move(r);
    f->last_worker = id;
    f->tried.push_back(id);
    ++f->attempt;
    SendForward(f);
  }

  // ---- membership and worker info ---------------------------------------------------
  void RefreshWorkers() {
    membership->CheckNow();
    std::vector<WorkerView> views = membership->Snapshot();
    std::vector<std::pair<std::string, http::Endpoint>> need_info;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& v : views) {
        auto it = workers.find(v.id);
        if (it == workers.end()) continue;
        if (it->second.ready != v.ready) {
          log::Info(v.ready ? "routing to worker" : "not routing to worker", {{"worker", v.id}});
        }
        it->second.ready = v.ready;
        if (v.ready && !it->second.info_ok) need_info.emplace_back(v.id, v.endpoint);
        if (!v.ready) it->second.info_ok = false;  // re-read after it comes back
      }
    }
    for (const auto& [id, ep] : need_info) ReadInfo(id, ep);
    bool any = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [id, w] : workers) any = any || (w.ready && w.info_ok);
    }
    ready = any && !shutting_down.load();
  }

  void ReadInfo(const std::string& id, const http::Endpoint& ep) {
    http::ClientRequest req;
    req.target = "/info";
    req.deadline = Clock::now() + options.health.timeout;
    auto r = health_client->SendSync(ep, req);
    if (!r.ok() || r->status != 200) return;
    boost::system::error_code ec;
    auto v = boost::json::parse(r->body, ec);
    if (ec || !v.is_object()) return;
    const auto& o = v.as_object();
    std::vector<front::TextModelInfo> models;
    std::vector<TensorModelInfo> tensors;
    std::vector<std::string> names;
    boost::json::array entries;
    if (auto* ms = o.if_contains("models"); ms && ms->is_array()) {
      entries = ms->as_array();
      for (const auto& m : ms->as_array()) {
        if (!m.is_object()) continue;
        const auto& mo = m.as_object();
        auto str = [&](const char* k) -> std::string {
          auto* x = mo.if_contains(k);
          return x && x->is_string() ? std::string(x->as_string()) : std::string();
        };
        if (!str("name").empty()) names.push_back(str("name"));
        auto* ready_v = mo.if_contains("ready");
        const bool is_ready = ready_v && ready_v->is_bool() && ready_v->as_bool();
        if (str("kind") == "tensor" && is_ready) {
          auto* fs = mo.if_contains("feature_size");
          TensorModelInfo t{str("name"), str("version"),
                            fs && fs->is_int64() ? fs->as_int64() : int64_t{0}};
          tensors.push_back(std::move(t));
          continue;
        }
        auto* dim = mo.if_contains("dim");
        if (str("kind") != "text" || !is_ready || !dim || !dim->is_int64()) continue;
        front::TextModelInfo info;
        info.name = str("name");
        info.version = str("version");
        info.dim = dim->as_int64();
        auto* norm = mo.if_contains("normalize");
        info.normalize_by_default = !norm || !norm->is_bool() || norm->as_bool();
        models.push_back(std::move(info));
      }
    }
    int64_t max_batch = 32;
    if (auto* b = o.if_contains("max_client_batch_size"); b && b->is_int64()) {
      max_batch = std::max<int64_t>(1, b->as_int64());
    } else if (b && b->is_uint64()) {
      max_batch = std::max<int64_t>(1, static_cast<int64_t>(b->as_uint64()));
    }
    std::lock_guard<std::mutex> lock(mu);
    auto it = workers.find(id);
    if (it == workers.end()) return;
    it->second.models = std::move(models);
    it->second.tensor_models = std::move(tensors);
    it->second.all_models = std::move(names);
    it->second.info_models = std::move(entries);
    it->second.max_batch = max_batch;
    it->second.info_ok = true;
  }

  // Resolves every dns: name; adds new addresses, removes vanished ones (DNS-sourced only).
  Clock::time_point next_dns{};
  void RefreshDns() {
    if (options.dns.empty() || Clock::now() < next_dns) return;
    next_dns = Clock::now() + options.dns_interval;
    std::set<std::string> want;
    std::vector<http::Endpoint> found;
    for (const auto& d : options.dns) {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      const int rc = getaddrinfo(d.name.c_str(), nullptr, &hints, &res);
      if (rc != 0) {
        log::Warn("DNS lookup failed", {{"name", d.name}, {"error", gai_strerror(rc)}});
        continue;  // keep what we have rather than drop every worker on a DNS hiccup
      }
      for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
        char host[INET6_ADDRSTRLEN] = {0};
        const void* addr =
            a->ai_family == AF_INET
                ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
        if (!inet_ntop(a->ai_family, addr, host, sizeof host)) continue;
        http::Endpoint ep{host, d.port};
        if (want.insert(ep.ToString()).second) found.push_back(ep);
      }
      freeaddrinfo(res);
    }
    std::vector<std::string> left;
    ChangeMembers([&] {
      bool changed = false;
      for (auto it = workers.begin(); it != workers.end();) {
        if (it->second.source == WorkerState::Source::kDns && !want.count(it->first)) {
          log::Info("worker left DNS", {{"worker", it->first}});
          left.push_back(it->first);
          it = workers.erase(it);
          changed = true;
        } else {
          ++it;
        }
      }
      for (const auto& ep : found) {
        if (workers.count(ep.ToString())) continue;
        WorkerState w;
        w.id = ep.ToString();
        w.endpoint = ep;
        w.breaker = std::make_shared<CircuitBreaker>(options.breaker);
        w.source = WorkerState::Source::kDns;
        log::Info("worker found in DNS", {{"worker", w.id}});
        workers.emplace(w.id, std::move(w));
        changed = true;
      }
      return changed;
    });
    for (const auto& id : left) outlier.Remove(id);
  }

  // Registered workers that missed their heartbeats for registration_ttl leave.
  void ExpireRegistrations() {
    const auto now = Clock::now();
    std::vector<std::string> gone;
    ChangeMembers([&] {
      for (auto it = workers.begin(); it != workers.end();) {
        if (it->second.source == WorkerState::Source::kRegistered &&
            now - it->second.last_heartbeat > options.registration_ttl) {
          gone.push_back(it->first);
          it = workers.erase(it);
        } else {
          ++it;
        }
      }
      return !gone.empty();
    });
    for (const auto& id : gone) {
      outlier.Remove(id);
      log::Warn("registered worker missed its heartbeats", {{"worker", id}});
    }
  }

  void HealthLoop() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(health_mu);
        if (health_cv.wait_for(lock, options.health.interval, [this] { return stopping; })) return;
      }
      try {
        RefreshDns();
        ExpireRegistrations();
        RefreshWorkers();
        health_rounds.fetch_add(1, std::memory_order_relaxed);
      } catch (const std::exception& e) {
        log::Error("gateway health round failed", {{"error", e.what()}});
      }
    }
  }

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

  static std::string ErrorBody(const ApiError& e, http::api::ApiFamily family) {
    switch (family) {
      case http::api::ApiFamily::kOpenAi:
        return http::api::OpenAiErrorBody(e);
      case http::api::ApiFamily::kKServe:
        return http::api::KServeErrorBody(e);
      case http::api::ApiFamily::kTei:
        break;
    }
    return http::api::TeiErrorBody(e);
  }

  void Refuse(http::Responder& r, http::api::ApiFamily family, ApiError e, int retry_after) {
    e = http::api::ForApi(e, family);
    front::Send(r, e.status, ErrorBody(e, family), {{"retry-after", std::to_string(retry_after)}});
  }

  std::shared_ptr<void> Ticket(Clock::time_point start) {
    return std::shared_ptr<void>(new int(0), [this, start](void* p) {
      delete static_cast<int*>(p);
      // The limiter samples upstream calls (sub-batches, forwarded calls), not client
      // requests, so answers from the gateway's own cache never pull its minimum RTT down.
      const auto end = Clock::now();
      limiter.Release(end - start, end, /*sample=*/false);
      if (waiting_count.load(std::memory_order_relaxed) > 0) {
        // Through the lock: the admission thread is either before its check (and sees the
        // free slot) or waiting (and is woken); never in between, which would lose this.
        { std::lock_guard<std::mutex> lock(wait_mu); }
        wait_cv.notify_one();
      }
    });
  }

  // How long a request beyond the limit may wait for a slot: gateway.admission_wait while
  // the limiter probes (the limit is pinned low for a moment) or has no minimum RTT yet;
  // otherwise at most gateway.admission_wait_rtts x the minimum RTT (at least 5 ms).
  // Under sustained overload a wait longer than a round trip or two only turns a fast 429
  // into a slow one and a late answer, so the queue stays that deep.
  Clock::duration WaitAllowance() const {
    const auto min_rtt = limiter.min_rtt();
    if (limiter.probing() || min_rtt.count() <= 0) return options.admission_wait;
    const auto rtts =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::nano>(
            static_cast<double>(min_rtt.count()) * options.admission_wait_rtts));
    return std::min<Clock::duration>(options.admission_wait,
                                     std::max<Clock::duration>(rtts, std::chrono::milliseconds(5)));
  }

  void Admit(const std::shared_ptr<http::Responder>& r, http::api::ApiFamily family,
             Proceed proceed) {
    requests_total.fetch_add(1, std::memory_order_relaxed);
    if (!ready.load()) {
      return Refuse(*r, family, http::api::TeiUnhealthyError("no worker is ready"), 1);
    }
    if (!options.adaptive_limit) return proceed(std::make_shared<int>(0));
    const auto now = Clock::now();
    {
      std::lock_guard<std::mutex> lock(wait_mu);
      // Waiters go first: a new request does not overtake them.
      if (waiting.empty() && limiter.TryAcquire(now, /*count=*/false)) {
        // fall through to proceed below, outside the lock
      } else if (options.admission_wait.count() > 0 &&
                 waiting.size() < options.max_waiting_requests && !wait_stopping) {
        waiting.push_back({r, family, std::move(proceed), now + WaitAllowance(), now});
        waiting_count = waiting.size();
        ++waited;
        wait_cv.notify_one();
        return;
      } else {
        proceed = nullptr;
      }
    }
    if (!proceed) {
      limiter.CountRejection();
      return Refuse(*r, family,
                    http::api::TeiOverloadedError("gateway concurrency limit reached (limit " +
                                                  std::to_string(limiter.limit()) + ")"),
                    limiter.RetryAfterSeconds());
    }
    proceed(Ticket(now));
  }

  void WaitLoop() {
    std::unique_lock<std::mutex> lock(wait_mu);
    while (!wait_stopping) {
      const auto now = Clock::now();
      std::vector<Waiter> expired, admitted;
      // Every waiter, not only the first: allowances differ (a probe's is longer), so a
      // later waiter may expire first; and a client that went away leaves its place.
      auto wake = now + std::chrono::seconds(1);
      for (auto it = waiting.begin(); it != waiting.end();) {
        if (it->until <= now || it->responder->cancelled()) {
          expired.push_back(std::move(*it));
          it = waiting.erase(it);
        } else {
          wake = std::min(wake, it->until);
          ++it;
        }
      }
      while (!waiting.empty() && limiter.TryAcquire(now, /*count=*/false)) {
        admitted.push_back(std::move(waiting.front()));
        waiting.pop_front();
      }
      waiting_count = waiting.size();
      if (!expired.empty() || !admitted.empty()) {
        lock.unlock();
        for (auto& w : expired) {
          ++wait_timeouts;
          limiter.CountRejection();
          Refuse(*w.responder, w.family,
                 http::api::TeiOverloadedError(
                     "waited " +
                     std::to_string(
                         std::chrono::duration_cast<std::chrono::milliseconds>(now - w.since)
                             .count()) +
                     " ms for the gateway's concurrency limit (limit " +
                     std::to_string(limiter.limit()) + ")"),
                 limiter.RetryAfterSeconds());
        }
        for (auto& w : admitted) {
          try {
            w.proceed(Ticket(now));
          } catch (const std::exception& e) {
            log::Error("admitted request failed", {{"error", e.what()}});
          }
        }
        // What the waiters held (a request's ticket may be among it) goes before the lock
        // is taken again: releasing a ticket takes wait_mu itself.
        expired.clear();
        admitted.clear();
        lock.lock();
        continue;
      }
      wait_cv.wait_until(lock, wake);
    }
    // Shutting down: nobody will admit them.
    std::deque<Waiter> left = std::move(waiting);
    waiting.clear();
    lock.unlock();
    for (auto& w : left) {
      Refuse(*w.responder, w.family, http::api::TeiUnhealthyError("the gateway is shutting down"),
             1);
    }
  }

  // ---- membership changes (/admin) and auth ------------------------------------------
  http::BearerAuth inference_auth, admin_auth;

  // Membership changes: the workers map and the ring change in one critical section
  // under mu (so every ring member is in the map), and the health checker's list is then
  // replaced under members_mu, which serializes whole changes (lock order: members_mu,
  // then mu), so an older list can never overwrite a newer one.
  std::mutex members_mu;

  // Under mu: the ring from the workers map; returns the endpoints for the checker.
  std::vector<http::Endpoint> RebuildRingLocked() {
    std::vector<http::Endpoint> eps;
    std::vector<std::string> ids;
    for (const auto& [id, w] : workers) {
      ids.push_back(id);
      eps.push_back(w.endpoint);
    }
    ring.SetMembers(ids);
    return eps;
  }

  // Applies `change` (under mu; returns whether membership changed), then updates the
  // ring and the health checker.
  bool ChangeMembers(const std::function<bool()>& change) {
    std::lock_guard<std::mutex> serial(members_mu);
    std::vector<http::Endpoint> eps;
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!change()) return false;
      eps = RebuildRingLocked();
      for (const auto& [id, w] : workers) ids.push_back(id);
    }
    membership->SetWorkers(eps);
    SyncWorkerMetrics(ids);
    return true;
  }

  // Binds the per-worker series of members that have none, and drops those of workers
  // that left. Under members_mu, never under mu (the callbacks take mu under the
  // registry's family lock).
  void SyncWorkerMetrics(const std::vector<std::string>& ids) {
    auto& reg = metrics::Registry::Global();
    auto& open =
        reg.CallbackGauge("infermesh_gateway_breaker_open",
                          "1 while the worker's circuit breaker is open or half-open", {"worker"});
    auto& state = reg.CallbackGauge("infermesh_gateway_breaker_state",
                                    "The worker's circuit breaker: 0 closed, 1 open, 2 half-open",
                                    {"worker"});
    auto& ready_g = reg.CallbackGauge("infermesh_gateway_worker_ready",
                                      "1 while the gateway routes to the worker", {"worker"});
    auto& ejected = reg.CallbackGauge("infermesh_gateway_worker_ejected",
                                      "1 while outlier detection ejects the worker", {"worker"});
    auto& load = reg.CallbackGauge("infermesh_gateway_worker_outstanding_tokens",
                                   "Estimated tokens in flight at the worker", {"worker"});
    std::set<std::string> want(ids.begin(), ids.end());
    for (auto it = worker_bindings.begin(); it != worker_bindings.end();) {
      it = want.count(it->first) ? std::next(it) : worker_bindings.erase(it);
    }
    for (const auto& id : ids) {
      if (worker_bindings.count(id)) continue;
      auto read = [this, id](auto pick) {
        return [this, id, pick]() -> double {
          const auto now = Clock::now();
          std::lock_guard<std::mutex> lock(mu);
          auto it = workers.find(id);
          return it == workers.end() ? 0.0 : pick(it->second, now);
        };
      };
      std::vector<metrics::CallbackBinding> b;
      b.push_back(open.Bind({id}, read([](const WorkerState& w, Clock::time_point now) {
                              return w.breaker->snapshot(now).state == BreakerState::kClosed ? 0.0
                                                                                             : 1.0;
                            })));
      b.push_back(state.Bind({id}, read([](const WorkerState& w, Clock::time_point now) {
                               const auto st = w.breaker->snapshot(now).state;
                               return st == BreakerState::kClosed ? 0.0
                                      : st == BreakerState::kOpen ? 1.0
                                                                  : 2.0;
                             })));
      b.push_back(ready_g.Bind({id}, read([](const WorkerState& w, Clock::time_point) {
                                 return w.ready && w.info_ok ? 1.0 : 0.0;
                               })));
      b.push_back(ejected.Bind({id}, read([this](const WorkerState& w, Clock::time_point now) {
                                 return outlier.Ejected(w.id, now) ? 1.0 : 0.0;
                               })));
      b.push_back(load.Bind(
          {id}, read([](const WorkerState& w, Clock::time_point) { return w.outstanding; })));
      worker_bindings.emplace(id, std::move(b));
    }
  }

  Status AddWorker(const http::Endpoint& ep,
                   WorkerState::Source source = WorkerState::Source::kStatic) {
    const std::string id = ep.ToString();
    Status result;
    const bool added = ChangeMembers([&] {
      auto it = workers.find(id);
      if (it != workers.end()) {
        if (source == WorkerState::Source::kRegistered) {
          it->second.last_heartbeat = Clock::now();  // a heartbeat
        } else {
          result = Status(StatusCode::kAlreadyExists, id + " is a member");
        }
        return false;
      }
      WorkerState w;
      w.id = id;
      w.endpoint = ep;
      w.breaker = std::make_shared<CircuitBreaker>(options.breaker);
      w.source = source;
      w.last_heartbeat = Clock::now();
      workers.emplace(id, std::move(w));
      return true;
    });
    if (added) log::Info("worker added", {{"worker", id}});
    return result;
  }

  // `only_registered`: a deregistration removes a worker only if it registered itself
  // (one also listed statically or found in DNS stays).
  Status RemoveWorker(const std::string& id, bool only_registered = false) {
    Status result;
    ChangeMembers([&] {
      auto it = workers.find(id);
      if (it == workers.end()) {
        result = NotFound("no worker " + id);
        return false;
      }
      if (only_registered && it->second.source != WorkerState::Source::kRegistered) return false;
      workers.erase(it);
      return true;
    });
    if (result.ok()) {
      outlier.Remove(id);
      log::Info("worker removed", {{"worker", id}});
    }
    return result;
  }

  Status Drain(const std::string& id, bool drained) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = workers.find(id);
    if (it == workers.end()) return NotFound("no worker " + id);
    it->second.drained = drained;
    log::Info(drained ? "worker drained" : "worker resumed", {{"worker", id}});
    return OkStatus();
  }

  // Inference routes need an inference or the admin key when keys are configured; admin
  // routes the admin key (open only when no key at all is configured). 401 without a
  // key, 403 with a wrong one.
  bool Authorized(http::Request& q, http::Responder& r, http::api::ApiFamily family, bool admin) {
    const http::AuthResult res = http::CheckRoleKeys(q, inference_auth, admin_auth, admin);
    if (res == http::AuthResult::kOk) return true;
    ApiError e;
    if (res == http::AuthResult::kMissing) {
      e = ApiError{401, "Unauthorized", "an API key is required: Authorization: Bearer <key>", ""};
    } else {
      e = ApiError{403, "Forbidden",
                   admin ? "this route needs the admin key" : "the API key is not valid", ""};
    }
    const std::string body = ErrorBody(e, family);
    std::vector<std::pair<std::string, std::string>> headers;
    if (e.status == 401) headers.emplace_back("www-authenticate", "Bearer");
    front::Send(r, e.status, body, std::move(headers));
    return false;
  }

  void SendStatus(http::Responder& r, const Status& st, int ok_status, boost::json::object ok) {
    if (st.ok()) return front::Send(r, ok_status, boost::json::serialize(ok));
    front::SendTeiError(r, http::api::ApiErrorFromStatus(st));
  }

  void HandleHealth(http::Request&, http::Responder r) {
    size_t total = 0, up = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [id, w] : workers) {
        ++total;
        up += w.ready && w.info_ok;
      }
    }
    boost::json::object o{{"status", ready.load() ? "healthy" : "unhealthy"},
                          {"role", "gateway"},
                          {"version", kVersion},
                          {"workers", total},
                          {"workers_ready", up}};
    front::Send(r, ready.load() ? 200 : 503, boost::json::serialize(o));
  }

  // One entry per worker, for /stats and /admin/workers.
  boost::json::array WorkersJson(Clock::time_point now, size_t* total, size_t* up) {
    boost::json::array breakers;
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [id, w] : workers) {
      ++*total;
      *up += w.ready && w.info_ok;
      const auto s = w.breaker->snapshot(now);
      breakers.push_back(boost::json::object{
          {"node", id},
          {"state", std::string(BreakerStateName(s.state))},
          {"failures", s.failures},
          {"successes", s.successes},
          {"consecutive_failures", s.consecutive_failures},
          {"ready", w.ready && w.info_ok},
          {"drained", w.drained},
          {"ejected", outlier.Ejected(id, now)},
          {"outstanding_tokens", w.outstanding},
          {"max_batch", w.max_batch},
          {"sub_batches_sent", w.sent},
          {"backpressure", w.backpressure},
          {"source", w.source == WorkerState::Source::kStatic ? "static"
                     : w.source == WorkerState::Source::kDns  ? "dns"
                                                              : "registered"},
          {"clock_skew_ms",
           w.clock_skew_ms ? boost::json::value(*w.clock_skew_ms) : boost::json::value(nullptr)}});
    }
    return breakers;
  }

  // The job service's recent jobs, for the status page: its GET /jobs?limit=20, with the
  // caller's Authorization passed on (the job service checks its own keys).
  void HandleUiJobs(http::Request& q, http::Responder r) {
    if (!Authorized(q, r, http::api::ApiFamily::kTei, false)) return;
    if (!options.jobs) {
      return front::Send(r, 404, R"js({"error":"no job service configured (gateway.jobs_url)"})js");
    }
    http::ClientRequest req;
    req.target = "/jobs?limit=20";
    req.deadline = Clock::now() + options.health.timeout;
    for (const auto& [name, value] : q.headers) {
      if (name == "authorization") req.headers.emplace_back(name, value);
    }
    auto shared = std::make_shared<http::Responder>(std::move(r));
    client->Send(*options.jobs, std::move(req), [shared](Result<http::ClientResponse> resp) {
      if (!resp.ok()) {
        boost::json::object e{{"error", "the job service: " + resp.status().message()}};
        return front::Send(*shared, 503, boost::json::serialize(e));
      }
      front::Send(*shared, resp->status, std::move(resp->body));
    });
  }

  void HandleStats(http::Request&, http::Responder r) {
    const auto now = Clock::now();
    size_t total = 0, up = 0;
    boost::json::array breakers = WorkersJson(now, &total, &up);
    boost::json::object o;
    o["total_workers"] = total;
    o["ready_workers"] = up;
    o["circuit_breakers"] = std::move(breakers);
    if (cache) {
      const auto s = cache->Stats();
      o["cache"] = boost::json::object{
          {"hits", s.hits}, {"misses", s.misses}, {"entries", s.entries}, {"bytes", s.bytes}};
    }
    o["limiter"] = boost::json::object{
        {"enabled", options.adaptive_limit},
        {"limit", limiter.limit()},
        {"in_flight", limiter.in_flight()},
        {"rejected", limiter.rejected()},
        {"waiting", waiting_count.load()},
        {"waited", waited.load()},
        {"wait_timeouts", wait_timeouts.load()},
        {"min_rtt_ms", std::chrono::duration<double, std::milli>(limiter.min_rtt()).count()},
        {"sample_rtt_ms", std::chrono::duration<double, std::milli>(limiter.sample_rtt()).count()}};
    {
      std::lock_guard<std::mutex> lock(mu);
      o["retries"] = retries_total;
      o["retries_refused_by_budget"] = retries_refused;
      o["hedging"] = boost::json::object{
          {"enabled", options.hedging},
          {"delay_ms",
           options.hedge_delay.count() > 0 ? double(options.hedge_delay.count()) : rtt_p95_ms},
          {"sent", hedges_sent},
          {"won", hedges_won.load()},
          {"refused_by_budget", hedges_refused},
          {"answers_dropped", answers_dropped.load()}};
      o["retry_tokens"] = retry_tokens;
      o["chars_per_token"] = chars_per_token;
    }
    o["coalesced"] = coalescer.coalesced();
    o["infer_cache_hits"] = infer_cache_hits.load();
    if (redis) {
      const auto rs = redis->stats();
      o["redis"] = boost::json::object{{"hits", rs.hits},
                                       {"misses", rs.misses},
                                       {"errors", rs.errors},
                                       {"skipped_breaker_open", rs.skipped},
                                       {"stored", rs.stored},
                                       {"store_errors", rs.store_errors},
                                       {"store_dropped", rs.store_dropped},
                                       {"collisions", rs.collisions},
                                       {"lookups_skipped_queue_full", redis_lookups_skipped.load()},
                                       {"breaker_open", rs.breaker_open}};
    }
    o["node_id"] = "gateway";
    front::Send(r, 200, boost::json::serialize(o));
  }

  // ---- forwarded routes: /infer, KServe v2, /tokenize ---------------------------------
  // The mesh's /infer model: the first ready worker's default tensor model (its first
  // ready tensor model with a known feature size, as the worker chooses).
  std::optional<TensorModelInfo> InferModel() const {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [id, w] : workers) {
      if (!w.ready || !w.info_ok) continue;
      for (const auto& t : w.tensor_models) {
        if (t.feature_size > 0) return t;
      }
    }
    return std::nullopt;
  }

  // Whether any worker lists `model` (loaded or not), and whether one that is ready has it.
  bool Lists(const std::string& model) const {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [id, w] : workers) {
      if (!w.info_ok) continue;
      if (std::find(w.all_models.begin(), w.all_models.end(), model) != w.all_models.end()) {
        return true;
      }
    }
    return false;
  }

  // A worker's answer, relayed as it is (status, body, content type, Retry-After); a
  // transport failure in the family's error shape.
  static void Relay(http::Responder& r, const Result<http::ClientResponse>& resp,
                    http::api::ApiFamily family) {
    if (!resp.ok()) {
      ApiError e = resp.status().code() == StatusCode::kDeadlineExceeded
                       ? http::api::ApiErrorFromStatus(resp.status())
                       : http::api::TeiUnhealthyError(resp.status().message());
      e = http::api::ForApi(e, family);
      return front::Send(r, e.status, ErrorBody(e, family));
    }
    std::vector<std::pair<std::string, std::string>> headers;
    if (auto ra = resp->Header("retry-after"); !ra.empty()) {
      headers.emplace_back("retry-after", std::string(ra));
    }
    std::string type(resp->Header("content-type"));
    front::Send(r, resp->status, resp->body, std::move(headers),
                type.empty() ? "application/json" : type);
  }

  std::shared_ptr<Forward> MakeForward(std::string method, const std::string& model,
                                       std::string target, std::string body, double cost,
                                       Clock::time_point deadline) {
    auto f = std::make_shared<Forward>();
    f->model = model;
    f->cost = cost;
    f->deadline = deadline;
    f->request.method = std::move(method);
    f->request.target = std::move(target);
    f->request.body = std::move(body);
    if (!f->request.body.empty()) f->request.content_type = "application/json";
    return f;
  }

  // POST /infer (the seed's one row): keyed by the worker's own cache key, so the row
  // goes to the worker whose cache holds it; looked up first in the gateway's tiers and
  // coalesced with identical rows in flight.
  void HandleInfer(http::Request& q, http::Responder r) {
    if (!Authorized(q, r, http::api::ApiFamily::kTei, false)) return;
    auto shared = std::make_shared<http::Responder>(std::move(r));
    auto body = std::make_shared<std::string>(std::move(q.body));
    const auto deadline = front::RequestDeadline(q, options.request_timeout);
    Admit(shared, http::api::ApiFamily::kTei,
          [this, shared, body, deadline](std::shared_ptr<void> ticket) {
            RunInfer(shared, body, deadline, std::move(ticket));
          });
  }

  void RunInfer(const std::shared_ptr<http::Responder>& shared,
                const std::shared_ptr<std::string>& body, Clock::time_point deadline,
                std::shared_ptr<void> ticket) {
    auto parsed = http::api::ParseSeedInferRequest(*body, parse_limits);
    if (!parsed.ok()) return front::SendTeiError(*shared, parsed.error());
    const std::optional<TensorModelInfo> model = InferModel();
    if (!model) {
      return front::SendTeiError(
          *shared, http::api::TeiUnhealthyError("no ready worker serves a tensor model"));
    }
    if (static_cast<int64_t>(parsed->input_data.size()) != model->feature_size) {
      return front::SendTeiError(
          *shared,
          http::api::TeiValidationError(
              "input_data has " + std::to_string(parsed->input_data.size()) + " values; model '" +
                  model->name + "' expects " + std::to_string(model->feature_size),
              "input_data"));
    }
    KeyBuilder k;  // the worker's key (src/worker/tensor_handlers.cc)
    k.AddString("tensor").AddString(model->name).AddString(model->version);
    k.AddString(std::string_view(reinterpret_cast<const char*>(parsed->input_data.data()),
                                 parsed->input_data.size() * sizeof(float)));
    std::string material = std::move(k).TakeMaterial();
    auto request_id = std::make_shared<std::string>(std::move(parsed->request_id));
    const auto start = Clock::now();
    auto respond = [shared, request_id, ticket, start](const KeyResult& kr, bool here) {
      if (kr.error) return front::SendTeiError(*shared, *kr.error);
      http::api::SeedInferResponse out;
      out.request_id = *request_id;
      out.output_data = kr.values;
      out.node_id = here ? "gateway" : kr.node_id;
      out.cached = here || kr.cached;
      out.inference_time_us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
      auto json = http::api::SerializeSeedInferResponse(out);
      if (!json.ok()) return front::SendTeiError(*shared, json.error());
      front::Send(*shared, 200, std::move(json).value());
    };
    if (cache) {
      if (auto hit = cache->Lookup(material)) {
        infer_cache_hits.fetch_add(1, std::memory_order_relaxed);
        KeyResult kr;
        kr.values = hit->values;
        return respond(kr, true);
      }
    }
    auto lead = [this, respond, material = std::move(material), body, model = *model,
                 deadline](bool look_up) mutable {
      if (look_up) {
        auto found = redis->Lookup({material});
        if (!found.empty() && found[0]) {
          KeyResult kr;
          kr.values = found[0]->values;
          if (cache) cache->Insert(material, found[0]);
          return respond(kr, true);
        }
      }
      LeadInfer(std::move(material), *body, model, deadline, respond);
    };
    if (redis) {  // off the I/O thread, as Embed's lookups
      if (redis_pool->Stats().queued < kMaxRedisQueue) {
        auto shared_lead = std::make_shared<decltype(lead)>(std::move(lead));
        const bool queued = redis_pool->Submit([shared_lead] {
          try {
            (*shared_lead)(true);
          } catch (const std::exception& e) {
            log::Error("gateway /infer failed", {{"error", e.what()}});
          }
        });
        if (!queued) (*shared_lead)(false);
        return;
      }
      redis_lookups_skipped.fetch_add(1, std::memory_order_relaxed);
    }
    lead(false);
  }

  // /infer's miss: leads the row's call (or joins one in flight) and forwards it.
  template <typename Respond>
  void LeadInfer(std::string material, const std::string& body, const TensorModelInfo& model,
                 Clock::time_point deadline, const Respond& respond) {
    const bool leader =
        coalescer.Join(material, [respond](const Result<std::shared_ptr<const KeyResult>>& r) {
          if (!r.ok()) {
            KeyResult kr;
            kr.error = http::api::ApiErrorFromStatus(r.status());
            return respond(kr, false);
          }
          respond(**r, false);
        });
    if (!leader) return;
    auto f = MakeForward("POST", model.name, "/infer", body, kTensorRowCost, deadline);
    f->keyed = true;
    f->sample = true;
    f->ring_hash = RingHash(material);
    f->request.headers.emplace_back("accept", std::string(http::api::kF32ContentType));
    f->valid = [](const http::ClientResponse& resp) {
      auto rows = http::api::DecodeF32Rows(resp.body, size_t{1} << 24);
      return rows.ok() && rows->rows == 1;
    };
    f->done = [this, material = std::move(material)](Result<http::ClientResponse> resp,
                                                     const std::string& worker) {
      auto kr = std::make_shared<KeyResult>();
      if (!resp.ok()) {
        kr->error = resp.status().code() == StatusCode::kDeadlineExceeded
                        ? http::api::ApiErrorFromStatus(resp.status())
                        : http::api::TeiUnhealthyError(resp.status().message());
      } else if (resp->status != 200) {
        kr->error = ErrorFromWorker(resp->status, resp->body, worker);
      } else {
        auto rows = http::api::DecodeF32Rows(resp->body, size_t{1} << 24);  // valid() passed
        kr->values = std::move(rows->values);
        kr->node_id = std::string(resp->Header(front::kNodeIdHeader));
        kr->cached = resp->Header(front::kCachedHeader) == "true";
        auto row = std::make_shared<front::CachedRow>();
        row->values = kr->values;
        if (cache) cache->Insert(material, row);
        if (redis) redis->Store(material, row);
      }
      coalescer.Complete(material, std::shared_ptr<const KeyResult>(kr));
    };
    SendForward(f);
  }

  // POST /v2/models/{model}/infer: to a worker serving the model (the less loaded of two).
  void HandleKServeInfer(http::Request& q, http::Responder r) {
    if (!Authorized(q, r, http::api::ApiFamily::kKServe, false)) return;
    const std::string model = q.path_params["model"];
    if (!KnownModel(model, r)) return;
    auto shared = std::make_shared<http::Responder>(std::move(r));
    const double cost = std::max(kTensorRowCost, static_cast<double>(q.body.size()) / 64);
    auto f = MakeForward(q.method, model, q.path, std::move(q.body), cost,
                         front::RequestDeadline(q, options.request_timeout));
    f->sample = true;
    AdmitAndRelay(shared, http::api::ApiFamily::kKServe, f);
  }

  // Admission, then `f` forwarded and its answer relayed as it is; the ticket is held
  // until the answer is sent.
  void AdmitAndRelay(const std::shared_ptr<http::Responder>& shared, http::api::ApiFamily family,
                     const std::shared_ptr<Forward>& f) {
    Admit(shared, family, [this, shared, family, f](std::shared_ptr<void> ticket) {
      f->done = [shared, family, ticket](Result<http::ClientResponse> resp, const std::string&) {
        Relay(*shared, resp, family);
      };
      SendForward(f);
    });
  }

  // Whether some worker lists `model`; otherwise KServe's 404, answered here.
  bool KnownModel(const std::string& model, http::Responder& r) {
    if (Lists(model)) return true;
    front::SendKServeError(
        r, http::api::ApiErrorFromStatus(NotFound("model '" + model + "' not found")));
    return false;
  }

  // GET /v2/models/{model}[/ready]: answered by a worker that lists the model.
  void HandleKServeModel(http::Request& q, http::Responder r) {
    if (!Authorized(q, r, http::api::ApiFamily::kKServe, false)) return;
    const std::string model = q.path_params["model"];
    if (!KnownModel(model, r)) return;
    auto shared = std::make_shared<http::Responder>(std::move(r));
    auto f = MakeForward("GET", model, q.path, "", 0, Clock::now() + options.health.timeout);
    f->done = [shared](Result<http::ClientResponse> resp, const std::string&) {
      Relay(*shared, resp, http::api::ApiFamily::kKServe);
    };
    // A model that failed to load on every worker is eligible nowhere: ask a worker that
    // lists it, for its 503 and its reason.
    std::optional<http::Endpoint> lister;
    {
      const auto now = Clock::now();
      std::lock_guard<std::mutex> lock(mu);
      bool eligible = false;
      for (const auto& [id, w] : workers) eligible = eligible || Eligible(w, model, now);
      for (const auto& [id, w] : workers) {
        if (eligible || lister) break;
        if (w.ready && w.info_ok &&
            std::find(w.all_models.begin(), w.all_models.end(), model) != w.all_models.end()) {
          lister = w.endpoint;
        }
      }
    }
    if (!lister) return SendForward(f);
    http::ClientRequest req = f->request;
    req.deadline = f->deadline;
    client->Send(*lister, std::move(req), [shared](Result<http::ClientResponse> resp) {
      Relay(*shared, resp, http::api::ApiFamily::kKServe);
    });
  }

  // POST /tokenize: to a worker serving the default text model.
  void HandleTokenize(http::Request& q, http::Responder r) {
    if (!Authorized(q, r, http::api::ApiFamily::kTei, false)) return;
    const std::optional<front::TextModelInfo> model = ModelFor("");
    if (!model) {
      return front::SendTeiError(r, http::api::TeiUnhealthyError("no text model is served here"));
    }
    auto shared = std::make_shared<http::Responder>(std::move(r));
    double cost = 1;
    {
      std::lock_guard<std::mutex> lock(mu);
      cost = std::ceil(static_cast<double>(q.body.size()) / chars_per_token / 4);  // no compute
    }
    auto f = MakeForward("POST", model->name, "/tokenize", std::move(q.body), cost,
                         front::RequestDeadline(q, options.request_timeout));
    AdmitAndRelay(shared, http::api::ApiFamily::kTei, f);
  }

  // GET /health/thread-pools: the gateway's own threads in the seed's table.
  std::vector<http::api::SeedThreadPool> ThreadPoolTable() {
    std::vector<http::api::SeedThreadPool> rows;
    // I/O threads never block on a request; "active" is what they serve now: admitted
    // requests not yet answered.
    rows.push_back({"io", options.io_threads, limiter.in_flight(), 0,
                    static_cast<int64_t>(requests_total.load())});
    const http::HttpClient::Stats cs = client->stats();
    int64_t upstream = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      upstream = subs_in_flight + forwards_in_flight;
    }
    rows.push_back({"upstream_io", 1, upstream, static_cast<int64_t>(cs.waiting),
                    static_cast<int64_t>(cs.requests)});
    rows.push_back({"admission", 1, 0, static_cast<int64_t>(waiting_count.load()),
                    static_cast<int64_t>(waited.load())});
    rows.push_back({"health", 1, 0, 0, static_cast<int64_t>(health_rounds.load())});
    return rows;
  }

  void HandleInfo(http::Request&, http::Responder r) {
    std::optional<http::Endpoint> ep;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [id, w] : workers) {
        if (w.ready && w.info_ok) {
          ep = w.endpoint;
          break;
        }
      }
    }
    if (!ep) return front::SendTeiError(r, http::api::TeiUnhealthyError("no worker is ready"));
    auto shared = std::make_shared<http::Responder>(std::move(r));
    http::ClientRequest req;
    req.target = "/info";
    req.deadline = Clock::now() + options.health.timeout;
    // Its TEI fields, with the models of every ready worker (each name once).
    boost::json::array models;
    {
      std::lock_guard<std::mutex> lock(mu);
      std::set<std::string> seen;
      for (const auto& [id, w] : workers) {
        if (!w.ready || !w.info_ok) continue;
        for (const auto& m : w.info_models) {
          const auto* name = m.is_object() ? m.as_object().if_contains("name") : nullptr;
          if (name && name->is_string() && seen.insert(std::string(name->as_string())).second) {
            models.push_back(m);
          }
        }
      }
    }
    client->Send(*ep, req, [shared, models](Result<http::ClientResponse> resp) {
      boost::system::error_code ec;
      boost::json::value v;
      if (resp.ok() && resp->status == 200) v = boost::json::parse(resp->body, ec);
      if (!resp.ok() || resp->status != 200 || ec || !v.is_object()) {
        return front::SendTeiError(
            *shared, http::api::TeiUnhealthyError("the worker asked for /info did not answer"));
      }
      auto& o = v.as_object();
      o["models"] = models;
      o["node_id"] = "gateway";
      front::Send(*shared, 200, boost::json::serialize(o));
    });
  }

  void BindMetrics() {
    auto& reg = metrics::Registry::Global();
    bindings.push_back(
        reg.CallbackGauge("infermesh_gateway_concurrency_limit", "The adaptive concurrency limit")
            .Bind([this] { return double(limiter.limit()); }));
    bindings.push_back(
        reg.CallbackGauge("infermesh_gateway_min_rtt_seconds",
                          "Minimum round-trip time the limiter measured")
            .Bind([this] { return std::chrono::duration<double>(limiter.min_rtt()).count(); }));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_limiter_rejected_total",
                                           "Requests refused by the concurrency limit")
                           .Bind([this] { return double(limiter.rejected()); }));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_coalesced_total",
                                           "Inputs that joined an identical call in flight")
                           .Bind([this] { return double(coalescer.coalesced()); }));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_retries_total",
                                           "Sub-batches sent again to another worker")
                           .Bind([this] {
                             std::lock_guard<std::mutex> lock(mu);
                             return double(retries_total);
                           }));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_hedges_total",
                                           "Sub-batches sent again because they were slow")
                           .Bind([this] {
                             std::lock_guard<std::mutex> lock(mu);
                             return double(hedges_sent);
                           }));
    bindings.push_back(reg.CallbackCounter("infermesh_gateway_hedges_won_total",
                                           "Hedged sub-batches whose hedge answered first")
                           .Bind([this] { return double(hedges_won.load()); }));
    bindings.push_back(
        reg.CallbackGauge("infermesh_gateway_workers_ready", "Workers that pass health checks")
            .Bind([this] {
              std::lock_guard<std::mutex> lock(mu);
              double n = 0;
              for (const auto& [id, w] : workers) n += w.ready && w.info_ok;
              return n;
            }));
    // The autoscaling signal (deploy/k8s): estimated tokens in flight per ready worker.
    bindings.push_back(reg.CallbackGauge("infermesh_gateway_outstanding_tokens_per_worker",
                                         "Estimated tokens in flight at the workers, per ready "
                                         "worker (0 when none is ready)")
                           .Bind([this] {
                             std::lock_guard<std::mutex> lock(mu);
                             double tokens = 0, ready_n = 0;
                             for (const auto& [id, w] : workers) {
                               if (!w.ready || !w.info_ok) continue;
                               tokens += w.outstanding;
                               ready_n += 1;
                             }
                             return ready_n > 0 ? tokens / ready_n : 0.0;
                           }));
    if (redis) {
      auto stat = [r = redis.get()](uint64_t RedisCache::Stats::*field) {
        return [r, field] { return double(r->stats().*field); };
      };
      bindings.push_back(
          reg.CallbackCounter("infermesh_gateway_redis_hits_total", "Inputs found in Redis")
              .Bind(stat(&RedisCache::Stats::hits)));
      bindings.push_back(reg.CallbackCounter("infermesh_gateway_redis_misses_total",
                                             "Inputs looked up in Redis and not found")
                             .Bind(stat(&RedisCache::Stats::misses)));
      bindings.push_back(
          reg.CallbackCounter("infermesh_gateway_redis_errors_total",
                              "Inputs whose Redis lookup failed (answered as misses)")
              .Bind(stat(&RedisCache::Stats::errors)));
      bindings.push_back(reg.CallbackCounter("infermesh_gateway_redis_skipped_total",
                                             "Inputs not looked up: Redis breaker open")
                             .Bind(stat(&RedisCache::Stats::skipped)));
      bindings.push_back(
          reg.CallbackCounter("infermesh_gateway_redis_stored_total", "Rows written to Redis")
              .Bind(stat(&RedisCache::Stats::stored)));
    }
    if (cache) {
      bindings.push_back(
          reg.CallbackCounter("infermesh_gateway_cache_hits_total", "Gateway local cache hits")
              .Bind([c = cache.get()] { return double(c->Stats().hits); }));
      bindings.push_back(
          reg.CallbackCounter("infermesh_gateway_cache_misses_total", "Gateway local cache misses")
              .Bind([c = cache.get()] { return double(c->Stats().misses); }));
    }
  }
};

GatewayService::~GatewayService() { Shutdown(); }

uint16_t GatewayService::port() const { return impl_->server ? impl_->server->port() : 0; }

Result<std::unique_ptr<GatewayService>> GatewayService::Start(GatewayOptions options) {
  // No workers at all is allowed: they may register themselves (worker --gateway URL);
  // until one is ready the gateway answers 503.
  auto svc = std::unique_ptr<GatewayService>(new GatewayService());
  svc->impl_ = std::make_unique<Impl>(std::move(options));
  Impl& im = *svc->impl_;
  http::ClientOptions co;
  co.io_threads = 1;
  co.max_connections_per_host = im.options.max_connections_per_worker;
  im.client = http::HttpClient::Create(co);
  // Health checks and /info reads have a client of their own: they never wait for a
  // pooled connection behind traffic, so a busy worker is not taken for a dead one.
  http::ClientOptions ho;
  ho.io_threads = 1;
  ho.max_connections_per_host = 2;
  im.health_client = http::HttpClient::Create(ho);
  im.membership = std::make_unique<Membership>(im.health_client.get(), im.options.health);
  im.membership->SetWorkers(im.options.workers);
  std::vector<std::string> ids;
  for (const auto& ep : im.options.workers) {
    const std::string id = ep.ToString();
    if (im.workers.count(id)) continue;
    WorkerState w;
    w.id = id;
    w.endpoint = ep;
    w.breaker = std::make_shared<CircuitBreaker>(im.options.breaker);
    im.workers.emplace(id, std::move(w));
    ids.push_back(id);
  }
  im.ring.SetMembers(ids);
  {
    std::lock_guard<std::mutex> serial(im.members_mu);
    im.SyncWorkerMetrics(ids);
  }
  if (im.options.cache_bytes > 0) {
    LruCacheOptions lo;
    lo.capacity_bytes = static_cast<size_t>(im.options.cache_bytes);
    im.cache = std::make_unique<front::RowCache>(lo, front::CachedRowBytes);
  }
  class Backend final : public front::EmbedBackend {
   public:
    explicit Backend(Impl* im) : im_(im) {}
    void Embed(front::EmbedCall call, Done done) override {
      im_->Embed(std::move(call), std::move(done));
    }

   private:
    Impl* im_;
  };
  if (!im.options.redis_url.empty()) {
    RedisOptions ro;
    ro.ttl = im.options.redis_ttl;
    ro.timeout = im.options.redis_timeout;
    IM_ASSIGN_OR_RETURN(ro, ParseRedisUrl(im.options.redis_url, ro));
    im.redis = std::make_unique<RedisCache>(ro);
    im.redis_pool = std::make_unique<ThreadPool>("redis", ro.pool_size + 1);
  }
  im.backend = std::make_unique<Backend>(&im);
  front::TextFrontOptions fo;
  fo.max_client_batch_size = im.options.max_client_batch_size;
  fo.auto_truncate = im.options.auto_truncate;
  fo.request_timeout = im.options.request_timeout;
  fo.limits.max_inputs =
      static_cast<size_t>(std::max<int64_t>(im.options.max_client_batch_size * 4, 64));
  front::TextFront::Hooks hooks;
  hooks.admit = [&im](const std::shared_ptr<http::Responder>& r, http::api::ApiFamily f,
                      front::TextFront::Hooks::Proceed proceed) {
    im.Admit(r, f, std::move(proceed));
  };
  hooks.model = [&im](const std::string& name) { return im.ModelFor(name); };
  im.front = std::make_unique<front::TextFront>(fo, im.cache.get(), im.backend.get(), hooks);

  im.RefreshDns();
  im.RefreshWorkers();  // the first round before serving
  im.BindMetrics();

  im.inference_auth = http::BearerAuth(im.options.api_keys);
  im.admin_auth = http::BearerAuth(im.options.admin_key.empty()
                                       ? std::vector<std::string>{}
                                       : std::vector<std::string>{im.options.admin_key});
  using Family = http::api::ApiFamily;
  auto router = std::make_shared<http::Router>();
  router->Add("POST", "/embed", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, false)) return;
    im.front->HandleEmbed(q, std::move(r));
  });
  router->Add("POST", "/v1/embeddings", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kOpenAi, false)) return;
    im.front->HandleOpenAi(q, std::move(r));
  });
  router->Add("POST", "/infer",
              [&im](http::Request& q, http::Responder r) { im.HandleInfer(q, std::move(r)); });
  router->Add("POST", "/tokenize",
              [&im](http::Request& q, http::Responder r) { im.HandleTokenize(q, std::move(r)); });
  router->Add("POST", "/v2/models/{model}/infer", [&im](http::Request& q, http::Responder r) {
    im.HandleKServeInfer(q, std::move(r));
  });
  router->Add("GET", "/v2/models/{model}", [&im](http::Request& q, http::Responder r) {
    im.HandleKServeModel(q, std::move(r));
  });
  router->Add("GET", "/v2/models/{model}/ready", [&im](http::Request& q, http::Responder r) {
    im.HandleKServeModel(q, std::move(r));
  });
  router->Add("GET", "/v2", [](http::Request&, http::Responder r) {
    http::api::KServeServerMetadata md;
    md.version = kVersion;
    front::Send(r, 200, http::api::SerializeKServeServerMetadata(md));
  });
  router->Add("GET", "/v2/health/live", [](http::Request&, http::Responder r) {
    front::Send(r, 200, http::api::SerializeKServeLive(true));
  });
  router->Add("GET", "/v2/health/ready", [&im](http::Request&, http::Responder r) {
    const bool ok = im.ready.load();
    front::Send(r, ok ? 200 : 503, http::api::SerializeKServeReady(ok));
  });
  router->Add("GET", "/health/thread-pools", [&im](http::Request&, http::Responder r) {
    front::Send(r, 200, http::api::SerializeSeedThreadPools(im.ThreadPoolTable()));
  });
  router->Add("GET", "/admin/workers", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    size_t total = 0, up = 0;
    boost::json::object o{{"workers", im.WorkersJson(Clock::now(), &total, &up)}};
    front::Send(r, 200, boost::json::serialize(o));
  });
  router->Add("POST", "/admin/workers", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    boost::system::error_code ec;
    auto v = boost::json::parse(q.body, ec);
    const boost::json::value* a =
        !ec && v.is_object() ? v.as_object().if_contains("address") : nullptr;
    if (a == nullptr || !a->is_string()) {
      return front::SendTeiError(
          r, http::api::TeiEmptyError("expected {\"address\": \"host:port\"}", "address"));
    }
    auto ep = http::ParseEndpoint(std::string(a->as_string()));
    if (!ep.ok()) {
      return front::SendTeiError(r, ApiError{400, "Validation", ep.status().message(), "address"});
    }
    im.SendStatus(r, im.AddWorker(*ep), 201, {{"added", ep->ToString()}});
  });
  // Registration: a worker started with --gateway URL posts its address every
  // heartbeat interval, and deregisters when it stops.
  auto address_of = [](const http::Request& q) -> Result<http::Endpoint> {
    boost::system::error_code ec;
    auto v = boost::json::parse(q.body, ec);
    const boost::json::value* a =
        !ec && v.is_object() ? v.as_object().if_contains("address") : nullptr;
    if (a == nullptr || !a->is_string()) {
      return InvalidArgument("expected {\"address\": \"host:port\"}");
    }
    return http::ParseEndpoint(std::string(a->as_string()));
  };
  router->Add("POST", "/admin/register", [&im, address_of](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    auto ep = address_of(q);
    if (!ep.ok()) {
      return front::SendTeiError(r, ApiError{400, "Validation", ep.status().message(), "address"});
    }
    Status added = im.AddWorker(*ep, WorkerState::Source::kRegistered);
    if (added.ok()) {
      boost::system::error_code ec;
      auto v = boost::json::parse(q.body, ec);
      const auto* sent = !ec && v.is_object() ? v.as_object().if_contains("sent_unix_ms") : nullptr;
      if (sent && sent->is_int64()) {
        const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
        std::lock_guard<std::mutex> lock(im.mu);
        if (auto it = im.workers.find(ep->ToString()); it != im.workers.end()) {
          it->second.clock_skew_ms = now_ms - sent->as_int64();
        }
      }
    }
    im.SendStatus(
        r, added, 200,
        {{"registered", ep->ToString()}, {"ttl_ms", im.options.registration_ttl.count()}});
  });
  router->Add("POST", "/admin/deregister", [&im, address_of](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    auto ep = address_of(q);
    if (!ep.ok()) {
      return front::SendTeiError(r, ApiError{400, "Validation", ep.status().message(), "address"});
    }
    im.SendStatus(r, im.RemoveWorker(ep->ToString(), /*only_registered=*/true), 200,
                  {{"deregistered", ep->ToString()}});
  });
  router->Add("DELETE", "/admin/workers/{id}", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    const std::string id = q.path_params["id"];
    im.SendStatus(r, im.RemoveWorker(id), 200, {{"removed", id}});
  });
  router->Add("POST", "/admin/workers/{id}/drain", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    const std::string id = q.path_params["id"];
    im.SendStatus(r, im.Drain(id, true), 200, {{"drained", id}});
  });
  router->Add("POST", "/admin/workers/{id}/resume", [&im](http::Request& q, http::Responder r) {
    if (!im.Authorized(q, r, Family::kTei, true)) return;
    const std::string id = q.path_params["id"];
    im.SendStatus(r, im.Drain(id, false), 200, {{"resumed", id}});
  });
  router->Add("GET", "/health",
              [&im](http::Request& q, http::Responder r) { im.HandleHealth(q, std::move(r)); });
  router->Add("GET", "/stats",
              [&im](http::Request& q, http::Responder r) { im.HandleStats(q, std::move(r)); });
  router->Add("GET", "/info",
              [&im](http::Request& q, http::Responder r) { im.HandleInfo(q, std::move(r)); });
  router->Add("GET", "/metrics", [&im](http::Request& q, http::Responder r) {
    if (im.options.protect_metrics && !im.Authorized(q, r, Family::kTei, false)) return;
    front::Send(r, 200, metrics::Registry::Global().RenderText(), {},
                std::string(metrics::kPrometheusContentType));
  });
  router->Add("GET", "/ui", [](http::Request&, http::Responder r) {
    // The page itself holds no data; what it reads is behind the keys (?key=).
    front::Send(r, 200, std::string(StatusPageHtml()),
                {{"cache-control", "no-store"},
                 {"content-security-policy",
                  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                  "connect-src 'self'; img-src 'self'"}},
                "text/html; charset=utf-8");
  });
  router->Add("GET", "/ui/jobs",
              [&im](http::Request& q, http::Responder r) { im.HandleUiJobs(q, std::move(r)); });
  http::ServerOptions so;
  so.host = im.options.host;
  so.port = im.options.port;
  so.io_threads = im.options.io_threads;
  so.max_body_bytes = im.options.max_body_bytes;
  so.limits = im.options.server_limits;
  so.metrics = &metrics::Registry::Global();
  so.on_complete = [rm = im.request_metrics.get()](const http::Request& q, int status,
                                                   std::chrono::nanoseconds d) {
    rm->Observe(q.route, status, d);
  };
  so.error_body = [](int status, std::string_view message) {
    ApiError e = http::api::ApiErrorFromStatus(
        Status(status == 413 ? StatusCode::kResourceExhausted : StatusCode::kInvalidArgument,
               std::string(message)));
    e.status = status;
    return http::api::TeiErrorBody(e);
  };
  IM_ASSIGN_OR_RETURN(im.server, http::HttpServer::Start(so, router));
  im.health_thread = std::thread([&im] { im.HealthLoop(); });
  im.wait_thread = std::thread([&im] { im.WaitLoop(); });
  if (im.options.hedging) im.hedge_thread = std::thread([&im] { im.HedgeLoop(); });
  log::Info("gateway listening",
            {{"address", im.options.host + ":" + std::to_string(im.server->port())},
             {"workers", std::to_string(im.options.workers.size() + im.options.dns.size())}});
  return svc;
}

void GatewayService::Shutdown() {
  if (!impl_) return;
  Impl& im = *impl_;
  im.shutting_down = true;
  im.ready = false;
  {
    std::lock_guard<std::mutex> lock(im.health_mu);
    if (im.stopping) return;
    im.stopping = true;
  }
  im.health_cv.notify_all();
  if (im.health_thread.joinable()) im.health_thread.join();
  {
    std::lock_guard<std::mutex> lock(im.wait_mu);
    im.wait_stopping = true;
  }
  im.wait_cv.notify_all();
  if (im.wait_thread.joinable()) im.wait_thread.join();
  {
    std::lock_guard<std::mutex> lock(im.hedge_mu);
    im.hedge_stopping = true;
    im.hedge_queue.clear();
  }
  im.hedge_cv.notify_all();
  if (im.hedge_thread.joinable()) im.hedge_thread.join();
  if (im.server) im.server->Shutdown(std::chrono::seconds(10));
  im.bindings.clear();
  {
    std::lock_guard<std::mutex> serial(im.members_mu);
    im.worker_bindings.clear();
  }
  if (im.redis_pool) im.redis_pool->Shutdown();  // finishes queued lookups
  if (im.client) im.client->Shutdown();
  if (im.health_client) im.health_client->Shutdown();
}

Result<GatewayOptions> GatewayOptionsFromConfig(const Config& c) {
  GatewayOptions o;
  IM_ASSIGN_OR_RETURN(o.host, c.GetString("gateway.host"));
  IM_ASSIGN_OR_RETURN(int64_t port, c.GetInt("gateway.port"));
  if (port < 0 || port > 65535) return InvalidArgument("gateway.port must be 0..65535");
  o.port = static_cast<uint16_t>(port);
  IM_ASSIGN_OR_RETURN(std::string workers, c.GetString("gateway.workers"));
  size_t pos = 0;
  while (pos < workers.size()) {
    size_t comma = workers.find(',', pos);
    if (comma == std::string::npos) comma = workers.size();
    std::string item = workers.substr(pos, comma - pos);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.starts_with("dns:")) {
      // dns:NAME:PORT
      auto ep = http::ParseEndpoint(item.substr(4));
      if (!ep.ok()) return ep.status().WithContext("gateway.workers (dns:NAME:PORT)");
      o.dns.push_back({ep->host, ep->port});
    } else if (!item.empty()) {
      auto ep = http::ParseEndpoint(item);
      if (!ep.ok()) return ep.status().WithContext("gateway.workers");
      o.workers.push_back(*ep);
    }
    pos = comma + 1;
  }
  auto ranged = [&](const char* key, int64_t min, int64_t max) -> Result<int64_t> {
    IM_ASSIGN_OR_RETURN(int64_t v, c.GetInt(key));
    if (v < min || v > max) {
      return InvalidArgument(std::string(key) + " must be in " + std::to_string(min) + ".." +
                             std::to_string(max) + ", got " + std::to_string(v));
    }
    return v;
  };
  IM_ASSIGN_OR_RETURN(std::string jobs_url, c.GetString("gateway.jobs_url"));
  if (!jobs_url.empty()) {
    auto ep = http::ParseEndpoint(jobs_url);
    if (!ep.ok()) return ep.status().WithContext("gateway.jobs_url");
    o.jobs = *ep;
  }
  IM_ASSIGN_OR_RETURN(int64_t io, ranged("gateway.io_threads", 1, 256));
  o.io_threads = static_cast<int>(io);
  IM_ASSIGN_OR_RETURN(o.max_client_batch_size, ranged("gateway.max_client_batch_size", 1, 8192));
  IM_ASSIGN_OR_RETURN(o.max_sub_batch, ranged("gateway.max_sub_batch", 0, 8192));
  IM_ASSIGN_OR_RETURN(int64_t body, c.GetBytes("gateway.max_body_bytes"));
  if (body < 1024 || body > (int64_t{1} << 30)) {
    return InvalidArgument("gateway.max_body_bytes must be between 1KiB and 1GiB");
  }
  o.max_body_bytes = static_cast<size_t>(body);
  IM_ASSIGN_OR_RETURN(int64_t timeout, c.GetMillis("gateway.request_timeout"));
  o.request_timeout = std::chrono::milliseconds(timeout);
  IM_ASSIGN_OR_RETURN(o.cache_bytes, c.GetBytes("cache.max_bytes"));
  IM_ASSIGN_OR_RETURN(o.balance_factor, c.GetDouble("gateway.balance_factor"));
  if (o.balance_factor < 1.0 || o.balance_factor > 100) {
    return InvalidArgument("gateway.balance_factor must be between 1 and 100");
  }
  IM_ASSIGN_OR_RETURN(int64_t attempts, ranged("gateway.max_attempts", 1, 10));
  o.max_attempts = static_cast<int>(attempts);
  IM_ASSIGN_OR_RETURN(o.retry_budget, c.GetDouble("gateway.retry_budget"));
  if (o.retry_budget < 0 || o.retry_budget > 10) {
    return InvalidArgument("gateway.retry_budget must be between 0 and 10");
  }
  IM_ASSIGN_OR_RETURN(o.admission_wait_rtts, c.GetDouble("gateway.admission_wait_rtts"));
  if (o.admission_wait_rtts < 0 || o.admission_wait_rtts > 1000) {
    return InvalidArgument("gateway.admission_wait_rtts must be between 0 and 1000");
  }
  IM_ASSIGN_OR_RETURN(o.hedging, c.GetBool("gateway.hedging"));
  IM_ASSIGN_OR_RETURN(int64_t hedge_delay, c.GetMillis("gateway.hedge_delay"));
  if (hedge_delay < 0 || hedge_delay > 60000) {
    return InvalidArgument("gateway.hedge_delay must be between 0 and 60s");
  }
  o.hedge_delay = std::chrono::milliseconds(hedge_delay);
  IM_ASSIGN_OR_RETURN(o.adaptive_limit, c.GetBool("gateway.adaptive_limit"));
  IM_ASSIGN_OR_RETURN(int64_t conns, ranged("gateway.max_connections_per_worker", 1, 4096));
  o.max_connections_per_worker = static_cast<size_t>(conns);
  IM_ASSIGN_OR_RETURN(int64_t failures, ranged("gateway.breaker_failures", 1, 1000));
  o.breaker.failure_threshold = static_cast<int>(failures);
  IM_ASSIGN_OR_RETURN(int64_t open, c.GetMillis("gateway.breaker_open_time"));
  o.breaker.open_timeout = std::chrono::milliseconds(open);
  IM_ASSIGN_OR_RETURN(int64_t successes, ranged("gateway.breaker_successes", 1, 1000));
  o.breaker.success_threshold = static_cast<int>(successes);
  IM_ASSIGN_OR_RETURN(int64_t interval, c.GetMillis("gateway.health_interval"));
  if (interval < 10) return InvalidArgument("gateway.health_interval must be at least 10ms");
  o.health.interval = std::chrono::milliseconds(interval);
  IM_ASSIGN_OR_RETURN(int64_t htimeout, c.GetMillis("gateway.health_timeout"));
  o.health.timeout = std::chrono::milliseconds(std::max<int64_t>(htimeout, 1));
  IM_ASSIGN_OR_RETURN(o.limiter.buffer, c.GetDouble("gateway.limit_tolerance"));
  if (o.limiter.buffer < 0 || o.limiter.buffer > 100) {
    return InvalidArgument("gateway.limit_tolerance must be between 0 and 100");
  }
  IM_ASSIGN_OR_RETURN(int64_t min_limit, ranged("gateway.min_concurrency", 1, 1 << 20));
  o.limiter.min_limit = static_cast<double>(min_limit);
  IM_ASSIGN_OR_RETURN(int64_t max_limit, ranged("gateway.max_concurrency", 1, 1 << 20));
  o.limiter.max_limit = static_cast<double>(std::max(max_limit, min_limit));
  IM_ASSIGN_OR_RETURN(int64_t wait, c.GetMillis("gateway.admission_wait"));
  o.admission_wait = std::chrono::milliseconds(wait);
  IM_ASSIGN_OR_RETURN(int64_t waiting, ranged("gateway.max_waiting_requests", 0, 1 << 20));
  o.max_waiting_requests = static_cast<size_t>(waiting);
  IM_ASSIGN_OR_RETURN(int64_t dns_ms, c.GetMillis("gateway.dns_interval"));
  if (dns_ms < 100) return InvalidArgument("gateway.dns_interval must be at least 100ms");
  o.dns_interval = std::chrono::milliseconds(dns_ms);
  IM_ASSIGN_OR_RETURN(int64_t ttl_ms, c.GetMillis("gateway.registration_ttl"));
  if (ttl_ms < 100) return InvalidArgument("gateway.registration_ttl must be at least 100ms");
  o.registration_ttl = std::chrono::milliseconds(ttl_ms);
  IM_ASSIGN_OR_RETURN(o.redis_url, c.GetString("gateway.redis"));
  if (!o.redis_url.empty()) IM_RETURN_IF_ERROR(ParseRedisUrl(o.redis_url).status());
  IM_ASSIGN_OR_RETURN(int64_t rttl, c.GetMillis("gateway.redis_ttl"));
  if (rttl < 1000) return InvalidArgument("gateway.redis_ttl must be at least 1s");
  o.redis_ttl = std::chrono::seconds(rttl / 1000);
  IM_ASSIGN_OR_RETURN(int64_t rto, c.GetMillis("gateway.redis_timeout"));
  if (rto < 1) return InvalidArgument("gateway.redis_timeout must be at least 1ms");
  o.redis_timeout = std::chrono::milliseconds(rto);
  IM_ASSIGN_OR_RETURN(std::string keys, c.GetString("gateway.api_keys"));
  o.api_keys = http::SplitKeyList(keys);
  IM_ASSIGN_OR_RETURN(o.admin_key, c.GetString("gateway.admin_key"));
  IM_ASSIGN_OR_RETURN(o.protect_metrics, c.GetBool("gateway.protect_metrics"));
  IM_ASSIGN_OR_RETURN(o.server_limits, http::ServerLimitsFromConfig(c));
  return o;
}

}  // namespace infermesh::gateway
