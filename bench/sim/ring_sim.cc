// ring_sim: the gateway's ring beyond this machine, simulated (issue 9, benchmark (e)).
//
//   build/release/bench/ring_sim --json bench/results/ring_sim.json
//
// Links the real HashRing and PickBounded (src/gateway/ring.cc) and asks two questions
// for 3, 10, 30, 100, 300 and 1,000 workers, with nothing but the ring in the loop:
//
// Keys moved. 200,000 keys hashed as the gateway hashes them (RingHash of KeyBuilder
// material). One worker joins, or one leaves (8 trials each, a different one every
// time): the fraction of keys whose owner changes, against the ideal 1/(N+1) for a join
// and 1/N for a leave, and the number of "stray" moves (a key moving between two workers
// that both stayed), which consistent hashing promises is zero.
//
// Load balance. A stream of keys is placed one at a time, as `Impl::Embed` places a
// one-text request (loads in tokens, `incoming` = the key's own cost). Every key stays
// outstanding for the next 8 x N placements (a sliding window of in-flight work, 8 keys
// a worker on average), then completes. Token costs are lognormal (median 32, sigma
// 0.8) clamped to 8..256, fixed per text. Two streams:
//   unique: every key is a new text, so the only skew is the ring's and the costs';
//   zipf:   texts drawn Zipf(s = 1) from 100,000, so the hottest text is 8% of all keys,
//           as if nothing were cached in front of the ring (the gateway's cache and
//           coalescer absorb most repeats: this is the worst case the ring must survive).
// Each stream is placed with the plain owner (no bound) and with PickBounded at
// c = 1.1, 1.25 (the gateway's default) and 2.0. After every placement past the first
// window (100,000 of them; 40,000 at 1,000 workers, where a bounded pick walks the
// whole ring and costs ~30 us) the sim samples max load / mean load over the workers,
// once the oldest key has completed; it reports the mean of that ratio over time, its
// 99th percentile and its peak, the fraction of keys placed on a worker other than
// their owner (each one a worker-cache miss the ring caused), and the fraction placed
// past c x average because no worker could take them within it. Then the same at 100
// workers with 2, 8, 32 and 128 keys a worker in flight: how much the figures owe to
// how little work each worker holds.
//
// Deterministic: fixed seeds, mt19937_64 (whose output the standard fixes) and our own
// uniform and normal transforms, so the figures do not depend on the standard library's
// distributions.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "core/hash.h"
#include "gateway/ring.h"

