// The real npm `openai` client against a running `infermesh worker`.
//
//   node worker_openai_test.mjs BASE_URL MODEL NODE_MODULES TEXT...
//
// Prints one JSON object on stdout: the embeddings the client returned for the texts
// with encoding_format 'float', with 'base64' (the raw string, decoded here), and with
// no encoding_format (the client then asks for base64 and decodes it itself), plus the
// model and usage it saw. worker_test.py compares them with plain HTTP and `infermesh embed`.
import { createRequire } from 'node:module';
import path from 'node:path';

const [baseURL, model, nodeModules, ...texts] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(nodeModules), 'noop.js'));
const OpenAIModule = require('openai');
const OpenAI = OpenAIModule.OpenAI ?? OpenAIModule.default ?? OpenAIModule;

const client = new OpenAI({ baseURL, apiKey: 'x', maxRetries: 0, timeout: 60_000 });

function decodeBase64(s) {
  if (typeof s !== 'string') throw new Error(`expected a base64 string, got ${typeof s}`);
  const buf = Buffer.from(s, 'base64');
  return Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4));
}

const floatRes = await client.embeddings.create({ model, input: texts, encoding_format: 'float' });
const b64Res = await client.embeddings.create({ model, input: texts, encoding_format: 'base64' });
const defRes = await client.embeddings.create({ model, input: texts });
const single = await client.embeddings.create({ model, input: texts[0], encoding_format: 'float' });

let errorStatus = null;
let errorMessage = null;
try {
  await client.embeddings.create({ model, input: [], encoding_format: 'float' });
} catch (e) {
  errorStatus = e.status ?? null;
  errorMessage = e.message ?? String(e);
}

const byIndex = (res) => [...res.data].sort((a, b) => a.index - b.index);
process.stdout.write(JSON.stringify({
  object: floatRes.object,
  model: floatRes.model,
  usage: floatRes.usage,
  indexes: floatRes.data.map((d) => d.index),
  objects: floatRes.data.map((d) => d.object),
  float: byIndex(floatRes).map((d) => d.embedding),
  base64_raw_types: b64Res.data.map((d) => typeof d.embedding),
  base64: byIndex(b64Res).map((d) => decodeBase64(d.embedding)),
  default: byIndex(defRes).map((d) => Array.from(d.embedding)),
  single: single.data.map((d) => d.embedding),
  empty_error_status: errorStatus,
  empty_error_message: errorMessage,
}) + '\n');
