#!/usr/bin/env bash
# Runs the whole test suite and prints one summary line at the end:
#   1. every crate's unit, property, store (real redis-server), whole-system (real node
#      processes and sockets), and cluster chaos tests (real redis-server + three nodes);
#   2. the load generator's smoke run against a real node (convergence and loss checks);
#   3. the browser editor (web/ui): type check, unit tests of its OT and sync state machine,
#      and end-to-end tests driving headless Chromium against the real `chorus` binary.
# On a fresh Debian machine run as root, missing redis-server and chromium are installed with
# apt-get; elsewhere a missing one stops the run with a message saying what to install.
# Needs a Rust toolchain and Node.js 20.19+ with npm. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need_package() { # command, Debian package
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2"
  else
    echo "error: '$1' is needed by the tests; install the '$2' package" >&2
    exit 1
  fi
}
need_package redis-server redis-server
# The Debian package may start a system instance; the tests start their own on free ports.
(systemctl stop redis-server || service redis-server stop || true) >/dev/null 2>&1
chromium="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] || need_package chromium chromium
if ! command -v npm >/dev/null 2>&1; then
  echo "error: Node.js 20.19+ with npm is needed to build and test the browser editor" >&2
  exit 1
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0

cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$logs/cargo.log" || status=1

# The smoke run and the end-to-end tests use the real binary (debug; built by the tests above).
cargo build --bin chorus --bin chorus-chaos
target_dir="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
if ./scripts/load-smoke.sh 2>&1 | tee "$logs/smoke.log"; then
  echo "load smoke: ok" | tee -a "$logs/smoke.log"
else
  echo "load smoke: FAILED" | tee -a "$logs/smoke.log"
  status=1
fi

(
  cd web/ui
  [ -d node_modules ] || npm ci --no-audit --no-fund
  browser=0
  npm run --silent check || browser=1
  npm run --silent test:unit || browser=1
  CHORUS_BIN="$target_dir/debug/chorus" CHROMIUM="$chromium" npm run --silent test:e2e || browser=1
  exit $browser
) 2>&1 | tee "$logs/browser.log" || status=1

# One summary over every runner: cargo's "test result:" lines, node's "ℹ pass/fail/skipped".
summary=$(awk '
  /^test result:/ { for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/) pass += $i; if ($(i+1) ~ /^failed/) fail += $i;
      if ($(i+1) ~ /^ignored/) skip += $i } }
  /^ℹ pass / { pass += $3 } /^ℹ fail / { fail += $3 } /^ℹ skipped / { skip += $3 }
  /^load smoke: FAILED/ { fail += 1 } /^load smoke: ok/ { pass += 1 }
  END { printf "%d passed, %d failed, %d skipped", pass, fail, skip }
' "$logs/cargo.log" "$logs/smoke.log" "$logs/browser.log")
case "$summary" in *", 0 failed,"*) ;; *) status=1 ;; esac
echo
echo "summary: $summary"
exit $status
