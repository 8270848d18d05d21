#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"

namespace infermesh::cli {

int Main(int argc, char** argv) {
  CLI::App app{"infermesh: an inference mesh for ONNX models and text-embedding encoders"};
  app.require_subcommand(1);
  int exit_code = 0;
  AddConformanceCommand(app, exit_code);
  AddRunCommand(app, exit_code);
  AddEmbedCommand(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}

}  // namespace infermesh::cli
