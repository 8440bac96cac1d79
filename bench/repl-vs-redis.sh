#!/usr/bin/env bash
# Benchmark: replication, ferrokv-node against Redis (Debian's redis-server,
# 7.0.15) on this machine, in the same run, with identical loads.
#
#   full sync   a primary holds $BENCH_KEYS keys `SET key:N <value>` with
#               $BENCH_VALUE-byte random base64 values (loaded by
#               `redis-cli --pipe`); an empty replica is told `REPLICAOF`; wall
#               time from the command until the replica reports
#               master_link_status:up with no sync in progress and holds every
#               key. Redis uses disk-based sync (`repl-diskless-sync no`: fork,
#               RDB to disk, transfer, load); ferrokv streams a point-in-time
#               cut straight into the socket and the replica loads it from
#               memory.
#   lag         while redis-benchmark runs a SET load on the primary
#               (-c $BENCH_CLIENTS -P 1, 100-byte values, random keys), a probe
#               writes `SET lagprobe:i` on the primary and, once acknowledged,
#               polls GET on the replica until it sees the value; lag = that
#               time. p50/p99 over all of a system's probes: $BENCH_LAG_SECONDS
#               seconds each, in $BENCH_LAG_WINDOWS windows alternating between
#               the two systems (both stay up; see below).
#               The primary's command rate during the window is printed too:
#               a lag figure means little without the load it was taken under;
#               so is the share of probes whose first GET already saw the
#               write (the stream had reached the replica by the reply).
#   ratio       ferrokv / Redis; below 1 is better (target <= 1.0)
#
# Both systems run one primary and one replica on free loopback ports, killed
# (by PID) on exit. Redis runs with `--save '' --appendonly no`; ferrokv with
# its defaults (no snapshot schedule, no append-only file). With two cores the
# load generator, the probe, the primary and the replica share the CPUs: quote
# the machine with the numbers.
#
# Usage: bench/repl-vs-redis.sh      (a few minutes)
#   BENCH_KEYS=1000000 BENCH_VALUE=100 BENCH_LAG_SECONDS=30 BENCH_LAG_WINDOWS=6
#   BENCH_CLIENTS=50
#   BENCH_QUICK=1   50000 keys and 5 s of lag probing: to check the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_KEYS="${BENCH_KEYS:-50000}"
    BENCH_LAG_SECONDS="${BENCH_LAG_SECONDS:-5}"
else
    BENCH_KEYS="${BENCH_KEYS:-1000000}"
    BENCH_LAG_SECONDS="${BENCH_LAG_SECONDS:-30}"
fi
BENCH_LAG_WINDOWS="${BENCH_LAG_WINDOWS:-6}"
BENCH_VALUE="${BENCH_VALUE:-100}"
BENCH_CLIENTS="${BENCH_CLIENTS:-50}"
STEP_TIMEOUT=300

bench_init repl-bench
build_node

# start_server SYSTEM ROLE PORT DIR: starts a server in the background and
# tracks its PID (bench/lib.sh).
start_server() {
    local system="$1" role="$2" port="$3" dir="$4"
    mkdir -p "$dir"
    if [ "$system" = redis ]; then
        local extra=(--repl-diskless-sync no)
        [ "$role" = primary ] || extra=(--repl-diskless-load disabled)
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
            "${extra[@]}" --logfile "$dir/log" &
    else
        RUST_LOG=info "$NODE_BIN" --port "$port" --bind 127.0.0.1 --dir "$dir" >"$dir/out" 2>"$dir/log" &
    fi
    track "$!"
    wait_ping "$port" "$!"
}

stop_all() {
    stop_pid "${PIDS[@]+"${PIDS[@]}"}"
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

# The measuring side: a tiny RESP client, so polling costs the same for both.
PROBE="$WORK/probe.py"
cat >"$PROBE" <<'EOF'
import socket, sys, time

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.read()

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)

def info(c):
    text = c.cmd("INFO", "replication") or b""
    if isinstance(text, bytes):
        text = text.decode()
    return dict(l.split(":", 1) for l in text.split("\r\n") if ":" in l)

mode = sys.argv[1]
if mode == "sync":
    replica, primary, keys = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    c = Conn(replica)
    t0 = time.perf_counter()
    c.cmd("REPLICAOF", "127.0.0.1", primary)
    deadline = t0 + float(sys.argv[5])
    while True:
        i = info(c)
        if i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == "0":
            if c.cmd("DBSIZE") == keys:
                break
        if time.perf_counter() > deadline:
            sys.exit("full sync did not finish in time")
        time.sleep(0.005)
    print("%.3f" % (time.perf_counter() - t0))
