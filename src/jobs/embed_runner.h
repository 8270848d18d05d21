// The `embed` job: a dataset goes through the mesh (a gateway or a worker) in chunks and
// lands in an output file, in input order, resumable after a crash.
//
//   EmbedRunnerOptions o;
//   o.client = client.get();
//   o.on_progress = [&](int64_t done, int64_t total) { return store->SetProgress(...); };
//   Result<EmbedResult> r = RunEmbedJob(spec, o);
//
// Input is streamed: a first pass counts the items (non-empty lines), the second reads
// them chunk by chunk; at most 2 × concurrency chunks are in memory. Items: with
// `jsonl`, {"custom_id": "...", "input": "text"} a line (OpenAI Batch lines, with the
// text in body.input, are read too); with `text`, one text a line, whose custom_id is its
// line number. Each chunk is one POST /embed to the mesh asking for binary float32 rows
// (several when the mesh's /info gives a smaller max_client_batch_size); `concurrency`
// chunks are in flight at once.
//
// Files, next to `output`:
//   output.partial              rows so far: JSONL {"custom_id","embedding"}, or raw
//                               little-endian float32 rows (f32)
//   output.index.partial        f32 only: {"custom_id","row"} a line
//   output.errors.jsonl.partial failed items: {"custom_id","line","error"} a line
//   output.lock                 held (flock) while the job runs; holds the job's id
//   output.checkpoint           after each chunk, once the above are on disk (fdatasync):
//                               items, rows and bytes so far, and a hash chained over the
//                               ids of every chunk
// When all items are through, the partial files are renamed to their final names
// (output, output.index, output.errors.jsonl) and the checkpoint removed.
//
// Resume: with a checkpoint whose fingerprint (input size and mtime, formats, chunk size,
// normalize, truncate) still matches, the partial files are cut back to the checkpoint's
// sizes, the input is read up to it (checking the chained id hash), and work continues
// from the next chunk. Chunk boundaries depend only on the input and chunk_items, so a
// resumed job writes the same bytes as one never interrupted (given a mesh that answers
// the same input with the same floats). Anything that does not match starts over.
//
// Failures: a chunk the mesh refuses as a request error (4xx other than 408/429, or 500)
// is sent again one item at a time, and the items it still refuses go to the errors file
// with the mesh's message; so do lines that are not valid items. Past max_errors failed
// items the job fails. 408, 429, 502, 503, 504 and transport errors are retried with
// exponential backoff (min_backoff..max_backoff, jittered) for up to retry_window
// since the chunk's first such failure; then the job fails (Unavailable).
//
// Returns: OK with the counts; Cancelled when `stop` was set (the job may resume later);
// the on_progress status when it is not OK (lease lost: stop at once); OutOfRange past
// the error budget; Unavailable when the mesh stayed away; InvalidArgument / NotFound
// for input that cannot be read; DataLoss for a malformed answer from the mesh.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "http/client.h"
#include "jobs/api.h"

namespace infermesh::jobs {

struct EmbedRunnerOptions {
  http::HttpClient* client = nullptr;
  int64_t max_line_bytes = 1 << 20;  // a longer line is a failed item
  std::chrono::milliseconds request_timeout{120000};
  std::chrono::milliseconds retry_window{600000};
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  // After each checkpoint (throttled to one call per progress_interval, and always after
  // the last chunk): items through so far (embedded + failed) and the total.
  std::function<Status(int64_t done, int64_t total)> on_progress;
  std::chrono::milliseconds progress_interval{250};
  const std::atomic<bool>* stop = nullptr;  // set: return Cancelled at the next boundary
  // Written into <output>.lock, which the run holds (flock) so that no other writes the
  // same output: another job gets InvalidArgument, a second run of this job
  // FailedPrecondition.
  std::string job_id;
  // In process instead of the mesh (`infermesh embed-shard` on a Slurm node): rows for
  // the texts, or InvalidArgument / OutOfRange / FailedPrecondition for texts the model
  // refuses (they become failed items), or another error, which fails the job.
  std::function<Result<std::vector<std::vector<float>>>(const std::vector<std::string>& texts,
                                                        const EmbedSpec& spec)>
      embed;
  // Only this shard of the items: a contiguous range, shard k of n holding items
  // [k * N / n, (k + 1) * N / n), so that the shards concatenate in input order.
  int shard = 0, shards = 1;
};

struct EmbedResult {
  int64_t items = 0;                  // items in the input
  int64_t embedded = 0;               // rows written
  int64_t failed = 0;                 // items in the errors file
  int64_t resumed = 0;                // items taken from a checkpoint instead of recomputed
  std::string output, index, errors;  // final paths (index: f32 only)
  std::string first_error;            // of the failed items, for the job's record
};

[[nodiscard]] Result<EmbedResult> RunEmbedJob(const EmbedSpec& spec,
                                              const EmbedRunnerOptions& options);

// Removes the partial files and the checkpoint of a job that will not resume (cancelled).
void RemoveEmbedPartials(const EmbedSpec& spec);

}  // namespace infermesh::jobs
