#include "jobs/store.h"

#include <sqlite3.h>

#include <array>
#include <mutex>

namespace infermesh::jobs {

namespace {

constexpr std::array<std::string_view, 6> kStateNames = {"queued",    "submitting", "running",
                                                         "succeeded", "failed",     "cancelled"};

// One prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status status() const {
    if (rc_ == SQLITE_OK) return OkStatus();
    return Internal(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
  }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(stmt_); }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

constexpr const char* kColumns =
    "id, class, payload, state, attempts, max_attempts, lease_owner, lease_until, items_done, "
    "items_total, error, output, slurm_ids, created, updated, started, finished";

Job ReadJob(const Stmt& s) {
  Job j;
  j.id = s.Text(0);
  j.job_class = s.Text(1);
  j.payload = s.Text(2);
  auto state = ParseJobState(s.Text(3));
  j.state = state.ok() ? *state : JobState::kFailed;
  j.attempts = static_cast<int>(s.Int(4));
  j.max_attempts = static_cast<int>(s.Int(5));
  j.lease_owner = s.Text(6);
  j.lease_until_ms = s.Int(7);
  j.items_done = s.Int(8);
  j.items_total = s.Int(9);
  j.error = s.Text(10);
  j.output = s.Text(11);
  j.slurm_ids = s.Text(12);
  j.created_ms = s.Int(13);
  j.updated_ms = s.Int(14);
  j.started_ms = s.Int(15);
  j.finished_ms = s.Int(16);
  return j;
}

}  // namespace

std::string_view JobStateName(JobState s) { return kStateNames[static_cast<size_t>(s)]; }

Result<JobState> ParseJobState(std::string_view name) {
  for (size_t i = 0; i < kStateNames.size(); ++i) {
    if (kStateNames[i] == name) return static_cast<JobState>(i);
  }
  return InvalidArgument("unknown job state '" + std::string(name) + "'");
}

bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

bool AllowedTransition(JobState from, JobState to) {
  if (IsTerminal(from) || from == to) return false;
  switch (from) {
    case JobState::kQueued:
      return to == JobState::kSubmitting || to == JobState::kRunning ||
             to == JobState::kCancelled || to == JobState::kFailed;
    case JobState::kSubmitting:
      return to == JobState::kRunning || to == JobState::kQueued || IsTerminal(to);
    case JobState::kRunning:
      return to == JobState::kQueued || IsTerminal(to);
    default:
      return false;
  }
}

struct JobStore::Impl {
  sqlite3* db = nullptr;
  std::mutex mu;  // one connection, one statement at a time
  ~Impl() { sqlite3_close_v2(db); }

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) == SQLITE_OK) return OkStatus();
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    const int code = sqlite3_errcode(db) & 0xff;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
      return Status(StatusCode::kUnavailable, "the job store is busy: " + msg);
    }
    return Internal(std::string("sqlite: ") + msg + " (" + sql + ")");
  }
  Status StepError(const char* what) {
    return Status(StatusCode::kUnavailable, std::string(what) + ": " + sqlite3_errmsg(db));
  }

  // Under mu. A job by id, or NotFound.
  Result<Job> Load(const std::string& id) {
    Stmt s(db, std::string("SELECT ") + kColumns + " FROM jobs WHERE id = ?1");
    IM_RETURN_IF_ERROR(s.status());
    s.Bind(1, id);
    const int rc = s.Step();
    if (rc == SQLITE_ROW) return ReadJob(s);
    if (rc == SQLITE_DONE) return NotFound("no job '" + id + "'");
    return StepError("reading a job");
  }

  // A transaction that rolls back unless committed.
  class Txn {
   public:
    explicit Txn(Impl* im) : im_(im) { status_ = im_->Exec("BEGIN IMMEDIATE"); }
    ~Txn() {
      if (status_.ok() && !done_) (void)im_->Exec("ROLLBACK");
    }
    const Status& status() const { return status_; }
    Status Commit() {
      done_ = true;
      return im_->Exec("COMMIT");
    }

   private:
    Impl* im_;
    Status status_;
    bool done_ = false;
  };
};

