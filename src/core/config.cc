#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

extern char** environ;

namespace infermesh {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

Status Flatten(const YAML::Node& node, const std::string& prefix,
               std::vector<std::pair<std::string, std::string>>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      std::string key = kv.first.as<std::string>();
      IM_RETURN_IF_ERROR(Flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out));
    }
    return OkStatus();
  }
  if (node.IsScalar()) {
    out.emplace_back(prefix, node.as<std::string>());
    return OkStatus();
  }
  if (node.IsNull()) return OkStatus();
  return InvalidArgument("config key '" + prefix + "' must be a scalar");
}

}  // namespace

Config Config::WithDefaults() { return Config(DeclaredConfigKeys()); }

Config::Config(const std::vector<ConfigKey>& keys) {
  for (const auto& k : keys) values_[k.key] = {k.default_value, "default"};
}

std::string Config::EnvName(const std::string& key) {
  std::string name = "INFERMESH_";
  for (char c : key) name += (c == '.') ? '_' : static_cast<char>(std::toupper(c));
  return name;
}

Status Config::Set(const std::string& key, const std::string& value, const std::string& source) {
  auto it = values_.find(key);
  if (it == values_.end()) {
    return InvalidArgument("unknown config key '" + key + "' (from " + source + ")");
  }
  it->second = {value, source};
  return OkStatus();
}

Status Config::LoadYamlString(const std::string& yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("config is not valid YAML: ") + e.what());
  }
  std::vector<std::pair<std::string, std::string>> flat;
  try {
    IM_RETURN_IF_ERROR(Flatten(root, "", flat));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("config: ") + e.what());
  }
  for (const auto& [k, v] : flat) IM_RETURN_IF_ERROR(Set(k, v, "file"));
  return OkStatus();
}

Status Config::LoadYamlFile(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return NotFound("cannot read config file '" + path + "'");
  } catch (const YAML::Exception& e) {
    return InvalidArgument("config file '" + path + "' is not valid YAML: " + e.what());
  }
  std::vector<std::pair<std::string, std::string>> flat;
  try {
    IM_RETURN_IF_ERROR(Flatten(root, "", flat));
  } catch (const YAML::Exception& e) {
    return InvalidArgument("config file '" + path + "': " + e.what());
  }
  for (const auto& [k, v] : flat) IM_RETURN_IF_ERROR(Set(k, v, "file:" + path));
  return OkStatus();
}

Status Config::LoadEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  return LoadEnvironment(env);
}

Status Config::LoadEnvironment(const std::vector<std::string>& env) {
  std::map<std::string, std::string> by_env;
  for (const auto& [key, _] : values_) by_env[EnvName(key)] = key;
  for (const auto& entry : env) {
    if (entry.rfind("INFERMESH_", 0) != 0) continue;
    size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    std::string name = entry.substr(0, eq);
    auto it = by_env.find(name);
    if (it == by_env.end()) continue;  // other INFERMESH_* variables (e.g. paths) pass
    IM_RETURN_IF_ERROR(Set(it->second, entry.substr(eq + 1), "env:" + name));
  }
  return OkStatus();
}

Status Config::SetFromFlag(const std::string& assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgument("--set expects key=value, got '" + assignment + "'");
  }
  return Set(Trim(assignment.substr(0, eq)), Trim(assignment.substr(eq + 1)), "flag");
}

Result<std::string> Config::GetString(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return NotFound("unknown config key '" + key + "'");
  return it->second.value;
}

Result<int64_t> Config::GetInt(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) {
    return InvalidArgument("config key '" + key + "' must be an integer, got '" + v + "' (" +
                           SourceOf(key) + ")");
  }
  return out;
}

Result<double> Config::GetDouble(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  try {
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used == v.size() && std::isfinite(d)) return d;
  } catch (const std::exception&) {
  }
  return InvalidArgument("config key '" + key + "' must be a number, got '" + v + "'");
}

Result<bool> Config::GetBool(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  std::string l = v;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "0" || l == "no" || l == "off") return false;
  return InvalidArgument("config key '" + key + "' must be true or false, got '" + v + "'");
}

namespace {
Result<int64_t> ParseWithUnit(const std::string& key, const std::string& v,
                              const std::vector<std::pair<std::string, double>>& units) {
  std::string s = Trim(v);
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return InvalidArgument("config key '" + key + "' has no number: '" + v + "'");
  double number = std::stod(s.substr(0, i));
  std::string unit = Trim(s.substr(i));
  for (const auto& [name, factor] : units) {
    if (unit == name) {
      double total = number * factor;
      if (total > 9.2e18) return InvalidArgument("config key '" + key + "' is too large");
      return static_cast<int64_t>(std::llround(total));
    }
  }
  return InvalidArgument("config key '" + key + "' has unknown unit '" + unit + "' in '" + v + "'");
}
}  // namespace

Result<int64_t> Config::GetBytes(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  return ParseWithUnit(key, v,
                       {{"", 1},
                        {"B", 1},
                        {"KiB", 1024.0},
                        {"MiB", 1048576.0},
                        {"GiB", 1073741824.0},
                        {"KB", 1e3},
                        {"MB", 1e6},
                        {"GB", 1e9}});
}

Result<int64_t> Config::GetMillis(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  return ParseWithUnit(key, v, {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}});
}

std::string Config::SourceOf(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? "unknown" : it->second.source;
}

}  // namespace infermesh
