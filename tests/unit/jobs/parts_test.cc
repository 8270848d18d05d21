// The job service's smaller parts: the API codec (submissions, embed payloads and their
// paths), the event log, and the spool folder with real inotify.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "jobs/api.h"
#include "jobs/event_log.h"
#include "jobs/spool.h"

namespace infermesh::jobs {
namespace {

namespace fs = std::filesystem;

class JobsPartsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("infermesh-jobs-parts-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    std::ofstream(dir_ / "data" / "in.jsonl") << "{\"custom_id\":\"a\",\"input\":\"x\"}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Data(const std::string& name) const { return (dir_ / "data" / name).string(); }
  std::vector<std::string> Dirs() const { return {(dir_ / "data").string()}; }
  fs::path dir_;
};

TEST_F(JobsPartsTest, SubmissionsAreCheckedAndTheirPayloadCanonical) {
  auto a = ParseSubmission(R"({"id":"job-1","class":"embed","payload":{"b":1, "a":[1, 2]}})");
  ASSERT_TRUE(a.ok()) << a.error().message;
  auto b = ParseSubmission(
      "{ \"payload\" : {\"b\":1,\"a\":[1,2]} , \"class\":\"embed\",\"id\":\"job-1\"}");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->payload, b->payload);
  struct Case {
    const char* body;
    const char* words;
  } cases[] = {
      {"{", "malformed JSON"},
      {"[]", "object"},
      {R"({"class":"embed","payload":{}})", "id"},
      {R"({"id":"x","payload":{}})", "class"},
      {R"({"id":"x","class":"embed"})", "payload"},
      {R"({"id":"x","class":"embed","payload":"{}"})", "payload"},
      {R"({"id":"x","class":"nope","payload":{}})", "unknown class 'nope'"},
      {R"({"id":"x","class":"embed","payload":{},"extra":1})", "unknown field 'extra'"},
      {R"({"id":"","class":"embed","payload":{}})", "empty"},
      {R"({"id":"a/b","class":"embed","payload":{}})", "only letters"},
      {R"({"id":"..","class":"embed","payload":{}})", "must not start"},
      {R"({"id":"-x","class":"embed","payload":{}})", "must not start"},
  };
  for (const auto& c : cases) {
    auto r = ParseSubmission(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.error().status, 400) << c.body;
    EXPECT_NE(r.error().message.find(c.words), std::string::npos)
        << c.body << ": " << r.error().message;
  }
  EXPECT_FALSE(CheckJobId(std::string(129, 'a')).ok());
  EXPECT_TRUE(CheckJobId(std::string(128, 'a')).ok());
}

TEST_F(JobsPartsTest, EmbedPayloadsResolvePathsInsideTheDataFolders) {
  EmbedDefaults d;
  d.chunk_items = 7;
  d.mesh_url = "http://mesh:1";
  auto ok = ParseEmbedPayload(R"({"input":")" + Data("in.jsonl") + R"(","output":")" +
                                  Data("out.f32") + R"(","output_format":"f32"})",
                              d, Dirs());
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->input_format, InputFormat::kJsonl);  // by extension
  EXPECT_EQ(ok->output_format, OutputFormat::kF32);
  EXPECT_EQ(ok->chunk_items, 7);
  EXPECT_EQ(ok->url, "http://mesh:1");

  fs::create_directories(dir_ / "outside");
  fs::create_symlink(dir_ / "outside", dir_ / "data" / "link");
  const std::string in = R"("input":")" + Data("in.jsonl") + R"(")";
  struct Case {
    std::string payload;
    int status;
  } cases[] = {
      {R"({"input":"/etc/passwd","output":")" + Data("o") + "\"}", 403},
      {"{" + in + R"(,"output":")" + Data("../outside/o") + "\"}", 403},
      {"{" + in + R"(,"output":")" + Data("link/o") + "\"}", 403},  // a symlink out
      {"{" + in + R"(,"output":")" + Data("missing/o") + "\"}", 400},
      {"{" + in + R"(,"output":")" + Data("in.jsonl") + "\"}", 400},
      {R"({"input":")" + Data("none") + R"(","output":")" + Data("o") + "\"}", 400},
      {"{" + in + "}", 400},
      {"{" + in + R"(,"output":")" + Data("o") + R"(","chunk_items":0})", 400},
      {"{" + in + R"(,"output":")" + Data("o") + R"(","chunk_items":5000})", 400},
      {"{" + in + R"(,"output":")" + Data("o") + R"(","concurrency":"2"})", 400},
      {"{" + in + R"(,"output":")" + Data("o") + R"(","output_format":"csv"})", 400},
      {"{" + in + R"(,"output":")" + Data("o") + R"(","colour":1})", 400},
  };
  for (const auto& c : cases) {
    auto r = ParseEmbedPayload(c.payload, d, Dirs());
    ASSERT_FALSE(r.ok()) << c.payload;
    EXPECT_EQ(r.error().status, c.status) << c.payload << ": " << r.error().message;
  }
  EXPECT_TRUE(PathInside("/a/b/c", "/a/b"));
  EXPECT_TRUE(PathInside("/a/b", "/a/b"));
  EXPECT_FALSE(PathInside("/a/bc", "/a/b"));
  EXPECT_FALSE(PathInside("/a", "/a/b"));
}

