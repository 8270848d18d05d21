// The one list of configuration keys. docs/configuration.md mirrors it; a unit
// test checks that every key here appears there.
#include "core/config.h"

namespace infermesh {

const std::vector<ConfigKey>& DeclaredConfigKeys() {
  static const std::vector<ConfigKey> keys = {
      {"log.level", "info", "trace, debug, info, warn, error or off"},
      {"log.format", "logfmt", "logfmt or json"},
      {"runtime.intra_op_threads", "0", "threads per inference (0 = all cores)"},
      {"runtime.max_model_bytes", "2GiB", "largest model file accepted"},
  };
  return keys;
}

}  // namespace infermesh
