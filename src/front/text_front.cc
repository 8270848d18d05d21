#include "front/text_front.h"

#include <charconv>
#include <cmath>

#include "core/hash.h"
#include "core/log.h"
#include "http/api/f32_binary.h"
#include "http/api/openai.h"

namespace infermesh::front {

using http::Request;
using http::Responder;
using http::Response;
using http::api::ApiError;
using std::chrono::steady_clock;

// ---- response helpers ------------------------------------------------------------
void Send(Responder& r, int status, std::string body,
          std::vector<std::pair<std::string, std::string>> headers, std::string content_type) {
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

// OpenAI's body shape; the status comes from the one mapping (http/api/api_error.h),
// adapted to OpenAI's convention there.
void SendOpenAiError(Responder& r, const ApiError& error) {
  const ApiError e = http::api::ForApi(error, http::api::ApiFamily::kOpenAi);
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 429) headers.emplace_back("retry-after", "1");
  Send(r, e.status, http::api::OpenAiErrorBody(e), std::move(headers));
}

void SendKServeError(Responder& r, const ApiError& error) {
  const ApiError e = http::api::ForApi(error, http::api::ApiFamily::kKServe);
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 429) headers.emplace_back("retry-after", "1");
  Send(r, e.status, http::api::KServeErrorBody(e), std::move(headers));
}

void L2Normalize(std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double(x) * x;
  if (sum <= 0) return;
  const float inv = static_cast<float>(1.0 / std::sqrt(sum));
  for (float& x : v) x *= inv;
}

namespace {
std::string Millis(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}
}  // namespace

std::vector<std::pair<std::string, std::string>> TimingHeaders(const EmbedOutcome& o,
                                                               std::chrono::nanoseconds total) {
  return {{"x-compute-time", Millis(o.tokenization + o.inference)},
          {"x-tokenization-time", Millis(o.tokenization)},
          {"x-queue-time", Millis(o.queue)},
          {"x-inference-time", Millis(o.inference)},
          {"x-total-time", Millis(total)}};
}

// ---- the pipeline --------------------------------------------------------------
TextFront::TextFront(TextFrontOptions options, RowCache* cache, EmbedBackend* backend, Hooks hooks)
    : options_(std::move(options)), cache_(cache), backend_(backend), hooks_(std::move(hooks)) {}

std::string TextFront::TextKey(const TextModelInfo& m, const TextInput& in, bool truncate,
                               http::api::TruncationDirection direction) {
  KeyBuilder k;
  k.AddString("text").AddString(m.name).AddString(m.version);
  if (in.is_ids) {
    k.AddString("ids").AddString(std::string_view(reinterpret_cast<const char*>(in.ids.data()),
                                                  in.ids.size() * sizeof(uint32_t)));
  } else {
    k.AddString("str").AddString(in.text);
  }
  k.AddBool(truncate).AddInt(direction == http::api::TruncationDirection::kLeft ? 1 : 0);
  return std::move(k).TakeMaterial();
}

void TextFront::Embed(const TextModelInfo& model, std::vector<TextInput> inputs, bool truncate,
                      http::api::TruncationDirection direction, steady_clock::time_point deadline,
                      CancelFlag cancel,
                      std::function<void(http::api::ApiResult<EmbedOutcome>)> finish) {
  auto outcome = std::make_shared<EmbedOutcome>();
  outcome->rows.resize(inputs.size());
  EmbedCall call;
  auto materials = std::make_shared<std::vector<std::string>>();
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string material = TextKey(model, inputs[i], truncate, direction);
    std::shared_ptr<const CachedRow> hit = cache_ ? cache_->Lookup(material) : nullptr;
    if (hit) {
      outcome->rows[i] = std::move(hit);
      outcome->prompt_tokens += outcome->rows[i]->tokens;
      cache_hits_.fetch_add(1, std::memory_order_relaxed);
    } else {
      call.positions.push_back(i);
      call.inputs.push_back(std::move(inputs[i]));
      materials->push_back(std::move(material));
    }
  }
  if (call.inputs.empty()) {
    finish(std::move(*outcome));
    return;
  }
  outcome->all_cached = false;
  call.model = model;
  call.truncate = truncate;
  call.direction = direction;
  call.deadline = deadline;
  call.cancel = std::move(cancel);
  auto positions = std::make_shared<std::vector<size_t>>(call.positions);
  const size_t expected = call.inputs.size();
  backend_->Embed(
      std::move(call), [this, outcome, positions, materials, expected,
                        finish = std::move(finish)](http::api::ApiResult<EmbeddedRows> r) {
        if (!r.ok()) return finish(r.error());
        if (r->rows.size() != expected || r->tokens.size() != expected) {
          return finish(http::api::TeiBackendError("the backend answered " +
                                                   std::to_string(r->rows.size()) + " rows for " +
                                                   std::to_string(expected) + " inputs"));
        }
        outcome->tokenization = r->tokenization;
        outcome->queue = r->queue;
        outcome->inference = r->inference;
        for (size_t k = 0; k < expected; ++k) {
          auto row = std::make_shared<CachedRow>();
          row->values = std::move(r->rows[k]);
          row->tokens = r->tokens[k];
          outcome->prompt_tokens += row->tokens;
          const std::string& material = (*materials)[k];
          if (cache_) cache_->Insert(material, row);
          outcome->rows[(*positions)[k]] = std::move(row);
        }
        finish(std::move(*outcome));
      });
}

