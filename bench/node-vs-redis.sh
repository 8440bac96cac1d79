#!/usr/bin/env bash
# Benchmark: ferrokv-node against Redis (Debian's redis-server, 7.0.15) on this
# machine, in the same run, with identical loads; prints ferrokv/Redis ratios.
#
#   throughput   redis-benchmark -t $BENCH_TESTS -c $BENCH_CLIENTS -n $BENCH_N -P 1,
#                and -P 16 with 10 × $BENCH_N requests (a pipelined run is that much
#                shorter) (ratio = ferrokv rps / Redis rps; > 1 is better)
#   latency      GET p50 and p99 from the -P 1 run (ratio = ferrokv / Redis; < 1 is better)
#   memory       $BENCH_KEYS keys `SET key:N <value>` with 32- and 100-byte values,
#                loaded by `redis-cli --pipe` into a fresh server each; bytes per key
#                from INFO used_memory and from the process RSS (/proc/PID/status
#                VmRSS) deltas (ratio = ferrokv / Redis; < 1 is better)
#   collections  one hash, set, sorted set and list of $BENCH_ELEMENTS elements each
#                (members `element:` + 12 digits, 16-byte hash values), loaded 100
#                per command into a fresh pair of servers per type; bytes per
#                element, the same two ways
#
# Both servers listen on free loopback ports and are killed (by PID) on exit.
# Redis runs with `--save '' --appendonly no` (ferrokv's defaults persist nothing
# either); ferrokv runs with its defaults (one connection thread per core, of
# which the adaptive count puts to work only those the free cores can run —
# printed after the throughput runs), Redis is single-threaded as configured by
# Debian: say so when quoting the numbers.
# Tests whose command ferrokv does not implement are reported and skipped.
#
# Usage: bench/node-vs-redis.sh            (about 8 minutes on 2 cores)
#   BENCH_N=100000 BENCH_KEYS=1000000 BENCH_ELEMENTS=100000 BENCH_CLIENTS=50
#   BENCH_TESTS=set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100
#   BENCH_REPEAT=5  runs of each load; the table shows the median requests/s
#                   and the median of the per-run ferrokv/Redis ratios
#   BENCH_QUICK=1   small N and key count, one run: to check the script itself
#   FERROKV_NODE_BIN=path   use this binary instead of building ferrokv-node (an
#                   older build, to measure a change); /usr/bin/redis-server compares
#                   Redis with itself: every ratio should come out near 1 (a check of
#                   the benchmark, not of ferrokv). BENCH_NODE_BIN is the same setting.
#   FERROKV_NODE_ARGS="..."  extra flags for the ferrokv node (e.g. "--busy-poll no")
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BENCH_TESTS="${BENCH_TESTS:-set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100}"
BENCH_CLIENTS="${BENCH_CLIENTS:-50}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_N="${BENCH_N:-20000}"
    BENCH_KEYS="${BENCH_KEYS:-50000}"
    BENCH_ELEMENTS="${BENCH_ELEMENTS:-10000}"
    BENCH_REPEAT="${BENCH_REPEAT:-1}"
else
    BENCH_N="${BENCH_N:-100000}"
    BENCH_KEYS="${BENCH_KEYS:-1000000}"
    BENCH_ELEMENTS="${BENCH_ELEMENTS:-100000}"
    BENCH_REPEAT="${BENCH_REPEAT:-5}"
fi
VALUE_SIZES=(32 100)
# Upper bound for any single redis-benchmark or load step.
STEP_TIMEOUT=180

REPORT=bench/bench_report.py

bench_init bench

# BENCH_NODE_BIN is this script's older name for FERROKV_NODE_BIN.
FERROKV_NODE_BIN="${BENCH_NODE_BIN:-${FERROKV_NODE_BIN:-}}"
build_node

# Start a fresh Redis and a fresh ferrokv; sets REDIS_PORT/REDIS_PID/FK_PORT/FK_PID.
ROUND=0
start_servers() {
    # A new empty directory per round: nothing a server leaves behind (a dump
    # file on shutdown, say) is loaded by the next one.
    ROUND=$((ROUND + 1))
    local dir="$WORK/round-$ROUND"
    start_pair "$dir"
}

stop_servers() {
    stop_pid "$REDIS_PID" "$FK_PID"
}

# A command per benchmark test that tells whether ferrokv implements it.
probe_cmd() {
    case "$1" in
        ping_inline | ping_mbulk | ping) echo "PING" ;;
        set) echo "SET bench:probe x" ;;
        get) echo "GET bench:probe" ;;
        incr) echo "INCR bench:probe:n" ;;
        lpush) echo "LPUSH bench:probe:l x" ;;
        rpush) echo "RPUSH bench:probe:l x" ;;
        lpop) echo "LPOP bench:probe:l" ;;
        rpop) echo "RPOP bench:probe:l" ;;
        sadd) echo "SADD bench:probe:s x" ;;
        spop) echo "SPOP bench:probe:s" ;;
        hset) echo "HSET bench:probe:h f x" ;;
        zadd) echo "ZADD bench:probe:z 0 x" ;;
        zpopmin) echo "ZPOPMIN bench:probe:z" ;;
        lrange*) echo "LRANGE bench:probe:l 0 99" ;;
        mset) echo "MSET bench:probe:a x bench:probe:b y" ;;
        xadd) echo "XADD bench:probe:x * f v" ;;
        *) echo "" ;;
    esac
}

