#!/usr/bin/env bash
# The run command (README "Run"): build the release node and run one ferrokv
# node in the foreground on 127.0.0.1:6379, admin HTTP on 127.0.0.1:9121.
# Ctrl-C stops it. Extra arguments go to ferrokv-node (see `--help`), e.g.
#   scripts/run-node.sh --maxmemory 1gb --maxmemory-policy allkeys-lru
#   FERROKV_PORT=7000 scripts/run-node.sh
#
# Layout: ensure_* steps install what is missing, then a start_* function
# brings up the system. Only a single node exists today; when the Kubernetes
# sandbox lands, a start_sandbox beside start_node (chosen by the first
# argument) is the one place to add.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${FERROKV_PORT:-6379}"
ADMIN_PORT="${FERROKV_ADMIN_PORT:-9121}"
BIND="${FERROKV_BIND:-127.0.0.1}"
MIN_RUST="1.95"

say() { echo "run-node: $*" >&2; }
die() { say "$*"; exit 1; }

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
        die "the Rust toolchain is not installed (cargo/rustc not on PATH).
  ferrokv needs Rust >= $MIN_RUST: install it with rustup (https://rustup.rs), then re-run."
    fi
    local v
    v="$(rustc --version | awk '{print $2}')"
    if [ "$(printf '%s\n%s\n' "$MIN_RUST" "${v%%-*}" | sort -V | head -1)" != "$MIN_RUST" ]; then
        die "rustc $v is too old: ferrokv needs >= $MIN_RUST (rustup update stable)"
    fi
}

# redis-cli is how the README says to connect; install it when absent.
ensure_redis_cli() {
    command -v redis-cli >/dev/null 2>&1 && return
    if command -v apt-get >/dev/null 2>&1; then
        say "installing redis-tools (for redis-cli)"
        local sudo_cmd=()
        [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools >/dev/null
    else
        say "note: redis-cli not found; any Redis client can connect"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/$BIND/$1") 2>/dev/null
}

build_node() {
    say "building ferrokv-node (release)"
    cargo build --release --locked -p ferrokv-node --bin ferrokv-node
    NODE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/ferrokv-node"
    [ -x "$NODE_BIN" ] || die "build finished but $NODE_BIN is missing"
}

start_node() {
    for p in "$PORT" "$ADMIN_PORT"; do
        if port_in_use "$p"; then
            die "port $p on $BIND is already in use (another Redis or ferrokv?): stop it, or set FERROKV_PORT / FERROKV_ADMIN_PORT"
        fi
    done
    cat >&2 <<MSG

ferrokv node on $BIND:$PORT (admin http://$BIND:$ADMIN_PORT)
  connect:  redis-cli -h $BIND -p $PORT          (RESP3: redis-cli -3 -p $PORT)
  try:      redis-cli -p $PORT ping
  metrics:  curl http://$BIND:$ADMIN_PORT/metrics   health: /healthz  ready: /readyz
  stop:     Ctrl-C
MSG
    exec "$NODE_BIN" --bind "$BIND" --port "$PORT" --admin-port "$ADMIN_PORT" "$@"
}

ensure_rust
ensure_redis_cli
build_node
start_node "$@"
