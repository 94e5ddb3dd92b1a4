#!/usr/bin/env bash
# Smoke run of the load generator for CI: builds (debug), starts a node on a free port with a
# temporary data directory, runs 20 clients over 4 documents for 3 s at 20 edits/s each with the
# convergence and loss checks, stops the node, prints one summary line; non-zero exit on failure.
# Usage: scripts/load-smoke.sh   (honours CARGO_TARGET_DIR; every step has a deadline)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
timeout 1200 cargo build --quiet --bin chorus --bin chorus-chaos
data_dir="$(mktemp -d)"
log="$data_dir/node.log"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-60000 -n 1)"
"$target_dir/debug/chorus" --listen "127.0.0.1:$port" --data-dir "$data_dir/data" --log warn >"$log" 2>&1 &
node_pid=$!
cleanup() {
  kill "$node_pid" 2>/dev/null || true
  wait "$node_pid" 2>/dev/null || true
  rm -rf "$data_dir"
}
trap cleanup EXIT
# Wait (at most 30 s) for the node to listen.
for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$node_pid" 2>/dev/null; then echo "load smoke: the node exited:"; cat "$log"; exit 1; fi
  sleep 0.1
done
status=0
timeout 120 "$target_dir/debug/chorus-chaos" load --nodes "ws://127.0.0.1:$port/ws" \
  --clients 20 --docs 4 --rate 20 --warmup-s 1 --duration-s 3 --drain-timeout-s 20 \
  --server-pid "$node_pid" --seed 7 --quiet || status=$?
if [ "$status" -ne 0 ]; then
  echo "load smoke: FAILED (exit $status); node log:"
  tail -n 50 "$log"
fi
exit "$status"
