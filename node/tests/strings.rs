//! Black-box tests of the string commands: differential against Redis 7 for
//! every command, option and error path, plus keyspace notifications, RESP3
//! and a real client (the `redis` crate).

mod support;

use std::time::Duration;

use ferrokv_node::config::ServeArgs;
use support::{Diff, Frame, RawClient, redis_server, server, server_with, wait_for};

/// Run each command on both servers; replies must be identical.
fn check_all(d: &mut Diff, cmds: &[&[&str]]) {
    for c in cmds {
        d.check(c);
    }
}

#[test]
fn get_and_set_with_every_option() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["GET", "k"],
            &["SET", "k", "v"],
            &["GET", "k"],
            &["SET", "k", "v2", "NX"],
            &["SET", "k", "v2", "XX"],
            &["SET", "new", "v", "XX"],
            &["SET", "new", "v", "NX"],
            &["SET", "k", "v3", "GET"],
            &["SET", "k", "v4", "nx", "get"],
            &["SET", "k", "v4", "get", "nx"],
            &["SET", "missing", "v", "XX", "GET"],
            &["SET", "k", "v", "EX", "100"],
            &["TTL", "k"],
            &["SET", "k", "v", "KEEPTTL"],
            &["TTL", "k"],
            &["SET", "k", "v"],
            &["TTL", "k"],
            &["SET", "k", "v", "PX", "100000"],
            &["TTL", "k"],
            &["SET", "k", "v", "EXAT", "99999999999"],
            &["EXPIRETIME", "k"],
            &["SET", "k", "v", "PXAT", "99999999999123"],
            &["PEXPIRETIME", "k"],
            &["SET", "k", "v", "ex", "10", "ex", "20"],
            &["TTL", "k"],
            &["SET", "k", "v", "EX", "10", "PX", "20"],
            &["SET", "k", "v", "KEEPTTL", "EX", "5"],
            &["SET", "k", "v", "EX", "5", "KEEPTTL"],
            &["SET", "k", "v", "NX", "XX"],
            &["SET", "k", "v", "XX", "NX"],
            &["SET", "k", "v", "EX"],
            &["SET", "k", "v", "PERSIST"],
            &["SET", "k", "v", "FOO"],
            &["SET", "k", "v", "EX", "0"],
            &["SET", "k", "v", "EX", "-5"],
            &["SET", "k", "v", "PX", "0"],
            &["SET", "k", "v", "EXAT", "0"],
            &["SET", "k", "v", "EX", "abc"],
            &["SET", "k", "v", "EX", "1.5"],
            &["SET", "k", "v", "EX", "9223372036854776"],
            &["SET", "k", "v", "PX", "9223372036854775807"],
            &["SET", "k", "v", "EX", "9223372036854775"],
            &["SET", "k", "v", "PXAT", "9223372036854775807"],
            &["SET", "k"],
            &["GET"],
            &["GET", "a", "b"],
            // A past absolute time stores an already expired key.
            &["SET", "past", "v", "PXAT", "1"],
            &["GET", "past"],
            &["EXISTS", "past"],
            &["SET", "empty", ""],
            &["GET", "empty"],
            &["STRLEN", "empty"],
        ],
    );
}

#[test]
fn setnx_setex_psetex_getset_getdel() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["SETNX", "k", "1"],
            &["SETNX", "k", "2"],
            &["GET", "k"],
            &["SETEX", "k", "100", "v"],
            &["TTL", "k"],
            &["SETEX", "k", "0", "v"],
            &["SETEX", "k", "-1", "v"],
            &["SETEX", "k", "x", "v"],
            &["PSETEX", "k", "100000", "v"],
            &["TTL", "k"],
            &["PSETEX", "k", "0", "v"],
            &["PSETEX", "k", "nope", "v"],
            &["GETSET", "k", "w"],
            &["TTL", "k"],
            &["GETSET", "none", "w"],
            &["GETDEL", "none2"],
            &["GETDEL", "k"],
            &["EXISTS", "k"],
            &["SETNX", "k"],
            &["SETEX", "k", "1"],
        ],
    );
}

