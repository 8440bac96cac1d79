//! Sorted-set commands, black-box over TCP: differential checks against
//! Redis 7.0.15 for every command, option and error (RESP2 and RESP3), a
//! randomized differential run, blocking pops, keyspace events, and a
//! redis-rs client.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Diff, Frame, RawClient, server, server_with, wait_for};

fn hello3(d: &mut Diff) {
    let (a, b) = d.both(&["HELLO", "3"]);
    assert!(matches!(a, Frame::Map(_)) && matches!(b, Frame::Map(_)));
}

/// Does our server know this command yet? (Other families land separately;
/// checks that need them run once they are merged.)
fn ours_has(d: &mut Diff, cmd: &str) -> bool {
    let known = !matches!(d.ours.cmd(&[cmd]), Frame::Error(e) if e.starts_with("ERR unknown command"));
    // Every family is merged now: a missing command fails instead of skipping.
    assert!(known, "{cmd} must be implemented");
    known
}

#[test]
fn zadd_options_and_errors() {
    let mut d = Diff::new();
    d.check(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]);
    d.check(&["ZADD", "z", "1", "a"]);
    d.check(&["ZADD", "z", "CH", "5", "a", "6", "new"]);
    d.check(&["ZADD", "z", "NX", "100", "a", "7", "nx"]);
    d.check(&["ZADD", "z", "XX", "8", "a", "9", "notthere"]);
    d.check(&["ZADD", "z", "XX", "CH", "9", "a", "9", "b"]);
    d.check(&["ZADD", "z", "GT", "CH", "1", "a", "100", "b", "4", "gtnew"]);
    d.check(&["ZADD", "z", "LT", "CH", "1", "a", "200", "b"]);
    d.check(&["ZADD", "z", "lt", "xx", "ch", "0", "a", "0", "zz"]);
    d.check(&["ZADD", "z", "GT", "XX", "CH", "50", "a"]);
    d.check(&[
        "ZADD", "z", "-inf", "ninf", "+inf", "pinf", "1e3", "exp", "0x10", "hex", "-0", "negzero",
    ]);
    d.check(&["ZADD", "z", "1.5", "a", "1.5", "a", "2.5", "a"]);
    d.check(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]);
    d.check(&["ZADD", "z", "INCR", "10", "a"]);
    d.check(&["ZADD", "z", "INCR", "NX", "10", "a"]);
    d.check(&["ZADD", "z", "INCR", "XX", "10", "missing"]);
    d.check(&["ZADD", "z", "INCR", "GT", "-1", "a"]);
    d.check(&["ZADD", "z", "INCR", "LT", "-1", "a"]);
    d.check(&["ZADD", "z", "INCR", "0", "a"]);
    d.check(&["ZADD", "z", "INCR", "5", "brandnew"]);
    d.check(&["ZADD", "missing", "XX", "1", "a"]);
    d.check(&["ZADD", "missing", "XX", "INCR", "1", "a"]);
    d.check(&["ZCARD", "missing"]);
    for bad in [
        vec!["ZADD", "z", "1"],
        vec!["ZADD", "z", "NX", "XX", "1", "a"],
        vec!["ZADD", "z", "GT", "LT", "1", "a"],
        vec!["ZADD", "z", "GT", "NX", "1", "a"],
        vec!["ZADD", "z", "LT", "NX", "1", "a"],
        vec!["ZADD", "z", "INCR", "1", "a", "2", "b"],
        vec!["ZADD", "z", "x", "a"],
        vec!["ZADD", "z", "nan", "a"],
        vec!["ZADD", "z", "1", "a", "b", "c"],
        vec!["ZADD", "z", "1e400", "a"],
        vec!["ZADD", "z", " 1", "a"],
        vec!["ZADD", "z", "", "a"],
        vec!["ZADD", "z", "NX", "XX", "1"],
        vec!["ZADD", "z", "NX"],
        vec!["ZADD", "z"],
    ] {
        d.check_error(&bad);
    }
    // INCR to inf - inf is NaN: an error, and nothing changes.
    d.check(&["ZADD", "z", "+inf", "i"]);
    d.check_error(&["ZADD", "z", "INCR", "-inf", "i"]);
    d.check_error(&["ZINCRBY", "z", "-inf", "i"]);
    d.check(&["ZSCORE", "z", "i"]);
    d.check(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]);
}

#[test]
fn zincrby_zscore_zmscore_zcard() {
    let mut d = Diff::new();
    d.check(&["ZINCRBY", "z", "1.5", "a"]);
    d.check(&["ZINCRBY", "z", "1.1", "a"]);
    d.check(&["ZINCRBY", "z", "-10", "b"]);
    d.check_error(&["ZINCRBY", "z", "abc", "a"]);
    d.check_error(&["ZINCRBY", "z", "1"]);
    d.check(&["ZSCORE", "z", "a"]);
    d.check(&["ZSCORE", "z", "nope"]);
    d.check(&["ZSCORE", "nokey", "a"]);
    d.check(&["ZMSCORE", "z", "a", "nope", "b"]);
    d.check(&["ZMSCORE", "nokey", "a", "b"]);
    d.check_error(&["ZMSCORE", "z"]);
    d.check(&["ZCARD", "z"]);
    d.check(&["ZCARD", "nokey"]);
    d.check(&[
        "ZADD",
        "f",
        "0.1",
        "x",
        "1e-300",
        "y",
        "123456789012345678",
        "w",
        "3.0000000000000004",
        "v",
    ]);
    d.check(&["ZRANGE", "f", "0", "-1", "WITHSCORES"]);
    hello3(&mut d);
    d.check(&["ZSCORE", "z", "a"]);
    d.check(&["ZSCORE", "z", "nope"]);
    d.check(&["ZMSCORE", "z", "a", "nope"]);
    d.check(&["ZINCRBY", "z", "2", "a"]);
    d.check(&["ZADD", "z", "INCR", "1", "a"]);
    d.check(&["ZADD", "z", "NX", "INCR", "1", "a"]);
}

