// The job API's JSON: the submission envelope and its ids, the embed payload with its
// data-folder checks (traversal and symlinks out of the data folders are 403), the job and
// queue answers, and the Status → HTTP mapping of the jobs API.
#include "jobs/api.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace infermesh::jobs {
namespace {

namespace fs = std::filesystem;

// --- ParseSubmission and CheckJobId ------------------------------------------------------

TEST(JobsApiSubmission, ParsesAValidSubmission) {
  auto s = ParseSubmission(R"({"id":"corpus-2026.12_a","class":"embed","payload":{"input":"x"}})");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->id, "corpus-2026.12_a");
  EXPECT_EQ(s->job_class, "embed");
  EXPECT_EQ(s->payload, R"({"input":"x"})");
  for (const char* cls : {"slurm_script", "slurm_embed"}) {
    auto other =
        ParseSubmission(std::string(R"({"id":"j","class":")") + cls + R"(","payload":{}})");
    ASSERT_TRUE(other.ok()) << cls << ": " << other.error().message;
    EXPECT_EQ(other->job_class, cls);
    EXPECT_EQ(other->payload, "{}");
  }
}

TEST(JobsApiSubmission, TheCanonicalPayloadIgnoresWhitespace) {
  auto compact =
      ParseSubmission(R"({"id":"j","class":"embed","payload":{"input":"/d/a.jsonl","n":[1,2]}})");
  auto spaced = ParseSubmission(
      "{ \"id\" : \"j\",\n  \"class\": \"embed\",\n  \"payload\" : {\n    \"input\" :   "
      "\"/d/a.jsonl\" ,\t\"n\" : [ 1 , 2 ]\n  }\n}\n");
  ASSERT_TRUE(compact.ok()) << compact.error().message;
  ASSERT_TRUE(spaced.ok()) << spaced.error().message;
  EXPECT_EQ(compact->payload, spaced->payload);
  EXPECT_EQ(compact->payload, R"({"input":"/d/a.jsonl","n":[1,2]})");
}

TEST(JobsApiSubmission, MalformedJsonIs400) {
  for (const char* bad : {"", "{", "not json", R"({"id":"j",})", "[1,2]", "\"str\"", "null"}) {
    auto s = ParseSubmission(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().status, 400) << bad;
  }
}

TEST(JobsApiSubmission, AMissingFieldIs400AndNamesIt) {
  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : {Case{R"({"class":"embed","payload":{}})", "id"},
                        Case{R"({"id":"j","payload":{}})", "class"},
                        Case{R"({"id":"j","class":"embed"})", "payload"},
                        Case{R"({"id":"j","class":"embed","payload":null})", "payload"}}) {
    auto s = ParseSubmission(c.body);
    ASSERT_FALSE(s.ok()) << c.body;
    EXPECT_EQ(s.error().status, 400) << c.body;
    EXPECT_EQ(s.error().param, c.field) << c.body;
    EXPECT_NE(s.error().message.find(c.field), std::string::npos) << s.error().message;
  }
}

TEST(JobsApiSubmission, AnUnknownClassIs400) {
  auto s = ParseSubmission(R"({"id":"j","class":"mine_bitcoin","payload":{}})");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().status, 400);
  EXPECT_EQ(s.error().param, "class");
  EXPECT_NE(s.error().message.find("mine_bitcoin"), std::string::npos) << s.error().message;
  EXPECT_FALSE(KnownJobClass("Embed"));
  EXPECT_FALSE(KnownJobClass(""));
  EXPECT_TRUE(KnownJobClass("embed"));
  EXPECT_TRUE(KnownJobClass("slurm_script"));
  EXPECT_TRUE(KnownJobClass("slurm_embed"));
}

TEST(JobsApiSubmission, APayloadThatIsNotAnObjectIs400) {
  for (const char* payload : {"[]", "\"x\"", "1", "true"}) {
    auto s =
        ParseSubmission(std::string(R"({"id":"j","class":"embed","payload":)") + payload + "}");
    ASSERT_FALSE(s.ok()) << payload;
    EXPECT_EQ(s.error().status, 400) << payload;
    EXPECT_EQ(s.error().param, "payload") << payload;
  }
}

