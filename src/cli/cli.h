// Entry point of the `infermesh` binary: parses the subcommand and hands over.
#pragma once

namespace infermesh::cli {

int Main(int argc, char** argv);

}  // namespace infermesh::cli
