// WorkerService handlers for text models: TEI /embed, /tokenize, /info and
// OpenAI /v1/embeddings, over the embedding pipeline (cache → tokenize → batch).
#include "worker/internal/worker_impl.h"

namespace infermesh::worker {

using namespace internal;  // NOLINT: this file implements the internals

// ---- cache keys ------------------------------------------------------------
std::string WorkerService::Impl::TextKey(const ModelEntry& m, const TextInput& in, bool truncate,
                                         runtime::TruncationSide side) {
  KeyBuilder k;
  k.AddString("text").AddString(m.name).AddString(m.version);
  if (in.is_ids) {
    k.AddString("ids").AddString(std::string_view(reinterpret_cast<const char*>(in.ids.data()),
                                                  in.ids.size() * sizeof(uint32_t)));
  } else {
    k.AddString("str").AddString(in.text);
  }
  k.AddBool(truncate).AddInt(side == runtime::TruncationSide::kLeft ? 1 : 0);
  return std::move(k).TakeMaterial();
}

// ---- the embedding pipeline ----------------------------------------------
// Looks inputs up in the cache, tokenizes misses on the tokenize pool, queues
// them and calls `finish` exactly once (on some thread) with the rows or an error.
void WorkerService::Impl::Embed(TextModel& model, std::vector<TextInput> inputs, bool truncate,
                                runtime::TruncationSide side, steady_clock::time_point deadline,
                                CancelFlag cancel,
                                std::function<void(http::api::ApiResult<EmbedOutcome>)> finish) {
  auto outcome = std::make_shared<EmbedOutcome>();
  outcome->rows.resize(inputs.size());
  auto misses = std::make_shared<std::vector<size_t>>();
  auto materials = std::make_shared<std::vector<std::string>>();
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string material = TextKey(*model.entry, inputs[i], truncate, side);
    std::shared_ptr<const CachedRow> hit = cache ? cache->Lookup(material) : nullptr;
    if (hit) {
      outcome->rows[i] = std::move(hit);
      outcome->prompt_tokens += outcome->rows[i]->tokens;
      cache_hits.fetch_add(1, std::memory_order_relaxed);
    } else {
      misses->push_back(i);
      materials->push_back(std::move(material));
    }
  }
  if (misses->empty()) {
    finish(std::move(*outcome));
    return;
  }
  outcome->all_cached = false;
  auto shared_inputs = std::make_shared<std::vector<TextInput>>(std::move(inputs));
  auto task = [this, &model, outcome, misses, materials, shared_inputs, truncate, side, deadline,
               cancel, finish = std::move(finish)]() mutable {
    const auto start = steady_clock::now();
    runtime::EmbedOptions eo;
    eo.truncate = truncate;
    eo.side = side;
    std::vector<runtime::Encoding> encodings;
    encodings.reserve(misses->size());
    for (size_t i : *misses) {
      const TextInput& in = (*shared_inputs)[i];
      if (in.is_ids) {
        runtime::Encoding e;
        for (uint32_t id : in.ids) {
          if (id >= model.entry->text->tokenizer().vocab_size()) {
            finish(http::api::TeiValidationError(
                "token id " + std::to_string(id) + " in input " + std::to_string(i) +
                    " is outside the vocabulary of " +
                    std::to_string(model.entry->text->tokenizer().vocab_size()),
                "input"));
            return;
          }
          e.ids.push_back(id);
        }
        if (e.ids.size() > model.entry->text->max_length()) {
          if (!truncate) {
            finish(http::api::TeiValidationError("input " + std::to_string(i) + " has " +
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
        finish(s.code() == StatusCode::kOutOfRange
                   ? http::api::ApiErrorFromStatus(Status(s.code(), std::move(msg)))
                   : http::api::TeiTokenizerError(std::move(msg)));
        return;
      }
      if (e->ids.empty()) {
        finish(http::api::TeiValidationError("input " + std::to_string(i) + " has no tokens"));
        return;
      }
      encodings.push_back(std::move(e).value());
    }
    outcome->tokenization = steady_clock::now() - start;
    metrics->tokenization_seconds.WithLabels({model.entry->name})
        .Observe(std::chrono::duration<double>(outcome->tokenization).count());
    std::vector<int64_t> token_counts;
    for (const auto& e : encodings) token_counts.push_back(static_cast<int64_t>(e.ids.size()));

    TokenBatchItem item;
    item.encodings = std::move(encodings);
    item.deadline = deadline;
    item.cancel = cancel;
    auto finish_shared = std::make_shared<std::function<void(http::api::ApiResult<EmbedOutcome>)>>(
        std::move(finish));
    item.done = [this, &model, outcome, misses, materials, token_counts, finish_shared](
                    Result<std::vector<std::vector<float>>> rows, BatchTimings t) {
      outcome->batch = t;
      metrics->queue_seconds.WithLabels({model.entry->name})
          .Observe(std::chrono::duration<double>(t.queue).count());
      if (!rows.ok()) {
        CountDropped(rows.status());
        (*finish_shared)(http::api::ApiErrorFromStatus(rows.status()));
        return;
      }
      for (size_t k = 0; k < misses->size(); ++k) {
        auto row = std::make_shared<CachedRow>();
        row->values = std::move((*rows)[k]);
        row->tokens = token_counts[k];
        outcome->prompt_tokens += row->tokens;
        if (cache) cache->Insert((*materials)[k], row);
        outcome->rows[(*misses)[k]] = std::move(row);
      }
      (*finish_shared)(std::move(*outcome));
    };
    Status s = model.batcher->Enqueue(std::move(item));
    if (!s.ok()) {
      metrics->rejected.WithLabels({"queue_full"}).Inc();
      (*finish_shared)(http::api::ApiErrorFromStatus(s));
    }
  };
  if (!tokenize_pool->Submit(std::move(task))) {
    // Unreachable today: Shutdown() stops the server's I/O threads (which run this)
    // before the pool. Were it reached, the task (and the Responder it owns) is
    // destroyed unsent, which the server answers with 500 and counts as a bug.
    log::Error("tokenize pool refused work");
  }
}

TextModel* WorkerService::Impl::TextModelFor(const std::string& name) {
  if (name.empty()) {
    return text_models.empty() ? nullptr : &text_models.begin()->second;
  }
  auto it = text_models.find(name);
  return it == text_models.end() ? nullptr : &it->second;
}

// ---- TEI -------------------------------------------------------------------
void WorkerService::Impl::HandleEmbed(Request& req, Responder responder) {
  auto ticket = Admit(responder, false);
  if (!ticket) return;
  auto parsed = http::api::ParseTeiEmbedRequest(req.body, limits);
  if (!parsed.ok()) return SendTeiError(responder, parsed.error());
  if (auto e = CheckClientBatch(parsed->inputs.size())) return SendTeiError(responder, *e);
  TextModel* model = TextModelFor("");
  if (model == nullptr) {
    return SendTeiError(responder,
                        http::api::TeiUnhealthyError("no text model is loaded on this worker"));
  }
  std::vector<TextInput> inputs(parsed->inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i].text = std::move(parsed->inputs[i]);
  const bool truncate = parsed->truncate.value_or(options.auto_truncate);
  const auto side = parsed->truncation_direction == http::api::TruncationDirection::kLeft
                        ? runtime::TruncationSide::kLeft
                        : runtime::TruncationSide::kRight;
  const bool normalize = parsed->normalize;
  const auto start = req.received;
  // The gateway's hop asks for binary float32 rows, so floats are never formatted
  // as text twice (http/api/f32_binary.h).
  const bool binary =
      req.Header("accept").find(http::api::kF32ContentType) != std::string_view::npos;
  auto shared = std::make_shared<Responder>(std::move(responder));
  auto cancel = shared->cancel_flag();
  Embed(*model, std::move(inputs), truncate, side, start + options.request_timeout, cancel,
        [shared, ticket, normalize, start, binary](http::api::ApiResult<EmbedOutcome> r) {
          if (!r.ok()) return SendTeiError(*shared, r.error());
          std::vector<std::vector<float>> rows;
          rows.reserve(r->rows.size());
          for (const auto& row : r->rows) {
            rows.push_back(row->values);
            if (normalize) L2Normalize(rows.back());
          }
          const auto headers = TimingHeaders(*r, steady_clock::now() - start);
          if (binary) {
            auto body = http::api::EncodeF32Rows(rows);
            if (!body.ok()) {
              return SendTeiError(*shared, http::api::TeiBackendError(body.status().message()));
            }
            return Send(*shared, 200, std::move(body).value(), headers,
                        std::string(http::api::kF32ContentType));
          }
          auto body = http::api::SerializeTeiEmbedResponse(rows);
          if (!body.ok()) return SendTeiError(*shared, body.error());
          Send(*shared, 200, std::move(body).value(), headers);
        });
}

std::vector<std::pair<std::string, std::string>> WorkerService::Impl::TimingHeaders(
    const EmbedOutcome& o, nanoseconds total) {
  return {{"x-compute-time", Millis(o.tokenization + o.batch.inference)},
          {"x-tokenization-time", Millis(o.tokenization)},
          {"x-queue-time", Millis(o.batch.queue)},
          {"x-inference-time", Millis(o.batch.inference)},
          {"x-total-time", Millis(total)}};
}

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
  if (!submitted) log::Error("tokenize pool refused work");  // see Embed()
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
    }
    models.push_back(std::move(o));
  }
  if (!body.empty() && body.back() == '}') {
    body.pop_back();
    body += ",\"models\":" + boost::json::serialize(models) +
            ",\"node_id\":" + boost::json::serialize(boost::json::string(NodeId())) + "}";
  }
  Send(responder, 200, std::move(body));
}

// ---- OpenAI ----------------------------------------------------------------
void WorkerService::Impl::HandleOpenAi(Request& req, Responder responder) {
  auto ticket = Admit(responder, true);
  if (!ticket) return;
  auto parsed = http::api::ParseOpenAiEmbeddingRequest(req.body, limits);
  if (!parsed.ok()) return SendOpenAiError(responder, parsed.error());
  // The named model if this worker has it; otherwise, as TEI does, the one text
  // model a single-model worker serves.
  TextModel* model = TextModelFor(parsed->model);
  if (model == nullptr && text_models.size() == 1) model = TextModelFor("");
  if (model == nullptr) {
    ApiError e = http::api::ApiErrorFromStatus(
        NotFound("model '" + parsed->model + "' is not served by this worker"));
    e.param = "model";
    return SendOpenAiError(responder, e);
  }
  if (auto e = CheckClientBatch(parsed->size())) {
    e->param = "input";  // OpenAI's name for the field
    return SendOpenAiError(responder, *e);
  }
  const int64_t dim = model->entry->text->dim();
  if (parsed->dimensions && (*parsed->dimensions < 1 || *parsed->dimensions > dim)) {
    ApiError e{400, "invalid_request_error",
               "dimensions must be between 1 and " + std::to_string(dim) + ", got " +
                   std::to_string(*parsed->dimensions),
               "dimensions"};
    return SendOpenAiError(responder, e);
  }
  std::vector<TextInput> inputs(parsed->size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (parsed->is_tokens()) {
      inputs[i].is_ids = true;
      inputs[i].ids = std::move(parsed->token_ids[i]);
    } else {
      inputs[i].text = std::move(parsed->texts[i]);
    }
  }
  auto shared = std::make_shared<Responder>(std::move(responder));
  auto request = std::make_shared<http::api::OpenAiEmbeddingRequest>(std::move(parsed).value());
  const bool normalize = model->entry->text->normalize_by_default();
  const std::string model_name = model->entry->name;
  Embed(*model, std::move(inputs), options.auto_truncate, runtime::TruncationSide::kRight,
        req.received + options.request_timeout, shared->cancel_flag(),
        [shared, ticket, request, normalize, model_name](http::api::ApiResult<EmbedOutcome> r) {
          if (!r.ok()) {
            ApiError e = r.error();
            return SendOpenAiError(*shared, e);
          }
          std::vector<std::vector<float>> rows;
          rows.reserve(r->rows.size());
          for (const auto& row : r->rows) {
            rows.push_back(row->values);
            if (request->dimensions) {
              rows.back().resize(static_cast<size_t>(*request->dimensions));
              L2Normalize(rows.back());
            } else if (normalize) {
              L2Normalize(rows.back());
            }
          }
          http::api::OpenAiEmbeddingResponse resp;
          resp.embeddings = rows;
          resp.model = request->model.empty() ? model_name : request->model;
          resp.encoding_format = request->encoding_format;
          resp.prompt_tokens = static_cast<uint64_t>(r->prompt_tokens);
          auto body = http::api::SerializeOpenAiEmbeddingResponse(resp);
          if (!body.ok()) return SendOpenAiError(*shared, body.error());
          Send(*shared, 200, std::move(body).value());
        });
}

}  // namespace infermesh::worker