Result<std::unique_ptr<JobStore>> JobStore::Open(StoreOptions options) {
  if (options.max_attempts < 1) return InvalidArgument("max_attempts must be at least 1");
  auto store = std::unique_ptr<JobStore>(new JobStore(std::move(options)));
  store->impl_ = std::make_unique<Impl>();
  Impl& im = *store->impl_;
  const int rc =
      sqlite3_open_v2(store->options_.path.c_str(), &im.db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    return Status(StatusCode::kUnavailable, "cannot open job store " + store->options_.path + ": " +
                                                (im.db ? sqlite3_errmsg(im.db) : "?"));
  }
  sqlite3_busy_timeout(im.db, store->options_.busy_timeout_ms);
  // WAL: readers never block the writer; FULL: a commit is on disk before it returns.
  {
    Stmt s(im.db, "PRAGMA journal_mode=WAL");
    IM_RETURN_IF_ERROR(s.status());
    if (s.Step() != SQLITE_ROW || s.Text(0) != "wal") {
      return Status(StatusCode::kUnavailable,
                    "job store " + store->options_.path +
                        ": WAL mode is not available (a network filesystem?); use local disk");
    }
  }
  IM_RETURN_IF_ERROR(im.Exec("PRAGMA synchronous=FULL"));
  IM_RETURN_IF_ERROR(
      im.Exec("CREATE TABLE IF NOT EXISTS jobs ("
              " id TEXT PRIMARY KEY, class TEXT NOT NULL, payload TEXT NOT NULL,"
              " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
              " max_attempts INTEGER NOT NULL, lease_owner TEXT NOT NULL DEFAULT '',"
              " lease_until INTEGER NOT NULL DEFAULT 0, items_done INTEGER NOT NULL DEFAULT 0,"
              " items_total INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',"
              " output TEXT NOT NULL DEFAULT '', slurm_ids TEXT NOT NULL DEFAULT '',"
              " created INTEGER NOT NULL, updated INTEGER NOT NULL,"
              " started INTEGER NOT NULL DEFAULT 0, finished INTEGER NOT NULL DEFAULT 0);"
              "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (state, created);"
              "CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated);"));
  return store;
}

JobStore::JobStore(StoreOptions options) : options_(std::move(options)) {}
JobStore::~JobStore() = default;

Result<std::pair<Job, bool>> JobStore::Submit(const std::string& id, const std::string& job_class,
                                              const std::string& payload, int64_t now_ms) {
  if (id.empty()) return InvalidArgument("a job needs an id");
  if (job_class.empty()) return InvalidArgument("a job needs a class");
  JobEvent event;
  Job job;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl::Txn txn(impl_.get());
    IM_RETURN_IF_ERROR(txn.status());
    auto existing = impl_->Load(id);
    if (existing.ok()) {
      if (existing->job_class != job_class || existing->payload != payload) {
        return Status(StatusCode::kAlreadyExists,
                      "job '" + id + "' exists with a different class or payload");
      }
      return std::make_pair(std::move(existing).value(), false);
    }
    if (existing.status().code() != StatusCode::kNotFound) return existing.status();
    Stmt s(impl_->db,
           "INSERT INTO jobs (id, class, payload, state, max_attempts, created, updated)"
           " VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?5)");
    IM_RETURN_IF_ERROR(s.status());
    s.Bind(1, id).Bind(2, job_class).Bind(3, payload);
    s.Bind(4, int64_t{options_.max_attempts}).Bind(5, now_ms);
    if (s.Step() != SQLITE_DONE) return impl_->StepError("storing a job");
    IM_RETURN_IF_ERROR(txn.Commit());
    IM_ASSIGN_OR_RETURN(job, impl_->Load(id));
    event = {now_ms, id, job_class, std::nullopt, JobState::kQueued, "submitted"};
  }
  if (options_.on_event) options_.on_event(event);
  return std::make_pair(std::move(job), true);
}

Result<Job> JobStore::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->Load(id);
}

