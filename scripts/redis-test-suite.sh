#!/usr/bin/env bash
# Run Redis 7.0.15's own test suite (tests/unit/..., the Tcl suite Redis
# ships) against a ferrokv node and report, per unit, how many tests pass and
# which fail, with the first line of why. A compatibility report, not a gate:
# some failures are features ferrokv does not have (SORT, DUMP/RESTORE,
# scripting, DEBUG, encoding tuning parameters), and the report says which.
#
#   scripts/redis-test-suite.sh                    # the default units below
#   scripts/redis-test-suite.sh unit/type/list     # some units
#
# The suite comes from Debian's source archive (the `orig` tarball of the
# redis-server package this project installs as the reference), checked
# against its SHA-256 and cached under ~/.cache/ferrokv/. It runs in its
# "external server" mode, against a fresh node per unit, with two changes to the
# harness, both in a throwaway copy:
#   - a unit's `start_server` config overrides (and restoring them) may
#     fail (a parameter the node lacks fails the tests that need it, not
#     the whole file);
#   - in unit/type/*, a test's own `CONFIG SET` may fail likewise.
# Tests tagged needs:debug, needs:repl (raw SYNC stream), needs:pfdebug and
# needs:local-process are skipped.
#
# Settings: FERROKV_NODE_BIN (default: a release build), SUITE_TIMEOUT
# (seconds per unit, default 600), SUITE_SKIP_TAGS (more tags to skip,
# space-separated, e.g. "needs:config-maxmemory": a test that fails with
# `maxmemory 1` still set leaves it set for the rest of its unit).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

VERSION=7.0.15
SHA256=4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982
URL="http://deb.debian.org/debian/pool/main/r/redis/redis_${VERSION}.orig.tar.gz"
CACHE="${HOME}/.cache/ferrokv/redis-src"
SUITE_TIMEOUT="${SUITE_TIMEOUT:-600}"
UNITS=("$@")
skip_tags=()
for t in ${SUITE_SKIP_TAGS:-}; do
    skip_tags+=(--tags "-$t")
done
if [ ${#UNITS[@]} -eq 0 ]; then
    UNITS=(
        unit/type/string unit/type/incr unit/type/list unit/type/list-2 unit/type/list-3
        unit/type/set unit/type/zset unit/type/hash unit/type/stream unit/type/stream-cgroups
        unit/keyspace unit/expire unit/multi unit/pubsub unit/pubsubshard unit/scan
        unit/protocol unit/info unit/auth unit/bitops unit/other unit/quit
        unit/introspection unit/introspection-2 unit/limits unit/querybuf unit/maxmemory
        unit/latency-monitor unit/slowlog unit/info-command unit/lazyfree unit/networking
        unit/geo unit/sort unit/bitfield unit/hyperloglog unit/scripting unit/functions
    )
fi

bench_init redis-suite
build_node
command -v tclsh >/dev/null || { apt-get update -qq && apt-get install -y -qq tcl >/dev/null; }

tarball="$CACHE/redis_${VERSION}.orig.tar.gz"
if ! echo "$SHA256  $tarball" | sha256sum -c --status 2>/dev/null; then
    mkdir -p "$CACHE"
    say "downloading $URL"
    curl -fsS --retry 3 -o "$tarball.part" "$URL"
    echo "$SHA256  $tarball.part" | sha256sum -c --status || { say "checksum mismatch for $URL"; exit 1; }
    mv "$tarball.part" "$tarball"
fi
tar -xzf "$tarball" -C "$WORK"
SRC="$WORK/redis-$VERSION"
python3 - "$SRC" <<'EOF'
import pathlib, re, sys
src = pathlib.Path(sys.argv[1]) / "tests"
server = src / "support" / "server.tcl"
s = server.read_text()
for old, new in [
    ("        dict set saved_config $param [lindex [r config get $param] 1]\n        r config set $param $val\n",
     "        catch {dict set saved_config $param [lindex [r config get $param] 1]}\n        catch {r config set $param $val}\n"),
    ("    dict for {param val} $saved_config {\n        r config set $param $val\n",
     "    dict for {param val} $saved_config {\n        catch {r config set $param $val}\n"),
]:
    assert old in s, old
    s = s.replace(old, new)
server.write_text(s)
util = src / "support" / "util.tcl"
util.write_text(util.read_text() + "\nproc rcfgset {args} { catch {r config set {*}$args} e; return $e }\n")
for f in (src / "unit" / "type").glob("*.tcl"):
    f.write_text(re.sub(r"\br config set ", "rcfgset ", f.read_text()))
EOF

total_ok=0 total_err=0
for unit in "${UNITS[@]}"; do
    # A fresh node per unit, as the suite starts a fresh server per unit
    # when it runs its own: a unit's CONFIG SETs (proto-max-bulk-len 10gb,
    # maxmemory 1...) must not fail the next one.
    PORT="$(free_port)"
    "$NODE_BIN" --port "$PORT" --bind 127.0.0.1 --dir "$WORK" >"$WORK/node.log" 2>&1 &
    NODE_PID=$!
    track "$NODE_PID"
    wait_ping "$PORT" "$NODE_PID"
    log="$WORK/$(echo "$unit" | tr / _).log"
    (cd "$SRC" && timeout "$SUITE_TIMEOUT" ./runtest --host 127.0.0.1 --port "$PORT" --singledb --durable \
        --tags -needs:debug --tags -needs:repl --tags -needs:pfdebug --tags -needs:local-process \
        "${skip_tags[@]}" --single "$unit") >"$log" 2>&1 || true
    # Colour codes out; the harness prints [ok], [err], [exception].
    sed -i 's/\x1b\[[0-9;]*m//g' "$log"
    ok=$(grep -ac '^\[ok\]' "$log" || true)
    err=$(grep -ac '^\[err\]' "$log" || true)
    exc=$(grep -ac '^\[exception\]' "$log" || true)
    total_ok=$((total_ok + ok))
    total_err=$((total_err + err + exc))
    printf '%-28s ok %4d  failed %3d%s\n' "$unit" "$ok" "$((err + exc))" "$([ "$exc" -gt 0 ] && echo '  (unit aborted)')"
    # Each failure: its name, then the first line of the reason.
    awk '/^\[(err|exception)\]/ {print "    " $0; getline; print "        " substr($0, 1, 150)}' "$log"
    if ! kill -0 "$NODE_PID" 2>/dev/null; then
        say "the node exited during $unit"
        tail -20 "$WORK/node.log" >&2
        exit 1
    fi
    # SIGTERM, and SIGKILL if a stuck node does not exit within 10 s.
    kill "$NODE_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
    untrack "$NODE_PID"
done
echo "redis $VERSION test suite against ferrokv: $total_ok passed, $total_err failed"