TEST(JobsApiSubmission, WrongTypesOfIdAndClassAre400) {
  for (const char* bad : {R"({"id":7,"class":"embed","payload":{}})",
                          R"({"id":"j","class":["embed"],"payload":{}})"}) {
    auto s = ParseSubmission(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().status, 400) << bad;
  }
}

TEST(JobsApiSubmission, AnUnknownTopLevelFieldIs400) {
  auto s = ParseSubmission(R"({"id":"j","class":"embed","payload":{},"priority":9})");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().status, 400);
  EXPECT_EQ(s.error().param, "priority");
  EXPECT_NE(s.error().message.find("priority"), std::string::npos) << s.error().message;
}

TEST(JobsApiSubmission, BadIdsAre400) {
  const std::string too_long(kMaxIdBytes + 1, 'a');
  for (const std::string& id :
       {std::string(""), too_long, std::string("a/b"), std::string("/abs"), std::string(".."),
        std::string("."), std::string(".hidden"), std::string("-rf"), std::string("a b"),
        std::string("a\\b"), std::string("caf\xc3\xa9")}) {
    auto s = ParseSubmission(R"({"id":")" + id + R"(","class":"embed","payload":{}})");
    ASSERT_FALSE(s.ok()) << "'" << id << "'";
    EXPECT_EQ(s.error().status, 400) << "'" << id << "'";
    EXPECT_EQ(s.error().param, "id") << "'" << id << "'";
    auto c = CheckJobId(id);
    ASSERT_FALSE(c.ok()) << "'" << id << "'";
    EXPECT_EQ(c.error().status, 400);
  }
}

TEST(JobsApiSubmission, GoodIdsPass) {
  const std::string longest(kMaxIdBytes, 'z');
  for (const std::string& id : {std::string("a"), longest, std::string("A.b_c-9"),
                                std::string("a..b"), std::string("_x"), std::string("9")}) {
    auto c = CheckJobId(id);
    ASSERT_TRUE(c.ok()) << "'" << id << "': " << c.error().message;
    EXPECT_EQ(*c, id);
    auto s = ParseSubmission(R"({"id":")" + id + R"(","class":"embed","payload":{}})");
    ASSERT_TRUE(s.ok()) << "'" << id << "': " << s.error().message;
    EXPECT_EQ(s->id, id);
  }
}

// --- ParseEmbedPayload -------------------------------------------------------------------

class EmbedPayloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("infermesh-jobs-api-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data" / "sub");
    fs::create_directories(dir_ / "data2");
    fs::create_directories(dir_ / "outside");
    dir_ = fs::canonical(dir_);  // the temp folder may itself be behind a symlink
    Write(dir_ / "data" / "in.jsonl", "{\"text\":\"a\"}\n");
    Write(dir_ / "data" / "in.txt", "a\n");
    Write(dir_ / "data2" / "other.jsonl", "{\"text\":\"b\"}\n");
    Write(dir_ / "outside" / "secret.jsonl", "{\"text\":\"secret\"}\n");
    fs::create_symlink(dir_ / "outside" / "secret.jsonl", dir_ / "data" / "link.jsonl");
    fs::create_directory_symlink(dir_ / "outside", dir_ / "data" / "escape");
    data_dirs_ = {(dir_ / "data").string(), (dir_ / "data2").string()};
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Write(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary);
    f << text;
  }

  std::string D(const std::string& rel) const { return (dir_ / rel).string(); }

  // {"input": D(input), "output": D(output)} plus `extra` ("," + fields, or "").
  std::string Payload(const std::string& input, const std::string& output,
                      const std::string& extra = "") const {
    return R"({"input":")" + D(input) + R"(","output":")" + D(output) + "\"" + extra + "}";
  }

  void ExpectStatus(const std::string& payload, int status, const std::string& param) const {
    auto r = ParseEmbedPayload(payload, defaults_, data_dirs_);
    ASSERT_FALSE(r.ok()) << payload;
    EXPECT_EQ(r.error().status, status) << payload << ": " << r.error().message;
    if (!param.empty()) {
      EXPECT_EQ(r.error().param, param) << payload << ": " << r.error().message;
    }
  }

  fs::path dir_;
  std::vector<std::string> data_dirs_;
  EmbedDefaults defaults_{"http://gateway:9000", 100, 3, 7};
};

