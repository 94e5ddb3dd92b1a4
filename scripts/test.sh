#!/usr/bin/env bash
# Runs the whole test suite: every crate's unit, property and whole-system tests.
# Used as-is by .ci/run; needs only a Rust toolchain (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --no-fail-fast "$@"