namespace infermesh::gateway {
namespace {

constexpr int kWorkerCounts[] = {3, 10, 30, 100, 300, 1000};
constexpr int kMoveKeys = 200000;
constexpr int kMoveTrials = 8;
constexpr int kWindowPerWorker = 8;         // keys in flight per worker, on average
constexpr int kLoadKeys = 100000;           // measured placements (after the first window)
constexpr int kLoadKeysAtMost1000 = 40000;  // at 1,000 workers a bounded pick costs ~30 us
constexpr int kSensitivityWorkers = 100;
constexpr int kSensitivityWindows[] = {2, 8, 32, 128};
constexpr int kZipfUniverse = 100000;
constexpr double kZipfS = 1.0;
constexpr double kCostMedian = 32, kCostSigma = 0.8, kCostMin = 8, kCostMax = 256;
constexpr double kFactors[] = {0, 1.1, 1.25, 2.0};  // 0: the plain owner, no bound

class Random {
 public:
  explicit Random(uint64_t seed) : gen_(seed) {}
  double Uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }  // [0, 1)
  // Box-Muller.
  double Normal() {
    const double u = 1.0 - Uniform(), v = Uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * v);
  }
  double Cost() {
    return std::clamp(std::round(kCostMedian * std::exp(kCostSigma * Normal())), kCostMin,
                      kCostMax);
  }
  uint64_t Next() { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

// Worker i's id: 10.0.x.y:8080, 250 hosts to a /24.
std::string WorkerId(int i) {
  return "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":8080";
}

std::vector<std::string> WorkerIds(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(WorkerId(i));
  return ids;
}

uint64_t TextHash(const std::string& stream, uint64_t i) {
  KeyBuilder k;
  k.AddString("bge-small").AddString(stream + " text " + std::to_string(i));
  return RingHash(k.material());
}

// --- keys moved --------------------------------------------------------------------------

struct MoveRow {
  int workers = 0;
  double join_fraction = 0, leave_fraction = 0;  // mean over trials
  double join_vs_ideal = 0, leave_vs_ideal = 0;  // fraction / (1/(N+1)), / (1/N)
  double join_min = 1e9, join_max = 0, leave_min = 1e9, leave_max = 0;  // per trial
  int64_t strays = 0;  // keys moved between two members that both stayed
};

std::vector<const std::string*> OwnerIds(const HashRing& ring, const std::vector<uint64_t>& keys) {
  std::vector<const std::string*> out;
  out.reserve(keys.size());
  for (uint64_t k : keys) out.push_back(&ring.members()[ring.Owner(k)]);
  return out;
}

MoveRow KeysMoved(int n, const std::vector<uint64_t>& keys) {
  MoveRow row;
  row.workers = n;
  HashRing before;
  before.SetMembers(WorkerIds(n));
  const auto owners = OwnerIds(before, keys);
  Random rng(1000 + n);
  for (int t = 0; t < kMoveTrials; ++t) {
    // Join: a worker from the ids past the first n.
    {
      auto ids = WorkerIds(n);
      const std::string joined = WorkerId(n + t);
      ids.push_back(joined);
      HashRing after;
      after.SetMembers(ids);
      const auto now = OwnerIds(after, keys);
      int64_t moved = 0;
      for (size_t i = 0; i < keys.size(); ++i) {
        if (*owners[i] == *now[i]) continue;
        ++moved;
        if (*now[i] != joined) ++row.strays;
      }
      const double f = static_cast<double>(moved) / keys.size();
      const double r = f * (n + 1);
      row.join_fraction += f / kMoveTrials;
      row.join_min = std::min(row.join_min, r);
      row.join_max = std::max(row.join_max, r);
    }
    // Leave: a random one of the n.
    {
      auto ids = WorkerIds(n);
      const auto gone = static_cast<size_t>(rng.Next() % static_cast<uint64_t>(n));
      const std::string left = ids[gone];
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(gone));
      HashRing after;
      after.SetMembers(ids);
      const auto now = OwnerIds(after, keys);
      int64_t moved = 0;
      for (size_t i = 0; i < keys.size(); ++i) {
        if (*owners[i] == *now[i]) continue;
        ++moved;
        if (*owners[i] != left) ++row.strays;
      }
      const double f = static_cast<double>(moved) / keys.size();
      const double r = f * n;
      row.leave_fraction += f / kMoveTrials;
      row.leave_min = std::min(row.leave_min, r);
      row.leave_max = std::max(row.leave_max, r);
    }
  }
  row.join_vs_ideal = row.join_fraction * (n + 1);
  row.leave_vs_ideal = row.leave_fraction * n;
  return row;
}

// --- load balance ------------------------------------------------------------------------

struct Key {
  uint64_t hash;
  double cost;
};

struct LoadRow {
  int workers = 0;
  int window_per_worker = 0;
  std::string stream;
  double c = 0;  // 0: the plain owner
  int64_t keys = 0;
  double mean_ratio = 0, p99_ratio = 0, peak_ratio = 0;  // max load / mean load
  double off_owner = 0;                                  // fraction of keys
  double over_bound = 0;  // fraction placed past c x average (no member could take them)
  double us_per_key = 0;  // wall time, informative only
};

std::vector<Key> Stream(const std::string& name, int64_t count) {
  Random rng(name == "zipf" ? 7 : 3);
  std::vector<Key> out;
  out.reserve(static_cast<size_t>(count));
  if (name == "unique") {
    for (int64_t i = 0; i < count; ++i) out.push_back({TextHash("unique", i), rng.Cost()});
    return out;
  }
  // Zipf over a fixed universe of texts (built once); a text's cost is fixed.
  static std::vector<double> cdf;
  static std::vector<Key> texts;
  if (cdf.empty()) {
    Random costs(5);
    double sum = 0;
    for (int k = 1; k <= kZipfUniverse; ++k) {
      sum += 1.0 / std::pow(k, kZipfS);
      cdf.push_back(sum);
      texts.push_back({TextHash("zipf", k), costs.Cost()});
    }
    for (double& x : cdf) x /= sum;
  }
  for (int64_t i = 0; i < count; ++i) {
    const size_t k = std::upper_bound(cdf.begin(), cdf.end(), rng.Uniform()) - cdf.begin();
    out.push_back(texts[std::min(k, texts.size() - 1)]);
  }
  return out;
}

LoadRow Place(const HashRing& ring, const std::vector<Key>& keys, size_t window, double c) {
  const size_t n = ring.size();
  std::vector<double> loads(n, 0.0);
  std::deque<std::pair<size_t, double>> in_flight;
  std::vector<double> ratios;
  ratios.reserve(keys.size() - window);
  auto all = [](size_t) { return true; };
  double total = 0;
  int64_t off = 0, over = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < keys.size(); ++i) {
    const Key& key = keys[i];
    const size_t owner = ring.Owner(key.hash);
    size_t m = owner;
    bool past_bound = false;
    if (c > 0) {
      m = *PickBounded(ring, key.hash, loads, all, c, key.cost, key.cost);
      past_bound =
          loads[m] > 0 && loads[m] + key.cost > c * (total + key.cost) / static_cast<double>(n);
    }
    loads[m] += key.cost;
    total += key.cost;
    in_flight.emplace_back(m, key.cost);
    if (in_flight.size() > window) {
      loads[in_flight.front().first] -= in_flight.front().second;
      total -= in_flight.front().second;
      in_flight.pop_front();
    }
    if (i < window) continue;  // the first window fills the pipe
    off += m != owner;
    over += past_bound;
    const double max = *std::max_element(loads.begin(), loads.end());
    ratios.push_back(max / (total / static_cast<double>(n)));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  LoadRow row;
  row.workers = static_cast<int>(n);
  row.c = c;
  row.keys = static_cast<int64_t>(ratios.size());
  double sum = 0;
  for (double r : ratios) sum += r;
  row.mean_ratio = sum / static_cast<double>(ratios.size());
  row.peak_ratio = *std::max_element(ratios.begin(), ratios.end());
  auto p99 = ratios.begin() + static_cast<std::ptrdiff_t>(ratios.size() * 99 / 100);
  std::nth_element(ratios.begin(), p99, ratios.end());
  row.p99_ratio = *p99;
  row.off_owner = static_cast<double>(off) / static_cast<double>(row.keys);
  row.over_bound = static_cast<double>(over) / static_cast<double>(row.keys);
  row.us_per_key = seconds * 1e6 / static_cast<double>(keys.size());
  return row;
}

// One load run: `window_per_worker` x N keys in flight, the stream's first window fills it.
LoadRow Run(const HashRing& ring, const std::string& stream, int window_per_worker, double c) {
  const int64_t measured = ring.size() >= 1000 ? kLoadKeysAtMost1000 : kLoadKeys;
  const size_t window = static_cast<size_t>(window_per_worker) * ring.size();
  LoadRow r = Place(ring, Stream(stream, static_cast<int64_t>(window) + measured), window, c);
  r.stream = stream;
  r.window_per_worker = window_per_worker;
  return r;
}

// --- output ------------------------------------------------------------------------------

std::string Policy(double c) {
  if (c <= 0) return "owner";
  char buf[32];
  std::snprintf(buf, sizeof buf, "bounded c=%.2f", c);
  return buf;
}

void PrintLoadHeader() {
  std::printf("%8s %7s %7s %15s %8s %8s %8s %10s %10s %8s\n", "workers", "window", "stream",
              "policy", "mean", "p99", "peak", "off owner", "past bound", "us/key");
}

void PrintLoadRow(const LoadRow& r) {
  std::printf("%8d %7d %7s %15s %8.3f %8.3f %8.3f %10.4f %10.4f %8.2f\n", r.workers,
              r.window_per_worker, r.stream.c_str(), Policy(r.c).c_str(), r.mean_ratio, r.p99_ratio,
              r.peak_ratio, r.off_owner, r.over_bound, r.us_per_key);
  std::fflush(stdout);
}

void WriteLoadRows(FILE* f, const std::vector<LoadRow>& rows) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const LoadRow& r = rows[i];
    std::fprintf(f,
                 "      {\"workers\": %d, \"window_keys_per_worker\": %d, \"stream\": \"%s\", "
                 "\"bounded\": %s, ",
                 r.workers, r.window_per_worker, r.stream.c_str(), r.c > 0 ? "true" : "false");
    if (r.c > 0) {
      std::fprintf(f, "\"c\": %.2f, ", r.c);
    } else {
      std::fprintf(f, "\"c\": null, ");
    }
    std::fprintf(f,
                 "\"keys\": %lld, \"max_over_mean\": %.4f, \"max_over_mean_p99\": %.4f, "
                 "\"max_over_mean_peak\": %.4f, \"off_owner_fraction\": %.5f, "
                 "\"past_bound_fraction\": %.5f, \"us_per_key\": %.3f}%s\n",
                 static_cast<long long>(r.keys), r.mean_ratio, r.p99_ratio, r.peak_ratio,
                 r.off_owner, r.over_bound, r.us_per_key, i + 1 < rows.size() ? "," : "");
  }
}

