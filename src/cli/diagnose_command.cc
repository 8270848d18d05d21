// `infermesh diagnose [--url GATEWAY]`: checks a running mesh and prints one verdict per
// line (OK, WARN or FAIL), then exits 1 if any line failed.
//
//   infermesh diagnose                                   # the gateway on 127.0.0.1:8000
//   infermesh diagnose --url http://10.0.0.5:8000 --jobs http://10.0.0.5:8090 --json out.json
//
// What it checks: the gateway's readiness and version; each worker the gateway knows, its
// breaker, load, readiness and version asked of the worker itself; the clock skew of each
// worker (from its registration heartbeats, which carry their send time; else from the
// Date header of its answer, to the second); the Redis tier and the adaptive limiter as
// the gateway sees them; one test embedding (or /infer row) through the gateway and
// directly at a ready worker, which must be equal; the job service's health and whether it
// reaches Slurm. Pointed at a worker instead of a gateway, it checks that worker alone.
#include <sys/wait.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "core/version.h"
#include "http/client.h"

namespace infermesh::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct DiagnoseOptions {
  std::string url = "http://127.0.0.1:8000";
  std::string jobs;  // empty: jobs.url, and a failure to reach it is only a warning
  std::string key;   // bearer key (default $INFERMESH_API_KEY)
  double timeout_s = 5;
  double max_skew_ms = 1000;
  std::string json_out;
};

enum class Verdict { kOk, kWarn, kFail };
const char* Name(Verdict v) {
  return v == Verdict::kOk ? "OK" : v == Verdict::kWarn ? "WARN" : "FAIL";
}

struct Line {
  Verdict verdict;
  std::string component, message;
};

class Diagnosis {
 public:
  explicit Diagnosis(const DiagnoseOptions& o) : o_(o) {
    http::ClientOptions co;
    co.default_timeout = std::chrono::milliseconds(int64_t(o.timeout_s * 1000));
    co.connect_timeout = std::min(co.default_timeout, std::chrono::milliseconds(2000));
    client_ = http::HttpClient::Create(co);
  }

  void Add(Verdict v, std::string component, std::string message) {
    lines_.push_back({v, std::move(component), std::move(message)});
  }

  struct Answer {
    int status = 0;
    boost::json::value json;
    std::string body, error, date;
    double midpoint_unix_s = 0;  // our clock halfway through the call
  };

  Answer Call(const http::Endpoint& ep, const std::string& method, const std::string& target,
              const std::string& body = {}) {
    Answer a;
    http::ClientRequest req;
    req.method = method;
    req.target = target;
    req.body = body;
    if (!body.empty()) req.content_type = "application/json";
    if (!o_.key.empty()) req.headers.emplace_back("authorization", "Bearer " + o_.key);
    const auto before = std::chrono::system_clock::now();
    auto r = client_->SendSync(ep, std::move(req));
    const auto after = std::chrono::system_clock::now();
    a.midpoint_unix_s =
        std::chrono::duration<double>((before + (after - before) / 2).time_since_epoch()).count();
    if (!r.ok()) {
      a.error = r.status().message();
      return a;
    }
    a.status = r->status;
    a.body = r->body;
    a.date = std::string(r->Header("date"));
    boost::system::error_code ec;
    a.json = boost::json::parse(r->body, ec);
    if (ec) a.json = nullptr;
    return a;
  }

