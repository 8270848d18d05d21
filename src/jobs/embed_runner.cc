#include "jobs/embed_runner.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <variant>
#include <vector>

#include <boost/json.hpp>

#include "core/failpoint.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/api/f32_binary.h"
#include "http/api/json_write.h"

namespace infermesh::jobs {

namespace {

using Clock = std::chrono::steady_clock;

struct RunnerMetrics {
  metrics::Counter& items_ok;
  metrics::Counter& items_failed;
  metrics::Counter& items_resumed;
  metrics::Counter& chunks;
  metrics::CounterFamily& retries;
  static RunnerMetrics& Get() {
    auto& reg = metrics::Registry::Global();
    auto& items = reg.Counter("infermesh_jobs_embed_items_total",
                              "Items of embed jobs by result (ok, failed, resumed: taken from a "
                              "checkpoint after a restart)",
                              {"result"});
    static RunnerMetrics m{
        items.WithLabels({"ok"}), items.WithLabels({"failed"}), items.WithLabels({"resumed"}),
        reg.Counter("infermesh_jobs_embed_chunks_total", "Chunks of embed jobs checkpointed")
            .WithLabels({}),
        reg.Counter("infermesh_jobs_embed_retries_total",
                    "Chunk requests sent again, by why (overloaded: 429/503, transport, "
                    "timeout, split: a refused chunk sent again item by item)",
                    {"reason"})};
    return m;
  }
};

// One item of the input.
struct Item {
  int64_t line = 0;
  std::string custom_id;
  std::string text;
  std::string error;  // set: the line is not a valid item
};

// Reads lines in blocks; a line longer than `max` is returned cut, with `too_long`;
// `blank` says whether the whole line (not only what was kept) is spaces and tabs.
class LineReader {
 public:
  LineReader(int fd, size_t max) : fd_(fd), max_(max) {}
  // false at the end of the input, or on an I/O error (then in status()).
  bool Next(std::string* line, bool* too_long, bool* blank) {
    line->clear();
    *too_long = false;
    *blank = true;
    bool got = false;
    for (;;) {
      if (pos_ >= len_) {
        if (eof_) return Done(line, got);
        const ssize_t n = ::read(fd_, buf_.data(), buf_.size());
        if (n < 0) {
          if (errno == EINTR) continue;
          status_ = Status(StatusCode::kUnavailable,
                           std::string("reading the input: ") + std::strerror(errno));
          return false;
        }
        pos_ = 0;
        len_ = static_cast<size_t>(n);
        if (n == 0) {
          eof_ = true;
          return Done(line, got);
        }
      }
      got = true;
      const char* start = buf_.data() + pos_;
      const void* nl = std::memchr(start, '\n', len_ - pos_);
      const size_t take =
          nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : len_ - pos_;
      for (size_t k = 0; k < take && *blank; ++k) {
        *blank = start[k] == ' ' || start[k] == '\t' || start[k] == '\r';
      }
      const size_t room = max_ > line->size() ? max_ - line->size() : 0;
      if (take > room) *too_long = true;
      line->append(start, std::min(take, room));
      pos_ += take;
      if (nl) {
        ++pos_;
        return Done(line, true);
      }
    }
  }
  const Status& status() const { return status_; }

 private:
  static bool Done(std::string* line, bool got) {
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return got;
  }
  int fd_;
  size_t max_;
  std::vector<char> buf_ = std::vector<char>(size_t{1} << 16);
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
  Status status_;
};

// Items one by one, numbering lines; empty lines are skipped.
class ItemReader {
 public:
  ItemReader(int fd, const EmbedSpec& spec, size_t max_line)
      : reader_(fd, max_line), format_(spec.input_format), max_line_(max_line) {}

  // Only items [skip, skip + count) of the input (a shard); count -1: to the end.
  void SetRange(int64_t skip, int64_t count) {
    skip_ = skip;
    left_ = count;
  }

  bool Next(Item* item) {
    for (; skip_ > 0; --skip_) {
      if (!NextItem(item)) return false;
    }
    if (left_ == 0) return false;
    if (!NextItem(item)) return false;
    if (left_ > 0) --left_;
    return true;
  }
  const Status& status() const { return reader_.status(); }

 private:
  bool NextItem(Item* item) {
    std::string line;
    bool too_long = false, blank = true;
    for (;;) {
      if (!reader_.Next(&line, &too_long, &blank)) return false;
      ++line_no_;
      if (!blank) break;
    }
    *item = Item{};
    item->line = line_no_;
    if (too_long) {
      item->custom_id = format_ == InputFormat::kText ? std::to_string(line_no_) : "";
      item->error = "line " + std::to_string(line_no_) + " is longer than " +
                    std::to_string(max_line_) + " bytes (jobs.embed.max_line_bytes)";
      return true;
    }
    if (format_ == InputFormat::kText) {
      item->custom_id = std::to_string(line_no_);
      item->text = std::move(line);
      return true;
    }
    ParseJsonl(line, item);
    return true;
  }

