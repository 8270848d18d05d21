// WorkerService for text models: the embedding backend behind the serving front's
// /embed and /v1/embeddings (tokenize → batch → runtime), and TEI's /tokenize and /info.
#include "worker/internal/worker_impl.h"

namespace infermesh::worker {

using namespace internal;  // NOLINT: this file implements the internals

// ---- the embedding backend ---------------------------------------------------
// Tokenizes the front's cache misses on the tokenize pool, queues them in the model's
// batcher and calls `done` exactly once (on some thread) with the rows or an error.
void WorkerService::Impl::EmbedMisses(front::EmbedCall call, front::EmbedBackend::Done done) {
  TextModel* found = TextModelFor(call.model.name);
  if (found == nullptr) {
    done(http::api::TeiUnhealthyError("model '" + call.model.name + "' is not loaded"));
    return;
  }
  TextModel& model = *found;
  auto shared_call = std::make_shared<front::EmbedCall>(std::move(call));
  auto task = [this, &model, shared_call, done = std::move(done)]() mutable {
    const front::EmbedCall& c = *shared_call;
    const auto start = steady_clock::now();
    runtime::EmbedOptions eo;
    eo.truncate = c.truncate;
    eo.side = c.direction == http::api::TruncationDirection::kLeft
                  ? runtime::TruncationSide::kLeft
                  : runtime::TruncationSide::kRight;
    std::vector<runtime::Encoding> encodings;
    encodings.reserve(c.inputs.size());
    for (size_t k = 0; k < c.inputs.size(); ++k) {
      const TextInput& in = c.inputs[k];
      const size_t i = k < c.positions.size() ? c.positions[k] : k;  // the client's index
      if (in.is_ids) {
        runtime::Encoding e;
        for (uint32_t id : in.ids) {
          if (id >= model.entry->text->tokenizer().vocab_size()) {
            done(http::api::TeiValidationError(
                "token id " + std::to_string(id) + " in input " + std::to_string(i) +
                    " is outside the vocabulary of " +
                    std::to_string(model.entry->text->tokenizer().vocab_size()),
                "input"));
            return;
          }
          e.ids.push_back(id);
        }
        if (e.ids.size() > model.entry->text->max_length()) {
          if (!c.truncate) {
            done(http::api::TeiValidationError("input " + std::to_string(i) + " has " +
                                               std::to_string(e.ids.size()) +
                                               " tokens, more than the model's maximum of " +
                                               std::to_string(model.entry->text->max_length())));
            return;
          }
          e.ids.resize(model.entry->text->max_length());
        }
        e.attention_mask.assign(e.ids.size(), 1);
        e.type_ids.assign(e.ids.size(), 0);
        encodings.push_back(std::move(e));
        continue;
      }
      auto e = model.entry->text->Tokenize(in.text, eo);
      if (!e.ok()) {
        const Status& s = e.status();
        std::string msg = "input " + std::to_string(i) + ": " + s.message();
        // OutOfRange is a limit (input too long); anything else is the tokenizer's.
        done(s.code() == StatusCode::kOutOfRange
                 ? http::api::ApiErrorFromStatus(Status(s.code(), std::move(msg)))
                 : http::api::TeiTokenizerError(std::move(msg)));
        return;
      }
      if (e->ids.empty()) {
        done(http::api::TeiValidationError("input " + std::to_string(i) + " has no tokens"));
        return;
      }
      encodings.push_back(std::move(e).value());
    }
    const auto tokenization = steady_clock::now() - start;
    metrics->tokenization_seconds.WithLabels({model.entry->name})
        .Observe(std::chrono::duration<double>(tokenization).count());
    std::vector<int64_t> token_counts;
    for (const auto& e : encodings) token_counts.push_back(static_cast<int64_t>(e.ids.size()));

    TokenBatchItem item;
    item.encodings = std::move(encodings);
    item.deadline = c.deadline;
    item.cancel = c.cancel;
    auto done_shared = std::make_shared<front::EmbedBackend::Done>(std::move(done));
    item.done = [this, &model, tokenization, token_counts, done_shared](
                    Result<std::vector<std::vector<float>>> rows, BatchTimings t) {
      metrics->queue_seconds.WithLabels({model.entry->name})
          .Observe(std::chrono::duration<double>(t.queue).count());
      if (!rows.ok()) {
        CountDropped(rows.status());
        (*done_shared)(http::api::ApiErrorFromStatus(rows.status()));
        return;
      }
      front::EmbeddedRows out;
      out.rows = std::move(rows).value();
      out.tokens = token_counts;
      out.tokenization = tokenization;
      out.queue = t.queue;
      out.inference = t.inference;
      (*done_shared)(std::move(out));
    };
    Status s = model.batcher->Enqueue(std::move(item));
    if (!s.ok()) {
      metrics->rejected.WithLabels({"queue_full"}).Inc();
      (*done_shared)(http::api::ApiErrorFromStatus(s));
    }
  };
  if (!tokenize_pool->Submit(std::move(task))) {
    // Unreachable today: Shutdown() stops the server's I/O threads (which run this)
    // before the pool. Were it reached, the task (and the Responder it owns) is
    // destroyed unsent, which the server answers with 500 and counts as a bug.
    log::Error("tokenize pool refused work");
  }
}

std::optional<front::TextModelInfo> WorkerService::Impl::TextModelInfoFor(const std::string& name) {
  TextModel* model = TextModelFor(name);
  // As TEI does, a single-model worker answers for any model name.
  if (model == nullptr && text_models.size() == 1) model = TextModelFor("");
  if (model == nullptr) return std::nullopt;
  front::TextModelInfo info;
  info.name = model->entry->name;
  info.version = model->entry->version;
  info.dim = model->entry->text->dim();
  info.normalize_by_default = model->entry->text->normalize_by_default();
  return info;
}

TextModel* WorkerService::Impl::TextModelFor(const std::string& name) {
  if (name.empty()) {
    return text_models.empty() ? nullptr : &text_models.begin()->second;
  }
  auto it = text_models.find(name);
  return it == text_models.end() ? nullptr : &it->second;
}

// ---- TEI -------------------------------------------------------------------
// The request-size limit /embed and /tokenize share (TEI's 413).
std::optional<ApiError> WorkerService::Impl::CheckClientBatch(size_t inputs) const {
  if (static_cast<int64_t>(inputs) <= options.max_client_batch_size) return std::nullopt;
  return http::api::TeiValidationError("batch size " + std::to_string(inputs) +
                                           " > maximum allowed batch size " +
                                           std::to_string(options.max_client_batch_size),
                                       "inputs");
}

// /tokenize has /embed's limits: client batch size, the model's maximum tokens per input
// (unless worker.auto_truncate, under which /embed would truncate rather than refuse),
// the request's deadline and the client's cancel flag, checked before each input so that
// a queue of abandoned or expired requests costs the tokenize pool nothing.
void WorkerService::Impl::HandleTokenize(Request& req, Responder responder) {
  auto ticket = Admit(responder, false);
  if (!ticket) return;
  auto parsed = http::api::ParseTeiTokenizeRequest(req.body, limits);
  if (!parsed.ok()) return SendTeiError(responder, parsed.error());
  if (auto e = CheckClientBatch(parsed->inputs.size())) return SendTeiError(responder, *e);
  TextModel* model = TextModelFor("");
  if (model == nullptr) {
    return SendTeiError(responder, http::api::TeiUnhealthyError("no text model is loaded"));
  }
  auto shared = std::make_shared<Responder>(std::move(responder));
  auto request = std::make_shared<http::api::TeiTokenizeRequest>(std::move(parsed).value());
  const auto deadline = req.received + options.request_timeout;
  const size_t max_tokens = options.auto_truncate ? 0 : model->entry->text->max_length();
  const bool submitted =
      tokenize_pool->Submit([this, model, shared, request, ticket, deadline, max_tokens] {
        std::vector<std::vector<http::api::TeiToken>> out;
        runtime::EncodeOptions eo;
        eo.add_special_tokens = request->add_special_tokens;
        for (size_t i = 0; i < request->inputs.size(); ++i) {
          Status dropped =
              internal::CheckAlive(deadline, shared->cancel_flag(), steady_clock::now());
          if (!dropped.ok()) {
            CountDropped(dropped);
            return SendTeiError(*shared, http::api::ApiErrorFromStatus(dropped));
          }
          auto e = model->entry->text->tokenizer().Encode(request->inputs[i], eo);
          if (!e.ok()) {
            return SendTeiError(*shared, http::api::TeiTokenizerError("input " + std::to_string(i) +
                                                                      ": " + e.status().message()));
          }
          if (max_tokens > 0 && e->ids.size() > max_tokens) {
            return SendTeiError(
                *shared,
                http::api::ApiErrorFromStatus(OutOfRange(
                    "input " + std::to_string(i) + " has " + std::to_string(e->ids.size()) +
                    " tokens, more than the model's maximum of " + std::to_string(max_tokens))));
          }
          std::vector<http::api::TeiToken> tokens;
          for (size_t t = 0; t < e->ids.size(); ++t) {
            http::api::TeiToken tok;
            tok.id = static_cast<uint32_t>(e->ids[t]);
            tok.text = t < e->tokens.size() ? e->tokens[t] : "";
            const auto [b, en] =
                t < e->offsets.size() ? e->offsets[t] : std::pair<uint32_t, uint32_t>{};
            tok.special = (b == 0 && en == 0);
            if (!tok.special) {
              tok.start = b;
              tok.stop = en;
            }
            tokens.push_back(std::move(tok));
          }
          out.push_back(std::move(tokens));
        }
        Send(*shared, 200, http::api::SerializeTeiTokenizeResponse(out));
      });
  if (!submitted) log::Error("tokenize pool refused work");  // see EmbedMisses()
}

void WorkerService::Impl::HandleInfo(Request&, Responder responder) {
  http::api::TeiInfo info;
  TextModel* model = TextModelFor("");
  if (model != nullptr) {
    info.model_id = model->entry->name;
    info.pooling = runtime::PoolingName(model->entry->text->pooling());
    info.max_input_length = model->entry->text->max_length();
  } else if (auto* t = registry.DefaultTensor()) {
    info.model_id = t->name;
  }
  info.max_concurrent_requests = static_cast<uint64_t>(options.max_concurrent_requests);
  info.max_batch_tokens = static_cast<uint64_t>(options.text_batcher.max_batch_tokens);
  if (options.text_batcher.max_batch_requests > 0) {
    info.max_batch_requests = static_cast<uint64_t>(options.text_batcher.max_batch_requests);
  }
  info.max_client_batch_size = static_cast<uint64_t>(options.max_client_batch_size);
  info.auto_truncate = options.auto_truncate;
  info.tokenization_workers = static_cast<uint64_t>(options.tokenize_threads);
  info.version = kVersion;
  // TEI's /info describes one model; the worker may serve several, so the
  // repository's models (and any load failures) follow under "models".
  std::string body = http::api::SerializeTeiInfo(info);
  boost::json::array models;
  for (const auto& m : registry.models()) {
    boost::json::object o{{"name", m->name},
                          {"version", m->version},
                          {"kind", m->kind == ModelKind::kText ? "text" : "tensor"},
                          {"ready", m->ok()},
                          {"load_seconds", m->load_seconds}};
    if (!m->ok()) o["error"] = m->status.ToString();
    // Resident size: the weights held now (once, on the fused path), not the file's size.
    if (m->ok()) o["weight_bytes"] = static_cast<uint64_t>(WeightBytes(*m));
    if (m->text) {
      // How the runtime executes it: the fused packed-sequence encoder or the graph.
      o["engine"] = m->text->fused_encoder() ? "fused_encoder" : "graph";
      o["precision"] = std::string(runtime::PrecisionName(m->text->precision()));
      // What a gateway needs to serve the model's OpenAI and TEI requests itself.
      o["dim"] = m->text->dim();
      o["normalize"] = m->text->normalize_by_default();
    }
    // What a gateway needs to route /infer rows by the worker's own cache key.
    if (m->ok() && m->kind == ModelKind::kTensor) o["feature_size"] = m->feature_size;
    models.push_back(std::move(o));
  }
  if (!body.empty() && body.back() == '}') {
    body.pop_back();
    body += ",\"models\":" + boost::json::serialize(models) +
            ",\"node_id\":" + boost::json::serialize(boost::json::string(NodeId())) + "}";
  }
  Send(responder, 200, std::move(body));
}

}  // namespace infermesh::worker