  int Run() {
    auto gw = http::ParseEndpoint(o_.url);
    if (!gw.ok()) {
      std::cerr << "error: --url: " << gw.status().message() << "\n";
      return 2;
    }
    const Answer h = Call(*gw, "GET", "/health");
    if (!h.error.empty()) {
      Add(Verdict::kFail, "gateway", o_.url + " unreachable: " + h.error);
      return Finish();
    }
    const std::string role = Str(h.json, "role");
    if (role == "worker" || (role.empty() && !Has(h.json, "workers_ready"))) {
      CheckWorker("worker", *gw, nullptr);
      return Finish();
    }
    const int64_t ready = Int(h.json, "workers_ready"), total = Int(h.json, "workers");
    const std::string version = Str(h.json, "version");
    Add(h.status == 200 ? Verdict::kOk : Verdict::kFail, "gateway",
        (h.status == 200 ? "ready" : "NOT ready (" + std::to_string(h.status) + ")") +
            std::string(", version ") + (version.empty() ? "?" : version) + ", " +
            std::to_string(ready) + " of " + std::to_string(total) + " workers ready");
    if (!version.empty() && version != kInfermeshVersion) {
      Add(Verdict::kWarn, "gateway",
          "version " + version + " differs from this tool's " + kInfermeshVersion);
    }
    const Answer st = Call(*gw, "GET", "/stats");
    if (st.status != 200 || !st.json.is_object()) {
      Add(Verdict::kFail, "gateway",
          "/stats answered " + std::to_string(st.status) + " " + st.error);
      return Finish();
    }
    const auto& stats = st.json.as_object();
    std::optional<http::Endpoint> first_ready;
    if (const auto* cbs = stats.if_contains("circuit_breakers"); cbs && cbs->is_array()) {
      if (cbs->as_array().empty()) Add(Verdict::kFail, "workers", "the gateway knows no worker");
      for (const auto& w : cbs->as_array()) {
        const std::string node = Str(w, "node");
        auto ep = http::ParseEndpoint(node);
        if (!ep.ok()) {
          Add(Verdict::kFail, "worker " + node, "unparsable address");
          continue;
        }
        if (CheckWorker("worker " + node, *ep, &w) && !first_ready) first_ready = *ep;
      }
    }
    CheckLimiterAndRedis(stats);
    if (first_ready) {
      CompareEmbeddings(*gw, *first_ready);
    } else {
      Add(Verdict::kFail, "embedding", "no ready worker to compare the gateway's answer with");
    }
    CheckJobs();
    CheckLocalSlurm();
    return Finish();
  }

 private:
  static bool Has(const boost::json::value& v, const char* k) {
    return v.is_object() && v.as_object().if_contains(k) != nullptr;
  }
  static std::string Str(const boost::json::value& v, const char* k) {
    const auto* p = v.is_object() ? v.as_object().if_contains(k) : nullptr;
    return p && p->is_string() ? std::string(p->as_string()) : std::string();
  }
  static int64_t Int(const boost::json::value& v, const char* k) {
    const auto* p = v.is_object() ? v.as_object().if_contains(k) : nullptr;
    if (!p) return 0;
    if (p->is_int64()) return p->as_int64();
    if (p->is_uint64()) return int64_t(p->as_uint64());
    if (p->is_double()) return int64_t(p->as_double());
    return 0;
  }
  static double Num(const boost::json::value& v, const char* k) {
    const auto* p = v.is_object() ? v.as_object().if_contains(k) : nullptr;
    if (!p) return 0;
    if (p->is_double()) return p->as_double();
    if (p->is_int64()) return double(p->as_int64());
    if (p->is_uint64()) return double(p->as_uint64());
    return 0;
  }
  static bool Bool(const boost::json::value& v, const char* k) {
    const auto* p = v.is_object() ? v.as_object().if_contains(k) : nullptr;
    return p && p->is_bool() && p->as_bool();
  }

  // "Tue, 15 Nov 1994 08:12:31 GMT" -> Unix seconds; -1 when unparsable.
  static double ParseHttpDate(const std::string& d) {
    std::tm tm{};
    std::istringstream in(d);
    in >> std::get_time(&tm, "%a, %d %b %Y %H:%M:%S");
    if (in.fail()) return -1;
    return double(timegm(&tm));
  }

