// Config: one configuration system for every process.
//
// Keys are dotted names ("runtime.intra_op_threads"), declared once with a
// default and a description (so docs/configuration.md lists every limit). Values
// come from, each overriding the one before:
//   1. the declared default;
//   2. a YAML file (nested maps flatten to dotted keys);
//   3. the environment: INFERMESH_RUNTIME_INTRA_OP_THREADS=2;
//   4. flags: --set runtime.intra_op_threads=2.
// Unknown keys in any layer are errors, so typos never pass silently.
//
//   Config cfg = Config::WithDefaults();
//   IM_RETURN_IF_ERROR(cfg.LoadYamlFile("infermesh.yaml"));
//   IM_RETURN_IF_ERROR(cfg.LoadEnvironment());
//   IM_ASSIGN_OR_RETURN(int64_t threads, cfg.GetInt("runtime.intra_op_threads"));
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace infermesh {

struct ConfigKey {
  std::string key;
  std::string default_value;
  std::string help;
};

// Every key the project knows, with defaults. Defined in config_keys.cc.
const std::vector<ConfigKey>& DeclaredConfigKeys();

class Config {
 public:
  // A config holding the declared defaults.
  static Config WithDefaults();
  // A config over an explicit key list (tests).
  explicit Config(const std::vector<ConfigKey>& keys);

  Status LoadYamlFile(const std::string& path);
  Status LoadYamlString(const std::string& yaml);
  // Reads INFERMESH_* variables from `environ` (or the given list of "K=V").
  Status LoadEnvironment();
  Status LoadEnvironment(const std::vector<std::string>& env);
  // Applies "key=value".
  Status SetFromFlag(const std::string& assignment);
  Status Set(const std::string& key, const std::string& value, const std::string& source);

  Result<std::string> GetString(const std::string& key) const;
  Result<int64_t> GetInt(const std::string& key) const;
  Result<double> GetDouble(const std::string& key) const;
  Result<bool> GetBool(const std::string& key) const;
  // Accepts plain integers or sizes with units: 512KiB, 64MiB, 1GiB, 10MB.
  Result<int64_t> GetBytes(const std::string& key) const;
  // Accepts 250ms, 5s, 2m, or a plain number of milliseconds.
  Result<int64_t> GetMillis(const std::string& key) const;

  // Where each value came from ("default", "file:x.yaml", "env", "flag").
  std::string SourceOf(const std::string& key) const;
  // Environment variable name for a key.
  static std::string EnvName(const std::string& key);

 private:
  struct Value {
    std::string value;
    std::string source;
  };
  std::map<std::string, Value> values_;
};

}  // namespace infermesh
