// `infermesh conformance`: runs ONNX's official node tests (Debian's
// libonnx-testdata) through our runtime and reports each as passed, failed or
// unsupported (rejected at load with a reason).
//
//   infermesh conformance --filter '^test_(add|relu)' --json bench/results/conformance.json
#pragma once

#include <CLI/CLI.hpp>

namespace infermesh::cli {

void AddConformanceCommand(CLI::App& app, int& exit_code);

}  // namespace infermesh::cli
