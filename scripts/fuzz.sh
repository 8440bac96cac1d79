#!/usr/bin/env bash
# Run a cargo-fuzz target for a bounded time (default: the RESP request parser
# for 60 seconds). cargo-fuzz needs a nightly toolchain (for the sanitizer
# flags); when none is installed this prints why and exits 0 unless
# FERROKV_FUZZ_REQUIRED=1, so that the test command still works on a machine
# with stable Rust only.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET]
#   scripts/fuzz.sh 600               ten minutes on resp_request
#   scripts/fuzz.sh 60 resp_request
# The corpus grows in fuzz/corpus/TARGET (git-ignored); fuzz/seeds/TARGET holds
# the committed seeds. A crash leaves its input in fuzz/artifacts/TARGET and
# the script exits non-zero; reproduce it with
#   cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
target="${2:-resp_request}"
CACHE="${FERROKV_CACHE:-$HOME/.cache/ferrokv}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly Rust toolchain (rustup toolchain install nightly) — cargo-fuzz needs one"
    [ "${FERROKV_FUZZ_REQUIRED:-0}" = 1 ] && exit 1
    exit 0
fi
scripts/install-test-deps.sh --fuzz
export PATH="$CACHE/bin:$PATH"

# Build outside the work tree, in the cache: the sanitizer build of all
# dependencies is the slow part and is reused by every checkout and CI run on
# this machine (cargo rebuilds whatever changed).
target_dir="${FERROKV_FUZZ_TARGET_DIR:-$CACHE/fuzz-target}"
mkdir -p "fuzz/corpus/$target"
cd fuzz
echo "fuzz: building $target (in $target_dir)"
cargo +nightly fuzz build --target-dir "$target_dir" "$target"
echo "fuzz: running $target for ${seconds}s"
# -timeout: one input taking longer than 10 s is a hang, reported as a failure.
cargo +nightly fuzz run --target-dir "$target_dir" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>&1 \
    | grep -v -E '^(#[0-9]+\s+(NEW|REDUCE|pulse)|"|###### )' || {
    echo "fuzz: $target FAILED (see fuzz/artifacts/$target)"
    exit 1
}
echo "fuzz: $target ran ${seconds}s without a crash"
