// The release version of every infermesh process: /health, /info, /v2 and `diagnose`
// report it, so a mesh of mixed versions is visible.
#pragma once

namespace infermesh {

inline constexpr const char* kInfermeshVersion = "0.1.0";

}  // namespace infermesh
