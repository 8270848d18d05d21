#include "jobs/service.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <boost/json.hpp>
#include <charconv>

#include "core/failpoint.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "core/version.h"
#include "http/auth.h"
#include "http/client.h"
#include "jobs/embed_runner.h"
#include "jobs/event_log.h"
#include "jobs/slurm_executor.h"
#include "jobs/spool.h"
#include "jobs/store.h"

namespace infermesh::jobs {

namespace fs = std::filesystem;
using http::api::ApiError;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

// Why a job failed, as the errors metric's label.
std::string FailureReason(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOutOfRange:
      return "error_budget";
    case StatusCode::kUnavailable:
      return "mesh_unavailable";
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
      return "input";
    case StatusCode::kDataLoss:
      return "bad_response";
    default:
      return "internal";
  }
}

void Reply(http::Responder& r, int status, std::string body,
           std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::Response res;
  res.status = status;
  res.body = std::move(body);
  res.headers = std::move(headers);
  r.Send(std::move(res));
}

void ReplyError(http::Responder& r, const ApiError& e) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 401) headers.emplace_back("www-authenticate", "Bearer");
  Reply(r, e.status, ErrorJson(e), std::move(headers));
}

}  // namespace

struct JobService::Impl {
  JobServiceOptions options;
  std::string owner;
  int lock_fd = -1;
  std::unique_ptr<EventLog> events;
  std::unique_ptr<JobStore> store;
  std::unique_ptr<http::HttpClient> client;
  std::unique_ptr<Spool> spool;
  std::unique_ptr<SlurmExecutor> slurm;
  // Slurm commands a request needs (squeue for /slurm/status, scancel for DELETE) run
  // here, never on an I/O thread: a controller that does not answer must not stall the
  // API. Declared after `slurm`, so it drains before the executor goes.
  std::unique_ptr<ThreadPool> slurm_calls;
  static constexpr int64_t kMaxQueuedSlurmCalls = 64;
  std::unique_ptr<http::HttpServer> server;
  http::BearerAuth user_auth, admin_auth;

  // Runners.
  std::atomic<bool> stopping{false};
  std::atomic<bool> keeper_stop{false};  // after the runners: leases outlive their jobs' ends
  std::mutex mu;
  std::condition_variable wake;
  uint64_t wake_seq = 0;  // mu
  // Jobs running here: id -> abort flag (cancel, lease lost, shutdown).
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> running;  // mu
  std::vector<std::thread> runners;
  std::thread lease_keeper;

  // Metrics.
  metrics::CounterFamily* events_total = nullptr;
  metrics::CounterFamily* errors_total = nullptr;
  metrics::HistogramFamily* latency = nullptr;
  metrics::GaugeFamily* jobs_gauge = nullptr;
  std::mutex gauge_mu;
  std::set<std::pair<std::string, std::string>> gauge_keys;  // gauge_mu
  metrics::Histogram* submit_seconds = nullptr;
  std::vector<metrics::CallbackBinding> bindings;

  ~Impl() {
    if (lock_fd >= 0) ::close(lock_fd);
  }

