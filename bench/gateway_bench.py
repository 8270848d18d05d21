#!/usr/bin/python3
"""make bench-gateway: the gateway against HAProxy in front of the same three workers,
in one run on this machine (issue 9).

  bench/gateway_bench.py build/release/apps/infermesh/infermesh

Three `infermesh worker` processes serve the demo model (bge-small-shaped, random
weights; one intra-op thread each, as three workers share two cores). In front of them,
in turn:
  - HAProxy 2.6 (Debian's) with `balance hash req.body`, `hash-type consistent` and
    `hash-balance-factor 125`: the same body goes to the same worker, under bounded loads;
  - `infermesh gateway` with its defaults.
Workloads (closed loop over 64 keep-alive connections, one 16-token text a request,
`infermesh bench`):
  (a) unique texts: saturated throughput, ours / HAProxy's;
  (a') 90% repeats (a text set a tenth of the requests): the same;
  (a'') added latency: p50 and p99 at a fixed open-loop rate (half of one worker's share
       of HAProxy's unique throughput) through each front, minus the same directly at a
       worker;
  (b) the seed's published benchmark: 50 concurrent clients, closed loop, a repeating
      input set of 100 texts, through the gateway (the seed: 522 req/s, p99 164.3 ms).
  (c) overload: open loop at 3x the gateway's unique closed-loop throughput, over 900
      connections: goodput over that capacity, the admitted requests' p99 (from each
      one's intended send time) over the gateway's p99 at half load, its peak RSS;
  (d) the seed's 512-input requests through the gateway (4 connections), unique and with
      half of each request's texts from a hot set of 1,024, as embeddings/s against one
      worker's runtime in process on every core (`infermesh bench --in-process`);
  (e) beyond this machine, simulated: the build's `ring_sim` (bench/sim/ring_sim.cc, the
      real ring for 3 to 1,000 workers, about 10 s) runs after the live cases; its JSON
      is bench/results/ring_sim.json and the "ring_sim" key here.

Prints a table and writes bench/results/gateway.json.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from worker_bench import Worker, bench, cpu_model, errors, loadavg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "bench-worker-models")
MODEL = os.path.join(MODELS, "bge-small-demo")
RESULTS = os.path.join(ROOT, "bench", "results", "gateway.json")
RING_RESULTS = os.path.join(ROOT, "bench", "results", "ring_sim.json")
TOKENS = 16
RUN_S, WARMUP_S = 12, 2
CONNECTIONS = 64
SEED_RPS, SEED_P99_MS = 522.0, 164.3
OVERLOAD_CONNECTIONS = 900  # below the server's 1,024; each is freed at once by a 429


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, binary, workers):
        addrs = ",".join(f"127.0.0.1:{w.port}" for w in workers)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary, "gateway", "--workers", addrs, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on .*:(\d+)", line)
        if not m:
            self.log.seek(0)
            sys.exit("gateway did not start:\n" + self.log.read().decode(errors="replace"))
        self.url = f"http://127.0.0.1:{m.group(1)}"

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)


class HaProxy:
    def __init__(self, workers):
        self.port = free_port()
        servers = "\n".join(f"  server w{i} 127.0.0.1:{w.port}" for i, w in enumerate(workers))
        self.cfg = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
        self.cfg.write(f"""global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{self.port}
  default_backend workers
backend workers
  option http-buffer-request
  balance hash req.body
  hash-type consistent
  hash-balance-factor 125
  http-reuse always
{servers}
""")
        self.cfg.close()
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg.name],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("haproxy did not start: " + self.proc.stderr.read().decode())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        os.unlink(self.cfg.name)


def closed(binary, url, seed, unique, duration=RUN_S, connections=CONNECTIONS):
    return bench(binary, ["--url", url, "--path", "/embed", "--model", MODEL,
                          "--unique-texts", unique, "--tokens", TOKENS, "--seed", seed,
                          "--rate", 0, "--connections", connections, "--duration", duration,
                          "--warmup", WARMUP_S])


def opened(binary, url, seed, rate):
    return bench(binary, ["--url", url, "--path", "/embed", "--model", MODEL,
                          "--unique-texts", 100000, "--tokens", TOKENS, "--seed", seed,
                          "--rate", f"{rate:.2f}", "--connections", CONNECTIONS,
                          "--duration", RUN_S, "--warmup", WARMUP_S])


def overload(binary, url, seed, rate):
    """(c): open loop at `rate`, with connections enough that the client never queues."""
    return bench(binary, ["--url", url, "--path", "/embed", "--model", MODEL,
                          "--unique-texts", 200000, "--tokens", TOKENS, "--seed", seed,
                          "--rate", f"{rate:.2f}", "--connections", OVERLOAD_CONNECTIONS,
                          "--client-threads", 2, "--duration", RUN_S, "--warmup", WARMUP_S])


def batches(binary, url, seed, repeat_ratio, duration=RUN_S):
    """(d): the seed's 512-input requests, closed loop over a few connections; with
    `repeat_ratio` of each request's texts from a hot set of 1,024 (repeats once sent)."""
    return bench(binary, ["--url", url, "--path", "/embed", "--model", MODEL,
                          "--unique-texts", 400, "--tokens", TOKENS, "--seed", seed,
                          "--texts-per-request", 512, "--repeat-ratio", repeat_ratio,
                          "--rate", 0, "--connections", 4, "--duration", duration,
                          "--warmup", WARMUP_S])