elif mode == "lag":
    primary, replica, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    dump = open(sys.argv[5], "a")
    p, r = Conn(primary), Conn(replica)
    def processed():
        text = p.cmd("INFO", "stats")
        text = text.decode() if isinstance(text, bytes) else text
        return int(dict(l.split(":", 1) for l in text.split("\r\n") if ":" in l)["total_commands_processed"])
    c0, t_start = processed(), time.perf_counter()
    lags = []
    first = 0  # probes whose first GET already saw the write
    end = time.perf_counter() + seconds
    i = 0
    # Values unique across windows: a key reused from an earlier window must
    # not look replicated already.
    nonce = "%d" % time.time_ns()
    while time.perf_counter() < end:
        i += 1
        key, val = "lagprobe:%d" % (i % 1000), ("%s:%d" % (nonce, i)).encode()
        assert p.cmd("SET", key, val) == "OK"
        t0 = time.perf_counter()
        gets = 1
        while r.cmd("GET", key) != val:
            gets += 1
            if time.perf_counter() - t0 > 30:
                sys.exit("replica never saw a probe")
        lags.append(time.perf_counter() - t0)
        first += gets == 1
    rate = (processed() - c0) / (time.perf_counter() - t_start)
    dump.write("".join("%.6f\n" % (l * 1000) for l in lags))
    dump.write("window %d %d\n" % (rate, first))
    lags.sort()
    pct = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000
    print("%.3f %.3f %d %d %d" % (pct(0.50), pct(0.99), len(lags), rate, first))
EOF

# Both systems are set up first and stay up; the lag is then probed in
# $BENCH_LAG_WINDOWS windows per system, alternating (ABBA), so that both see
# the machine in the same states (its speed drifts by tens of percent within
# a minute). Percentiles are over all of a system's probes.
RESULTS="$WORK/results"
: >"$RESULTS"
declare -A PPORT RPORT
for system in redis ferrokv; do
    pport="$(free_port)"
    rport="$(free_port)"
    PPORT[$system]="$pport" RPORT[$system]="$rport"
    start_server "$system" primary "$pport" "$WORK/$system-primary"
    start_server "$system" replica "$rport" "$WORK/$system-replica"
    say "$system: loading $BENCH_KEYS keys"
    summary="$(timeout "$STEP_TIMEOUT" redis-cli -h 127.0.0.1 -p "$pport" --pipe <"$LOAD" 2>&1 | tail -1)"
    say "$system: $summary"
    say "$system: full sync"
    sync_s="$(timeout "$STEP_TIMEOUT" python3 "$PROBE" sync "$rport" "$pport" "$BENCH_KEYS" "$STEP_TIMEOUT")"
    say "$system: full sync took ${sync_s}s"
    echo "$system $sync_s" >>"$RESULTS"
done
window_s="$(python3 -c "print($BENCH_LAG_SECONDS / $BENCH_LAG_WINDOWS)")"
for w in $(seq 1 "$BENCH_LAG_WINDOWS"); do
    pair_order "$w"
    for system in "${ORDER[@]}"; do
        pport="${PPORT[$system]}" rport="${RPORT[$system]}"
        redis-benchmark -h 127.0.0.1 -p "$pport" -t set -n 100000000 -c "$BENCH_CLIENTS" -P 1 -d 100 \
            -r 1000000 -q >/dev/null 2>&1 &
        bench_pid=$!
        track "$bench_pid"
        # The load's connections up before the window opens.
        sleep 0.3
        lag="$(timeout "$STEP_TIMEOUT" python3 "$PROBE" lag "$pport" "$rport" "$window_s" "$WORK/lags-$system")"
        stop_pid "$bench_pid"
        say "[$w/$BENCH_LAG_WINDOWS] $system: lag p50/p99 ms, probes, primary commands/s, first-GET hits: $lag"
    done
done
stop_all

python3 - "$RESULTS" "$WORK" "$BENCH_KEYS" "$BENCH_VALUE" <<'EOF'
import statistics, sys
results, work = sys.argv[1], sys.argv[2]
sync = dict((line.split()[0], float(line.split()[1])) for line in open(results))
rows = {}
for system in ("redis", "ferrokv"):
    lags, rates, first = [], [], 0
    for line in open(f"{work}/lags-{system}"):
        parts = line.split()
        if parts[0] == "window":
            rates.append(int(parts[1]))
            first += int(parts[2])
        else:
            lags.append(float(parts[0]))
    lags.sort()
    pct = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    rows[system] = (sync[system], pct(0.50), pct(0.99), len(lags), statistics.median(rates), first)
r, f = rows["redis"], rows["ferrokv"]
print(f"replication, {sys.argv[3]} keys x {sys.argv[4]} B (ratio = ferrokv / Redis, lower is better)")
print(f"{'metric':<28}{'ferrokv':>12}{'redis 7':>12}{'ratio':>8}")
def row(name, a, b, unit):
    ratio = a / b if b else float("nan")
    print(f"{name:<28}{a:>10.3f}{unit:>2}{b:>10.3f}{unit:>2}{ratio:>8.2f}")
row("full sync time", f[0], r[0], "s")
row("lag p50 under SET load", f[1], r[1], "ms")
row("lag p99 under SET load", f[2], r[2], "ms")
print(f"lag probes: ferrokv {f[3]}, redis {r[3]}; primary load during probing (commands/s, median of "
      f"the windows): ferrokv {f[4]:.0f}, redis {r[4]:.0f}")
print(f"probes whose first GET on the replica saw the write: ferrokv {100 * f[5] / f[3]:.1f}%, "
      f"redis {100 * r[5] / r[3]:.1f}%")
EOF
