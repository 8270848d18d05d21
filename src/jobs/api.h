// The job service's HTTP API JSON: the one definition of its requests and answers,
// shared by `infermesh jobs serve`, the `infermesh jobs` client and the spool (a spool
// file is a submission body). See docs/api.md, "Jobs".
//
//   POST /queue/submit  {"id": "corpus-2026-12", "class": "embed", "payload": {...}}
//
// `id` is the idempotency key: 1-128 characters of [A-Za-z0-9._-], not starting with
// '.' or '-' (it names files and Slurm jobs). The payload is stored as its canonical
// serialization, so the same object resubmitted with other whitespace is the same job.
//
// The class `gpu_slurm` (the seed's) is taken as `slurm_script`.
//
// An `embed` payload:
//   {"input": "/data/corpus.jsonl",      // inside jobs.data_dirs; must exist
//    "input_format": "jsonl" | "text",   // default: jsonl for *.jsonl, else text
//    "output": "/data/corpus.emb.jsonl", // inside jobs.data_dirs; its folder must exist
//    "output_format": "jsonl" | "f32",   // default jsonl
//    "url": "http://gateway:8080",       // default jobs.mesh_url
//    "chunk_items": 256, "concurrency": 2, "max_errors": 0,  // defaults: jobs.embed.*
//    "normalize": true, "truncate": true}
//
// Errors are {"error": message, "error_type": type} with 400 (malformed JSON, a missing
// or wrong field, an unknown class), 403 (a path outside the data folders), 404 (no such
// job), 409 (the id exists with another payload; cancelling a finished job), 413 (body
// too large), 429 (queue full), 401/403 (keys).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "http/api/api_error.h"
#include "jobs/store.h"

namespace infermesh::jobs {

struct Submission {
  std::string id;
  std::string job_class;
  std::string payload;  // canonical JSON of the payload object
};

enum class InputFormat { kJsonl, kText };
enum class OutputFormat { kJsonl, kF32 };

struct EmbedDefaults {
  std::string mesh_url = "http://127.0.0.1:8080";
  int chunk_items = 256;
  int concurrency = 2;
  int64_t max_errors = 0;
};

struct EmbedSpec {
  std::string input;  // canonical absolute paths
  InputFormat input_format = InputFormat::kJsonl;
  std::string output;
  OutputFormat output_format = OutputFormat::kJsonl;
  std::string url;
  int chunk_items = 256;
  int concurrency = 2;
  int64_t max_errors = 0;
  bool normalize = true;
  bool truncate = true;
};

// Limits of the embed payload's numbers.
inline constexpr int kMaxChunkItems = 4096;
inline constexpr int kMaxConcurrency = 64;
inline constexpr size_t kMaxIdBytes = 128;

// The classes a submission may name: embed, slurm_script, slurm_embed.
bool KnownJobClass(std::string_view job_class);

// Parses and checks the envelope (not the payload's contents).
http::api::ApiResult<Submission> ParseSubmission(std::string_view body);
// Checks an id alone (ids in URLs and spool files).
http::api::ApiResult<std::string> CheckJobId(std::string_view id);

// Parses an embed payload and resolves its paths, which must lie inside one of
// `data_dirs` (after resolving symlinks and "..": no traversal). 400 or 403.
http::api::ApiResult<EmbedSpec> ParseEmbedPayload(std::string_view payload,
                                                  const EmbedDefaults& defaults,
                                                  const std::vector<std::string>& data_dirs);

// Whether `path` (resolved) lies inside `dir` (resolved), component by component.
bool PathInside(const std::string& path, const std::string& dir);

// {"id", "class", "state", "attempts", "max_attempts", "progress": {"done", "total"},
//  "created", "started", "finished", "updated" (RFC 3339, null when not yet),
//  "error", "output", "slurm_job_ids": [..], "payload": {...}}
std::string JobJson(const Job& job);
// {"total": n, "by_state": {"queued": n, ...}, "by_class": {"embed": {"queued": n, ...}}}
std::string QueueStatusJson(const std::map<std::pair<std::string, std::string>, int64_t>& counts);
// {"error": message, "error_type": type}
std::string ErrorJson(const http::api::ApiError& e);
// The jobs API's Status → HTTP mapping: InvalidArgument 400, AlreadyExists 409,
// FailedPrecondition 409, Unimplemented 501; the rest as ApiErrorFromStatus.
http::api::ApiError JobsApiError(const Status& s);

// RFC 3339 UTC with milliseconds, "" for 0.
std::string Rfc3339Ms(int64_t unix_ms);

}  // namespace infermesh::jobs