#[test]
fn getex_options_and_errors() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["GETEX", "none"],
            &["GETEX", "none", "EX", "0"],
            &["SET", "k", "v"],
            &["GETEX", "k"],
            &["TTL", "k"],
            &["GETEX", "k", "EX", "100"],
            &["TTL", "k"],
            &["GETEX", "k", "PERSIST"],
            &["TTL", "k"],
            &["GETEX", "k", "PERSIST"],
            &["GETEX", "k", "PX", "100000"],
            &["TTL", "k"],
            &["GETEX", "k", "EXAT", "99999999999"],
            &["EXPIRETIME", "k"],
            &["GETEX", "k", "PXAT", "99999999999000"],
            &["EXPIRETIME", "k"],
            &["GETEX", "k", "EX", "0"],
            &["GETEX", "k", "EX", "x"],
            &["GETEX", "k", "PERSIST", "EX", "10"],
            &["GETEX", "k", "EX", "10", "PERSIST"],
            &["GETEX", "k", "KEEPTTL"],
            &["GETEX", "k", "NX"],
            &["GETEX", "k", "GET"],
            &["GETEX", "k", "EX"],
            &["GETEX", "k", "EX", "10", "PX", "10"],
            // A past absolute time deletes the key after replying with it.
            &["GETEX", "k", "PXAT", "1"],
            &["EXISTS", "k"],
            &["SET", "k", "v"],
            &["GETEX", "k", "EXAT", "1"],
            &["GET", "k"],
        ],
    );
}

#[test]
fn mget_mset_msetnx() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["MSET", "a", "1", "b", "2", "c", "3"],
            &["MGET", "a", "b", "nope", "c"],
            &["MSET", "a", "1", "b"],
            &["MSETNX", "a", "1", "b"],
            &["MSETNX", "x", "1", "a", "9"],
            &["MGET", "x", "a"],
            &["MSETNX", "x", "1", "y", "2"],
            &["MGET", "x", "y"],
            &["MSET", "d", "1", "d", "2"],
            &["GET", "d"],
            &["SET", "t", "v", "EX", "100"],
            &["MSET", "t", "w"],
            &["TTL", "t"],
            &["MSET"],
            &["MGET"],
        ],
    );
}

#[test]
fn counters_and_their_errors() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["INCR", "n"],
            &["INCR", "n"],
            &["DECR", "n"],
            &["DECR", "m"],
            &["INCRBY", "n", "100"],
            &["DECRBY", "n", "-50"],
            &["INCRBY", "n", "abc"],
            &["INCRBY", "n", "1.5"],
            &["INCRBY", "n", "+1"],
            &["INCRBY", "n", " 1"],
            &["SET", "big", "9223372036854775807"],
            &["INCR", "big"],
            &["INCRBY", "big", "0"],
            &["SET", "small", "-9223372036854775808"],
            &["DECR", "small"],
            &["DECRBY", "n", "-9223372036854775808"],
            &["DECRBY", "n", "9223372036854775807"],
            &["INCRBY", "n", "9223372036854775808"],
            &["SET", "s", "hello"],
            &["INCR", "s"],
            &["SET", "s", "1 "],
            &["INCR", "s"],
            &["SET", "s", "007"],
            &["INCR", "s"],
            &["SET", "s", "-0"],
            &["INCR", "s"],
            &["SET", "s", ""],
            &["INCR", "s"],
            &["SET", "t", "10", "EX", "100"],
            &["INCR", "t"],
            &["TTL", "t"],
            &["OBJECT", "ENCODING", "t"],
        ],
    );
}

#[test]
fn incrbyfloat_matches_long_double_results() {
    let mut d = Diff::new();
    let values = [
        "0",
        "1",
        "-1",
        "10.5",
        "0.1",
        "0.2",
        "3.0e3",
        "1e17",
        "12345.5",
        "-0.0",
        "1e-20",
        "5.0e3",
        "1.1",
        "2.2",
        "100",
        "-99.99",
        "0x10",
        "1e308",
        "1e-300",
        "123456789.123",
        "0.0000001",
        "+1.5",
        "1.",
        ".5",
    ];
    for a in values {
        for b in ["0.1", "1", "-1.5", "2.5e-3", "1e10", "3", "-0.1"] {
            d.check(&["SET", "f", a]);
            d.check(&["INCRBYFLOAT", "f", b]);
            d.check(&["GET", "f"]);
            d.check(&["OBJECT", "ENCODING", "f"]);
        }
    }
    check_all(
        &mut d,
        &[
            &["INCRBYFLOAT", "new", "1.5"],
            &["INCRBYFLOAT", "new", "abc"],
            &["INCRBYFLOAT", "new", "inf"],
            &["INCRBYFLOAT", "new", "nan"],
            &["INCRBYFLOAT", "new", ""],
            &["INCRBYFLOAT", "new", " 1"],
            &["SET", "huge", "1e4932"],
            &["INCRBYFLOAT", "huge", "1e4932"],
            &["SET", "bad", "one"],
            &["INCRBYFLOAT", "bad", "1"],
            // A NUL byte ends strtold's scan: Redis 7 refuses the string.
            &["SET", "nul", "1\u{0}2"],
            &["INCRBYFLOAT", "nul", "1"],
            &["INCRBYFLOAT", "new2", "1\u{0}"],
            &["HSET", "h", "f", "1\u{0}2"],
            &["HINCRBYFLOAT", "h", "f", "1"],
            &["HINCRBYFLOAT", "h", "g", "2\u{0}"],
            &["SET", "t", "1", "EX", "100"],
            &["INCRBYFLOAT", "t", "1"],
            &["TTL", "t"],
        ],
    );
    // Repeated small steps accumulate as they do in Redis' long double.
    d.check(&["SET", "acc", "0"]);
    for _ in 0..30 {
        d.check(&["INCRBYFLOAT", "acc", "0.1"]);
    }
}