#[test]
fn counts_ranks_and_range_parsing() {
    let mut d = Diff::new();
    d.check(&["ZADD", "z", "1", "a", "2", "b", "2", "c", "3", "d", "-1", "e"]);
    d.check(&["ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e", "0", "ee"]);
    for (min, max) in [
        ("-inf", "+inf"),
        ("1", "2"),
        ("(1", "2"),
        ("1", "(2"),
        ("(1", "(2"),
        ("2", "1"),
        ("(2", "2"),
        ("", ""),
        ("( 1", "5"),
        ("-1e400", "1e400"),
        ("0x1", "0x2"),
        ("inf", "-inf"),
    ] {
        d.check(&["ZCOUNT", "z", min, max]);
        d.check(&["ZRANGEBYSCORE", "z", min, max, "WITHSCORES"]);
        d.check(&["ZREVRANGEBYSCORE", "z", max, min, "WITHSCORES"]);
    }
    for (min, max) in [
        ("a", "b"),
        ("nan", "1"),
        ("1", "(nan"),
        ("1x", "2"),
        ("[1", "2"),
        ("1", "2 "),
    ] {
        d.check_error(&["ZCOUNT", "z", min, max]);
        d.check_error(&["ZRANGEBYSCORE", "z", min, max]);
        d.check_error(&["ZREMRANGEBYSCORE", "z", min, max]);
    }
    d.check(&["ZCOUNT", "nokey", "0", "1"]);
    d.check_error(&["ZCOUNT", "nokey", "x", "1"]);
    for (min, max) in [
        ("-", "+"),
        ("[a", "[c"),
        ("(a", "(c"),
        ("[b", "+"),
        ("-", "(e"),
        ("[e", "[e"),
        ("(e", "[e"),
        ("+", "-"),
        ("-", "-"),
        ("+", "+"),
        ("[", "+"),
        ("(", "+"),
        ("[z", "[a"),
    ] {
        d.check(&["ZLEXCOUNT", "l", min, max]);
        d.check(&["ZRANGEBYLEX", "l", min, max]);
        d.check(&["ZREVRANGEBYLEX", "l", max, min]);
    }
    for (min, max) in [("a", "+"), ("-", "c"), ("", "+"), ("-x", "+"), ("++", "-"), ("[a", "")] {
        d.check_error(&["ZLEXCOUNT", "l", min, max]);
        d.check_error(&["ZRANGEBYLEX", "l", min, max]);
        d.check_error(&["ZREMRANGEBYLEX", "l", min, max]);
    }
    d.check(&["ZLEXCOUNT", "nokey", "-", "+"]);
    for m in ["a", "b", "c", "d", "e", "nope"] {
        d.check(&["ZRANK", "z", m]);
        d.check(&["ZREVRANK", "z", m]);
    }
    d.check(&["ZRANK", "nokey", "a"]);
    d.check(&["ZREVRANK", "nokey", "a"]);
    d.check_error(&["ZRANK", "z", "a", "WITHSCORE"]);
    hello3(&mut d);
    d.check(&["ZRANK", "z", "nope"]);
    d.check(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"]);
}

#[test]
fn zrange_variants_options_and_errors() {
    let mut d = Diff::new();
    let mut add = vec!["ZADD", "z"];
    let members: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    let scores: Vec<String> = (0..20).map(|i| format!("{}", i / 3)).collect();
    for i in 0..20 {
        add.push(&scores[i]);
        add.push(&members[i]);
    }
    d.check(&add);
    d.check(&["ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e"]);
    let ranks = [
        ("0", "-1"),
        ("2", "5"),
        ("-3", "-1"),
        ("-100", "100"),
        ("5", "2"),
        ("19", "19"),
        ("20", "30"),
        ("-1", "-5"),
        ("-9223372036854775808", "9223372036854775807"),
    ];
    for (a, b) in ranks {
        d.check(&["ZRANGE", "z", a, b]);
        d.check(&["ZRANGE", "z", a, b, "WITHSCORES"]);
        d.check(&["ZRANGE", "z", a, b, "REV", "withscores"]);
        d.check(&["ZREVRANGE", "z", a, b, "WITHSCORES"]);
    }
    for (min, max) in [("-inf", "+inf"), ("1", "4"), ("(1", "(4"), ("2", "2"), ("5", "1")] {
        for lim in [
            None,
            Some(("0", "3")),
            Some(("2", "2")),
            Some(("5", "-1")),
            Some(("-1", "5")),
            Some(("100", "1")),
        ] {
            for rev in [false, true] {
                let (lo, hi) = if rev { (max, min) } else { (min, max) };
                let mut cmd = vec!["ZRANGE", "z", lo, hi, "BYSCORE"];
                if rev {
                    cmd.push("REV");
                }
                if let Some((o, c)) = lim {
                    cmd.extend(["LIMIT", o, c]);
                }
                d.check(&cmd);
                cmd.push("WITHSCORES");
                d.check(&cmd);
                let mut old = vec![if rev { "ZREVRANGEBYSCORE" } else { "ZRANGEBYSCORE" }, "z", lo, hi];
                if let Some((o, c)) = lim {
                    old.extend(["LIMIT", o, c]);
                }
                old.push("WITHSCORES");
                d.check(&old);
            }
        }
    }
    for (min, max) in [("-", "+"), ("[b", "(e"), ("(a", "+")] {
        for lim in [None, Some(("1", "2")), Some(("0", "-1")), Some(("-2", "1"))] {
            for rev in [false, true] {
                let (lo, hi) = if rev { (max, min) } else { (min, max) };
                let mut cmd = vec!["ZRANGE", "l", lo, hi, "BYLEX"];
                if rev {
                    cmd.push("REV");
                }
                let mut old = vec![if rev { "ZREVRANGEBYLEX" } else { "ZRANGEBYLEX" }, "l", lo, hi];
                if let Some((o, c)) = lim {
                    cmd.extend(["LIMIT", o, c]);
                    old.extend(["LIMIT", o, c]);
                }
                d.check(&cmd);
                d.check(&old);
            }
        }
    }
    d.check(&["ZRANGE", "nokey", "0", "-1"]);
    d.check(&["ZRANGE", "nokey", "0", "-1", "BYSCORE"]);
    d.check(&["zrange", "z", "0", "1", "byscore", "byscore"]);
    for bad in [
        vec!["ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"],
        vec!["ZRANGE", "z", "-", "+", "BYLEX", "WITHSCORES"],
        vec!["ZRANGE", "z", "0", "-1", "BYSCORE", "BYLEX"],
        vec!["ZRANGE", "z", "0", "-1", "REV", "REV"],
        vec!["ZRANGE", "z", "0", "-1", "LIMIT", "0"],
        vec!["ZRANGE", "z", "0", "-1", "BYSCORE", "LIMIT", "x", "1"],
        vec!["ZRANGE", "z", "0", "-1", "BYSCORE", "LIMIT", "0", "1.5"],
        vec!["ZRANGE", "z", "a", "-1"],
        vec!["ZRANGE", "z", "0", "-1", "foo"],
        vec!["ZRANGE", "z", "a", "b", "BYSCORE"],
        vec!["ZRANGE", "z", "a", "b", "BYLEX"],
        vec!["ZRANGE", "nokey", "a", "b", "BYLEX"],
        vec!["ZREVRANGE", "z", "0", "-1", "REV"],
        vec!["ZREVRANGE", "z", "0", "-1", "LIMIT", "0", "1"],
        vec!["ZRANGEBYSCORE", "z", "0", "1", "BYLEX"],
        vec!["ZRANGEBYSCORE", "z", "0", "1", "REV"],
        vec!["ZRANGEBYLEX", "l", "-", "+", "WITHSCORES"],
        vec!["ZRANGEBYLEX", "l", "-", "+", "BYSCORE"],
        vec!["ZREVRANGEBYSCORE", "z", "0", "1", "LIMIT"],
        vec!["ZRANGE", "z", "0"],
    ] {
        d.check_error(&bad);
    }
    hello3(&mut d);
    d.check(&["ZRANGE", "z", "0", "3", "WITHSCORES"]);
    d.check(&["ZRANGE", "z", "0", "3"]);
    d.check(&["ZREVRANGEBYSCORE", "z", "+inf", "-inf", "WITHSCORES", "LIMIT", "1", "3"]);
    d.check(&["ZRANGE", "nokey", "0", "-1", "WITHSCORES"]);
}

#[test]
fn zrangestore_variants() {
    let mut d = Diff::new();
    d.check(&["ZADD", "{t}src", "1", "a", "2", "b", "3", "c", "4", "d"]);
    d.check(&["ZRANGESTORE", "{t}dst", "{t}src", "0", "-1"]);
    d.check(&["ZRANGE", "{t}dst", "0", "-1", "WITHSCORES"]);
    d.check(&["ZRANGESTORE", "{t}dst", "{t}src", "(1", "3", "BYSCORE", "REV"]);
    d.check(&["ZRANGESTORE", "{t}dst", "{t}src", "3", "(1", "BYSCORE", "REV"]);
    d.check(&["ZRANGE", "{t}dst", "0", "-1", "WITHSCORES"]);
    d.check(&[
        "ZRANGESTORE",
        "{t}dst",
        "{t}src",
        "-inf",
        "+inf",
        "BYSCORE",
        "LIMIT",
        "1",
        "2",
    ]);
    d.check(&["ZRANGE", "{t}dst", "0", "-1", "WITHSCORES"]);
    d.check(&["ZRANGESTORE", "{t}dst", "{t}src", "[b", "+", "BYLEX"]);
    d.check(&["ZRANGE", "{t}dst", "0", "-1", "WITHSCORES"]);
    // Storing onto the source itself.
    d.check(&["ZRANGESTORE", "{t}src", "{t}src", "1", "2"]);
    d.check(&["ZRANGE", "{t}src", "0", "-1", "WITHSCORES"]);
    // An empty result deletes the destination.
    d.check(&["ZRANGESTORE", "{t}dst", "{t}src", "10", "20"]);
    d.check(&["ZCARD", "{t}dst"]);
    d.check(&["ZRANGESTORE", "{t}dst", "{t}none", "0", "-1"]);
    d.check_error(&["ZRANGESTORE", "{t}dst", "{t}src", "0", "-1", "WITHSCORES"]);
    d.check_error(&["ZRANGESTORE", "{t}dst", "{t}src", "0", "-1", "LIMIT", "0", "1"]);
    d.check_error(&["ZRANGESTORE", "{t}dst", "{t}src", "0"]);
}

#[test]
fn zrem_and_zremrange() {
    let mut d = Diff::new();
    let fill = |d: &mut Diff, k: &str| {
        d.check(&["ZADD", k, "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "5", "f"]);
    };
    fill(&mut d, "z");
    d.check(&["ZREM", "z", "a", "nope", "a", "b"]);
    d.check(&["ZREM", "z", "nope"]);
    d.check(&["ZREM", "nokey", "a"]);
    d.check(&["ZREM", "z", "c", "d", "e", "f", "x"]);
    d.check(&["ZCARD", "z"]);
    for (a, b) in [
        ("0", "1"),
        ("-2", "-1"),
        ("3", "1"),
        ("10", "20"),
        ("-100", "1"),
        ("0", "-1"),
    ] {
        fill(&mut d, "r");
        d.check(&["ZREMRANGEBYRANK", "r", a, b]);
        d.check(&["ZRANGE", "r", "0", "-1", "WITHSCORES"]);
    }
    for (a, b) in [("2", "4"), ("(2", "(4"), ("-inf", "+inf"), ("5", "1"), ("(5", "5")] {
        fill(&mut d, "s");
        d.check(&["ZREMRANGEBYSCORE", "s", a, b]);
        d.check(&["ZRANGE", "s", "0", "-1", "WITHSCORES"]);
    }
    for (a, b) in [("[b", "[d"), ("(b", "(d"), ("-", "+"), ("+", "-"), ("[e", "+")] {
        d.check(&["ZADD", "x", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e"]);
        d.check(&["ZREMRANGEBYLEX", "x", a, b]);
        d.check(&["ZRANGE", "x", "0", "-1"]);
    }
    d.check(&["ZREMRANGEBYRANK", "nokey", "0", "-1"]);
    d.check(&["ZREMRANGEBYSCORE", "nokey", "-inf", "+inf"]);
    d.check(&["ZREMRANGEBYLEX", "nokey", "-", "+"]);
    d.check_error(&["ZREMRANGEBYRANK", "s", "a", "1"]);
    d.check_error(&["ZREMRANGEBYRANK", "nokey", "0", "1.5"]);
    d.check_error(&["ZREM", "s"]);
}

#[test]
fn pops_resp2_and_resp3() {
    let mut d = Diff::new();
    for proto in [2, 3] {
        if proto == 3 {
            hello3(&mut d);
        }
        d.check(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e"]);
        d.check(&["ZPOPMIN", "z"]);
        d.check(&["ZPOPMAX", "z"]);
        d.check(&["ZPOPMIN", "z", "2"]);
        d.check(&["ZPOPMAX", "z", "0"]);
        d.check(&["ZPOPMAX", "z", "1"]);
        d.check(&["ZPOPMIN", "z"]);
        d.check(&["ZPOPMIN", "z", "5"]);
        d.check(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]);
        d.check(&["ZPOPMAX", "z", "100"]);
        d.check(&["ZCARD", "z"]);
        d.check_error(&["ZPOPMIN", "z", "-1"]);
        d.check_error(&["ZPOPMIN", "z", "x"]);
        d.check_error(&["ZPOPMIN", "z", "1", "2"]);
        d.check(&["ZPOPMIN", "nokey", "0"]);
        // ZMPOP
        d.check(&["ZADD", "{m}2", "1", "a", "2", "b", "3", "c"]);
        d.check(&["ZMPOP", "2", "{m}1", "{m}2", "MIN"]);
        d.check(&["ZMPOP", "2", "{m}1", "{m}2", "max", "COUNT", "10"]);
        d.check(&["ZMPOP", "2", "{m}1", "{m}2", "MIN"]);
        d.check(&["ZMPOP", "1", "{m}1", "MIN", "COUNT", "1"]);
        for bad in [
            vec!["ZMPOP", "0", "{m}1", "MIN"],
            vec!["ZMPOP", "-1", "{m}1", "MIN"],
            vec!["ZMPOP", "x", "{m}1", "MIN"],
            vec!["ZMPOP", "3", "{m}1", "MIN"],
            vec!["ZMPOP", "1", "{m}1", "MID"],
            vec!["ZMPOP", "1", "{m}1", "MIN", "COUNT"],
            vec!["ZMPOP", "1", "{m}1", "MIN", "COUNT", "0"],
            vec!["ZMPOP", "1", "{m}1", "MIN", "COUNT", "x"],
            vec!["ZMPOP", "1", "{m}1", "MIN", "COUNT", "1", "COUNT", "1"],
            vec!["ZMPOP", "1", "{m}1", "MIN", "foo"],
            vec!["BZMPOP", "0", "1", "{m}1", "MIN", "COUNT", "0"],
            vec!["BZMPOP", "x", "1", "{m}1", "MIN"],
            vec!["BZMPOP", "-1", "1", "{m}1", "MIN"],
            vec!["BZMPOP", "0", "0", "{m}1", "MIN"],
            vec!["BZPOPMIN", "{m}1", "x"],
            vec!["BZPOPMIN", "{m}1", "-1"],
            vec!["BZPOPMAX", "{m}1"],
        ] {
            d.check_error(&bad);
        }
        // Non-blocking paths of the blocking commands.
        d.check(&["ZADD", "{m}2", "1", "a", "2", "b", "3", "c"]);
        d.check(&["BZPOPMIN", "{m}1", "{m}1", "{m}2", "0"]);
        d.check(&["BZPOPMAX", "{m}1", "{m}2", "0.01"]);
        d.check(&["BZMPOP", "0", "2", "{m}1", "{m}2", "MAX", "COUNT", "5"]);
        d.check(&["BZPOPMIN", "{m}1", "{m}2", "0.01"]);
        d.check(&["BZMPOP", "0.01", "1", "{m}2", "MIN"]);
        // Inside MULTI a blocking pop on empty keys answers at once.
        d.check(&["MULTI"]);
        d.check(&["BZPOPMIN", "{m}1", "0"]);
        d.check(&["BZMPOP", "0", "1", "{m}1", "MIN"]);
        d.check(&["EXEC"]);
    }
}

#[test]
fn set_operations() {
    let mut d = Diff::new();
    d.check(&["ZADD", "{s}a", "1", "x", "2", "y", "3", "z"]);
    d.check(&["ZADD", "{s}b", "10", "y", "20", "z", "30", "w"]);
    d.check(&["ZADD", "{s}c", "+inf", "z", "-inf", "y", "5", "x"]);
    let inputs: [&[&str]; 7] = [
        &["2", "{s}a", "{s}b"],
        &["3", "{s}a", "{s}b", "{s}c"],
        &["2", "{s}a", "{s}none"],
        &["1", "{s}none"],
        &["2", "{s}a", "{s}a"],
        &["3", "{s}c", "{s}a", "{s}b"],
        &["2", "{s}b", "{s}c"],
    ];
    // (weights, other options); weights are cut to the number of keys.
    let opts: [(Option<&[&str]>, &[&str]); 8] = [
        (None, &[]),
        (None, &["AGGREGATE", "MIN"]),
        (None, &["AGGREGATE", "max"]),
        (None, &["AGGREGATE", "SUM"]),
        (Some(&["2", "3", "4"]), &[]),
        (Some(&["0", "-1", "1"]), &["AGGREGATE", "MAX"]),
        (Some(&["1", "1", "0"]), &[]),
        (None, &["AGGREGATE", "MIN", "AGGREGATE", "MAX"]),
    ];
    for keys in inputs {
        for (weights, rest) in opts {
            let n: usize = keys[0].parse().unwrap();
            let mut opt: Vec<&str> = Vec::new();
            if let Some(w) = weights {
                opt.push("WEIGHTS");
                opt.extend(w.iter().take(n));
            }
            opt.extend(rest);
            for (cmd, store) in [
                ("ZUNION", false),
                ("ZINTER", false),
                ("ZUNIONSTORE", true),
                ("ZINTERSTORE", true),
            ] {
                let mut c = vec![cmd];
                if store {
                    c.push("{s}dst");
                }
                c.extend(keys);
                c.extend(&opt);
                if !store {
                    c.push("WITHSCORES");
                }
                d.check(&c);
                if store {
                    d.check(&["ZRANGE", "{s}dst", "0", "-1", "WITHSCORES"]);
                }
            }
        }
        let mut c = vec!["ZDIFF"];
        c.extend(keys);
        d.check(&c);
        c.push("WITHSCORES");
        d.check(&c);
        let mut c = vec!["ZDIFFSTORE", "{s}dst"];
        c.extend(keys);
        d.check(&c);
        d.check(&["ZRANGE", "{s}dst", "0", "-1", "WITHSCORES"]);
        let mut c = vec!["ZINTERCARD"];
        c.extend(keys);
        d.check(&c);
        c.extend(["LIMIT", "1"]);
        d.check(&c);
        c.pop();
        c.push("0");
        d.check(&c);
    }
    for bad in [
        vec!["ZUNION", "0", "{s}a"],
        vec!["ZUNION", "-1", "{s}a"],
        vec!["ZUNION", "x", "{s}a"],
        vec!["ZUNION", "3", "{s}a", "{s}b"],
        vec!["ZUNION", "2", "{s}a", "{s}b", "WEIGHTS", "1"],
        vec!["ZUNION", "2", "{s}a", "{s}b", "WEIGHTS", "1", "x"],
        vec!["ZUNION", "2", "{s}a", "{s}b", "AGGREGATE", "AVG"],
        vec!["ZUNION", "2", "{s}a", "{s}b", "AGGREGATE"],
        vec!["ZUNIONSTORE", "{s}dst", "0", "{s}a"],
        vec!["ZUNIONSTORE", "{s}dst", "1", "{s}a", "WITHSCORES"],
        vec!["ZINTERSTORE", "{s}dst", "2", "{s}a"],
        vec!["ZINTER", "1", "{s}a", "LIMIT", "1"],
        vec!["ZDIFF", "2", "{s}a", "{s}b", "WEIGHTS", "1", "2"],
        vec!["ZDIFF", "2", "{s}a", "{s}b", "AGGREGATE", "MIN"],
        vec!["ZDIFFSTORE", "{s}dst", "0", "{s}a"],
        vec!["ZDIFFSTORE", "{s}dst", "1", "{s}a", "WITHSCORES"],
        vec!["ZINTERCARD", "0", "{s}a"],
        vec!["ZINTERCARD", "1", "{s}a", "LIMIT", "-1"],
        vec!["ZINTERCARD", "1", "{s}a", "LIMIT", "x"],
        vec!["ZINTERCARD", "1", "{s}a", "WITHSCORES"],
        vec!["ZINTERCARD", "1", "{s}a", "AGGREGATE", "SUM"],
    ] {
        d.check_error(&bad);
    }
    // An empty result deletes the destination.
    d.check(&["ZINTERSTORE", "{s}dst", "2", "{s}a", "{s}none"]);
    d.check(&["ZCARD", "{s}dst"]);
    hello3(&mut d);
    d.check(&["ZUNION", "2", "{s}a", "{s}b", "WITHSCORES"]);
    d.check(&["ZINTER", "2", "{s}a", "{s}b"]);
    d.check(&["ZDIFF", "2", "{s}a", "{s}b", "WITHSCORES"]);
}

#[test]
fn set_operations_accept_plain_sets() {
    let mut d = Diff::new();
    if !ours_has(&mut d, "sadd") {
        eprintln!("SADD not available in this build yet: skipping the plain-set inputs check");
        return;
    }
    d.check(&["SADD", "{s}set", "x", "y", "q"]);
    d.check(&["ZADD", "{s}a", "1", "x", "2", "y", "3", "z"]);
    d.check(&["ZUNION", "2", "{s}a", "{s}set", "WEIGHTS", "2", "5", "WITHSCORES"]);
    d.check(&["ZINTER", "2", "{s}a", "{s}set", "WITHSCORES"]);
    d.check(&["ZDIFF", "2", "{s}set", "{s}a", "WITHSCORES"]);
    d.check(&["ZINTERCARD", "2", "{s}a", "{s}set"]);
}

#[test]
fn wrong_type_errors() {
    let mut d = Diff::new();
    if !ours_has(&mut d, "set") {
        eprintln!("SET not available in this build yet: skipping WRONGTYPE checks");
        return;
    }
    d.check(&["SET", "{w}s", "v"]);
    d.check(&["ZADD", "{w}z", "1", "a"]);
    for c in [
        vec!["ZADD", "{w}s", "1", "a"],
        vec!["ZINCRBY", "{w}s", "1", "a"],
        vec!["ZREM", "{w}s", "a"],
        vec!["ZSCORE", "{w}s", "a"],
        vec!["ZMSCORE", "{w}s", "a"],
        vec!["ZCARD", "{w}s"],
        vec!["ZCOUNT", "{w}s", "0", "1"],
        vec!["ZLEXCOUNT", "{w}s", "-", "+"],
        vec!["ZRANGE", "{w}s", "0", "-1"],
        vec!["ZRANGESTORE", "{w}z", "{w}s", "0", "-1"],
        vec!["ZRANK", "{w}s", "a"],
        vec!["ZREMRANGEBYRANK", "{w}s", "0", "1"],
        vec!["ZPOPMIN", "{w}s"],
        vec!["ZPOPMIN", "{w}s", "0"],
        vec!["BZPOPMIN", "{w}s", "0"],
        vec!["ZMPOP", "2", "{w}none", "{w}s", "MIN"],
        vec!["ZUNION", "2", "{w}z", "{w}s"],
        vec!["ZUNIONSTORE", "{w}d", "2", "{w}z", "{w}s"],
        vec!["ZDIFF", "2", "{w}z", "{w}s"],
        vec!["ZRANDMEMBER", "{w}s"],
        vec!["ZRANDMEMBER", "{w}s", "2"],
        vec!["ZSCAN", "{w}s", "0"],
    ] {
        d.check_error(&c);
    }
    // The score is parsed before the key's type is checked.
    d.check_error(&["ZADD", "{w}s", "x", "a"]);
    d.check(&["GET", "{w}s"]);
}

#[test]
fn zrandmember_shapes_and_errors() {
    let mut d = Diff::new();
    d.check(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]);
    d.check(&["ZRANDMEMBER", "nokey"]);
    d.check(&["ZRANDMEMBER", "nokey", "5"]);
    d.check(&["ZRANDMEMBER", "nokey", "-5", "WITHSCORES"]);
    d.check(&["ZRANDMEMBER", "z", "0"]);
    // The whole set: Redis walks it from the tail.
    d.check(&["ZRANDMEMBER", "z", "3", "WITHSCORES"]);
    d.check(&["ZRANDMEMBER", "z", "100"]);
    for bad in [
        vec!["ZRANDMEMBER", "z", "x"],
        vec!["ZRANDMEMBER", "z", "1", "foo"],
        vec!["ZRANDMEMBER", "z", "1", "WITHSCORES", "x"],
        vec!["ZRANDMEMBER", "z", "-9223372036854775808"],
        vec!["ZRANDMEMBER", "z", "9223372036854775807", "WITHSCORES"],
        vec!["ZRANDMEMBER", "z", "-4611686018427387904", "WITHSCORES"],
    ] {
        d.check_error(&bad);
    }
    let members = [Frame::bulk("a"), Frame::bulk("b"), Frame::bulk("c")];
    for _ in 0..20 {
        let f = d.ours.cmd(&["ZRANDMEMBER", "z"]);
        assert!(members.contains(&f), "{f:?}");
        let Frame::Array(v) = d.ours.cmd(&["ZRANDMEMBER", "z", "2"]) else {
            panic!()
        };
        assert_eq!(v.len(), 2);
        assert_ne!(v[0], v[1], "positive count gives distinct members");
        let Frame::Array(v) = d.ours.cmd(&["ZRANDMEMBER", "z", "-7", "WITHSCORES"]) else {
            panic!()
        };
        assert_eq!(v.len(), 14);
        for p in v.chunks(2) {
            let Frame::Bulk(m) = &p[0] else { panic!() };
            let want = ((m[0] - b'a' + 1) as i64).to_string();
            assert_eq!(p[1], Frame::Bulk(want.into_bytes()));
        }
    }
    hello3(&mut d);
    d.check(&["ZRANDMEMBER", "z", "3", "WITHSCORES"]);
    d.check(&["ZRANDMEMBER", "nokey"]);
    let Frame::Array(v) = d.ours.cmd(&["ZRANDMEMBER", "z", "-3", "WITHSCORES"]) else {
        panic!()
    };
    assert!(
        v.iter()
            .all(|p| matches!(p, Frame::Array(x) if x.len() == 2 && matches!(x[1], Frame::Double(_))))
    );
}

#[test]
fn zscan_small_and_large() {
    let mut d = Diff::new();
    d.check(&["ZADD", "z", "1", "a", "2.5", "b", "3", "c", "-inf", "n"]);
    d.check(&["ZSCAN", "z", "0"]);
    d.check(&["ZSCAN", "z", "0", "MATCH", "[ab]", "COUNT", "1"]);
    d.check(&["ZSCAN", "nokey", "0"]);
    d.check(&["ZSCAN", "nokey", "0", "COUNT", "0"]);
    d.check_error(&["ZSCAN", "z", "x"]);
    // strtoul: a sign is accepted (and "-1" wraps), spaces and overflow are not.
    d.check(&["ZSCAN", "z", "-1"]);
    d.check(&["ZSCAN", "z", "+5"]);
    d.check(&["ZSCAN", "z", ""]);
    d.check_error(&["ZSCAN", "z", " 5"]);
    d.check_error(&["ZSCAN", "z", "18446744073709551616"]);
    d.check_error(&["ZSCAN", "z", "0", "COUNT", "0"]);
    d.check_error(&["ZSCAN", "z", "0", "COUNT", "x"]);
    d.check_error(&["ZSCAN", "z", "0", "TYPE", "zset"]);
    d.check_error(&["ZSCAN", "z", "0", "MATCH"]);
    hello3(&mut d);
    d.check(&["ZSCAN", "z", "0"]);
    // A large set: every member comes back exactly once, with its score.
    let mut c = RawClient::connect(d._server.addr);
    for i in 0..500 {
        c.cmd(&["ZADD", "big", &i.to_string(), &format!("m{i}")]);
    }
    let mut seen = std::collections::HashMap::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let Frame::Array(r) = c.cmd(&["ZSCAN", "big", &cursor, "COUNT", "7"]) else {
            panic!()
        };
        let Frame::Bulk(next) = &r[0] else { panic!() };
        let Frame::Array(items) = &r[1] else { panic!() };
        for p in items.chunks(2) {
            let (Frame::Bulk(m), Frame::Bulk(s)) = (&p[0], &p[1]) else {
                panic!()
            };
            assert!(seen.insert(m.clone(), s.clone()).is_none(), "duplicate");
        }
        calls += 1;
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert!(calls > 10, "a large set is scanned in steps");
    assert_eq!(seen.len(), 500);
    assert_eq!(seen.get(&b"m42"[..]), Some(&b"42".to_vec()));
    let Frame::Array(r) = c.cmd(&["ZSCAN", "big", "0", "MATCH", "m4[9]", "COUNT", "1000"]) else {
        panic!()
    };
    assert_eq!(r[1], Frame::Array(vec![Frame::bulk("m49"), Frame::bulk("49")]));
}

#[test]
fn encoding_switch_keeps_replies_identical() {
    // Cross the listpack thresholds (128 members, 64-byte members) and check
    // that every read still matches.
    let mut d = Diff::new();
    for i in 0..140 {
        d.check(&["ZADD", "z", &(i % 17).to_string(), &format!("m{i:03}")]);
    }
    d.check(&["ZADD", "long", "1", &"x".repeat(64)]);
    d.check(&["ZADD", "long", "2", &"y".repeat(65)]);
    for k in ["z", "long"] {
        d.check(&["ZRANGE", k, "0", "-1", "WITHSCORES"]);
        d.check(&[
            "ZRANGE",
            k,
            "+inf",
            "-inf",
            "BYSCORE",
            "REV",
            "LIMIT",
            "3",
            "50",
            "WITHSCORES",
        ]);
        d.check(&["ZRANK", k, "m100"]);
        d.check(&["ZCOUNT", k, "(3", "10"]);
        d.check(&["ZRANDMEMBER", k, "1000", "WITHSCORES"]);
    }
    // -0 keeps its sign in a large set only; small set-operation results are
    // listpacks again and lose it.
    d.check(&["ZADD", "z", "-0", "negz"]);
    d.check(&["ZSCORE", "z", "negz"]);
    d.check(&["ZADD", "small", "-0", "negz", "5", "m001"]);
    d.check(&["ZSCORE", "small", "negz"]);
    d.check(&["ZINTER", "2", "z", "small", "WEIGHTS", "1", "0", "WITHSCORES"]);
    d.check(&["ZINTER", "2", "z", "z", "WITHSCORES"]);
    d.check(&["ZUNIONSTORE", "u", "2", "z", "small", "AGGREGATE", "MIN"]);
    d.check(&["ZRANGE", "u", "0", "20", "WITHSCORES"]);
    d.check(&["ZINTERSTORE", "i", "2", "z", "small", "WEIGHTS", "1", "0"]);
    d.check(&["ZRANGE", "i", "0", "-1", "WITHSCORES"]);
    if ours_has(&mut d, "object") {
        d.check(&["OBJECT", "ENCODING", "z"]);
        d.check(&["OBJECT", "ENCODING", "long"]);
    }
}

/// Random operations on both servers; the sets must stay identical.
#[test]
fn randomized_differential() {
    let mut d = Diff::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let keys = ["{r}a", "{r}b", "{r}c"];
    for step in 0..1500 {
        let r = rng.next_u32();
        let key = keys[(r % 3) as usize];
        let m = format!("m{}", rng.next_u32() % 60);
        let s = format!("{}", (rng.next_u32() % 21) as i32 - 10);
        let s2 = format!("{}", (rng.next_u32() % 21) as i32 - 10);
        let n = format!("{}", rng.next_u32() % 5);
        let cmd: Vec<&str> = match (r / 3) % 14 {
            0..=2 => vec!["ZADD", key, &s, &m, &s2, "x"],
            3 => vec!["ZADD", key, "GT", "CH", &s, &m],
            4 => vec!["ZINCRBY", key, &s, &m],
            5 => vec!["ZREM", key, &m, "x"],
            6 => vec!["ZPOPMIN", key, &n],
            7 => vec!["ZPOPMAX", key],
            8 => vec!["ZREMRANGEBYSCORE", key, &s, &s2],
            9 => vec!["ZREMRANGEBYRANK", key, &s, &s2],
            10 => vec!["ZUNIONSTORE", key, "2", keys[0], keys[1], "AGGREGATE", "MAX"],
            11 => vec!["ZRANGESTORE", key, keys[2], &s, &s2, "BYSCORE"],
            12 => vec!["ZINTERSTORE", key, "2", keys[1], keys[2], "WEIGHTS", "2", "-1"],
            _ => vec!["ZRANK", key, &m],
        };
        d.check(&cmd);
        if step % 25 == 0 {
            for k in keys {
                d.check(&["ZRANGE", k, "0", "-1", "WITHSCORES"]);
                d.check(&["ZRANGE", k, &s, &s2, "BYSCORE", "LIMIT", "1", &n]);
            }
        }
    }
}

struct XorShift(u64);

impl XorShift {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

#[test]
fn bzpopmin_served_by_a_later_zadd() {
    let s = server();
    let mut waiter = RawClient::connect(s.addr);
    let mut writer = RawClient::connect(s.addr);
    waiter.send(&["BZPOPMIN", "q1", "q2", "0"]);
    // Wait until the server has the client blocked before writing.
    wait_for("client to block", Duration::from_secs(5), || {
        match writer.cmd(&["CLIENT", "LIST"]) {
            Frame::Bulk(b) if String::from_utf8_lossy(&b).contains("cmd=bzpopmin") => Some(()),
            Frame::Error(_) => Some(()),
            _ => None,
        }
    });
    // Whether or not the block registered yet, the pop must be served by this ZADD
    // (if it ran first, BZPOPMIN finds the element without blocking).
    assert_eq!(writer.cmd(&["ZADD", "q2", "5", "x", "7", "y"]), Frame::Int(2));
    assert_eq!(
        waiter.read(),
        Frame::Array(vec![Frame::bulk("q2"), Frame::bulk("x"), Frame::bulk("5")])
    );
    assert_eq!(writer.cmd(&["ZCARD", "q2"]), Frame::Int(1));
    // BZPOPMAX in RESP3: the score is a double.
    waiter.cmd(&["HELLO", "3"]);
    assert_eq!(
        waiter.cmd(&["BZPOPMAX", "q2", "0"]),
        Frame::Array(vec![Frame::bulk("q2"), Frame::bulk("y"), Frame::Double("7".into())])
    );
    // A key made ready by a store command (and by EXEC) serves the waiter too.
    writer.cmd(&["ZADD", "src", "9", "s"]);
    waiter.send(&["BZPOPMIN", "q4", "0"]);
    writer.cmd(&["MULTI"]);
    writer.cmd(&["ZUNIONSTORE", "q4", "1", "src"]);
    assert_eq!(writer.cmd(&["EXEC"]), Frame::Array(vec![Frame::Int(1)]));
    assert_eq!(
        waiter.read(),
        Frame::Array(vec![Frame::bulk("q4"), Frame::bulk("s"), Frame::Double("9".into())])
    );
    // BZMPOP served later, with COUNT.
    waiter.send(&["BZMPOP", "0", "1", "q3", "MAX", "COUNT", "2"]);
    wait_for("client to block", Duration::from_secs(5), || {
        match writer.cmd(&["CLIENT", "LIST"]) {
            Frame::Bulk(b) if String::from_utf8_lossy(&b).contains("cmd=bzmpop") => Some(()),
            Frame::Error(_) => Some(()),
            _ => None,
        }
    });
    assert_eq!(writer.cmd(&["ZADD", "q3", "1", "a", "2", "b", "3", "c"]), Frame::Int(3));
    assert_eq!(
        waiter.read(),
        Frame::Array(vec![
            Frame::bulk("q3"),
            Frame::Array(vec![
                Frame::Array(vec![Frame::bulk("c"), Frame::Double("3".into())]),
                Frame::Array(vec![Frame::bulk("b"), Frame::Double("2".into())]),
            ])
        ])
    );
}

#[test]
fn bzpopmin_two_waiters_fifo_and_timeout() {
    let s = server();
    let mut w1 = RawClient::connect(s.addr);
    let mut w2 = RawClient::connect(s.addr);
    let mut writer = RawClient::connect(s.addr);
    let start = std::time::Instant::now();
    assert_eq!(w1.cmd(&["BZPOPMIN", "t", "0.2"]), Frame::NullArray);
    assert!(start.elapsed() >= Duration::from_millis(190), "waited for the timeout");
    w2.cmd(&["HELLO", "3"]);
    assert_eq!(
        w2.cmd(&["BZPOPMIN", "t", "0.1"]),
        Frame::Null,
        "RESP3 timeout is a null"
    );
    // Two waiters on the same key: one element each, first come first served.
    w1.send(&["BZPOPMIN", "f", "5"]);
    let observable = wait_for("w1 blocked", Duration::from_secs(5), || blocked_count(&mut writer, 1));
    w2.send(&["BZPOPMIN", "f", "5"]);
    wait_for("w2 blocked", Duration::from_secs(5), || blocked_count(&mut writer, 2));
    assert_eq!(writer.cmd(&["ZADD", "f", "1", "a", "2", "b"]), Frame::Int(2));
    let (r1, r2) = (w1.read(), w2.read());
    let a2 = Frame::Array(vec![Frame::bulk("f"), Frame::bulk("a"), Frame::bulk("1")]);
    let b3 = Frame::Array(vec![Frame::bulk("f"), Frame::bulk("b"), Frame::Double("2".into())]);
    if observable {
        assert_eq!((r1, r2), (a2, b3));
    } else {
        // Without INFO we cannot tell which client blocked first; each still
        // gets exactly one distinct element.
        let a3 = Frame::Array(vec![Frame::bulk("f"), Frame::bulk("a"), Frame::Double("1".into())]);
        let b2 = Frame::Array(vec![Frame::bulk("f"), Frame::bulk("b"), Frame::bulk("2")]);
        assert!((r1 == a2 && r2 == b3) || (r1 == b2 && r2 == a3), "{r1:?} {r2:?}");
    }
    assert_eq!(writer.cmd(&["ZCARD", "f"]), Frame::Int(0));
}

/// `Some(true)` once `n` clients are blocked (INFO clients), `Some(false)` at
/// once when INFO is not available in this build.
fn blocked_count(c: &mut RawClient, n: usize) -> Option<bool> {
    match c.cmd(&["INFO", "clients"]) {
        Frame::Bulk(b) | Frame::Verbatim(b) => {
            let text = String::from_utf8_lossy(&b).into_owned();
            let got = text
                .lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|v| v.trim().parse::<usize>().ok())?;
            (got >= n).then_some(true)
        }
        _ => Some(false),
    }
}

#[test]
fn keyspace_events() {
    let s = server_with(ferrokv_node::config::ServeArgs {
        notify_keyspace_events: Some("KEA".into()),
        ..Default::default()
    });
    let mut sub = RawClient::connect(s.addr);
    let mut c = RawClient::connect(s.addr);
    sub.cmd(&["PSUBSCRIBE", "__keyevent@0__:*"]);
    let script: &[&[&str]] = &[
        &["ZADD", "{e}k", "1", "a", "2", "b"],
        &["ZADD", "{e}k", "1", "a"],
        &["ZADD", "{e}k", "INCR", "0", "a"],
        &["ZPOPMIN", "{e}k", "2"],
        &["ZADD", "{e}k", "1", "a"],
        &["ZREM", "{e}k", "a"],
        &["ZADD", "{e}k", "1", "a"],
        &["ZREMRANGEBYRANK", "{e}k", "0", "-1"],
        &["ZADD", "{e}k", "1", "a", "2", "b"],
        &["ZREMRANGEBYSCORE", "{e}k", "2", "2"],
        &["ZREMRANGEBYLEX", "{e}k", "-", "(a"],
        &["ZRANGESTORE", "{e}d", "{e}k", "0", "-1"],
        &["ZUNIONSTORE", "{e}d2", "1", "{e}k"],
        &["ZINTERSTORE", "{e}d2", "1", "{e}k"],
        &["ZDIFFSTORE", "{e}d2", "1", "{e}k"],
        &["ZRANGESTORE", "{e}d", "{e}k", "5", "6"],
        &["ZINCRBY", "{e}k", "1", "a"],
        &["ZADD", "{e}k", "3", "c"],
        &["ZMPOP", "1", "{e}k", "MAX"],
        &["ZPOPMAX", "{e}k"],
    ];
    for cmd in script {
        assert!(!c.cmd(cmd).is_error(), "{cmd:?}");
    }
    let want = [
        ("zadd", "{e}k"),
        ("zpopmin", "{e}k"),
        ("del", "{e}k"),
        ("zadd", "{e}k"),
        ("zrem", "{e}k"),
        ("del", "{e}k"),
        ("zadd", "{e}k"),
        ("zremrangebyrank", "{e}k"),
        ("del", "{e}k"),
        ("zadd", "{e}k"),
        ("zremrangebyscore", "{e}k"),
        ("zrangestore", "{e}d"),
        ("zunionstore", "{e}d2"),
        ("zinterstore", "{e}d2"),
        ("zdiffstore", "{e}d2"),
        ("del", "{e}d"),
        ("zincr", "{e}k"),
        ("zadd", "{e}k"),
        ("zpopmax", "{e}k"),
        ("zpopmax", "{e}k"),
        ("del", "{e}k"),
    ];
    for (event, key) in want {
        let f = sub.read();
        let Frame::Array(v) = &f else { panic!("{f:?}") };
        assert_eq!(v[2], Frame::bulk(&format!("__keyevent@0__:{event}")), "{f:?}");
        assert_eq!(v[3], Frame::bulk(key), "{f:?}");
    }
}

#[test]
fn redis_rs_client() {
    let s = server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(s.url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let added: i64 = redis::cmd("ZADD")
            .arg("rs")
            .arg(1.5)
            .arg("a")
            .arg(2)
            .arg("b")
            .arg(3)
            .arg("c")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(added, 3);
        let range: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg("rs")
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(range, vec![("a".into(), 1.5), ("b".into(), 2.0), ("c".into(), 3.0)]);
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg("rs")
            .arg("b")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(score, Some(2.0));
        let new: f64 = redis::cmd("ZINCRBY")
            .arg("rs")
            .arg(0.25)
            .arg("a")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(new, 1.75);
        let rank: Option<i64> = redis::cmd("ZREVRANK")
            .arg("rs")
            .arg("a")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(rank, Some(2));
        let popped: Vec<(String, f64)> = redis::cmd("ZPOPMAX")
            .arg("rs")
            .arg(2)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(popped, vec![("c".into(), 3.0), ("b".into(), 2.0)]);
        let card: i64 = redis::cmd("ZCARD").arg("rs").query_async(&mut con).await.unwrap();
        assert_eq!(card, 1);
    });
}
