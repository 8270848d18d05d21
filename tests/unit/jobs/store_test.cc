// The job store against a real SQLite file: idempotent submissions, leases that expire
// and are claimed again, the retry budget, transitions, and durability across a process
// killed without closing the database.
#include "jobs/store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>

namespace infermesh::jobs {
namespace {

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("infermesh-jobs-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<JobStore> Open(int max_attempts = 3, std::vector<JobEvent>* events = nullptr) {
    StoreOptions o;
    o.path = (dir_ / "jobs.db").string();
    o.max_attempts = max_attempts;
    if (events) o.on_event = [events](const JobEvent& e) { events->push_back(e); };
    auto s = JobStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  std::filesystem::path dir_;
};

constexpr int64_t kT0 = 1'800'000'000'000;  // a fixed Unix time in ms

TEST_F(JobStoreTest, SubmitIsIdempotentOnTheId) {
  std::vector<JobEvent> events;
  auto store = Open(3, &events);
  auto a = store->Submit("job-1", "embed", R"({"input":"a.jsonl"})", kT0);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(a->second);
  EXPECT_EQ(a->first.state, JobState::kQueued);
  EXPECT_EQ(a->first.created_ms, kT0);
  auto again = store->Submit("job-1", "embed", R"({"input":"a.jsonl"})", kT0 + 5);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->second);  // the same job, not a second one
  EXPECT_EQ(again->first.created_ms, kT0);
  auto other = store->Submit("job-1", "embed", R"({"input":"b.jsonl"})", kT0 + 6);
  EXPECT_EQ(other.status().code(), StatusCode::kAlreadyExists);
  auto other_class = store->Submit("job-1", "slurm_script", R"({"input":"a.jsonl"})", kT0 + 7);
  EXPECT_EQ(other_class.status().code(), StatusCode::kAlreadyExists);
  ASSERT_EQ(events.size(), 1u);  // one submission event
  EXPECT_FALSE(events[0].from.has_value());
  EXPECT_EQ(store->Get("nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->Submit("", "embed", "{}", kT0).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, AnExpiredLeaseIsClaimedAgainAndTheOldOwnerIsLockedOut) {
  auto store = Open();
  ASSERT_TRUE(store->Submit("j", "embed", "{}", kT0).ok());
  auto a = store->Claim("runner-a", {"embed"}, JobState::kRunning, 1000, kT0 + 10);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->state, JobState::kRunning);
  EXPECT_EQ((*a)->attempts, 1);
  EXPECT_EQ((*a)->lease_owner, "runner-a");
  // Held: nobody else gets it.
  auto b = store->Claim("runner-b", {}, JobState::kRunning, 1000, kT0 + 500);
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->has_value());
  ASSERT_TRUE(store->Renew("j", "runner-a", 1000, kT0 + 900).ok());  // until kT0 + 1900
  b = store->Claim("runner-b", {}, JobState::kRunning, 1000, kT0 + 1500);
  EXPECT_FALSE(b->has_value());
  // runner-a stops renewing (it died): the lease runs out and runner-b claims the job.
  b = store->Claim("runner-b", {}, JobState::kRunning, 1000, kT0 + 2000);
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->attempts, 2);
  EXPECT_EQ((*b)->lease_owner, "runner-b");
  // runner-a was only slow: its late writes are refused.
  EXPECT_EQ(store->SetProgress("j", "runner-a", 5, 10, kT0 + 2100).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Transition("j", "runner-a", JobState::kSucceeded, "", kT0 + 2100).code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store->SetProgress("j", "runner-b", 10, 10, kT0 + 2200).ok());
  ASSERT_TRUE(store->Transition("j", "runner-b", JobState::kSucceeded, "", kT0 + 2300).ok());
  auto done = store->Get("j");
  EXPECT_EQ(done->state, JobState::kSucceeded);
  EXPECT_EQ(done->items_done, 10);
  EXPECT_EQ(done->finished_ms, kT0 + 2300);
  EXPECT_EQ(done->started_ms, kT0 + 10);
  EXPECT_TRUE(done->lease_owner.empty());
}

