// libFuzzer target for the configuration parser (src/core/config.cc): arbitrary bytes
// as a YAML file, as INFERMESH_* environment entries and as --set flags, then every
// getter on every declared key. Config must answer with a value or a Status, never
// throw (an escaping exception is a crash here), and its answers must keep their
// promises: errors are InvalidArgument or NotFound and name the key; sizes and
// durations are never negative; numbers are finite; an integer prints back to itself.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace {

using infermesh::Config;
using infermesh::DeclaredConfigKeys;
using infermesh::Result;
using infermesh::StatusCode;

template <typename T>
void CheckError(const Result<T>& r, const std::string& key) {
  if (r.ok()) return;
  const auto code = r.status().code();
  if (code != StatusCode::kInvalidArgument && code != StatusCode::kNotFound) std::abort();
  if (r.status().message().find(key) == std::string::npos) std::abort();
}

void CheckEveryGetter(const Config& c) {
  for (const auto& k : DeclaredConfigKeys()) {
    const std::string& key = k.key;
    auto s = c.GetString(key);
    if (!s.ok()) std::abort();  // declared keys always have a value
    auto i = c.GetInt(key);
    CheckError(i, key);
    if (i.ok()) {
      Config again({{key, std::to_string(*i), ""}});
      auto back = again.GetInt(key);
      if (!back.ok() || *back != *i) std::abort();
    }
    auto d = c.GetDouble(key);
    CheckError(d, key);
    if (d.ok() && !std::isfinite(*d)) std::abort();
    CheckError(c.GetBool(key), key);
    auto bytes = c.GetBytes(key);
    CheckError(bytes, key);
    if (bytes.ok() && *bytes < 0) std::abort();
    auto millis = c.GetMillis(key);
    CheckError(millis, key);
    if (millis.ok() && *millis < 0) std::abort();
    // A plain integer is a number of bytes and of milliseconds, exactly.
    if (i.ok() && *i >= 0 && s->find_first_not_of("0123456789") == std::string::npos) {
      if (!bytes.ok() || *bytes != *i || !millis.ok() || *millis != *i) std::abort();
    }
  }
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // 1. The whole input as a YAML file.
  {
    Config c = Config::WithDefaults();
    (void)c.LoadYamlString(std::string(text));
    CheckEveryGetter(c);
  }

  const std::vector<std::string> lines = Lines(text);
  // 2. Each line as an environment entry, with the prefix added when missing, and
  // 3. each line as a --set flag.
  {
    Config env = Config::WithDefaults();
    Config flags = Config::WithDefaults();
    std::vector<std::string> entries;
    for (const auto& line : lines) {
      entries.push_back(line.rfind("INFERMESH_", 0) == 0 ? line : "INFERMESH_" + line);
      (void)flags.SetFromFlag(line);
    }
    (void)env.LoadEnvironment(entries);
    CheckEveryGetter(env);
    CheckEveryGetter(flags);
  }

  // 4. Each line as the value of every key: every getter sees every value.
  for (size_t n = 0; n < lines.size() && n < 16; ++n) {
    Config c = Config::WithDefaults();
    for (const auto& k : DeclaredConfigKeys()) {
      if (!c.Set(k.key, lines[n], "fuzz").ok()) std::abort();
    }
    CheckEveryGetter(c);
  }
  return 0;
}