  // The worker's own view, and the gateway's (`gw_view`, its /stats entry). True when the
  // worker is ready.
  bool CheckWorker(const std::string& name, const http::Endpoint& ep,
                   const boost::json::value* gw_view) {
    const Answer h = Call(ep, "GET", "/health");
    if (!h.error.empty()) {
      Add(Verdict::kFail, name, "unreachable: " + h.error);
      return false;
    }
    const Answer info = Call(ep, "GET", "/info");
    std::string version = Str(info.json, "version");
    std::ostringstream msg;
    const bool ready = h.status == 200;
    msg << (ready ? "ready" : "NOT ready (" + std::to_string(h.status) + ")") << ", version "
        << (version.empty() ? "?" : version);
    Verdict v = ready ? Verdict::kOk : Verdict::kFail;
    if (gw_view) {
      const std::string state = Str(*gw_view, "state");
      msg << ", breaker " << state << ", " << Int(*gw_view, "outstanding_tokens")
          << " tokens outstanding, " << Int(*gw_view, "sub_batches_sent") << " sub-batches sent, "
          << Int(*gw_view, "failures") << " failures, " << Int(*gw_view, "backpressure")
          << " x 429";
      if (Bool(*gw_view, "drained")) {
        msg << ", drained";
        if (v == Verdict::kOk) v = Verdict::kWarn;
      }
      if (Bool(*gw_view, "ejected")) {
        msg << ", ejected";
        if (v == Verdict::kOk) v = Verdict::kWarn;
      }
      if (state != "closed") {
        if (v == Verdict::kOk) v = Verdict::kWarn;
      }
      if (ready && !Bool(*gw_view, "ready")) {
        msg << ", but the gateway does not route to it";
        v = Verdict::kFail;
      }
    }
    Add(v, name, msg.str());
    // Clock skew: from heartbeats (ms), else from the Date header (to the second).
    const auto* skew = gw_view && gw_view->is_object()
                           ? gw_view->as_object().if_contains("clock_skew_ms")
                           : nullptr;
    std::ostringstream sk;
    double skew_ms = 0;
    bool known = false;
    if (skew && (skew->is_int64() || skew->is_double())) {
      skew_ms = skew->is_int64() ? double(skew->as_int64()) : skew->as_double();
      sk << "clock " << std::showpos << skew_ms << std::noshowpos
         << " ms behind the gateway's (from its heartbeats)";
      known = true;
    } else if (const double d = ParseHttpDate(h.date); d > 0) {
      // A Date header is truncated to the second: up to 1 s of apparent skew is nothing.
      const double diff_ms = (h.midpoint_unix_s - d) * 1000;
      skew_ms = std::abs(diff_ms) <= 1000 ? 0 : diff_ms - std::copysign(1000.0, diff_ms);
      sk << "clock within " << std::abs(skew_ms) + 1000
         << " ms of this machine's (Date header, 1 s resolution)";
      known = true;
    }
    if (known) {
      const bool off = std::abs(skew_ms) > o_.max_skew_ms;
      Add(off ? Verdict::kWarn : Verdict::kOk, name,
          sk.str() + (off ? "; over --max-skew-ms " + std::to_string(int64_t(o_.max_skew_ms))
                          : std::string()));
    }
    return ready && (!gw_view || Bool(*gw_view, "ready"));
  }

  void CheckLimiterAndRedis(const boost::json::object& stats) {
    if (const auto* lim = stats.if_contains("limiter"); lim && lim->is_object()) {
      std::ostringstream m;
      if (Bool(*lim, "enabled")) {
        m << "adaptive limit " << Int(*lim, "limit") << ", " << Int(*lim, "in_flight")
          << " in flight, " << Int(*lim, "rejected") << " refused (429) so far, min RTT "
          << Num(*lim, "min_rtt_ms") << " ms";
      } else {
        m << "adaptive limit off";
      }
      Add(Verdict::kOk, "limiter", m.str());
    }
    const auto* redis = stats.if_contains("redis");
    if (!redis || !redis->is_object()) {
      Add(Verdict::kOk, "redis", "not configured (gateway.redis)");
      return;
    }
    std::ostringstream m;
    const bool open = Bool(*redis, "breaker_open");
    m << (open ? "UNREACHABLE (its breaker is open; requests are answered without it)"
               : "reachable")
      << ", " << Int(*redis, "hits") << " hits, " << Int(*redis, "misses") << " misses, "
      << Int(*redis, "errors") << " errors";
    Add(open ? Verdict::kWarn : Verdict::kOk, "redis", m.str());
  }

