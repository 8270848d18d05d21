// The job service's lifecycle log: one JSON object a line, appended for every state
// change the store commits (src/jobs/store.h, JobEvent):
//
//   {"time":"2026-12-04T12:00:01.250Z","time_ms":1796385601250,"id":"corpus-1",
//    "class":"embed","from":"queued","to":"running","reason":"claimed by host/default"}
//
// `from` is null for a submission. Each line goes out in one write(2) on a file opened
// with O_APPEND, so lines from several processes sharing the file do not interleave.
// The log is for people and log shippers; the store, not the log, is the record.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "core/status.h"
#include "jobs/store.h"

namespace infermesh::jobs {

// The line for `e`, without its newline.
std::string EventJson(const JobEvent& e);

class EventLog {
 public:
  // Creates the file if needed (its folder must exist).
  [[nodiscard]] static Result<std::unique_ptr<EventLog>> Open(const std::string& path);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Appends one line. Errors are counted, not returned: a full disk must not stop jobs.
  void Append(const JobEvent& e);
  uint64_t write_errors() const;
  const std::string& path() const { return path_; }

 private:
  EventLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
  mutable std::mutex mu_;
  uint64_t write_errors_ = 0;  // mu_
};

}  // namespace infermesh::jobs
