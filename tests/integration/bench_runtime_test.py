#!/usr/bin/python3
"""Smoke test of bench/runtime_bench.py (make bench-runtime): fails when a runner crashes
or the output is malformed, never on speed.

  bench_runtime_test.py RUNTIME_BENCH_PY RUNTIME_RUNNER FIXTURE_DIR NODE_MODULES
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

DRIVER, RUNNER, FIXTURES, NODE_MODULES = sys.argv[1:5]
del sys.argv[1:5]
CASES = ["d_mlp_b1", "a_uniform"]


class BenchRuntimeQuick(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ort = os.path.join(NODE_MODULES, "onnxruntime-node")
        if not os.path.isdir(ort):
            raise AssertionError(f"ONNX Runtime is missing ({ort}): run scripts/install-deps.sh")
        cls.tmp = tempfile.TemporaryDirectory()
        out = os.path.join(cls.tmp.name, "runtime.json")
        p = subprocess.run(
            [sys.executable, DRIVER, "--quick", "--cases", ",".join(CASES), "--threads", "1",
             "--runner", RUNNER, "--fixtures", FIXTURES, "--node-modules", NODE_MODULES,
             "--work", os.path.join(cls.tmp.name, "inputs"), "--out", out],
            capture_output=True, text=True, timeout=150)
        cls.stdout = p.stdout
        if p.returncode != 0:
            raise AssertionError(f"runtime_bench.py failed ({p.returncode}):\n{p.stdout}\n"
                                 f"{p.stderr}")
        with open(out) as f:
            cls.result = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_peak(self):
        self.assertGreater(self.result["gemm_peak_gflops"], 0)
        self.assertEqual(list(self.result["gemm_peak_gflops_by_threads"]), ["1"])

    def test_cases_have_every_field(self):
        rows = self.result["cases"]
        self.assertEqual([(r["name"], r["threads"]) for r in rows], [(c, 1) for c in CASES])
        for r in rows:
            with self.subTest(case=r["name"]):
                for key in ("ours_per_s", "peer_per_s", "speedup", "ours_p50_ms",
                            "peer_p50_ms", "fraction_of_peak"):
                    self.assertIsInstance(r[key], (int, float), key)
                    self.assertGreater(r[key], 0, key)
                self.assertAlmostEqual(r["speedup"], r["ours_per_s"] / r["peer_per_s"],
                                       delta=0.01 * r["speedup"])
                peak = self.result["gemm_peak_gflops_by_threads"]["1"]
                self.assertAlmostEqual(r["fraction_of_peak"] * peak, r["ours_gflops"],
                                       delta=0.01 * r["ours_gflops"] + 0.01)
                self.assertIn(r["unit"], ("rows/s", "tokens/s"))

    def test_outputs_agree(self):
        # The first output rows are compared so that the two sides provably ran the same
        # model on the same inputs; parity itself is tested elsewhere.
        for r in self.result["cases"]:
            self.assertGreater(r["cosine_vs_peer"], 0.999, r["name"])

    def test_encoder_flops_from_the_model(self):
        (enc,) = [r for r in self.result["cases"] if r["name"] == "a_uniform"]
        self.assertEqual(enc["gemm_flops_per_item"], 2 * 12 * (4 * 384 * 384 + 2 * 384 * 1536))
        if enc["ours_engine"] == "fused":
            # CLS pooling: the last layer after attention ran on 32 of the 1024 rows.
            tail = 2 * (384 * 384 + 2 * 384 * 1536)
            self.assertAlmostEqual(enc["executed_gemm_flops_per_item"],
                                   enc["gemm_flops_per_item"] - tail * (1024 - 32) / 1024,
                                   delta=1)
        self.assertEqual(enc["items_per_run"], 32 * 32)
        self.assertIn(enc["ours_engine"], ("fused", "graph"))

    def test_table_printed(self):
        self.assertIn("speedup", self.stdout)
        for c in CASES:
            self.assertIn(c, self.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
