#!/usr/bin/env bash
# Fails if any tracked C++ file differs from clang-format's output.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bad=()
while IFS= read -r f; do
  [ -f "$f" ] || continue
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.cc' '*.h' '*.cpp')
if [ ${#bad[@]} -gt 0 ]; then
  echo "clang-format: ${#bad[@]} file(s) need formatting (run 'make format'):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "clang-format: ok"
