// Structured logging: one line per event, logfmt (default) or JSON, to stderr.
// Quiet by default: info carries lifecycle events only (start, model loaded,
// stop); per-request detail is debug.
//
//   log::Info("model loaded", {{"model", name}, {"ms", 123}});
//   log::Configure(config);   // log.level / log.format
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace infermesh::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };
enum class Format { kLogfmt, kJson };

using FieldValue = std::variant<std::string, int64_t, double, bool>;
struct Field {
  std::string key;
  FieldValue value;
  Field(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  Field(std::string k, const char* v) : key(std::move(k)), value(std::string(v)) {}
  Field(std::string k, std::string_view v) : key(std::move(k)), value(std::string(v)) {}
  Field(std::string k, int v) : key(std::move(k)), value(int64_t{v}) {}
  Field(std::string k, int64_t v) : key(std::move(k)), value(v) {}
  Field(std::string k, uint64_t v) : key(std::move(k)), value(static_cast<int64_t>(v)) {}
  Field(std::string k, double v) : key(std::move(k)), value(v) {}
  Field(std::string k, bool v) : key(std::move(k)), value(v) {}
};

Status Configure(const Config& config);
void SetLevel(Level level);
void SetFormat(Format format);
bool Enabled(Level level);

// Formats one event (exposed for tests).
std::string FormatEvent(Level level, std::string_view msg, const std::vector<Field>& fields,
                        Format format);
void Write(Level level, std::string_view msg, const std::vector<Field>& fields = {});

inline void Debug(std::string_view msg, const std::vector<Field>& f = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, msg, f);
}
inline void Info(std::string_view msg, const std::vector<Field>& f = {}) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, msg, f);
}
inline void Warn(std::string_view msg, const std::vector<Field>& f = {}) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, msg, f);
}
inline void Error(std::string_view msg, const std::vector<Field>& f = {}) {
  if (Enabled(Level::kError)) Write(Level::kError, msg, f);
}

}  // namespace infermesh::log
