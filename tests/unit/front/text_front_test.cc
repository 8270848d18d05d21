// The serving front over a backend written for the test (the interface the worker's
// batchers and the gateway's router implement), behind a real HttpServer and HttpClient.
#include "front/text_front.h"

#include <atomic>
#include <mutex>

#include <gtest/gtest.h>

#include "http/api/f32_binary.h"
#include "http/client.h"
#include "http/server.h"

namespace infermesh::front {
namespace {

using namespace std::chrono_literals;

// Rows are [length of the text, first byte, position in the call]; tokens = length.
class RecordingBackend : public EmbedBackend {
 public:
  void Embed(EmbedCall call, Done done) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      calls.push_back(call);
    }
    if (fail) return done(http::api::ApiErrorFromStatus(Unavailable("no worker is ready")));
    EmbeddedRows out;
    for (size_t k = 0; k < call.inputs.size(); ++k) {
      const std::string& t = call.inputs[k].text;
      out.rows.push_back({float(t.size()), t.empty() ? 0.f : float(t[0]), float(k)});
      out.tokens.push_back(static_cast<int64_t>(t.size()));
    }
    if (short_answer) {
      out.rows.pop_back();
      out.tokens.pop_back();
    }
    done(std::move(out));
  }
  std::mutex mu;
  std::vector<EmbedCall> calls;
  std::atomic<bool> fail{false};
  std::atomic<bool> short_answer{false};
};

struct Harness {
  RecordingBackend backend;
  std::unique_ptr<RowCache> cache = std::make_unique<RowCache>(LruCacheOptions{}, CachedRowBytes);
  std::unique_ptr<TextFront> front;
  std::unique_ptr<http::HttpServer> server;
  std::unique_ptr<http::HttpClient> client = http::HttpClient::Create({});
  std::atomic<int> admitted{0};

  Harness() {
    TextFrontOptions o;
    o.max_client_batch_size = 8;
    TextFront::Hooks hooks;
    hooks.admit = [this](const std::shared_ptr<http::Responder>&, http::api::ApiFamily,
                         TextFront::Hooks::Proceed proceed) {
      ++admitted;
      proceed(std::make_shared<int>(0));
    };
    hooks.model = [](const std::string& name) -> std::optional<TextModelInfo> {
      if (!name.empty() && name != "m") return std::nullopt;
      return TextModelInfo{"m", "1", 3, false};
    };
    front = std::make_unique<TextFront>(o, cache.get(), &backend, hooks);
    auto router = std::make_shared<http::Router>();
    router->Add("POST", "/embed", [this](http::Request& q, http::Responder r) {
      front->HandleEmbed(q, std::move(r));
    });
    router->Add("POST", "/v1/embeddings", [this](http::Request& q, http::Responder r) {
      front->HandleOpenAi(q, std::move(r));
    });
    server = std::move(http::HttpServer::Start({}, router)).value();
  }

  Result<http::ClientResponse> Post(const std::string& path, const std::string& body,
                                    const std::string& accept = "") {
    http::ClientRequest r;
    r.method = "POST";
    r.target = path;
    r.body = body;
    r.content_type = "application/json";
    if (!accept.empty()) r.headers.emplace_back("accept", accept);
    return client->SendSync({"127.0.0.1", server->port()}, r);
  }
};

TEST(TextFront, MissesGoToTheBackendInOrderAndHitsNeverAgain) {
  Harness h;
  auto r = h.Post("/embed", R"({"inputs":["bb","a","ccc"],"normalize":false})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, "[[2,98,0],[1,97,1],[3,99,2]]");
  // "a" and "ccc" are cached now; only the new inputs reach the backend, with their
  // positions in the client's batch.
  r = h.Post("/embed", R"({"inputs":["ccc","dddd","a","ee"],"normalize":false})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  ASSERT_EQ(h.backend.calls.size(), 2u);
  const EmbedCall& second = h.backend.calls[1];
  ASSERT_EQ(second.inputs.size(), 2u);
  EXPECT_EQ(second.inputs[0].text, "dddd");
  EXPECT_EQ(second.inputs[1].text, "ee");
  EXPECT_EQ(second.positions, (std::vector<size_t>{1, 3}));
  EXPECT_EQ(second.model.name, "m");
  EXPECT_EQ(r->body, "[[3,99,2],[4,100,0],[1,97,1],[2,101,1]]");
  EXPECT_EQ(h.front->cache_hits(), 2u);
  // All cached: no backend call at all.
  ASSERT_TRUE(h.Post("/embed", R"({"inputs":["a","ccc"],"normalize":false})").ok());
  EXPECT_EQ(h.backend.calls.size(), 2u);
  EXPECT_EQ(h.admitted.load(), 3);
}

TEST(TextFront, BinaryHopCarriesRowsAndTokenCounts) {
  Harness h;
  auto r = h.Post("/embed", R"({"inputs":["xyz","q"],"normalize":false})",
                  std::string(http::api::kF32ContentType));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->Header("content-type"), http::api::kF32ContentType);
  EXPECT_EQ(r->Header(kTokenCountsHeader), "3,1");
  auto rows = http::api::DecodeF32Rows(r->body, 1000);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->rows, 2u);
  EXPECT_EQ(rows->values, (std::vector<float>{3, 120, 0, 1, 113, 1}));
}

TEST(TextFront, NormalizesPerRequestFromOneCachedRow) {
  Harness h;
  auto raw = h.Post("/embed", R"({"inputs":["ab"],"normalize":false})");
  auto norm = h.Post("/embed", R"({"inputs":["ab"]})");  // TEI normalizes by default
  ASSERT_TRUE(raw.ok() && norm.ok());
  EXPECT_EQ(raw->body, "[[2,97,0]]");
  EXPECT_NE(norm->body, raw->body);
  EXPECT_EQ(h.backend.calls.size(), 1u);
}

TEST(TextFront, OpenAiUsageCountsCachedAndComputedTokens) {
  Harness h;
  ASSERT_TRUE(h.Post("/embed", R"({"inputs":["abcd"]})").ok());
  auto r = h.Post("/v1/embeddings", R"({"input":["abcd","xy"],"model":"m"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("\"prompt_tokens\":6"), std::string::npos) << r->body;
  auto missing = h.Post("/v1/embeddings", R"({"input":"a","model":"other"})");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404) << missing->body;
  EXPECT_NE(missing->body.find("other"), std::string::npos);
}

TEST(TextFront, BackendErrorsAndLimitsKeepTheirStatus) {
  Harness h;
  h.backend.fail = true;
  auto r = h.Post("/embed", R"({"inputs":["a"]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_NE(r->body.find("no worker is ready"), std::string::npos);
  h.backend.fail = false;
  h.backend.short_answer = true;
  r = h.Post("/embed", R"({"inputs":["b","c"]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 424) << r->body;
  EXPECT_NE(r->body.find("1 rows for 2 inputs"), std::string::npos) << r->body;
  r = h.Post("/embed", R"({"inputs":["1","2","3","4","5","6","7","8","9"]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 413) << r->body;
  r = h.Post("/embed", R"({"inputs":)");
  ASSERT_TRUE(r.ok());
  EXPECT_GE(r->status, 400);
  EXPECT_LT(r->status, 500);
}

}  // namespace
}  // namespace infermesh::front