  void ParseJsonl(const std::string& line, Item* item) {
    const std::string where = "line " + std::to_string(item->line) + ": ";
    boost::system::error_code ec;
    boost::json::parse_options po;
    po.max_depth = 16;
    boost::json::value v = boost::json::parse(line, ec, {}, po);
    if (ec || !v.is_object()) {
      item->error = where + (ec ? "not JSON (" + ec.message() + ")" : "not a JSON object");
      return;
    }
    const auto& o = v.as_object();
    if (const auto* id = o.if_contains("custom_id"); id && id->is_string()) {
      item->custom_id = std::string(id->as_string());
    } else if (id && (id->is_int64() || id->is_uint64())) {
      item->custom_id = boost::json::serialize(*id);
    } else {
      item->error = where + "needs a string custom_id";
      return;
    }
    const boost::json::value* input = o.if_contains("input");
    if (input == nullptr) {
      if (const auto* body = o.if_contains("body"); body && body->is_object()) {
        input = body->as_object().if_contains("input");
      }
    }
    if (input == nullptr || !input->is_string()) {
      item->error = where + "needs \"input\" (or \"body\": {\"input\"}) as a string";
      return;
    }
    item->text = std::string(input->as_string());
  }

  LineReader reader_;
  InputFormat format_;
  size_t max_line_;
  int64_t line_no_ = 0;
  int64_t skip_ = 0, left_ = -1;
};

struct Chunk {
  int64_t index = 0;
  std::vector<Item> items;
};

// Per item: its row, or why it failed.
struct ChunkOutcome {
  std::vector<std::variant<std::vector<float>, std::string>> results;
};

std::string HashChunkIds(const std::string& prev, const std::vector<Item>& items) {
  std::string material = prev;
  for (const auto& it : items) {
    material += std::to_string(it.custom_id.size());
    material += ':';
    material += it.custom_id;
  }
  return HashBytes128(material).ToHex();
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

Status Errno(const std::string& what) {
  return Status(StatusCode::kUnavailable, what + ": " + std::strerror(errno));
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("writing " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

Status FsyncDir(const std::string& file) {
  const std::string dir = std::filesystem::path(file).parent_path().string();
  Fd d(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() < 0) return Errno("opening " + dir);
  if (::fsync(d.get()) != 0) return Errno("syncing " + dir);
  return OkStatus();
}

// Writes `data` to `path` atomically and durably (temporary name, fsync, rename).
Status WriteFileAtomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (fd.get() < 0) return Errno("creating " + tmp);
    IM_RETURN_IF_ERROR(WriteAll(fd.get(), data, tmp));
    if (::fdatasync(fd.get()) != 0) return Errno("syncing " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Errno("renaming " + tmp);
  return FsyncDir(path);
}

std::optional<std::string> ReadSmallFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (1 << 16)) return std::nullopt;
  }
  return out;
}

struct Paths {
  std::string out, index, errors;                       // final
  std::string out_part, index_part, errors_part, ckpt;  // while running
  explicit Paths(const EmbedSpec& s)
      : out(s.output),
        index(s.output + ".index"),
        errors(s.output + ".errors.jsonl"),
        out_part(s.output + ".partial"),
        index_part(s.output + ".index.partial"),
        errors_part(s.output + ".errors.jsonl.partial"),
        ckpt(s.output + ".checkpoint") {}
};

struct Checkpoint {
  std::string fingerprint;
  int64_t chunks = 0, items = 0, rows = 0, failed = 0;
  int64_t out_bytes = 0, index_bytes = 0, errors_bytes = 0;
  int64_t dims = 0;
  std::string ids_hash;
  std::string first_error;