Result<std::optional<Job>> JobStore::Claim(const std::string& owner,
                                           const std::vector<std::string>& classes, JobState to,
                                           int64_t lease_ms, int64_t now_ms) {
  if (to != JobState::kSubmitting && to != JobState::kRunning) {
    return InvalidArgument("a claim moves a job to submitting or running");
  }
  if (owner.empty()) return InvalidArgument("a claim needs an owner");
  std::vector<JobEvent> events;
  std::optional<Job> claimed;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl::Txn txn(impl_.get());
    IM_RETURN_IF_ERROR(txn.status());
    for (;;) {
      std::string sql = std::string("SELECT ") + kColumns +
                        " FROM jobs WHERE (state = 'queued' OR (state IN ('submitting',"
                        " 'running') AND lease_until <= ?1))";
      if (!classes.empty()) {
        sql += " AND class IN (";
        for (size_t i = 0; i < classes.size(); ++i) {
          sql += (i ? ", ?" : "?") + std::to_string(i + 2);
        }
        sql += ")";
      }
      sql += " ORDER BY created, id LIMIT 1";
      Stmt s(impl_->db, sql);
      IM_RETURN_IF_ERROR(s.status());
      s.Bind(1, now_ms);
      for (size_t i = 0; i < classes.size(); ++i) s.Bind(static_cast<int>(i + 2), classes[i]);
      const int rc = s.Step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return impl_->StepError("finding a job to claim");
      Job j = ReadJob(s);
      if (j.state != JobState::kQueued && j.attempts >= j.max_attempts) {
        // Its holder died (the lease ran out) and it has no attempts left.
        Stmt f(impl_->db,
               "UPDATE jobs SET state = 'failed', error = ?2, lease_owner = '', lease_until = 0,"
               " updated = ?3, finished = ?3 WHERE id = ?1");
        IM_RETURN_IF_ERROR(f.status());
        const std::string why = "retry budget exhausted: " + std::to_string(j.attempts) +
                                " attempts, the last lease (" + j.lease_owner + ") expired";
        f.Bind(1, j.id).Bind(2, why).Bind(3, now_ms);
        if (f.Step() != SQLITE_DONE) return impl_->StepError("failing a job");
        events.push_back({now_ms, j.id, j.job_class, j.state, JobState::kFailed, why});
        continue;
      }
      Stmt u(impl_->db,
             "UPDATE jobs SET state = ?2, attempts = attempts + 1, lease_owner = ?3,"
             " lease_until = ?4, updated = ?5, started = CASE WHEN started = 0 THEN ?5 ELSE"
             " started END WHERE id = ?1");
      IM_RETURN_IF_ERROR(u.status());
      u.Bind(1, j.id).Bind(2, JobStateName(to)).Bind(3, owner).Bind(4, now_ms + lease_ms);
      u.Bind(5, now_ms);
      if (u.Step() != SQLITE_DONE) return impl_->StepError("claiming a job");
      events.push_back({now_ms, j.id, j.job_class, j.state, to,
                        j.state == JobState::kQueued
                            ? "claimed by " + owner
                            : "lease of " + j.lease_owner + " expired; claimed by " + owner});
      IM_ASSIGN_OR_RETURN(Job now_job, impl_->Load(j.id));
      claimed = std::move(now_job);
      break;
    }
    IM_RETURN_IF_ERROR(txn.Commit());
  }
  if (options_.on_event) {
    for (const auto& e : events) options_.on_event(e);
  }
  return claimed;
}

namespace {
// Under a transaction: the job if `owner` holds its live lease.
Result<Job> Owned(const Result<Job>& job, const std::string& owner, int64_t now_ms) {
  if (!job.ok()) return job.status();
  if (IsTerminal(job->state)) {
    return FailedPrecondition("job '" + job->id + "' is already " +
                              std::string(JobStateName(job->state)));
  }
  if (job->lease_owner != owner || job->lease_until_ms <= now_ms) {
    return FailedPrecondition(
        "job '" + job->id + "' is not leased to " + owner +
        (job->lease_owner.empty() ? "" : " (held by " + job->lease_owner + ")"));
  }
  return job;
}
}  // namespace

Status JobStore::Renew(const std::string& id, const std::string& owner, int64_t lease_ms,
                       int64_t now_ms) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Txn txn(impl_.get());
  IM_RETURN_IF_ERROR(txn.status());
  IM_RETURN_IF_ERROR(Owned(impl_->Load(id), owner, now_ms).status());
  Stmt s(impl_->db, "UPDATE jobs SET lease_until = ?2, updated = ?3 WHERE id = ?1");
  IM_RETURN_IF_ERROR(s.status());
  s.Bind(1, id).Bind(2, now_ms + lease_ms).Bind(3, now_ms);
  if (s.Step() != SQLITE_DONE) return impl_->StepError("renewing a lease");
  return txn.Commit();
}