  void OnEvent(const JobEvent& e) {
    if (events) events->Append(e);
    events_total->WithLabels({e.job_class, std::string(JobStateName(e.to))}).Inc();
    if (!e.from) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ++wake_seq;
      }
      wake.notify_all();
      if (slurm && e.job_class.rfind("slurm_", 0) == 0) slurm->Wake();
    }
    if (IsTerminal(e.to)) {
      auto job = store ? store->Get(e.id) : Result<Job>(NotFound(""));
      if (job.ok() && job->created_ms > 0) {
        latency->WithLabels({e.job_class, std::string(JobStateName(e.to))})
            .Observe(static_cast<double>(e.time_ms - job->created_ms) / 1000.0);
      }
      if (e.to == JobState::kFailed && e.reason.rfind("retry budget", 0) == 0) {
        errors_total->WithLabels({e.job_class, "retry_budget"}).Inc();
      }
      if (spool) spool->JobFinished(e.id, e.to == JobState::kSucceeded, e.reason);
    }
  }

  Status Init() {
    std::error_code ec;
    fs::create_directories(options.state_dir, ec);
    if (ec) {
      return Status(StatusCode::kUnavailable,
                    "cannot create the state folder " + options.state_dir + ": " + ec.message());
    }
    const std::string lock_path =
        (fs::path(options.state_dir) / (options.instance + ".lock")).string();
    lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      return Status(StatusCode::kFailedPrecondition, "another job service runs as instance '" +
                                                         options.instance + "' on " +
                                                         options.state_dir + " (" + lock_path +
                                                         " is locked); give this one "
                                                         "another jobs.instance or jobs.state_dir");
    }
    owner = Hostname() + "/" + options.instance;
    auto& reg = metrics::Registry::Global();
    events_total =
        &reg.Counter("infermesh_jobs_events_total",
                     "Job state changes, by class and the state entered", {"class", "to"});
    errors_total = &reg.Counter("infermesh_jobs_errors_total",
                                "Jobs failed, by class and reason (error_budget, "
                                "mesh_unavailable, input, bad_response, retry_budget, internal)",
                                {"class", "reason"});
    latency = &reg.Histogram("infermesh_jobs_duration_seconds",
                             "From submission to the end, by class and final state",
                             {"class", "state"}, metrics::ExponentialBuckets(0.01, 2, 20));
    jobs_gauge = &reg.Gauge("infermesh_jobs", "Jobs in the store by class and state (at scrape)",
                            {"class", "state"});
    submit_seconds = &reg.Histogram("infermesh_jobs_submit_seconds",
                                    "Time to validate and durably store one submission", {},
                                    metrics::ExponentialBuckets(0.0001, 2, 18))
                          .WithLabels({});
    const std::string log_path = options.event_log.empty()
                                     ? (fs::path(options.state_dir) / "events.jsonl").string()
                                     : options.event_log;
    IM_ASSIGN_OR_RETURN(events, EventLog::Open(log_path));
    bindings.push_back(reg.CallbackCounter("infermesh_jobs_event_log_write_errors_total",
                                           "Event log lines that could not be written")
                           .Bind([this] { return static_cast<double>(events->write_errors()); }));
    StoreOptions so;
    so.path = (fs::path(options.state_dir) / "jobs.db").string();
    so.max_attempts = options.max_attempts;
    so.on_event = [this](const JobEvent& e) { OnEvent(e); };
    IM_ASSIGN_OR_RETURN(store, JobStore::Open(so));
    IM_ASSIGN_OR_RETURN(int64_t adopted, store->Adopt(owner, NowMs()));
    if (adopted > 0) {
      log::Info("jobs: adopted the jobs of this instance's previous run",
                {{"owner", owner}, {"jobs", std::to_string(adopted)}});
    }
    user_auth = http::BearerAuth(options.api_keys);
    admin_auth =
        http::BearerAuth(options.admin_key.empty() ? std::vector<std::string>{}
                                                   : std::vector<std::string>{options.admin_key});
    http::ClientOptions co;
    co.io_threads = 1;
    co.max_connections_per_host = 64;
    co.default_timeout = options.request_timeout;
    client = http::HttpClient::Create(co);
    return OkStatus();
  }

  // ---- submissions ----

  // Validates and stores a submission body: {status, job JSON} or an error.
  http::api::ApiResult<std::pair<int, Job>> Submit(const std::string& body) {
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = ParseSubmission(body);
    if (!sub.ok()) return sub.error();
    if (sub->job_class == "embed") {
      auto spec = ParseEmbedPayload(sub->payload, options.embed, options.data_dirs);
      if (!spec.ok()) return spec.error();
    } else if (sub->job_class == "slurm_script") {
      auto spec = ParseSlurmScriptPayload(sub->payload, options.data_dirs);
      if (!spec.ok()) return spec.error();
    } else if (sub->job_class == "slurm_embed") {
      auto spec = ParseSlurmEmbedPayload(sub->payload, options.embed, options.data_dirs);
      if (!spec.ok()) return spec.error();
    }
    auto queued = store->CountState(JobState::kQueued);
    if (!queued.ok()) return JobsApiError(queued.status());
    if (*queued >= options.max_queued) {
      auto existing = store->Get(sub->id);
      if (!existing.ok()) {
        return ApiError{429, "Overloaded",
                        std::to_string(*queued) + " jobs are queued (jobs.max_queued " +
                            std::to_string(options.max_queued) + "); try again later",
                        ""};
      }
    }
    auto stored = store->Submit(sub->id, sub->job_class, sub->payload, NowMs());
    if (!stored.ok()) return JobsApiError(stored.status());
    Failpoint("jobs.submit.after_commit");
    submit_seconds->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return std::make_pair(stored->second ? 201 : 200, std::move(stored->first));
  }

  // ---- runners ----

  void RunnerLoop(int index) {
    while (!stopping.load()) {
      uint64_t seen = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        seen = wake_seq;
      }
      try {
        auto claimed =
            store->Claim(owner, {"embed"}, JobState::kRunning, options.lease.count(), NowMs());
        if (!claimed.ok()) {
          log::Warn("jobs: claim failed", {{"why", claimed.status().ToString()}});
        } else if (claimed->has_value()) {
          RunJob(**claimed);
          continue;
        }
      } catch (const std::exception& e) {
        log::Error("jobs: runner failed", {{"runner", std::to_string(index)}, {"why", e.what()}});
      }
      std::unique_lock<std::mutex> lock(mu);
      wake.wait_for(lock, options.poll_interval,
                    [&] { return stopping.load() || wake_seq != seen; });
    }
  }

  void RunJob(const Job& job) {
    auto abort = std::make_shared<std::atomic<bool>>(false);
    {
      std::lock_guard<std::mutex> lock(mu);
      running[job.id] = abort;
    }
    if (stopping.load()) abort->store(true);  // Shutdown swept `running` before this
    log::Info(
        "jobs: running",
        {{"id", job.id}, {"class", job.job_class}, {"attempt", std::to_string(job.attempts)}});
    auto spec = ParseEmbedPayload(job.payload, options.embed, options.data_dirs);
    Status result;
    Result<EmbedResult> done = Status(StatusCode::kInternal, "not run");
    if (!spec.ok()) {
      result = InvalidArgument(spec.error().message);
    } else {
      (void)store->SetOutput(job.id, owner, spec->output, "", NowMs());
      EmbedRunnerOptions ro;
      ro.client = client.get();
      ro.max_line_bytes = options.max_line_bytes;
      ro.request_timeout = options.request_timeout;
      ro.retry_window = options.retry_window;
      ro.stop = abort.get();
      ro.job_id = job.id;
      ro.on_progress = [&](int64_t items, int64_t total) {
        auto st = store->SetProgress(job.id, owner, items, total, NowMs());
        if (st.code() == StatusCode::kUnavailable) {  // busy: progress is not worth failing
          log::Warn("jobs: progress not stored", {{"id", job.id}, {"why", st.message()}});
          return OkStatus();
        }
        return st;
      };
      done = RunEmbedJob(*spec, ro);
      result = done.status();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      running.erase(job.id);
    }
    const int64_t now = NowMs();
    if (result.ok()) {
      std::string reason = std::to_string(done->embedded) + " embedded";
      if (done->failed > 0) {
        reason +=
            ", " + std::to_string(done->failed) + " failed (first: " + done->first_error + ")";
      }
      if (done->resumed > 0) reason += ", " + std::to_string(done->resumed) + " from a checkpoint";
      auto st = store->Transition(job.id, owner, JobState::kSucceeded, reason, now);
      if (!st.ok())
        log::Warn("jobs: cannot mark a job done", {{"id", job.id}, {"why", st.message()}});
      return;
    }
    if (result.code() == StatusCode::kCancelled ||
        result.code() == StatusCode::kFailedPrecondition) {
      if (stopping.load()) {
        auto st = store->Release(job.id, owner, "the job service stopped", now);
        if (!st.ok())
          log::Warn("jobs: cannot hand a job back", {{"id", job.id}, {"why", st.message()}});
        return;
      }
      // Cancelled by a user, or the lease went to another process.
      auto now_job = store->Get(job.id);
      if (now_job.ok() && now_job->state == JobState::kCancelled && spec.ok()) {
        RemoveEmbedPartials(*spec);
      }
      log::Info("jobs: stopped", {{"id", job.id}, {"why", result.message()}});
      return;
    }
    errors_total->WithLabels({job.job_class, FailureReason(result)}).Inc();
    auto st = store->Transition(job.id, owner, JobState::kFailed, result.message(), now);
    if (!st.ok())
      log::Warn("jobs: cannot mark a job failed", {{"id", job.id}, {"why", st.message()}});
    log::Info("jobs: failed", {{"id", job.id}, {"why", result.message()}});
  }

  // Renews the leases of the jobs running here, every third of a lease; a job whose
  // renewal is refused (cancelled, or taken over) is told to stop.
  void LeaseKeeperLoop() {
    const auto every = std::max(options.lease / 3, std::chrono::milliseconds(10));
    std::unique_lock<std::mutex> lock(mu);
    while (!keeper_stop.load()) {
      wake.wait_for(lock, every, [&] { return keeper_stop.load(); });
      if (keeper_stop.load()) return;
      auto jobs = running;
      lock.unlock();
      for (const auto& [id, abort] : jobs) {
        try {
          auto st = store->Renew(id, owner, options.lease.count(), NowMs());
          if (!st.ok() && st.code() != StatusCode::kUnavailable) {
            log::Info("jobs: lease refused; stopping the job", {{"id", id}, {"why", st.message()}});
            abort->store(true);
          }
        } catch (const std::exception& e) {
          log::Error("jobs: renewing a lease threw", {{"id", id}, {"why", e.what()}});
        }
      }
      lock.lock();
    }
  }

  // ---- HTTP ----

  bool Authorized(http::Request& q, http::Responder& r, bool admin) {
    const auto res = http::CheckRoleKeys(q, user_auth, admin_auth, admin);
    if (res == http::AuthResult::kOk) return true;
    if (res == http::AuthResult::kMissing) {
      ReplyError(r, ApiError{401, "Unauthorized",
                             "an API key is required: Authorization: Bearer <key>", ""});
    } else {
      ReplyError(r, ApiError{403, "Forbidden",
                             admin ? "cancelling needs the admin key (jobs.admin_key)"
                                   : "the API key is not valid",
                             ""});
    }
    return false;
  }

  std::shared_ptr<http::Router> Routes() {
    auto router = std::make_shared<http::Router>();
    router->Add("POST", "/queue/submit", [this](http::Request& q, http::Responder r) {
      if (!Authorized(q, r, false)) return;
      auto res = Submit(q.body);
      if (!res.ok()) return ReplyError(r, res.error());
      Reply(r, res->first, JobJson(res->second));
    });
    // The most recently updated jobs (newest first), for status pages: ?limit=1..200 (20).
    router->Add("GET", "/jobs", [this](http::Request& q, http::Responder r) {
      if (!Authorized(q, r, false)) return;
      int64_t limit = 20;
      for (std::string_view rest = q.query; !rest.empty();) {
        const size_t amp = rest.find('&');
        const std::string_view kv = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        if (!kv.starts_with("limit=")) continue;
        const std::string_view v = kv.substr(6);
        int64_t n = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > 200) {
          return ReplyError(
              r, JobsApiError(InvalidArgument("limit must be a whole number from 1 to 200, got '" +
                                              std::string(v) + "'")));
        }
        limit = n;
      }
      auto jobs = store->Recent(int(limit));
      if (!jobs.ok()) return ReplyError(r, JobsApiError(jobs.status()));
      std::string body = "{\"jobs\":[";
      for (size_t i = 0; i < jobs->size(); ++i) {
        if (i) body += ',';
        body += JobJson((*jobs)[i]);
      }
      body += "]}";
      Reply(r, 200, std::move(body));
    });
    router->Add("GET", "/jobs/{id}", [this](http::Request& q, http::Responder r) {
      if (!Authorized(q, r, false)) return;
      auto id = CheckJobId(q.path_params["id"]);
      if (!id.ok()) return ReplyError(r, id.error());
      auto job = store->Get(*id);
      if (!job.ok()) return ReplyError(r, JobsApiError(job.status()));
      Reply(r, 200, JobJson(*job));
    });
    router->Add("DELETE", "/jobs/{id}", [this](http::Request& q, http::Responder r) {
      if (!Authorized(q, r, true)) return;
      auto id = CheckJobId(q.path_params["id"]);
      if (!id.ok()) return ReplyError(r, id.error());
      auto job = store->Cancel(*id, "cancelled through the API", NowMs());
      if (!job.ok()) return ReplyError(r, JobsApiError(job.status()));
      {
        std::lock_guard<std::mutex> lock(mu);
        if (auto it = running.find(*id); it != running.end()) it->second->store(true);
      }
      if (slurm && !job->slurm_ids.empty()) {
        // scancel off the I/O thread; the executor retries it until it works.
        slurm_calls->Submit([this, j = *job] {
          (void)slurm->CancelSlurmJobs(j);
          slurm->Wake();
        });
      }
      Reply(r, 200, JobJson(*job));
    });
    router->Add("GET", "/slurm/status/{id}", [this](http::Request& q, http::Responder r) {
      if (!Authorized(q, r, false)) return;
      auto id = CheckJobId(q.path_params["id"]);
      if (!id.ok()) return ReplyError(r, id.error());
      auto job = store->Get(*id);
      if (!job.ok()) return ReplyError(r, JobsApiError(job.status()));
      if (job->job_class.rfind("slurm_", 0) != 0) {
        return ReplyError(
            r, ApiError{409, "Conflict",
                        "job '" + *id + "' is an " + job->job_class + " job, not a Slurm job", ""});
      }
      // The stored record, and what squeue says now (asked on the Slurm pool).
      if (slurm_calls->Stats().queued >= kMaxQueuedSlurmCalls) {
        return ReplyError(r, ApiError{503, "Unhealthy",
                                      "too many Slurm status calls are waiting; try again", ""});
      }
      auto shared = std::make_shared<http::Responder>(std::move(r));
      slurm_calls->Submit([this, shared, j = *job] {
        boost::json::object o = boost::json::parse(JobJson(j)).as_object();
        auto tasks = slurm->LiveTasks(j.id);
        if (tasks.ok()) {
          boost::json::array a;
          for (const auto& t : *tasks) {
            a.push_back({{"slurm_job_id", t.master_id}, {"id", t.id}, {"state", t.state}});
          }
          o["slurm_tasks"] = std::move(a);
        } else {
          o["slurm_tasks"] = nullptr;
          o["slurm_error"] = tasks.status().message();
        }
        Reply(*shared, 200, boost::json::serialize(o));
      });
    });
    router->Add("GET", "/queue/status", [this](http::Request& q, http::Responder r) {
      if (!Authorized(q, r, false)) return;
      auto counts = store->Counts();
      if (!counts.ok()) return ReplyError(r, JobsApiError(counts.status()));
      Reply(r, 200, QueueStatusJson(*counts));
    });
    router->Add("GET", "/health", [this](http::Request&, http::Responder r) {
      auto n = store->CountState(JobState::kRunning);
      if (!n.ok()) {
        return Reply(
            r, 503,
            ErrorJson(ApiError{503, "Unhealthy", "the job store: " + n.status().message(), ""}));
      }
      boost::json::object o;
      o["status"] = "ok";
      o["role"] = "jobs";
      o["version"] = kInfermeshVersion;
      o["owner"] = owner;
      o["slurm_reachable"] = slurm ? slurm->slurm_reachable() : false;
      Reply(r, 200, boost::json::serialize(o));
    });
    router->Add("GET", "/metrics", [this](http::Request&, http::Responder r) {
      if (auto counts = store->Counts(); counts.ok()) {
        // Every (class, state) seen so far is exported, 0 once it has emptied.
        std::lock_guard<std::mutex> lock(gauge_mu);
        for (const auto& [key, n] : *counts) gauge_keys.insert(key);
        for (const auto& key : gauge_keys) {
          auto it = counts->find(key);
          jobs_gauge->WithLabels({key.first, key.second})
              .Set(it == counts->end() ? 0.0 : static_cast<double>(it->second));
        }
      }
      http::Response res;
      res.content_type = std::string(metrics::kPrometheusContentType);
      res.body = metrics::Registry::Global().RenderText();
      r.Send(std::move(res));
    });
    return router;
  }
};

