// The spool folder against a real temp folder: files renamed into incoming/ are taken
// (inotify wakes the watcher; the rescan is set to an hour so only inotify and ScanNow can
// take them), refused ones land in failed/ with a .error beside them, temporary names are
// left alone, and finished jobs move their files on, also for files adopted at Start.
// Timing is only ever "eventually, within 10 s".
#include "jobs/spool.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "jobs/api.h"

namespace infermesh::jobs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Waits until `done` holds, up to 10 s.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

std::string Body(const std::string& id) {
  return R"({"id":")" + id + R"(","class":"embed","payload":{"input":"/d/)" + id + R"(.jsonl"}})";
}

std::string ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("infermesh-spool-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    spool_.reset();  // stops the watcher before its folder goes
    fs::remove_all(dir_);
  }

  // Starts the spool with a rescan long enough that only inotify and ScanNow take files.
  void Start(std::chrono::milliseconds rescan = std::chrono::hours(1)) {
    SpoolOptions o;
    o.dir = dir_.string();
    o.rescan = rescan;
    o.max_file_bytes = max_file_bytes_;
    auto s = Spool::Start(
        o, [this](const std::string& body) { return Submit(body); },
        [this](const std::string& id) { return Outcome(id); });
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    spool_ = std::move(s).value();
  }

  // The SubmitFn: records the body; the id of a valid submission, else its error; an id in
  // conflict_ is refused with 409.
  http::api::ApiResult<std::string> Submit(const std::string& body) {
    std::lock_guard<std::mutex> lock(mu_);
    bodies_.push_back(body);
    auto sub = ParseSubmission(body);
    if (!sub.ok()) return sub.error();
    if (conflict_.count(sub->id)) {
      return http::api::ApiError{409, "Conflict", "id " + sub->id + " exists", "id"};
    }
    return sub->id;
  }

  std::optional<std::pair<bool, std::string>> Outcome(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = outcomes_.find(id);
    if (it == outcomes_.end()) return std::nullopt;
    return it->second;
  }

  std::vector<std::string> Bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  bool Submitted(const std::string& body) {
    for (const auto& b : Bodies()) {
      if (b == body) return true;
    }
    return false;
  }

  // Writes `body` the way a writer should: under a temporary name, then a rename.
  void Drop(const std::string& name, const std::string& body) {
    const fs::path tmp = dir_ / "incoming" / ("." + name + ".tmp");
    {
      std::ofstream f(tmp, std::ios::binary);
      f << body;
    }
    fs::rename(tmp, dir_ / "incoming" / name);
  }

  // Writes a file straight into `sub` (no rename).
  void Put(const std::string& sub, const std::string& name, const std::string& body) {
    fs::create_directories(dir_ / sub);
    std::ofstream f(dir_ / sub / name, std::ios::binary);
    f << body;
  }

  bool Exists(const std::string& rel) const { return fs::exists(dir_ / rel); }

  // Whether the .error file `rel` is complete: the spool creates it after the move and
  // then writes it (not atomically), so its existence alone is not enough.
  bool ErrorWritten(const std::string& rel) const {
    const std::string text = ReadAll(dir_ / rel);
    return !text.empty() && text.back() == '\n';
  }

  // The regular files directly in `sub`.
  std::set<std::string> Files(const std::string& sub) const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_ / sub)) {
      names.insert(e.path().filename().string());
    }
    return names;
  }

  fs::path dir_;
  size_t max_file_bytes_ = 1 << 20;
  std::unique_ptr<Spool> spool_;
  std::mutex mu_;
  std::vector<std::string> bodies_;                               // mu_
  std::set<std::string> conflict_;                                // mu_
  std::map<std::string, std::pair<bool, std::string>> outcomes_;  // mu_
};

TEST_F(SpoolTest, StartCreatesTheFourFolders) {
  Start();
  for (const char* sub : {"incoming", "accepted", "done", "failed"}) {
    EXPECT_TRUE(fs::is_directory(dir_ / sub)) << sub;
  }
}

TEST_F(SpoolTest, AFileRenamedIntoIncomingIsTakenAndAccepted) {
  Start();
  Drop("a.json", Body("job-a"));
  ASSERT_TRUE(Eventually([&] { return Exists("accepted/a.json"); }))
      << "inotify should have woken the watcher (rescan is an hour)";
  EXPECT_FALSE(Exists("incoming/a.json"));
  EXPECT_EQ(ReadAll(dir_ / "accepted" / "a.json"), Body("job-a"));
  EXPECT_TRUE(Submitted(Body("job-a")));
  EXPECT_TRUE(Files("failed").empty());
  EXPECT_TRUE(Files("done").empty());
}

