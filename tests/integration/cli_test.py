#!/usr/bin/python3
"""Integration tests of the real `infermesh` binary's runtime commands.

  cli_test.py INFERMESH_BIN FIXTURE_DIR NODE_MODULES

- `run` reproduces the reference outputs of the MLP fixture, and rejects bad JSON,
  unknown inputs, wrong shapes and garbage model files with clear errors and exit codes.
- `embed` equals an independent computation: Hugging Face tokenizers' ids (Node) →
  `run` on the model file → CLS pooling and L2 normalization in numpy.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx
from onnx import numpy_helper

BIN, FIXTURES, NODE_MODULES = sys.argv[1:4]
del sys.argv[1:4]


def infermesh(*args, check=False):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"infermesh {args[0]} failed ({p.returncode}): {p.stderr}")
    return p


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


class RunCommand(unittest.TestCase):
    model = os.path.join(FIXTURES, "mlp", "model.onnx")

    def test_matches_reference_outputs(self):
        data = os.path.join(FIXTURES, "mlp", "test_data_set_0")
        x = load_pb(os.path.join(data, "input_0.pb"))
        want = load_pb(os.path.join(data, "output_0.pb"))
        name = onnx.load(self.model).graph.input[0].name
        p = infermesh("run", "--model", self.model, "--input", json.dumps({name: x.tolist()}),
                      "--threads", "1", check=True)
        out = json.loads(p.stdout)
        (result,) = out.values()
        self.assertEqual(result["dtype"], "float32")
        self.assertEqual(result["shape"], list(want.shape))
        got = np.array(result["data"], dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    def test_input_from_file_with_explicit_dtype(self):
        name = onnx.load(self.model).graph.input[0].name
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({name: {"dtype": "float32", "shape": [1, 64], "data": [0.5] * 64}}, f)
        p = infermesh("run", "--model", self.model, "--input", "@" + f.name, check=True)
        self.assertEqual(json.loads(p.stdout)[onnx.load(self.model).graph.output[0].name]["shape"],
                         [1, 16])

    def test_bad_inputs_fail_with_clear_errors(self):
        name = onnx.load(self.model).graph.input[0].name
        cases = [
            ("{not json", 2, "JSON"),
            (json.dumps({"nope": [[1.0] * 64]}), 1, "unknown input 'nope'"),
            (json.dumps({name: [[1.0] * 63]}), 1, "dimension 1 must be 64"),
            (json.dumps({name: [[1.0, 2.0], [3.0]]}), 2, "ragged"),
            (json.dumps({name: [["a"] * 64]}), 2, "not a number"),
        ]
        for text, code, needle in cases:
            p = infermesh("run", "--model", self.model, "--input", text)
            self.assertEqual(p.returncode, code, (text, p.stderr))
            self.assertIn(needle, p.stderr, text)

    def test_garbage_and_missing_models(self):
        with tempfile.NamedTemporaryFile(suffix=".onnx", delete=False) as f:
            f.write(os.urandom(4096))
        p = infermesh("run", "--model", f.name, "--input", "{}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a valid ONNX model", p.stderr)
        p = infermesh("run", "--model", "/nonexistent.onnx", "--input", "{}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("does not exist", p.stderr)


class ConfigLayers(unittest.TestCase):
    model = os.path.join(FIXTURES, "mlp", "model.onnx")

    def run_with(self, args, env=None):
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run([BIN, *args, "run", "--model", self.model, "--input", "{}"],
                              capture_output=True, text=True, timeout=60, env=full_env)

    def test_flag_overrides_env_overrides_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("runtime:\n  max_model_bytes: 1KiB\n")
        p = self.run_with(["--config", f.name])
        self.assertEqual(p.returncode, 1)
        self.assertIn("over the limit of 1024", p.stderr)
        p = self.run_with(["--config", f.name], {"INFERMESH_RUNTIME_MAX_MODEL_BYTES": "2KiB"})
        self.assertIn("over the limit of 2048", p.stderr)
        p = self.run_with(["--config", f.name, "--set", "runtime.max_model_bytes=3KiB"],
                          {"INFERMESH_RUNTIME_MAX_MODEL_BYTES": "2KiB"})
        self.assertIn("over the limit of 3072", p.stderr)
        # With the defaults the model loads; '{}' then lacks its input.
        p = self.run_with([])
        self.assertIn("missing input", p.stderr)

    def test_bad_config_is_named(self):
        p = self.run_with(["--set", "bogus.key=1"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown config key 'bogus.key'", p.stderr)
        p = self.run_with([], {"INFERMESH_RUNTIME_INTRA_OP_THREADS": "many"})
        self.assertEqual(p.returncode, 2)
        self.assertIn("env:INFERMESH_RUNTIME_INTRA_OP_THREADS", p.stderr)


HF_IDS_JS = r"""
const [modules, vocab, ...texts] = process.argv.slice(1);
const tk = require(require('path').resolve(modules, '@anush008/tokenizers'));
(async () => {
  const t = new tk.Tokenizer(await tk.WordPiece.fromFile(vocab, {unkToken: '[UNK]'}));
  t.setNormalizer(tk.bertNormalizer({lowercase: true}));
  t.setPreTokenizer(tk.bertPreTokenizer());
  t.setPostProcessor(tk.templateProcessing('[CLS] $A [SEP]', '[CLS] $A [SEP] $B:1 [SEP]:1',
                                           [['[CLS]', 101], ['[SEP]', 102]]));
  const out = [];
  for (const s of texts) out.push((await t.encode(s)).getIds());
  console.log(JSON.stringify(out));
})();
"""


class EmbedCommand(unittest.TestCase):
    model_dir = os.path.join(FIXTURES, "tiny-op17")
    texts = ["Héllo, world! tokenization", "a much longer sentence about ONNX models", "日本語"]

    def test_embed_equals_independent_pipeline(self):
        p = infermesh("embed", "--model", self.model_dir, *self.texts, "--threads", "1",
                      check=True)
        rows = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual(len(rows), len(self.texts))

        ids = json.loads(subprocess.run(
            ["node", "-e", HF_IDS_JS, NODE_MODULES, os.path.join(self.model_dir, "vocab.txt"),
             *self.texts], capture_output=True, text=True, check=True).stdout)
        self.assertEqual(ids[0], [101, 7592, 1010, 2088, 999, 19204, 3989, 102])
        model = os.path.join(self.model_dir, "onnx", "model.onnx")
        for text, row, seq in zip(self.texts, rows, ids):
            n = len(seq)
            feeds = {"input_ids": {"dtype": "int64", "shape": [1, n], "data": seq},
                     "attention_mask": {"dtype": "int64", "shape": [1, n], "data": [1] * n},
                     "token_type_ids": {"dtype": "int64", "shape": [1, n], "data": [0] * n}}
            out = json.loads(infermesh("run", "--model", model, "--input", json.dumps(feeds),
                                       check=True).stdout)
            hidden = np.array(out["last_hidden_state"]["data"], dtype=np.float64).reshape(n, -1)
            cls = hidden[0] / np.linalg.norm(hidden[0])
            np.testing.assert_allclose(np.array(row), cls, rtol=1e-5, atol=1e-6, err_msg=text)
            self.assertAlmostEqual(float(np.linalg.norm(row)), 1.0, places=5)

    def test_no_normalize_and_too_long_input(self):
        p = infermesh("embed", "--model", self.model_dir, "hello", "--no-normalize", check=True)
        self.assertGreater(abs(np.linalg.norm(json.loads(p.stdout)) - 1.0), 1e-3)
        long_text = "word " * 1000  # the tiny model's maximum is 128 positions
        p = infermesh("embed", "--model", self.model_dir, long_text, "--no-truncate")
        self.assertEqual(p.returncode, 1)
        self.assertIn("maximum", p.stderr)
        p = infermesh("embed", "--model", self.model_dir, long_text, check=True)
        self.assertEqual(len(json.loads(p.stdout)), 32)

    def test_missing_model_dir_and_invalid_utf8(self):
        p = infermesh("embed", "--model", "/nonexistent", "x")
        self.assertEqual(p.returncode, 1)
        self.assertIn("does not exist", p.stderr)
        bad = subprocess.run([BIN.encode(), b"embed", b"--model", self.model_dir.encode(),
                              b"caf\xc3"], capture_output=True, timeout=60)
        self.assertEqual(bad.returncode, 1)
        self.assertIn(b"UTF-8", bad.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
