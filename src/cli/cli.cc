#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>

namespace infermesh::cli {

int Main(int argc, char** argv) {
  CLI::App app{"infermesh: an inference mesh for ONNX models and text-embedding encoders"};
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

}  // namespace infermesh::cli
