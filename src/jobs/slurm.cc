#include "jobs/slurm.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>

#include "core/failpoint.h"
#include "jobs/api.h"

namespace infermesh::jobs {

namespace fs = std::filesystem;
using http::api::ApiError;
using http::api::ApiResult;

namespace {

ApiError Bad(std::string param, std::string message) {
  return ApiError{400, std::string(http::api::kTeiValidation), std::move(message),
                  std::move(param)};
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::optional<int64_t> ToInt(std::string_view s) {
  if (!AllDigits(s) || s.size() > 12) return std::nullopt;
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// <n>[K|M|G|T], n > 0.
bool ValidMem(std::string_view m) {
  if (m.empty()) return false;
  std::string_view n = m;
  if (char u = m.back(); u == 'K' || u == 'M' || u == 'G' || u == 'T') n.remove_suffix(1);
  auto v = ToInt(n);
  return v && *v > 0;
}

// Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (all numbers).
bool ValidTime(std::string_view t) {
  if (t.empty() || t.size() > 20) return false;
  std::string_view rest = t;
  if (auto dash = t.find('-'); dash != std::string_view::npos) {
    if (!AllDigits(t.substr(0, dash))) return false;
    rest = t.substr(dash + 1);
    if (rest.empty()) return false;
  }
  int parts = 0;
  while (true) {
    const size_t colon = rest.find(':');
    if (!AllDigits(rest.substr(0, colon))) return false;
    ++parts;
    if (colon == std::string_view::npos) break;
    rest = rest.substr(colon + 1);
  }
  return parts <= 3 && !(t.find('-') != std::string_view::npos && parts > 3);
}

bool ValidName(std::string_view p) {
  if (p.empty() || p.size() > 64) return false;
  for (char c : p) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::optional<std::vector<int64_t>> ArrayTasks(std::string_view array) {
  if (array.empty()) return std::vector<int64_t>{0};
  if (auto pct = array.find('%'); pct != std::string_view::npos) {
    auto limit = ToInt(array.substr(pct + 1));
    if (!limit || *limit < 1) return std::nullopt;
    array = array.substr(0, pct);
  }
  std::vector<int64_t> tasks;
  std::string_view rest = array;
  while (true) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    int64_t step = 1;
    if (auto colon = item.find(':'); colon != std::string_view::npos) {
      auto s = ToInt(item.substr(colon + 1));
      if (!s || *s < 1) return std::nullopt;
      step = *s;
      item = item.substr(0, colon);
    }
    int64_t lo = 0, hi = 0;
    if (auto dash = item.find('-'); dash != std::string_view::npos) {
      auto a = ToInt(item.substr(0, dash));
      auto b = ToInt(item.substr(dash + 1));
      if (!a || !b || *b < *a) return std::nullopt;
      lo = *a;
      hi = *b;
    } else {
      auto a = ToInt(item);
      if (!a) return std::nullopt;
      lo = hi = *a;
    }
    for (int64_t t = lo; t <= hi; t += step) {
      tasks.push_back(t);
      if (static_cast<int64_t>(tasks.size()) > kMaxArrayTasks) return std::nullopt;
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  if (tasks.empty()) return std::nullopt;
  return tasks;
}

ApiResult<SlurmScriptSpec> ParseSlurmScriptPayload(std::string_view payload,
                                                   const std::vector<std::string>& data_dirs) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(payload, ec);
  if (ec || !v.is_object()) return Bad("payload", "the payload must be a JSON object");
  const auto& o = v.as_object();
  static constexpr std::string_view kFields[] = {
      "script", "script_file", "nodes",     "gpus_per_node", "cpus_per_task",
      "mem",    "time",        "partition", "array",         "requeue"};
  for (const auto& kv : o) {
    bool known = false;
    for (auto f : kFields) known = known || kv.key() == f;
    if (!known) {
      return Bad(std::string(kv.key()),
                 "unknown slurm_script payload field '" + std::string(kv.key()) + "'");
    }
  }
  SlurmScriptSpec spec;
  auto str = [&](const char* key, std::string* out) -> std::optional<ApiError> {
    const auto* x = o.if_contains(key);
    if (x == nullptr || x->is_null()) return std::nullopt;
    if (!x->is_string()) return Bad(key, std::string("payload.") + key + " must be a string");
    *out = std::string(x->as_string());
    return std::nullopt;
  };
  auto num = [&](const char* key, int* out, int lo, int hi) -> std::optional<ApiError> {
    const auto* x = o.if_contains(key);
    if (x == nullptr || x->is_null()) return std::nullopt;
    if (!x->is_int64() || x->as_int64() < lo || x->as_int64() > hi) {
      return Bad(key, std::string("payload.") + key + " must be an integer from " +
                          std::to_string(lo) + " to " + std::to_string(hi));
    }
    *out = static_cast<int>(x->as_int64());
    return std::nullopt;
  };
  std::string script_file;
  for (auto e : {str("script", &spec.script), str("script_file", &script_file),
                 str("mem", &spec.mem), str("time", &spec.time), str("partition", &spec.partition),
                 str("array", &spec.array), num("nodes", &spec.nodes, 1, kMaxSlurmNodes),
                 num("gpus_per_node", &spec.gpus_per_node, 0, kMaxGpusPerNode),
                 num("cpus_per_task", &spec.cpus_per_task, 1, kMaxCpusPerTask)}) {
    if (e) return *e;
  }
  if (const auto* r = o.if_contains("requeue"); r && !r->is_null()) {
    if (!r->is_bool()) return Bad("requeue", "payload.requeue must be true or false");
    spec.requeue = r->as_bool();
  }
  if (spec.script.empty() == script_file.empty()) {
    return Bad("script", "a slurm_script payload needs exactly one of 'script' and 'script_file'");
  }
  if (!script_file.empty()) {
    std::error_code fec;
    const std::string resolved =
        fs::weakly_canonical(fs::absolute(fs::path(script_file), fec), fec).string();
    bool inside = false;
    for (const auto& d : data_dirs) inside = inside || PathInside(resolved, d);
    if (!inside) {
      return ApiError{
          403, "Forbidden",
          "payload.script_file '" + script_file + "' is outside the data folders (jobs.data_dirs)",
          "script_file"};
    }
    // Non-blocking and not following a final link (a FIFO must not hang the caller), a
    // regular file checked on the open descriptor, and never more read than allowed.
    const int fd = ::open(resolved.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (fd >= 0) ::close(fd);
      return Bad("script_file", "payload.script_file '" + script_file + "' is not a readable file");
    }
    std::string body(kMaxScriptBytes + 1, '\0');
    size_t got = 0;
    while (got < body.size()) {
      const ssize_t n = ::read(fd, body.data() + got, body.size() - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    body.resize(got);
    spec.script = std::move(body);
  }
  if (spec.script.size() > kMaxScriptBytes) {
    return Bad("script", "the script is larger than " + std::to_string(kMaxScriptBytes) + " bytes");
  }
  if (spec.script.find('\0') != std::string::npos) return Bad("script", "the script contains NUL");
  if (!spec.mem.empty() && !ValidMem(spec.mem)) {
    return Bad("mem",
               "payload.mem must be a positive size such as 512M or 4G, got '" + spec.mem + "'");
  }
  if (!spec.time.empty() && !ValidTime(spec.time)) {
    return Bad("time", "payload.time must be a Slurm time (minutes, H:M:S or D-H:M:S), got '" +
                           spec.time + "'");
  }
  if (!spec.partition.empty() && !ValidName(spec.partition)) {
    return Bad("partition", "payload.partition must be a name of [A-Za-z0-9_.-]");
  }
  if (!spec.array.empty() && !ArrayTasks(spec.array)) {
    return Bad("array",
               "payload.array must be Slurm's index list (0-7, 1,3,5, 0-15:4, "
               "with an optional %limit) of at most " +
                   std::to_string(kMaxArrayTasks) + " tasks, got '" + spec.array + "'");
  }
  return spec;
}

std::string SlurmJobName(std::string_view job_id) { return "im-" + std::string(job_id); }

std::string BatchScript(const SlurmScriptSpec& spec, const std::string& job_id,
                        const std::string& dir, const std::string& user_script) {
  std::string s = "#!/bin/bash\n";
  // The directives are also on sbatch's command line; here they document the job.
  s += "#SBATCH --job-name=" + SlurmJobName(job_id) + "\n";
  s += "#SBATCH --nodes=" + std::to_string(spec.nodes) + "\n";
  s += "#SBATCH --cpus-per-task=" + std::to_string(spec.cpus_per_task) + "\n";
  if (spec.gpus_per_node > 0)
    s += "#SBATCH --gpus-per-node=" + std::to_string(spec.gpus_per_node) + "\n";
  if (!spec.mem.empty()) s += "#SBATCH --mem=" + spec.mem + "\n";
  if (!spec.time.empty()) s += "#SBATCH --time=" + spec.time + "\n";
  if (!spec.partition.empty()) s += "#SBATCH --partition=" + spec.partition + "\n";
  if (!spec.array.empty()) s += "#SBATCH --array=" + spec.array + "\n";
  s += "# Written by infermesh jobs for job " + job_id + ".\n";
  s += "task=${SLURM_ARRAY_TASK_ID:-0}\n";
  // A script with its own interpreter line runs with it; any other with bash.
  s += (spec.script.rfind("#!", 0) == 0 ? "" : "/bin/bash ") + ShellQuote(user_script) + "\n";
  s += "code=$?\n";
  s += "markers=" + ShellQuote(dir + "/markers") + "\n";
  s += "printf '{\"exit_code\": %d, \"slurm_job_id\": \"%s\", \"task\": %d}\\n' \"$code\" "
       "\"${SLURM_JOB_ID:-}\" \"$task\" > \"$markers/.$task.json.tmp\" && "
       "mv \"$markers/.$task.json.tmp\" \"$markers/$task.json\"\n";
  s += "exit $code\n";
  return s;
}

std::vector<SlurmTask> ParseSqueue(std::string_view out) {
  std::vector<SlurmTask> rows;
  while (!out.empty()) {
    const size_t nl = out.find('\n');
    std::string_view line = out.substr(0, nl);
    out = nl == std::string_view::npos ? std::string_view() : out.substr(nl + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty()) continue;
    SlurmTask t;
    std::string_view rest = line;
    std::string_view fields[4];
    int n = 0;
    for (; n < 4; ++n) {
      const size_t bar = rest.find('|');
      fields[n] = rest.substr(0, n == 3 ? std::string_view::npos : bar);
      if (n < 3) {
        if (bar == std::string_view::npos) break;
        rest = rest.substr(bar + 1);
      }
    }
    if (n < 4) continue;
    t.master_id = std::string(fields[0]);
    t.id = std::string(fields[1]);
    t.state = std::string(fields[2]);
    t.name = std::string(fields[3]);
    // "CANCELLED by 0" → "CANCELLED".
    if (auto sp = t.state.find(' '); sp != std::string::npos) t.state.resize(sp);
    if (auto us = t.id.find('_'); us != std::string::npos) {
      if (auto idx = ToInt(std::string_view(t.id).substr(us + 1))) t.task = *idx;
    }
    rows.push_back(std::move(t));
  }
  return rows;
}

bool IsTerminalSlurmState(std::string_view s) {
  return s == "COMPLETED" || s == "FAILED" || s == "CANCELLED" || s == "TIMEOUT" ||
         s == "OUT_OF_MEMORY" || s == "NODE_FAIL" || s == "PREEMPTED" || s == "BOOT_FAIL" ||
         s == "DEADLINE" || s == "REVOKED" || s == "SPECIAL_EXIT";
}

bool IsRequeueState(std::string_view s) { return s == "NODE_FAIL" || s == "PREEMPTED"; }

SlurmResolution ResolveSlurmJob(const std::vector<SlurmTask>& rows,
                                const std::map<int64_t, int>& markers,
                                const std::vector<int64_t>& tasks) {
  SlurmResolution r;
  r.tasks_total = static_cast<int64_t>(tasks.size());
  const bool array =
      !(tasks.size() == 1 && tasks[0] == 0 &&
        std::all_of(rows.begin(), rows.end(), [](const SlurmTask& t) { return t.task < 0; }));
  // The state of each task as squeue shows it; a pending array shows one row for all
  // tasks not yet started ("1234_[2-7]"), which counts for every task without a row.
  std::map<int64_t, std::string> state;
  std::string pending_rest;
  for (const auto& row : rows) {
    if (!array) {
      state[0] = row.state;
    } else if (row.task >= 0) {
      state[row.task] = row.state;
    } else {
      pending_rest = row.state;
    }
  }
  std::string failure, requeue;
  bool running = false;
  for (int64_t t : tasks) {
    auto it = state.find(t);
    const std::string st = it != state.end() ? it->second : pending_rest;
    const std::string who = array ? "task " + std::to_string(t) + ": " : "";
    auto m = markers.find(t);
    if (st.empty()) {
      // Not in the queue: its marker decides.
      if (m == markers.end()) {
        if (failure.empty()) {
          failure = who + (rows.empty() ? "left Slurm's queue without a completion marker "
                                          "(no exit code was recorded; not taken for a "
                                          "success)"
                                        : "missing from squeue without a completion marker");
        }
      } else if (m->second != 0) {
        if (failure.empty()) failure = who + "exit code " + std::to_string(m->second);
      } else {
        ++r.tasks_done;
      }
      continue;
    }
    if (!IsTerminalSlurmState(st)) {
      running = true;
      continue;
    }
    if (st == "COMPLETED") {
      if (m != markers.end() && m->second == 0) {
        ++r.tasks_done;
      } else if (m != markers.end()) {
        if (failure.empty())
          failure = who + "COMPLETED, but exit code " + std::to_string(m->second);
      } else if (failure.empty()) {
        failure = who + "COMPLETED without a completion marker (the script did not finish)";
      }
      continue;
    }
    if (IsRequeueState(st)) {
      if (requeue.empty()) requeue = who + st;
      continue;
    }
    if (failure.empty()) {
      failure =
          who + st + (m != markers.end() ? " (exit code " + std::to_string(m->second) + ")" : "");
    }
  }
  if (running) {
    r.outcome = SlurmOutcome::kRunning;
  } else if (!requeue.empty() && failure.empty()) {
    r.outcome = SlurmOutcome::kRequeue;
    r.reason = requeue;
  } else if (!failure.empty()) {
    r.outcome = SlurmOutcome::kFailed;
    r.reason = failure;
  } else if (!requeue.empty()) {
    r.outcome = SlurmOutcome::kRequeue;
    r.reason = requeue;
  } else {
    r.outcome = SlurmOutcome::kSucceeded;
    r.reason = array ? std::to_string(r.tasks_done) + " tasks completed" : "completed";
  }
  return r;
}

}  // namespace infermesh::jobs

namespace infermesh::jobs {

namespace {

constexpr std::string_view kEmbedFields[] = {"input",         "input_format", "output",
                                             "output_format", "chunk_items",  "max_errors",
                                             "normalize",     "truncate"};
constexpr std::string_view kSlurmFields[] = {"cpus_per_task", "mem", "time", "partition",
                                             "requeue"};

Status CopyInto(int out_fd, const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(StatusCode::kDataLoss, "merge: " + what + " " + path + " is missing");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.bad()) return Status(StatusCode::kDataLoss, "merge: reading " + path + " failed");
    const std::streamsize n = in.gcount();
    const char* p = buf.data();
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      const ssize_t w = ::write(out_fd, p, left);
      if (w < 0) return Status(StatusCode::kUnavailable, "merge: writing the output failed");
      p += w;
      left -= static_cast<size_t>(w);
    }
  }
  return OkStatus();
}

}  // namespace

ApiResult<SlurmEmbedSpec> ParseSlurmEmbedPayload(std::string_view payload,
                                                 const EmbedDefaults& defaults,
                                                 const std::vector<std::string>& data_dirs) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(payload, ec);
  if (ec || !v.is_object()) return Bad("payload", "the payload must be a JSON object");
  boost::json::object embed, slurm;
  SlurmEmbedSpec spec;
  std::string model;
  for (const auto& kv : v.as_object()) {
    const std::string_view k = kv.key();
    if (std::find(std::begin(kEmbedFields), std::end(kEmbedFields), k) != std::end(kEmbedFields)) {
      embed[k] = kv.value();
    } else if (std::find(std::begin(kSlurmFields), std::end(kSlurmFields), k) !=
               std::end(kSlurmFields)) {
      slurm[k] = kv.value();
    } else if (k == "model") {
      if (!kv.value().is_string()) return Bad("model", "payload.model must be a string");
      model = std::string(kv.value().as_string());
    } else if (k == "shards") {
      if (!kv.value().is_int64() || kv.value().as_int64() < 1 ||
          kv.value().as_int64() > kMaxShards) {
        return Bad("shards",
                   "payload.shards must be an integer from 1 to " + std::to_string(kMaxShards));
      }
      spec.shards = static_cast<int>(kv.value().as_int64());
    } else {
      return Bad(std::string(k), "unknown slurm_embed payload field '" + std::string(k) + "'");
    }
  }
  auto e = ParseEmbedPayload(boost::json::serialize(embed), defaults, data_dirs);
  if (!e.ok()) return e.error();
  spec.embed = std::move(e).value();
  if (model.empty()) return Bad("model", "a slurm_embed payload needs 'model' (a model folder)");
  std::error_code fec;
  const std::string resolved = fs::weakly_canonical(fs::absolute(model, fec), fec).string();
  bool inside = false;
  for (const auto& d : data_dirs) inside = inside || PathInside(resolved, d);
  if (!inside) {
    return ApiError{403, "Forbidden",
                    "payload.model '" + model + "' is outside the data folders (jobs.data_dirs)",
                    "model"};
  }
  if (!fs::is_directory(resolved, fec)) {
    return Bad("model", "payload.model '" + model + "' is not a folder");
  }
  spec.model = resolved;
  slurm["script"] = "generated";
  auto s = ParseSlurmScriptPayload(boost::json::serialize(slurm), data_dirs);
  if (!s.ok()) return s.error();
  spec.slurm = std::move(s).value();
  spec.slurm.script.clear();
  spec.slurm.array = "0-" + std::to_string(spec.shards - 1);
  return spec;
}

std::string ShardOutput(const SlurmEmbedSpec& spec, const std::string& shard_dir, int shard) {
  return shard_dir + "/part-" + std::to_string(shard) +
         (spec.embed.output_format == OutputFormat::kF32 ? ".f32" : ".jsonl");
}

std::string ShardScript(const SlurmEmbedSpec& spec, const std::string& infermesh_bin,
                        const std::string& shard_dir) {
  const auto& e = spec.embed;
  std::string s = "set -e\n";
  s += "k=${SLURM_ARRAY_TASK_ID:-0}\n";
  s += "mkdir -p " + ShellQuote(shard_dir) + "\n";
  s += "exec " + ShellQuote(infermesh_bin) +
       " --set runtime.intra_op_threads=" + std::to_string(spec.slurm.cpus_per_task) +
       " embed-shard --model " + ShellQuote(spec.model) + " --input " + ShellQuote(e.input) +
       " --input-format " + (e.input_format == InputFormat::kJsonl ? "jsonl" : "text") +
       " --output " + ShellQuote(shard_dir) + "/part-$k" +
       (e.output_format == OutputFormat::kF32 ? ".f32" : ".jsonl") + " --output-format " +
       (e.output_format == OutputFormat::kF32 ? "f32" : "jsonl") + " --shard \"$k\" --shards " +
       std::to_string(spec.shards) + " --chunk-items " + std::to_string(e.chunk_items) +
       " --max-errors " + std::to_string(e.max_errors) + (e.normalize ? "" : " --no-normalize") +
       (e.truncate ? "" : " --no-truncate") + "\n";
  return s;
}

Result<MergeResult> MergeShards(const SlurmEmbedSpec& spec, const std::string& shard_dir) {
  const std::string out = spec.embed.output;
  const bool f32 = spec.embed.output_format == OutputFormat::kF32;
  struct Target {
    std::string final_path, partial;
    int fd = -1;
  };
  Target t_out{out, out + ".partial"}, t_index{out + ".index", out + ".index.partial"},
      t_err{out + ".errors.jsonl", out + ".errors.jsonl.partial"};
  std::vector<Target*> targets = {&t_out, &t_err};
  if (f32) targets.push_back(&t_index);
  auto close_all = [&] {
    for (auto* t : targets) {
      if (t->fd >= 0) ::close(t->fd);
      t->fd = -1;
    }
  };
  for (auto* t : targets) {
    t->fd = ::open(t->partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (t->fd < 0) {
      close_all();
      return Status(StatusCode::kUnavailable, "merge: cannot create " + t->partial);
    }
  }
  MergeResult r;
  Status st;
  for (int k = 0; k < spec.shards && st.ok(); ++k) {
    const std::string part = ShardOutput(spec, shard_dir, k);
    st = CopyInto(t_out.fd, part, "shard output");
    if (!st.ok()) break;
    // Errors: concatenated; counted, and the first kept.
    {
      std::ifstream in(part + ".errors.jsonl", std::ios::binary);
      if (!in) {
        st = Status(StatusCode::kDataLoss, "merge: " + part + ".errors.jsonl is missing");
        break;
      }
      std::string line, block;
      while (std::getline(in, line)) {
        ++r.failed;
        if (r.first_error.empty()) {
          boost::system::error_code jec;
          auto v = boost::json::parse(line, jec);
          if (!jec && v.is_object() && v.as_object().contains("error")) {
            r.first_error = boost::json::value_to<std::string>(v.as_object().at("error"));
          }
        }
        block += line + "\n";
      }
      if (::write(t_err.fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
        st = Status(StatusCode::kUnavailable, "merge: writing the errors file failed");
        break;
      }
    }
    // The index: rows renumbered after the shards before.
    std::ifstream idx(f32 ? part + ".index" : std::string(), std::ios::binary);
    if (f32 && !idx) {
      st = Status(StatusCode::kDataLoss, "merge: " + part + ".index is missing");
      break;
    }
    std::string line, block;
    int64_t rows = 0;
    while (f32 && std::getline(idx, line)) {
      const size_t at = line.rfind(",\"row\":");
      if (at == std::string::npos) {
        st = Status(StatusCode::kDataLoss, "merge: a malformed index line in " + part);
        break;
      }
      block += line.substr(0, at) + ",\"row\":" + std::to_string(r.embedded + rows) + "}\n";
      ++rows;
    }
    if (!f32) {
      std::ifstream o(part, std::ios::binary);
      while (std::getline(o, line)) ++rows;
    }
    if (f32 &&
        ::write(t_index.fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
      st = Status(StatusCode::kUnavailable, "merge: writing the index failed");
    }
    r.embedded += rows;
    if (k == spec.shards / 2) Failpoint("jobs.slurm.mid_merge");
  }
  if (st.ok()) {
    for (auto* t : targets) {
      if (::fdatasync(t->fd) != 0) st = Status(StatusCode::kUnavailable, "merge: fsync failed");
    }
  }
  close_all();
  if (st.ok() && r.failed > spec.embed.max_errors) {
    st = Status(StatusCode::kOutOfRange, std::to_string(r.failed) + " items failed (max_errors " +
                                             std::to_string(spec.embed.max_errors) +
                                             "); first: " + r.first_error);
  }
  if (!st.ok()) {
    for (auto* t : targets) ::unlink(t->partial.c_str());
    return st;
  }
  // Output last: its appearance means the job's files are complete.
  for (auto* t : {&t_err, &t_index, &t_out}) {
    if (!f32 && t == &t_index) continue;
    if (::rename(t->partial.c_str(), t->final_path.c_str()) != 0) {
      return Status(StatusCode::kUnavailable, "merge: cannot rename " + t->partial);
    }
  }
  const std::string folder = fs::path(out).parent_path().string();
  const int dfd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    if (dfd >= 0) ::close(dfd);
    return Status(StatusCode::kUnavailable, "merge: cannot sync " + folder);
  }
  ::close(dfd);
  return r;
}

}  // namespace infermesh::jobs
