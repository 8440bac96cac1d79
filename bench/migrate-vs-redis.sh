#!/usr/bin/env bash
# Benchmark: moving one slot holding $BENCH_KEYS keys ($BENCH_VALUE-byte
# values) to another shard, ferrokv-node slot migration against
# `redis-cli --cluster reshard` on a real Redis 7 cluster (Debian's
# redis-server 7.0.15), on this machine, in the same run, same data.
#
#   setup      3 primaries, no replicas, on free loopback ports. Redis:
#              `redis-server --cluster-enabled yes` + `redis-cli --cluster
#              create`; ferrokv: `--cluster-enabled yes` + a topology with the
#              same slot ranges pushed with CLUSTER SETTOPOLOGY. Every key is
#              `{tag}:N` with a hash tag whose slot is 0 (the first slot of
#              the first primary), loaded with `redis-cli --pipe`.
#   move       Redis: `redis-cli --cluster reshard --cluster-from <first>
#              --cluster-to <second> --cluster-slots 1` (moves slot 0,
#              MIGRATE with --cluster-pipeline $BENCH_REDIS_PIPELINE keys per
#              call). ferrokv: CLUSTER MIGRATION IMPORT / START, poll STATUS
#              until done, push the topology with slot 0 moved (what
#              driver::migrate_slot does). keys/s = keys / wall time of the move.
#   client     a redis-py RedisCluster client (follows MOVED and ASK)
#              alternates SET and GET on keys of the slot, from 1 s before
#              the move to its end; p99 of the requests completed during the
#              move, their count, and the client's errors.
#   ratio      ferrokv keys/s / Redis keys/s (target >= 2).
#
# Servers run without persistence (Redis `--save '' --appendonly no`, ferrokv
# defaults) and are killed by PID on exit. Two cores are shared by the
# servers, the mover and the client: quote the machine with the numbers.
#
# Usage: bench/migrate-vs-redis.sh
#   BENCH_KEYS=1000000 BENCH_VALUE=100 BENCH_REDIS_PIPELINE=10 BENCH_BATCH=256
#   BENCH_QUICK=1   50000 keys: to check the script itself
#   FERROKV_NODE_BIN=path  use this binary instead of building a release one
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_KEYS="${BENCH_KEYS:-50000}"
else
    BENCH_KEYS="${BENCH_KEYS:-1000000}"
fi
BENCH_VALUE="${BENCH_VALUE:-100}"
BENCH_REDIS_PIPELINE="${BENCH_REDIS_PIPELINE:-10}"
BENCH_BATCH="${BENCH_BATCH:-256}"

bench_init migrate-bench
build_node

# A hash tag whose slot is 0 (CRC16/XMODEM of the tag, mod 16384).
TAG="$(python3 - <<'EOF'
def crc16(b):
    c = 0
    for x in b:
        c ^= x << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else c << 1
            c &= 0xFFFF
    return c
i = 0
while crc16(f"m{i}".encode()) % 16384 != 0:
    i += 1
print(f"m{i}")
EOF
)"
say "hash tag {$TAG} is in slot 0"

load_keys() {
    local port="$1"
    python3 - "$BENCH_KEYS" "$BENCH_VALUE" "$TAG" <<'EOF' | redis-cli -h 127.0.0.1 -p "$port" --pipe >/dev/null
import sys
n, size, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = sys.stdout.buffer
val = b"x" * size
for i in range(n):
    k = f"{{{tag}}}:{i}".encode()
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(val), val))
EOF
}

# The client: SET/GET on keys of the slot until $WORK/stop-client exists;
# writes its error count, then "<unix time> <latency s>" per request.
start_client() {
    local port="$1" out="$2"
    python3 - "$port" "$TAG" "$WORK/stop-client" "$out" <<'EOF' &
import os, sys, time
from redis.cluster import RedisCluster, ClusterNode
port, tag, stop, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port)])
lat, errors, i = [], 0, 0
while not os.path.exists(stop):
    k = f"{{{tag}}}:c{i % 1000}"
    t = time.perf_counter()
    try:
        if i % 2:
            rc.set(k, i)
        else:
            rc.get(k)
    except Exception as e:
        errors += 1
    lat.append((time.time(), time.perf_counter() - t))
    i += 1
with open(out, "w") as f:
    f.write(f"{errors}\n")
    f.writelines(f"{at:.6f} {l:.6f}\n" for at, l in lat)
EOF
    CLIENT_PID=$!
    track "$CLIENT_PID"
    sleep 1
}

stop_client() {
    touch "$WORK/stop-client"
    wait "$CLIENT_PID" || true
    untrack "$CLIENT_PID"
    rm -f "$WORK/stop-client"
}

now() { python3 -c 'import time; print(time.time())'; }

