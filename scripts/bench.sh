#!/usr/bin/env bash
# Benchmark matrix: builds release, starts its own node per run (temporary data directory, free
# port, raised limits), runs the load scenarios with chorus-chaos, the in-process trace replay and
# the criterion micro-benchmarks, and writes a markdown table (medians of RUNS runs).
#
# Usage: scripts/bench.sh [OUT_DIR]        (default OUT_DIR: $CARGO_TARGET_DIR/bench/<date>)
# Environment:
#   RUNS=3                runs of each load scenario (the table shows medians)
#   DURATION_S=15         measured seconds per load run (WARMUP_S before it; big scenarios get more)
#   SCENARIOS="..."       subset of: small medium large huge idle docsize replay micro
#   NODE_ARGS="..."       extra flags for every node, e.g. "--fsync group --worker-threads 1"
#   CARGO_TARGET_DIR      as usual
# Needs: a Rust toolchain, python3 (for the tables). Every step has a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="${1:-$target_dir/bench/$(date +%Y%m%d-%H%M%S)}"
runs="${RUNS:-3}"
duration="${DURATION_S:-15}"
warmup="${WARMUP_S:-3}"
scenarios="${SCENARIOS:-small medium large huge idle docsize replay micro}"
mkdir -p "$out"
echo "bench: results in $out"

timeout 3000 cargo build --release --quiet --bin chorus --bin chorus-chaos
chorus="$target_dir/release/chorus"
chaos="$target_dir/release/chorus-chaos"

# The node and the generator each need a file descriptor per connection.
ulimit -n "$(ulimit -Hn)" || true

node_pid=""
node_dir=""
# Extra flags for the nodes of the scenarios that need them.
node_args=()
stop_node() {
  if [ -n "$node_pid" ]; then
    kill "$node_pid" 2>/dev/null || true
    # Bounded wait for the graceful shutdown.
    for _ in $(seq 1 150); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  [ -n "$node_dir" ] && rm -rf "$node_dir"
  node_pid=""
  node_dir=""
}
trap stop_node EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_node() {
  node_dir="$(mktemp -d)"
  port="$(free_port)"
  "$chorus" --listen "127.0.0.1:$port" --data-dir "$node_dir/data" --log warn \
    --max-connections 20000 --op-rate-per-s 20000 --op-burst 40000 "${node_args[@]}" ${NODE_ARGS:-} \
    >"$node_dir/node.log" 2>&1 &
  node_pid=$!
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$node_pid" 2>/dev/null || { cat "$node_dir/node.log"; return 1; }
    sleep 0.1
  done
  echo "bench: the node did not listen within 30 s"; return 1
}

# run_load NAME [chorus-chaos load flags...]: RUNS runs, each against a fresh node.
run_load() {
  local name="$1"; shift
  for i in $(seq 1 "$runs"); do
    start_node
    echo "bench: $name run $i/$runs"
    timeout 900 "$chaos" load --nodes "ws://127.0.0.1:$port/ws" --server-pid "$node_pid" \
      --json "$out/$name.$i.json" --seed "$i" --quiet "$@" || echo "bench: $name run $i exited $?"
    stop_node
    sleep 2
  done
}

for s in $scenarios; do
  case "$s" in
    small)
      run_load c10-d1-rate2 --clients 10 --docs 1 --rate 2 --warmup-s "$warmup" --duration-s "$duration"
      run_load c10-d1-closed --clients 10 --docs 1 --closed-loop --warmup-s "$warmup" --duration-s "$duration" ;;
    medium)
      run_load c100-d10-rate2 --clients 100 --docs 10 --rate 2 --warmup-s "$warmup" --duration-s "$duration"
      run_load c100-d10-closed --clients 100 --docs 10 --closed-loop --warmup-s "$warmup" --duration-s "$duration" ;;
    large)
      run_load c1000-d100-rate2 --clients 1000 --docs 100 --rate 2 --warmup-s "$warmup" --duration-s "$duration"
      run_load c1000-d100-closed --clients 1000 --docs 100 --closed-loop --warmup-s "$warmup" --duration-s "$duration" ;;
    huge)
      run_load c10000-d1000-rate2 --clients 10000 --docs 1000 --rate 2 --warmup-s 10 --duration-s "$duration" \
        --drain-timeout-s 60
      run_load c10000-d1000-closed --clients 10000 --docs 1000 --closed-loop --warmup-s 10 --duration-s "$duration" \
        --drain-timeout-s 60 ;;
    idle)
      run_load idle-c10000 --clients 10000 --docs 1000 --rate 0 --warmup-s 5 --duration-s 5 ;;
    docsize)
      # The 10 MB document needs room above the default 10 M code point limit.
      node_args=(--max-document-chars 20000000)
      run_load doc-1kb --clients 10 --docs 1 --closed-loop --doc-chars 1000 --warmup-s "$warmup" --duration-s "$duration"
      run_load doc-100kb --clients 10 --docs 1 --closed-loop --doc-chars 100000 --warmup-s "$warmup" --duration-s "$duration"
      run_load doc-10mb --clients 10 --docs 1 --closed-loop --doc-chars 10000000 --max-doc-chars 10500000 \
        --warmup-s "$warmup" --duration-s "$duration" --connect-timeout-s 300
      node_args=() ;;
    replay)
      echo "bench: trace replay"
      timeout 1800 cargo bench --quiet -p chorus-actors --bench replay 2>&1 | tee "$out/replay.txt" ;;
    micro)
      echo "bench: criterion micro-benchmarks"
      for b in ot codec; do
        timeout 1800 cargo bench --quiet -p chorus-actors --bench "$b" -- --warm-up-time 1 --measurement-time 3 \
          2>&1 | tee "$out/criterion-$b.txt"
      done ;;
    *) echo "bench: unknown scenario $s"; exit 2 ;;
  esac
done

{
  echo "Node settings: defaults plus --max-connections 20000 --op-rate-per-s 20000 --op-burst 40000${NODE_ARGS:+ $NODE_ARGS}; commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  python3 "$root/scripts/bench_table.py" "$out"
} | tee "$out/RESULTS.md"
