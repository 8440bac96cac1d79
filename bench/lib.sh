# Shared parts of the bench/*-vs-redis.sh scripts. Sourced, not run:
#
#   . "$(dirname "$0")/lib.sh"
#   bench_init NAME         work directory $WORK, PID list, exit trap
#
# Every server or helper a script starts goes through `track` (its PID goes
# into PIDS); the exit trap kills what is still listed, by PID, waits for it
# and removes $WORK. `untrack` takes a PID off the list once the script has
# stopped it itself, so the trap never signals a recycled PID.
#
# Functions: say, bench_init, track, untrack, stop_pid, build_node,
# free_port, free_cluster_port, wait_ping, start_pair, start_redis_cluster.

say() { echo "bench: $*" >&2; }

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    rm -rf "$WORK"
}

# bench_init NAME: $WORK = a fresh temporary directory, PIDS = (), traps.
bench_init() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferrokv-$1.XXXXXX")"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# track PID: kill it on exit.
track() { PIDS+=("$1"); }

# untrack PID: forget it (it was stopped, or will be reaped elsewhere).
untrack() {
    local keep=() p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# stop_pid PID...: SIGTERM, wait, untrack.
stop_pid() {
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        wait "$pid" 2>/dev/null || true
        untrack "$pid"
    done
}

# build_node: NODE_BIN = $FERROKV_NODE_BIN, or a release build of
# ferrokv-node (installing the test dependencies: Redis, redis-py, ...).
build_node() {
    scripts/install-test-deps.sh
    if [ -n "${FERROKV_NODE_BIN:-}" ]; then
        NODE_BIN="$FERROKV_NODE_BIN"
        say "using $NODE_BIN (FERROKV_NODE_BIN)"
    else
        say "building ferrokv-node (release)"
        cargo build --release --locked -q -p ferrokv-node --bin ferrokv-node
        NODE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/ferrokv-node"
    fi
}

# A free loopback port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A free port below 55536 whose Redis cluster bus port (+10000) is free too.
free_cluster_port() {
    python3 - <<'EOF'
import random, socket
while True:
    p = random.randint(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket()
            s.bind(("127.0.0.1", q))
            s.close()
        print(p)
        break
    except OSError:
        pass
EOF
}

# wait_ping PORT [PID]: until PING answers PONG (10 s); fails early if PID
# exits.
wait_ping() {
    local port="$1" pid="${2:-}" i
    for i in $(seq 1 500); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ]; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            say "server on port $port exited"
            return 1
        fi
        sleep 0.02
    done
    say "server on port $port did not answer PING"
    return 1
}

# start_redis_cluster N DIR: N `redis-server --cluster-enabled yes` primaries
# without persistence, formed with `redis-cli --cluster create` (its even
# slot layout), waited on until every node reports cluster_state:ok.
# Sets RPORTS (ports) and RPIDS.
start_redis_cluster() {
    local n="$1" dir="$2" i port addrs=()
    RPORTS=()
    RPIDS=()
    for i in $(seq 0 $((n - 1))); do
        port="$(free_cluster_port)"
        mkdir -p "$dir/redis$i"
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/redis$i" \
            --cluster-enabled yes --cluster-config-file nodes.conf --daemonize no \
            --logfile "$dir/redis$i/log" &
        track "$!"
        RPIDS+=("$!")
        RPORTS+=("$port")
        addrs+=("127.0.0.1:$port")
    done
    for i in $(seq 0 $((n - 1))); do wait_ping "${RPORTS[$i]}" "${RPIDS[$i]}"; done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 || {
        say "redis-cli --cluster create failed:"
        cat "$dir/create.log" >&2
        return 1
    }
    for port in "${RPORTS[@]}"; do
        for i in $(seq 1 600); do
            redis-cli -p "$port" CLUSTER INFO | grep -q 'cluster_state:ok' && break
            [ "$i" -lt 600 ] || { say "redis node $port never reported cluster_state:ok"; return 1; }
            sleep 0.05
        done
    done
}

# start_pair DIR: a Redis without persistence (plus the words of $REDIS_ARGS,
# which override: e.g. "--appendonly yes") and a ferrokv node ($NODE_BIN,
# with its defaults and the words of $FERROKV_NODE_ARGS, e.g. "--busy-poll no")
# side by side on free loopback ports, data under DIR/redis and DIR/node;
# sets REDIS_PORT, REDIS_PID, FK_PORT, FK_PID and returns once both answer.
start_pair() {
    local dir="$1"
    mkdir -p "$dir/redis" "$dir/node"
    REDIS_PORT="$(free_port)"
    FK_PORT="$(free_port)"
    local extra=() rextra=()
    read -r -a rextra <<<"${REDIS_ARGS:-}"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir/redis" --daemonize no --logfile "$dir/redis.log" "${rextra[@]+"${rextra[@]}"}" &
    REDIS_PID=$!
    track "$REDIS_PID"
    read -r -a extra <<<"${FERROKV_NODE_ARGS:-}"
    (cd "$dir/node" && exec "$NODE_BIN" --bind 127.0.0.1 --port "$FK_PORT" "${extra[@]+"${extra[@]}"}" \
        >"$dir/node.out" 2>"$dir/node.log") &
    FK_PID=$!
    track "$FK_PID"
    wait_ping "$REDIS_PORT" "$REDIS_PID"
    wait_ping "$FK_PORT" "$FK_PID"
}

# pair_order N: ORDER = the two servers in the order the Nth pair of runs
# takes them, alternating from one N to the next (ABBA over consecutive N).
pair_order() {
    if [ $(($1 % 2)) = 1 ]; then ORDER=(redis ferrokv); else ORDER=(ferrokv redis); fi
}

# paired_runs FN: the throughput rounds of the node and cluster benchmarks.
# For each repetition 1..$BENCH_REPEAT, each depth (-P 1 with $BENCH_N
# requests, -P 16 with 10 × $BENCH_N) and each test in the array `tests`,
# calls `FN SERVER DEPTH REQUESTS TEST REP` for both servers (redis, ferrokv)
# back to back. Which goes first alternates from test to test and from
# repetition to repetition (ABBA): this machine's speed drifts by tens of
# percent within a minute, and a pair measured seconds apart shares the
# drift, where a whole test list against one server and then the other did
# not (2026-11-29: the same build's -P 1 ratios ranged 0.77–1.34 within one
# run that way). Both servers run the tests in the same order, so they see
# the same sequence of datasets; bench_report.py takes the median of the
# per-pair ratios.
paired_runs() {
    local fn="$1" rep p n t pair server
    for rep in $(seq 1 "$BENCH_REPEAT"); do
        pair=$rep
        for p in 1 16; do
            n="$BENCH_N"
            [ "$p" = 1 ] || n=$((BENCH_N * 10))
            say "[$rep/$BENCH_REPEAT] -t <each of ${tests[*]}> -n $n -P $p, both servers in turn"
            for t in "${tests[@]}"; do
                pair=$((pair + 1))
                pair_order "$pair"
                for server in "${ORDER[@]}"; do
                    "$fn" "$server" "$p" "$n" "$t" "$rep"
                done
            done
        done
    done
}