TEST_F(EmbedPayloadTest, AppliesTheDefaults) {
  auto r = ParseEmbedPayload(Payload("data/in.jsonl", "data/out.jsonl"), defaults_, data_dirs_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->input, D("data/in.jsonl"));
  EXPECT_EQ(r->output, D("data/out.jsonl"));
  EXPECT_EQ(r->input_format, InputFormat::kJsonl);
  EXPECT_EQ(r->output_format, OutputFormat::kJsonl);
  EXPECT_EQ(r->url, "http://gateway:9000");
  EXPECT_EQ(r->chunk_items, 100);
  EXPECT_EQ(r->concurrency, 3);
  EXPECT_EQ(r->max_errors, 7);
  EXPECT_TRUE(r->normalize);
  EXPECT_TRUE(r->truncate);
}

TEST_F(EmbedPayloadTest, ExplicitValuesOverrideTheDefaults) {
  auto r = ParseEmbedPayload(
      Payload("data/in.jsonl", "data2/out.f32",
              R"(,"input_format":"text","output_format":"f32","url":"http://other:1",)"
              R"("chunk_items":4096,"concurrency":64,"max_errors":0,"normalize":false,)"
              R"("truncate":false)"),
      defaults_, data_dirs_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->output, D("data2/out.f32"));
  EXPECT_EQ(r->input_format, InputFormat::kText);
  EXPECT_EQ(r->output_format, OutputFormat::kF32);
  EXPECT_EQ(r->url, "http://other:1");
  EXPECT_EQ(r->chunk_items, 4096);
  EXPECT_EQ(r->concurrency, 64);
  EXPECT_EQ(r->max_errors, 0);
  EXPECT_FALSE(r->normalize);
  EXPECT_FALSE(r->truncate);
}

TEST_F(EmbedPayloadTest, TheInputFormatDefaultsByExtension) {
  auto jsonl = ParseEmbedPayload(Payload("data/in.jsonl", "data/o"), defaults_, data_dirs_);
  ASSERT_TRUE(jsonl.ok()) << jsonl.error().message;
  EXPECT_EQ(jsonl->input_format, InputFormat::kJsonl);
  auto text = ParseEmbedPayload(Payload("data/in.txt", "data/o"), defaults_, data_dirs_);
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(text->input_format, InputFormat::kText);
  auto forced = ParseEmbedPayload(Payload("data/in.txt", "data/o", R"(,"input_format":"jsonl")"),
                                  defaults_, data_dirs_);
  ASSERT_TRUE(forced.ok()) << forced.error().message;
  EXPECT_EQ(forced->input_format, InputFormat::kJsonl);
}

TEST_F(EmbedPayloadTest, PathsAreResolved) {
  // "sub/.." inside a data folder is fine: it resolves inside.
  auto r = ParseEmbedPayload(Payload("data/sub/../in.jsonl", "data/sub/./out.jsonl"), defaults_,
                             data_dirs_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->input, D("data/in.jsonl"));
  EXPECT_EQ(r->output, D("data/sub/out.jsonl"));
}

TEST_F(EmbedPayloadTest, PathsOutsideTheDataFoldersAre403) {
  ExpectStatus(Payload("outside/secret.jsonl", "data/out.jsonl"), 403, "input");
  ExpectStatus(Payload("data/in.jsonl", "outside/out.jsonl"), 403, "output");
  // Traversal with "..".
  ExpectStatus(Payload("data/../outside/secret.jsonl", "data/out.jsonl"), 403, "input");
  ExpectStatus(Payload("data/in.jsonl", "data/sub/../../outside/out.jsonl"), 403, "output");
  // A symlink inside a data folder that points outside it.
  ExpectStatus(Payload("data/link.jsonl", "data/out.jsonl"), 403, "input");
  ExpectStatus(Payload("data/escape/secret.jsonl", "data/out.jsonl"), 403, "input");
  ExpectStatus(Payload("data/in.jsonl", "data/escape/out.jsonl"), 403, "output");
  // A folder whose name merely starts with a data folder's name.
  fs::create_directories(dir_ / "data-evil");
  Write(dir_ / "data-evil" / "x.jsonl", "{}\n");
  ExpectStatus(Payload("data-evil/x.jsonl", "data/out.jsonl"), 403, "input");
  // No data folders at all: nothing is inside.
  auto none = ParseEmbedPayload(Payload("data/in.jsonl", "data/out.jsonl"), defaults_, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().status, 403);
  // Absolute system paths.
  ExpectStatus(R"({"input":"/etc/passwd","output":")" + D("data/out.jsonl") + "\"}", 403, "input");
}

