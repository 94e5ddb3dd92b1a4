#!/usr/bin/env bash
# Compares node binaries under one load scenario on a machine whose speed drifts: runs a fresh
# node of each binary in turn, ROUNDS times, each against the same load generator and seed, and
# prints each run's op -> all peers p50/p99, server CPU per op and the generator's CPU.
#
#   scripts/load-compare.sh 3 /tmp/old/chorus target/release/chorus
#
# The scenario defaults to 1 000 clients over 100 documents at 2 ops/s each; override with
# LOAD_ARGS (chorus-chaos load flags), e.g. LOAD_ARGS="--clients 10 --docs 1 --closed-loop".
# NODE_ARGS adds node flags (e.g. "--fsync never"). The generator is $CHAOS (default
# target/release/chorus-chaos). JSON reports go to $OUT_DIR.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 ROUNDS NODE_BINARY..." >&2
  exit 2
fi
rounds=$1
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
chaos="${CHAOS:-$root/target/release/chorus-chaos}"
out="${OUT_DIR:-$(mktemp -d)}"
load_args="${LOAD_ARGS:---clients 1000 --docs 100 --rate 2}"
mkdir -p "$out"
echo "load-compare: JSON reports in $out"
ulimit -n "$(ulimit -Hn)" || true

node_pid=""
node_dir=""
stop_node() {
  if [[ -n "$node_pid" ]]; then
    kill "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  [[ -n "$node_dir" ]] && rm -rf "$node_dir"
  node_pid=""
  node_dir=""
}
trap stop_node EXIT

for ((i = 1; i <= rounds; i++)); do
  n=0
  for bin in "$@"; do
    node_dir="$(mktemp -d)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    # shellcheck disable=SC2086 # NODE_ARGS is a list of flags
    # Only the flags given here: no CHORUS_* setting from the caller's environment.
    env -u CHORUS_CONFIG $(env | sed -n 's/^\(CHORUS_[A-Z_]*\)=.*/-u \1/p') \
      "$bin" --listen "127.0.0.1:$port" --data-dir "$node_dir/data" --log warn \
      --max-connections 20000 --op-rate-per-s 20000 --op-burst 40000 ${NODE_ARGS:-} \
      >"$node_dir/node.log" 2>&1 &
    node_pid=$!
    listening=0
    for _ in $(seq 1 300); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then listening=1; break; fi
      kill -0 "$node_pid" 2>/dev/null || break
      sleep 0.1
    done
    if [[ $listening == 0 ]]; then
      echo "$bin did not listen within 30 s" >&2
      cat "$node_dir/node.log" >&2
      exit 1
    fi
    json="$out/$n.$i.json"
    # shellcheck disable=SC2086 # LOAD_ARGS is a list of flags
    # A failed check or a timeout is reported with the run, not a reason to stop comparing.
    status=0
    timeout 600 "$chaos" load --nodes "ws://127.0.0.1:$port/ws" --server-pid "$node_pid" \
      --json "$json" --seed "$i" --quiet --warmup-s 3 --duration-s 10 $load_args >/dev/null ||
      status=$?
    stop_node
    if [[ ! -s "$json" ]]; then
      echo "$bin: run $i wrote no report (exit $status)"
    else
      python3 - "$json" "$bin" "$status" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d.get("peers_latency") or {}
def num(v, fmt):
    return "n/a" if v is None else format(v, fmt)
checks = d.get("checks") or {}
verdict = "ok" if checks.get("converged") and checks.get("no_loss") else "FAILED or skipped"
print(f"{sys.argv[2]}: p50 {num(p.get('p50_ms'), '.2f')} ms  p99 {num(p.get('p99_ms'), '.2f')} ms  "
      f"server {num(d.get('server_cpu_us_per_op'), '.1f')} us/op  "
      f"generator {num(d.get('generator_cpu_s'), '.2f')} CPU-s  checks {verdict}  exit {sys.argv[3]}")
PY
    fi
    n=$((n + 1))
    sleep 2
  done
done