/// Random decimal operands (long mantissas, exponents, signs, hex): the
/// emulated long double sum must print exactly as Redis prints it.
#[test]
fn incrbyfloat_randomized() {
    use rand::Rng;
    let mut d = Diff::new();
    let mut rng = rand::rng();
    let number = |rng: &mut rand::rngs::ThreadRng| -> String {
        let digits: String = (0..rng.random_range(1..26))
            .map(|_| char::from(b'0' + rng.random_range(0..10)))
            .collect();
        let point = rng.random_range(0..=digits.len());
        let mut s = String::new();
        if rng.random_bool(0.4) {
            s.push('-');
        }
        s.push_str(&digits[..point]);
        if point < digits.len() || rng.random_bool(0.2) {
            s.push('.');
            s.push_str(&digits[point..]);
        }
        if s.trim_start_matches('-').is_empty() || s.trim_start_matches('-') == "." {
            s.push('7');
        }
        match rng.random_range(0..4) {
            0 => s.push_str(&format!("e{}", rng.random_range(-40..40))),
            1 => s.push_str(&format!("E+{}", rng.random_range(0..400))),
            _ => {}
        }
        s
    };
    for _ in 0..400 {
        let (a, b) = (number(&mut rng), number(&mut rng));
        d.check(&["SET", "f", &a]);
        d.check(&["INCRBYFLOAT", "f", &b]);
    }
    for (a, b) in [
        ("0x1p-16400", "0"),
        ("1e-4940", "1e-4940"),
        ("0x1.8p1", "0X10"),
        ("1e4930", "-1e4930"),
    ] {
        d.check(&["SET", "f", a]);
        d.check(&["INCRBYFLOAT", "f", b]);
    }
}

#[test]
fn append_strlen_getrange_setrange() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["APPEND", "k", "hello"],
            &["APPEND", "k", " world"],
            &["APPEND", "k", ""],
            &["STRLEN", "k"],
            &["STRLEN", "none"],
            &["GETRANGE", "k", "0", "4"],
            &["GETRANGE", "k", "-5", "-1"],
            &["GETRANGE", "k", "-1", "-5"],
            &["GETRANGE", "k", "5", "3"],
            &["GETRANGE", "k", "0", "-1"],
            &["GETRANGE", "k", "-100", "100"],
            &["GETRANGE", "k", "100", "200"],
            &["GETRANGE", "k", "-9223372036854775808", "9223372036854775807"],
            &["GETRANGE", "k", "x", "1"],
            &["GETRANGE", "none", "0", "-1"],
            &["SUBSTR", "k", "1", "3"],
            &["SETRANGE", "k", "6", "there"],
            &["GET", "k"],
            &["SETRANGE", "k", "15", "!"],
            &["GET", "k"],
            &["SETRANGE", "k", "0", ""],
            &["SETRANGE", "fresh", "3", "abc"],
            &["GET", "fresh"],
            &["SETRANGE", "fresh2", "3", ""],
            &["EXISTS", "fresh2"],
            &["SETRANGE", "k", "-1", "x"],
            &["SETRANGE", "k", "x", "x"],
            &["SETRANGE", "k", "536870912", "x"],
            &["SETRANGE", "k", "536870911", ""],
            &["SETRANGE", "fresh3", "536870912", "x"],
            &["SET", "n", "123"],
            &["APPEND", "n", "4"],
            &["GET", "n"],
            &["GETRANGE", "n", "1", "2"],
            &["SET", "t", "abc", "EX", "100"],
            &["APPEND", "t", "d"],
            &["SETRANGE", "t", "0", "x"],
            &["TTL", "t"],
        ],
    );
}