TEST_F(EmbedPayloadTest, AMissingInputIs400) {
  ExpectStatus(Payload("data/nope.jsonl", "data/out.jsonl"), 400, "input");
  ExpectStatus(Payload("data/sub", "data/out.jsonl"), 400, "input");  // a folder, not a file
  ExpectStatus(R"({"output":")" + D("data/out.jsonl") + "\"}", 400, "input");
  ExpectStatus(R"({"input":"","output":")" + D("data/out.jsonl") + "\"}", 400, "input");
}

TEST_F(EmbedPayloadTest, AMissingOutputFolderIs400) {
  ExpectStatus(Payload("data/in.jsonl", "data/nope/out.jsonl"), 400, "output");
  ExpectStatus(R"({"input":")" + D("data/in.jsonl") + "\"}", 400, "output");
  ExpectStatus(Payload("data/in.jsonl", "data/sub"), 400, "output");  // a folder
}

TEST_F(EmbedPayloadTest, OutputEqualToInputIs400) {
  ExpectStatus(Payload("data/in.jsonl", "data/in.jsonl"), 400, "output");
  ExpectStatus(Payload("data/in.jsonl", "data/sub/../in.jsonl"), 400, "output");
}

TEST_F(EmbedPayloadTest, NumbersOutOfRangeAre400) {
  ExpectStatus(Payload("data/in.jsonl", "data/o", R"(,"chunk_items":0)"), 400, "chunk_items");
  ExpectStatus(Payload("data/in.jsonl", "data/o", R"(,"chunk_items":5000)"), 400, "chunk_items");
  ExpectStatus(Payload("data/in.jsonl", "data/o", R"(,"chunk_items":-1)"), 400, "chunk_items");
  ExpectStatus(Payload("data/in.jsonl", "data/o", R"(,"concurrency":0)"), 400, "concurrency");
  ExpectStatus(Payload("data/in.jsonl", "data/o", R"(,"concurrency":65)"), 400, "concurrency");
  ExpectStatus(Payload("data/in.jsonl", "data/o", R"(,"max_errors":-1)"), 400, "max_errors");
  auto ok = ParseEmbedPayload(Payload("data/in.jsonl", "data/o", R"(,"chunk_items":1)"), defaults_,
                              data_dirs_);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->chunk_items, 1);
}

TEST_F(EmbedPayloadTest, WrongTypesAre400) {
  ExpectStatus(R"({"input":5,"output":")" + D("data/o") + "\"}", 400, "input");
  ExpectStatus(R"({"input":")" + D("data/in.jsonl") + R"(","output":["x"]})", 400, "output");
  for (const char* extra :
       {R"(,"chunk_items":"10")", R"(,"chunk_items":1.5)", R"(,"concurrency":true)",
        R"(,"max_errors":{})", R"(,"normalize":"yes")", R"(,"truncate":1)", R"(,"url":3)",
        R"(,"url":"")", R"(,"input_format":"csv")", R"(,"input_format":1)",
        R"(,"output_format":"npy")"}) {
    ExpectStatus(Payload("data/in.jsonl", "data/o", extra), 400, "");
  }
  ExpectStatus("[]", 400, "");
  ExpectStatus("not json", 400, "");
}

TEST_F(EmbedPayloadTest, AnUnknownFieldIs400) {
  ExpectStatus(Payload("data/in.jsonl", "data/o", R"(,"model":"bge")"), 400, "model");
}

// --- PathInside --------------------------------------------------------------------------