JobService::JobService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

JobService::~JobService() { Shutdown(); }

uint16_t JobService::port() const { return impl_->server ? impl_->server->port() : 0; }

Result<std::unique_ptr<JobService>> JobService::Start(JobServiceOptions options) {
  if (options.data_dirs.empty()) return InvalidArgument("jobs.data_dirs names no folder");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  Impl& im = *impl;
  IM_RETURN_IF_ERROR(im.Init());
  {
    SlurmExecutorOptions xo;
    xo.work_dir = im.options.slurm_work_dir.empty()
                      ? (fs::path(im.options.state_dir) / "slurm").string()
                      : im.options.slurm_work_dir;
    xo.bin_dir = im.options.slurm_bin_dir;
    xo.data_dirs = im.options.data_dirs;
    xo.command_timeout = im.options.slurm_command_timeout;
    xo.poll_max = im.options.slurm_poll_max;
    xo.max_requeues = im.options.slurm_max_requeues;
    xo.embed = im.options.embed;
    xo.infermesh_bin = im.options.slurm_infermesh_bin;
    im.slurm = std::make_unique<SlurmExecutor>(xo, im.store.get(), im.owner, im.options.lease);
    im.slurm_calls = std::make_unique<ThreadPool>("slurm-calls", 3);
    if (im.options.runners > 0) IM_RETURN_IF_ERROR(im.slurm->Start());
  }
  if (!im.options.spool_dir.empty()) {
    SpoolOptions so;
    so.dir = im.options.spool_dir;
    so.rescan = im.options.spool_rescan;
    so.max_file_bytes = im.options.max_body_bytes;
    IM_ASSIGN_OR_RETURN(
        im.spool, Spool::Start(
                      so,
                      [&im](const std::string& body) -> http::api::ApiResult<std::string> {
                        auto r = im.Submit(body);
                        if (!r.ok()) return r.error();
                        return r->second.id;
                      },
                      [&im](const std::string& id) -> std::optional<std::pair<bool, std::string>> {
                        auto j = im.store->Get(id);
                        if (!j.ok() || !IsTerminal(j->state)) return std::nullopt;
                        return std::make_pair(j->state == JobState::kSucceeded, j->error);
                      }));
  }
  http::ServerOptions so;
  so.host = im.options.host;
  so.port = im.options.port;
  so.io_threads = im.options.io_threads;
  so.max_body_bytes = im.options.max_body_bytes;
  so.limits = im.options.server_limits;
  so.metrics = &metrics::Registry::Global();
  IM_ASSIGN_OR_RETURN(im.server, http::HttpServer::Start(so, im.Routes()));
  for (int i = 0; i < im.options.runners; ++i) {
    im.runners.emplace_back([&im, i] { im.RunnerLoop(i); });
  }
  im.lease_keeper = std::thread([&im] { im.LeaseKeeperLoop(); });
  return std::unique_ptr<JobService>(new JobService(std::move(impl)));
}

