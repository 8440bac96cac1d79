#!/usr/bin/env bash
# The test command (README "Test"); CI runs exactly this (.ci/run).
#
#   1. install test dependencies (Redis 7.0.15, promtool, redis-py; idempotent), the
#      sandbox's etcd/Kubernetes/helm built once (scripts/sandbox-bootstrap.sh, cached)
#   2. cargo fmt --check
#   3. cargo clippy, every target, warnings are errors
#   4. cargo test --workspace (unit, black-box, differential vs real Redis,
#      model-based and protocol tests)
#   5. short fuzz runs of the RESP parser (FERROKV_FUZZ_SECONDS, default 60) and
#      of the snapshot and log readers (half that each); 0 skips them; skipped
#      with a note when no nightly toolchain is present
#
# Tests build in the dev profile (dependencies at opt-level 1): a release build
# with LTO would cost more compile time on CI's 2 cores than it saves at run time.
# Each cargo step is bounded by a timeout so that a hung test fails the run
# with a message instead of eating CI's whole time budget.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FERROKV_FUZZ_SECONDS:-60}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
start=$SECONDS
timings=()

step() {
    local name="$1" t0=$SECONDS
    shift
    printf '\n==> %s\n' "$name"
    "$@"
    timings+=("$(printf '%-28s %5ss' "$name" "$((SECONDS - t0))")")
}

# Bound a step's time. Only without a terminal (CI): timeout(1) moves the
# command out of the terminal's process group, so Ctrl-C would not reach it.
limit() {
    local secs="$1"
    shift
    if [ -t 0 ]; then
        "$@"
    else
        timeout -k 30 "$secs" "$@"
    fi
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found: ferrokv needs a Rust toolchain (rustup, stable >= 1.95)" >&2
    exit 1
fi

step "sandbox bootstrap" limit 4800 scripts/sandbox-bootstrap.sh
step "install test deps" scripts/install-test-deps.sh
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" limit 1800 cargo clippy --locked --workspace --all-targets -- -D warnings
TEST_LOG="$(mktemp "${TMPDIR:-/tmp}/ferrokv-test.XXXXXX")"
trap 'rm -f "$TEST_LOG"' EXIT
cargo_test() {
    limit 2700 cargo test --locked --workspace 2>&1 | tee "$TEST_LOG"
}
step "cargo test" cargo_test
step "sandbox down" "${CARGO_TARGET_DIR:-target}/debug/ferrokv-sandbox" down
if [ "$FUZZ_SECONDS" -gt 0 ]; then
    step "fuzz resp_request ${FUZZ_SECONDS}s" limit 1200 scripts/fuzz.sh "$FUZZ_SECONDS" resp_request
    # The file readers get half the time each: they share the parser run's build.
    half=$(((FUZZ_SECONDS + 1) / 2))
    step "fuzz snapshot_reader ${half}s" limit 1200 scripts/fuzz.sh "$half" snapshot_reader
    step "fuzz aof_reader ${half}s" limit 1200 scripts/fuzz.sh "$half" aof_reader
fi

printf '\n==> timings\n'
printf '%s\n' "${timings[@]}"
echo "test.sh: all steps passed in $((SECONDS - start))s"
# One closing line summing every cargo test binary's "test result:" line.
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed/) p += $(i - 1)
            if ($(i) ~ /^failed/) f += $(i - 1)
            if ($(i) ~ /^ignored/) s += $(i - 1)
        }
    }
    END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$TEST_LOG"