  std::string ToJson() const {
    boost::json::object o;
    o["version"] = 1;
    o["fingerprint"] = fingerprint;
    o["chunks"] = chunks;
    o["items"] = items;
    o["rows"] = rows;
    o["failed"] = failed;
    o["out_bytes"] = out_bytes;
    o["index_bytes"] = index_bytes;
    o["errors_bytes"] = errors_bytes;
    o["dims"] = dims;
    o["ids_hash"] = ids_hash;
    o["first_error"] = first_error;
    return boost::json::serialize(o);
  }
  static std::optional<Checkpoint> Parse(const std::string& text) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(text, ec);
    if (ec || !v.is_object()) return std::nullopt;
    const auto& o = v.as_object();
    auto num = [&](const char* k, int64_t* out) {
      const auto* x = o.if_contains(k);
      if (x == nullptr || !x->is_int64() || x->as_int64() < 0) return false;
      *out = x->as_int64();
      return true;
    };
    auto str = [&](const char* k, std::string* out) {
      const auto* x = o.if_contains(k);
      if (x == nullptr || !x->is_string()) return false;
      *out = std::string(x->as_string());
      return true;
    };
    Checkpoint c;
    int64_t version = 0;
    if (!num("version", &version) || version != 1 || !str("fingerprint", &c.fingerprint) ||
        !num("chunks", &c.chunks) || !num("items", &c.items) || !num("rows", &c.rows) ||
        !num("failed", &c.failed) || !num("out_bytes", &c.out_bytes) ||
        !num("index_bytes", &c.index_bytes) || !num("errors_bytes", &c.errors_bytes) ||
        !num("dims", &c.dims) || !str("ids_hash", &c.ids_hash) ||
        !str("first_error", &c.first_error)) {
      return std::nullopt;
    }
    return c;
  }
};

std::string Fingerprint(const EmbedSpec& spec, const struct stat& st, int shard, int shards) {
  // The input (path, inode, size, mtime), what is made of it, and where (the mesh's URL;
  // "local" for a shard embedded in process): a checkpoint from anything else is ignored.
  return spec.input + ":" + std::to_string(st.st_ino) + ":" + spec.url + ":" +
         std::to_string(shard) + "/" + std::to_string(shards) + ":" + std::to_string(st.st_size) +
         ":" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ":" +
         (spec.input_format == InputFormat::kJsonl ? "jsonl" : "text") + ":" +
         (spec.output_format == OutputFormat::kJsonl ? "jsonl" : "f32") + ":" +
         std::to_string(spec.chunk_items) + ":" + (spec.normalize ? "n" : "-") +
         (spec.truncate ? "t" : "-");
}

// What one request to the mesh came to.
struct Answer {
  std::vector<std::vector<float>> rows;  // when ok
  std::optional<std::string> refused;    // a request error: the mesh's message
};

class EmbedJob {
 public:
  EmbedJob(const EmbedSpec& spec, const EmbedRunnerOptions& o) : spec_(spec), o_(o), paths_(spec) {}

  Result<EmbedResult> Run();

 private:
  bool Stopping() const { return o_.stop != nullptr && o_.stop->load(); }
  Result<Answer> Send(const std::vector<const Item*>& items);
  // Send(), in requests of at most max_request_items_.
  Result<Answer> SendAll(const std::vector<const Item*>& items);
  // With EmbedRunnerOptions::embed: in this process.
  Result<Answer> EmbedHere(const std::vector<const Item*>& items);
  void ReadMeshLimits();
  Result<ChunkOutcome> Process(const Chunk& chunk);
  void WorkerLoop();
  Status Append(const Chunk& chunk, const ChunkOutcome& outcome);
  Status WriteCheckpoint();
  Result<int64_t> CountItems();
  Status OpenPartials(bool resume);
  Status Finish();

  const EmbedSpec& spec_;
  const EmbedRunnerOptions& o_;
  Paths paths_;
  http::Endpoint endpoint_;
  size_t max_request_items_ = 0;  // the mesh's max_client_batch_size (0: unknown)
  Fd out_, index_, errors_;
  Checkpoint ckpt_;
  std::string fingerprint_;