void WriteJson(const char* path, const std::vector<MoveRow>& moves,
               const std::vector<LoadRow>& loads, const std::vector<LoadRow>& windows,
               double wall_s) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::fprintf(stderr, "ring_sim: cannot write %s\n", path);
    std::exit(1);
  }
  std::fprintf(f, "{\n  \"points_per_member\": 160,\n");
  std::fprintf(f,
               "  \"keys_moved\": {\n    \"keys\": %d,\n    \"trials\": %d,\n"
               "    \"ideal\": \"join 1/(N+1), leave 1/N; *_vs_ideal is fraction / ideal\",\n"
               "    \"rows\": [\n",
               kMoveKeys, kMoveTrials);
  for (size_t i = 0; i < moves.size(); ++i) {
    const MoveRow& r = moves[i];
    std::fprintf(f,
                 "      {\"workers\": %d, \"join_fraction\": %.6f, \"join_vs_ideal\": %.4f, "
                 "\"join_vs_ideal_min\": %.4f, \"join_vs_ideal_max\": %.4f, "
                 "\"leave_fraction\": %.6f, \"leave_vs_ideal\": %.4f, "
                 "\"leave_vs_ideal_min\": %.4f, \"leave_vs_ideal_max\": %.4f, "
                 "\"stray_moves\": %lld}%s\n",
                 r.workers, r.join_fraction, r.join_vs_ideal, r.join_min, r.join_max,
                 r.leave_fraction, r.leave_vs_ideal, r.leave_min, r.leave_max,
                 static_cast<long long>(r.strays), i + 1 < moves.size() ? "," : "");
  }
  std::fprintf(f, "    ]\n  },\n");
  std::fprintf(f,
               "  \"load\": {\n"
               "    \"cost_tokens\": \"lognormal, median %.0f, sigma %.1f, clamped to "
               "%.0f..%.0f\",\n"
               "    \"streams\": {\"unique\": \"every key a new text\", "
               "\"zipf\": \"Zipf s=%.1f over %d texts, nothing cached\"},\n"
               "    \"max_over_mean\": \"max load / mean load over workers, sampled after "
               "every placement past the first window: mean over time, p99, peak\",\n"
               "    \"past_bound_fraction\": \"keys placed past c x average because no "
               "member could take them within it (the least loaded took them)\",\n"
               "    \"us_per_key\": \"wall time a placement, this machine, informative "
               "only\",\n"
               "    \"rows\": [\n",
               kCostMedian, kCostSigma, kCostMin, kCostMax, kZipfS, kZipfUniverse);
  WriteLoadRows(f, loads);
  std::fprintf(f, "    ],\n    \"window_sensitivity\": [\n");
  WriteLoadRows(f, windows);
  std::fprintf(f, "    ]\n  },\n  \"wall_s\": %.1f\n}\n", wall_s);
  std::fclose(f);
}

