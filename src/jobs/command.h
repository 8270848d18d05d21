// Runs an external program (sbatch, squeue, scontrol, scancel) with a timeout and
// captures its output, without a shell: arguments are passed as they are.
//
//   auto r = RunCommand({"squeue", "-h", "-o", "%i|%T"}, std::chrono::seconds(30));
//   if (r.ok() && r->exit_code == 0) Parse(r->out);
//
// NotFound when the program does not exist (on PATH, or at its path), DeadlineExceeded
// when it ran past the timeout (it is killed with SIGKILL), Unavailable for other
// failures to run it. A program that ran and failed is OK with its exit code and stderr.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"

namespace infermesh::jobs {

struct CommandResult {
  int exit_code = 0;  // 128 + signal when killed by one
  std::string out, err;
  bool truncated = false;  // out or err reached max_output_bytes; the rest was dropped
};

[[nodiscard]] Result<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                               std::chrono::milliseconds timeout,
                                               size_t max_output_bytes = 16 << 20);

}  // namespace infermesh::jobs
