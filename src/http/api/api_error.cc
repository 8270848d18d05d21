// ApiError constructors, Status mapping and the per-API error bodies.
#include "http/api/api_error.h"

#include "http/api/json_write.h"

namespace infermesh::http::api {
namespace {

ApiError Make(int status, std::string_view type, std::string message, std::string param = {}) {
  return ApiError{status, std::string(type), std::move(message), std::move(param)};
}

}  // namespace

ApiError TeiValidationError(std::string message, std::string param) {
  return Make(413, kTeiValidation, std::move(message), std::move(param));
}
ApiError TeiTokenizerError(std::string message) {
  return Make(422, kTeiTokenizer, std::move(message));
}
ApiError TeiBackendError(std::string message) { return Make(424, kTeiBackend, std::move(message)); }
ApiError TeiOverloadedError(std::string message) {
  return Make(429, kTeiOverloaded, std::move(message));
}
ApiError TeiUnhealthyError(std::string message) {
  return Make(503, kTeiUnhealthy, std::move(message));
}
ApiError TeiEmptyError(std::string message, std::string param) {
  return Make(400, kTeiEmpty, std::move(message), std::move(param));
}

ApiError ApiErrorFromStatus(const Status& status) {
  const std::string& m = status.message();
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return TeiValidationError(m);
    case StatusCode::kNotFound:
      return Make(404, kTeiValidation, m);
    case StatusCode::kAlreadyExists:
      return Make(409, kTeiValidation, m);
    case StatusCode::kResourceExhausted:
      return TeiOverloadedError(m);
    case StatusCode::kDeadlineExceeded:
      return Make(504, kTeiOverloaded, m);
    case StatusCode::kCancelled:
      return Make(499, kCancelledType, m);
    case StatusCode::kUnavailable:
      return TeiUnhealthyError(m);
    case StatusCode::kFailedPrecondition:
    case StatusCode::kUnimplemented:
      return TeiBackendError(m);
    case StatusCode::kInternal:
    case StatusCode::kDataLoss:
      return Make(500, kTeiBackend, m);
    case StatusCode::kOk:
      break;
  }
  // An OK status (or a code added to core without a row here) reaching an error path is
  // a server bug: answer 500 rather than pretend the request was wrong.
  return Make(500, kTeiBackend, m.empty() ? "internal error: no error status" : m);
}

ApiError ForApi(ApiError e, ApiFamily family) {
  if (family == ApiFamily::kTei) return e;
  if (e.status == 413 || e.status == 422) e.status = 400;
  if (e.status == 424) e.status = 500;
  return e;
}

std::string_view TeiErrorTypeForHttpStatus(int status) {
  if (status == 429) return kTeiOverloaded;
  if (status == 503) return kTeiUnhealthy;
  if (status >= 500 || status == 424) return kTeiBackend;
  return kTeiValidation;
}

std::string TeiErrorBody(const ApiError& e) {
  std::string out = "{\"error\":";
  AppendJsonString(out, e.message);
  out += ",\"error_type\":";
  AppendJsonString(out, e.type);
  out += '}';
  return out;
}

std::string OpenAiErrorBody(const ApiError& e) {
  std::string_view type = e.type;
  const bool tei_type = type == kTeiValidation || type == kTeiTokenizer || type == kTeiBackend ||
                        type == kTeiOverloaded || type == kTeiUnhealthy || type == kTeiEmpty ||
                        type == kCancelledType;
  if (tei_type || type.empty()) {
    if (e.status == 429) {
      type = "rate_limit_error";
    } else if (e.status >= 500 || e.status == 424) {
      type = "server_error";
    } else {
      type = kOpenAiInvalidRequest;
    }
  }
  std::string out = "{\"error\":{\"message\":";
  AppendJsonString(out, e.message);
  out += ",\"type\":";
  AppendJsonString(out, type);
  out += ",\"param\":";
  if (e.param.empty()) {
    out += "null";
  } else {
    AppendJsonString(out, e.param);
  }
  out += ",\"code\":";
  if (tei_type) {
    AppendJsonString(out, e.type);
  } else {
    out += "null";
  }
  out += "}}";
  return out;
}

std::string KServeErrorBody(const ApiError& e) {
  std::string out = "{\"error\":";
  AppendJsonString(out, e.message);
  out += '}';
  return out;
}

}  // namespace infermesh::http::api