int Main(int argc, char** argv) {
  const char* json = nullptr;
  int max_workers = 1000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json = argv[++i];
    } else if (std::strcmp(argv[i], "--max-workers") == 0 && i + 1 < argc) {
      max_workers = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: ring_sim [--json PATH] [--max-workers N]\n");
      return 2;
    }
  }
  const auto start = std::chrono::steady_clock::now();

  std::vector<uint64_t> keys;
  for (int i = 0; i < kMoveKeys; ++i) keys.push_back(TextHash("moved", i));
  std::vector<MoveRow> moves;
  std::printf("keys moved (%d keys, %d joins and %d leaves each; 1.00 = ideal)\n", kMoveKeys,
              kMoveTrials, kMoveTrials);
  std::printf("%8s %12s %10s %14s %12s %10s %14s %7s\n", "workers", "join moved", "vs 1/(N+1)",
              "(min..max)", "leave moved", "vs 1/N", "(min..max)", "stray");
  for (int n : kWorkerCounts) {
    if (n > max_workers) continue;
    const MoveRow r = KeysMoved(n, keys);
    moves.push_back(r);
    std::printf("%8d %12.5f %10.3f %6.3f..%-6.3f %12.5f %10.3f %6.3f..%-6.3f %7lld\n", n,
                r.join_fraction, r.join_vs_ideal, r.join_min, r.join_max, r.leave_fraction,
                r.leave_vs_ideal, r.leave_min, r.leave_max, static_cast<long long>(r.strays));
    std::fflush(stdout);
  }

  std::printf(
      "\nload balance: max/mean load over time (mean, p99, peak); off owner = keys not on "
      "their owner;\npast bound = keys no member could take within c x average. %d keys "
      "measured a run after the first window (%d at 1,000 workers, to stay near 30 s)\n",
      kLoadKeys, kLoadKeysAtMost1000);
  PrintLoadHeader();
  std::vector<LoadRow> loads;
  for (int n : kWorkerCounts) {
    if (n > max_workers) continue;
    HashRing ring;
    ring.SetMembers(WorkerIds(n));
    for (const std::string stream : {"unique", "zipf"}) {
      for (double c : kFactors) {
        loads.push_back(Run(ring, stream, kWindowPerWorker, c));
        PrintLoadRow(loads.back());
      }
    }
  }

  std::vector<LoadRow> windows;
  if (kSensitivityWorkers <= max_workers) {
    std::printf("\nthe same at %d workers with more or less work in flight a worker\n",
                kSensitivityWorkers);
    PrintLoadHeader();
    HashRing ring;
    ring.SetMembers(WorkerIds(kSensitivityWorkers));
    for (const std::string stream : {"unique", "zipf"}) {
      for (int window : kSensitivityWindows) {
        for (double c : {0.0, 1.25}) {
          windows.push_back(Run(ring, stream, window, c));
          PrintLoadRow(windows.back());
        }
      }
    }
  }

  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n%.1f s\n", wall);
  if (json != nullptr) {
    WriteJson(json, moves, loads, windows, wall);
    std::printf("wrote %s\n", json);
  }
  return 0;
}

}  // namespace
}  // namespace infermesh::gateway

int main(int argc, char** argv) { return infermesh::gateway::Main(argc, argv); }
