// libFuzzer target: arbitrary bytes → every request parser in src/http/api, plus the
// binary f32 decoder. Parsers must return a value or an ApiError with a 4xx status and a
// message, never crash, hang or allocate beyond the limits; successful parses are
// serialized back where a serializer exists and the output must be valid JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/json.hpp>

#include "http/api/f32_binary.h"
#include "http/api/kserve.h"
#include "http/api/openai.h"
#include "http/api/seed.h"
#include "http/api/tei.h"

namespace {

using namespace infermesh::http::api;  // NOLINT: test code

template <typename T>
void CheckError(const ApiResult<T>& r) {
  if (r.ok()) return;
  if (r.error().status < 400 || r.error().status > 499 || r.error().message.empty()) std::abort();
}

void CheckJson(std::string_view json) {
  boost::system::error_code ec;
  (void)boost::json::parse(json, ec);
  if (ec) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ParseLimits limits;
  limits.max_inputs = 64;
  limits.max_tensor_elements = 1 << 16;

  auto tei = ParseTeiEmbedRequest(body, limits);
  CheckError(tei);
  CheckError(ParseTeiTokenizeRequest(body, limits));
  auto tei_resp = ParseTeiEmbedResponse(body, limits);
  if (tei_resp.ok()) {
    auto again = SerializeTeiEmbedResponse(*tei_resp);
    if (!again.ok()) std::abort();  // parsed floats are finite
    CheckJson(*again);
  }
  auto openai = ParseOpenAiEmbeddingRequest(body, limits);
  CheckError(openai);
  auto seed = ParseSeedInferRequest(body, limits);
  CheckError(seed);
  if (seed.ok()) {
    auto out = SerializeSeedInferResponse({seed->request_id, seed->input_data, "n", false, 1});
    if (!out.ok()) std::abort();
    CheckJson(*out);
  }
  auto kserve = ParseKServeInferRequest(body, limits);
  CheckError(kserve);
  if (kserve.ok()) {
    // Inputs echoed as outputs must serialize (their values came from JSON: finite).
    auto out = SerializeKServeInferResponse({"m", "1", kserve->id, kserve->inputs});
    if (!out.ok()) std::abort();
    CheckJson(*out);
  }
  if (!tei.ok()) CheckJson(TeiErrorBody(tei.error()));
  if (!openai.ok()) CheckJson(OpenAiErrorBody(openai.error()));

  auto bin = DecodeF32Rows(body, 1 << 16);
  if (bin.ok() && bin->rows != 0) {  // zero rows: dims is not carried by the view
    auto enc = EncodeF32Rows(bin->view());
    if (!enc.ok() || *enc != body) std::abort();
  }
  return 0;
}