void JobService::Shutdown() {
  if (!impl_) return;
  Impl& im = *impl_;
  if (im.stopping.exchange(true)) return;
  if (im.server) im.server->Shutdown(std::chrono::seconds(5));
  im.slurm_calls.reset();  // drains what requests started
  if (im.spool) im.spool->Stop();
  {
    std::lock_guard<std::mutex> lock(im.mu);
    for (auto& [id, abort] : im.running) abort->store(true);
  }
  im.wake.notify_all();
  if (im.slurm) im.slurm->Stop();
  // Requests in flight end now (Cancelled), so runners stop at once and hand their jobs
  // back while their leases, still renewed, are theirs.
  if (im.client) im.client->Shutdown();
  for (auto& t : im.runners) t.join();
  im.keeper_stop = true;
  im.wake.notify_all();
  if (im.lease_keeper.joinable()) im.lease_keeper.join();
}

Result<JobServiceOptions> JobServiceOptionsFromConfig(const Config& c) {
  JobServiceOptions o;
  IM_ASSIGN_OR_RETURN(o.host, c.GetString("jobs.host"));
  IM_ASSIGN_OR_RETURN(int64_t port, c.GetInt("jobs.port"));
  if (port < 0 || port > 65535) return InvalidArgument("jobs.port must be 0..65535");
  o.port = static_cast<uint16_t>(port);
  IM_ASSIGN_OR_RETURN(int64_t io, c.GetInt("jobs.io_threads"));
  if (io < 1 || io > 64) return InvalidArgument("jobs.io_threads must be 1..64");
  o.io_threads = static_cast<int>(io);
  IM_ASSIGN_OR_RETURN(o.state_dir, c.GetString("jobs.state_dir"));
  if (o.state_dir.empty()) return InvalidArgument("jobs.state_dir must not be empty");
  IM_ASSIGN_OR_RETURN(std::string dirs, c.GetString("jobs.data_dirs"));
  o.data_dirs = http::SplitKeyList(dirs);
  if (o.data_dirs.empty()) return InvalidArgument("jobs.data_dirs must name a folder");
  for (const auto& d : o.data_dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) {
      return InvalidArgument("jobs.data_dirs: '" + d + "' is not a folder");
    }
  }
  IM_ASSIGN_OR_RETURN(o.event_log, c.GetString("jobs.event_log"));
  IM_ASSIGN_OR_RETURN(o.spool_dir, c.GetString("jobs.spool_dir"));
  IM_ASSIGN_OR_RETURN(int64_t rescan, c.GetMillis("jobs.spool_rescan"));
  if (rescan < 10) return InvalidArgument("jobs.spool_rescan must be at least 10ms");
  o.spool_rescan = std::chrono::milliseconds(rescan);
  IM_ASSIGN_OR_RETURN(o.instance, c.GetString("jobs.instance"));
  if (auto ok = CheckJobId(o.instance); !ok.ok()) {
    return InvalidArgument("jobs.instance: " + ok.error().message);
  }
  IM_ASSIGN_OR_RETURN(int64_t runners, c.GetInt("jobs.runners"));
  if (runners < 0 || runners > 64) return InvalidArgument("jobs.runners must be 0..64");
  o.runners = static_cast<int>(runners);
  IM_ASSIGN_OR_RETURN(int64_t lease, c.GetMillis("jobs.lease"));
  if (lease < 100) return InvalidArgument("jobs.lease must be at least 100ms");
  o.lease = std::chrono::milliseconds(lease);
  IM_ASSIGN_OR_RETURN(int64_t attempts, c.GetInt("jobs.max_attempts"));
  if (attempts < 1 || attempts > 100) return InvalidArgument("jobs.max_attempts must be 1..100");
  o.max_attempts = static_cast<int>(attempts);
  IM_ASSIGN_OR_RETURN(o.max_queued, c.GetInt("jobs.max_queued"));
  if (o.max_queued < 1) return InvalidArgument("jobs.max_queued must be at least 1");
  IM_ASSIGN_OR_RETURN(int64_t body, c.GetBytes("jobs.max_body_bytes"));
  if (body < 1024) return InvalidArgument("jobs.max_body_bytes must be at least 1KiB");
  o.max_body_bytes = static_cast<size_t>(body);
  IM_ASSIGN_OR_RETURN(std::string keys, c.GetString("jobs.api_keys"));
  o.api_keys = http::SplitKeyList(keys);
  IM_ASSIGN_OR_RETURN(o.admin_key, c.GetString("jobs.admin_key"));
  IM_ASSIGN_OR_RETURN(o.embed.mesh_url, c.GetString("jobs.mesh_url"));
  IM_ASSIGN_OR_RETURN(int64_t chunk, c.GetInt("jobs.embed.chunk_items"));
  if (chunk < 1 || chunk > kMaxChunkItems) {
    return InvalidArgument("jobs.embed.chunk_items must be 1.." + std::to_string(kMaxChunkItems));
  }
  o.embed.chunk_items = static_cast<int>(chunk);
  IM_ASSIGN_OR_RETURN(int64_t conc, c.GetInt("jobs.embed.concurrency"));
  if (conc < 1 || conc > kMaxConcurrency) {
    return InvalidArgument("jobs.embed.concurrency must be 1.." + std::to_string(kMaxConcurrency));
  }
  o.embed.concurrency = static_cast<int>(conc);
  IM_ASSIGN_OR_RETURN(o.embed.max_errors, c.GetInt("jobs.embed.max_errors"));
  if (o.embed.max_errors < 0) return InvalidArgument("jobs.embed.max_errors must be >= 0");
  IM_ASSIGN_OR_RETURN(o.max_line_bytes, c.GetBytes("jobs.embed.max_line_bytes"));
  if (o.max_line_bytes < 16) return InvalidArgument("jobs.embed.max_line_bytes must be >= 16");
  IM_ASSIGN_OR_RETURN(int64_t rt, c.GetMillis("jobs.embed.request_timeout"));
  if (rt < 10) return InvalidArgument("jobs.embed.request_timeout must be at least 10ms");
  o.request_timeout = std::chrono::milliseconds(rt);
  IM_ASSIGN_OR_RETURN(int64_t rw, c.GetMillis("jobs.embed.retry_window"));
  o.retry_window = std::chrono::milliseconds(rw);
  IM_ASSIGN_OR_RETURN(o.slurm_work_dir, c.GetString("jobs.slurm.work_dir"));
  IM_ASSIGN_OR_RETURN(o.slurm_bin_dir, c.GetString("jobs.slurm.bin_dir"));
  IM_ASSIGN_OR_RETURN(o.slurm_infermesh_bin, c.GetString("jobs.slurm.infermesh_bin"));
  IM_ASSIGN_OR_RETURN(int64_t poll, c.GetMillis("jobs.slurm.poll_max"));
  if (poll < 100) return InvalidArgument("jobs.slurm.poll_max must be at least 100ms");
  o.slurm_poll_max = std::chrono::milliseconds(poll);
  IM_ASSIGN_OR_RETURN(int64_t cmd, c.GetMillis("jobs.slurm.command_timeout"));
  if (cmd < 100) return InvalidArgument("jobs.slurm.command_timeout must be at least 100ms");
  o.slurm_command_timeout = std::chrono::milliseconds(cmd);
  IM_ASSIGN_OR_RETURN(int64_t rq, c.GetInt("jobs.slurm.max_requeues"));
  if (rq < 0 || rq > 100) return InvalidArgument("jobs.slurm.max_requeues must be 0..100");
  o.slurm_max_requeues = static_cast<int>(rq);
  IM_ASSIGN_OR_RETURN(o.server_limits, http::ServerLimitsFromConfig(c));
  return o;
}

}  // namespace infermesh::jobs