std::optional<ApiError> TextFront::CheckClientBatch(size_t inputs) const {
  if (static_cast<int64_t>(inputs) <= options_.max_client_batch_size) return std::nullopt;
  return http::api::TeiValidationError("batch size " + std::to_string(inputs) +
                                           " > maximum allowed batch size " +
                                           std::to_string(options_.max_client_batch_size),
                                       "inputs");
}

// The request's deadline: request_timeout from its arrival, or sooner when the caller
// (a gateway, a client) sends x-request-timeout in milliseconds.
steady_clock::time_point RequestDeadline(const Request& req,
                                         std::chrono::milliseconds request_timeout) {
  auto deadline = req.received + request_timeout;
  const std::string_view h = req.Header(kRequestTimeoutHeader);
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(h.data(), h.data() + h.size(), ms);
  // Only a shorter deadline counts (and a huge value cannot overflow the clock).
  if (!h.empty() && ec == std::errc() && end == h.data() + h.size() && ms >= 0 &&
      ms < request_timeout.count()) {
    deadline = std::min(deadline, req.received + std::chrono::milliseconds(ms));
  }
  return deadline;
}

steady_clock::time_point TextFront::Deadline(const Request& req) const {
  return RequestDeadline(req, options_.request_timeout);
}

// The binary hop's answer: float32 rows and each row's token count.
void TextFront::SendBinaryRows(Responder& r, const EmbedOutcome& outcome,
                               const std::vector<std::vector<float>>& rows,
                               std::vector<std::pair<std::string, std::string>> headers,
                               void (*send_error)(Responder&, const ApiError&)) {
  auto body = http::api::EncodeF32Rows(rows);
  if (!body.ok()) return send_error(r, http::api::TeiBackendError(body.status().message()));
  std::string counts;
  for (const auto& row : outcome.rows) {
    if (!counts.empty()) counts += ',';
    counts += std::to_string(row->tokens);
  }
  headers.emplace_back(kTokenCountsHeader, std::move(counts));
  Send(r, 200, std::move(body).value(), std::move(headers),
       std::string(http::api::kF32ContentType));
}

// ---- TEI -------------------------------------------------------------------------
// What a handler keeps of its request once admission may defer it: the Request itself
// is only valid while the handler runs.
struct TextFront::Pending {
  std::string body;
  steady_clock::time_point received, deadline;
  bool binary = false;
};

std::shared_ptr<TextFront::Pending> TextFront::Keep(Request& req) const {
  auto p = std::make_shared<Pending>();
  p->body = std::move(req.body);
  p->received = req.received;
  p->deadline = Deadline(req);
  // The gateway's hop asks for binary float32 rows, so floats are never formatted
  // as text twice (http/api/f32_binary.h), and for the token counts.
  p->binary = req.Header("accept").find(http::api::kF32ContentType) != std::string_view::npos;
  return p;
}

void TextFront::HandleEmbed(Request& req, Responder responder) {
  auto shared = std::make_shared<Responder>(std::move(responder));
  auto pending = Keep(req);
  hooks_.admit(shared, http::api::ApiFamily::kTei,
               [this, shared, pending](std::shared_ptr<void> ticket) {
                 RunEmbed(shared, *pending, std::move(ticket));
               });
}

