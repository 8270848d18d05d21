#!/usr/bin/python3
"""make bench-runtime: our runtime against ONNX Runtime, same machine, same run (issue 4).

  bench/runtime_bench.py [--runner build/release/bench/runtime_runner] [--quick]
                         [--cases a_uniform,d_mlp_b1] [--threads 1,2] [--out FILE]

Builds the fixtures (tests/fixtures/make_encoders.py: the bge-small-shaped encoder at
opset 14 and the 3-layer MLP), writes each case's inputs under fixed seeds, measures the
oneDNN sgemm peak (2048^3 float32) at each thread count, then runs every case at each
thread count: bench/runtime/runtime_runner (ours) and bench/runtime/ort_runner.mjs
(ONNX Runtime, float32) alternately on the same files, taking the median of the repeats.

  a_uniform          32 sequences x 32 tokens                                  tokens/s
  b_latency          1 sequence x 16 tokens                                    tokens/s
  c_mixed            64 sequences, lengths uniform in [8, 256]; ONNX Runtime
                     pads to the longest with attention_mask, ours gets them
                     unpadded; both rates count real tokens only               tokens/s
  d_mlp_b1/_b32      the MLP at batch 1 and 32                                 rows/s
  a_uniform_reduced  case a with our model in int8; the peer stays fp32        tokens/s
  a_uniform_bf16     case a with our model in bf16 (for comparison, no target) tokens/s
  hf_*               cases a, b, c and a_uniform_reduced on hf-bge-small, a bge-small
                     exported from Hugging Face-style modeling code (make_hf_encoders.py)
  hf_graph_a_uniform hf_a_uniform with our fused encoder off (the generic graph path)

speedup = peer time / our time for the same work (> 1: we are faster).
fraction_of_peak = our GFLOP/s / the sgemm peak at the case's thread count, where our
GFLOP/s = GEMM FLOPs per item x items/s and GEMM FLOPs per item = 2 x sum(in x out) over
the model's weight matrices (MatMul/Gemm with an initializer operand), read from the ONNX
file: for the encoder 2 x layers x (4H^2 + 2HF) per real token; attention's score and
context products (Q.K^T, P.V) are excluded.

Prints a table and writes bench/results/runtime.json. Exits 0 whether or not the targets
are met (it is a benchmark, not a test); non-zero only when a runner fails.
"""
import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "release")
ORT_RUNNER = os.path.join(ROOT, "bench", "runtime", "ort_runner.mjs")
MAKE_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "make_encoders.py")
REFERENCE_PYTHON = "/usr/bin/python3"
ENCODER = "bge-small-op14"
HF_ENCODER = "hf-bge-small"
MAKE_HF_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "make_hf_encoders.py")
MLP = "mlp.onnx"

# name: inputs, our precision, and the targets that count (threads=2 rows only).
CASES = {
    "a_uniform": dict(kind="encoder", inputs="a_uniform", precision="fp32",
                      targets={"speedup": 1.3, "fraction_of_peak": 0.85}),
    "b_latency": dict(kind="encoder", inputs="b_latency", precision="fp32",
                      targets={"speedup": 1.25}),
    "c_mixed": dict(kind="encoder", inputs="c_mixed", precision="fp32",
                    targets={"speedup": 2.0}),
    "d_mlp_b1": dict(kind="mlp", inputs="d_mlp_b1", precision="fp32", targets={}),
    "d_mlp_b32": dict(kind="mlp", inputs="d_mlp_b32", precision="fp32", targets={}),
    "a_uniform_reduced": dict(kind="encoder", inputs="a_uniform", precision="int8",
                              targets={"speedup": 2.5}),
    # The other reduced mode, for comparison (no target of its own).
    "a_uniform_bf16": dict(kind="encoder", inputs="a_uniform", precision="bf16", targets={}),
    # The same on a bge-small shaped like the files users download (Hugging Face's
    # modeling code, torch.onnx.export: tests/fixtures/make_hf_encoders.py), and that
    # model on the generic graph path (fused encoder off).
    "hf_a_uniform": dict(kind="encoder", model="hf", inputs="a_uniform", precision="fp32",
                         targets={"speedup": 1.3, "fraction_of_peak": 0.85}),
    "hf_b_latency": dict(kind="encoder", model="hf", inputs="b_latency", precision="fp32",
                         targets={"speedup": 1.25}),
    "hf_c_mixed": dict(kind="encoder", model="hf", inputs="c_mixed", precision="fp32",
                       targets={"speedup": 2.0}),
    "hf_a_uniform_reduced": dict(kind="encoder", model="hf", inputs="a_uniform",
                                 precision="int8", targets={"speedup": 2.5}),
    "hf_graph_a_uniform": dict(kind="encoder", model="hf", engine="graph", inputs="a_uniform",
                               precision="fp32", targets={"speedup": 1.0}),
}
TARGET_THREADS = 2
LOAD_TARGET_MS = 1500
MIN_FP32_COSINE = 0.9999
# A 1-minute load average above this before the run means another process held about a
# core: the cores were not ours.
BUSY_LOAD = 1.0