  // Chunks between the reader (Run) and the request threads.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Chunk>> todo_;              // mu_
  std::map<int64_t, Result<ChunkOutcome>> done_;         // mu_
  std::map<int64_t, std::shared_ptr<Chunk>> in_flight_;  // mu_: sent, not yet written
  bool quit_ = false;                                    // mu_
};

Result<Answer> EmbedJob::Send(const std::vector<const Item*>& items) {
  boost::json::object body;
  boost::json::array inputs;
  for (const Item* it : items) inputs.emplace_back(it->text);
  body["inputs"] = std::move(inputs);
  body["normalize"] = spec_.normalize;
  body["truncate"] = spec_.truncate;
  const std::string payload = boost::json::serialize(body);
  std::optional<Clock::time_point> first_failure;
  auto backoff = o_.min_backoff;
  thread_local std::mt19937_64 rng(std::random_device{}());
  for (;;) {
    if (Stopping()) return Status(StatusCode::kCancelled, "the job service is stopping");
    http::ClientRequest req;
    req.method = "POST";
    req.target = "/embed";
    req.content_type = "application/json";
    req.body = payload;
    req.deadline = Clock::now() + o_.request_timeout;
    req.headers.emplace_back("accept", std::string(http::api::kF32ContentType));
    auto r = o_.client->SendSync(endpoint_, std::move(req));
    std::string why, reason;
    if (!r.ok()) {
      if (r.status().code() == StatusCode::kCancelled && Stopping()) {
        return Status(StatusCode::kCancelled, "the job service is stopping");
      }
      why = r.status().ToString();
      reason = r.status().code() == StatusCode::kDeadlineExceeded ? "timeout" : "transport";
    } else if (r->status == 200) {
      Answer a;
      if (r->Header("content-type").find(http::api::kF32ContentType) != std::string_view::npos) {
        IM_ASSIGN_OR_RETURN(auto rows, http::api::DecodeF32Rows(r->body, size_t{1} << 28));
        if (rows.rows != items.size()) {
          return Status(StatusCode::kDataLoss, "the mesh answered " + std::to_string(rows.rows) +
                                                   " rows for " + std::to_string(items.size()) +
                                                   " inputs");
        }
        a.rows.resize(rows.rows);
        for (uint32_t i = 0; i < rows.rows; ++i) {
          a.rows[i].assign(rows.values.begin() + size_t{i} * rows.dims,
                           rows.values.begin() + size_t{i + 1} * rows.dims);
        }
      } else {
        // A TEI-compatible server that ignores the accept header: [[f32]] as JSON.
        boost::system::error_code ec;
        boost::json::value v = boost::json::parse(r->body, ec);
        if (ec || !v.is_array() || v.as_array().size() != items.size()) {
          return Status(StatusCode::kDataLoss,
                        "the mesh's answer is neither float32 rows nor a JSON array of " +
                            std::to_string(items.size()) + " embeddings");
        }
        for (const auto& row : v.as_array()) {
          if (!row.is_array()) return Status(StatusCode::kDataLoss, "an embedding is not an array");
          std::vector<float> f;
          f.reserve(row.as_array().size());
          for (const auto& x : row.as_array()) {
            if (!x.is_number()) return Status(StatusCode::kDataLoss, "a value is not a number");
            f.push_back(static_cast<float>(x.to_number<double>()));
          }
          a.rows.push_back(std::move(f));
        }
      }
      return a;
    } else if (r->status == 408 || r->status == 429 || r->status == 502 || r->status == 503 ||
               r->status == 504) {
      why = "HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 200);
      reason = r->status == 429 || r->status == 503 ? "overloaded" : "timeout";
    } else {
      // The mesh refuses this input: say why, in its words.
      std::string msg = r->body.substr(0, 500);
      boost::system::error_code ec;
      boost::json::value v = boost::json::parse(r->body, ec);
      if (!ec && v.is_object()) {
        if (const auto* e = v.as_object().if_contains("error"); e && e->is_string()) {
          msg = std::string(e->as_string());
        }
      }
      Answer a;
      a.refused = "the mesh answered " + std::to_string(r->status) + ": " + msg;
      return a;
    }
    const auto now = Clock::now();
    if (!first_failure) first_failure = now;
    if (now - *first_failure >= o_.retry_window) {
      return Status(
          StatusCode::kUnavailable,
          "the mesh at " + spec_.url + " did not take a chunk for " +
              std::to_string(
                  std::chrono::duration_cast<std::chrono::seconds>(o_.retry_window).count()) +
              " s (jobs.embed.retry_window); last: " + why);
    }
    RunnerMetrics::Get().retries.WithLabels({reason}).Inc();
    // Full jitter over [backoff/2, backoff], in small sleeps so that a stop is prompt.
    std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
    auto until = Clock::now() + std::chrono::milliseconds(jitter(rng));
    while (Clock::now() < until && !Stopping()) {
      std::this_thread::sleep_for(
          std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(20)));
    }
    backoff = std::min(backoff * 2, o_.max_backoff);
  }
}

Result<Answer> EmbedJob::EmbedHere(const std::vector<const Item*>& items) {
  std::vector<std::string> texts;
  texts.reserve(items.size());
  for (const Item* it : items) texts.push_back(it->text);
  auto rows = o_.embed(texts, spec_);
  Answer a;
  if (rows.ok()) {
    if (rows->size() != items.size()) {
      return Status(StatusCode::kInternal, "the model answered " + std::to_string(rows->size()) +
                                               " rows for " + std::to_string(items.size()));
    }
    a.rows = std::move(rows).value();
    return a;
  }
  switch (rows.status().code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kFailedPrecondition:
      a.refused = "the model refused it: " + rows.status().message();
      return a;
    default:
      return rows.status();
  }
}