Status JobStore::Transition(const std::string& id, const std::string& owner, JobState to,
                            const std::string& reason, int64_t now_ms) {
  JobEvent event;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl::Txn txn(impl_.get());
    IM_RETURN_IF_ERROR(txn.status());
    IM_ASSIGN_OR_RETURN(Job job, Owned(impl_->Load(id), owner, now_ms));
    if (!AllowedTransition(job.state, to)) {
      return FailedPrecondition("job '" + id + "' cannot go from " +
                                std::string(JobStateName(job.state)) + " to " +
                                std::string(JobStateName(to)));
    }
    const bool release = to == JobState::kQueued || IsTerminal(to);
    Stmt s(impl_->db,
           "UPDATE jobs SET state = ?2, updated = ?3,"
           " error = CASE WHEN ?4 THEN ?5 ELSE error END,"
           " lease_owner = CASE WHEN ?6 THEN '' ELSE lease_owner END,"
           " lease_until = CASE WHEN ?6 THEN 0 ELSE lease_until END,"
           " finished = CASE WHEN ?7 THEN ?3 ELSE finished END WHERE id = ?1");
    IM_RETURN_IF_ERROR(s.status());
    const bool failed = to == JobState::kFailed || to == JobState::kCancelled;
    s.Bind(1, id).Bind(2, JobStateName(to)).Bind(3, now_ms);
    s.Bind(4, int64_t{failed}).Bind(5, reason).Bind(6, int64_t{release});
    s.Bind(7, int64_t{IsTerminal(to)});
    if (s.Step() != SQLITE_DONE) return impl_->StepError("changing a job's state");
    IM_RETURN_IF_ERROR(txn.Commit());
    event = {now_ms, id, job.job_class, job.state, to, reason};
  }
  if (options_.on_event) options_.on_event(event);
  return OkStatus();
}

Status JobStore::SetProgress(const std::string& id, const std::string& owner, int64_t items_done,
                             int64_t items_total, int64_t now_ms) {
  if (items_done < 0 || items_total < 0) return InvalidArgument("progress cannot be negative");
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Txn txn(impl_.get());
  IM_RETURN_IF_ERROR(txn.status());
  IM_RETURN_IF_ERROR(Owned(impl_->Load(id), owner, now_ms).status());
  Stmt s(impl_->db,
         "UPDATE jobs SET items_done = ?2, items_total = ?3, updated = ?4 WHERE id = ?1");
  IM_RETURN_IF_ERROR(s.status());
  s.Bind(1, id).Bind(2, items_done).Bind(3, items_total).Bind(4, now_ms);
  if (s.Step() != SQLITE_DONE) return impl_->StepError("storing progress");
  return txn.Commit();
}

Status JobStore::SetOutput(const std::string& id, const std::string& owner,
                           const std::string& output, const std::string& slurm_ids,
                           int64_t now_ms) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Txn txn(impl_.get());
  IM_RETURN_IF_ERROR(txn.status());
  IM_RETURN_IF_ERROR(Owned(impl_->Load(id), owner, now_ms).status());
  Stmt s(impl_->db, "UPDATE jobs SET output = ?2, slurm_ids = ?3, updated = ?4 WHERE id = ?1");
  IM_RETURN_IF_ERROR(s.status());
  s.Bind(1, id).Bind(2, output).Bind(3, slurm_ids).Bind(4, now_ms);
  if (s.Step() != SQLITE_DONE) return impl_->StepError("storing a job's output");
  return txn.Commit();
}

Status JobStore::SetError(const std::string& id, const std::string& owner, const std::string& error,
                          int64_t now_ms) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Txn txn(impl_.get());
  IM_RETURN_IF_ERROR(txn.status());
  IM_RETURN_IF_ERROR(Owned(impl_->Load(id), owner, now_ms).status());
  Stmt s(impl_->db, "UPDATE jobs SET error = ?2, updated = ?3 WHERE id = ?1");
  IM_RETURN_IF_ERROR(s.status());
  s.Bind(1, id).Bind(2, error).Bind(3, now_ms);
  if (s.Step() != SQLITE_DONE) return impl_->StepError("storing a job's note");
  return txn.Commit();
}

