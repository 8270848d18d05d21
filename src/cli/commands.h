// Subcommands of the `infermesh` binary. Each Add*Command registers itself on
// the CLI11 app and writes its exit status into `exit_code` when it runs.
#pragma once

#include <CLI/CLI.hpp>

namespace infermesh::cli {

void AddConformanceCommand(CLI::App& app, int& exit_code);  // conformance.cc
void AddRunCommand(CLI::App& app, int& exit_code);          // run_command.cc
void AddEmbedCommand(CLI::App& app, int& exit_code);        // embed_command.cc

}  // namespace infermesh::cli
