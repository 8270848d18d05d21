#!/usr/bin/env bash
# `make run`: starts the embedded default. Until the worker lands, it prepares the
# demo models (written from C++, no PyTorch) and shows the runtime working on them.
set -euo pipefail
bin="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${INFERMESH_DEMO_DIR:-$root/build/demo-models}"

"$bin" demo-model --out "$models"
echo
echo "The demo encoder is bge-small-shaped (12 layers, hidden 384) with the real 30,522-entry"
echo "WordPiece vocabulary and RANDOM weights under a fixed seed: no pretrained weights can be"
echo "fetched here. Serve a real model by pointing at a Hugging Face repository downloaded"
echo "elsewhere, e.g. BAAI/bge-small-en-v1.5 (it has onnx/model.onnx)."
echo
echo "\$ infermesh embed --model $models/bge-small-demo \"hello world\""
"$bin" embed --model "$models/bge-small-demo" "hello world" | cut -c1-160
echo
echo "\$ infermesh run --model $models/mlp-demo.onnx --input '{\"input\": [[0.5, ... 64 values]]}'"
input=$(printf '0.5,%.0s' $(seq 63))
"$bin" run --model "$models/mlp-demo.onnx" --input "{\"input\": [[${input}0.5]]}" | cut -c1-160
