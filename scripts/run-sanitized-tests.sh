#!/usr/bin/env bash
# Runs every unit-test binary of the sanitizer build (build/fuzz: clang,
# ASan+UBSan, no recovery). Any sanitizer report fails the run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/build/fuzz/tests"
status=0
for t in "$dir"/unit_*; do
  [ -x "$t" ] || continue
  name="$(basename "$t")"
  log="$(mktemp)"
  if (cd "$dir" && "$t" --gtest_brief=1 >"$log" 2>&1); then
    echo "sanitized $name: $(grep -E 'PASSED' "$log" | tail -n 1)"
  else
    echo "sanitized $name FAILED:"; tail -n 60 "$log"; status=1
  fi
  rm -f "$log"
done
exit $status
