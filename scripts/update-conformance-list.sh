#!/usr/bin/env bash
# Rewrites tests/conformance/expected_pass.txt from a full conformance run and
# bench/results/conformance.json. Review the diff: a test leaving the list is a regression.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/build/release/apps/infermesh/infermesh"
"$bin" conformance --threads 2 --known "$root/tests/conformance/known_issues.txt" --json "$root/bench/results/conformance.json" | tail -n 1
/usr/bin/python3 - "$root" <<'PY'
import json, sys
root = sys.argv[1]
doc = json.load(open(f"{root}/bench/results/conformance.json"))
names = sorted(t["name"] for t in doc["tests"] if t["status"] == "passed")
with open(f"{root}/tests/conformance/expected_pass.txt", "w") as f:
    f.write("# ONNX node tests that must pass (scripts/update-conformance-list.sh)\n")
    f.write("\n".join(names) + "\n")
print(f"{len(names)} tests in tests/conformance/expected_pass.txt")
PY