supported() {
    local t="$1" cmd out words
    cmd="$(probe_cmd "$t")"
    [ -n "$cmd" ] || { say "no probe for test '$t'; running it anyway"; return 0; }
    read -r -a words <<<"$cmd" # split into words, without globbing the '*' of XADD
    out="$(redis-cli -h 127.0.0.1 -p "$FK_PORT" "${words[@]}" 2>&1 || true)"
    # lrange_* runs LPUSH first.
    if [[ "$t" == lrange* ]] && ! supported lpush; then
        return 1
    fi
    ! grep -q "unknown command" <<<"$out"
}

start_servers
tests=()
skipped=()
IFS=, read -r -a wanted <<<"$BENCH_TESTS"
for t in "${wanted[@]}"; do
    if supported "$t"; then tests+=("$t"); else skipped+=("$t"); fi
done
[ "${#skipped[@]}" -eq 0 ] || say "not implemented by ferrokv yet, skipped: ${skipped[*]}"

CSV="$WORK/throughput.csv"
: >"$CSV"
if [ "${#tests[@]}" -gt 0 ]; then
    # One redis-benchmark run per test, paired (bench/lib.sh paired_runs).
    bench_one() {
        local server="$1" p="$2" n="$3" t="$4" rep="$5" port="$REDIS_PORT" out
        [ "$server" = ferrokv ] && port="$FK_PORT"
        out="$WORK/bench-$server-P$p-$t-$rep.csv"
        timeout "$STEP_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" -t "$t" \
            -c "$BENCH_CLIENTS" -n "$n" -P "$p" --csv >"$out" 2>"$WORK/bench.err" || {
            say "redis-benchmark -t $t failed against $server (-P $p):"
            cat "$WORK/bench.err" >&2
            exit 1
        }
        if grep -q "^Error" "$out" "$WORK/bench.err"; then
            say "error replies from $server ($t, -P $p):"
            grep "^Error" "$out" "$WORK/bench.err" >&2
            exit 1
        fi
        sed "s/^/$server,$p,$rep,/" "$out" >>"$CSV"
    }
    paired_runs bench_one
    # The adaptive connection-thread count, for reading the figures: with
    # the load generator on the same cores it should have stayed at one.
    say "ferrokv connection threads taking connections after the loads: $(redis-cli -h 127.0.0.1 -p "$FK_PORT" INFO server | tr -d '\r' | awk -F: '/^io_threads_active:/ {a=$2} /^ferrokv_worker_threads:/ {t=$2} END {print a " of " t}')"
fi
stop_servers

# Memory per key: a fresh pair of servers per value size.
MEM="$WORK/memory.csv"
: >"$MEM"
vm_rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# ferrokv reads jemalloc's allocated bytes at most every 100 ms: wait that out.
used_memory() {
    sleep 0.2
    redis-cli -h 127.0.0.1 -p "$1" INFO memory 2>/dev/null | tr -d '\r' \
        | awk -F: '/^used_memory:/ {print $2; found=1} END {if (!found) print ""}'
}
# measure_load CSV LABEL COUNT FILE REPLIES: load FILE into both running
# servers in turn (redis-cli --pipe, which must answer REPLIES replies) and
# append "server,LABEL,COUNT,rss0,rss1,used0,used1" to CSV.
measure_load() {
    local csv="$1" label="$2" count="$3" load="$4" replies="$5" server port pid rss0 used0 rss1 used1 summary
    for server in redis ferrokv; do
        port="$REDIS_PORT" pid="$REDIS_PID"
        [ "$server" = ferrokv ] && port="$FK_PORT" pid="$FK_PID"
        rss0="$(vm_rss_kib "$pid")" used0="$(used_memory "$port")"
        say "loading $load into $server"
        summary="$(timeout "$STEP_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" --pipe <"$load" 2>&1 | tail -1)"
        if [ "$summary" != "errors: 0, replies: $replies" ]; then
            say "load into $server failed: $summary"
            exit 1
        fi
        rss1="$(vm_rss_kib "$pid")" used1="$(used_memory "$port")"
        echo "$server,$label,$count,$rss0,$rss1,$used0,$used1" >>"$csv"
    done
}
for size in "${VALUE_SIZES[@]}"; do
    load="$WORK/load-$size.resp"
    python3 "$REPORT" gen-set --keys "$BENCH_KEYS" --value-size "$size" >"$load"
    start_servers
    if ! supported set; then
        say "SET not implemented by ferrokv yet: memory per key skipped"
        stop_servers
        break
    fi
    measure_load "$MEM" "$size" "$BENCH_KEYS" "$load" "$BENCH_KEYS"
    stop_servers
done

# Memory per element of one large collection of each type (the shapes are
# in bench_report.py), each type in a fresh pair of servers.
COLL="$WORK/collections.csv"
: >"$COLL"
commands="$(python3 "$REPORT" commands --elements "$BENCH_ELEMENTS")"
for kind in hash set zset list; do
    load="$WORK/load-$kind.resp"
    python3 "$REPORT" gen-coll --type "$kind" --elements "$BENCH_ELEMENTS" >"$load"
    start_servers
    measure_load "$COLL" "$kind" "$BENCH_ELEMENTS" "$load" "$commands"
    stop_servers
done

python3 "$REPORT" table --throughput "$CSV" --memory "$MEM" --collections "$COLL" \
    --clients "$BENCH_CLIENTS" --requests "$BENCH_N (-P 1), $((BENCH_N * 10)) (-P 16)" --skipped "${skipped[*]:-}" \
    --repeat "$BENCH_REPEAT" --redis-version "$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')" --cores "$(nproc)"