Result<Answer> EmbedJob::SendAll(const std::vector<const Item*>& items) {
  if (max_request_items_ == 0 || items.size() <= max_request_items_) return Send(items);
  Answer all;
  for (size_t i = 0; i < items.size(); i += max_request_items_) {
    std::vector<const Item*> part(items.begin() + static_cast<std::ptrdiff_t>(i),
                                  items.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                      items.size(), i + max_request_items_)));
    IM_ASSIGN_OR_RETURN(Answer a, Send(part));
    if (a.refused) return a;
    for (auto& row : a.rows) all.rows.push_back(std::move(row));
  }
  return all;
}

// GET /info: a TEI-compatible server's max_client_batch_size caps each request (a chunk
// larger than it goes as several). An unreachable mesh is found out by the first chunk.
void EmbedJob::ReadMeshLimits() {
  http::ClientRequest req;
  req.target = "/info";
  req.deadline = Clock::now() + std::chrono::seconds(5);
  auto r = o_.client->SendSync(endpoint_, std::move(req));
  if (!r.ok() || r->status != 200) return;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r->body, ec);
  if (ec || !v.is_object()) return;
  if (const auto* b = v.as_object().if_contains("max_client_batch_size");
      b && b->is_int64() && b->as_int64() > 0) {
    max_request_items_ = static_cast<size_t>(b->as_int64());
  }
}

Result<ChunkOutcome> EmbedJob::Process(const Chunk& chunk) {
  ChunkOutcome out;
  out.results.resize(chunk.items.size());
  std::vector<const Item*> valid;
  std::vector<size_t> where;
  for (size_t i = 0; i < chunk.items.size(); ++i) {
    if (!chunk.items[i].error.empty()) {
      out.results[i] = chunk.items[i].error;
    } else {
      valid.push_back(&chunk.items[i]);
      where.push_back(i);
    }
  }
  if (valid.empty()) return out;
  IM_ASSIGN_OR_RETURN(Answer a, o_.embed ? EmbedHere(valid) : SendAll(valid));
  if (!a.refused) {
    for (size_t k = 0; k < valid.size(); ++k) out.results[where[k]] = std::move(a.rows[k]);
    return out;
  }
  if (valid.size() == 1) {
    out.results[where[0]] = "line " + std::to_string(valid[0]->line) + ": " + *a.refused;
    return out;
  }
  // Find the items it refuses: one at a time.
  RunnerMetrics::Get().retries.WithLabels({"split"}).Inc();
  for (size_t k = 0; k < valid.size(); ++k) {
    IM_ASSIGN_OR_RETURN(Answer one, o_.embed ? EmbedHere({valid[k]}) : Send({valid[k]}));
    if (one.refused) {
      out.results[where[k]] = "line " + std::to_string(valid[k]->line) + ": " + *one.refused;
    } else {
      out.results[where[k]] = std::move(one.rows[0]);
    }
  }
  return out;
}

void EmbedJob::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Chunk> chunk;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return quit_ || !todo_.empty(); });
      if (quit_) return;
      chunk = todo_.front();
      todo_.pop_front();
    }
    Result<ChunkOutcome> r = Status(StatusCode::kInternal, "unset");
    try {
      r = Process(*chunk);
    } catch (const std::exception& e) {
      r = Status(StatusCode::kInternal, std::string("embedding a chunk threw: ") + e.what());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_.emplace(chunk->index, std::move(r));
    }
    cv_.notify_all();
  }
}

