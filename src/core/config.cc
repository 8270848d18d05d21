#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string_view>

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

// Every numeric getter below is strict: the whole value must be consumed ("1.2.3s"
// is an error, not 1.2 s), and none of them throws. Values are parsed when read, so
// the message names the key, the value as given and the layer it came from.
namespace {

Status BadValue(const std::string& key, const std::string& value, const std::string& source,
                const std::string& expected) {
  return InvalidArgument("config key '" + key + "' must be " + expected + ", got '" + value +
                         "' (from " + source + ")");
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

Result<int64_t> Config::GetInt(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) {
    return BadValue(key, v, SourceOf(key), "an integer");
  }
  return out;
}

Result<double> Config::GetDouble(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  double d = 0;
  // from_chars does not read hex floats in the general format, nor a leading '+';
  // it does read "inf" and "nan", which no limit can mean.
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d, std::chars_format::general);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || !std::isfinite(d)) {
    return BadValue(key, v, SourceOf(key), "a finite number");
  }
  return d;
}

Result<bool> Config::GetBool(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  std::string l = v;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "0" || l == "no" || l == "off") return false;
  return BadValue(key, v, SourceOf(key), "true or false");
}

namespace {

struct Unit {
  std::string_view name;
  int64_t factor;
};

// A non-negative decimal (digits with at most one '.', at least one digit; no sign,
// no exponent), optional blanks, then one of `units` ("" = bare number). Integers
// are exact up to INT64_MAX; fractions go through double and are rounded.
Result<int64_t> ParseWithUnit(const std::string& key, const std::string& v,
                              const std::string& source, const std::vector<Unit>& units,
                              const std::string& expected) {
  const std::string s = Trim(v);
  size_t i = 0;
  size_t digits = 0;
  size_t dot = std::string::npos;
  for (; i < s.size(); ++i) {
    if (IsDigit(s[i])) {
      ++digits;
    } else if (s[i] == '.' && dot == std::string::npos) {
      dot = i;
    } else {
      break;
    }
  }
  if (digits == 0) return BadValue(key, v, source, expected);
  const std::string_view number(s.data(), i);
  const std::string unit = Trim(s.substr(i));
  const Unit* found = nullptr;
  for (const Unit& u : units) {
    if (unit == u.name) found = &u;
  }
  if (found == nullptr) return BadValue(key, v, source, expected);

  const char* first = number.data();
  const char* last = number.data() + number.size();
  if (dot == std::string::npos) {
    int64_t n = 0;
    int64_t total = 0;
    auto [p, ec] = std::from_chars(first, last, n);
    if (ec != std::errc() || p != last || __builtin_mul_overflow(n, found->factor, &total)) {
      return BadValue(key, v, source, expected + " no larger than 2^63-1");
    }
    return total;
  }
  double d = 0;
  auto [p, ec] = std::from_chars(first, last, d, std::chars_format::fixed);
  const double total = d * static_cast<double>(found->factor);
  // 2^63 is exactly representable; anything at or above it does not fit an int64.
  if (ec != std::errc() || p != last || !(total < 9223372036854775808.0)) {
    return BadValue(key, v, source, expected + " no larger than 2^63-1");
  }
  return static_cast<int64_t>(std::llround(total));
}

}  // namespace

Result<int64_t> Config::GetBytes(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  return ParseWithUnit(key, v, SourceOf(key),
                       {{"", 1},
                        {"B", 1},
                        {"KiB", int64_t{1} << 10},
                        {"MiB", int64_t{1} << 20},
                        {"GiB", int64_t{1} << 30},
                        {"KB", 1000},
                        {"MB", 1000 * 1000},
                        {"GB", 1000 * 1000 * 1000}},
                       "a size (a number of bytes, or with B, KiB, MiB, GiB, KB, MB, GB)");
}

Result<int64_t> Config::GetMillis(const std::string& key) const {
  IM_ASSIGN_OR_RETURN(std::string v, GetString(key));
  return ParseWithUnit(key, v, SourceOf(key),
                       {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}},
                       "a duration (250ms, 5s, 2m, 1h, or a number of milliseconds)");
}

std::string Config::SourceOf(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? "unknown" : it->second.source;
}

}  // namespace infermesh
