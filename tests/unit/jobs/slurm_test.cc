// The Slurm pieces that need no cluster: payload checks, array lists, squeue parsing and
// the outcome of a job from its rows and markers (the real cluster is in
// tests/integration/jobs_test.py, SlurmJobs).
#include "jobs/slurm.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "jobs/command.h"

namespace infermesh::jobs {
namespace {

TEST(SlurmPayload, AcceptsAFullSpecAndRefusesAbsurdOnes) {
  auto ok = ParseSlurmScriptPayload(
      R"({"script":"echo hi","nodes":2,"gpus_per_node":1,"cpus_per_task":4,"mem":"4G",)"
      R"("time":"1-02:00:00","partition":"gpu_a","array":"0-7%2","requeue":false})",
      {"/tmp"});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->nodes, 2);
  EXPECT_EQ(ok->mem, "4G");
  EXPECT_FALSE(ok->requeue);
  for (const char* bad :
       {R"({"script":"x","nodes":0})", R"({"script":"x","nodes":5000})",
        R"({"script":"x","mem":"0"})", R"({"script":"x","mem":"lots"})",
        R"({"script":"x","time":"forever"})", R"({"script":"x","time":"1:2:3:4"})",
        R"({"script":"x","partition":"a;rm -rf"})", R"({"script":"x","array":"3-1"})",
        R"({"script":"x","array":"0-999999"})", R"({"script":"x","gpus_per_node":-1})",
        R"({"script":"x","colour":"red"})", R"({})", R"({"script":"x","script_file":"y"})",
        R"({"script":"x","requeue":"yes"})", R"([1])"}) {
    auto r = ParseSlurmScriptPayload(bad, {"/tmp"});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().status, 400) << bad;
  }
}

TEST(SlurmPayload, AScriptFileMustBeInsideTheDataFolders) {
  const auto dir = std::filesystem::temp_directory_path() / "infermesh-slurm-payload";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "train.sh") << "echo train\n";
  auto ok = ParseSlurmScriptPayload(R"({"script_file":")" + (dir / "train.sh").string() + R"("})",
                                    {dir.string()});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->script, "echo train\n");
  auto outside = ParseSlurmScriptPayload(R"({"script_file":"/etc/passwd"})", {dir.string()});
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.error().status, 403);
  auto traversal = ParseSlurmScriptPayload(
      R"({"script_file":")" + (dir / ".." / "x.sh").string() + R"("})", {dir.string()});
  ASSERT_FALSE(traversal.ok());
  EXPECT_EQ(traversal.error().status, 403);
  std::filesystem::remove_all(dir);
}

