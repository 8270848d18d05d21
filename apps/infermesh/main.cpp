// infermesh: one binary, one subcommand per role. See `infermesh --help`.
#include "cli/cli.h"

int main(int argc, char** argv) { return infermesh::cli::Main(argc, argv); }
