#!/usr/bin/env bash
# Benchmark: snapshot save time and startup load time, ferrokv-node against
# Redis (Debian's redis-server, 7.0.15) on this machine, in the same run.
#
#   dataset   $BENCH_KEYS keys `SET key:N <value>`, values of $BENCH_VALUE bytes
#             of random base64 text (Redis compresses RDB strings with LZF by
#             default; random text keeps that from flattering either side),
#             loaded with `redis-cli --pipe` into a fresh server each
#   save      wall time of a `SAVE` command as the client sees it
#             (Redis: rdbSave in its main thread; ferrokv: a cut written by a
#             background thread while SAVE waits)
#   load      the server is stopped and restarted on the same directory; wall
#             time from exec to the first PONG. Redis answers -LOADING while it
#             loads and ferrokv does not listen until it has loaded, so both
#             measure "until the dataset is served". Each server's own log line
#             for the load ("DB loaded from disk" / "snapshot loaded") is shown
#             too, without the process start-up.
#   CPU       user+system CPU seconds the server process spent on the SAVE and
#             on start-up + load (/proc/PID/stat, all threads): the fairer number
#             on a busy machine, where a single-threaded Redis gets a smaller
#             share of the cores than a multi-threaded ferrokv
#   ratio     ferrokv / Redis; below 1 is better (target ≤ 1.0)
#
# The median of $BENCH_REPEAT rounds is reported. Both servers listen on free
# loopback ports and are killed (by PID) on exit; Redis runs with
# `--save '' --appendonly no` (no background saves during the measurement).
#
# Usage: bench/persistence-vs-redis.sh      (a few minutes)
#   BENCH_KEYS=1000000 BENCH_VALUE=100 BENCH_REPEAT=3
#   BENCH_QUICK=1   50000 keys, one round: to check the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_KEYS="${BENCH_KEYS:-50000}"
    BENCH_REPEAT="${BENCH_REPEAT:-1}"
else
    BENCH_KEYS="${BENCH_KEYS:-1000000}"
    BENCH_REPEAT="${BENCH_REPEAT:-3}"
fi
BENCH_VALUE="${BENCH_VALUE:-100}"
STEP_TIMEOUT=300

bench_init persist-bench
build_node

now() { date +%s.%N; }
TICKS="$(getconf CLK_TCK)"
# CPU seconds (user + system, all threads) a process has used so far.
cpu_secs() { awk -v t="$TICKS" '{printf "%.3f", ($14 + $15) / t}' "/proc/$1/stat"; }

# Poll until PING answers PONG (not -LOADING); fails if the process died.
wait_pong() {
    local port="$1" pid="$2" i
    for i in $(seq 1 30000); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { say "server on port $port exited"; return 1; }
        sleep 0.01
    done
    say "server on port $port did not answer PING"
    return 1
}

# start SERVER DIR PORT: sets PID
start() {
    local server="$1" dir="$2" port="$3"
    if [ "$server" = redis ]; then
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$dir" --dbfilename dump.rdb --daemonize no --logfile "$dir/server.log" &
    else
        "$NODE_BIN" --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' >"$dir/server.out" 2>"$dir/server.log" &
    fi
    PID=$!
    track "$PID"
}

stop() {
    stop_pid "$1"
}

LOAD="$WORK/load.resp"
say "generating $BENCH_KEYS keys with $BENCH_VALUE-byte random values"
python3 - "$BENCH_KEYS" "$BENCH_VALUE" >"$LOAD" <<'EOF'
import base64, os, sys
keys, size = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
vlen = b"$%d\r\n" % size
chunk = []
for i in range(keys):
    key = b"key:%d" % i
    value = base64.b64encode(os.urandom(size))[:size]
    chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s%s\r\n" % (len(key), key, vlen, value))
    if len(chunk) == 10000:
        out.write(b"".join(chunk))
        chunk.clear()
out.write(b"".join(chunk))
EOF