TEST(JobsApiPathInside, ComparesWholeComponents) {
  EXPECT_TRUE(PathInside("/a/b", "/a"));
  EXPECT_TRUE(PathInside("/a/b/c", "/a/b"));
  EXPECT_TRUE(PathInside("/a", "/a"));
  EXPECT_TRUE(PathInside("/a/b", "/a/"));
  EXPECT_TRUE(PathInside("/a/b", "/"));
  EXPECT_FALSE(PathInside("/ab", "/a"));
  EXPECT_FALSE(PathInside("/a", "/a/b"));
  EXPECT_FALSE(PathInside("/b/a", "/a"));
}

// An empty folder name contains nothing (absolute("") fails; the check must not go on).
TEST(JobsApiPathInside, NothingIsInsideAnEmptyFolderName) {
  EXPECT_FALSE(PathInside("/etc/passwd", ""));
}

// --- JobJson, QueueStatusJson, ErrorJson, Rfc3339Ms --------------------------------------

constexpr int64_t kT0 = 1'800'000'000'000;  // 2027-01-15T08:00:00.000Z

TEST(JobsApiJson, Rfc3339HasMillisecondsAndIsEmptyForZero) {
  EXPECT_EQ(Rfc3339Ms(0), "");
  EXPECT_EQ(Rfc3339Ms(kT0), "2027-01-15T08:00:00.000Z");
  EXPECT_EQ(Rfc3339Ms(1'796'385'601'250), "2026-12-04T12:00:01.250Z");
  EXPECT_EQ(Rfc3339Ms(1), "1970-01-01T00:00:00.001Z");
}

TEST(JobsApiJson, JobJsonHasEveryField) {
  Job j;
  j.id = "corpus-1";
  j.job_class = "embed";
  j.payload = R"({"input":"/d/a.jsonl","chunk_items":8})";
  j.state = JobState::kRunning;
  j.attempts = 2;
  j.max_attempts = 5;
  j.items_done = 40;
  j.items_total = 100;
  j.error = "";
  j.output = "/d/a.emb.jsonl";
  j.slurm_ids = "11,12";
  j.created_ms = kT0;
  j.updated_ms = kT0 + 1500;
  j.started_ms = kT0 + 250;
  j.finished_ms = 0;
  const boost::json::value v = boost::json::parse(JobJson(j));
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("id").as_string(), "corpus-1");
  EXPECT_EQ(o.at("class").as_string(), "embed");
  EXPECT_EQ(o.at("state").as_string(), "running");
  EXPECT_EQ(o.at("attempts").to_number<int64_t>(), 2);
  EXPECT_EQ(o.at("max_attempts").to_number<int64_t>(), 5);
  EXPECT_EQ(o.at("progress").at("done").to_number<int64_t>(), 40);
  EXPECT_EQ(o.at("progress").at("total").to_number<int64_t>(), 100);
  EXPECT_EQ(o.at("created").as_string(), "2027-01-15T08:00:00.000Z");
  EXPECT_EQ(o.at("started").as_string(), "2027-01-15T08:00:00.250Z");
  EXPECT_EQ(o.at("updated").as_string(), "2027-01-15T08:00:01.500Z");
  EXPECT_TRUE(o.at("finished").is_null());
  EXPECT_EQ(o.at("error").as_string(), "");
  EXPECT_EQ(o.at("output").as_string(), "/d/a.emb.jsonl");
  const auto& ids = o.at("slurm_job_ids").as_array();
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0].as_string(), "11");
  EXPECT_EQ(ids[1].as_string(), "12");
  ASSERT_TRUE(o.at("payload").is_object());  // the object itself, not a string
  EXPECT_EQ(o.at("payload").at("input").as_string(), "/d/a.jsonl");
  EXPECT_EQ(o.at("payload").at("chunk_items").to_number<int64_t>(), 8);
}

TEST(JobsApiJson, JobJsonOfAFinishedJobWithoutSlurmIds) {
  Job j;
  j.id = "j";
  j.job_class = "slurm_script";
  j.payload = "{}";
  j.state = JobState::kFailed;
  j.error = "exit code 3 \"quoted\"\nsecond line";
  j.created_ms = kT0;
  j.finished_ms = kT0 + 2000;
  const boost::json::value v = boost::json::parse(JobJson(j));
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("state").as_string(), "failed");
  EXPECT_EQ(o.at("error").as_string(), j.error);
  EXPECT_TRUE(o.at("started").is_null());
  EXPECT_EQ(o.at("finished").as_string(), "2027-01-15T08:00:02.000Z");
  EXPECT_TRUE(o.at("slurm_job_ids").as_array().empty());
  EXPECT_TRUE(o.at("payload").as_object().empty());
}

