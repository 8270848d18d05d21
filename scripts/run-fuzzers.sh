#!/usr/bin/env bash
# Runs every libFuzzer target briefly on its seed corpus (make test's fuzz smoke).
#   scripts/run-fuzzers.sh [seconds-per-target]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-20}"
dir="$root/build/fuzz/tests"
status=0
for target in "$dir"/*_fuzz; do
  [ -x "$target" ] || continue
  name="$(basename "$target" _fuzz)"
  seeds="$root/tests/fuzz/corpus/$name"
  work="$(mktemp -d)"
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null || true
  echo "fuzz: $name for ${secs}s"
  if ! "$target" "$work" -max_total_time="$secs" -rss_limit_mb=4096 -malloc_limit_mb=2048 \
      -timeout=20 -print_final_stats=0 \
      -artifact_prefix="$root/build/fuzz/crash-$name-" >"$work.log" 2>&1; then
    echo "fuzz: $name FAILED"; tail -n 40 "$work.log"; status=1
  fi
  rm -rf "$work" "$work.log"
done
exit $status