RESULTS="$WORK/results.csv"
: >"$RESULTS"
for round in $(seq 1 "$BENCH_REPEAT"); do
    pair_order "$round"
    for server in "${ORDER[@]}"; do
        dir="$WORK/$server-$round"
        mkdir -p "$dir"
        port="$(free_port)"
        start "$server" "$dir" "$port"
        wait_pong "$port" "$PID"
        summary="$(timeout "$STEP_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" --pipe <"$LOAD" 2>&1 | tail -1)"
        if [ "$summary" != "errors: 0, replies: $BENCH_KEYS" ]; then
            say "load into $server failed: $summary"
            exit 1
        fi
        say "[$round/$BENCH_REPEAT] SAVE on $server"
        c0="$(cpu_secs "$PID")"
        t0="$(now)"
        reply="$(timeout "$STEP_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" SAVE)"
        t1="$(now)"
        c1="$(cpu_secs "$PID")"
        [ "$reply" = OK ] || { say "SAVE on $server: $reply"; exit 1; }
        file="$dir/dump.rdb"
        [ "$server" = ferrokv ] && file="$dir/dump.fkv"
        bytes="$(stat -c %s "$file")"
        stop "$PID"
        say "[$round/$BENCH_REPEAT] restart $server on its snapshot"
        : >"$dir/server.log"
        t2="$(now)"
        start "$server" "$dir" "$port"
        wait_pong "$port" "$PID"
        t3="$(now)"
        c3="$(cpu_secs "$PID")"
        keys="$(redis-cli -h 127.0.0.1 -p "$port" DBSIZE)"
        [ "$keys" = "$BENCH_KEYS" ] || { say "$server loaded $keys keys, not $BENCH_KEYS"; exit 1; }
        if [ "$server" = redis ]; then
            logged="$(sed -n 's/.*DB loaded from disk: \([0-9.]*\) seconds.*/\1/p' "$dir/server.log" | tail -1)"
        else
            # (tracing may colour field names: strip ANSI escapes first)
            logged="$(sed 's/\x1b\[[0-9;]*m//g' "$dir/server.log" | sed -n 's/.*snapshot loaded.* ms=\([0-9]*\).*/\1/p' | tail -1)"
            [ -z "$logged" ] || logged="$(python3 -c "print($logged / 1000)")"
        fi
        stop "$PID"
        echo "$server,$round,$t0,$t1,$t2,$t3,$bytes,${logged:-nan},$c0,$c1,$c3" >>"$RESULTS"
        rm -rf "$dir"
    done
done

python3 - "$RESULTS" "$BENCH_KEYS" "$BENCH_VALUE" "$BENCH_REPEAT" <<'EOF'
import csv, statistics, sys
path, keys, value, repeat = sys.argv[1:5]
rows = {}
for server, _round, t0, t1, t2, t3, size, logged, c0, c1, c3 in csv.reader(open(path)):
    r = rows.setdefault(server, {"save": [], "load": [], "logged": [], "bytes": [], "save_cpu": [], "load_cpu": []})
    r["save_cpu"].append(float(c1) - float(c0))
    r["load_cpu"].append(float(c3))
    r["save"].append(float(t1) - float(t0))
    r["load"].append(float(t3) - float(t2))
    r["logged"].append(float(logged))
    r["bytes"].append(int(size))
med = {s: {k: statistics.median(v) for k, v in r.items()} for s, r in rows.items()}
f, rd = med["ferrokv"], med["redis"]
print(f"\nSnapshot save and load: {keys} keys, {value}-byte random values, median of {repeat} round(s)\n")
print("| measure | ferrokv | Redis 7 | ferrokv/Redis |")
print("|---|---:|---:|---:|")
for name, key, unit in [
    ("SAVE (client wall time)", "save", "s"),
    ("startup until PONG", "load", "s"),
    ("load as logged by the server", "logged", "s"),
    ("SAVE: server CPU time", "save_cpu", "s"),
    ("start-up + load: server CPU time", "load_cpu", "s"),
]:
    print(f"| {name} | {f[key]:.3f} {unit} | {rd[key]:.3f} {unit} | {f[key] / rd[key]:.2f} |")
print(f"| file size | {f['bytes'] / 1e6:.1f} MB | {rd['bytes'] / 1e6:.1f} MB | {f['bytes'] / rd['bytes']:.2f} |")
EOF
