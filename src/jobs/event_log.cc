#include "jobs/event_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "http/api/json_write.h"
#include "jobs/api.h"

namespace infermesh::jobs {

std::string EventJson(const JobEvent& e) {
  using http::api::AppendJsonString;
  std::string out = "{\"time\":";
  AppendJsonString(out, Rfc3339Ms(e.time_ms));
  out += ",\"time_ms\":";
  http::api::AppendInt(out, e.time_ms);
  out += ",\"id\":";
  AppendJsonString(out, e.id);
  out += ",\"class\":";
  AppendJsonString(out, e.job_class);
  out += ",\"from\":";
  if (e.from) {
    AppendJsonString(out, JobStateName(*e.from));
  } else {
    out += "null";
  }
  out += ",\"to\":";
  AppendJsonString(out, JobStateName(e.to));
  out += ",\"reason\":";
  AppendJsonString(out, e.reason);
  out += "}";
  return out;
}

Result<std::unique_ptr<EventLog>> EventLog::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status(StatusCode::kUnavailable,
                  "cannot open the job event log " + path + ": " + std::strerror(errno));
  }
  return std::unique_ptr<EventLog>(new EventLog(path, fd));
}

EventLog::~EventLog() {
  if (fd_ >= 0) ::close(fd_);
}

void EventLog::Append(const JobEvent& e) {
  std::string line = EventJson(e);
  line += '\n';
  std::lock_guard<std::mutex> lock(mu_);
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) ++write_errors_;
}

uint64_t EventLog::write_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return write_errors_;
}

}  // namespace infermesh::jobs
