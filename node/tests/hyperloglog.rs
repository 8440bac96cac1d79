//! HyperLogLog against Redis 7.0.15: the same elements added to both
//! servers, and after each step the stored strings (`GET`: sparse opcodes,
//! promotion to dense, the cached cardinality), the counts and the merges
//! must be byte-identical; damaged and foreign values get Redis' errors.

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use support::Diff;

fn elements(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("element:{i}")).collect()
}

fn pfadd(d: &mut Diff, key: &str, els: &[String]) {
    let mut args = vec!["PFADD", key];
    args.extend(els.iter().map(String::as_str));
    d.check(&args);
}

#[test]
fn hyperloglogs_are_byte_identical_to_redis() {
    let mut d = Diff::new();
    d.check(&["PFADD", "empty"]);
    d.check(&["GET", "empty"]);
    d.check(&["OBJECT", "ENCODING", "empty"]);
    d.check(&["PFCOUNT", "empty", "missing"]);
    // Grow one HLL step by step through the sparse encoding into dense.
    let mut n = 0;
    for step in [1, 2, 5, 10, 50, 100, 300, 600, 1000, 3000] {
        pfadd(&mut d, "h", &elements(n, step));
        n += step;
        d.check(&["GET", "h"]);
        d.check(&["OBJECT", "ENCODING", "h"]);
        d.check(&["PFCOUNT", "h"]);
        // The count is now cached in the header.
        d.check(&["GET", "h"]);
        d.check(&["PFADD", "h", "element:0"]);
    }
    // A lower promotion threshold, and repeated elements.
    d.check(&["CONFIG", "SET", "hll-sparse-max-bytes", "100"]);
    for i in 0..8 {
        pfadd(&mut d, "small", &elements(i * 7, 20));
        d.check(&["GET", "small"]);
    }
    d.check(&["CONFIG", "SET", "hll-sparse-max-bytes", "3000"]);
    // Merges: sparse into new, dense with sparse, into an existing key.
    pfadd(&mut d, "s1", &elements(100_000, 40));
    pfadd(&mut d, "s2", &elements(100_020, 40));
    for cmd in [
        &["PFMERGE", "m1", "s1", "s2"][..],
        &["GET", "m1"],
        &["PFCOUNT", "m1"],
        &["PFCOUNT", "s1", "s2", "h", "missing"],
        &["PFMERGE", "m2", "s1", "h"],
        &["GET", "m2"],
        &["PFMERGE", "s1", "s2", "missing"],
        &["GET", "s1"],
        &["PFMERGE", "m3"],
        &["GET", "m3"],
        &["PFMERGE", "m4", "missing"],
        &["EXISTS", "m4"],
    ] {
        d.check(cmd);
    }
    // A TTL survives PFADD.
    d.check(&["EXPIRE", "s2", "1000"]);
    pfadd(&mut d, "s2", &elements(500, 3));
    d.check(&["TTL", "s2"]);
    // Not an HLL: the type, a short string, an integer, a damaged header.
    d.check(&["SET", "str", "hello"]);
    d.check(&["SET", "int", "12345"]);
    d.check(&["RPUSH", "list", "a"]);
    d.check(&["SET", "bad", "HYLL\u{2}aaaaaaaaaaaaaaaaaaaaa"]);
    for cmd in [
        &["PFADD", "str", "a"][..],
        &["PFADD", "int", "a"],
        &["PFADD", "list", "a"],
        &["PFADD", "bad", "a"],
        &["PFCOUNT", "str"],
        &["PFCOUNT", "h", "list"],
        &["PFMERGE", "h", "bad"],
        &["PFMERGE", "str", "h"],
    ] {
        d.check_error(cmd);
    }
    // A sparse value cut short is corrupt (sent as bytes: it is not UTF-8).
    let support::Frame::Bulk(mut v) = d.ours.cmd(&["GET", "s2"]) else {
        panic!("an HLL is a string")
    };
    v.truncate(v.len() - 1);
    for c in [&mut d.ours, &mut d.theirs] {
        assert_eq!(c.cmd(&[&b"SET"[..], b"cut", &v]), support::Frame::Simple("OK".into()));
    }
    d.check_error(&["PFCOUNT", "cut"]);
    d.check(&["PFADD", "cut", "zzz", "yyy"]);
}