TEST_F(SpoolTest, ARefusedFileGoesToFailedWithItsError) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    conflict_.insert("taken");
  }
  Start();
  Drop("bad.json", "this is not json");
  Drop("conflict.json", Body("taken"));
  ASSERT_TRUE(Eventually([&] {
    return ErrorWritten("failed/bad.json.error") && ErrorWritten("failed/conflict.json.error");
  }));
  EXPECT_TRUE(Exists("failed/bad.json"));
  EXPECT_TRUE(Exists("failed/conflict.json"));
  EXPECT_FALSE(Exists("incoming/bad.json"));
  EXPECT_FALSE(Exists("accepted/bad.json"));
  EXPECT_FALSE(Exists("accepted/conflict.json"));
  const std::string bad_error = ReadAll(dir_ / "failed" / "bad.json.error");
  EXPECT_EQ(bad_error.rfind("400 ", 0), 0u) << bad_error;
  const std::string conflict_error = ReadAll(dir_ / "failed" / "conflict.json.error");
  EXPECT_NE(conflict_error.find("409"), std::string::npos) << conflict_error;
  EXPECT_NE(conflict_error.find("id taken exists"), std::string::npos) << conflict_error;
  // The refused file is kept as it was written.
  EXPECT_EQ(ReadAll(dir_ / "failed" / "bad.json"), "this is not json");
}

TEST_F(SpoolTest, ARefusedNameThatExistsInFailedGetsASuffix) {
  Start();
  Drop("bad.json", "not json 1");
  ASSERT_TRUE(Eventually([&] { return ErrorWritten("failed/bad.json.error"); }));
  Drop("bad.json", "not json 2");
  ASSERT_TRUE(Eventually([&] { return ErrorWritten("failed/bad.json.1.error"); }));
  EXPECT_EQ(ReadAll(dir_ / "failed" / "bad.json"), "not json 1");
  EXPECT_EQ(ReadAll(dir_ / "failed" / "bad.json.1"), "not json 2");
}

TEST_F(SpoolTest, AFileOverTheSizeLimitIsRefused) {
  max_file_bytes_ = 64;
  Start();
  Drop("big.json", Body(std::string(100, 'x')));
  ASSERT_TRUE(Eventually([&] { return ErrorWritten("failed/big.json.error"); }));
  EXPECT_TRUE(Exists("failed/big.json"));
  EXPECT_NE(ReadAll(dir_ / "failed" / "big.json.error").find("larger than 64"), std::string::npos)
      << ReadAll(dir_ / "failed" / "big.json.error");
  EXPECT_TRUE(Bodies().empty());  // never submitted
}

TEST_F(SpoolTest, TemporaryNamesAreLeftAlone) {
  Start();
  Put("incoming", ".x", Body("dot"));
  Put("incoming", "x.tmp", Body("tmp"));
  Put("incoming", "x.partial", Body("partial"));
  spool_->ScanNow();
  // A real file after them: once it is accepted, the watcher has scanned past them too.
  Drop("z.json", Body("z"));
  ASSERT_TRUE(Eventually([&] { return Exists("accepted/z.json"); }));
  spool_->ScanNow();
  EXPECT_TRUE(Exists("incoming/.x"));
  EXPECT_TRUE(Exists("incoming/x.tmp"));
  EXPECT_TRUE(Exists("incoming/x.partial"));
  EXPECT_FALSE(Submitted(Body("dot")));
  EXPECT_FALSE(Submitted(Body("tmp")));
  EXPECT_FALSE(Submitted(Body("partial")));
  EXPECT_EQ(Files("accepted"), std::set<std::string>{"z.json"});
  EXPECT_TRUE(Files("failed").empty());
}

TEST_F(SpoolTest, JobFinishedMovesTheFileToDoneOrFailed) {
  Start();
  Drop("a.json", Body("job-a"));
  Drop("b.json", Body("job-b"));
  ASSERT_TRUE(Eventually([&] { return Exists("accepted/a.json") && Exists("accepted/b.json"); }));
  spool_->JobFinished("job-a", true, "");
  EXPECT_TRUE(Exists("done/a.json"));
  EXPECT_FALSE(Exists("accepted/a.json"));
  EXPECT_FALSE(Exists("done/a.json.error"));
  spool_->JobFinished("job-b", false, "exit code 3");
  EXPECT_TRUE(Exists("failed/b.json"));
  EXPECT_FALSE(Exists("accepted/b.json"));
  EXPECT_EQ(ReadAll(dir_ / "failed" / "b.json.error"), "exit code 3\n");
  // Jobs the spool does not know, and a second call, change nothing.
  spool_->JobFinished("not-from-the-spool", false, "x");
  spool_->JobFinished("job-a", false, "again");
  EXPECT_EQ(Files("done"), std::set<std::string>{"a.json"});
  EXPECT_EQ(Files("failed"), (std::set<std::string>{"b.json", "b.json.error"}));
  EXPECT_TRUE(Files("accepted").empty());
}