#[test]
fn size_limit_follows_proto_max_bulk_len() {
    let server = server_with(ServeArgs {
        proto_max_bulk_len: Some("1mb".into()),
        ..Default::default()
    });
    let redis = redis_server(&["--proto-max-bulk-len", "1mb"]);
    let mut d = Diff {
        ours: RawClient::connect(server.addr),
        theirs: RawClient::connect(redis.addr),
        _server: server,
        _redis: redis,
    };
    let chunk = "x".repeat(600 * 1024);
    check_all(
        &mut d,
        &[
            &["SET", "k", &chunk],
            &["APPEND", "k", &chunk],
            &["STRLEN", "k"],
            &["SETRANGE", "k", "1048575", "x"],
            &["SETRANGE", "k", "1048576", "x"],
            &["SETBIT", "b", "8388607", "1"],
            &["SETBIT", "b", "8388608", "1"],
            &["GETBIT", "b", "8388608"],
        ],
    );
}

#[test]
fn wrong_type_errors() {
    // Needs a non-string type on both servers: runs once the hash family is
    // present (the unit tests in cmd::string cover this with a list already).
    let mut d = Diff::new();
    let (ours, _) = d.both(&["HSET", "h", "f", "v"]);
    if ours.is_error() {
        return;
    }
    for c in [
        &["GET", "h"][..],
        &["SET", "h", "v", "GET"],
        &["GETSET", "h", "v"],
        &["GETDEL", "h"],
        &["GETEX", "h"],
        &["INCR", "h"],
        &["INCRBYFLOAT", "h", "1"],
        &["APPEND", "h", "x"],
        &["STRLEN", "h"],
        &["GETRANGE", "h", "0", "1"],
        &["SETRANGE", "h", "0", "x"],
        &["SETBIT", "h", "0", "1"],
        &["GETBIT", "h", "0"],
        &["BITCOUNT", "h"],
        &["BITPOS", "h", "1"],
        &["BITOP", "AND", "d", "h"],
        &["MSETNX", "h", "x"],
    ] {
        d.check(c);
    }
    d.check(&["MGET", "h"]);
    d.check(&["SET", "h", "now a string"]);
    d.check(&["GET", "h"]);
}

#[test]
fn bits_setbit_getbit_and_errors() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["SETBIT", "b", "7", "1"],
            &["SETBIT", "b", "7", "1"],
            &["SETBIT", "b", "7", "0"],
            &["SETBIT", "b", "100", "1"],
            &["GET", "b"],
            &["GETBIT", "b", "100"],
            &["GETBIT", "b", "101"],
            &["GETBIT", "b", "100000"],
            &["GETBIT", "none", "0"],
            &["SETBIT", "b", "-1", "1"],
            &["SETBIT", "b", "4294967296", "1"],
            &["SETBIT", "b", "x", "1"],
            &["SETBIT", "b", "1", "2"],
            &["SETBIT", "b", "1", "-1"],
            &["SETBIT", "b", "1", "01"],
            &["SETBIT", "b", "1", ""],
            &["GETBIT", "b", "-1"],
            &["GETBIT", "b", "4294967296"],
            &["SET", "n", "12"],
            &["GETBIT", "n", "2"],
            &["SETBIT", "n", "7", "0"],
            &["OBJECT", "ENCODING", "n"],
            &["GET", "n"],
        ],
    );
}

#[test]
fn bitcount_bitpos_options_and_errors() {
    let mut d = Diff::new();
    let z: [&[u8]; 3] = [b"SET", b"z", b"\x00\x00\xff\xf0"];
    assert_eq!(d.ours.cmd(&z), d.theirs.cmd(&z));
    check_all(
        &mut d,
        &[
            &["SET", "s", "foobar"],
            &["BITCOUNT", "s"],
            &["BITCOUNT", "s", "0", "0"],
            &["BITCOUNT", "s", "1", "1"],
            &["BITCOUNT", "s", "1", "1", "BYTE"],
            &["BITCOUNT", "s", "5", "30", "BIT"],
            &["BITCOUNT", "s", "5", "30", "bit"],
            &["BITCOUNT", "s", "-1", "-2"],
            &["BITCOUNT", "s", "0"],
            &["BITCOUNT", "s", "0", "1", "WORD"],
            &["BITCOUNT", "s", "a", "1"],
            &["BITCOUNT", "s", "0", "1", "BIT", "x"],
            &["BITCOUNT", "none"],
            &["BITCOUNT", "none", "0"],
            &["BITCOUNT", "none", "a", "b"],
            &["BITPOS", "z", "1"],
            &["BITPOS", "z", "0"],
            &["BITPOS", "z", "1", "2"],
            &["BITPOS", "z", "0", "2"],
            &["BITPOS", "z", "0", "2", "2"],
            &["BITPOS", "z", "1", "7", "15", "BIT"],
            &["BITPOS", "z", "1", "7", "17", "BIT"],
            &["BITPOS", "z", "0", "16", "27", "BIT"],
            &["BITPOS", "z", "0", "16", "28", "BIT"],
            &["BITPOS", "z", "2"],
            &["BITPOS", "z", "x"],
            &["BITPOS", "z", "1", "x"],
            &["BITPOS", "z", "1", "0", "x"],
            &["BITPOS", "z", "1", "0", "1", "WORD"],
            &["BITPOS", "z", "1", "0", "1", "BIT", "x"],
            &["BITPOS", "none", "0"],
            &["BITPOS", "none", "1"],
            &["BITPOS", "none", "2"],
            &["SET", "ones", "\u{7f}"],
            &["BITPOS", "ones", "0"],
            &["SET", "full", "\x7f\x7f"],
            &["BITPOS", "full", "0", "0", "-1"],
            &["SET", "e", ""],
            &["BITPOS", "e", "0"],
            &["BITPOS", "e", "1"],
            &["BITCOUNT", "e", "0", "-1", "BIT"],
        ],
    );
}

