#!/usr/bin/env bash
# Runs the whole test suite: every crate's unit, property and whole-system tests, then the
# browser editor's checks (web/ui): type check, unit tests of its OT and sync state machine,
# and end-to-end tests that drive headless Chromium against the real `chorus` binary.
# Used as-is by .ci/run. Needs a Rust toolchain, Node.js 20+ with npm, and Chromium
# (`CHROMIUM`, default /usr/bin/chromium). Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
cargo test --workspace --all-targets --no-fail-fast "$@" || status=$?

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "error: Chromium not found at $chromium (apt-get install -y chromium, or set CHROMIUM)" >&2
  exit 1
fi
# The end-to-end tests start the real binary (debug build; already built by the tests above).
cargo build --bin chorus
target_dir="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
cd web/ui
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
browser_status=0
npm run --silent check || browser_status=$?
npm run --silent test:unit || browser_status=$?
CHORUS_BIN="$target_dir/debug/chorus" CHROMIUM="$chromium" npm run --silent test:e2e || browser_status=$?

if [ "$status" -ne 0 ] || [ "$browser_status" -ne 0 ]; then
  echo "test suite failed (cargo: $status, browser: $browser_status)" >&2
  exit 1
fi