TEST(JobsApiJson, QueueStatusJsonCountsByStateAndClass) {
  std::map<std::pair<std::string, std::string>, int64_t> counts = {{{"embed", "queued"}, 2},
                                                                   {{"embed", "running"}, 1},
                                                                   {{"slurm_script", "queued"}, 3},
                                                                   {{"slurm_script", "failed"}, 4}};
  const boost::json::value v = boost::json::parse(QueueStatusJson(counts));
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("total").to_number<int64_t>(), 10);
  const auto& by_state = o.at("by_state").as_object();
  EXPECT_EQ(by_state.size(), 6u);  // every state, zeros included
  EXPECT_EQ(by_state.at("queued").to_number<int64_t>(), 5);
  EXPECT_EQ(by_state.at("running").to_number<int64_t>(), 1);
  EXPECT_EQ(by_state.at("failed").to_number<int64_t>(), 4);
  EXPECT_EQ(by_state.at("submitting").to_number<int64_t>(), 0);
  EXPECT_EQ(by_state.at("succeeded").to_number<int64_t>(), 0);
  EXPECT_EQ(by_state.at("cancelled").to_number<int64_t>(), 0);
  const auto& by_class = o.at("by_class").as_object();
  EXPECT_EQ(by_class.size(), 2u);
  EXPECT_EQ(by_class.at("embed").at("queued").to_number<int64_t>(), 2);
  EXPECT_EQ(by_class.at("embed").at("running").to_number<int64_t>(), 1);
  EXPECT_EQ(by_class.at("slurm_script").at("queued").to_number<int64_t>(), 3);
  EXPECT_EQ(by_class.at("slurm_script").at("failed").to_number<int64_t>(), 4);
}

TEST(JobsApiJson, QueueStatusJsonOfAnEmptyQueue) {
  const boost::json::value v = boost::json::parse(QueueStatusJson({}));
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("total").to_number<int64_t>(), 0);
  EXPECT_EQ(o.at("by_state").as_object().size(), 6u);
  for (const auto& kv : o.at("by_state").as_object()) {
    EXPECT_EQ(kv.value().to_number<int64_t>(), 0) << kv.key();
  }
  EXPECT_TRUE(o.at("by_class").as_object().empty());
}

TEST(JobsApiJson, ErrorJsonRoundTrips) {
  const http::api::ApiError e{409, "Conflict", "id 'j' exists with \"another\" payload", "id"};
  const boost::json::value v = boost::json::parse(ErrorJson(e));
  EXPECT_EQ(v.at("error").as_string(), e.message);
  EXPECT_EQ(v.at("error_type").as_string(), "Conflict");
}

// --- JobsApiError ------------------------------------------------------------------------

TEST(JobsApiError, MapsStatusesToHttp) {
  struct Case {
    Status status;
    int http;
  };
  for (const Case& c :
       {Case{InvalidArgument("bad"), 400}, Case{Status(StatusCode::kAlreadyExists, "exists"), 409},
        Case{FailedPrecondition("finished"), 409}, Case{Unimplemented("later"), 501},
        Case{NotFound("no such job"), 404}, Case{ResourceExhausted("queue full"), 429}}) {
    const auto e = JobsApiError(c.status);
    EXPECT_EQ(e.status, c.http) << c.status.ToString();
    EXPECT_EQ(e.message, c.status.message()) << c.status.ToString();
    EXPECT_FALSE(e.type.empty()) << c.status.ToString();
  }
}

}  // namespace
}  // namespace infermesh::jobs

namespace infermesh::jobs {
namespace {

TEST(JobsApiSubmission, TheSeedsGpuSlurmClassIsASlurmScript) {
  auto seed = ParseSubmission(R"({"id":"t","class":"gpu_slurm","payload":{"script":"x"}})");
  ASSERT_TRUE(seed.ok()) << seed.error().message;
  EXPECT_EQ(seed->job_class, "slurm_script");
}

}  // namespace
}  // namespace infermesh::jobs
