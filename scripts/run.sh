#!/usr/bin/env bash
# `make run`: the embedded default. Today that is one worker serving the demo models
# on :8000 (INFERMESH_PORT overrides); Ctrl-C stops it cleanly.
#
#   scripts/run.sh BIN            # BIN = build/release/apps/infermesh/infermesh
#   INFERMESH_PORT=9000 INFERMESH_DEMO_DIR=/tmp/demo scripts/run.sh BIN
set -euo pipefail
bin="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${INFERMESH_DEMO_DIR:-$root/build/demo-models}"
port="${INFERMESH_PORT:-8000}"
host="${INFERMESH_HOST:-127.0.0.1}"

"$bin" demo-model --out "$models"
cat <<TXT

The demo encoder is bge-small-shaped (12 layers, hidden 384) with the real 30,522-entry
WordPiece vocabulary and RANDOM weights under a fixed seed: no pretrained weights can be
fetched here, so its embeddings are not meaningful. To serve a real model, put a Hugging
Face repository downloaded elsewhere (e.g. BAAI/bge-small-en-v1.5, which has
onnx/model.onnx) in a folder and run: $bin worker --models FOLDER --port $port

Starting the worker on $host:$port ...
TXT

fifo="$(mktemp -u)"
mkfifo "$fifo"
"$bin" worker --models "$models" --host "$host" --port "$port" >"$fifo" &
worker=$!
stop() { kill -INT "$worker" 2>/dev/null || true; }
trap stop INT TERM
exec 3<"$fifo"
rm -f "$fifo"
if ! read -r line <&3; then
  wait "$worker" || true
  echo "the worker did not start (see its log above)" >&2
  exit 1
fi
echo "$line"
input=$(printf '0.5,%.0s' $(seq 63))0.5
cat <<TXT

Try it (Ctrl-C stops the worker):
curl -s http://$host:$port/embed -H 'Content-Type: application/json' -d '{"inputs": "What is an inference mesh?"}'
curl -s http://$host:$port/v1/embeddings -H 'Content-Type: application/json' -d '{"model": "bge-small-demo", "input": ["first text", "second text"]}'
curl -s http://$host:$port/infer -H 'Content-Type: application/json' -d '{"request_id": "r1", "input_data": [$input]}'
curl -s http://$host:$port/health
TXT
set +e
wait "$worker"
status=$?
# A signal interrupts the first wait; wait again for the drain to finish.
while kill -0 "$worker" 2>/dev/null; do wait "$worker"; status=$?; done
exit "$status"
