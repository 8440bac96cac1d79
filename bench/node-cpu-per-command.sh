#!/usr/bin/env bash
# Benchmark: server CPU time per pipelined command, ferrokv-node against Redis
# (Debian's redis-server 7.0.15), in the same run, with identical loads.
#
# Throughput on a shared machine moves with whatever else runs; the CPU time
# the server process itself spends per command moves much less, and it is
# what decides pipelined throughput once syscalls are amortized over a batch.
# For each test, each server gets
#
#   redis-benchmark -t TEST -c $CPU_CLIENTS -n $CPU_N -P $CPU_PIPELINE
#
# and the script reads the server's utime + stime (all threads, from
# /proc/PID/stat) before and after: milliseconds of CPU per 1M commands.
# (Instruction counts would be steadier still, but the VMs this was written
# on expose no hardware counters to `perf stat`; `valgrind --tool=callgrind`
# counts them, far more slowly.)
# Ratios are ferrokv / Redis: < 1 means ferrokv spends less.
#
# Notes: ferrokv runs with its defaults (one worker thread per core), Redis
# single-threaded with `--save '' --appendonly no`; CPU time counts all of
# ferrokv's threads. The order of the two servers alternates per repetition.
# redis-benchmark's lrange_* tests first fill the list with as many LPUSHes as
# LRANGEs: their numbers cover both.
#
# Usage: bench/node-cpu-per-command.sh     (a few minutes)
#   CPU_TESTS=set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100
#   CPU_N=2000000 CPU_CLIENTS=50 CPU_PIPELINE=16
#   CPU_REPEAT=3    runs of each test per server; the table shows the median
#   FERROKV_NODE_BIN=path   use this binary instead of building ferrokv-node
#   FERROKV_NODE_ARGS="--busy-poll no"   extra node flags; at CPU_PIPELINE=1 the
#                   node's busy polling (on by default when a core is free)
#                   spends CPU waiting, which this count would charge to commands
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CPU_TESTS="${CPU_TESTS:-set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100}"
CPU_N="${CPU_N:-2000000}"
CPU_CLIENTS="${CPU_CLIENTS:-50}"
CPU_PIPELINE="${CPU_PIPELINE:-16}"
CPU_REPEAT="${CPU_REPEAT:-3}"
STEP_TIMEOUT=300
TICK="$(getconf CLK_TCK)"

bench_init cpu
build_node

dir="$WORK/run"
start_pair "$dir"

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

RESULTS="$WORK/results.csv"
: >"$RESULTS"
IFS=, read -r -a tests <<<"$CPU_TESTS"
for rep in $(seq 1 "$CPU_REPEAT"); do
    pair_order "$rep"
    for t in "${tests[@]}"; do
        for server in "${ORDER[@]}"; do
            port="$REDIS_PORT" pid="$REDIS_PID"
            [ "$server" = ferrokv ] && port="$FK_PORT" pid="$FK_PID"
            # Every run starts from the same empty keyspace.
            redis-cli -h 127.0.0.1 -p "$port" FLUSHALL >/dev/null
            before="$(cpu_ticks "$pid")"
            timeout "$STEP_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" -t "$t" -c "$CPU_CLIENTS" \
                -n "$CPU_N" -P "$CPU_PIPELINE" -q >"$WORK/bench.out" 2>&1 || {
                say "redis-benchmark -t $t failed against $server:"
                cat "$WORK/bench.out" >&2
                exit 1
            }
            after="$(cpu_ticks "$pid")"
            if grep -q "ERR\|Error" "$WORK/bench.out"; then
                say "error replies from $server ($t):"
                cat "$WORK/bench.out" >&2
                exit 1
            fi
            ms=$(((after - before) * 1000 / TICK))
            say "[$rep/$CPU_REPEAT] $t $server: $ms ms CPU for $CPU_N commands"
            echo "$t,$server,$ms" >>"$RESULTS"
        done
    done
done
stop_pid "$REDIS_PID" "$FK_PID"

python3 - "$RESULTS" "$CPU_N" "$CPU_TESTS" <<'EOF'
import csv, statistics, sys
path, n, tests = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
ms = {}
for t, server, v in csv.reader(open(path)):
    ms.setdefault((t, server), []).append(int(v))
print("| test | ferrokv CPU ms / 1M commands | Redis CPU ms / 1M commands | ferrokv / Redis |")
print("|---|---:|---:|---:|")
for t in tests:
    if (t, "ferrokv") in ms and (t, "redis") in ms:
        f = statistics.median(ms[(t, "ferrokv")]) * 1e6 / n
        r = statistics.median(ms[(t, "redis")]) * 1e6 / n
        print(f"| {t.upper()} | {f:.0f} | {r:.0f} | {f / r:.2f} |")
EOF