Status EmbedJob::Append(const Chunk& chunk, const ChunkOutcome& outcome) {
  std::string out, index, errors;
  size_t failed = 0;
  for (size_t i = 0; i < chunk.items.size(); ++i) {
    const Item& item = chunk.items[i];
    const auto& res = outcome.results[i];
    std::string error;
    if (const auto* row = std::get_if<std::vector<float>>(&res)) {
      if (ckpt_.dims == 0) ckpt_.dims = static_cast<int64_t>(row->size());
      if (static_cast<int64_t>(row->size()) != ckpt_.dims) {
        return Status(StatusCode::kDataLoss, "the mesh answered rows of " +
                                                 std::to_string(row->size()) + " values after " +
                                                 std::to_string(ckpt_.dims));
      }
      if (spec_.output_format == OutputFormat::kJsonl) {
        const size_t mark = out.size();
        out += "{\"custom_id\":";
        http::api::AppendJsonString(out, item.custom_id);
        out += ",\"embedding\":";
        if (http::api::AppendFloatArray(out, *row) != http::api::kAllFinite) {
          out.resize(mark);
          error = "line " + std::to_string(item.line) + ": the embedding is not finite";
        } else {
          out += "}\n";
        }
      } else {
        out.append(reinterpret_cast<const char*>(row->data()), row->size() * sizeof(float));
        index += "{\"custom_id\":";
        http::api::AppendJsonString(index, item.custom_id);
        index += ",\"row\":";
        http::api::AppendInt(index, ckpt_.rows);
        index += "}\n";
      }
      if (error.empty()) ++ckpt_.rows;
    } else {
      error = std::get<std::string>(res);
    }
    if (!error.empty()) {
      errors += "{\"custom_id\":";
      http::api::AppendJsonString(errors, item.custom_id);
      errors += ",\"line\":";
      http::api::AppendInt(errors, item.line);
      errors += ",\"error\":";
      http::api::AppendJsonString(errors, error);
      errors += "}\n";
      if (ckpt_.first_error.empty()) ckpt_.first_error = error.substr(0, 500);
      ++ckpt_.failed;
      ++failed;
    }
  }
  // Half the chunk's rows, then the crash: the restart must cut them off.
  const size_t half = out.size() / 2;
  IM_RETURN_IF_ERROR(WriteAll(out_.get(), std::string_view(out).substr(0, half), paths_.out_part));
  Failpoint("jobs.embed.mid_chunk");
  IM_RETURN_IF_ERROR(WriteAll(out_.get(), std::string_view(out).substr(half), paths_.out_part));
  if (index_.get() >= 0) IM_RETURN_IF_ERROR(WriteAll(index_.get(), index, paths_.index_part));
  IM_RETURN_IF_ERROR(WriteAll(errors_.get(), errors, paths_.errors_part));
  ckpt_.out_bytes += static_cast<int64_t>(out.size());
  ckpt_.index_bytes += static_cast<int64_t>(index.size());
  ckpt_.errors_bytes += static_cast<int64_t>(errors.size());
  ckpt_.items += static_cast<int64_t>(chunk.items.size());
  ckpt_.chunks = chunk.index + 1;
  ckpt_.ids_hash = HashChunkIds(ckpt_.ids_hash, chunk.items);
  auto& m = RunnerMetrics::Get();
  m.items_ok.Add(static_cast<double>(chunk.items.size() - failed));
  m.items_failed.Add(static_cast<double>(failed));
  m.chunks.Inc();
  return OkStatus();
}

Status EmbedJob::WriteCheckpoint() {
  for (const Fd* fd : {&out_, &index_, &errors_}) {
    if (fd->get() >= 0 && ::fdatasync(fd->get()) != 0) return Errno("syncing the output");
  }
  ckpt_.fingerprint = fingerprint_;
  IM_RETURN_IF_ERROR(WriteFileAtomic(paths_.ckpt, ckpt_.ToJson()));
  Failpoint("jobs.embed.after_checkpoint");
  return OkStatus();
}