def in_process(binary):
    """(d)'s reference: one worker's runtime in process on every core, same texts."""
    return bench(binary, ["--in-process", "--model", MODEL, "--tokens", TOKENS,
                          "--threads", os.cpu_count(), "--duration", 8])


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def ring_sim(binary):
    """(e): runs the ring_sim built beside `binary` (build/<preset>/bench/ring_sim)."""
    build = os.path.dirname(os.path.dirname(os.path.dirname(binary)))
    sim = next((p for p in (os.path.join(build, "bench", "ring_sim"),
                            os.path.join(build, "bench", "sim", "ring_sim"))
                if os.access(p, os.X_OK)), None)
    if sim is None:
        print(f"WARNING: no ring_sim under {build}/bench; (e) not run")
        return None
    print("(e) the ring for 3 to 1,000 workers, simulated (ring_sim)")
    subprocess.run([sim, "--json", RING_RESULTS], check=True)
    with open(RING_RESULTS) as f:
        return json.load(f)


def ring_figure(sim, workers, stream, c):
    if sim is None:
        return None
    return next(r["max_over_mean"] for r in sim["load"]["rows"]
                if r["workers"] == workers and r["stream"] == stream and r["c"] == c)


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "build", "release", "apps", "infermesh", "infermesh"))
    subprocess.run([binary, "demo-model", "--out", MODELS], check=True, stdout=subprocess.DEVNULL)
    started, load_before = time.time(), loadavg()
    print(f"gateway benchmark on {cpu_model()} ({os.cpu_count()} cores), load average "
          f"{load_before:.2f}; 3 workers (demo model, 1 intra-op thread each)")
    workers = [Worker(binary, ["runtime.intra_op_threads=1"]) for _ in range(3)]
    runs = {}

    def rps(k):
        return runs[k]["throughput_rps"]

    try:
        haproxy = HaProxy(workers)
        gateway = Gateway(binary, workers)
        try:
            print("(a) unique texts, saturated")
            runs["unique_haproxy"] = closed(binary, haproxy.url, 11, 200000)
            runs["unique_gateway"] = closed(binary, gateway.url, 12, 200000)
            # A text set a tenth of the requests HAProxy's unique run answered: ~90% repeats.
            n = max(50, int(runs["unique_haproxy"]["ok"] / 10))
            print(f"(a') 90% repeats: {n} distinct texts")
            runs["repeat_haproxy"] = closed(binary, haproxy.url, 21, n)
            runs["repeat_gateway"] = closed(binary, gateway.url, 22, n)
            rate = runs["unique_haproxy"]["throughput_rps"] / 3 / 2
            print(f"(a'') open loop at {rate:.1f} req/s: direct, HAProxy, gateway")
            runs["half_direct"] = opened(binary, workers[0].url, 31, rate)
            runs["half_haproxy"] = opened(binary, haproxy.url, 32, rate)
            runs["half_gateway"] = opened(binary, gateway.url, 33, rate)
            print("(b) the seed's benchmark: 50 clients, closed loop, 100 repeating texts")
            runs["seed_gateway"] = closed(binary, gateway.url, 41, 100, duration=15,
                                          connections=50)
            capacity = rps("unique_gateway")
            print(f"(c) overload: open loop at 3x the gateway's capacity ({3 * capacity:.0f} "
                  "req/s)")
            rss_before = peak_rss_mib(gateway.proc.pid)
            runs["overload_gateway"] = overload(binary, gateway.url, 51, 3 * capacity)
            rss_after = peak_rss_mib(gateway.proc.pid)
            print("(d) 512-input requests through the gateway: unique, then 50% repeated")
            runs["batch512_unique"] = batches(binary, gateway.url, 61, 0)
            runs["batch512_repeat50"] = batches(binary, gateway.url, 62, 0.5)
        finally:
            haproxy.stop()
            gateway.stop()
    finally:
        for w in workers:
            w.stop()

    print("(d') one worker's runtime in process, every core")
    runs["in_process"] = in_process(binary)
    sim = ring_sim(binary)
    moved = None if sim is None else {r["workers"]: r for r in sim["keys_moved"]["rows"]}

    def lat(k, q):
        return runs[k]["latency_ms"][q]

    result = {
        "unique_vs_haproxy": round(rps("unique_gateway") / rps("unique_haproxy"), 3),
        "repeat_vs_haproxy": round(rps("repeat_gateway") / rps("repeat_haproxy"), 3),
        "added_p50_ms_half_load": round(lat("half_gateway", "p50") - lat("half_direct", "p50"), 3),
        "added_p99_ms_half_load": round(lat("half_gateway", "p99") - lat("half_direct", "p99"), 3),
        "haproxy_added_p50_ms_half_load": round(
            lat("half_haproxy", "p50") - lat("half_direct", "p50"), 3),
        "haproxy_added_p99_ms_half_load": round(
            lat("half_haproxy", "p99") - lat("half_direct", "p99"), 3),
        "seed_rps": round(rps("seed_gateway"), 1),
        "seed_p99_ms": round(lat("seed_gateway", "p99"), 2),
        "seed_rps_vs_published": round(rps("seed_gateway") / SEED_RPS, 2),
        "seed_p99_vs_published": round(lat("seed_gateway", "p99") / SEED_P99_MS, 4),
        # (c): admitted answers per second at 3x over the closed-loop capacity; their p99
        # (from each request's intended send time) over the p99 at half load.
        "overload_goodput_fraction": round(rps("overload_gateway") / capacity, 3),
        "overload_p99_vs_half_load": round(lat("overload_gateway", "p99") /
                                           lat("half_gateway", "p99"), 2),
        "overload_p99_ms": round(lat("overload_gateway", "p99"), 2),
        "overload_refused": sum(runs["overload_gateway"]["errors_by_status"].values()),
        "overload_gateway_peak_rss_mib": rss_after,
        "gateway_peak_rss_mib_before_overload": rss_before,
        # (d): embeddings/s of 512-input requests through the gateway over one worker's
        # runtime in process on every core (EmbedEncodings only, no HTTP, no tokenizing).
        "batch512_unique_embeddings_per_s": round(runs["batch512_unique"]["items_per_s"], 1),
        "batch512_repeat50_embeddings_per_s": round(runs["batch512_repeat50"]["items_per_s"], 1),
        "in_process_embeddings_per_s": round(runs["in_process"]["embeddings_per_s"], 1),
        "batch512_unique_vs_in_process": round(runs["batch512_unique"]["items_per_s"] /
                                               runs["in_process"]["embeddings_per_s"], 3),
        "batch512_repeat50_vs_in_process": round(runs["batch512_repeat50"]["items_per_s"] /
                                                 runs["in_process"]["embeddings_per_s"], 3),
        # (e) at 1,000 workers: max/mean outstanding tokens over time (unique texts, and
        # Zipf repeats with nothing cached), bounded = the gateway's c = 1.25; keys moved
        # when one worker joins or leaves, over the ideal 1/(N+1) or 1/N.
        "ring_max_over_mean_unbounded_1000": ring_figure(sim, 1000, "unique", None),
        "ring_max_over_mean_bounded_1000": ring_figure(sim, 1000, "unique", 1.25),
        "ring_max_over_mean_unbounded_1000_zipf": ring_figure(sim, 1000, "zipf", None),
        "ring_max_over_mean_bounded_1000_zipf": ring_figure(sim, 1000, "zipf", 1.25),
        "ring_join_keys_moved_vs_ideal_1000": moved and moved[1000]["join_vs_ideal"],
        "ring_leave_keys_moved_vs_ideal_1000": moved and moved[1000]["leave_vs_ideal"],
        "targets": {"unique_vs_haproxy": ">= 0.95", "repeat_vs_haproxy": ">= 2",
                    "added_p99_ms_half_load": "<= 1", "seed_rps_vs_published": ">= 40",
                    "seed_p99_vs_published": "<= 0.05", "overload_goodput_fraction": ">= 0.9",
                    "overload_p99_vs_half_load": "<= 5"},
        "errors": {k: errors(v) for k, v in runs.items()
                   if k not in ("in_process", "overload_gateway")},
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "wall_s": round(time.time() - started, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "peer": "HAProxy " + subprocess.run(["haproxy", "-v"], capture_output=True,
                                            text=True).stdout.split()[2],
        "model": "bge-small-demo (bge-small-shaped BERT, random weights), 16-token texts",
        "notes": ("Three workers, the front, HAProxy and the load generator share 2 cores, so "
                  "the unique case measures how much CPU each front leaves the workers. "
                  "(c) counts 429s as refused, not errors."),
        "details": runs,
        "ring_sim": sim,
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2)
    print()
    print(f"{'case':34} {'HAProxy':>12} {'gateway':>12} {'ratio':>8}  target")
    print("-" * 80)
    print(f"{'(a) unique, req/s':34} {rps('unique_haproxy'):12.1f} {rps('unique_gateway'):12.1f} "
          f"{result['unique_vs_haproxy']:8.2f}  >= 0.95")
    print(f"{'(a) 90% repeats, req/s':34} {rps('repeat_haproxy'):12.1f} "
          f"{rps('repeat_gateway'):12.1f} {result['repeat_vs_haproxy']:8.2f}  >= 2")
    print(f"{'(a) added p50 at half load, ms':34} {result['haproxy_added_p50_ms_half_load']:12.2f} "
          f"{result['added_p50_ms_half_load']:12.2f}")
    print(f"{'(a) added p99 at half load, ms':34} {result['haproxy_added_p99_ms_half_load']:12.2f} "
          f"{result['added_p99_ms_half_load']:12.2f} {'':8}  <= 1")
    print(f"{'(b) seed benchmark, req/s':34} {SEED_RPS:12.1f} {result['seed_rps']:12.1f} "
          f"{result['seed_rps_vs_published']:8.1f}  >= 40 (vs the seed's published)")
    print(f"{'(b) seed benchmark, p99 ms':34} {SEED_P99_MS:12.1f} {result['seed_p99_ms']:12.2f} "
          f"{result['seed_p99_vs_published']:8.3f}  <= 0.05")
    print(f"{'(c) overload 3x, goodput / capacity':34} {'':12} "
          f"{result['overload_goodput_fraction']:12.2f} {'':8}  >= 0.9")
    print(f"{'(c) overload p99 / half-load p99':34} {'':12} "
          f"{result['overload_p99_vs_half_load']:12.2f} {'':8}  <= 5")
    print(f"{'(c) gateway peak RSS, MiB':34} {'':12} {rss_after or 0:12.1f}")
    print(f"{'(d) 512 unique, embeddings/s':34} {result['in_process_embeddings_per_s']:12.1f} "
          f"{result['batch512_unique_embeddings_per_s']:12.1f} "
          f"{result['batch512_unique_vs_in_process']:8.2f}  (vs one worker in process)")
    print(f"{'(d) 512 50% repeated, embeddings/s':34} {result['in_process_embeddings_per_s']:12.1f} "
          f"{result['batch512_repeat50_embeddings_per_s']:12.1f} "
          f"{result['batch512_repeat50_vs_in_process']:8.2f}")
    if sim is not None:
        print(f"(e) 1,000 workers simulated, max/mean load: unique texts "
              f"{result['ring_max_over_mean_unbounded_1000']:.2f} unbounded, "
              f"{result['ring_max_over_mean_bounded_1000']:.2f} bounded (c = 1.25); Zipf "
              f"{result['ring_max_over_mean_unbounded_1000_zipf']:.1f}, "
              f"{result['ring_max_over_mean_bounded_1000_zipf']:.2f}; keys moved vs ideal: "
              f"join {result['ring_join_keys_moved_vs_ideal_1000']:.2f}, "
              f"leave {result['ring_leave_keys_moved_vs_ideal_1000']:.2f}")
    bad = {k: v for k, v in result["errors"].items() if v}
    if bad:
        print(f"WARNING: client errors: {bad}")
    print(f"wrote {RESULTS} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
