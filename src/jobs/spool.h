// The spool folder: submissions as files, for clusters where a job script can write to
// shared storage but cannot reach the service's port (the seed's ENV_QUEUE_DIR).
//
//   <dir>/incoming/  a writer puts a submission here: the JSON body of POST /queue/submit,
//                    written under a temporary name (starting with '.' or ending in
//                    .tmp) and renamed, so a half-written file is never read
//   <dir>/accepted/  the service stored the job (the store commit comes first, then the
//                    rename: a crash between the two submits the file again on restart,
//                    which the id makes harmless)
//   <dir>/done/      the job succeeded
//   <dir>/failed/    the submission was refused, or the job failed or was cancelled;
//                    <name>.error beside it says why
//
// inotify wakes the watcher when a file is renamed into or closed in incoming/; a full
// rescan every `rescan` catches what inotify misses (NFS and other network filesystems,
// where cluster spools often live, do not deliver its events for other hosts' writes).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "http/api/api_error.h"

namespace infermesh::jobs {

struct SpoolOptions {
  std::string dir;
  std::chrono::milliseconds rescan{2000};
  size_t max_file_bytes = 1 << 20;
};

class Spool {
 public:
  // Stores a submission body; the job's id, or why it was refused.
  using SubmitFn = std::function<http::api::ApiResult<std::string>(const std::string& body)>;
  // A job's outcome once it has finished: {succeeded, error}; nullopt while it has not.
  using OutcomeFn =
      std::function<std::optional<std::pair<bool, std::string>>(const std::string& id)>;

  // Creates the four folders, adopts accepted/ (files whose jobs finished meanwhile move
  // on), takes what waits in incoming/, then watches.
  [[nodiscard]] static Result<std::unique_ptr<Spool>> Start(SpoolOptions options, SubmitFn submit,
                                                            OutcomeFn outcome);
  ~Spool();  // Stop()
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Moves the job's file from accepted/ to done/ or failed/ (no-op for jobs not from the
  // spool). Thread-safe.
  void JobFinished(const std::string& id, bool succeeded, const std::string& error);
  void Stop();

  // Takes incoming/ now (tests; the watcher does this on its own).
  void ScanNow();

 private:
  explicit Spool(SpoolOptions options) : options_(std::move(options)) {}
  void Loop();
  void Take(const std::string& name);
  void Move(const std::string& from_dir, const std::string& name, const std::string& to_dir,
            const std::string& error);

  SpoolOptions options_;
  SubmitFn submit_;
  OutcomeFn outcome_;
  int inotify_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Stop()
  std::thread thread_;
  std::mutex scan_mu_;  // one scan at a time (the watcher and ScanNow)
  std::mutex mu_;       // guards the file moves and the map
  // job id -> its files in accepted/ (a writer may submit one id twice)
  std::map<std::string, std::vector<std::string>> accepted_;
  bool stopped_ = false;
};

}  // namespace infermesh::jobs
