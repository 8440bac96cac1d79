#!/usr/bin/env bash
# Benchmark: cluster throughput, a 3-shard ferrokv cluster against a 3-shard
# Redis 7 Cluster (Debian's redis-server 7.0.15), on this machine, in the same
# run, with identical `redis-benchmark --cluster` loads; prints ferrokv/Redis
# ratios.
#
#   setup      3 primaries each, no replicas, no persistence, loopback.
#              Redis: 3 `redis-server --cluster-enabled yes` + `redis-cli
#              --cluster create`. ferrokv: the `local_cluster` example (the
#              driver's LocalCluster: 3 `ferrokv-node --cluster-enabled yes`
#              and an even topology pushed with CLUSTER SETTOPOLOGY).
#   load       redis-benchmark --cluster -t $BENCH_TESTS -c $BENCH_CLIENTS
#              --threads $BENCH_THREADS -r $BENCH_KEYSPACE, at -P 1 with
#              $BENCH_N requests and at -P 16 with 10 × $BENCH_N (a pipelined
#              run is that much shorter). redis-benchmark reads CLUSTER NODES
#              from the seed node and spreads its clients over the primaries.
#   ratio      ferrokv rps / Redis rps (target >= 1.0); GET p50/p99 at -P 1
#              (ferrokv / Redis, below 1 is better).
#
# Every load runs $BENCH_REPEAT times against each system, paired (see the
# loop below); the table shows median requests/s and the median of the
# per-pair ratios.
# Redis runs single-threaded per process; each ferrokv node gets the
# LocalCluster share of the cores, cores / nodes worker threads (at least
# one: 1 on 2 cores), as a Pod CPU limit of that share would give it (see
# ARCHITECTURE.md, "Runtime and worker threads"); servers and the benchmark
# client share the machine's cores: quote the machine and its load with the
# numbers.
# Every process is killed by PID on exit.
#
# Usage: bench/cluster-vs-redis.sh            (about 8 minutes on 2 cores)
#   BENCH_N=600000 BENCH_CLIENTS=50 BENCH_THREADS=2 BENCH_KEYSPACE=100000
#   BENCH_REPEAT=3
#   BENCH_TESTS=set,get,incr,hset
#   BENCH_QUICK=1   small N: to check the script itself
#   FERROKV_NODE_BIN=path   use this binary (the example is still built)
#   FERROKV_THREADS=N       --threads N for every ferrokv node instead of the
#                           LocalCluster's share of the cores
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BENCH_TESTS="${BENCH_TESTS:-set,get,incr,hset}"
BENCH_CLIENTS="${BENCH_CLIENTS:-50}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_KEYSPACE="${BENCH_KEYSPACE:-100000}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_N="${BENCH_N:-20000}"
    BENCH_REPEAT="${BENCH_REPEAT:-1}"
else
    BENCH_N="${BENCH_N:-600000}"
    BENCH_REPEAT="${BENCH_REPEAT:-3}"
fi
# Upper bound for one redis-benchmark run.
STEP_TIMEOUT=120

bench_init cluster-bench
build_node
say "building the local_cluster example (release)"
cargo build --release --locked -q -p ferrokv-node --example local_cluster
EXAMPLE="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/local_cluster"

# ---- Redis ----
say "redis: 3-primary cluster"
start_redis_cluster 3 "$WORK"
REDIS_SEED="${RPORTS[0]}"

# ---- ferrokv ----
say "ferrokv: 3-primary cluster (local_cluster example)"
NODE_ARGS=()
[ -z "${FERROKV_THREADS:-}" ] || NODE_ARGS=(--threads "$FERROKV_THREADS")
"$EXAMPLE" "$NODE_BIN" "$WORK/ferrokv" 3 0 "${NODE_ARGS[@]+"${NODE_ARGS[@]}"}" >"$WORK/ferrokv.out" 2>"$WORK/ferrokv.err" &
EXAMPLE_PID=$!
track "$EXAMPLE_PID"
for i in $(seq 1 1500); do
    grep -qx ready "$WORK/ferrokv.out" && break
    kill -0 "$EXAMPLE_PID" 2>/dev/null || { say "local_cluster exited:"; cat "$WORK/ferrokv.err" >&2; exit 1; }
    [ "$i" -lt 1500 ] || { say "local_cluster not ready after 30 s"; exit 1; }
    sleep 0.02
done
# The nodes too, in case the example itself dies by SIGKILL; the trap's
# SIGTERM to the example stops them first (their PIDs are then gone).
FPORTS=()
while read -r _ _ role addr _ pid; do
    [ "$role" = primary ] && FPORTS+=("${addr##*:}")
    [ "$pid" = - ] || track "$pid"
done < <(grep '^node ' "$WORK/ferrokv.out")
FERRO_SEED="${FPORTS[0]}"
redis-cli -p "$FERRO_SEED" CLUSTER INFO | grep -q 'cluster_state:ok' || {
    say "ferrokv cluster is not ok"
    exit 1
}

# What the LocalCluster gave each node (cores / nodes): quoted in the title.
WORKERS="$(redis-cli -p "$FERRO_SEED" INFO server | tr -d '\r' | sed -n 's/^ferrokv_worker_threads://p')"
say "ferrokv: $WORKERS worker thread(s) per node"

CSV="$WORK/throughput.csv"
: >"$CSV"
# One redis-benchmark run per test, paired (bench/lib.sh paired_runs).
bench_one() {
    local server="$1" p="$2" n="$3" t="$4" rep="$5" port="$REDIS_SEED" out
    [ "$server" = ferrokv ] && port="$FERRO_SEED"
    out="$WORK/bench-$server-P$p-$t-$rep.csv"
    timeout "$STEP_TIMEOUT" redis-benchmark --cluster -h 127.0.0.1 -p "$port" -t "$t" \
        -c "$BENCH_CLIENTS" --threads "$BENCH_THREADS" -r "$BENCH_KEYSPACE" -n "$n" -P "$p" \
        --csv >"$out" 2>"$WORK/bench.err" || {
        say "redis-benchmark -t $t failed against $server (-P $p):"
        cat "$WORK/bench.err" "$out" >&2
        exit 1
    }
    if grep -qi "error" "$out" "$WORK/bench.err"; then
        say "error replies from $server ($t, -P $p):"
        grep -i "error" "$out" "$WORK/bench.err" | head >&2
        exit 1
    fi
    # Only the CSV rows (cluster mode prints its node list first).
    grep '^"' "$out" | sed "s/^/$server,$p,$rep,/" >>"$CSV"
}
IFS=, read -r -a tests <<<"$BENCH_TESTS"
paired_runs bench_one

# Every test really ran against 3 primaries on both sides.
for port in "$REDIS_SEED" "$FERRO_SEED"; do
    nodes="$(redis-cli -p "$port" CLUSTER NODES | grep -c master)"
    [ "$nodes" = 3 ] || { say "port $port: $nodes primaries"; exit 1; }
done

python3 bench/bench_report.py table --throughput "$CSV" \
    --title "3-shard cluster (3 primaries, no replicas, ferrokv $WORKERS worker thread(s) per node), redis-benchmark --cluster --threads $BENCH_THREADS -r $BENCH_KEYSPACE" \
    --clients "$BENCH_CLIENTS" --requests "$BENCH_N (-P 1), $((BENCH_N * 10)) (-P 16)" --repeat "$BENCH_REPEAT" \
    --redis-version "$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')" --cores "$(nproc)"
say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