TEST(SlurmArray, ListsTheTasks) {
  EXPECT_EQ(*ArrayTasks(""), (std::vector<int64_t>{0}));
  EXPECT_EQ(*ArrayTasks("0-3"), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(*ArrayTasks("1,3,5"), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(*ArrayTasks("0-15:4"), (std::vector<int64_t>{0, 4, 8, 12}));
  EXPECT_EQ(*ArrayTasks("0-7%2"), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  for (const char* bad : {"a", "3-1", "0-", "-1", "0-3%0", "0-3:0", ",", "0-100000"}) {
    EXPECT_FALSE(ArrayTasks(bad).has_value()) << bad;
  }
}

TEST(SlurmSqueue, ParsesRowsOfJobsAndArrayTasks) {
  auto rows = ParseSqueue(
      "12|12|RUNNING|im-a\n"
      "13|13_0|COMPLETED|im-b\n"
      "13|13_[1-3]|PENDING|im-b\n"
      "14|14|CANCELLED by 0|im-c\n"
      "garbage\n\n");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].master_id, "12");
  EXPECT_EQ(rows[0].task, -1);
  EXPECT_EQ(rows[1].task, 0);
  EXPECT_EQ(rows[2].task, -1);  // the pending rest of an array
  EXPECT_EQ(rows[3].state, "CANCELLED");
  EXPECT_EQ(rows[3].name, "im-c");
}

SlurmTask Row(std::string state, int64_t task = -1) {
  SlurmTask t;
  t.master_id = "7";
  t.id = task < 0 ? "7" : "7_" + std::to_string(task);
  t.state = std::move(state);
  t.name = "im-x";
  t.task = task;
  return t;
}

TEST(SlurmResolve, MapsEveryTerminalState) {
  const std::vector<int64_t> one = {0};
  EXPECT_EQ(ResolveSlurmJob({Row("PENDING")}, {}, one).outcome, SlurmOutcome::kRunning);
  EXPECT_EQ(ResolveSlurmJob({Row("RUNNING")}, {}, one).outcome, SlurmOutcome::kRunning);
  EXPECT_EQ(ResolveSlurmJob({Row("COMPLETING")}, {{0, 0}}, one).outcome, SlurmOutcome::kRunning);
  EXPECT_EQ(ResolveSlurmJob({Row("COMPLETED")}, {{0, 0}}, one).outcome, SlurmOutcome::kSucceeded);
  for (const char* s :
       {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}) {
    auto r = ResolveSlurmJob({Row(s)}, {}, one);
    EXPECT_EQ(r.outcome, SlurmOutcome::kFailed) << s;
    EXPECT_NE(r.reason.find(s), std::string::npos) << r.reason;
  }
  for (const char* s : {"NODE_FAIL", "PREEMPTED"}) {
    EXPECT_EQ(ResolveSlurmJob({Row(s)}, {}, one).outcome, SlurmOutcome::kRequeue) << s;
  }
  // COMPLETED, but the marker says otherwise or is missing: not a success.
  EXPECT_EQ(ResolveSlurmJob({Row("COMPLETED")}, {{0, 2}}, one).outcome, SlurmOutcome::kFailed);
  EXPECT_EQ(ResolveSlurmJob({Row("COMPLETED")}, {}, one).outcome, SlurmOutcome::kFailed);
  auto failed = ResolveSlurmJob({Row("FAILED")}, {{0, 3}}, one);
  EXPECT_NE(failed.reason.find("exit code 3"), std::string::npos) << failed.reason;
}

TEST(SlurmResolve, AJobGoneFromTheQueueIsResolvedByItsMarkersOrFails) {
  const std::vector<int64_t> one = {0};
  EXPECT_EQ(ResolveSlurmJob({}, {{0, 0}}, one).outcome, SlurmOutcome::kSucceeded);
  EXPECT_EQ(ResolveSlurmJob({}, {{0, 1}}, one).outcome, SlurmOutcome::kFailed);
  auto vanished = ResolveSlurmJob({}, {}, one);
  EXPECT_EQ(vanished.outcome, SlurmOutcome::kFailed);
  EXPECT_NE(vanished.reason.find("without a completion marker"), std::string::npos);
}

TEST(SlurmResolve, ArraysWaitForEveryTaskAndCountProgress) {
  const std::vector<int64_t> tasks = {0, 1, 2, 3};
  auto r =
      ResolveSlurmJob({Row("COMPLETED", 0), Row("RUNNING", 1), Row("PENDING")}, {{0, 0}}, tasks);
  EXPECT_EQ(r.outcome, SlurmOutcome::kRunning);
  EXPECT_EQ(r.tasks_done, 1);
  EXPECT_EQ(r.tasks_total, 4);
  r = ResolveSlurmJob(
      {Row("COMPLETED", 0), Row("COMPLETED", 1), Row("FAILED", 2), Row("COMPLETED", 3)},
      {{0, 0}, {1, 0}, {2, 1}, {3, 0}}, tasks);
  EXPECT_EQ(r.outcome, SlurmOutcome::kFailed);
  EXPECT_NE(r.reason.find("task 2"), std::string::npos) << r.reason;
  r = ResolveSlurmJob(
      {Row("COMPLETED", 0), Row("COMPLETED", 1), Row("COMPLETED", 2), Row("COMPLETED", 3)},
      {{0, 0}, {1, 0}, {2, 0}, {3, 0}}, tasks);
  EXPECT_EQ(r.outcome, SlurmOutcome::kSucceeded);
  EXPECT_EQ(r.tasks_done, 4);
}

TEST(SlurmScript, WritesTheMarkerAfterTheUsersScript) {
  SlurmScriptSpec spec;
  spec.script = "exit 4\n";
  spec.array = "0-1";
  const std::string s = BatchScript(spec, "job-1", "/shared/job-1/1", "/shared/job-1/1/script.sh");
  EXPECT_NE(s.find("#SBATCH --job-name=im-job-1"), std::string::npos);
  EXPECT_NE(s.find("#SBATCH --array=0-1"), std::string::npos);
  EXPECT_LT(s.find("/bin/bash '/shared/job-1/1/script.sh'"), s.find("code=$?"));
  EXPECT_NE(s.find("mv \"$markers/.$task.json.tmp\" \"$markers/$task.json\""), std::string::npos);
}

TEST(SlurmScript, AScriptWithAnInterpreterLineRunsWithIt) {
  SlurmScriptSpec spec;
  spec.script = "#!/usr/bin/env python3\nprint(1)\n";
  const std::string s = BatchScript(spec, "py", "/d", "/d/script.sh");
  EXPECT_NE(s.find("\n'/d/script.sh'\n"), std::string::npos) << s;
  EXPECT_EQ(s.find("/bin/bash '/d/script.sh'"), std::string::npos);
}

TEST(Command, RunsCapturesAndTimesOut) {
  auto r =
      RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, std::chrono::seconds(10));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  auto missing = RunCommand({"infermesh-no-such-program"}, std::chrono::seconds(10));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  auto slow = RunCommand({"/bin/sleep", "30"}, std::chrono::milliseconds(200));
  EXPECT_EQ(slow.status().code(), StatusCode::kDeadlineExceeded);
}

TEST(ShellQuote, QuotesAnythingForAShell) {
  EXPECT_EQ(ShellQuote("plain"), "'plain'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("it's $HOME"), "'it'\\''s $HOME'");
}

}  // namespace
}  // namespace infermesh::jobs