void TextFront::RunEmbed(const SharedResponder& shared, Pending& req,
                         std::shared_ptr<void> ticket) {
  auto parsed = http::api::ParseTeiEmbedRequest(req.body, options_.limits);
  if (!parsed.ok()) return SendTeiError(*shared, parsed.error());
  if (auto e = CheckClientBatch(parsed->inputs.size())) return SendTeiError(*shared, *e);
  std::optional<TextModelInfo> model = hooks_.model("");
  if (!model) {
    return SendTeiError(*shared, http::api::TeiUnhealthyError("no text model is served here"));
  }
  std::vector<TextInput> inputs(parsed->inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i].text = std::move(parsed->inputs[i]);
  const bool truncate = parsed->truncate.value_or(options_.auto_truncate);
  const bool normalize = parsed->normalize;
  const auto start = req.received;
  const bool binary = req.binary;
  auto cancel = shared->cancel_flag();
  Embed(*model, std::move(inputs), truncate, parsed->truncation_direction, req.deadline, cancel,
        [shared, ticket, normalize, start, binary](http::api::ApiResult<EmbedOutcome> r) {
          if (!r.ok()) return SendTeiError(*shared, r.error());
          std::vector<std::vector<float>> rows;
          rows.reserve(r->rows.size());
          for (const auto& row : r->rows) {
            rows.push_back(row->values);
            if (normalize) L2Normalize(rows.back());
          }
          auto headers = TimingHeaders(*r, steady_clock::now() - start);
          if (binary) return SendBinaryRows(*shared, *r, rows, std::move(headers), SendTeiError);
          auto body = http::api::SerializeTeiEmbedResponse(rows);
          if (!body.ok()) return SendTeiError(*shared, body.error());
          Send(*shared, 200, std::move(body).value(), headers);
        });
}

// ---- OpenAI ----------------------------------------------------------------------
void TextFront::HandleOpenAi(Request& req, Responder responder) {
  auto shared = std::make_shared<Responder>(std::move(responder));
  auto pending = Keep(req);
  hooks_.admit(shared, http::api::ApiFamily::kOpenAi,
               [this, shared, pending](std::shared_ptr<void> ticket) {
                 RunOpenAi(shared, *pending, std::move(ticket));
               });
}

void TextFront::RunOpenAi(const SharedResponder& shared, Pending& req,
                          std::shared_ptr<void> ticket) {
  auto parsed = http::api::ParseOpenAiEmbeddingRequest(req.body, options_.limits);
  if (!parsed.ok()) return SendOpenAiError(*shared, parsed.error());
  // The named model if served here; otherwise, as TEI does, the default one (a
  // single-model server answers for any name).
  std::optional<TextModelInfo> model = hooks_.model(parsed->model);
  if (!model) {
    ApiError e =
        http::api::ApiErrorFromStatus(NotFound("model '" + parsed->model + "' is not served here"));
    e.param = "model";
    return SendOpenAiError(*shared, e);
  }
  if (auto e = CheckClientBatch(parsed->size())) {
    e->param = "input";  // OpenAI's name for the field
    return SendOpenAiError(*shared, *e);
  }
  const int64_t dim = model->dim;
  if (parsed->dimensions && (*parsed->dimensions < 1 || *parsed->dimensions > dim)) {
    ApiError e{400, "invalid_request_error",
               "dimensions must be between 1 and " + std::to_string(dim) + ", got " +
                   std::to_string(*parsed->dimensions),
               "dimensions"};
    return SendOpenAiError(*shared, e);
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
  auto request = std::make_shared<http::api::OpenAiEmbeddingRequest>(std::move(parsed).value());
  const bool normalize = model->normalize_by_default;
  const std::string model_name = model->name;
  const bool binary = req.binary;
  Embed(*model, std::move(inputs), options_.auto_truncate, http::api::TruncationDirection::kRight,
        req.deadline, shared->cancel_flag(),
        [shared, ticket, request, normalize, model_name,
         binary](http::api::ApiResult<EmbedOutcome> r) {
          if (!r.ok()) return SendOpenAiError(*shared, r.error());
          if (binary) {  // the gateway's hop: rows as pooled, before normalization
            std::vector<std::vector<float>> raw;
            raw.reserve(r->rows.size());
            for (const auto& row : r->rows) raw.push_back(row->values);
            return SendBinaryRows(*shared, *r, raw, {}, SendOpenAiError);
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

}  // namespace infermesh::front