def token_sequences(seed, lengths):
    """[CLS] random ids in [1000, 30000) [SEP], one list per length."""
    rng = random.Random(seed)
    return [[101] + [rng.randrange(1000, 30000) for _ in range(n - 2)] + [102]
            for n in lengths]


def float_rows(seed, rows, width):
    """Gaussian rows, each value exactly a float32 (printed as its double, so every
    reader gets the same bits)."""
    rng = random.Random(seed)
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]  # noqa: E731
    return [[f32(rng.gauss(0.0, 1.0)) for _ in range(width)] for _ in range(rows)]


def write_inputs(work, mlp_width):
    os.makedirs(work, exist_ok=True)
    mixed = random.Random(3)
    sets = {
        "a_uniform": token_sequences(1, [32] * 32),
        "b_latency": token_sequences(2, [16]),
        "c_mixed": token_sequences(4, [mixed.randint(8, 256) for _ in range(64)]),
        "d_mlp_b1": float_rows(5, 1, mlp_width),
        "d_mlp_b32": float_rows(6, 32, mlp_width),
    }
    paths = {}
    for name, rows in sets.items():
        paths[name] = os.path.join(work, name + ".txt")
        with open(paths[name], "w") as f:
            for r in rows:
                f.write(" ".join(repr(v) for v in r) + "\n")
    return paths


def gemm_flops_per_item(onnx_path):
    """2 x sum(in x out) over MatMul/Gemm nodes with a 2-D initializer operand, and the
    width of the first input; None, None when the onnx module is missing."""
    try:
        import onnx  # Debian's python3-onnx, which the fixtures need anyway
    except ImportError:
        return None, None
    m = onnx.load(onnx_path)
    shapes = {t.name: list(t.dims) for t in m.graph.initializer}
    flops = 0
    for node in m.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            weights = [shapes[i] for i in node.input[:2] if len(shapes.get(i, [])) == 2]
            if weights:
                flops += 2 * weights[0][0] * weights[0][1]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    width = dims[-1].dim_value if dims and dims[-1].dim_value > 0 else None
    return flops, width


def encoder_flops_from_config(model_dir):
    """Fallback without onnx: 2 x layers x (4H^2 + 2HF) from config.json."""
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    h, ffn, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    return 2 * layers * (4 * h * h + 2 * h * ffn)


def pooled_tail_flops(model_dir):
    """2 x (H^2 + 2HF): the last layer's work after attention for one token row. With CLS
    or last-token pooling the fused encoder runs it on one row per sequence only
    (PackedBatch::needed_rows), so those rows' share is not executed."""
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    h, ffn = c["hidden_size"], c["intermediate_size"]
    return 2 * (h * h + 2 * h * ffn)


def run_json(args, what):
    p = subprocess.run(args, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"runtime_bench: {what} failed ({p.returncode}):\n"
                         f"  {' '.join(args)}\n{p.stderr.strip()}")
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SystemExit(f"runtime_bench: {what} printed no JSON:\n{p.stdout}\n{p.stderr}")