Status JobStore::Release(const std::string& id, const std::string& owner, const std::string& reason,
                         int64_t now_ms) {
  JobEvent event;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl::Txn txn(impl_.get());
    IM_RETURN_IF_ERROR(txn.status());
    IM_ASSIGN_OR_RETURN(Job job, Owned(impl_->Load(id), owner, now_ms));
    Stmt s(impl_->db,
           "UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), lease_owner = '',"
           " lease_until = 0, updated = ?2 WHERE id = ?1");
    IM_RETURN_IF_ERROR(s.status());
    s.Bind(1, id).Bind(2, now_ms);
    if (s.Step() != SQLITE_DONE) return impl_->StepError("releasing a job");
    IM_RETURN_IF_ERROR(txn.Commit());
    event = {now_ms, id, job.job_class, job.state, JobState::kQueued, reason};
  }
  if (options_.on_event) options_.on_event(event);
  return OkStatus();
}

Result<int64_t> JobStore::Adopt(const std::string& owner, int64_t now_ms) {
  if (owner.empty()) return InvalidArgument("adopting needs an owner");
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Txn txn(impl_.get());
  IM_RETURN_IF_ERROR(txn.status());
  Stmt s(impl_->db,
         "UPDATE jobs SET lease_until = ?2, updated = ?2 WHERE lease_owner = ?1 AND state IN"
         " ('submitting', 'running') AND lease_until > ?2");
  IM_RETURN_IF_ERROR(s.status());
  s.Bind(1, owner).Bind(2, now_ms);
  if (s.Step() != SQLITE_DONE) return impl_->StepError("adopting jobs");
  const int64_t n = sqlite3_changes(impl_->db);
  IM_RETURN_IF_ERROR(txn.Commit());
  return n;
}

Result<Job> JobStore::Cancel(const std::string& id, const std::string& reason, int64_t now_ms) {
  JobEvent event;
  Job job;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl::Txn txn(impl_.get());
    IM_RETURN_IF_ERROR(txn.status());
    IM_ASSIGN_OR_RETURN(Job before, impl_->Load(id));
    if (IsTerminal(before.state)) {
      return FailedPrecondition("job '" + id + "' is already " +
                                std::string(JobStateName(before.state)));
    }
    Stmt s(impl_->db,
           "UPDATE jobs SET state = 'cancelled', error = ?2, lease_owner = '', lease_until = 0,"
           " updated = ?3, finished = ?3 WHERE id = ?1");
    IM_RETURN_IF_ERROR(s.status());
    s.Bind(1, id).Bind(2, reason).Bind(3, now_ms);
    if (s.Step() != SQLITE_DONE) return impl_->StepError("cancelling a job");
    IM_RETURN_IF_ERROR(txn.Commit());
    IM_ASSIGN_OR_RETURN(job, impl_->Load(id));
    event = {now_ms, id, before.job_class, before.state, JobState::kCancelled, reason};
  }
  if (options_.on_event) options_.on_event(event);
  return job;
}

Result<int64_t> JobStore::CountState(JobState state) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Stmt s(impl_->db, "SELECT COUNT(*) FROM jobs WHERE state = ?1");
  IM_RETURN_IF_ERROR(s.status());
  s.Bind(1, JobStateName(state));
  if (s.Step() != SQLITE_ROW) return impl_->StepError("counting jobs");
  return s.Int(0);
}

Result<std::vector<Job>> JobStore::Recent(int limit) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Stmt s(impl_->db,
         std::string("SELECT ") + kColumns + " FROM jobs ORDER BY updated DESC, id LIMIT ?1");
  IM_RETURN_IF_ERROR(s.status());
  s.Bind(1, int64_t{limit});
  std::vector<Job> out;
  for (;;) {
    const int rc = s.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return impl_->StepError("listing jobs");
    out.push_back(ReadJob(s));
  }
  return out;
}

Result<std::map<std::pair<std::string, std::string>, int64_t>> JobStore::Counts() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Stmt s(impl_->db, "SELECT class, state, COUNT(*) FROM jobs GROUP BY class, state");
  IM_RETURN_IF_ERROR(s.status());
  std::map<std::pair<std::string, std::string>, int64_t> out;
  for (;;) {
    const int rc = s.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return impl_->StepError("counting jobs");
    out[{s.Text(0), s.Text(1)}] = s.Int(2);
  }
  return out;
}

}  // namespace infermesh::jobs