/// Random strings and ranges: BITCOUNT and BITPOS must agree with Redis on
/// every one (both units, negative indexes, masks at the edges).
#[test]
fn bitcount_bitpos_randomized() {
    use rand::Rng;
    let mut d = Diff::new();
    let mut rng = rand::rng();
    for round in 0..60 {
        let len = rng.random_range(0..6);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                *[0x00u8, 0xff, 0x0f, 0xf0, 0x01, 0x80, 0x55][..]
                    .get(rng.random_range(0..7))
                    .unwrap_or(&0)
            })
            .collect();
        let key = format!("r{round}");
        let k = key.as_bytes();
        d.ours.cmd(&[&b"SET"[..], k, &bytes]);
        d.theirs.cmd(&[&b"SET"[..], k, &bytes]);
        for _ in 0..25 {
            let a = rng.random_range(-50i64..50).to_string();
            let b = rng.random_range(-50i64..50).to_string();
            let unit = ["BIT", "BYTE"][rng.random_range(0..2)];
            let bit = ["0", "1"][rng.random_range(0..2)];
            d.check(&["BITCOUNT", &key, &a, &b, unit]);
            d.check(&["BITPOS", &key, bit, &a, &b, unit]);
            d.check(&["BITPOS", &key, bit, &a, &b]);
            d.check(&["BITPOS", &key, bit, &a]);
        }
    }
}

#[test]
fn bitop_all_operations() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["SET", "a", "foobar"],
            &["SET", "b", "abc"],
            &["BITOP", "AND", "d", "a", "b"],
            &["GET", "d"],
            &["BITOP", "or", "d", "a", "b"],
            &["GET", "d"],
            &["BITOP", "XOR", "d", "a", "b", "none"],
            &["GET", "d"],
            &["BITOP", "NOT", "d", "a"],
            &["GET", "d"],
            &["BITOP", "NOT", "d", "a", "b"],
            &["BITOP", "NAND", "d", "a"],
            &["BITOP", "AND", "d", "none1", "none2"],
            &["EXISTS", "d"],
            &["BITOP", "AND", "a", "a", "b"],
            &["GET", "a"],
            &["OBJECT", "ENCODING", "a"],
            &["BITOP", "AND", "d"],
        ],
    );
}

