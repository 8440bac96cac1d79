#!/usr/bin/env bash
# Benchmark: SET throughput with the append-only log on, ferrokv-node against
# Redis (Debian's redis-server) in the same run, identical loads, printing
# ferrokv/Redis ratios (> 1 is better).
#
#   for appendfsync in everysec, always; for -P 1 and -P 16:
#     redis-benchmark -t set -c $BENCH_CLIENTS -n N -P P -d 100 -r 1000000
#   (-P 16 runs 10 × N requests), $BENCH_REPEAT times per server, paired
#   (see below). Each server starts fresh on an empty data
#   directory under $TMPDIR for each load: ferrokv with --appendonly yes
#   --appendfsync X, Redis with --appendonly yes --appendfsync X --save ''.
#   The log's directory is on the same filesystem for both, so both pay the
#   same fsync cost (on a tmpfs fsync is nearly free: use a real disk for
#   numbers that mean something about `always`; the script prints the fs type).
#
# Both servers listen on free loopback ports and are killed by PID on exit.
# Redis is single-threaded as Debian configures it; ferrokv uses its defaults.
#
# Usage: bench/aof-vs-redis.sh              (about 3 minutes)
#   BENCH_N=100000 BENCH_CLIENTS=50 BENCH_REPEAT=3
#   BENCH_QUICK=1   small N, one run: to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BENCH_CLIENTS="${BENCH_CLIENTS:-50}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_N="${BENCH_N:-10000}"
    BENCH_REPEAT="${BENCH_REPEAT:-1}"
else
    BENCH_N="${BENCH_N:-100000}"
    BENCH_REPEAT="${BENCH_REPEAT:-3}"
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
# Each load runs $BENCH_REPEAT times per server, the two servers back to back
# and which goes first alternating (ABBA): this machine's speed drifts by tens
# of percent within a minute, which a pair measured seconds apart shares. The
# ratio printed is the median of the per-pair ratios, with the lowest and
# highest; the request rates are medians.
printf '%-10s %-4s %14s %14s %8s %12s\n' appendfsync P ferrokv_rps redis_rps ratio "runs:low-high"
pair=0
for fsync in everysec always; do
    for p in 1 16; do
        fs_rps=() rs_rps=() ratios=()
        for rep in $(seq 1 "$BENCH_REPEAT"); do
            pair=$((pair + 1))
            pair_order "$pair"
            for kind in "${ORDER[@]}"; do
                start_server "$kind" "$fsync"
                v="$(rps "$PORT" "$p")"
                stop_server
                [ -n "$v" ] || { say "no SET figure from $kind ($fsync, -P $p)"; exit 1; }
                if [ "$kind" = ferrokv ]; then f="$v"; else r="$v"; fi
            done
            fs_rps+=("$f") rs_rps+=("$r")
            ratios+=("$(python3 -c "print($f / $r)")")
        done
        python3 - "$fsync" "$p" "${fs_rps[*]}" "${rs_rps[*]}" "${ratios[*]}" <<'PY'
import statistics, sys
fsync, p, f, r, ratios = sys.argv[1:]
f = statistics.median(map(float, f.split()))
r = statistics.median(map(float, r.split()))
ratios = [float(x) for x in ratios.split()]
spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
print(f"{fsync:<10} {p:<4} {f:>14.2f} {r:>14.2f} {statistics.median(ratios):>8.3f} {spread:>12}")
PY
    done
done