TEST_F(SpoolTest, StartMovesOnAcceptedFilesWhoseJobsFinished) {
  Put("accepted", "a.json", Body("job-a"));
  Put("accepted", "b.json", Body("job-b"));
  Put("accepted", "c.json", Body("job-c"));
  {
    std::lock_guard<std::mutex> lock(mu_);
    outcomes_["job-a"] = {true, ""};
    outcomes_["job-b"] = {false, "cancelled by alice"};
  }
  Start();
  EXPECT_TRUE(Exists("done/a.json"));
  EXPECT_TRUE(Exists("failed/b.json"));
  EXPECT_EQ(ReadAll(dir_ / "failed" / "b.json.error"), "cancelled by alice\n");
  EXPECT_EQ(Files("accepted"), std::set<std::string>{"c.json"});  // still running
  EXPECT_TRUE(Bodies().empty());  // adopted files are not submitted again
  // The adopted, unfinished job still moves on when it finishes.
  spool_->JobFinished("job-c", true, "");
  EXPECT_TRUE(Exists("done/c.json"));
  EXPECT_TRUE(Files("accepted").empty());
}

TEST_F(SpoolTest, StartTakesWhatWaitsInIncoming) {
  Put("incoming", "early.json", Body("early"));
  Put("incoming", "broken.json", "{");
  Start();
  // Taken during Start itself, before the watcher runs.
  EXPECT_TRUE(Exists("accepted/early.json"));
  EXPECT_TRUE(Exists("failed/broken.json"));
  EXPECT_TRUE(Exists("failed/broken.json.error"));
  EXPECT_TRUE(Submitted(Body("early")));
}

TEST_F(SpoolTest, AResubmittedIdWhoseJobFinishedMovesOnAtOnce) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    outcomes_["old"] = {true, ""};
  }
  Start();
  Drop("again.json", Body("old"));
  ASSERT_TRUE(Eventually([&] { return Exists("done/again.json"); }));
  EXPECT_FALSE(Exists("accepted/again.json"));
}

TEST_F(SpoolTest, ScanNowTakesFilesWithoutWaitingForTheRescan) {
  Start();
  // Stop the watcher: only ScanNow can take the file now.
  spool_->Stop();
  Put("incoming", "n.json", Body("job-n"));
  EXPECT_TRUE(Exists("incoming/n.json"));
  spool_->ScanNow();
  EXPECT_TRUE(Exists("accepted/n.json"));
  EXPECT_FALSE(Exists("incoming/n.json"));
  EXPECT_TRUE(Submitted(Body("job-n")));
  spool_->JobFinished("job-n", true, "");
  EXPECT_TRUE(Exists("done/n.json"));
}

TEST_F(SpoolTest, ScanNowWhileTheWatcherRunsLeavesEveryFileTaken) {
  Start();
  for (int i = 0; i < 20; ++i) {
    Drop("f" + std::to_string(i) + ".json", Body("job-" + std::to_string(i)));
    spool_->ScanNow();  // races the watcher; either may take a file, never both
  }
  ASSERT_TRUE(Eventually([&] { return Files("accepted").size() == 20; }))
      << Files("accepted").size();
  EXPECT_TRUE(Files("incoming").empty());
  EXPECT_TRUE(Files("failed").empty());
  for (int i = 0; i < 20; ++i) {
    spool_->JobFinished("job-" + std::to_string(i), true, "");
  }
  EXPECT_EQ(Files("done").size(), 20u);
  EXPECT_TRUE(Files("accepted").empty());
}

// Two files with one job id (a writer that submitted twice): both move on with the job.
TEST_F(SpoolTest, TwoFilesWithOneIdBothMoveOnWhenTheJobFinishes) {
  Start();
  Drop("first.json", Body("same"));
  ASSERT_TRUE(Eventually([&] { return Exists("accepted/first.json"); }));
  Drop("second.json", Body("same"));
  ASSERT_TRUE(Eventually([&] { return Exists("accepted/second.json"); }));
  spool_->JobFinished("same", true, "");
  EXPECT_TRUE(Files("accepted").empty());
  EXPECT_EQ(Files("done"), (std::set<std::string>{"first.json", "second.json"}));
}

}  // namespace
}  // namespace infermesh::jobs
