#!/usr/bin/env python3
"""Helpers of bench/node-vs-redis.sh and bench/cluster-vs-redis.sh (Python
standard library only).

  gen-set  write a RESP stream of `SET key:N <value>` for `redis-cli --pipe`
  gen-coll write a RESP stream that fills one hash, set, sorted set or list
           with N elements, 100 per command
  table    turn redis-benchmark CSVs and memory readings into a Markdown table
           of ferrokv/Redis ratios
"""

import argparse
import csv
import io
import statistics
import sys


def gen_set(keys: int, value_size: int) -> None:
    out = sys.stdout.buffer
    value = b"v" * value_size
    vlen = b"$%d\r\n" % value_size
    chunk = []
    for i in range(keys):
        key = b"key:%d" % i
        chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s%s\r\n" % (len(key), key, vlen, value))
        if len(chunk) == 10000:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))


def resp(args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


# Element shapes of the collection memory measure: members like
# redis-benchmark's (`element:` + 12 digits), 16-byte hash values.
COLLECTIONS = {
    "hash": (b"HSET", lambda i: [b"element:%012d" % i, b"v" * 16]),
    "set": (b"SADD", lambda i: [b"element:%012d" % i]),
    "zset": (b"ZADD", lambda i: [b"%d" % i, b"element:%012d" % i]),
    "list": (b"RPUSH", lambda i: [b"element:%012d" % i]),
}


def gen_coll(kind: str, elements: int) -> None:
    out = sys.stdout.buffer
    cmd, element = COLLECTIONS[kind]
    key = b"big" + kind.encode()
    for start in range(0, elements, 100):
        args = [cmd, key]
        for i in range(start, min(start + 100, elements)):
            args.extend(element(i))
        out.write(resp(args))


def commands_in(elements: int) -> int:
    """Commands gen_coll writes for `elements` elements."""
    return (elements + 99) // 100


def test_name(label: str) -> str | None:
    """redis-benchmark's CSV label to its -t name; None for helper rows."""
    if "(needed" in label:
        return None
    return label.split()[0].lower()


def read_throughput(path: str):
    """Lines `server,pipeline[,rep],<redis-benchmark csv row>` to
    ({(server, pipeline, test): row}, {(pipeline, test): [ferrokv/Redis per rep]}).
    With repeated runs each number of a row is the median over the runs. A
    line that names its repetition pairs with the other server's line of the
    same repetition: the second map holds those paired ratios of requests per
    second (the scripts run the two halves of a pair back to back, so the pair
    shares the machine's state of the moment)."""
    runs = {}
    by_rep = {}
    with open(path, newline="") as f:
        for line in f:
            server, pipeline, rest = line.rstrip("\n").split(",", 2)
            rep = None
            if not rest.startswith('"'):
                rep, rest = rest.split(",", 1)
            fields = next(csv.reader(io.StringIO(rest)))
            if not fields or fields[0] == "test":
                continue
            header = ["test", "rps", "avg", "min", "p50", "p95", "p99", "max"]
            row = dict(zip(header, fields))
            name = test_name(row["test"])
            if name:
                runs.setdefault((server, int(pipeline), name), []).append(row)
                if rep is not None:
                    by_rep.setdefault((int(pipeline), name, rep), {})[server] = float(row["rps"])
    rows = {}
    for key, rs in runs.items():
        merged = {}
        for field in rs[0]:
            try:
                merged[field] = statistics.median(float(r[field]) for r in rs)
            except ValueError:
                merged[field] = rs[0][field]
        rows[key] = merged
    paired = {}
    for (pipeline, name, _), pair in by_rep.items():
        if "ferrokv" in pair and "redis" in pair and pair["redis"] > 0:
            paired.setdefault((pipeline, name), []).append(pair["ferrokv"] / pair["redis"])
    return rows, paired


def ratio(ours, theirs) -> str:
    try:
        return f"{float(ours) / float(theirs):.2f}"
    except (TypeError, ValueError, ZeroDivisionError):
        return "n/a"


def fmt(v, digits=0) -> str:
    try:
        return f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return "n/a"


def table(args) -> None:
    rows, paired = read_throughput(args.throughput)
    print()
    title = f"{args.title}, " if args.title else ""
    print(
        f"ferrokv vs Redis {args.redis_version}, {title}same machine ({args.cores} cores), loopback, "
        f"redis-benchmark -c {args.clients} -n {args.requests}, median of {args.repeat} run(s)"
    )
    print()
    if paired:
        print(
            "Throughput: requests/s are medians over the runs; ferrokv/Redis is the median of the "
            "per-run ratios, each run's pair measured back to back (lowest and highest in the last column)."
        )
        print()
    print("| measure | ferrokv | Redis | ferrokv/Redis |" + (" runs: lowest–highest |" if paired else ""))
    print("|---|---:|---:|---:|" + ("---:|" if paired else ""))
    blank = " |" if paired else ""
    tests = []
    for _, _, t in rows:
        if t not in tests:
            tests.append(t)
    for p in sorted({p for _, p, _ in rows}):
        for t in tests:
            ours = rows.get(("ferrokv", p, t), {}).get("rps")
            theirs = rows.get(("redis", p, t), {}).get("rps")
            rs = paired.get((p, t))
            if rs:
                spread = f" {min(rs):.2f}–{max(rs):.2f} |"
                r = f"{statistics.median(rs):.2f}"
            else:
                spread, r = blank, ratio(ours, theirs)
            print(f"| {t.upper()} -P {p} (req/s) | {fmt(ours)} | {fmt(theirs)} | {r} |{spread}")
    for q in ("p50", "p99"):
        if ("redis", 1, "get") in rows:
            ours = rows.get(("ferrokv", 1, "get"), {}).get(q)
            theirs = rows.get(("redis", 1, "get"), {}).get(q)
            print(f"| GET {q} latency -P 1 (ms) | {fmt(ours, 3)} | {fmt(theirs, 3)} | {ratio(ours, theirs)} |{blank}")
    mem = {}
    with open(args.memory) if args.memory else io.StringIO() as f:
        for line in f:
            server, size, keys, rss0, rss1, used0, used1 = line.strip().split(",")
            keys = int(keys)
            per_rss = (int(rss1) - int(rss0)) * 1024 / keys
            per_used = (int(used1) - int(used0)) / keys if used0 and used1 else None
            mem[(server, int(size))] = (per_used, per_rss)
    for size in sorted({s for _, s in mem}):
        for i, what in enumerate(("used_memory", "RSS")):
            ours = mem.get(("ferrokv", size), (None, None))[i]
            theirs = mem.get(("redis", size), (None, None))[i]
            print(
                f"| bytes/key, {size}-byte values ({what}) | {fmt(ours)} | {fmt(theirs)} | {ratio(ours, theirs)} |{blank}"
            )
    coll = {}
    with open(args.collections) if args.collections else io.StringIO() as f:
        for line in f:
            server, kind, elements, rss0, rss1, used0, used1 = line.strip().split(",")
            elements = int(elements)
            coll[(server, kind)] = (
                (int(used1) - int(used0)) / elements if used0 and used1 else None,
                (int(rss1) - int(rss0)) * 1024 / elements,
                elements,
            )
    for kind in [k for k in COLLECTIONS if ("redis", k) in coll]:
        n = coll[("redis", kind)][2]
        for i, what in enumerate(("used_memory", "RSS")):
            ours = coll.get(("ferrokv", kind), (None, None, 0))[i]
            theirs = coll[("redis", kind)][i]
            print(
                f"| bytes/element, one {kind} of {n:,} elements ({what}) | {fmt(ours)} | {fmt(theirs)} "
                f"| {ratio(ours, theirs)} |{blank}"
            )
    if args.skipped.strip():
        print()
        print(f"Not implemented by ferrokv yet (skipped): {args.skipped}")
    print()
    print(
        "Throughput ratio > 1 means ferrokv is faster; latency, bytes/key and bytes/element ratios < 1 "
        "mean ferrokv is better."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-set")
    g.add_argument("--keys", type=int, required=True)
    g.add_argument("--value-size", type=int, required=True)
    c = sub.add_parser("gen-coll")
    c.add_argument("--type", choices=sorted(COLLECTIONS), required=True)
    c.add_argument("--elements", type=int, required=True)
    n = sub.add_parser("commands")
    n.add_argument("--elements", type=int, required=True)
    t = sub.add_parser("table")
    t.add_argument("--throughput", required=True)
    t.add_argument("--memory", default="", help="memory readings (optional)")
    t.add_argument("--collections", default="", help="collection memory readings (optional)")
    t.add_argument("--title", default="", help="what was measured, for the table's heading")
    t.add_argument("--clients", required=True)
    t.add_argument("--requests", required=True)
    t.add_argument("--skipped", default="")
    t.add_argument("--repeat", default="1")
    t.add_argument("--redis-version", default="?")
    t.add_argument("--cores", default="?")
    a = ap.parse_args()
    if a.cmd == "gen-set":
        gen_set(a.keys, a.value_size)
    elif a.cmd == "gen-coll":
        gen_coll(a.type, a.elements)
    elif a.cmd == "commands":
        print(commands_in(a.elements))
    else:
        table(a)


if __name__ == "__main__":
    main()