#[test]
fn bitfield_and_bitfield_ro() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["BITFIELD", "none", "GET", "u8", "0"],
            &["EXISTS", "none"],
            &["BITFIELD", "none"],
            &[
                "BITFIELD", "bf", "SET", "i8", "0", "100", "GET", "i8", "0", "INCRBY", "i8", "0", "100",
            ],
            &[
                "BITFIELD", "bf", "OVERFLOW", "SAT", "INCRBY", "i8", "0", "100", "INCRBY", "i8", "0", "-1000",
            ],
            &[
                "BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "u2", "100", "1", "INCRBY", "u2", "100", "5",
            ],
            &[
                "BITFIELD", "bf", "overflow", "wrap", "incrby", "u2", "100", "5", "get", "u2", "100",
            ],
            &[
                "BITFIELD", "bf", "SET", "u8", "#3", "255", "GET", "u8", "#3", "GET", "i8", "#3",
            ],
            &[
                "BITFIELD",
                "bf",
                "SET",
                "i64",
                "0",
                "-9223372036854775808",
                "INCRBY",
                "i64",
                "0",
                "-1",
            ],
            &[
                "BITFIELD",
                "bf",
                "OVERFLOW",
                "SAT",
                "INCRBY",
                "i64",
                "0",
                "-1",
                "INCRBY",
                "i64",
                "0",
                "9223372036854775807",
            ],
            &["BITFIELD", "bf", "SET", "u63", "1", "-1", "GET", "u63", "1"],
            &[
                "BITFIELD", "bf", "OVERFLOW", "SAT", "SET", "u4", "0", "-1", "SET", "i4", "0", "100", "GET", "i4", "0",
            ],
            &[
                "BITFIELD", "bf", "OVERFLOW", "FAIL", "SET", "u4", "0", "16", "GET", "u4", "0",
            ],
            &["GET", "bf"],
            &["BITFIELD", "bf", "GET", "u64", "0"],
            &["BITFIELD", "bf", "GET", "i65", "0"],
            &["BITFIELD", "bf", "GET", "x8", "0"],
            &["BITFIELD", "bf", "GET", "I8", "0"],
            &["BITFIELD", "bf", "GET", "u8", "-1"],
            &["BITFIELD", "bf", "GET", "u8", "#-1"],
            &["BITFIELD", "bf", "GET", "u8", "4294967296"],
            &["BITFIELD", "bf", "GET", "u8"],
            &["BITFIELD", "bf", "SET", "u8", "0"],
            &["BITFIELD", "bf", "SET", "u8", "0", "x"],
            &["BITFIELD", "bf", "OVERFLOW", "NOPE", "GET", "u8", "0"],
            &["BITFIELD", "bf", "FOO"],
            &["BITFIELD", "bf", "GET", "u8", "1000"],
            &["BITFIELD_RO", "bf", "GET", "u8", "0", "GET", "i16", "3"],
            &["BITFIELD_RO", "bf", "SET", "u8", "0", "1"],
            &["BITFIELD_RO", "bf", "INCRBY", "u8", "0", "1"],
            &["BITFIELD_RO", "none", "GET", "u8", "0"],
            &["BITFIELD_RO"],
            &["BITFIELD", "fresh", "OVERFLOW", "FAIL", "INCRBY", "u2", "20", "10"],
            &["GET", "fresh"],
            &["OBJECT", "ENCODING", "bf"],
        ],
    );
}

/// Random BITFIELD operations over random widths, offsets and overflow modes.
#[test]
fn bitfield_randomized() {
    use rand::Rng;
    let mut d = Diff::new();
    let mut rng = rand::rng();
    let values = [
        "0",
        "1",
        "-1",
        "127",
        "-128",
        "255",
        "9223372036854775807",
        "-9223372036854775808",
        "1000",
    ];
    for _ in 0..400 {
        let signed = rng.random_bool(0.5);
        let bits = if signed {
            rng.random_range(1..=64)
        } else {
            rng.random_range(1..=63)
        };
        let ty = format!("{}{bits}", if signed { "i" } else { "u" });
        let off = rng.random_range(0..80).to_string();
        let op = ["GET", "SET", "INCRBY"][rng.random_range(0..3)];
        let ow = ["WRAP", "SAT", "FAIL"][rng.random_range(0..3)];
        let v = values[rng.random_range(0..values.len())];
        if op == "GET" {
            d.check(&["BITFIELD", "r", "GET", &ty, &off]);
        } else {
            d.check(&["BITFIELD", "r", "OVERFLOW", ow, op, &ty, &off, v]);
        }
    }
    d.check(&["GET", "r"]);
}

#[test]
fn lcs_options_and_errors() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["MSET", "a", "ohmytext", "b", "mynewtext"],
            &["LCS", "a", "b"],
            &["LCS", "a", "b", "LEN"],
            &["LCS", "a", "b", "IDX"],
            &["LCS", "a", "b", "IDX", "MINMATCHLEN", "4"],
            &["LCS", "a", "b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
            &["LCS", "a", "b", "IDX", "WITHMATCHLEN"],
            &["LCS", "a", "b", "IDX", "MINMATCHLEN", "-5"],
            &["LCS", "a", "b", "IDX", "LEN"],
            &["LCS", "a", "b", "MINMATCHLEN"],
            &["LCS", "a", "b", "MINMATCHLEN", "x"],
            &["LCS", "a", "b", "FOO"],
            &["LCS", "a", "none"],
            &["LCS", "none", "none2", "IDX"],
            &["LCS", "a"],
            &["MSET", "x", "abcabcabc", "y", "cbacbacba"],
            &["LCS", "x", "y", "IDX", "WITHMATCHLEN"],
            &["LCS", "y", "x"],
        ],
    );
    // Random short strings over a small alphabet exercise every range case.
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..100 {
        let mut word = || -> String {
            (0..rng.random_range(0..12))
                .map(|_| ['a', 'b', 'c'][rng.random_range(0..3)])
                .collect()
        };
        let (x, y) = (word(), word());
        d.check(&["MSET", "x", &x, "y", &y]);
        d.check(&["LCS", "x", "y"]);
        d.check(&["LCS", "x", "y", "IDX", "WITHMATCHLEN"]);
        d.check(&["LCS", "x", "y", "IDX", "MINMATCHLEN", "2"]);
    }
    let _ = d.both(&["HELLO", "3"]);
    d.check(&["LCS", "a", "b", "IDX", "WITHMATCHLEN"]);
}

