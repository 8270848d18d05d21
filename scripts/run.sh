#!/usr/bin/env bash
# `make run`: starts the embedded default. Until the mesh processes exist, it shows
# what the binary does today: the runtime's conformance and an embedding demo.
set -euo pipefail
bin="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
echo "infermesh: the mesh processes (worker, gateway, jobs) are not built yet."
echo "What runs today:"
echo
"$bin" --help
echo
fixtures="$root/build/release/fixtures"
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 "$root/tests/fixtures/make_encoders.py" --out "$fixtures" --only tiny >/dev/null
  model="$fixtures/tiny-op17"
  echo "\$ infermesh embed --model $model \"hello world\""
  "$bin" embed --model "$model" "hello world" | cut -c1-200
  echo "(random weights under a fixed seed: a demonstration, not a trained model)"
fi
