#include "core/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace infermesh::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kLogfmt};

std::shared_ptr<spdlog::logger> Logger() {
  static auto logger = [] {
    auto l = std::make_shared<spdlog::logger>("infermesh",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%v");
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return logger;
}

const char* LevelName(Level l) {
  switch (l) {
    case Level::kTrace:
      return "trace";
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
    case Level::kOff:
      return "off";
  }
  return "info";
}

void AppendQuoted(std::string& out, std::string_view s, bool json) {
  bool needs = json || s.empty() || s.find_first_of(" =\"\t\n\\") != std::string_view::npos;
  if (!needs) {
    out += s;
    return;
  }
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void AppendValue(std::string& out, const FieldValue& v, bool json) {
  if (auto* s = std::get_if<std::string>(&v)) {
    AppendQuoted(out, *s, json);
  } else if (auto* i = std::get_if<int64_t>(&v)) {
    out += std::to_string(*i);
  } else if (auto* d = std::get_if<double>(&v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", *d);
    out += buf;
  } else {
    out += std::get<bool>(v) ? "true" : "false";
  }
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

Status Configure(const Config& config) {
  IM_ASSIGN_OR_RETURN(std::string level, config.GetString("log.level"));
  IM_ASSIGN_OR_RETURN(std::string format, config.GetString("log.format"));
  static const std::pair<const char*, Level> kLevels[] = {
      {"trace", Level::kTrace}, {"debug", Level::kDebug}, {"info", Level::kInfo},
      {"warn", Level::kWarn},   {"error", Level::kError}, {"off", Level::kOff}};
  bool found = false;
  for (const auto& [name, l] : kLevels) {
    if (level == name) {
      SetLevel(l);
      found = true;
    }
  }
  if (!found) return InvalidArgument("log.level must be trace|debug|info|warn|error|off");
  if (format == "logfmt") {
    SetFormat(Format::kLogfmt);
  } else if (format == "json") {
    SetFormat(Format::kJson);
  } else {
    return InvalidArgument("log.format must be logfmt or json, got '" + format + "'");
  }
  return OkStatus();
}

void SetLevel(Level level) { g_level.store(level); }
void SetFormat(Format format) { g_format.store(format); }
bool Enabled(Level level) { return level != Level::kOff && level >= g_level.load(); }

std::string FormatEvent(Level level, std::string_view msg, const std::vector<Field>& fields,
                        Format format) {
  std::string out;
  if (format == Format::kJson) {
    out += "{\"ts\":\"" + Timestamp() + "\",\"level\":\"" + LevelName(level) + "\",\"msg\":";
    AppendQuoted(out, msg, true);
    for (const auto& f : fields) {
      out += ",";
      AppendQuoted(out, f.key, true);
      out += ":";
      AppendValue(out, f.value, true);
    }
    out += "}";
    return out;
  }
  out += "ts=" + Timestamp() + " level=" + LevelName(level) + " msg=";
  AppendQuoted(out, msg, false);
  for (const auto& f : fields) {
    out += " " + f.key + "=";
    AppendValue(out, f.value, false);
  }
  return out;
}

void Write(Level level, std::string_view msg, const std::vector<Field>& fields) {
  Logger()->log(spdlog::level::info, FormatEvent(level, msg, fields, g_format.load()));
}

}  // namespace infermesh::log