  static std::vector<double> Floats(const boost::json::value& v) {
    std::vector<double> out;
    auto add = [&out](const boost::json::value& x) {
      if (x.is_double()) out.push_back(x.as_double());
      if (x.is_int64()) out.push_back(double(x.as_int64()));
    };
    if (!v.is_array()) return out;
    for (const auto& x : v.as_array()) {
      if (x.is_array()) {
        for (const auto& y : x.as_array()) add(y);
      } else {
        add(x);
      }
    }
    return out;
  }

  void CompareEmbeddings(const http::Endpoint& gw, const http::Endpoint& worker) {
    std::mt19937_64 rng(std::random_device{}());
    const std::string text = "infermesh diagnose probe " + std::to_string(rng() % 1000000007);
    const std::string body = boost::json::serialize(
        boost::json::object{{"inputs", boost::json::array{boost::json::value(text)}}});
    Answer via = Call(gw, "POST", "/embed", body);
    Answer direct;
    std::string what = "embedding";
    std::vector<double> a, b;
    if (via.status == 200) {
      direct = Call(worker, "POST", "/embed", body);
      a = Floats(via.json);
      b = Floats(direct.json);
    } else {
      // No text model: a tensor row through /infer instead.
      const Answer st = Call(gw, "GET", "/info");
      (void)st;
      boost::json::array row;
      for (int i = 0; i < 64; ++i) row.push_back(double(i % 7) / 7);
      const std::string ib = boost::json::serialize(
          boost::json::object{{"request_id", "diagnose"}, {"input_data", row}});
      via = Call(gw, "POST", "/infer", ib);
      if (via.status != 200) {
        Add(Verdict::kFail, "embedding",
            "the gateway answered " + std::to_string(via.status) + " " + via.error +
                via.body.substr(0, 200));
        return;
      }
      direct = Call(worker, "POST", "/infer", ib);
      what = "/infer row";
      a = Floats(via.json.is_object() ? via.json.as_object()["output_data"] : via.json);
      b = Floats(direct.json.is_object() ? direct.json.as_object()["output_data"] : direct.json);
    }
    if (direct.status != 200) {
      Add(Verdict::kFail, "embedding",
          "the worker answered " + std::to_string(direct.status) + " " + direct.error);
      return;
    }
    if (a.empty() || a.size() != b.size()) {
      Add(Verdict::kFail, "embedding",
          "gateway and worker answers differ in size: " + std::to_string(a.size()) + " vs " +
              std::to_string(b.size()));
      return;
    }
    double max_diff = 0;
    for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
    std::ostringstream m;
    m << "a test " << what << " through the gateway equals one from " << worker.ToString() << " ("
      << a.size() << " values, max difference " << max_diff << ")";
    if (max_diff > 1e-6) {
      Add(Verdict::kFail, "embedding",
          "the gateway's " + what + " DIFFERS from " + worker.ToString() + "'s: max difference " +
              std::to_string(max_diff));
      return;
    }
    Add(Verdict::kOk, "embedding", m.str());
  }

