#!/usr/bin/env bash
# Diagnosis: is an unpipelined redis-benchmark load bound by the client or by
# the server? For each test, against Redis (Debian's redis-server) and
# ferrokv-node in turn (paired, alternating which goes first), runs
#
#   redis-benchmark -t TEST -c $CPU_CLIENTS -n $CPU_N -P $CPU_PIPELINE
#
# and prints requests/s, the CPU the client process used (bash `time`: user
# + system, over the run's wall time: 1.00 is a whole core), the CPU the
# server used (utime + stime of all its threads from /proc/PID/stat, over the
# same wall time) and the server's CPU per request in µs. A client at ~1.00
# of a core against both servers means the throughput ratio of that load
# measures the client, not the servers.
#
# ferrokv's busy polling (on by default when a core is free) spends CPU
# waiting for the next request: run with FERROKV_NODE_ARGS="--busy-poll no"
# for a per-request figure. With REDIS_ARGS / FERROKV_NODE_ARGS set to
# "--appendonly yes --appendfsync everysec" (both) it measures the log's load.
#
# Usage: bench/client-cpu.sh                 (about a minute)
#   CPU_TESTS=set,get,hset,lrange_100 CPU_N=200000 CPU_CLIENTS=50 CPU_PIPELINE=1
#   CPU_REPEAT=2  CPU_ARGS="-d 100 -r 1000000"  (extra redis-benchmark flags)
#   FERROKV_NODE_BIN=path  FERROKV_NODE_ARGS="..."  REDIS_ARGS="..."
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CPU_TESTS="${CPU_TESTS:-set,get,hset,lrange_100}"
CPU_N="${CPU_N:-200000}"
CPU_CLIENTS="${CPU_CLIENTS:-50}"
CPU_PIPELINE="${CPU_PIPELINE:-1}"
CPU_REPEAT="${CPU_REPEAT:-2}"
read -r -a cpu_args <<<"${CPU_ARGS:-}"
STEP_TIMEOUT=300
TICK="$(getconf CLK_TCK)"

bench_init client-cpu
build_node
start_pair "$WORK/run"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '%-12s %-8s %12s %12s %12s %14s\n' test server req/s client_cpu server_cpu server_us/req
IFS=, read -r -a tests <<<"$CPU_TESTS"
pair=0
for rep in $(seq 1 "$CPU_REPEAT"); do
    for t in "${tests[@]}"; do
        pair=$((pair + 1))
        pair_order "$pair"
        for server in "${ORDER[@]}"; do
            port="$REDIS_PORT" pid="$REDIS_PID"
            [ "$server" = ferrokv ] && port="$FK_PORT" pid="$FK_PID"
            before="$(cpu_ticks "$pid")"
            TIMEFORMAT='%U %S %R'
            { time timeout "$STEP_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" -t "$t" -c "$CPU_CLIENTS" \
                -n "$CPU_N" -P "$CPU_PIPELINE" "${cpu_args[@]+"${cpu_args[@]}"}" --csv >"$WORK/out.csv" \
                2>"$WORK/bench.err"; } 2>"$WORK/time"
            after="$(cpu_ticks "$pid")"
            if grep -q "^Error" "$WORK/out.csv" "$WORK/bench.err"; then
                say "error replies from $server ($t):"
                cat "$WORK/bench.err" >&2
                exit 1
            fi
            rps="$(grep -v needed "$WORK/out.csv" | tail -1 | cut -d, -f2 | tr -d '"')"
            read -r user sys wall <"$WORK/time"
            python3 -c "
rps, user, sys_, wall, ticks = $rps, $user, $sys, $wall, $((after - before))
server = ticks / $TICK
print(f'{\"$t\":<12} {\"$server\":<8} {rps:>12,.0f} {(user + sys_) / wall:>12.2f} {server / wall:>12.2f} {server / $CPU_N * 1e6:>14.1f}')
"
        done
    done
done
