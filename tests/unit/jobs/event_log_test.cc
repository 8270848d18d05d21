// The job event log: the JSON of one event, one line per Append, and lines that stay whole
// when two logs (two processes, in production) append to the same file at once.
#include "jobs/event_log.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace infermesh::jobs {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kT = 1'796'385'601'250;  // 2026-12-04T12:00:01.250Z

std::vector<std::string> Lines(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(line);
  return lines;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("infermesh-eventlog-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<EventLog> Open(const fs::path& path) {
    auto log = EventLog::Open(path.string());
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }

  fs::path dir_;
};

TEST(EventJson, ASubmissionHasANullFrom) {
  JobEvent e;
  e.time_ms = kT;
  e.id = "corpus-1";
  e.job_class = "embed";
  e.to = JobState::kQueued;
  e.reason = "submitted";
  const std::string line = EventJson(e);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const boost::json::value v = boost::json::parse(line);
  const auto& o = v.as_object();
  EXPECT_EQ(o.size(), 7u);
  EXPECT_EQ(o.at("time").as_string(), "2026-12-04T12:00:01.250Z");
  EXPECT_EQ(o.at("time_ms").to_number<int64_t>(), kT);
  EXPECT_EQ(o.at("id").as_string(), "corpus-1");
  EXPECT_EQ(o.at("class").as_string(), "embed");
  EXPECT_TRUE(o.at("from").is_null());
  EXPECT_EQ(o.at("to").as_string(), "queued");
  EXPECT_EQ(o.at("reason").as_string(), "submitted");
}

TEST(EventJson, ATransitionNamesBothStates) {
  JobEvent e;
  e.time_ms = kT + 1;
  e.id = "j";
  e.job_class = "slurm_script";
  e.from = JobState::kRunning;
  e.to = JobState::kFailed;
  e.reason = "exit \"3\"\nsee\tlog \\ here";
  const std::string line = EventJson(e);
  EXPECT_EQ(line.find('\n'), std::string::npos);  // escaped: the line stays one line
  const boost::json::value v = boost::json::parse(line);
  EXPECT_EQ(v.at("time").as_string(), "2026-12-04T12:00:01.251Z");
  EXPECT_EQ(v.at("from").as_string(), "running");
  EXPECT_EQ(v.at("to").as_string(), "failed");
  EXPECT_EQ(v.at("reason").as_string(), e.reason);
}

TEST_F(EventLogTest, AppendWritesOneLinePerEvent) {
  const fs::path path = dir_ / "events.jsonl";
  auto log = Open(path);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->path(), path.string());
  const JobState states[] = {JobState::kQueued, JobState::kRunning, JobState::kSucceeded};
  for (int i = 0; i < 3; ++i) {
    JobEvent e;
    e.time_ms = kT + i;
    e.id = "job-" + std::to_string(i);
    e.job_class = "embed";
    if (i > 0) e.from = states[i - 1];
    e.to = states[i];
    e.reason = "step " + std::to_string(i);
    log->Append(e);
  }
  EXPECT_EQ(log->write_errors(), 0u);
  const std::string text = ReadAll(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const boost::json::value v = boost::json::parse(lines[i]);
    EXPECT_EQ(v.at("id").as_string(), "job-" + std::to_string(i));
    EXPECT_EQ(v.at("time_ms").to_number<int64_t>(), kT + i);
    EXPECT_EQ(v.at("to").as_string(), JobStateName(states[i]));
    EXPECT_EQ(v.at("from").is_null(), i == 0);
  }
}

TEST_F(EventLogTest, ReopeningAppendsInsteadOfTruncating) {
  const fs::path path = dir_ / "events.jsonl";
  JobEvent e;
  e.time_ms = kT;
  e.id = "j";
  e.job_class = "embed";
  Open(path)->Append(e);
  Open(path)->Append(e);
  EXPECT_EQ(Lines(path).size(), 2u);
}

TEST_F(EventLogTest, OpeningInAMissingFolderFails) {
  auto log = EventLog::Open((dir_ / "no" / "such" / "events.jsonl").string());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kUnavailable);
}

TEST_F(EventLogTest, TwoLogsOnOneFileAppendWholeLinesConcurrently) {
  const fs::path path = dir_ / "events.jsonl";
  auto a = Open(path);
  auto b = Open(path);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kPerThread = 500;
  // Two threads per log; reasons of varied length (up to a few KiB) so that torn or
  // interleaved writes would show.
  auto writer = [](EventLog* log, const std::string& who) {
    for (int i = 0; i < kPerThread; ++i) {
      JobEvent e;
      e.time_ms = kT + i;
      e.id = who + "-" + std::to_string(i);
      e.job_class = "embed";
      e.from = JobState::kQueued;
      e.to = JobState::kRunning;
      e.reason = std::string(static_cast<size_t>((i * 37) % 3000), static_cast<char>('a' + i % 26));
      log->Append(e);
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(writer, a.get(), "a1");
  threads.emplace_back(writer, a.get(), "a2");
  threads.emplace_back(writer, b.get(), "b1");
  threads.emplace_back(writer, b.get(), "b2");
  for (auto& t : threads) t.join();
  EXPECT_EQ(a->write_errors(), 0u);
  EXPECT_EQ(b->write_errors(), 0u);

  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 4u * kPerThread);
  std::set<std::string> ids;
  for (const auto& line : lines) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << "a torn line: " << line.substr(0, 200);
    const std::string id(v.at("id").as_string());
    const int i = std::stoi(id.substr(id.find('-') + 1));
    EXPECT_EQ(v.at("reason").as_string().size(), static_cast<size_t>((i * 37) % 3000)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 4u * kPerThread);  // every event exactly once
}

}  // namespace
}  // namespace infermesh::jobs
