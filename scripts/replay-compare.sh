#!/usr/bin/env bash
# Compares builds of the in-process seph-blog1 replay bench on a machine whose speed drifts:
# runs the given bench binaries in turn, ROUNDS times (each run REPLAY_RUNS=5, its median), and
# prints the median, min and max ns per op of each. With CALLGRIND=1 it also prints the
# instructions per op of the replay loop alone (valgrind --tool=callgrind, one run each).
#
#   cargo bench -p chorus-actors --bench replay --no-run     # prints the binary's path; copy it
#   scripts/replay-compare.sh 9 /tmp/before/replay /tmp/after/replay
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 ROUNDS BENCH_BINARY..." >&2
  exit 2
fi
rounds=$1
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ((i = 0; i < rounds; i++)); do
  n=0
  for bin in "$@"; do
    REPLAY_ONLY=seph-blog1 REPLAY_RUNS=5 REPLAY_CORE_ALONE=0 "$bin" --bench |
      awk '/seph-blog1 sequential/ {print $9}' >>"$work/$n"
    n=$((n + 1))
  done
done
n=0
for bin in "$@"; do
  if [[ ! -s "$work/$n" ]]; then
    echo "$bin printed no seph-blog1 replay line (trace missing? set CHORUS_TRACES)" >&2
    exit 1
  fi
  sort -n "$work/$n" | awk -v name="$bin" \
    '{a[NR] = $1} END {printf "%s: median %s  min %s  max %s ns/op (%d rounds)\n", name, a[int((NR + 1) / 2)], a[1], a[NR], NR}'
  if [[ "${CALLGRIND:-0}" == 1 ]]; then
    # The op count from the bench's own line, the instruction total from valgrind's summary.
    REPLAY_ONLY=seph-blog1 REPLAY_RUNS=1 REPLAY_CORE_ALONE=0 valgrind --tool=callgrind --toggle-collect='*replay_sequential*' \
      --callgrind-out-file="$work/cg.$n" "$bin" --bench 2>&1 |
      awk '/seph-blog1 sequential/ {ops = $4} /refs:/ {gsub(",", "", $4); refs = $4}
           END {if (ops > 0) printf "  %.0f instructions per op\n", refs / ops; else print "  no replay line"}'
  fi
  n=$((n + 1))
done
