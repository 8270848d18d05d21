// ApiError and ApiResult<T>: what every public-API codec in src/http/api returns on bad
// input, carrying the HTTP status and the error type, so that a handler writes
//
//   auto req = ParseTeiEmbedRequest(body, limits);
//   if (!req.ok()) return Reply(req.error().status, TeiErrorBody(req.error()));
//
// Statuses by API (the decision lives here; docs should point at this header):
//   TEI     malformed JSON 400, wrong types / missing fields 422 (axum's Json extractor,
//           which TEI uses), empty `inputs` 400 "Empty", limits 413 "Validation".
//   OpenAI  every request error 400 "invalid_request_error", with `param` set.
//   KServe  every request error 400, body {"error": "..."}.
//   Seed    as KServe.
// Errors from the data path arrive as core Status; ApiErrorFromStatus is the one place
// that turns a Status into an HTTP status (every handler goes through it), and
// ForApi adapts that status to the OpenAI and KServe conventions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "core/status.h"

namespace infermesh::http::api {

// TEI's error types (text-embeddings-inference router/src/lib.rs ErrorType).
inline constexpr std::string_view kTeiValidation = "Validation";  // 413
inline constexpr std::string_view kTeiTokenizer = "Tokenizer";    // 422
inline constexpr std::string_view kTeiBackend = "Backend";        // 424
inline constexpr std::string_view kTeiOverloaded = "Overloaded";  // 429
inline constexpr std::string_view kTeiUnhealthy = "Unhealthy";    // 503
inline constexpr std::string_view kTeiEmpty = "Empty";            // 400
// Not one of TEI's: the client closed the connection before compute. Nobody reads the
// answer, but the access log and the status label of the request metrics do.
inline constexpr std::string_view kCancelledType = "Cancelled";  // 499
inline constexpr std::string_view kOpenAiInvalidRequest = "invalid_request_error";

struct ApiError {
  int status = 500;
  std::string type;     // TEI error_type, or OpenAI error type for OpenAI parsers
  std::string message;  // names the field, the expected type and the index
  std::string param;    // offending field ("input", "inputs[2]"), may be empty

  friend bool operator==(const ApiError&, const ApiError&) = default;
};

// Holds a value or an ApiError. Mirrors core Result<T>.
template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::in_place_index<0>, std::move(value)) {}         // NOLINT: implicit
  ApiResult(ApiError error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  const ApiError& error() const { return std::get<1>(v_); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, ApiError> v_;
};

// Bounds applied while parsing a request (the body size itself is bounded by the server).
struct ParseLimits {
  size_t max_depth = 32;                         // JSON nesting (arrays + objects)
  size_t max_inputs = 4096;                      // texts per request: TEI 413, OpenAI 400
  size_t max_tensor_elements = size_t{1} << 24;  // KServe / seed, per tensor
};

// Errors of the TEI kinds, with TEI's statuses.
ApiError TeiValidationError(std::string message, std::string param = {});  // 413
ApiError TeiTokenizerError(std::string message);                           // 422
ApiError TeiBackendError(std::string message);                             // 424
ApiError TeiOverloadedError(std::string message);                          // 429
ApiError TeiUnhealthyError(std::string message);                           // 503
ApiError TeiEmptyError(std::string message, std::string param = {});       // 400

// The one Status → HTTP mapping (TEI statuses and error types):
//   InvalidArgument, OutOfRange        413 Validation
//   NotFound                           404 Validation
//   AlreadyExists                      409 Validation
//   ResourceExhausted                  429 Overloaded
//   DeadlineExceeded                   504 Overloaded  (the deadline passed before compute
//                                                       or the answer; 504, not 408, because
//                                                       the client sent its request in time)
//   Cancelled                          499 Cancelled   (client went away; nginx's code)
//   Unavailable                        503 Unhealthy
//   FailedPrecondition, Unimplemented  424 Backend     (the model cannot run this)
//   Internal, DataLoss, Ok (a bug)     500 Backend     (never "Validation": the server
//                                                       failed, not the request)
// Tokenizer failures should use TeiTokenizerError explicitly (the Status cannot tell).
ApiError ApiErrorFromStatus(const Status& status);

// The API families whose conventions differ in status codes (bodies differ too; see below).
enum class ApiFamily { kTei, kOpenAi, kKServe };

// Adapts an error (from ApiErrorFromStatus, a Tei*Error constructor or a codec) to an
// API family. TEI keeps it as is. OpenAI and KServe answer every request error 400
// (TEI's 413 Validation and 422 Tokenizer) and a backend failure 500 (TEI's 424); all
// other statuses (404, 409, 429, 499, 5xx) are the same in every family.
ApiError ForApi(ApiError e, ApiFamily family);

// The TEI error_type for an error the HTTP server generates itself (bad framing, body too
// large, header timeout, a handler that never answered): 429 Overloaded, 503 Unhealthy,
// 424 Backend, other 5xx Backend, other 4xx Validation.
std::string_view TeiErrorTypeForHttpStatus(int status);

// Error bodies, one per API family.
// TEI:    {"error":"...","error_type":"Validation"}
std::string TeiErrorBody(const ApiError& e);
// OpenAI: {"error":{"message":"...","type":"invalid_request_error","param":"input"|null,
//          "code":"<ApiError::type>"|null}}. `type` is derived from the status for
//          errors whose type is a TEI one: 429 rate_limit_error, 5xx server_error,
//          else invalid_request_error.
std::string OpenAiErrorBody(const ApiError& e);
// KServe v2 and the seed API: {"error":"..."}
std::string KServeErrorBody(const ApiError& e);

}  // namespace infermesh::http::api

// IM_API_ASSIGN_OR_RETURN(auto x, ParseX(...)); declares x or returns its ApiError.
#define IM_API_ASSIGN_OR_RETURN(lhs, expr) \
  IM_API_ASSIGN_OR_RETURN_IMPL(IM_CONCAT(im_api_result_, __LINE__), lhs, expr)
#define IM_API_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.error();                 \
  lhs = std::move(tmp).value()
