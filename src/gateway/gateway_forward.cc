// GatewayService's whole-request forwarding (Forward): /infer rows, KServe v2, /tokenize,
// model metadata and /info.
#include "gateway/internal/gateway_impl.h"

namespace infermesh::gateway {

using namespace internal;  // NOLINT: this file implements the internals

namespace {

// An /infer row or a KServe input costs about this many tokens' worth of load.
constexpr double kTensorRowCost = 16;

}  // namespace

// ---- whole requests forwarded to one worker (Forward) --------------------------------
std::optional<std::pair<std::string, http::Endpoint>> GatewayService::Impl::PickLocked(
    Forward& f, Clock::time_point now) {
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

void GatewayService::Impl::SendForward(const std::shared_ptr<Forward>& f) {
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

void GatewayService::Impl::OnForward(const std::shared_ptr<Forward>& f, const std::string& id,
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

// ---- forwarded routes: /infer, KServe v2, /tokenize ---------------------------------
std::optional<TensorModelInfo> GatewayService::Impl::InferModel() const {
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [id, w] : workers) {
    if (!w.ready || !w.info_ok) continue;
    for (const auto& t : w.tensor_models) {
      if (t.feature_size > 0) return t;
    }
  }
  return std::nullopt;
}

bool GatewayService::Impl::Lists(const std::string& model) const {
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [id, w] : workers) {
    if (!w.info_ok) continue;
    if (std::find(w.all_models.begin(), w.all_models.end(), model) != w.all_models.end()) {
      return true;
    }
  }
  return false;
}

void GatewayService::Impl::Relay(http::Responder& r, const Result<http::ClientResponse>& resp,
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

std::shared_ptr<Forward> GatewayService::Impl::MakeForward(std::string method,
                                                           const std::string& model,
                                                           std::string target, std::string body,
                                                           double cost,
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

void GatewayService::Impl::HandleInfer(http::Request& q, http::Responder r) {
  if (!Authorized(q, r, http::api::ApiFamily::kTei, false)) return;
  auto shared = std::make_shared<http::Responder>(std::move(r));
  auto body = std::make_shared<std::string>(std::move(q.body));
  const auto deadline = front::RequestDeadline(q, options.request_timeout);
  Admit(shared, http::api::ApiFamily::kTei,
        [this, shared, body, deadline](std::shared_ptr<void> ticket) {
          RunInfer(shared, body, deadline, std::move(ticket));
        });
}

void GatewayService::Impl::RunInfer(const std::shared_ptr<http::Responder>& shared,
                                    const std::shared_ptr<std::string>& body,
                                    Clock::time_point deadline, std::shared_ptr<void> ticket) {
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

template <typename Respond>
void GatewayService::Impl::LeadInfer(std::string material, const std::string& body,
                                     const TensorModelInfo& model, Clock::time_point deadline,
                                     const Respond& respond) {
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

void GatewayService::Impl::HandleKServeInfer(http::Request& q, http::Responder r) {
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

void GatewayService::Impl::AdmitAndRelay(const std::shared_ptr<http::Responder>& shared,
                                         http::api::ApiFamily family,
                                         const std::shared_ptr<Forward>& f) {
  Admit(shared, family, [this, shared, family, f](std::shared_ptr<void> ticket) {
    f->done = [shared, family, ticket](Result<http::ClientResponse> resp, const std::string&) {
      Relay(*shared, resp, family);
    };
    SendForward(f);
  });
}

bool GatewayService::Impl::KnownModel(const std::string& model, http::Responder& r) {
  if (Lists(model)) return true;
  front::SendKServeError(
      r, http::api::ApiErrorFromStatus(NotFound("model '" + model + "' not found")));
  return false;
}

void GatewayService::Impl::HandleKServeModel(http::Request& q, http::Responder r) {
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

void GatewayService::Impl::HandleTokenize(http::Request& q, http::Responder r) {
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

std::vector<http::api::SeedThreadPool> GatewayService::Impl::ThreadPoolTable() {
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

void GatewayService::Impl::HandleInfo(http::Request&, http::Responder r) {
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

}  // namespace infermesh::gateway