def cosine(a, b):
    if not a or len(a) != len(b):
        return None
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else None


def cpu_info():
    model, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "avx512_vnni": "avx512_vnni" in flags,
            "amx_bf16": "amx_bf16" in flags}


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runner", default=os.path.join(BUILD, "bench", "runtime_runner"),
                   help="runtime_runner binary")
    p.add_argument("--fixtures", default=os.path.join(BUILD, "fixtures"),
                   help="fixture folder (make_encoders.py --out)")
    p.add_argument("--work", default=os.path.join(BUILD, "bench-runtime"),
                   help="folder for the case inputs")
    p.add_argument("--node-modules", default=os.path.join(ROOT, "tools", "ref", "node_modules"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "runtime.json"))
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    p.add_argument("--threads", default="2,1", help="comma-separated thread counts")
    p.add_argument("--seconds", type=float, default=None,
                   help="timed seconds per run (default 3, --quick 0.3)")
    p.add_argument("--repeats", type=int, default=None,
                   help="ours/peer alternations per case (default 3, --quick 1); the median "
                        "counts")
    p.add_argument("--quick", action="store_true", help="short timing, for a smoke test")
    a = p.parse_args(argv)
    a.cases = [c for c in a.cases.split(",") if c]
    unknown = [c for c in a.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {','.join(unknown)}; known: {','.join(CASES)}")
    a.threads = [int(t) for t in a.threads.split(",") if t]
    if not a.threads or min(a.threads) < 1:
        p.error("--threads wants positive integers")
    if a.seconds is None:
        a.seconds = 0.3 if a.quick else 3.0
    if a.repeats is None:
        a.repeats = 1 if a.quick else 3
    return a


def measure_case(args, name, threads, inputs, fixtures):
    case = CASES[name]
    if case["kind"] == "encoder":
        model = ["--model", os.path.join(fixtures,
                                         HF_ENCODER if case.get("model") == "hf" else ENCODER)]
    else:
        model = ["--onnx", os.path.join(fixtures, MLP)]
    common = model + ["--inputs", inputs[case["inputs"]], "--threads", str(threads),
                      "--seconds", str(args.seconds)]
    ours_cmd = [args.runner] + common + ["--precision", case["precision"]]
    if case.get("engine"):
        ours_cmd += ["--engine", case["engine"]]
    peer_cmd = ["node", ORT_RUNNER] + common
    # A case whose single run takes longer than --seconds (c_mixed at about 3 s) already
    # times at least 5 runs per process (2 warm-up, 3 timed); repeating it adds minutes
    # and little else, so it runs once.
    ours, peer = [], []
    for r in range(args.repeats):
        ours.append(run_json(ours_cmd, f"runtime_runner ({name}, {threads} threads)"))
        peer.append(run_json(peer_cmd, f"ort_runner ({name}, {threads} threads)"))
        if r == 0 and ours[0]["p50_ms"] + peer[0]["p50_ms"] > 1000 * args.seconds:
            break
    if ours[0]["items"] != peer[0]["items"]:
        raise SystemExit(f"runtime_bench: {name}: ours counted {ours[0]['items']} items, "
                         f"the peer {peer[0]['items']}")
    return ours, peer


def spread(runs):
    rates = [r["per_s"] for r in runs]
    return (max(rates) - min(rates)) / statistics.median(rates)


def summarize(name, threads, ours, peer, flops_per_item, peaks, tail_flops=0):
    case = CASES[name]
    o_rate = statistics.median(r["per_s"] for r in ours)
    p_rate = statistics.median(r["per_s"] for r in peer)
    row = {
        "name": name, "threads": threads, "unit": ours[0]["unit"] + "/s",
        "precision": case["precision"], "peer_precision": "fp32",
        "items_per_run": ours[0]["items"],
        "ours_per_s": round(o_rate, 2), "peer_per_s": round(p_rate, 2),
        "speedup": round(o_rate / p_rate, 3),
        "ours_p50_ms": round(statistics.median(r["p50_ms"] for r in ours), 4),
        "peer_p50_ms": round(statistics.median(r["p50_ms"] for r in peer), 4),
        "fraction_of_peak": None, "ours_gflops": None,
        "cosine_vs_peer": cosine(ours[0].get("first_row"), peer[0].get("first_row")),
        "repeats": len(ours),
        # (max - min) / median of each side's per-run rates: how far repeats disagree.
        "spread": round(max(spread(ours), spread(peer)), 3),
        "ours_per_s_runs": [round(r["per_s"], 2) for r in ours],
        "peer_per_s_runs": [round(r["per_s"], 2) for r in peer],
    }
    if case["kind"] == "encoder":
        row["ours_engine"] = ours[0]["engine"]
        row["precision"] = ours[0]["precision"]  # in use, which may differ from the request
        row["batch"] = peer[0]["batch"]
        row["peer_padded_tokens"] = peer[0]["padded_tokens"]
        # EmbeddingModel::Load wall time (read, parse, build, extract, check, pack) and
        # the weights the model holds afterwards.
        row["ours_load_ms"] = round(statistics.median(r["load_ms"] for r in ours), 1)
        row["ours_weight_bytes"] = ours[0]["weight_bytes"]
    executed = flops_per_item
    if flops_per_item and case["kind"] == "encoder" and ours[0].get("engine") == "fused" \
            and ours[0].get("pooling") in ("cls", "last_token"):
        # Count what ran: the last layer's tail ran on one row per sequence.
        skipped = (ours[0]["items"] - ours[0]["batch"]) * tail_flops
        executed = flops_per_item - skipped / ours[0]["items"]
        row["flops_note"] = ("of peak counts executed GEMM flops: the last layer after "
                             "attention ran on the pooled row of each sequence only")
    if flops_per_item:
        gflops = executed * o_rate / 1e9
        row["gemm_flops_per_item"] = flops_per_item  # the model's
        row["executed_gemm_flops_per_item"] = round(executed, 1)
        row["ours_gflops"] = round(gflops, 2)
        row["fraction_of_peak"] = round(gflops / peaks[threads], 4)
        if case["precision"] != "fp32":
            row["fraction_of_peak_note"] = ("against the float32 sgemm peak: reduced "
                                            "precision can exceed 1")
    if row["cosine_vs_peer"] is not None:
        row["cosine_vs_peer"] = round(row["cosine_vs_peer"], 7)
    if threads == TARGET_THREADS and case["targets"]:
        row["targets"] = {k: f">= {v}" for k, v in case["targets"].items()}
        row["met"] = all(row[k] is not None and row[k] >= v for k, v in case["targets"].items())
    return row


def fmt_rate(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ms(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.4f}"


def print_table(rows, peaks):
    print()
    print("peak: oneDNN sgemm 2048^3 float32: " +
          ", ".join(f"{peaks[t]:.1f} GFLOP/s at {t} thread{'s' if t > 1 else ''}"
                    for t in sorted(peaks)))
    head = (f"{'case':<18} {'thr':>3} {'unit':<9} {'ours/s':>11} {'peer/s':>11} "
            f"{'speedup':>7} {'spread':>6} {'ours p50':>9} {'peer p50':>9} {'of peak':>7} "
            f"{'cosine':>9}  "
            f"{'target':<30} met?")
    print(head)
    print("-" * len(head))
    for r in rows:
        frac = f"{r['fraction_of_peak']:.3f}" if r["fraction_of_peak"] is not None else "-"
        cos = f"{r['cosine_vs_peer']:.6f}" if r["cosine_vs_peer"] is not None else "-"
        target = ", ".join(f"{k.replace('fraction_of_peak', 'frac')} {v}"
                           for k, v in r.get("targets", {}).items()) or "-"
        met = {True: "yes", False: "NO"}.get(r.get("met"), "")
        print(f"{r['name']:<18} {r['threads']:>3} {r['unit']:<9} "
              f"{fmt_rate(r['ours_per_s']):>11} {fmt_rate(r['peer_per_s']):>11} "
              f"{r['speedup']:>7.2f} {r['spread']:>6.0%} {fmt_ms(r['ours_p50_ms']):>7}ms "
              f"{fmt_ms(r['peer_p50_ms']):>7}ms {frac:>7} {cos:>9}  {target:<30} {met}")


def main():
    args = parse_args(sys.argv[1:])
    if not os.path.isfile(args.runner):
        raise SystemExit(f"runtime_bench: no runner at {args.runner} (make build)")
    ort_module = os.path.join(args.node_modules, "onnxruntime-node")
    if not os.path.isdir(ort_module):
        raise SystemExit(f"runtime_bench: ONNX Runtime is missing ({ort_module}); "
                         "run scripts/install-deps.sh")
    os.environ["INFERMESH_NODE_MODULES"] = args.node_modules
    with open(os.path.join(ort_module, "package.json")) as f:
        ort_version = json.load(f)["version"]

    t_start = time.time()
    subprocess.run([REFERENCE_PYTHON, MAKE_FIXTURES, "--out", args.fixtures,
                    "--only", "bge-small,mlp"], check=True, stdout=subprocess.DEVNULL)
    if any(CASES[c].get("model") == "hf" for c in args.cases):
        subprocess.run([REFERENCE_PYTHON, MAKE_HF_FIXTURES, "--out", args.fixtures,
                        "--only", HF_ENCODER], check=True, stdout=subprocess.DEVNULL)
    encoder_dir = os.path.join(args.fixtures, ENCODER)
    enc_flops, _ = gemm_flops_per_item(os.path.join(encoder_dir, "onnx", "model.onnx"))
    if enc_flops is None:
        enc_flops = encoder_flops_from_config(encoder_dir)
    tail_flops = pooled_tail_flops(encoder_dir)
    mlp_flops, mlp_width = gemm_flops_per_item(os.path.join(args.fixtures, MLP))
    inputs = write_inputs(args.work, mlp_width or 64)

    hardware = cpu_info()
    load_before = loadavg()
    print(f"runtime benchmark on {hardware['cpu']} ({hardware['cores']} cores), ONNX Runtime "
          f"{ort_version}; {args.seconds:g} s per run, {args.repeats} repeat(s), load "
          f"{load_before:.2f}", flush=True)
    peaks = {}
    for t in sorted(set(args.threads)):
        r = run_json([args.runner, "--gemm-peak", "--threads", str(t)] +
                     (["--seconds", str(args.seconds)] if args.quick else []),
                     f"gemm peak ({t} threads)")
        peaks[t] = r["gflops"]
        print(f"  sgemm peak, {t} thread(s): {peaks[t]:.1f} GFLOP/s", flush=True)

    rows = []
    for name in args.cases:
        flops = enc_flops if CASES[name]["kind"] == "encoder" else mlp_flops
        for t in args.threads:
            t0 = time.time()
            ours, peer = measure_case(args, name, t, inputs, args.fixtures)
            row = summarize(name, t, ours, peer, flops, peaks, tail_flops)
            rows.append(row)
            print(f"  {name} threads={t}: ours {fmt_rate(row['ours_per_s'])} "
                  f"{row['unit']}, peer {fmt_rate(row['peer_per_s'])}, speedup "
                  f"{row['speedup']:.2f} ({time.time() - t0:.0f} s)", flush=True)

    print_table(rows, peaks)
    loads = {}
    for r in rows:
        if "ours_load_ms" in r:
            model = HF_ENCODER if CASES[r["name"]].get("model") == "hf" else ENCODER
            loads.setdefault((model, r["ours_engine"], r["precision"]), []).append(r["ours_load_ms"])
    for (model, engine, precision), ms in sorted(loads.items()):
        print(f"load: {model} ({engine}, {precision}): median {statistics.median(ms):.0f} ms over "
              f"{len(ms)} case(s) (target for the fused fp32 bge-small: < {LOAD_TARGET_MS} ms)")
    print("spread: (max - min) / median of the per-run rates over the repeats, the worse of "
          "ours and peer")
    warnings = [f"{r['name']} threads={r['threads']}: fp32 cosine vs ONNX Runtime "
                f"{r['cosine_vs_peer']} < {MIN_FP32_COSINE}"
                for r in rows if r["precision"] == "fp32" and r["cosine_vs_peer"] is not None
                and r["cosine_vs_peer"] < MIN_FP32_COSINE]
    for w in warnings:
        print(f"WARNING: {w}: the two runtimes disagree; the timings may not compare like "
              "with like")
    for r in rows:
        if r["precision"] != CASES[r["name"]]["precision"]:
            w = (f"{r['name']} threads={r['threads']}: asked for "
                 f"{CASES[r['name']]['precision']}, our runtime used {r['precision']}")
            warnings.append(w)
            print(f"WARNING: {w}")
    if load_before >= BUSY_LOAD:
        # Two OpenMP threads on two cores shared with another busy process lose whole
        # time slices at every barrier: 2-thread rows are then noise, not speed.
        busy = (f"load average was {load_before:.2f} before the run: other processes "
                "share the cores, so these numbers (2-thread rows above all) are unreliable")
        warnings.append(busy)
        print(f"WARNING: {busy}")

    counted = [r for r in rows if "met" in r]
    missed = [r for r in counted if not r["met"]]
    if counted:
        summary = (f"targets (threads={TARGET_THREADS}): {len(counted) - len(missed)} of "
                   f"{len(counted)} met" +
                   (f"; missed: {', '.join(r['name'] for r in missed)}" if missed else ""))
    else:
        summary = f"targets: none measured (they count at threads={TARGET_THREADS})"
    top = max(peaks)
    result = {
        "gemm_peak_gflops": round(peaks[TARGET_THREADS] if TARGET_THREADS in peaks
                                  else peaks[top], 2),
        "gemm_peak_gflops_by_threads": {str(t): round(v, 2) for t, v in sorted(peaks.items())},
        "gemm_peak": "oneDNN dnnl_sgemm, 2048x2048x2048 float32, measured in this run",
        "cases": rows,
        "summary": summary,
        "warnings": warnings,
        "flops": ("GEMM FLOPs per item = 2 x sum(in x out) over the model's weight matrices: "
                  f"encoder {enc_flops / 1e6:.2f} MFLOP per real token (2 x layers x "
                  "(4H^2 + 2HF); attention's Q.K^T and P.V products excluded), MLP " +
                  (f"{mlp_flops} FLOP per row" if mlp_flops else "unknown (no onnx module)")),
        "peer": (f"ONNX Runtime {ort_version} (onnxruntime-node, CPU execution provider, "
                 "float32 model, graphOptimizationLevel all, intraOpNumThreads = case threads, "
                 "interOpNumThreads 1, sequential); encoder batches padded to the longest "
                 "sequence with attention_mask; times include the Node binding's per-call "
                 "overhead"),
        "ours": ("runtime_runner: EmbeddingModel::EmbedEncodings on unpadded sequences "
                 "(encoder), Session::Run (MLP)"),
        "model": (f"{ENCODER}: bge-small-shaped BERT (12 layers, hidden 384, FFN 1536, random "
                  "weights, CLS pooling); mlp: 64-128-64-16 with ReLU"),
        "hardware": hardware,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {"seconds_per_run": args.seconds, "repeats": args.repeats,
                   "quick": args.quick, "timing": "2 warm-up runs, then runs until the time "
                   "elapses and at least 3 completed; median of repeats, ours and peer "
                   "alternating"},
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "wall_s": round(time.time() - t_start, 1),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(summary)
    out = os.path.abspath(args.out)
    shown = os.path.relpath(out, ROOT) if out.startswith(ROOT + os.sep) else out
    print(f"wrote {shown} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