#[test]
fn object_encoding_of_strings() {
    let mut d = Diff::new();
    let long = "x".repeat(45);
    check_all(
        &mut d,
        &[
            &["SET", "i", "123"],
            &["SET", "e", "abc"],
            &["SET", "r", &long],
            &["SET", "z", "0123"],
            &["SET", "m", "-9223372036854775808"],
            &["SET", "o", "9223372036854775808"],
            &["MSET", "mi", "7", "me", "x"],
            &["SETNX", "nx", "5"],
            &["SETEX", "ex", "100", "5"],
            &["GETSET", "gs", "5"],
            &["APPEND", "ap", "5"],
            &["APPEND", "ap2", "5"],
            &["APPEND", "ap2", "5"],
            &["SETRANGE", "i", "0", ""],
            &["INCR", "inc"],
            &["INCRBYFLOAT", "fl", "3"],
            &["SETRANGE", "sr", "0", "1"],
            &["SETBIT", "sb", "0", "0"],
            &["COPY", "i", "ci"],
            &["COPY", "ap2", "cap"],
            &["RENAME", "fl", "rfl"],
        ],
    );
    for k in [
        "i", "e", "r", "z", "m", "o", "mi", "me", "nx", "ex", "gs", "ap", "ap2", "inc", "rfl", "sr", "sb", "ci", "cap",
        "none",
    ] {
        d.check(&["OBJECT", "ENCODING", k]);
        d.check(&["OBJECT", "REFCOUNT", k]);
    }
    d.check(&["SET", "rc", "10000"]);
    d.check(&["OBJECT", "REFCOUNT", "rc"]);
}

#[test]
fn resp3_replies_match() {
    let mut d = Diff::new();
    let _ = d.both(&["HELLO", "3"]);
    check_all(
        &mut d,
        &[
            &["GET", "none"],
            &["SET", "k", "v", "GET"],
            &["SET", "k", "v2", "GET"],
            &["SET", "k", "v", "NX"],
            &["MGET", "k", "none"],
            &["GETDEL", "none"],
            &["GETEX", "none"],
            &["INCRBYFLOAT", "f", "1.5"],
            &["GETRANGE", "none", "0", "1"],
            &["SET", "k", "v", "EX", "0"],
        ],
    );
}

#[test]
fn strings_inside_multi_exec() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["MULTI"],
            &["SET", "a", "1"],
            &["INCR", "a"],
            &["APPEND", "a", "x"],
            &["INCR", "a"],
            &["GET", "a"],
            &["EXEC"],
        ],
    );
}

/// Run `cmds` on the server at `addr` while subscribed to every keyspace
/// event; returns the (channel, payload) pairs in order. A final marker key
/// proves the stream is drained, so missing and extra events both show.
fn keyspace_events(addr: std::net::SocketAddr, cmds: &[Vec<&str>]) -> Vec<(String, String)> {
    let mut sub = RawClient::connect(addr);
    sub.set_timeout(Duration::from_secs(5));
    sub.cmd(&["PSUBSCRIBE", "__key*__:*"]);
    let mut c = RawClient::connect(addr);
    for cmd in cmds {
        c.cmd(cmd);
    }
    c.cmd(&["SET", "__end", "1"]);
    let mut out = Vec::new();
    loop {
        let Frame::Array(v) = sub.read() else {
            panic!("unexpected frame")
        };
        let s = |f: &Frame| match f {
            Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        };
        let (ch, msg) = (s(&v[2]), s(&v[3]));
        if msg == "__end" {
            return out;
        }
        if !ch.ends_with("__end") {
            out.push((ch, msg));
        }
    }
}

