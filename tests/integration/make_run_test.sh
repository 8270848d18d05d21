#!/usr/bin/env bash
# `make run`'s path without a TTY: scripts/run.sh BIN starts the whole mesh (`infermesh up`: a
# gateway, 3 workers, the job service) on the demo models; the curl examples it prints must
# answer 2xx with JSON, the printed `jobs watch` of the demo embed job must see it succeed, and
# SIGINT (Ctrl-C) to its process group must leave no infermesh process behind.
#
#   tests/integration/make_run_test.sh INFERMESH_BIN
#
# Contract with scripts/run.sh: INFERMESH_PORT picks the gateway's port (default 8000),
# INFERMESH_DEMO_DIR the folder of the demo models, and, being configuration keys,
# INFERMESH_JOBS_PORT the job service's port and INFERMESH_UP_STATE_DIR up's state folder; it
# prints one `curl ...` line per example on stdout, and one `BIN jobs watch ...` line.
set -uo pipefail
bin="$(realpath "$1")"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d /tmp/infermesh-make-run-test.XXXXXX)"
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port="$(free_port)"
jobs_port="$(free_port)"
pgid=""

fail() {
  echo "FAIL: $*" >&2
  echo "---- run.sh stdout (tail)" >&2; tail -n 40 "$tmp/stdout" >&2 2>/dev/null
  echo "---- run.sh stderr (tail)" >&2; tail -n 40 "$tmp/stderr" >&2 2>/dev/null
  exit 1
}

group_pids() {  # processes still in run.sh's process group
  [[ -n "$pgid" ]] || return 0
  ps -e -o pid=,pgid=,args= | awk -v g="$pgid" '$2 == g { print }'
}

demo_pids() {  # any infermesh serving the test's demo folder, whatever its group
  ps -e -o pid=,args= | grep -F -- "$tmp/demo" | grep -F infermesh | grep -v -F "grep" || true
}

cleanup() {
  if [[ -n "$pgid" ]]; then kill -KILL -- "-$pgid" 2>/dev/null; fi
  demo_pids | awk '{ print $1 }' | xargs -r kill -KILL 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

cd "$root" || fail "cannot cd to $root"
# setsid: run.sh leads its own process group, as it would in a terminal, so that SIGINT can go to
# the whole group like Ctrl-C does. No TTY: stdin is /dev/null.
INFERMESH_PORT="$port" INFERMESH_DEMO_DIR="$tmp/demo" INFERMESH_JOBS_PORT="$jobs_port" \
  INFERMESH_UP_STATE_DIR="$tmp/state" setsid scripts/run.sh "$bin" </dev/null >"$tmp/stdout" 2>"$tmp/stderr" &
script_pid=$!
sleep 0.2
pgid="$(ps -o pgid= -p "$script_pid" | tr -d ' ')"
[[ -n "$pgid" ]] || fail "run.sh exited at once"
echo "run.sh pid $script_pid, process group $pgid, port $port"

# Ready: /health answers 200 (the full-size demo model is generated first: allow minutes).
ready=0
for _ in $(seq 1 1200); do
  if curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$port/health"; then ready=1; break; fi
  kill -0 "$script_pid" 2>/dev/null || fail "run.sh exited before the gateway was ready"
  sleep 0.25
done
[[ "$ready" == 1 ]] || fail "no gateway answered /health on port $port"
# The examples are printed once every worker is ready.
for _ in $(seq 1 480); do
  grep -q '^curl ' "$tmp/stdout" && break
  kill -0 "$script_pid" 2>/dev/null || fail "run.sh exited before it printed the examples"
  sleep 0.25
done

# The printed examples: lines starting with `curl `, with backslash continuations joined.
mapfile -t cmds < <(awk '
  { line = cont $0 }
  line ~ /\\$/ { cont = substr(line, 1, length(line) - 1); next }
  { cont = "" }
  line ~ /^curl / { print line }' "$tmp/stdout")
[[ "${#cmds[@]}" -ge 3 ]] || fail "expected at least 3 printed curl examples, got ${#cmds[@]}"
for route in /embed /v1/embeddings /infer /queue/submit /jobs/; do
  # Not `grep -q`: it exits at the first match, printf then dies of SIGPIPE, and pipefail
  # turns that into a failure.
  printf '%s\n' "${cmds[@]}" | grep -- "$route" >/dev/null || fail "no curl example for $route"
done

i=0
for cmd in "${cmds[@]}"; do
  i=$((i + 1))
  [[ "$cmd" == *":$port/"* || "$cmd" == *":$jobs_port/"* ]] ||
    fail "example $i uses neither INFERMESH_PORT=$port nor INFERMESH_JOBS_PORT=$jobs_port: $cmd"
  code="$(bash -c "$cmd -sS --max-time 120 -o '$tmp/body$i' -w '%{http_code}'" </dev/null)" ||
    fail "example $i failed to run: $cmd"
  [[ "$code" == 2?? ]] || fail "example $i answered $code: $cmd -> $(head -c 300 "$tmp/body$i")"
  /usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/body$i" ||
    fail "example $i did not answer JSON: $cmd -> $(head -c 300 "$tmp/body$i")"
  echo "ok: $cmd"
done

# The printed `jobs watch` follows the demo embed job (submitted above) until it succeeds.
watch_cmd="$(grep -E -- ' jobs watch ' "$tmp/stdout" | head -n 1)"
[[ -n "$watch_cmd" ]] || fail "no printed 'jobs watch' example"
timeout 300 bash -c "$watch_cmd" </dev/null >"$tmp/watch" 2>&1 ||
  fail "the printed '$watch_cmd' did not see the job succeed: $(tail -n 5 "$tmp/watch")"
echo "ok: $watch_cmd"
out_file="$(grep -o '"output":"[^"]*"' "$tmp/stdout" | head -n 1 | cut -d'"' -f4)"
[[ -f "$out_file" ]] || fail "the demo embed job wrote no $out_file"
lines="$(wc -l <"$out_file")"
[[ "$lines" -ge 100 ]] || fail "the demo embed job wrote $lines lines to $out_file"
echo "ok: the demo embed job wrote $lines embeddings"

# Every process of the mesh, to check afterwards that none is left.
mesh_pids="$script_pid $(ps -e -o pid=,ppid= | awk -v p="$script_pid" '$2 == p { print $1 }')"
n_roles="$(wc -w <<<"$mesh_pids")"
[[ "$n_roles" -ge 6 ]] || fail "expected up and 5 roles (gateway, 3 workers, jobs), found $mesh_pids"

# Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
kill -INT -- "-$pgid" || fail "cannot signal process group $pgid"
exited=0
for _ in $(seq 1 240); do
  if ! kill -0 "$script_pid" 2>/dev/null; then exited=1; break; fi
  sleep 0.25
done
[[ "$exited" == 1 ]] || fail "run.sh still running 60 s after SIGINT"
wait "$script_pid"
rc=$?
echo "run.sh exited with $rc after SIGINT"
# Ctrl-C is a clean stop: 0, or 130 if the shell reports the interrupt itself.
[[ "$rc" == 0 || "$rc" == 130 ]] || fail "run.sh exited with $rc after SIGINT"

left=""
for _ in $(seq 1 40); do
  left="$(group_pids; demo_pids; for p in $mesh_pids; do ps -o pid=,args= -p "$p"; done)"
  [[ -z "$left" ]] && break
  sleep 0.25
done
[[ -z "$left" ]] || fail "processes left behind after SIGINT:
$left"
for p in "$port" "$jobs_port"; do
  if curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$p/health"; then
    fail "something still answers on port $p"
  fi
done
pgid=""
echo "PASS"
