#!/usr/bin/env bash
# Installs every build and test dependency of infermesh. Idempotent: a second run
# installs nothing and finishes in seconds.
#
#   scripts/install-deps.sh            # Debian packages + npm reference tools
#   INFERMESH_SKIP_NPM=1 scripts/...   # Debian packages only
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian 12 packages. Grouped by what needs them; see docs/decisions.md.
pkgs=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang clang-format libclang-rt-14-dev
  # core / http
  libboost1.81-dev libboost-json1.81-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev
  libxxhash-dev
  # gateway: the Redis cache tier (hiredis, values compressed with zstd)
  libhiredis-dev libzstd-dev
  # jobs: the durable store (SQLite, WAL)
  libsqlite3-dev
  # runtime
  libdnnl-dev libonnx-dev libprotobuf-dev protobuf-compiler libutf8proc-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libonnx-testdata prometheus redis-server
  # the status page's test: headless Chromium driven by npm playwright-core
  chromium
  # make bench-gateway's peer
  haproxy
  # jobs: the real Slurm the Slurm executor's tests start on localhost
  slurmctld slurmd slurm-client munge
  python3-torch python3-onnx python3-numpy python3-requests python3-sentencepiece unicode-data curl
)

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

# npm reference tools live in tools/ref/node_modules (git-ignored). Their install
# scripts try to download; the tarballs already carry the native libraries.
if [ "${INFERMESH_SKIP_NPM:-0}" != "1" ]; then
  ref="$here/tools/ref"
  if [ ! -f "$ref/node_modules/.infermesh-stamp" ] ||
     [ "$ref/package.json" -nt "$ref/node_modules/.infermesh-stamp" ]; then
    echo "install-deps: installing npm reference tools into tools/ref"
    (cd "$ref" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
    touch "$ref/node_modules/.infermesh-stamp"
  else
    echo "install-deps: npm reference tools present"
  fi
fi