#[test]
fn keyspace_notifications_for_string_commands() {
    let cmds: Vec<Vec<&str>> = vec![
        vec!["SET", "k", "1"],
        vec!["SET", "k", "1", "EX", "100"],
        vec!["SET", "k", "1", "NX"],
        vec!["SET", "k", "1", "KEEPTTL"],
        vec!["INCR", "k"],
        vec!["DECRBY", "k", "3"],
        vec!["INCRBYFLOAT", "k", "1.5"],
        vec!["APPEND", "k", "x"],
        vec!["APPEND", "k", ""],
        vec!["SETRANGE", "k", "0", "y"],
        vec!["SETRANGE", "k", "0", ""],
        vec!["SETBIT", "b", "0", "1"],
        vec!["SETBIT", "b", "0", "1"],
        vec!["SETBIT", "b", "0", "0"],
        vec!["GETEX", "k", "PERSIST"],
        vec!["GETEX", "k", "PERSIST"],
        vec!["GETEX", "k", "EX", "10"],
        vec!["GETEX", "k", "PXAT", "1"],
        vec!["SET", "k", "v"],
        vec!["GETDEL", "k"],
        vec!["MSET", "a", "1", "c", "2"],
        vec!["MSETNX", "a", "1", "z", "2"],
        vec!["MSETNX", "y", "1", "z", "2"],
        vec!["BITOP", "OR", "d", "b"],
        vec!["BITOP", "OR", "d", "none"],
        vec!["GETSET", "a", "2"],
        vec!["SETNX", "a", "3"],
        vec!["SETNX", "q", "3"],
        vec!["SETEX", "q", "100", "3"],
        vec!["PSETEX", "q", "100000", "3"],
        vec!["INCR", "bad"],
        vec!["SET", "str", "x"],
        vec!["INCR", "str"],
        vec!["BITFIELD", "bf", "SET", "u8", "0", "1"],
        vec!["BITFIELD", "bf", "SET", "u8", "0", "1"],
        vec!["BITFIELD", "bf", "GET", "u8", "0"],
        vec!["BITFIELD", "bf2", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "9"],
        vec!["BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "u2", "100", "9"],
        vec!["LCS", "bf", "str"],
    ];
    let s = server_with(ServeArgs {
        notify_keyspace_events: Some("KEA".into()),
        ..Default::default()
    });
    let redis = redis_server(&["--notify-keyspace-events", "KEA"]);
    let ours = keyspace_events(s.addr, &cmds);
    let theirs = keyspace_events(redis.addr, &cmds);
    assert!(ours.len() > 40, "too few events: {ours:?}");
    assert_eq!(ours, theirs, "left: ferrokv, right: redis");
}

#[test]
fn real_client_uses_string_commands() {
    use redis::Commands;
    let s = server();
    let client = redis::Client::open(s.url()).expect("client");
    let mut con = client.get_connection().expect("connect");
    let _: () = con.set("greeting", "hello").expect("set");
    let v: String = con.get("greeting").expect("get");
    assert_eq!(v, "hello");
    let n: i64 = con.incr("counter", 5).expect("incrby");
    assert_eq!(n, 5);
    let f: f64 = con.incr("float", 2.5).expect("incrbyfloat");
    assert_eq!(f, 2.5);
    let _: () = con.mset(&[("a", "1"), ("b", "2")]).expect("mset");
    let vals: Vec<Option<String>> = con.mget(&["a", "b", "c"]).expect("mget");
    assert_eq!(vals, vec![Some("1".into()), Some("2".into()), None]);
    let len: usize = con.append("greeting", " world").expect("append");
    assert_eq!(len, 11);
    let _: () = con.set_ex("tmp", "x", 100).expect("setex");
    let ttl: i64 = con.ttl("tmp").expect("ttl");
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    let bit: bool = con.setbit("bits", 3, true).expect("setbit");
    assert!(!bit);
    let count: usize = con.bitcount("bits").expect("bitcount");
    assert_eq!(count, 1);
}

#[test]
fn ttl_from_set_expires_the_key() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    assert_eq!(c.cmd(&["SET", "k", "v", "PX", "60"]), Frame::Simple("OK".into()));
    let pttl = match c.cmd(&["PTTL", "k"]) {
        Frame::Int(n) => n,
        f => panic!("PTTL answered {f:?}"),
    };
    assert!((0..=60).contains(&pttl), "pttl {pttl}");
    wait_for("k to expire", Duration::from_secs(5), || {
        (c.cmd(&["GET", "k"]) == Frame::Null).then_some(())
    });
    assert_eq!(c.cmd(&["EXISTS", "k"]), Frame::Int(0));
    // KEEPTTL keeps a TTL that then still fires.
    c.cmd(&["SET", "k", "v", "PX", "80"]);
    c.cmd(&["SET", "k", "w", "KEEPTTL"]);
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("w"));
    wait_for("k to expire again", Duration::from_secs(5), || {
        (c.cmd(&["EXISTS", "k"]) == Frame::Int(0)).then_some(())
    });
}