TEST_F(JobStoreTest, TheRetryBudgetFailsAJobWhoseRunnersKeepDying) {
  std::vector<JobEvent> events;
  auto store = Open(/*max_attempts=*/2, &events);
  ASSERT_TRUE(store->Submit("j", "embed", "{}", kT0).ok());
  ASSERT_TRUE(store->Claim("a", {}, JobState::kRunning, 100, kT0)->has_value());
  ASSERT_TRUE(store->Claim("b", {}, JobState::kRunning, 100, kT0 + 200)->has_value());
  auto c = store->Claim("c", {}, JobState::kRunning, 100, kT0 + 400);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());
  auto j = store->Get("j");
  EXPECT_EQ(j->state, JobState::kFailed);
  EXPECT_NE(j->error.find("retry budget exhausted"), std::string::npos) << j->error;
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().to, JobState::kFailed);
  EXPECT_EQ(events.back().from, JobState::kRunning);
}

TEST_F(JobStoreTest, TransitionsFollowTheStateMachine) {
  auto store = Open();
  ASSERT_TRUE(store->Submit("s", "slurm_script", "{}", kT0).ok());
  ASSERT_TRUE(store->Submit("e", "embed", "{}", kT0 + 1).ok());
  // Claims respect the class filter and the submission order.
  auto s = store->Claim("svc", {"slurm_script"}, JobState::kSubmitting, 10000, kT0 + 2);
  ASSERT_TRUE(s.ok() && s->has_value());
  EXPECT_EQ((*s)->id, "s");
  EXPECT_EQ((*s)->state, JobState::kSubmitting);
  EXPECT_EQ(store->Claim("svc", {}, JobState::kSucceeded, 10, kT0).status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(store->SetOutput("s", "svc", "", "4242", kT0 + 3).ok());
  ASSERT_TRUE(store->Transition("s", "svc", JobState::kRunning, "sbatch 4242", kT0 + 4).ok());
  ASSERT_TRUE(store->Transition("s", "svc", JobState::kFailed, "NODE_FAIL", kT0 + 5).ok());
  auto j = store->Get("s");
  EXPECT_EQ(j->state, JobState::kFailed);
  EXPECT_EQ(j->error, "NODE_FAIL");
  EXPECT_EQ(j->slurm_ids, "4242");
  // Terminal is final.
  EXPECT_EQ(store->Transition("s", "svc", JobState::kRunning, "", kT0 + 6).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Cancel("s", "too late", kT0 + 6).status().code(),
            StatusCode::kFailedPrecondition);
  // A requeue releases the lease; the next claim is a new attempt.
  auto e = store->Claim("r", {"embed"}, JobState::kRunning, 10000, kT0 + 7);
  ASSERT_TRUE(e.ok() && e->has_value());
  ASSERT_TRUE(store->Transition("e", "r", JobState::kQueued, "preempted", kT0 + 8).ok());
  EXPECT_EQ(store->Get("e")->lease_owner, "");
  e = store->Claim("r2", {"embed"}, JobState::kRunning, 10000, kT0 + 9);
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->attempts, 2);
  // Cancel works whoever holds it.
  auto c = store->Cancel("e", "user asked", kT0 + 10);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->state, JobState::kCancelled);
  EXPECT_EQ(c->error, "user asked");
  auto counts = store->Counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(((*counts)[{"slurm_script", "failed"}]), 1);
  EXPECT_EQ(((*counts)[{"embed", "cancelled"}]), 1);
  EXPECT_FALSE(AllowedTransition(JobState::kQueued, JobState::kSucceeded));
  EXPECT_TRUE(AllowedTransition(JobState::kSubmitting, JobState::kQueued));
  EXPECT_EQ(*ParseJobState("running"), JobState::kRunning);
  EXPECT_FALSE(ParseJobState("done").ok());
}

// Two processes' worth of runners (two connections to one file), claiming at once: every
// job is claimed exactly once.
TEST_F(JobStoreTest, ConcurrentClaimsNeverShareAJob) {
  auto first = Open();
  auto second = Open();
  constexpr int kJobs = 60;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_TRUE(first->Submit("job-" + std::to_string(i), "embed", "{}", kT0 + i).ok());
  }
  std::vector<std::string> got[2];
  auto run = [&](JobStore* s, int k) {
    for (;;) {
      auto c = s->Claim("runner-" + std::to_string(k), {}, JobState::kRunning, 60000, kT0 + 100);
      if (!c.ok() || !c->has_value()) return;
      got[k].push_back((*c)->id);
    }
  };
  std::thread a(run, first.get(), 0), b(run, second.get(), 1);
  a.join();
  b.join();
  std::set<std::string> all(got[0].begin(), got[0].end());
  all.insert(got[1].begin(), got[1].end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(got[0].size() + got[1].size(), static_cast<size_t>(kJobs));
}

