#!/usr/bin/env bash
# Crash benchmark: kill -9 a ferrokv-node running with appendfsync always at
# random moments, 100 times by default, while writers record every
# acknowledged write; after each restart every acknowledged write must be
# there. Prints `acked writes lost: L of N` (node/tests/crash.rs).
#
# Usage: bench/crash.sh [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERROKV_CRASH_ITERATIONS="${1:-100}"
cargo test --release --locked -q -p ferrokv-node --test crash -- --nocapture 2>&1 | grep -E 'acked writes lost|LOST|panicked|test result'