Result<int64_t> EmbedJob::CountItems() {
  Fd fd(::open(spec_.input.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return Status(StatusCode::kNotFound,
                  "cannot open the input " + spec_.input + ": " + std::strerror(errno));
  }
  LineReader reader(fd.get(), 0);  // keeps nothing of the lines
  std::string line;
  bool too_long = false, blank = true;
  int64_t n = 0;
  while (reader.Next(&line, &too_long, &blank)) n += blank ? 0 : 1;
  IM_RETURN_IF_ERROR(reader.status());
  return n;
}

Status EmbedJob::OpenPartials(bool resume) {
  auto open = [&](const std::string& path, Fd* fd, int64_t keep) -> Status {
    *fd = Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (fd->get() < 0) return Errno("opening " + path);
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return Errno("stat " + path);
    if (st.st_size < keep) {
      return Status(StatusCode::kDataLoss, path + " is shorter than its checkpoint");
    }
    if (::ftruncate(fd->get(), resume ? keep : 0) != 0) return Errno("truncating " + path);
    if (::lseek(fd->get(), 0, SEEK_END) < 0) return Errno("seeking " + path);
    return OkStatus();
  };
  IM_RETURN_IF_ERROR(open(paths_.out_part, &out_, resume ? ckpt_.out_bytes : 0));
  if (spec_.output_format == OutputFormat::kF32) {
    IM_RETURN_IF_ERROR(open(paths_.index_part, &index_, resume ? ckpt_.index_bytes : 0));
  }
  IM_RETURN_IF_ERROR(open(paths_.errors_part, &errors_, resume ? ckpt_.errors_bytes : 0));
  return OkStatus();
}

Status EmbedJob::Finish() {
  for (const Fd* fd : {&out_, &index_, &errors_}) {
    if (fd->get() >= 0 && ::fdatasync(fd->get()) != 0) return Errno("syncing the output");
  }
  if (spec_.output_format == OutputFormat::kF32 &&
      ::rename(paths_.index_part.c_str(), paths_.index.c_str()) != 0) {
    return Errno("renaming " + paths_.index_part);
  }
  if (::rename(paths_.errors_part.c_str(), paths_.errors.c_str()) != 0) {
    return Errno("renaming " + paths_.errors_part);
  }
  // The output last: its appearance means the job's files are all complete.
  if (::rename(paths_.out_part.c_str(), paths_.out.c_str()) != 0) {
    return Errno("renaming " + paths_.out_part);
  }
  IM_RETURN_IF_ERROR(FsyncDir(paths_.out));
  Failpoint("jobs.embed.before_checkpoint_removed");
  ::unlink(paths_.ckpt.c_str());
  ::unlink((spec_.output + ".lock").c_str());
  return OkStatus();
}

Result<EmbedResult> EmbedJob::Run() {
  // One writer per output: two jobs naming the same output, or one job run twice at once
  // (a lease that lapsed under a live runner), must not interleave their writes. The lock
  // is held until this returns; it dies with the process.
  Fd lock(
      ::open((spec_.output + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (lock.get() < 0) return Errno("opening " + spec_.output + ".lock");
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    char holder[256] = {};
    const ssize_t n = ::pread(lock.get(), holder, sizeof(holder) - 1, 0);
    const std::string who(holder, n > 0 ? static_cast<size_t>(n) : 0);
    if (!o_.job_id.empty() && who == o_.job_id) {
      // This very job, run elsewhere at the same time: leave it to that run.
      return FailedPrecondition("job " + o_.job_id + " is already being run (it holds " +
                                spec_.output + ".lock)");
    }
    return InvalidArgument("the output " + spec_.output + " is being written by " +
                           (who.empty() ? std::string("another job") : "job " + who));
  }
  if (::ftruncate(lock.get(), 0) != 0 ||
      ::pwrite(lock.get(), o_.job_id.data(), o_.job_id.size(), 0) < 0) {
    return Errno("writing " + spec_.output + ".lock");
  }
  if (!o_.embed) {
    IM_ASSIGN_OR_RETURN(endpoint_, http::ParseEndpoint(spec_.url));
    ReadMeshLimits();
  }
  struct stat st {};
  if (::stat(spec_.input.c_str(), &st) != 0) {
    return Status(StatusCode::kNotFound,
                  "cannot read the input " + spec_.input + ": " + std::strerror(errno));
  }
  fingerprint_ = Fingerprint(spec_, st, o_.shard, o_.shards);
  IM_ASSIGN_OR_RETURN(const int64_t all_items, CountItems());
  // A shard is a contiguous range of items, so that shards concatenate in input order.
  const int64_t first = all_items * o_.shard / o_.shards;
  const int64_t total = all_items * (o_.shard + 1) / o_.shards - first;

  Fd in(::open(spec_.input.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    return Status(StatusCode::kNotFound,
                  "cannot open the input " + spec_.input + ": " + std::strerror(errno));
  }
  ItemReader reader(in.get(), spec_, static_cast<size_t>(o_.max_line_bytes));
  reader.SetRange(first, total);

  // Resume from a checkpoint that still describes this input, read up to it.
  bool resume = false;
  if (auto text = ReadSmallFile(paths_.ckpt)) {
    if (auto c = Checkpoint::Parse(*text); c && c->fingerprint == fingerprint_) {
      std::string hash;
      int64_t items = 0;
      bool ok = true;
      for (int64_t k = 0; k < c->chunks && ok; ++k) {
        std::vector<Item> chunk;
        Item it;
        while (static_cast<int>(chunk.size()) < spec_.chunk_items && reader.Next(&it)) {
          chunk.push_back(std::move(it));
        }
        ok = !chunk.empty();
        items += static_cast<int64_t>(chunk.size());
        hash = HashChunkIds(hash, chunk);
      }
      if (ok && hash == c->ids_hash && items == c->items) {
        ckpt_ = *c;
        resume = true;
        if (auto s = OpenPartials(true); !s.ok()) {
          log::Warn("embed job: not resuming", {{"output", spec_.output}, {"why", s.message()}});
          resume = false;
        }
      }
    }
    if (!resume) {
      log::Info("embed job: checkpoint does not match the input; starting over",
                {{"output", spec_.output}});
      ckpt_ = Checkpoint{};
      in = Fd(::open(spec_.input.c_str(), O_RDONLY | O_CLOEXEC));
      if (in.get() < 0) return Errno("reopening " + spec_.input);
      reader = ItemReader(in.get(), spec_, static_cast<size_t>(o_.max_line_bytes));
      reader.SetRange(first, total);
    }
  }
  if (!resume) IM_RETURN_IF_ERROR(OpenPartials(false));
  EmbedResult result;
  result.items = total;
  result.resumed = resume ? ckpt_.items : 0;
  if (resume) {
    RunnerMetrics::Get().items_resumed.Add(static_cast<double>(ckpt_.items));
    log::Info("embed job: resuming from its checkpoint",
              {{"output", spec_.output}, {"items", std::to_string(ckpt_.items)}});
  }
  if (ckpt_.failed > spec_.max_errors) {
    return Status(StatusCode::kOutOfRange,
                  std::to_string(ckpt_.failed) + " items failed (max_errors " +
                      std::to_string(spec_.max_errors) + "); first: " + ckpt_.first_error);
  }

  // The total is known now: say so before the first chunk, which may take a while.
  if (o_.on_progress) IM_RETURN_IF_ERROR(o_.on_progress(ckpt_.items, total));

  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(spec_.concurrency));
  for (int i = 0; i < spec_.concurrency; ++i) workers.emplace_back([this] { WorkerLoop(); });
  auto stop_workers = [&] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers) t.join();
  };

  Status status;
  int64_t next_read = ckpt_.chunks, next_write = ckpt_.chunks;
  bool eof = false;
  auto last_progress = Clock::time_point{};
  try {
    const int64_t window = 2 * static_cast<int64_t>(spec_.concurrency);
    for (;;) {
      if (Stopping()) {
        status = Status(StatusCode::kCancelled, "the job service is stopping");
        break;
      }
      while (!eof && next_read - next_write < window) {
        auto chunk = std::make_shared<Chunk>();
        chunk->index = next_read;
        Item it;
        while (static_cast<int>(chunk->items.size()) < spec_.chunk_items && reader.Next(&it)) {
          chunk->items.push_back(std::move(it));
        }
        if (!reader.status().ok()) {
          status = reader.status();
          break;
        }
        if (chunk->items.empty()) {
          eof = true;
          break;
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          todo_.push_back(chunk);
          in_flight_.emplace(chunk->index, chunk);
        }
        cv_.notify_all();
        ++next_read;
      }
      if (!status.ok()) break;
      if (eof && next_write == next_read) break;
      Result<ChunkOutcome> outcome = Status(StatusCode::kInternal, "unset");
      std::shared_ptr<Chunk> chunk;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(100),
                     [&] { return done_.count(next_write) > 0; });
        auto it = done_.find(next_write);
        if (it == done_.end()) continue;  // look at the stop flag again
        outcome = std::move(it->second);
        done_.erase(it);
        chunk = std::move(in_flight_[next_write]);
        in_flight_.erase(next_write);
      }
      if (!outcome.ok()) {
        status = outcome.status();
        break;
      }
      status = Append(*chunk, *outcome);
      if (status.ok()) status = WriteCheckpoint();
      if (!status.ok()) break;
      ++next_write;
      const bool last = eof && next_write == next_read;
      if (ckpt_.failed > spec_.max_errors) {
        status = Status(StatusCode::kOutOfRange,
                        std::to_string(ckpt_.failed) + " items failed (max_errors " +
                            std::to_string(spec_.max_errors) + "); first: " + ckpt_.first_error);
        break;
      }
      const auto now = Clock::now();
      if (o_.on_progress && (last || now - last_progress >= o_.progress_interval)) {
        last_progress = now;
        status = o_.on_progress(ckpt_.items, total);
        if (!status.ok()) break;
      }
    }
  } catch (const std::exception& e) {
    status = Status(StatusCode::kInternal, std::string("embed job: ") + e.what());
  }
  stop_workers();
  IM_RETURN_IF_ERROR(status);
  if (o_.on_progress) IM_RETURN_IF_ERROR(o_.on_progress(ckpt_.items, total));
  IM_RETURN_IF_ERROR(Finish());
  result.embedded = ckpt_.rows;
  result.failed = ckpt_.failed;
  result.first_error = ckpt_.first_error;
  result.output = paths_.out;
  result.errors = paths_.errors;
  if (spec_.output_format == OutputFormat::kF32) result.index = paths_.index;
  return result;
}

}  // namespace

Result<EmbedResult> RunEmbedJob(const EmbedSpec& spec, const EmbedRunnerOptions& options) {
  if (options.client == nullptr && !options.embed) {
    return InvalidArgument("the embed runner needs an HTTP client or an embed function");
  }
  if (options.shards < 1 || options.shard < 0 || options.shard >= options.shards) {
    return InvalidArgument("shard " + std::to_string(options.shard) + " of " +
                           std::to_string(options.shards) + " does not exist");
  }
  EmbedJob job(spec, options);
  return job.Run();
}

void RemoveEmbedPartials(const EmbedSpec& spec) {
  Paths p(spec);
  const std::string lock = spec.output + ".lock";
  for (const std::string* f : std::initializer_list<const std::string*>{
           &p.out_part, &p.index_part, &p.errors_part, &p.ckpt, &lock}) {
    ::unlink(f->c_str());
  }
}

}  // namespace infermesh::jobs
