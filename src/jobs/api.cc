#include "jobs/api.h"

#include <ctime>
#include <filesystem>
#include <system_error>

#include <boost/json.hpp>

#include "http/api/json_read.h"
#include "http/api/json_write.h"

namespace infermesh::jobs {

namespace fs = std::filesystem;
using http::api::ApiError;
using http::api::ApiResult;
namespace ji = http::api::internal;

namespace {

constexpr ji::ErrorStyle kJobsStyle{400, 400, http::api::kTeiValidation};
constexpr size_t kMaxDepth = 32;

ApiError Bad(std::string param, std::string message) {
  return ApiError{400, std::string(http::api::kTeiValidation), std::move(message),
                  std::move(param)};
}

ApiResult<std::optional<std::string>> OneOf(const boost::json::object& obj, std::string_view key,
                                            std::initializer_list<std::string_view> allowed) {
  auto v = ji::OptionalString(obj, key, kJobsStyle);
  if (!v.ok()) return v.error();
  if (!v->has_value()) return std::optional<std::string>();
  for (auto a : allowed) {
    if (**v == a) return *v;
  }
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  return Bad(std::string(key),
             "payload." + std::string(key) + " must be one of " + list + ", got \"" + **v + "\"");
}

ApiResult<int64_t> IntIn(const boost::json::object& obj, std::string_view key, int64_t dflt,
                         int64_t lo, int64_t hi) {
  auto v = ji::OptionalInt(obj, key, kJobsStyle);
  if (!v.ok()) return v.error();
  const int64_t x = v->value_or(dflt);
  if (x < lo || x > hi) {
    return Bad(std::string(key), "payload." + std::string(key) + " must be between " +
                                     std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                                     std::to_string(x));
  }
  return x;
}

// Resolves `p` (symlinks and ".." of the part that exists) and checks it against the
// data folders; 403 outside them.
ApiResult<std::string> Resolve(const std::string& key, const std::string& p,
                               const std::vector<std::string>& data_dirs) {
  if (p.empty()) return Bad(key, "payload." + key + " must not be empty");
  if (p.find('\0') != std::string::npos) return Bad(key, "payload." + key + " contains NUL");
  std::error_code ec;
  fs::path abs = fs::absolute(fs::path(p), ec);
  if (ec) return Bad(key, "payload." + key + " '" + p + "': " + ec.message());
  fs::path resolved = fs::weakly_canonical(abs, ec);
  if (ec) return Bad(key, "payload." + key + " '" + p + "': " + ec.message());
  for (const auto& dir : data_dirs) {
    if (PathInside(resolved.string(), dir)) return resolved.string();
  }
  return ApiError{403, "Forbidden",
                  "payload." + key + " '" + p + "' is outside the data folders (jobs.data_dirs)",
                  key};
}

}  // namespace

bool KnownJobClass(std::string_view c) {
  return c == "embed" || c == "slurm_script" || c == "slurm_embed";
}

ApiResult<std::string> CheckJobId(std::string_view id) {
  if (id.empty()) return Bad("id", "id must not be empty");
  if (id.size() > kMaxIdBytes) {
    return Bad("id", "id is " + std::to_string(id.size()) + " bytes; at most " +
                         std::to_string(kMaxIdBytes));
  }
  if (id[0] == '.' || id[0] == '-') return Bad("id", "id must not start with '.' or '-'");
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return Bad("id", "id may hold only letters, digits, '.', '_' and '-'");
  }
  return std::string(id);
}

ApiResult<Submission> ParseSubmission(std::string_view body) {
  boost::json::monotonic_resource mr;
  auto root = ji::ParseJsonObject(body, kMaxDepth, &mr, kJobsStyle);
  if (!root.ok()) return root.error();
  const auto& obj = root->as_object();
  for (const auto& kv : obj) {
    if (kv.key() != "id" && kv.key() != "class" && kv.key() != "payload") {
      return Bad(std::string(kv.key()), "unknown field '" + std::string(kv.key()) +
                                            "' (a submission has id, class and payload)");
    }
  }
  auto id = ji::OptionalString(obj, "id", kJobsStyle);
  if (!id.ok()) return id.error();
  if (!id->has_value()) return ji::MissingField(kJobsStyle, "id");
  auto checked = CheckJobId(**id);
  if (!checked.ok()) return checked.error();
  auto cls = ji::OptionalString(obj, "class", kJobsStyle);
  if (!cls.ok()) return cls.error();
  if (!cls->has_value()) return ji::MissingField(kJobsStyle, "class");
  // The seed's name for a Slurm batch script.
  if (**cls == "gpu_slurm") **cls = "slurm_script";
  if (!KnownJobClass(**cls)) {
    return Bad("class",
               "unknown class '" + **cls + "' (embed, slurm_script (gpu_slurm) or slurm_embed)");
  }
  const boost::json::value* payload = ji::FindField(obj, "payload");
  if (payload == nullptr) return ji::MissingField(kJobsStyle, "payload");
  if (!payload->is_object()) return ji::WrongType(kJobsStyle, "payload", "an object", *payload);
  return Submission{std::move(checked).value(), std::move(**cls), boost::json::serialize(*payload)};
}

