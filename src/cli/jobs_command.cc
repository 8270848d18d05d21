// `infermesh jobs serve | submit | status | watch | cancel`: the job service
// (src/jobs/service.h) and its client.
//
//   infermesh jobs serve [--port P] [--spool DIR]
//   infermesh jobs submit --id corpus-1 --class embed --payload '{"input": ..., "output": ...}'
//   infermesh jobs submit --file submission.json
//   infermesh jobs status [ID]          # one job, or the queue by class and state
//   infermesh jobs watch ID             # a live bar on a terminal, plain lines otherwise
//   infermesh jobs cancel ID
//
// The client talks to jobs.url (--url) with the key in --key or INFERMESH_JOBS_KEY.
// Exit status: 0 on success (watch: the job succeeded), 1 when the service answered
// with an error (watch: the job failed or was cancelled), 2 for bad usage or when the
// service cannot be reached.
#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "core/log.h"
#include "http/client.h"
#include "jobs/service.h"

namespace infermesh::cli {
namespace {

struct JobsCliOptions {
  // serve
  std::string host;
  int port = -1;
  std::string spool;
  std::string data_dirs;
  std::string state_dir;
  // client
  std::string url;
  std::string key;
  std::string id, job_class, payload, file;
  double interval = 0.5;
};

int Serve(const JobsCliOptions& cli) {
  BlockStopSignals();
  auto config = LoadConfig();
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  if (!cli.host.empty()) (void)config->Set("jobs.host", cli.host, "flag");
  if (cli.port >= 0) (void)config->Set("jobs.port", std::to_string(cli.port), "flag");
  if (!cli.spool.empty()) (void)config->Set("jobs.spool_dir", cli.spool, "flag");
  if (!cli.data_dirs.empty()) (void)config->Set("jobs.data_dirs", cli.data_dirs, "flag");
  if (!cli.state_dir.empty()) (void)config->Set("jobs.state_dir", cli.state_dir, "flag");
  auto options = jobs::JobServiceOptionsFromConfig(*config);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return 2;
  }
  auto service = jobs::JobService::Start(*options);
  if (!service.ok()) {
    std::cerr << "error: " << service.status().ToString() << "\n";
    return 1;
  }
  std::cout << "infermesh jobs listening on " << options->host << ":" << (*service)->port()
            << std::endl;
  WaitForStopSignal();
  (*service)->Shutdown();
  return 0;
}

// The service's answer, or exit code 2 after printing why it could not be reached.
struct Call {
  int exit_code = 0;
  int status = 0;
  std::string body;
};

Call Request(const JobsCliOptions& cli, const std::string& method, const std::string& target,
             std::string body = {}) {
  Call call;
  std::string url = cli.url;
  std::string key = cli.key;
  if (url.empty() || key.empty()) {
    auto config = LoadConfig();
    if (!config.ok()) {
      std::cerr << "error: " << config.status().message() << "\n";
      call.exit_code = 2;
      return call;
    }
    if (url.empty()) url = config->GetString("jobs.url").value();
  }
  if (key.empty()) {
    if (const char* k = std::getenv("INFERMESH_JOBS_KEY")) key = k;
  }
  auto ep = http::ParseEndpoint(url);
  if (!ep.ok()) {
    std::cerr << "error: --url: " << ep.status().message() << "\n";
    call.exit_code = 2;
    return call;
  }
  http::ClientOptions co;
  co.default_timeout = std::chrono::seconds(30);
  auto client = http::HttpClient::Create(co);
  http::ClientRequest req;
  req.method = method;
  req.target = target;
  req.body = std::move(body);
  if (!req.body.empty()) req.content_type = "application/json";
  if (!key.empty()) req.headers.emplace_back("authorization", "Bearer " + key);
  auto r = client->SendSync(*ep, std::move(req));
  if (!r.ok()) {
    std::cerr << "error: the job service at " << url << ": " << r.status().message() << "\n";
    call.exit_code = 2;
    return call;
  }
  call.status = r->status;
  call.body = std::move(r->body);
  if (call.status >= 400) {
    std::cerr << "error: HTTP " << call.status << ": " << call.body << "\n";
    call.exit_code = 1;
  }
  return call;
}

int Submit(const JobsCliOptions& cli) {
  std::string body;
  if (!cli.file.empty()) {
    std::ifstream f(cli.file, std::ios::binary);
    if (!f) {
      std::cerr << "error: cannot read " << cli.file << "\n";
      return 2;
    }
    std::ostringstream ss;
    ss << f.rdbuf();
    body = ss.str();
  } else {
    if (cli.id.empty() || cli.job_class.empty() || cli.payload.empty()) {
      std::cerr << "error: give --file, or --id, --class and --payload\n";
      return 2;
    }
    boost::system::error_code ec;
    boost::json::value payload = boost::json::parse(cli.payload, ec);
    if (ec) {
      std::cerr << "error: --payload is not JSON: " << ec.message() << "\n";
      return 2;
    }
    boost::json::object o;
    o["id"] = cli.id;
    o["class"] = cli.job_class;
    o["payload"] = std::move(payload);
    body = boost::json::serialize(o);
  }
  Call c = Request(cli, "POST", "/queue/submit", std::move(body));
  if (c.exit_code == 0) std::cout << c.body << "\n";
  return c.exit_code;
}

int Status(const JobsCliOptions& cli) {
  Call c = Request(cli, "GET", cli.id.empty() ? "/queue/status" : "/jobs/" + cli.id);
  if (c.exit_code == 0) std::cout << c.body << "\n";
  return c.exit_code;
}

int Cancel(const JobsCliOptions& cli) {
  Call c = Request(cli, "DELETE", "/jobs/" + cli.id);
  if (c.exit_code == 0) std::cout << c.body << "\n";
  return c.exit_code;
}

int Watch(const JobsCliOptions& cli) {
  const bool tty = ::isatty(1) != 0;
  std::string last_line;
  for (;;) {
    Call c = Request(cli, "GET", "/jobs/" + cli.id);
    if (c.exit_code != 0) return c.exit_code;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(c.body, ec);
    if (ec || !v.is_object()) {
      std::cerr << "error: the service's answer is not a job: " << c.body << "\n";
      return 1;
    }
    const auto& o = v.as_object();
    const std::string state(o.at("state").as_string());
    const auto& progress = o.at("progress").as_object();
    const int64_t done = progress.at("done").as_int64();
    const int64_t total = progress.at("total").as_int64();
    const double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
    std::ostringstream line;
    if (tty) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(frac * kWidth);
      line << "\r[" << std::string(filled, '#') << std::string(kWidth - filled, ' ') << "] ";
    }
    line << cli.id << " " << state << " " << done << "/" << total << " ("
         << static_cast<int>(frac * 100) << "%)";
    if (tty) {
      std::cout << line.str() << "\x1b[K" << std::flush;
    } else if (line.str() != last_line) {
      std::cout << line.str() << std::endl;
    }
    last_line = line.str();
    if (state == "succeeded" || state == "failed" || state == "cancelled") {
      if (tty) std::cout << "\n";
      const std::string error(o.at("error").as_string());
      if (!error.empty())
        std::cout << (state == "succeeded" ? "note: " : "error: ") << error << "\n";
      if (state == "succeeded")
        std::cout << "output: " << std::string(o.at("output").as_string()) << "\n";
      return state == "succeeded" ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(cli.interval * 1000)));
  }
}

}  // namespace

void AddJobsCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<JobsCliOptions>();
  CLI::App* jobs = app.add_subcommand("jobs", "The job service: durable batch embedding");
  jobs->require_subcommand(1);
  auto client_flags = [opts](CLI::App* cmd) {
    AddCommonOptions(cmd, {});
    cmd->add_option("--url", opts->url, "The job service (jobs.url)");
    cmd->add_option("--key", opts->key, "API key (default: $INFERMESH_JOBS_KEY)");
  };
  CLI::App* serve = jobs->add_subcommand("serve", "Run the job service");
  AddCommonOptions(serve, {"jobs.", "server."});
  serve->add_option("--host", opts->host, "Listen address (jobs.host)");
  serve->add_option("--port", opts->port, "Listen port, 0 = ephemeral (jobs.port)");
  serve->add_option("--spool", opts->spool, "Spool folder (jobs.spool_dir)");
  serve->add_option("--data-dirs", opts->data_dirs, "Folders jobs may use (jobs.data_dirs)");
  serve->add_option("--state-dir", opts->state_dir, "Store folder (jobs.state_dir)");
  serve->callback([opts, &exit_code] { exit_code = Serve(*opts); });

  CLI::App* submit = jobs->add_subcommand("submit", "Submit a job");
  client_flags(submit);
  submit->add_option("--id", opts->id, "The job's id (its idempotency key)");
  submit->add_option("--class", opts->job_class, "embed (slurm_script, slurm_embed: not yet)");
  submit->add_option("--payload", opts->payload, "The payload, a JSON object");
  submit->add_option("--file", opts->file, "A whole submission body from a file");
  submit->callback([opts, &exit_code] { exit_code = Submit(*opts); });

  CLI::App* status = jobs->add_subcommand("status", "A job's state, or the queue's");
  client_flags(status);
  status->add_option("id", opts->id, "The job (none: the queue by class and state)");
  status->callback([opts, &exit_code] { exit_code = Status(*opts); });

  CLI::App* watch = jobs->add_subcommand("watch", "Follow a job until it ends");
  client_flags(watch);
  watch->add_option("id", opts->id, "The job")->required();
  watch->add_option("--interval", opts->interval, "Seconds between polls")
      ->check(CLI::Range(0.05, 60.0));
  watch->callback([opts, &exit_code] { exit_code = Watch(*opts); });

  CLI::App* cancel = jobs->add_subcommand("cancel", "Cancel a job (the admin key)");
  client_flags(cancel);
  cancel->add_option("id", opts->id, "The job")->required();
  cancel->callback([opts, &exit_code] { exit_code = Cancel(*opts); });
}

}  // namespace infermesh::cli
