#include "core/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace infermesh {
namespace {

struct Armed {
  std::map<std::string, long, std::less<>> hit_at;  // name -> the hit that kills
  std::map<std::string, long, std::less<>> hits;
  std::mutex mu;
};

Armed* Load() {
  const char* env = std::getenv("INFERMESH_FAILPOINT");
  if (env == nullptr || *env == '\0') return nullptr;
  auto* armed = new Armed();  // lives for the process
  std::string_view rest(env);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    long at = 1;
    if (const size_t amp = item.find('@'); amp != std::string_view::npos) {
      std::string_view n = item.substr(amp + 1);
      std::from_chars(n.data(), n.data() + n.size(), at);
      item = item.substr(0, amp);
    }
    if (!item.empty()) armed->hit_at[std::string(item)] = at;
  }
  return armed;
}

}  // namespace

void Failpoint(std::string_view name) {
  static Armed* const armed = Load();
  if (armed == nullptr) return;
  auto it = armed->hit_at.find(name);
  if (it == armed->hit_at.end()) return;
  long hit = 0;
  {
    std::lock_guard<std::mutex> lock(armed->mu);
    hit = ++armed->hits[std::string(name)];
  }
  if (hit != it->second) return;
  const std::string line = "failpoint " + std::string(name) + ": killing the process\n";
  (void)!::write(2, line.data(), line.size());
  ::kill(::getpid(), SIGKILL);
}

}  // namespace infermesh