bool PathInside(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.empty()) return false;
  std::error_code ec;
  const fs::path abs = fs::absolute(fs::path(dir), ec);
  if (ec) return false;
  const fs::path d = fs::weakly_canonical(abs, ec);
  if (ec || d.empty()) return false;
  const fs::path p(path);
  auto pi = p.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++pi) {
    if (di->empty()) continue;  // a trailing separator
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

ApiResult<EmbedSpec> ParseEmbedPayload(std::string_view payload, const EmbedDefaults& defaults,
                                       const std::vector<std::string>& data_dirs) {
  boost::json::monotonic_resource mr;
  auto root = ji::ParseJsonObject(payload, kMaxDepth, &mr, kJobsStyle);
  if (!root.ok()) return root.error();
  const auto& obj = root->as_object();
  static constexpr std::string_view kFields[] = {
      "input",       "input_format", "output",     "output_format", "url",
      "chunk_items", "concurrency",  "max_errors", "normalize",     "truncate"};
  for (const auto& kv : obj) {
    bool known = false;
    for (auto f : kFields) known = known || kv.key() == f;
    if (!known)
      return Bad(std::string(kv.key()),
                 "unknown embed payload field '" + std::string(kv.key()) + "'");
  }
  EmbedSpec spec;
  auto input = ji::OptionalString(obj, "input", kJobsStyle);
  if (!input.ok()) return input.error();
  if (!input->has_value()) return Bad("input", "an embed payload needs 'input' (a file)");
  auto output = ji::OptionalString(obj, "output", kJobsStyle);
  if (!output.ok()) return output.error();
  if (!output->has_value()) return Bad("output", "an embed payload needs 'output' (a file)");
  auto in = Resolve("input", **input, data_dirs);
  if (!in.ok()) return in.error();
  auto out = Resolve("output", **output, data_dirs);
  if (!out.ok()) return out.error();
  std::error_code ec;
  if (!fs::is_regular_file(*in, ec)) {
    return Bad("input", "payload.input '" + **input + "' is not an existing file");
  }
  if (*in == *out) return Bad("output", "payload.output must not be the input file");
  if (!fs::is_directory(fs::path(*out).parent_path(), ec)) {
    return Bad("output", "payload.output's folder '" + fs::path(*out).parent_path().string() +
                             "' does not exist");
  }
  if (fs::is_directory(*out, ec)) {
    return Bad("output", "payload.output '" + **output + "' is a folder");
  }
  // The job writes beside the output (.partial, .index, .errors.jsonl, .checkpoint): none
  // of those, nor the output itself, may be a link that could lead outside.
  for (const char* suffix : {"", ".partial", ".index", ".index.partial", ".errors.jsonl",
                             ".errors.jsonl.partial", ".checkpoint", ".checkpoint.tmp", ".lock"}) {
    if (*in == *out + suffix) {
      return Bad("output", "payload.output: the job would write over its input (" + *in + ")");
    }
    if (fs::is_symlink(fs::symlink_status(*out + suffix, ec))) {
      return ApiError{403, "Forbidden",
                      "payload.output: '" + *out + suffix + "' is a symbolic link", "output"};
    }
  }
  spec.input = std::move(in).value();
  spec.output = std::move(out).value();

  auto ifmt = OneOf(obj, "input_format", {"jsonl", "text"});
  if (!ifmt.ok()) return ifmt.error();
  if (ifmt->has_value()) {
    spec.input_format = **ifmt == "jsonl" ? InputFormat::kJsonl : InputFormat::kText;
  } else {
    spec.input_format =
        fs::path(spec.input).extension() == ".jsonl" ? InputFormat::kJsonl : InputFormat::kText;
  }
  auto ofmt = OneOf(obj, "output_format", {"jsonl", "f32"});
  if (!ofmt.ok()) return ofmt.error();
  spec.output_format = ofmt->value_or("jsonl") == "f32" ? OutputFormat::kF32 : OutputFormat::kJsonl;

  auto url = ji::OptionalString(obj, "url", kJobsStyle);
  if (!url.ok()) return url.error();
  spec.url = url->value_or(defaults.mesh_url);
  if (spec.url.empty()) return Bad("url", "payload.url must not be empty");

  auto chunk = IntIn(obj, "chunk_items", defaults.chunk_items, 1, kMaxChunkItems);
  if (!chunk.ok()) return chunk.error();
  spec.chunk_items = static_cast<int>(*chunk);
  auto conc = IntIn(obj, "concurrency", defaults.concurrency, 1, kMaxConcurrency);
  if (!conc.ok()) return conc.error();
  spec.concurrency = static_cast<int>(*conc);
  auto errs = IntIn(obj, "max_errors", defaults.max_errors, 0, int64_t{1} << 50);
  if (!errs.ok()) return errs.error();
  spec.max_errors = *errs;
  auto norm = ji::OptionalBool(obj, "normalize", kJobsStyle);
  if (!norm.ok()) return norm.error();
  spec.normalize = norm->value_or(true);
  auto trunc = ji::OptionalBool(obj, "truncate", kJobsStyle);
  if (!trunc.ok()) return trunc.error();
  spec.truncate = trunc->value_or(true);
  return spec;
}

std::string Rfc3339Ms(int64_t ms) {
  if (ms <= 0) return "";
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::string JobJson(const Job& j) {
  boost::json::object o;
  o["id"] = j.id;
  o["class"] = j.job_class;
  o["state"] = JobStateName(j.state);
  o["attempts"] = j.attempts;
  o["max_attempts"] = j.max_attempts;
  o["progress"] = {{"done", j.items_done}, {"total", j.items_total}};
  auto when = [](int64_t ms) -> boost::json::value {
    if (ms <= 0) return nullptr;
    return boost::json::value(Rfc3339Ms(ms));
  };
  o["created"] = when(j.created_ms);
  o["started"] = when(j.started_ms);
  o["finished"] = when(j.finished_ms);
  o["updated"] = when(j.updated_ms);
  o["error"] = j.error;
  o["output"] = j.output;
  boost::json::array ids;
  std::string_view rest = j.slurm_ids;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    if (comma != 0) ids.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  o["slurm_job_ids"] = std::move(ids);
  boost::system::error_code ec;
  boost::json::value payload = boost::json::parse(j.payload, ec);
  o["payload"] = ec ? boost::json::value(j.payload) : std::move(payload);
  return boost::json::serialize(o);
}

std::string QueueStatusJson(const std::map<std::pair<std::string, std::string>, int64_t>& counts) {
  boost::json::object by_state, by_class;
  int64_t total = 0;
  for (auto s : {JobState::kQueued, JobState::kSubmitting, JobState::kRunning, JobState::kSucceeded,
                 JobState::kFailed, JobState::kCancelled}) {
    by_state[JobStateName(s)] = 0;
  }
  for (const auto& [key, n] : counts) {
    const auto& [cls, state] = key;
    total += n;
    auto& slot = by_state[state];
    slot = (slot.is_int64() ? slot.as_int64() : 0) + n;
    auto& c = by_class[cls];
    if (!c.is_object()) c = boost::json::object();
    c.as_object()[state] = n;
  }
  boost::json::object o;
  o["total"] = total;
  o["by_state"] = std::move(by_state);
  o["by_class"] = std::move(by_class);
  return boost::json::serialize(o);
}

std::string ErrorJson(const ApiError& e) {
  boost::json::object o;
  o["error"] = e.message;
  o["error_type"] = e.type;
  return boost::json::serialize(o);
}

ApiError JobsApiError(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return Bad("", s.message());
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return ApiError{409, "Conflict", s.message(), ""};
    case StatusCode::kUnimplemented:
      return ApiError{501, "Unimplemented", s.message(), ""};
    default:
      return http::api::ApiErrorFromStatus(s);
  }
}

}  // namespace infermesh::jobs
