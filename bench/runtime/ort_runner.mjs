#!/usr/bin/env node
// ort_runner: times ONNX Runtime (onnxruntime-node from tools/ref, CPU execution provider)
// on one case of `make bench-runtime`, the peer of runtime_runner; prints one JSON object
// on stdout in the same shape.
//
//   node bench/runtime/ort_runner.mjs --model DIR --inputs seqs.txt --threads 2 --seconds 3
//   node bench/runtime/ort_runner.mjs --onnx mlp.onnx --inputs rows.txt --threads 1
//
// Encoder mode reads the same unpadded sequences as runtime_runner and pads them to the
// longest with attention_mask (ONNX Runtime has no ragged batches); per_s counts real
// tokens only. The model's output is last_hidden_state [B, S, H], so the first row is
// pooled as the model directory's 1_Pooling/config.json says (CLS, mean or last token),
// like our EmbeddingModel, for the cross-check. Feeds are built once, outside the timed
// loop. Timing rule: two warm-up runs, then runs until --seconds have elapsed and at
// least three have completed.
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';
import {performance} from 'node:perf_hooks';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NODE_MODULES = process.env.INFERMESH_NODE_MODULES ||
    path.join(HERE, '..', '..', 'tools', 'ref', 'node_modules');
const require = createRequire(import.meta.url);

function usage(msg) {
  console.error(`ort_runner: ${msg}`);
  console.error('usage: ort_runner.mjs (--model DIR | --onnx FILE) --inputs FILE --threads N ' +
                '[--seconds S]');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {threads: 1, seconds: 3, precision: 'fp32'};
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) usage(`${flag} needs a value`);
    switch (flag) {
      case '--model': o.model = value; break;
      case '--onnx': o.onnx = value; break;
      case '--inputs': o.inputs = value; break;
      case '--threads': o.threads = Number(value); break;
      case '--seconds': o.seconds = Number(value); break;
      case '--precision': o.precision = value; break;
      default: usage(`unknown flag ${flag}`);
    }
  }
  if (!!o.model === !!o.onnx) usage('give exactly one of --model, --onnx');
  if (!o.inputs) usage('--inputs is required');
  if (!(o.threads >= 1)) usage('--threads must be at least 1');
  if (o.precision !== 'fp32') usage('ONNX Runtime runs the float32 model only');
  return o;
}

function readLines(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length === 0) throw new Error(`${file}: no items`);
  return lines.map((l) => l.split(/\s+/).map(Number));
}

async function timeRuns(seconds, run) {
  for (let i = 0; i < 2; ++i) await run();
  const ms = [];
  const start = performance.now();
  while (ms.length < 3 || performance.now() - start < seconds * 1e3) {
    const t0 = performance.now();
    await run();
    ms.push(performance.now() - t0);
  }
  const total = (performance.now() - start) / 1e3;
  ms.sort((a, b) => a - b);
  const n = ms.length;
  const p50 = n % 2 ? ms[(n - 1) / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
  return {iterations: n, seconds: total, p50_ms: p50};
}

function timingJson(t, items) {
  return {items, iterations: t.iterations, seconds: t.seconds,
          per_s: items * t.iterations / t.seconds, p50_ms: t.p50_ms};
}

function poolingOf(dir) {
  const file = path.join(dir, '1_Pooling', 'config.json');
  if (!fs.existsSync(file)) return 'cls';
  const c = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (c.pooling_mode_mean_tokens) return 'mean';
  if (c.pooling_mode_lasttoken) return 'last';
  return 'cls';
}

// Row 0 of last_hidden_state [B, S, H], pooled over its `len` real tokens.
function poolFirstRow(t, len, pooling) {
  const h = t.dims[2];
  const data = t.data;
  const row = new Array(h).fill(0);
  if (pooling === 'mean') {
    for (let s = 0; s < len; ++s) {
      for (let j = 0; j < h; ++j) row[j] += data[s * h + j];
    }
    return row.map((v) => v / len);
  }
  const s = pooling === 'last' ? len - 1 : 0;
  for (let j = 0; j < h; ++j) row[j] = data[s * h + j];
  return row;
}

function sessionOptions(threads) {
  return {intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
          executionMode: 'sequential'};
}

async function encoder(ort, o) {
  const dir = o.model;
  const file = ['onnx/model.onnx', 'model.onnx'].map((f) => path.join(dir, f))
      .find((f) => fs.existsSync(f));
  if (!file) throw new Error(`${dir}: no onnx/model.onnx or model.onnx`);
  const seqs = readLines(o.inputs);
  const batch = seqs.length;
  const seq = Math.max(...seqs.map((s) => s.length));
  const ids = new BigInt64Array(batch * seq);  // zero = [PAD]
  const mask = new BigInt64Array(batch * seq);
  let tokens = 0;
  seqs.forEach((s, b) => {
    s.forEach((id, i) => {
      ids[b * seq + i] = BigInt(id);
      mask[b * seq + i] = 1n;
    });
    tokens += s.length;
  });
  const session = await ort.InferenceSession.create(file, sessionOptions(o.threads));
  const all = {
    input_ids: new ort.Tensor('int64', ids, [batch, seq]),
    attention_mask: new ort.Tensor('int64', mask, [batch, seq]),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(batch * seq), [batch, seq]),
  };
  const feeds = {};
  for (const name of session.inputNames) {
    if (!all[name]) throw new Error(`${file}: unexpected input ${name}`);
    feeds[name] = all[name];
  }
  const outName = session.outputNames[0];
  let out;
  const t = await timeRuns(o.seconds, async () => { out = (await session.run(feeds))[outName]; });
  const pooling = poolingOf(dir);
  return {...timingJson(t, tokens), mode: 'encoder', unit: 'tokens', threads: o.threads,
          precision: 'fp32', batch, padded_to: seq, padded_tokens: batch * seq, pooling,
          first_row: poolFirstRow(out, seqs[0].length, pooling)};
}

async function tensorModel(ort, o) {
  const rows = readLines(o.inputs);
  const width = rows[0].length;
  if (rows.some((r) => r.length !== width)) throw new Error('ragged input rows');
  const session = await ort.InferenceSession.create(o.onnx, sessionOptions(o.threads));
  if (session.inputNames.length !== 1) throw new Error('tensor mode wants one graph input');
  const x = new Float32Array(rows.flat());
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', x, [rows.length, width])};
  const outName = session.outputNames[0];
  let out;
  const t = await timeRuns(o.seconds, async () => { out = (await session.run(feeds))[outName]; });
  const w = out.dims.slice(1).reduce((a, b) => a * b, 1);
  return {...timingJson(t, rows.length), mode: 'tensor', unit: 'rows', threads: o.threads,
          precision: 'fp32', first_row: Array.from(out.data.subarray(0, w))};
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const module = path.join(NODE_MODULES, 'onnxruntime-node');
  if (!fs.existsSync(module)) {
    throw new Error(`${module} is missing: run scripts/install-deps.sh`);
  }
  const ort = require(module);
  const result = o.model ? await encoder(ort, o) : await tensorModel(ort, o);
  result.ort_version = JSON.parse(
      fs.readFileSync(path.join(module, 'package.json'), 'utf8')).version;
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  console.error(`ort_runner: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
