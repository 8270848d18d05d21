// Failpoints: named places where a test can make the process die (SIGKILL) on purpose,
// to prove that a crash right there loses nothing. Set by the environment:
//
//   INFERMESH_FAILPOINT=jobs.embed.after_checkpoint@3   # die at the 3rd hit
//   INFERMESH_FAILPOINT=jobs.submit.after_commit        # die at the 1st hit
//
//   Failpoint("jobs.submit.after_commit");   // in the code, at the exact point
//
// Several are separated by commas. Without the variable a failpoint costs one relaxed
// atomic load. Names are listed in docs/operations.md.
#pragma once

#include <string_view>

namespace infermesh {

// Dies with SIGKILL (after one line on stderr) when `name` is armed and this is its hit.
void Failpoint(std::string_view name);

}  // namespace infermesh
