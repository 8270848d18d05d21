#include "worker/worker_service.h"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "core/hash.h"
#include "core/log.h"
#include "core/lru_cache.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "http/api/api_error.h"
#include "http/api/kserve.h"
#include "http/api/openai.h"
#include "http/api/seed.h"
#include "http/api/tei.h"
#include "http/router.h"
#include "http/server.h"
#include "worker/model_registry.h"
#include "worker/worker_metrics.h"

namespace infermesh::worker {
namespace {

using http::Request;
using http::Responder;
using http::Response;
using http::api::ApiError;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

constexpr const char* kVersion = "0.1.0";

// A cached result: the pooled, un-normalized row (normalization and `dimensions`
// are applied per request) and the input's token count (for OpenAI's usage).
struct CachedRow {
  std::vector<float> values;
  int64_t tokens = 0;
};
using RowCache = ShardedLruCache<CachedRow>;

std::string Millis(nanoseconds d) { return std::to_string(duration_cast<milliseconds>(d).count()); }

// Shared, because batcher callbacks are std::function (copyable) and a Responder
// is move-only.
using SharedResponder = std::shared_ptr<Responder>;

void Send(Responder& r, int status, std::string body,
          std::vector<std::pair<std::string, std::string>> headers = {},
          std::string content_type = "application/json") {
  Response resp;
  resp.status = status;
  resp.body = std::move(body);
  resp.headers = std::move(headers);
  resp.content_type = std::move(content_type);
  r.Send(std::move(resp));
}

void SendTeiError(Responder& r, const ApiError& e) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 429) headers.emplace_back("retry-after", "1");
  Send(r, e.status, http::api::TeiErrorBody(e), std::move(headers));
}

void SendOpenAiError(Responder& r, const ApiError& e) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 429) headers.emplace_back("retry-after", "1");
  Send(r, e.status, http::api::OpenAiErrorBody(e), std::move(headers));
}

ApiError FromBatchStatus(const Status& s) {
  switch (s.code()) {
    case StatusCode::kResourceExhausted:
      return http::api::TeiOverloadedError("model queue is full: " + s.message());
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kUnavailable:
    case StatusCode::kCancelled:
      return http::api::TeiUnhealthyError(s.message());
    default:
      return http::api::TeiBackendError(s.message());
  }
}

void L2Normalize(std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double(x) * x;
  if (sum <= 0) return;
  const float inv = static_cast<float>(1.0 / std::sqrt(sum));
  for (float& x : v) x *= inv;
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

struct TextModel {
  const ModelEntry* entry = nullptr;
  std::unique_ptr<TokenBudgetBatcher> batcher;
};

struct TensorModel {
  const ModelEntry* entry = nullptr;
  std::unique_ptr<SizeDelayBatcher> batcher;
};

// What the embedding pipeline hands back: raw rows in input order.
struct EmbedOutcome {
  std::vector<std::shared_ptr<const CachedRow>> rows;
  int64_t prompt_tokens = 0;
  nanoseconds tokenization{0};
  BatchTimings batch;
  bool all_cached = true;
};

// One text input to embed: text, or pre-tokenized ids (OpenAI).
struct TextInput {
  std::string text;
  std::vector<uint32_t> ids;
  bool is_ids = false;
};

}  // namespace

struct WorkerService::Impl {
  WorkerOptions options;
  ModelRegistry registry;
  std::map<std::string, TextModel> text_models;
  std::map<std::string, TensorModel> tensor_models;
  std::unique_ptr<ThreadPool> tokenize_pool;
  std::unique_ptr<ThreadPool> kserve_pool;  // runs KServe requests on tensor models
  std::unique_ptr<RowCache> cache;
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<http::HttpServer> server;
  std::atomic<bool> ready{false};
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> total_requests{0};
  std::atomic<uint64_t> cache_hits{0};
  std::once_flag shutdown_once;
  http::api::ParseLimits limits;

  // ---- admission -------------------------------------------------------------
  // Returns a ticket, or null after answering 429 (or 503 when not ready).
  std::shared_ptr<AdmissionTicket> Admit(Responder& r, bool openai) {
    total_requests.fetch_add(1, std::memory_order_relaxed);
    if (!ready.load()) {
      auto e = http::api::TeiUnhealthyError("worker is not ready");
      openai ? SendOpenAiError(r, e) : SendTeiError(r, e);
      return nullptr;
    }
    int64_t n = in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
    auto ticket = std::make_shared<AdmissionTicket>(&in_flight);
    if (n > options.max_concurrent_requests) {
      metrics->rejected.WithLabels({"max_concurrent_requests"}).Inc();
      auto e = http::api::TeiOverloadedError(
          "too many concurrent requests (worker.max_concurrent_requests = " +
          std::to_string(options.max_concurrent_requests) + ")");
      openai ? SendOpenAiError(r, e) : SendTeiError(r, e);
      return nullptr;
    }
    return ticket;
  }

