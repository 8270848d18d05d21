// libFuzzer target for the job service's parsers: submissions, embed, slurm_script and
// slurm_embed payloads (data folder: a path that does not exist, so nothing on disk is
// touched beyond lookups), squeue output and Slurm array lists.
//   build/fuzz/tests/jobs_fuzz -max_total_time=60 tests/fuzz/corpus/jobs
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "jobs/api.h"
#include "jobs/slurm.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string> dirs = {"/nonexistent-infermesh-fuzz"};
  auto sub = infermesh::jobs::ParseSubmission(in);
  if (sub.ok()) {
    (void)infermesh::jobs::ParseEmbedPayload(sub->payload, {}, dirs);
    (void)infermesh::jobs::ParseSlurmScriptPayload(sub->payload, dirs);
    (void)infermesh::jobs::ParseSlurmEmbedPayload(sub->payload, {}, dirs);
  }
  (void)infermesh::jobs::ParseSlurmScriptPayload(in, dirs);
  (void)infermesh::jobs::ParseSqueue(in);
  (void)infermesh::jobs::ArrayTasks(in.substr(0, 64));
  (void)infermesh::jobs::CheckJobId(in);
  return 0;
}