// kill -9 right after a submission was acknowledged: the job is on disk (WAL, FULL).
TEST_F(JobStoreTest, AnAcknowledgedSubmissionSurvivesAKilledProcess) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StoreOptions o;
    o.path = (dir_ / "jobs.db").string();
    auto s = JobStore::Open(o);
    if (!s.ok()) ::_exit(2);
    for (int i = 0; i < 20; ++i) {
      if (!(*s)->Submit("k" + std::to_string(i), "embed", "{}", kT0 + i).ok()) ::_exit(3);
    }
    ::kill(::getpid(), SIGKILL);  // no destructor, no close, no checkpoint
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  auto store = Open();
  for (int i = 0; i < 20; ++i) {
    auto j = store->Get("k" + std::to_string(i));
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    EXPECT_EQ(j->state, JobState::kQueued);
  }
}

TEST_F(JobStoreTest, ReleaseRefundsTheAttemptAndAdoptFreesARestartedOwnersJobs) {
  auto store = Open(/*max_attempts=*/2);
  ASSERT_TRUE(store->Submit("a", "embed", "{}", kT0).ok());
  ASSERT_TRUE(store->Submit("b", "embed", "{}", kT0 + 1).ok());
  auto a = store->Claim("svc", {}, JobState::kRunning, 30'000, kT0 + 2);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->attempts, 1);
  // A graceful stop hands the job back without spending its attempt.
  ASSERT_TRUE(store->Release("a", "svc", "shutting down", kT0 + 3).ok());
  auto back = store->Get("a");
  EXPECT_EQ(back->state, JobState::kQueued);
  EXPECT_EQ(back->attempts, 0);
  EXPECT_EQ(store->Release("a", "svc", "again", kT0 + 4).code(), StatusCode::kFailedPrecondition);

  // "svc" claims both, then dies; a new process under the same name adopts them at once.
  ASSERT_TRUE(store->Claim("svc", {}, JobState::kRunning, 30'000, kT0 + 5)->has_value());
  ASSERT_TRUE(store->Claim("svc", {}, JobState::kRunning, 30'000, kT0 + 6)->has_value());
  ASSERT_TRUE(store->Submit("c", "embed", "{}", kT0 + 7).ok());
  ASSERT_TRUE(store->Claim("other", {}, JobState::kRunning, 30'000, kT0 + 8)->has_value());
  EXPECT_FALSE(store->Claim("svc", {}, JobState::kRunning, 30'000, kT0 + 9)->has_value());
  auto adopted = store->Adopt("svc", kT0 + 10);
  ASSERT_TRUE(adopted.ok());
  EXPECT_EQ(*adopted, 2);  // not "other"'s job
  auto again = store->Claim("svc", {}, JobState::kRunning, 30'000, kT0 + 11);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->id, "a");
  EXPECT_EQ((*again)->attempts, 2);  // the crash cost an attempt
  EXPECT_EQ(store->Get("c")->lease_owner, "other");
}

TEST_F(JobStoreTest, OpenFailsClearly) {
  StoreOptions o;
  o.path = (dir_ / "missing-folder" / "jobs.db").string();
  auto s = JobStore::Open(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cannot open job store"), std::string::npos);
  o.path = (dir_ / "jobs.db").string();
  o.max_attempts = 0;
  EXPECT_EQ(JobStore::Open(o).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, RecentListsTheLastUpdatedFirstUpToTheLimit) {
  auto store = Open();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->Submit("job-" + std::to_string(i), "embed", "{}", kT0 + i).ok());
  }
  // job-1 moves on later than every submission: it is the most recently updated.
  auto claimed = store->Claim("owner", {}, JobState::kRunning, 30000, kT0 + 100);
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  const std::string first = (*claimed)->id;  // the oldest queued: job-0
  EXPECT_EQ(first, "job-0");
  ASSERT_TRUE(store->SetProgress(first, "owner", 3, 10, kT0 + 200).ok());
  auto recent = store->Recent(3);
  ASSERT_TRUE(recent.ok()) << recent.status().ToString();
  ASSERT_EQ(recent->size(), 3u);
  EXPECT_EQ((*recent)[0].id, "job-0");
  EXPECT_EQ((*recent)[0].items_done, 3);
  EXPECT_EQ((*recent)[0].items_total, 10);
  EXPECT_EQ((*recent)[1].id, "job-4");
  EXPECT_EQ((*recent)[2].id, "job-3");
  auto all = store->Recent(100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 5u);
}

}  // namespace
}  // namespace infermesh::jobs