TEST_F(JobsPartsTest, JobAndQueueJsonAndTheErrorMapping) {
  Job j;
  j.id = "x";
  j.job_class = "slurm_script";
  j.payload = R"({"script":"true"})";
  j.state = JobState::kRunning;
  j.slurm_ids = "12,13";
  j.created_ms = 1'800'000'000'123;
  j.items_done = 2;
  j.items_total = 4;
  auto v = boost::json::parse(JobJson(j)).as_object();
  EXPECT_EQ(v.at("state").as_string(), "running");
  EXPECT_EQ(v.at("created").as_string(), "2027-01-15T08:00:00.123Z");
  EXPECT_TRUE(v.at("finished").is_null());
  EXPECT_EQ(v.at("slurm_job_ids").as_array().size(), 2u);
  EXPECT_EQ(v.at("progress").at("total").as_int64(), 4);
  EXPECT_EQ(v.at("payload").at("script").as_string(), "true");
  auto q = boost::json::parse(QueueStatusJson({{{"embed", "queued"}, 3},
                                               {{"embed", "failed"}, 1},
                                               {{"slurm_script", "queued"}, 2}}))
               .as_object();
  EXPECT_EQ(q.at("total").as_int64(), 6);
  EXPECT_EQ(q.at("by_state").at("queued").as_int64(), 5);
  EXPECT_EQ(q.at("by_state").at("cancelled").as_int64(), 0);
  EXPECT_EQ(q.at("by_class").at("embed").at("failed").as_int64(), 1);
  EXPECT_EQ(JobsApiError(InvalidArgument("x")).status, 400);
  EXPECT_EQ(JobsApiError(Status(StatusCode::kAlreadyExists, "x")).status, 409);
  EXPECT_EQ(JobsApiError(FailedPrecondition("x")).status, 409);
  EXPECT_EQ(JobsApiError(NotFound("x")).status, 404);
  EXPECT_EQ(JobsApiError(Status(StatusCode::kResourceExhausted, "x")).status, 429);
}

TEST_F(JobsPartsTest, TheEventLogAppendsWholeLinesFromManyWriters) {
  const std::string path = (dir_ / "events.jsonl").string();
  auto a = EventLog::Open(path);
  auto b = EventLog::Open(path);
  ASSERT_TRUE(a.ok() && b.ok());
  JobEvent submitted{1'800'000'000'000, "j", "embed", std::nullopt, JobState::kQueued, "s\"q"};
  auto line = boost::json::parse(EventJson(submitted)).as_object();
  EXPECT_TRUE(line.at("from").is_null());
  EXPECT_EQ(line.at("reason").as_string(), "s\"q");
  std::vector<std::thread> threads;
  for (auto* log : {a->get(), b->get()}) {
    threads.emplace_back([log] {
      for (int i = 0; i < 500; ++i) {
        log->Append({1'800'000'000'000 + i, "job-" + std::to_string(i), "embed", JobState::kQueued,
                     JobState::kRunning, std::string(200, 'r')});
      }
    });
  }
  for (auto& t : threads) t.join();
  std::ifstream f(path);
  std::string l;
  int n = 0;
  while (std::getline(f, l)) {
    auto v = boost::json::parse(l).as_object();
    EXPECT_EQ(v.at("to").as_string(), "running");
    ++n;
  }
  EXPECT_EQ(n, 1000);
  EXPECT_EQ((*a)->write_errors(), 0u);
}

TEST_F(JobsPartsTest, TheSpoolTakesRenamedFilesAndMovesThemOn) {
  std::mutex mu;
  std::map<std::string, std::pair<bool, std::string>> finished;  // what OutcomeFn says
  SpoolOptions o;
  o.dir = (dir_ / "spool").string();
  o.rescan = std::chrono::hours(1);  // only inotify (and ScanNow) in this test
  // A file already accepted whose job finished while the service was down.
  fs::create_directories(dir_ / "spool" / "accepted");
  std::ofstream(dir_ / "spool" / "accepted" / "old.json")
      << R"({"id":"old","class":"embed","payload":{}})";
  finished["old"] = {false, "it failed"};
  auto spool = Spool::Start(
      o,
      [](const std::string& body) -> http::api::ApiResult<std::string> {
        auto s = ParseSubmission(body);
        if (!s.ok()) return s.error();
        return s->id;
      },
      [&](const std::string& id) -> std::optional<std::pair<bool, std::string>> {
        std::lock_guard<std::mutex> lock(mu);
        auto it = finished.find(id);
        if (it == finished.end()) return std::nullopt;
        return it->second;
      });
  ASSERT_TRUE(spool.ok()) << spool.status().ToString();
  const fs::path sp = dir_ / "spool";
  EXPECT_TRUE(fs::exists(sp / "failed" / "old.json"));
  EXPECT_TRUE(fs::exists(sp / "failed" / "old.json.error"));

  auto put = [&](const std::string& name, const std::string& body) {
    std::ofstream(sp / "incoming" / ("." + name + ".tmp")) << body;
    fs::rename(sp / "incoming" / ("." + name + ".tmp"), sp / "incoming" / name);
  };
  auto eventually = [](const fs::path& p) {
    for (int i = 0; i < 1000 && !fs::exists(p); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return fs::exists(p);
  };
  std::ofstream(sp / "incoming" / "half.json.tmp") << "{";  // never read
  put("a.json", R"({"id":"a","class":"embed","payload":{}})");
  put("bad.json", "{nope");
  ASSERT_TRUE(eventually(sp / "accepted" / "a.json"));
  ASSERT_TRUE(eventually(sp / "failed" / "bad.json.error"));
  std::ifstream err(sp / "failed" / "bad.json.error");
  std::string why((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_NE(why.find("malformed JSON"), std::string::npos) << why;
  EXPECT_TRUE(fs::exists(sp / "incoming" / "half.json.tmp"));

  (*spool)->JobFinished("a", true, "");
  EXPECT_TRUE(fs::exists(sp / "done" / "a.json"));
  EXPECT_FALSE(fs::exists(sp / "accepted" / "a.json"));
  (*spool)->JobFinished("not-from-the-spool", false, "x");  // no-op
  (*spool)->Stop();
}

}  // namespace
}  // namespace infermesh::jobs
