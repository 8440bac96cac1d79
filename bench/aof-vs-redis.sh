#!/usr/bin/env bash
# Benchmark: SET throughput with the append-only log on, ferrokv-node against
# Redis (Debian's redis-server) in the same run, identical loads, printing
# ferrokv/Redis ratios (> 1 is better).
#
#   for appendfsync in everysec, always; for -P 1 and -P 16:
#     redis-benchmark -t set -c $BENCH_CLIENTS -n N -P P -d 100 -r 1000000
#   (-P 16 runs 10 × N requests). Each server starts fresh on an empty data
#   directory under $TMPDIR for each load: ferrokv with --appendonly yes
#   --appendfsync X, Redis with --appendonly yes --appendfsync X --save ''.
#   The log's directory is on the same filesystem for both, so both pay the
#   same fsync cost (on a tmpfs fsync is nearly free: use a real disk for
#   numbers that mean something about `always`; the script prints the fs type).
#
# Both servers listen on free loopback ports and are killed by PID on exit.
# Redis is single-threaded as Debian configures it; ferrokv uses its defaults.
#
# Usage: bench/aof-vs-redis.sh              (about two minutes)
#   BENCH_N=100000 BENCH_CLIENTS=50 BENCH_QUICK=1 (small N: to check the script)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BENCH_CLIENTS="${BENCH_CLIENTS:-50}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_N="${BENCH_N:-10000}"
else
    BENCH_N="${BENCH_N:-100000}"
fi
STEP_TIMEOUT=300

bench_init aof-bench
build_node

# start_server KIND FSYNC -> sets PORT and SERVER_PID
start_server() {
    local kind="$1" fsync="$2" dir
    dir="$(mktemp -d "$WORK/$kind.XXXX")"
    PORT="$(free_port)"
    if [ "$kind" = ferrokv ]; then
        "$NODE_BIN" --port "$PORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync "$fsync" \
            >"$dir/out.log" 2>&1 &
    else
        redis-server --port "$PORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync "$fsync" \
            --save '' --daemonize no --logfile "$dir/out.log" &
    fi
    SERVER_PID=$!
    track "$SERVER_PID"
    wait_ping "$PORT" "$SERVER_PID"
}

stop_server() {
    stop_pid "$SERVER_PID"
}

# rps PORT PIPELINE -> requests per second of SET
rps() {
    local port="$1" p="$2" n="$BENCH_N"
    [ "$p" -gt 1 ] && n=$((BENCH_N * 10))
    timeout "$STEP_TIMEOUT" redis-benchmark -p "$port" -t set -c "$BENCH_CLIENTS" -n "$n" -P "$p" -d 100 \
        -r 1000000 --csv 2>/dev/null | awk -F'"' '/^"SET"/ {print $4}'
}

fs="$(stat -f -c %T "$WORK")"
say "data directories on a $fs filesystem ($WORK)"
printf '%-10s %-4s %14s %14s %8s\n' appendfsync P ferrokv_rps redis_rps ratio
for fsync in everysec always; do
    for p in 1 16; do
        start_server ferrokv "$fsync"
        f="$(rps "$PORT" "$p")"
        stop_server
        start_server redis "$fsync"
        r="$(rps "$PORT" "$p")"
        stop_server
        ratio="$(python3 -c "print(f'{float(\"$f\")/float(\"$r\"):.2f}')")"
        printf '%-10s %-4s %14s %14s %8s\n' "$fsync" "$p" "$f" "$r" "$ratio"
    done
done