  void CheckJobs() {
    std::string url = o_.jobs;
    const bool explicit_url = !url.empty();
    if (!explicit_url) {
      auto config = LoadConfig();
      if (config.ok()) url = config->GetString("jobs.url").value();
    }
    auto ep = http::ParseEndpoint(url);
    if (!ep.ok()) {
      Add(Verdict::kFail, "jobs", "--jobs: " + ep.status().message());
      return;
    }
    const Answer h = Call(*ep, "GET", "/health");
    if (!h.error.empty()) {
      Add(explicit_url ? Verdict::kFail : Verdict::kWarn, "jobs",
          url + " unreachable: " + h.error +
              (explicit_url ? "" : " (give --jobs URL to check it)"));
      return;
    }
    const std::string version = Str(h.json, "version");
    Add(h.status == 200 ? Verdict::kOk : Verdict::kFail, "jobs",
        (h.status == 200 ? "ready" : "NOT ready (" + std::to_string(h.status) + ")") +
            std::string(", version ") + (version.empty() ? "?" : version) + " at " + url);
    // The service asks Slurm only while Slurm jobs are live: this is its last answer.
    if (Bool(h.json, "slurm_reachable")) {
      Add(Verdict::kOk, "slurm", "the job service has seen no failed Slurm command");
    } else {
      Add(Verdict::kWarn, "slurm",
          "the job service's last Slurm command failed (sbatch/squeue missing or the "
          "controller down); Slurm jobs wait until it answers");
    }
  }

  // Slurm as this machine sees it: `sinfo` when it is installed.
  void CheckLocalSlurm() {
    FILE* p = popen(
        "command -v sinfo >/dev/null 2>&1 || exit 127; "
        "timeout 10 sinfo -h -o '%P %a %D %t' 2>&1",
        "r");
    if (!p) return;
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) {
      if (out.size() < 2000) out += buf;
    }
    const int rc = pclose(p);
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code == 127) {
      Add(Verdict::kOk, "slurm", "sinfo not installed on this machine (not checked from here)");
      return;
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    for (char& c : out) {
      if (c == '\n') c = ';';
    }
    if (code == 0) {
      Add(Verdict::kOk, "slurm", "sinfo answers from this machine: " + out);
    } else {
      Add(Verdict::kWarn, "slurm", "sinfo fails from this machine: " + out);
    }
  }

  int Finish() {
    bool failed = false;
    boost::json::array out;
    for (const auto& l : lines_) {
      failed = failed || l.verdict == Verdict::kFail;
      std::string comp = l.component;
      if (comp.size() < 24) comp.resize(24, ' ');
      std::cout << Name(l.verdict) << (l.verdict == Verdict::kOk ? "    " : "  ") << comp << " "
                << l.message << "\n";
      out.push_back(boost::json::object{
          {"verdict", Name(l.verdict)}, {"component", l.component}, {"message", l.message}});
    }
    std::cout << (failed ? "verdict: FAIL" : "verdict: OK") << "\n";
    if (!o_.json_out.empty()) {
      std::ofstream f(o_.json_out);
      f << boost::json::serialize(boost::json::object{{"ok", !failed}, {"checks", out}}) << "\n";
    }
    return failed ? 1 : 0;
  }

  const DiagnoseOptions& o_;
  std::unique_ptr<http::HttpClient> client_;
  std::vector<Line> lines_;
};

}  // namespace

void AddDiagnoseCommand(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<DiagnoseOptions>();
  CLI::App* cmd = app.add_subcommand(
      "diagnose", "Check a running mesh: every component, a test embedding, clocks, Redis, Slurm");
  AddCommonOptions(cmd, {});
  cmd->add_option("--url", o->url, "The gateway (or one worker)")->capture_default_str();
  cmd->add_option("--jobs", o->jobs, "The job service (default jobs.url; unreachable: a warning)");
  cmd->add_option("--key", o->key, "API key (default $INFERMESH_API_KEY)");
  cmd->add_option("--timeout", o->timeout_s, "Seconds per call")->capture_default_str();
  cmd->add_option("--max-skew-ms", o->max_skew_ms, "Clock skew beyond which a worker warns")
      ->capture_default_str();
  cmd->add_option("--json", o->json_out, "Also write the checks as JSON to this file");
  cmd->callback([o, &exit_code] {
    if (o->key.empty()) {
      if (const char* k = std::getenv("INFERMESH_API_KEY")) o->key = k;
    }
    Diagnosis d(*o);
    exit_code = d.Run();
  });
}

}  // namespace infermesh::cli