  // ---- cache keys ------------------------------------------------------------
  static std::string TextKey(const ModelEntry& m, const TextInput& in, bool truncate,
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
  void Embed(TextModel& model, std::vector<TextInput> inputs, bool truncate,
             runtime::TruncationSide side, steady_clock::time_point deadline, CancelFlag cancel,
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
              finish(http::api::TeiValidationError(
                  "input " + std::to_string(i) + " has " + std::to_string(e.ids.size()) +
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
          finish(s.code() == StatusCode::kOutOfRange ? http::api::TeiValidationError(msg)
                                                     : http::api::TeiTokenizerError(msg));
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
      auto finish_shared =
          std::make_shared<std::function<void(http::api::ApiResult<EmbedOutcome>)>>(
              std::move(finish));
      item.done = [this, &model, outcome, misses, materials, token_counts, finish_shared](
                      Result<std::vector<std::vector<float>>> rows, BatchTimings t) {
        outcome->batch = t;
        metrics->queue_seconds.WithLabels({model.entry->name})
            .Observe(std::chrono::duration<double>(t.queue).count());
        if (!rows.ok()) {
          (*finish_shared)(FromBatchStatus(rows.status()));
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
        (*finish_shared)(FromBatchStatus(s));
      }
    };
    if (!tokenize_pool->Submit(std::move(task))) {
      // Only during shutdown; `finish` was moved into the task, which is gone.
      log::Warn("tokenize pool refused work during shutdown");
    }
  }

  TextModel* TextModelFor(const std::string& name) {
    if (name.empty()) {
      return text_models.empty() ? nullptr : &text_models.begin()->second;
    }
    auto it = text_models.find(name);
    return it == text_models.end() ? nullptr : &it->second;
  }

  // ---- TEI -------------------------------------------------------------------
  void HandleEmbed(Request& req, Responder responder) {
    auto ticket = Admit(responder, false);
    if (!ticket) return;
    auto parsed = http::api::ParseTeiEmbedRequest(req.body, limits);
    if (!parsed.ok()) return SendTeiError(responder, parsed.error());
    if (static_cast<int64_t>(parsed->inputs.size()) > options.max_client_batch_size) {
      return SendTeiError(responder, http::api::TeiValidationError(
                                         "batch size " + std::to_string(parsed->inputs.size()) +
                                             " > maximum allowed batch size " +
                                             std::to_string(options.max_client_batch_size),
                                         "inputs"));
    }
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
    auto shared = std::make_shared<Responder>(std::move(responder));
    auto cancel = shared->cancel_flag();
    Embed(*model, std::move(inputs), truncate, side, start + options.request_timeout, cancel,
          [this, shared, ticket, normalize, start](http::api::ApiResult<EmbedOutcome> r) {
            if (!r.ok()) return SendTeiError(*shared, r.error());
            std::vector<std::vector<float>> rows;
            rows.reserve(r->rows.size());
            for (const auto& row : r->rows) {
              rows.push_back(row->values);
              if (normalize) L2Normalize(rows.back());
            }
            auto body = http::api::SerializeTeiEmbedResponse(rows);
            if (!body.ok()) return SendTeiError(*shared, body.error());
            const auto total = steady_clock::now() - start;
            Send(*shared, 200, std::move(body).value(), TimingHeaders(*r, total));
          });
  }

  static std::vector<std::pair<std::string, std::string>> TimingHeaders(const EmbedOutcome& o,
                                                                        nanoseconds total) {
    return {{"x-compute-time", Millis(o.tokenization + o.batch.inference)},
            {"x-tokenization-time", Millis(o.tokenization)},
            {"x-queue-time", Millis(o.batch.queue)},
            {"x-inference-time", Millis(o.batch.inference)},
            {"x-total-time", Millis(total)}};
  }

  void HandleTokenize(Request& req, Responder responder) {
    auto ticket = Admit(responder, false);
    if (!ticket) return;
    auto parsed = http::api::ParseTeiTokenizeRequest(req.body, limits);
    if (!parsed.ok()) return SendTeiError(responder, parsed.error());
    TextModel* model = TextModelFor("");
    if (model == nullptr) {
      return SendTeiError(responder, http::api::TeiUnhealthyError("no text model is loaded"));
    }
    auto shared = std::make_shared<Responder>(std::move(responder));
    auto request = std::make_shared<http::api::TeiTokenizeRequest>(std::move(parsed).value());
    tokenize_pool->Submit([this, model, shared, request, ticket] {
      std::vector<std::vector<http::api::TeiToken>> out;
      runtime::EncodeOptions eo;
      eo.add_special_tokens = request->add_special_tokens;
      for (size_t i = 0; i < request->inputs.size(); ++i) {
        auto e = model->entry->text->tokenizer().Encode(request->inputs[i], eo);
        if (!e.ok()) {
          return SendTeiError(*shared, http::api::TeiTokenizerError("input " + std::to_string(i) +
                                                                    ": " + e.status().message()));
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
  }

  void HandleInfo(Request&, Responder responder) {
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
      models.push_back(std::move(o));
    }
    if (!body.empty() && body.back() == '}') {
      body.pop_back();
      body += ",\"models\":" + boost::json::serialize(models) +
              ",\"node_id\":" + boost::json::serialize(boost::json::string(options.node_id)) + "}";
    }
    Send(responder, 200, std::move(body));
  }

  // ---- OpenAI ----------------------------------------------------------------
  void HandleOpenAi(Request& req, Responder responder) {
    auto ticket = Admit(responder, true);
    if (!ticket) return;
    auto parsed = http::api::ParseOpenAiEmbeddingRequest(req.body, limits);
    if (!parsed.ok()) return SendOpenAiError(responder, parsed.error());
    // The named model if this worker has it; otherwise, as TEI does, the one text
    // model a single-model worker serves.
    TextModel* model = TextModelFor(parsed->model);
    if (model == nullptr && text_models.size() == 1) model = TextModelFor("");
    if (model == nullptr) {
      ApiError e{404, "invalid_request_error",
                 "model '" + parsed->model + "' is not served by this worker", "model"};
      return SendOpenAiError(responder, e);
    }
    if (static_cast<int64_t>(parsed->size()) > options.max_client_batch_size) {
      ApiError e{400, "invalid_request_error",
                 "batch size " + std::to_string(parsed->size()) + " > maximum allowed " +
                     std::to_string(options.max_client_batch_size),
                 "input"};
      return SendOpenAiError(responder, e);
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
              if (e.status == 413) e.status = 400;  // OpenAI reports validation as 400
              e.type = e.status == 429 ? "rate_limit_error" : "invalid_request_error";
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

  // ---- seed /infer and /health ---------------------------------------------
  void HandleInfer(Request& req, Responder responder) {
    auto ticket = Admit(responder, false);
    if (!ticket) return;
    auto parsed = http::api::ParseSeedInferRequest(req.body, limits);
    if (!parsed.ok()) return SendTeiError(responder, parsed.error());
    const ModelEntry* entry = registry.DefaultTensor();
    if (entry == nullptr) {
      return SendTeiError(responder,
                          http::api::TeiUnhealthyError("no tensor model is loaded on this worker"));
    }
    TensorModel& model = tensor_models.at(entry->name);
    if (static_cast<int64_t>(parsed->input_data.size()) != entry->feature_size) {
      return SendTeiError(
          responder,
          http::api::TeiValidationError(
              "input_data has " + std::to_string(parsed->input_data.size()) + " values; model '" +
                  entry->name + "' expects " + std::to_string(entry->feature_size),
              "input_data"));
    }
    KeyBuilder k;
    k.AddString("tensor").AddString(entry->name).AddString(entry->version);
    k.AddString(std::string_view(reinterpret_cast<const char*>(parsed->input_data.data()),
                                 parsed->input_data.size() * sizeof(float)));
    std::string material = std::move(k).TakeMaterial();
    if (cache) {
      if (auto hit = cache->Lookup(material)) {
        cache_hits.fetch_add(1, std::memory_order_relaxed);
        http::api::SeedInferResponse out;
        out.request_id = parsed->request_id;
        out.output_data = hit->values;
        out.node_id = options.node_id;
        out.cached = true;
        auto body = http::api::SerializeSeedInferResponse(out);
        if (!body.ok()) return SendTeiError(responder, body.error());
        return Send(responder, 200, std::move(body).value());
      }
    }
    auto shared = std::make_shared<Responder>(std::move(responder));
    TensorBatchItem item;
    item.input = std::move(parsed->input_data);
    item.deadline = req.received + options.request_timeout;
    item.cancel = shared->cancel_flag();
    auto request_id = std::make_shared<std::string>(std::move(parsed->request_id));
    auto key = std::make_shared<std::string>(std::move(material));
    item.done = [this, shared, ticket, request_id, key](Result<std::vector<float>> r,
                                                        BatchTimings t) {
      if (!r.ok()) return SendTeiError(*shared, FromBatchStatus(r.status()));
      auto row = std::make_shared<CachedRow>();
      row->values = std::move(r).value();
      if (cache) cache->Insert(*key, row);
      http::api::SeedInferResponse out;
      out.request_id = *request_id;
      out.output_data = row->values;
      out.node_id = options.node_id;
      out.inference_time_us = duration_cast<microseconds>(t.inference).count();
      auto body = http::api::SerializeSeedInferResponse(out);
      if (!body.ok()) return SendTeiError(*shared, body.error());
      Send(*shared, 200, std::move(body).value());
    };
    Status s = model.batcher->Enqueue(std::move(item));
    if (!s.ok()) {
      metrics->rejected.WithLabels({"queue_full"}).Inc();
      SendTeiError(*shared, FromBatchStatus(s));
    }
  }

  void HandleHealth(Request&, Responder responder) {
    http::api::SeedHealth h;
    h.healthy = ready.load();
    h.node_id = options.node_id;
    h.total_requests = total_requests.load();
    h.cache_hits = cache_hits.load();
    if (cache) {
      auto s = cache->Stats();
      h.cache_size = s.entries;
      const double lookups = double(s.hits + s.misses);
      h.cache_hit_rate = lookups > 0 ? double(s.hits) / lookups : 0.0;
    }
    uint64_t rows = 0;
    for (auto& [name, m] : tensor_models) {
      auto s = m.batcher->Stats();
      h.batch_processor.total_batches += static_cast<uint64_t>(s.total_batches);
      h.batch_processor.full_batches += static_cast<uint64_t>(s.full_batches);
      h.batch_processor.timeout_batches += static_cast<uint64_t>(s.timeout_batches);
      rows += static_cast<uint64_t>(s.batch_rows);
    }
    for (auto& [name, m] : text_models) {
      auto s = m.batcher->Stats();
      h.batch_processor.total_batches += static_cast<uint64_t>(s.batches);
      rows += static_cast<uint64_t>(s.batch_rows);
    }
    if (h.batch_processor.total_batches > 0) {
      h.batch_processor.avg_batch_size = double(rows) / double(h.batch_processor.total_batches);
    }
    Send(responder, h.healthy ? 200 : 503, http::api::SerializeSeedHealth(h));
  }

  void HandleThreadPools(Request&, Responder responder) {
    boost::json::array pools;
    auto add = [&](const std::string& name, int workers, int64_t active, int64_t queued,
                   int64_t completed) {
      pools.push_back(boost::json::object{{"name", name},
                                          {"workers", workers},
                                          {"active_tasks", active},
                                          {"queue", queued},
                                          {"completed", completed}});
    };
    add("io", options.io_threads, in_flight.load(), 0, static_cast<int64_t>(total_requests.load()));
    for (auto* pool : {tokenize_pool.get(), kserve_pool.get()}) {
      auto s = pool->Stats();
      add(s.name, s.workers, s.active, s.queued, s.completed);
    }
    for (auto& [name, m] : text_models) {
      auto s = m.batcher->Stats();
      add("inference:" + name, 1, 0, s.queue_requests, s.batches);
    }
    for (auto& [name, m] : tensor_models) {
      auto s = m.batcher->Stats();
      add("inference:" + name, 1, 0, s.queue_requests, s.total_batches);
    }
    add("intra_op", options.intra_op_threads > 0 ? options.intra_op_threads : HardwareThreads(), 0,
        0, 0);
    Send(responder, 200, boost::json::serialize(boost::json::object{{"pools", std::move(pools)}}));
  }

  // ---- KServe v2 -------------------------------------------------------------
  void HandleKServeModel(Request& req, Responder responder, bool ready_only) {
    const std::string& name = req.path_params["model"];
    const ModelEntry* m = registry.Find(name);
    if (m == nullptr) {
      return Send(responder, 404,
                  http::api::KServeErrorBody({404, "", "model '" + name + "' not found", ""}));
    }
    if (ready_only) {
      return Send(responder, m->ok() ? 200 : 503,
                  http::api::SerializeKServeModelReady(name, m->ok()));
    }
    http::api::KServeModelMetadata md;
    md.name = m->name;
    md.versions = {m->version};
    if (const runtime::Session* s = m->runtime_session()) {
      auto describe = [](const runtime::ValueInfo& v) {
        http::api::KServeTensorMetadata t;
        t.name = v.name;
        t.datatype = KServeTypeName(v.dtype);
        t.shape = v.shape;
        return t;
      };
      for (const auto& in : s->inputs()) md.inputs.push_back(describe(in));
      for (const auto& out : s->outputs()) md.outputs.push_back(describe(out));
    }
    Send(responder, 200, http::api::SerializeKServeModelMetadata(md));
  }

  static std::string KServeTypeName(runtime::DataType t) {
    switch (t) {
      case runtime::DataType::kFloat32:
        return "FP32";
      case runtime::DataType::kFloat16:
        return "FP16";
      case runtime::DataType::kInt64:
        return "INT64";
      case runtime::DataType::kInt32:
        return "INT32";
      case runtime::DataType::kBool:
        return "BOOL";
      case runtime::DataType::kInt8:
        return "INT8";
      case runtime::DataType::kUint8:
        return "UINT8";
      case runtime::DataType::kFloat64:
        return "FP64";
      default:
        return "UNSUPPORTED";
    }
  }

  static Result<runtime::DataType> RuntimeType(const std::string& kserve) {
    if (kserve == "FP32") return runtime::DataType::kFloat32;
    if (kserve == "FP16") return runtime::DataType::kFloat16;
    if (kserve == "INT64") return runtime::DataType::kInt64;
    if (kserve == "INT32") return runtime::DataType::kInt32;
    if (kserve == "BOOL") return runtime::DataType::kBool;
    return InvalidArgument("datatype " + kserve + " is not supported");
  }

  void HandleKServeInfer(Request& req, Responder responder) {
    auto ticket = Admit(responder, false);
    if (!ticket) return;
    const std::string name = req.path_params["model"];
    auto error = [&](int status, std::string msg) {
      Send(responder, status, http::api::KServeErrorBody({status, "", std::move(msg), ""}));
    };
    const ModelEntry* m = registry.Find(name);
    if (m == nullptr) return error(404, "model '" + name + "' not found");
    if (!m->ok()) return error(503, "model '" + name + "' failed to load: " + m->status.message());
    if (m->kind != ModelKind::kTensor) {
      return error(
          400, "model '" + name + "' is a text model; use POST /embed or /v1/embeddings for text");
    }
    auto parsed = http::api::ParseKServeInferRequest(req.body, limits);
    if (!parsed.ok()) return error(parsed.error().status, parsed.error().message);
    std::vector<std::pair<std::string, runtime::Tensor>> feeds;
    for (auto& in : parsed->inputs) {
      auto dtype = RuntimeType(in.datatype);
      if (!dtype.ok()) return error(400, "input '" + in.name + "': " + dtype.status().message());
      runtime::Tensor t = runtime::Tensor::Empty(*dtype, in.shape);
      if (t.nbytes() != in.bytes.size()) {
        return error(400, "input '" + in.name + "': data does not match shape");
      }
      if (!in.bytes.empty()) std::memcpy(t.raw_data(), in.bytes.data(), in.bytes.size());
      feeds.emplace_back(in.name, std::move(t));
    }
    auto shared = std::make_shared<Responder>(std::move(responder));
    auto request = std::make_shared<http::api::KServeInferRequest>(std::move(parsed).value());
    auto shared_feeds = std::make_shared<decltype(feeds)>(std::move(feeds));
    const auto deadline = req.received + options.request_timeout;
    kserve_pool->Submit([this, m, shared, request, shared_feeds, ticket, deadline] {
      auto fail = [&](int status, std::string msg) {
        Send(*shared, status, http::api::KServeErrorBody({status, "", std::move(msg), ""}));
      };
      if (shared->cancelled()) return fail(499, "client went away");
      if (steady_clock::now() >= deadline) return fail(503, "deadline passed while queued");
      auto out = m->session->Run(*shared_feeds);
      if (!out.ok()) {
        const bool client = out.status().code() == StatusCode::kInvalidArgument;
        return fail(client ? 400 : 500, out.status().message());
      }
      http::api::KServeInferResponse resp;
      resp.model_name = m->name;
      resp.model_version = m->version;
      resp.id = request->id;
      const auto& infos = m->session->outputs();
      for (size_t i = 0; i < out->size(); ++i) {
        const std::string& oname = infos[i].name;
        if (!request->outputs.empty() && std::find(request->outputs.begin(), request->outputs.end(),
                                                   oname) == request->outputs.end()) {
          continue;
        }
        const runtime::Tensor& t = (*out)[i];
        http::api::TensorData td;
        td.name = oname;
        td.datatype = KServeTypeName(t.dtype());
        td.shape = t.shape();
        const auto* p = static_cast<const uint8_t*>(t.raw_data());
        td.bytes.assign(p, p + t.nbytes());
        resp.outputs.push_back(std::move(td));
      }
      auto body = http::api::SerializeKServeInferResponse(resp);
      if (!body.ok()) return fail(body.error().status, body.error().message);
      Send(*shared, 200, std::move(body).value());
    });
  }

  void BuildRouter(http::Router& r) {
    auto bind = [this](void (Impl::*fn)(Request&, Responder)) {
      return [this, fn](Request& req, Responder resp) { (this->*fn)(req, std::move(resp)); };
    };
    r.Add("POST", "/embed", bind(&Impl::HandleEmbed));
    r.Add("POST", "/tokenize", bind(&Impl::HandleTokenize));
    r.Add("GET", "/info", bind(&Impl::HandleInfo));
    r.Add("GET", "/health", bind(&Impl::HandleHealth));
    r.Add("GET", "/stats", bind(&Impl::HandleHealth));
    r.Add("GET", "/health/thread-pools", bind(&Impl::HandleThreadPools));
    r.Add("GET", "/metrics", [](Request&, Responder resp) {
      Send(resp, 200, metrics::Registry::Global().RenderText(), {},
           std::string(metrics::kPrometheusContentType));
    });
    r.Add("POST", "/v1/embeddings", bind(&Impl::HandleOpenAi));
    r.Add("POST", "/infer", bind(&Impl::HandleInfer));
    r.Add("GET", "/v2", [](Request&, Responder resp) {
      http::api::KServeServerMetadata md;
      md.version = kVersion;
      Send(resp, 200, http::api::SerializeKServeServerMetadata(md));
    });
    r.Add("GET", "/v2/health/live",
          [](Request&, Responder resp) { Send(resp, 200, http::api::SerializeKServeLive(true)); });
    r.Add("GET", "/v2/health/ready", [this](Request&, Responder resp) {
      const bool ok = ready.load();
      Send(resp, ok ? 200 : 503, http::api::SerializeKServeReady(ok));
    });
    r.Add("GET", "/v2/models/{model}",
          [this](Request& req, Responder resp) { HandleKServeModel(req, std::move(resp), false); });
    r.Add("GET", "/v2/models/{model}/ready",
          [this](Request& req, Responder resp) { HandleKServeModel(req, std::move(resp), true); });
    r.Add("POST", "/v2/models/{model}/infer", bind(&Impl::HandleKServeInfer));
  }
};

Result<WorkerOptions> WorkerOptionsFromConfig(const Config& c) {
  WorkerOptions o;
  IM_ASSIGN_OR_RETURN(o.host, c.GetString("worker.host"));
  IM_ASSIGN_OR_RETURN(int64_t port, c.GetInt("worker.port"));
  if (port < 0 || port > 65535) return InvalidArgument("worker.port must be 0..65535");
  o.port = static_cast<uint16_t>(port);
  IM_ASSIGN_OR_RETURN(o.models_dir, c.GetString("worker.models"));
  IM_ASSIGN_OR_RETURN(o.node_id, c.GetString("worker.node_id"));
  auto positive = [&](const char* key, int64_t min, int64_t max) -> Result<int64_t> {
    IM_ASSIGN_OR_RETURN(int64_t v, c.GetInt(key));
    if (v < min || v > max) {
      return InvalidArgument(std::string(key) + " must be in " + std::to_string(min) + ".." +
                             std::to_string(max) + ", got " + std::to_string(v));
    }
    return v;
  };
  IM_ASSIGN_OR_RETURN(int64_t io, positive("worker.io_threads", 1, 256));
  o.io_threads = static_cast<int>(io);
  IM_ASSIGN_OR_RETURN(int64_t tok, positive("worker.tokenize_threads", 1, 256));
  o.tokenize_threads = static_cast<int>(tok);
  IM_ASSIGN_OR_RETURN(int64_t intra, positive("runtime.intra_op_threads", 0, 1024));
  o.intra_op_threads = static_cast<int>(intra);
  IM_ASSIGN_OR_RETURN(o.max_model_bytes, c.GetBytes("runtime.max_model_bytes"));
  IM_ASSIGN_OR_RETURN(o.max_concurrent_requests,
                      positive("worker.max_concurrent_requests", 1, 1 << 20));
  IM_ASSIGN_OR_RETURN(int64_t body, c.GetBytes("worker.max_body_bytes"));
  if (body < 1024 || body > (int64_t{1} << 30)) {
    return InvalidArgument("worker.max_body_bytes must be between 1KiB and 1GiB");
  }
  o.max_body_bytes = static_cast<size_t>(body);
  IM_ASSIGN_OR_RETURN(o.max_client_batch_size, positive("worker.max_client_batch_size", 1, 4096));
  IM_ASSIGN_OR_RETURN(o.text_batcher.max_batch_tokens,
                      positive("worker.max_batch_tokens", 1, int64_t{1} << 24));
  IM_ASSIGN_OR_RETURN(o.text_batcher.max_batch_requests,
                      positive("worker.max_batch_requests", 0, 1 << 20));
  IM_ASSIGN_OR_RETURN(int64_t queue, positive("worker.max_queue_requests", 1, 1 << 24));
  o.text_batcher.max_queue_requests = queue;
  o.tensor_batcher.max_queue_requests = queue;
  IM_ASSIGN_OR_RETURN(int64_t delay, c.GetMillis("worker.max_queue_delay"));
  o.text_batcher.max_queue_delay = milliseconds(delay);
  IM_ASSIGN_OR_RETURN(o.auto_truncate, c.GetBool("worker.auto_truncate"));
  IM_ASSIGN_OR_RETURN(int64_t timeout, c.GetMillis("worker.request_timeout"));
  if (timeout <= 0) return InvalidArgument("worker.request_timeout must be positive");
  o.request_timeout = milliseconds(timeout);
  IM_ASSIGN_OR_RETURN(int64_t grace, c.GetMillis("worker.shutdown_grace"));
  o.shutdown_grace = milliseconds(grace);
  IM_ASSIGN_OR_RETURN(o.tensor_batcher.max_batch_size,
                      positive("worker.tensor_max_batch_size", 1, 1 << 16));
  IM_ASSIGN_OR_RETURN(int64_t tdelay, c.GetMillis("worker.tensor_max_queue_delay"));
  o.tensor_batcher.max_queue_delay = milliseconds(tdelay);
  IM_ASSIGN_OR_RETURN(o.cache_bytes, c.GetBytes("cache.max_bytes"));
  return o;
}

WorkerService::WorkerService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WorkerService::~WorkerService() { Shutdown(); }

uint16_t WorkerService::port() const { return impl_->server ? impl_->server->port() : 0; }
bool WorkerService::ready() const { return impl_->ready.load(); }

Result<std::unique_ptr<WorkerService>> WorkerService::Start(const WorkerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (impl->options.models_dir.empty()) {
    return InvalidArgument("no model repository: pass --models DIR (or set worker.models)");
  }
  impl->limits.max_inputs = static_cast<size_t>(std::max<int64_t>(
      options.max_client_batch_size * 4, 64));  // the handler reports the exact limit
  impl->metrics = std::make_unique<WorkerMetrics>(metrics::Registry::Global());
  impl->tokenize_pool = std::make_unique<ThreadPool>("tokenize", options.tokenize_threads);
  impl->kserve_pool = std::make_unique<ThreadPool>("kserve", 1);
  if (options.cache_bytes > 0) {
    LruCacheOptions co;
    co.capacity_bytes = static_cast<size_t>(options.cache_bytes);
    impl->cache = std::make_unique<RowCache>(
        co, [](const CachedRow& r) { return r.values.size() * sizeof(float) + sizeof(r); });
  }

  runtime::SessionOptions so;
  so.intra_op_threads = options.intra_op_threads;
  so.max_model_bytes = options.max_model_bytes;
  IM_ASSIGN_OR_RETURN(impl->registry, ModelRegistry::LoadRepository(options.models_dir, so));
  for (const auto& m : impl->registry.models()) {
    impl->metrics->model_ready.WithLabels({m->name}).Set(m->ok() ? 1 : 0);
    impl->metrics->model_load_seconds.WithLabels({m->name}).Set(m->load_seconds);
    if (!m->ok()) continue;
    const std::string name = m->name;
    WorkerMetrics* wm = impl->metrics.get();
    if (m->kind == ModelKind::kText) {
      TokenBatcherConfig cfg = options.text_batcher;
      cfg.thread_name = "infer-" + name;
      cfg.on_batch = [wm, name](const BatchRecord& b) { wm->ObserveBatch(name, b); };
      const runtime::EmbeddingModel* model = m->text.get();
      TextModel tm;
      tm.entry = m.get();
      tm.batcher = std::make_unique<TokenBudgetBatcher>(
          cfg, [model](const std::vector<runtime::Encoding>& batch) {
            return model->EmbedEncodings(batch, /*normalize=*/false);
          });
      impl->text_models.emplace(name, std::move(tm));
    } else if (m->feature_size > 0) {
      TensorBatcherConfig cfg = options.tensor_batcher;
      cfg.thread_name = "infer-" + name;
      cfg.feature_size = m->feature_size;
      cfg.on_batch = [wm, name](const BatchRecord& b) { wm->ObserveBatch(name, b); };
      const runtime::Session* session = m->session.get();
      const std::string input_name = session->inputs()[0].name;
      TensorModel tm;
      tm.entry = m.get();
      tm.batcher = std::make_unique<SizeDelayBatcher>(
          cfg, [session, input_name](const runtime::Tensor& batch) -> Result<runtime::Tensor> {
            IM_ASSIGN_OR_RETURN(auto out, session->Run({{input_name, batch}}));
            return out.at(0);
          });
      impl->tensor_models.emplace(name, std::move(tm));
    }
  }
  impl->metrics->BindGauges(
      impl->cache.get() ? [c = impl->cache.get()] { return c->Stats(); }
                        : std::function<LruCacheStats()>(),
      [p = impl->tokenize_pool.get()] { return p->Stats(); },
      [i = impl.get()] { return double(i->in_flight.load()); });
  for (auto& [name, tm] : impl->text_models) {
    auto* b = tm.batcher.get();
    impl->metrics->BindQueue(name, [b] { return double(b->Stats().queue_requests); });
  }
  for (auto& [name, tm] : impl->tensor_models) {
    auto* b = tm.batcher.get();
    impl->metrics->BindQueue(name, [b] { return double(b->Stats().queue_requests); });
  }

  auto router = std::make_shared<http::Router>();
  impl->BuildRouter(*router);
  http::ServerOptions so_http;
  so_http.host = options.host;
  so_http.port = options.port;
  so_http.io_threads = options.io_threads;
  so_http.max_body_bytes = options.max_body_bytes;
  so_http.error_body = [](int status, std::string_view message) {
    ApiError e;
    e.status = status;
    e.type = status == 413 ? "Validation" : status == 503 ? "Unhealthy" : "Validation";
    e.message = std::string(message);
    return http::api::TeiErrorBody(e);
  };
  WorkerMetrics* wm = impl->metrics.get();
  so_http.on_complete = [wm](const Request& req, int status, nanoseconds d) {
    wm->ObserveRequest(req.route.empty() ? "unmatched" : req.route, status, d);
  };
  IM_ASSIGN_OR_RETURN(impl->server, http::HttpServer::Start(so_http, router));
  if (impl->options.node_id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    impl->options.node_id = std::string(host) + ":" + std::to_string(impl->server->port());
  }
  impl->ready.store(true);
  impl->metrics->ready.Get().Set(1);
  log::Info("worker ready",
            {{"port", int64_t{impl->server->port()}},
             {"models", int64_t(impl->registry.loaded_count())},
             {"failed", int64_t(impl->registry.models().size() - impl->registry.loaded_count())}});
  return std::unique_ptr<WorkerService>(new WorkerService(std::move(impl)));
}

void WorkerService::Shutdown() {
  if (!impl_) return;
  std::call_once(impl_->shutdown_once, [this] {
    Impl& i = *impl_;
    i.ready.store(false);
    i.metrics->ready.Get().Set(0);
    log::Info("worker draining", {{"in_flight", i.in_flight.load()}});
    // The server stops accepting and waits for responses in flight, which the
    // pools and batchers below are still running to produce.
    if (i.server) i.server->Shutdown(i.options.shutdown_grace);
    i.tokenize_pool->Shutdown();
    i.kserve_pool->Shutdown();
    for (auto& [name, m] : i.text_models) m.batcher->Shutdown();
    for (auto& [name, m] : i.tensor_models) m.batcher->Shutdown();
    i.metrics->Unbind();
    log::Info("worker stopped");
  });
}

}  // namespace infermesh::worker
