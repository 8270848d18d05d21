// GatewayService's embedding backend: routing by consistent hashing with bounded loads,
// coalescing, sub-batches to workers, their answers, retries and hedging.
#include "gateway/internal/gateway_impl.h"

namespace infermesh::gateway {

using namespace internal;  // NOLINT: this file implements the internals

namespace {

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

}  // namespace

// ---- routing --------------------------------------------------------------------
double GatewayService::Impl::Estimate(const std::string& text) const {
  return std::ceil(static_cast<double>(text.size()) / chars_per_token) + 2;
}

bool GatewayService::Impl::Serves(const WorkerState& w, const std::string& model) const {
  if (!w.info_ok) return false;
  for (const auto& m : w.models) {
    if (m.name == model) return true;
  }
  for (const auto& m : w.tensor_models) {
    if (m.name == model) return true;
  }
  return false;
}

bool GatewayService::Impl::Eligible(const WorkerState& w, const std::string& model,
                                    Clock::time_point now) {
  return w.ready && !w.drained && Serves(w, model) && w.breaker->Available(now) &&
         !outlier.Ejected(w.id, now);
}

std::optional<front::TextModelInfo> GatewayService::Impl::ModelFor(const std::string& name) const {
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

void GatewayService::Impl::Embed(front::EmbedCall call, front::EmbedBackend::Done done) {
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

void GatewayService::Impl::RouteEmbed(front::EmbedCall call, std::vector<std::string> materials,
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
      const double est = call.inputs[k].is_ids ? static_cast<double>(call.inputs[k].ids.size()) + 2
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

void GatewayService::Impl::Complete(const Sub& sub,
                                    const std::shared_ptr<const KeyResult>& result) {
  if (sub.group->settled.exchange(true)) return;
  for (const auto& m : sub.materials) coalescer.Complete(m, result);
}

void GatewayService::Impl::Fail(const Sub& sub, ApiError e) {
  auto r = std::make_shared<KeyResult>();
  r->error = std::move(e);
  Complete(sub, r);
}

void GatewayService::Impl::Dispatch(std::shared_ptr<Sub> sub, const std::string& id) {
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
    return RetryOrFail(sub, id,
                       ApiError{503, "Unhealthy",
                                "worker " + id + (gone ? " was removed" : " circuit is open"), ""},
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
void GatewayService::Impl::UnsentHedge() {
  std::lock_guard<std::mutex> lock(mu);
  retry_tokens = std::min(kRetryCap, retry_tokens + 1.0);
}

std::optional<Clock::duration> GatewayService::Impl::HedgeDelay() {
  if (options.hedge_delay.count() > 0) return options.hedge_delay;
  std::lock_guard<std::mutex> lock(mu);
  if (rtt_p95_ms <= 0) return std::nullopt;
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(rtt_p95_ms));
}

void GatewayService::Impl::RecordRtt(Clock::duration rtt) {
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

void GatewayService::Impl::HedgeLoop() {
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

void GatewayService::Impl::Hedge(const std::shared_ptr<Sub>& sub) {
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

void GatewayService::Impl::Unload(const std::string& id, const Sub& sub) {
  Unload(id, sub.est_tokens);
}

void GatewayService::Impl::Unload(const std::string& id, double cost) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = workers.find(id);
  if (it != workers.end()) it->second.outstanding = std::max(0.0, it->second.outstanding - cost);
}

void GatewayService::Impl::RecordOutcome(const std::string& id, Outcome o, Clock::time_point now,
                                         uint64_t epoch) {
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

void GatewayService::Impl::OnResponse(const std::shared_ptr<Sub>& sub, const std::string& id,
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
                     ? http::api::ApiErrorFromStatus(
                           DeadlineExceeded("worker " + id + " did not answer before the deadline"))
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

void GatewayService::Impl::RetryOrFail(const std::shared_ptr<Sub>& sub, const std::string& id,
                                       ApiError error, bool was_sent) {
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

}  // namespace infermesh::gateway