# "<p99 ms> <requests> <errors>" of the client's requests that ended
# between $2 and $3 (the move).
during() {
    python3 - "$@" <<'EOF'
import sys
path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
lines = open(path).read().split("\n")
errors = lines[0]
lat = sorted(float(l.split()[1]) for l in lines[1:] if l and t0 <= float(l.split()[0]) <= t1)
p99 = lat[len(lat) * 99 // 100] * 1000 if lat else 0
print(f"{p99:.2f} {len(lat)} {errors}")
EOF
}

# ---- Redis ----
say "redis: 3-primary cluster"
start_redis_cluster 3 "$WORK"
src_id="$(redis-cli -p "${RPORTS[0]}" CLUSTER MYID)"
dst_id="$(redis-cli -p "${RPORTS[1]}" CLUSTER MYID)"
load_keys "${RPORTS[0]}"
say "redis: $(redis-cli -p "${RPORTS[0]}" CLUSTER COUNTKEYSINSLOT 0) keys in slot 0"
start_client "${RPORTS[0]}" "$WORK/redis-client"
t0="$(now)"
redis-cli --cluster reshard "127.0.0.1:${RPORTS[0]}" --cluster-from "$src_id" --cluster-to "$dst_id" \
    --cluster-slots 1 --cluster-yes --cluster-pipeline "$BENCH_REDIS_PIPELINE" >"$WORK/reshard.log" 2>&1
t1="$(now)"
stop_client
moved="$(redis-cli -p "${RPORTS[1]}" CLUSTER COUNTKEYSINSLOT 0)"
[ "$moved" -ge "$BENCH_KEYS" ] || { say "redis reshard moved $moved keys, not slot 0?"; tail "$WORK/reshard.log"; exit 1; }
REDIS_SECS="$(python3 -c "print($t1 - $t0)")"
read -r REDIS_P99 REDIS_OPS REDIS_ERR < <(during "$WORK/redis-client" "$t0" "$t1")

# ---- ferrokv ----
say "ferrokv: 3-primary cluster"
FPORTS=()
for i in 0 1 2; do
    port="$(free_cluster_port)"
    dir="$WORK/ferro$i"
    mkdir -p "$dir"
    "$NODE_BIN" --port "$port" --bind 127.0.0.1 --cluster-enabled yes --dir "$dir" >"$dir/out" 2>"$dir/log" &
    track "$!"
    FPORTS+=("$port")
    wait_ping "$port" "$!"
done
IDS=()
for p in "${FPORTS[@]}"; do IDS+=("$(redis-cli -p "$p" CLUSTER MYID)"); done
topology() {
    # $1 epoch, $2 "moved" to give slot 0 to the second primary.
    python3 - "$1" "$2" "${FPORTS[@]}" "${IDS[@]}" <<'EOF'
import json, sys
epoch, moved = int(sys.argv[1]), sys.argv[2] == "moved"
ports, ids = sys.argv[3:6], sys.argv[6:9]
ranges = [[[0, 5460]], [[5461, 10922]], [[10923, 16383]]]
if moved:
    ranges[0] = [[1, 5460]]
    ranges[1] = [[0, 0], [5461, 10922]]
print(json.dumps({
    "epoch": epoch,
    "nodes": [{"id": i, "ip": "127.0.0.1", "port": int(p)} for i, p in zip(ids, ports)],
    "shards": [{"slots": r, "primary": i, "replicas": []} for r, i in zip(ranges, ids)],
}, separators=(",", ":")))
EOF
}
T1="$(topology 1 no)"
for p in "${FPORTS[@]}"; do redis-cli -p "$p" CLUSTER SETTOPOLOGY 1 "$T1" >/dev/null; done
load_keys "${FPORTS[0]}"
say "ferrokv: $(redis-cli -p "${FPORTS[0]}" CLUSTER COUNTKEYSINSLOT 0) keys in slot 0"
start_client "${FPORTS[0]}" "$WORK/ferro-client"
t0="$(now)"
redis-cli -p "${FPORTS[1]}" CLUSTER MIGRATION IMPORT 0 "${IDS[0]}" >/dev/null
redis-cli -p "${FPORTS[0]}" CLUSTER MIGRATION START 0 "${IDS[1]}" BATCH "$BENCH_BATCH" >/dev/null
while :; do
    st="$(redis-cli -p "${FPORTS[0]}" CLUSTER MIGRATION STATUS 0 | sed -n '8p')"
    case "$st" in
        done) break ;;
        failed) say "ferrokv stream failed"; redis-cli -p "${FPORTS[0]}" CLUSTER MIGRATION STATUS 0; exit 1 ;;
    esac
    sleep 0.005
done
T2="$(topology 2 moved)"
# Target first, then the source, then the rest (driver::migrate_slot's order).
for p in "${FPORTS[1]}" "${FPORTS[0]}" "${FPORTS[2]}"; do redis-cli -p "$p" CLUSTER SETTOPOLOGY 2 "$T2" >/dev/null; done
t1="$(now)"
stop_client
moved="$(redis-cli -p "${FPORTS[1]}" CLUSTER COUNTKEYSINSLOT 0)"
[ "$moved" -ge "$BENCH_KEYS" ] || { say "ferrokv moved only $moved keys"; exit 1; }
FERRO_SECS="$(python3 -c "print($t1 - $t0)")"
read -r FERRO_P99 FERRO_OPS FERRO_ERR < <(during "$WORK/ferro-client" "$t0" "$t1")

python3 - "$BENCH_KEYS" "$REDIS_SECS" "$FERRO_SECS" "$REDIS_P99" "$FERRO_P99" "$REDIS_OPS" "$FERRO_OPS" \
    "$REDIS_ERR" "$FERRO_ERR" "$BENCH_VALUE" "$BENCH_REDIS_PIPELINE" "$BENCH_BATCH" <<'EOF'
import sys
n, rs, fs, rp, fp, ro, fo, re_, fe, v, rpipe, batch = sys.argv[1:]
n, rs, fs = int(n), float(rs), float(fs)
print(f"move one slot of {n} keys ({v}-byte values)")
print(f"{'':10} {'seconds':>9} {'keys/s':>10} {'client p99 ms':>14} {'ops in move':>11} {'errors':>7}")
print(f"{'redis':10} {rs:9.2f} {n / rs:10.0f} {float(rp):14.2f} {ro:>11} {re_:>7}   (reshard, pipeline {rpipe})")
print(f"{'ferrokv':10} {fs:9.2f} {n / fs:10.0f} {float(fp):14.2f} {fo:>11} {fe:>7}   (batch {batch})")
print(f"ratio ferrokv/redis keys/s: {rs / fs:.2f}x")
EOF
