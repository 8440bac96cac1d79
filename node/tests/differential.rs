//! Randomized differential test: random command sequences run against ferrokv
//! and against real Redis 7 (Debian's `redis-server`); every reply must match.
//!
//! Keys, fields and values come from small alphabets so that sequences collide
//! on the same keys, hit wrong types, empty collections and edge cases.
//! Normalization, and why:
//! - replies of commands whose order Redis leaves unspecified (SMEMBERS,
//!   HGETALL, KEYS, SINTER...) are compared as sorted multisets;
//! - no command with a random outcome (SPOP, SRANDMEMBER, RANDOMKEY) or a
//!   clock-dependent one (XADD `*`) is generated, and floats are multiples of
//!   0.25 so both servers compute them exactly.
//!
//! Proptest shrinks a failing sequence to a minimal one and prints it.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{Frame, RawClient};

const KEYS: &[&str] = &["k0", "k1", "k2", "{t}a", "{t}b"];
const VALS: &[&str] = &["", "a", "bc", "1", "-7", "10", "2.5", "x y", "99999999999"];
const FIELDS: &[&str] = &["f", "g", "h", "1"];
const SCORES: &[&str] = &["0", "1", "-1.5", "2.25", "10", "+inf", "-inf"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(String::from)
}
fn val() -> impl Strategy<Value = String> {
    prop::sample::select(VALS).prop_map(String::from)
}
fn field() -> impl Strategy<Value = String> {
    prop::sample::select(FIELDS).prop_map(String::from)
}
fn score() -> impl Strategy<Value = String> {
    prop::sample::select(SCORES).prop_map(String::from)
}
fn idx() -> impl Strategy<Value = String> {
    (-4i64..6).prop_map(|i| i.to_string())
}

fn cmd(parts: Vec<String>) -> Vec<String> {
    parts
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), val()).prop_map(|(k, v)| cmd(vec!["SET".into(), k, v])),
        (key(), val(), prop::sample::select(&["NX", "XX", "GET", "KEEPTTL"][..])).prop_map(|(k, v, o)| cmd(vec![
            "SET".into(),
            k,
            v,
            o.into()
        ])),
        key().prop_map(|k| cmd(vec!["GET".into(), k])),
        (key(), val()).prop_map(|(k, v)| cmd(vec!["APPEND".into(), k, v])),
        key().prop_map(|k| cmd(vec!["INCR".into(), k])),
        key().prop_map(|k| cmd(vec!["DECR".into(), k])),
        (key(), idx()).prop_map(|(k, i)| cmd(vec!["INCRBY".into(), k, i])),
        (key(), prop::sample::select(&["0.25", "-1.5", "3"][..])).prop_map(|(k, f)| cmd(vec![
            "INCRBYFLOAT".into(),
            k,
            f.into()
        ])),
        key().prop_map(|k| cmd(vec!["STRLEN".into(), k])),
        (key(), idx(), idx()).prop_map(|(k, a, b)| cmd(vec!["GETRANGE".into(), k, a, b])),
        (key(), 0u8..6, val()).prop_map(|(k, o, v)| cmd(vec!["SETRANGE".into(), k, o.to_string(), v])),
        (key(), val(), key(), val()).prop_map(|(a, x, b, y)| cmd(vec!["MSET".into(), a, x, b, y])),
        (key(), key()).prop_map(|(a, b)| cmd(vec!["MGET".into(), a, b])),
        key().prop_map(|k| cmd(vec!["GETDEL".into(), k])),
        (key(), val()).prop_map(|(k, v)| cmd(vec!["SETNX".into(), k, v])),
        (key(), val()).prop_map(|(k, v)| cmd(vec!["GETSET".into(), k, v])),
        (key(), 0u8..20, prop::sample::select(&["0", "1"][..])).prop_map(|(k, o, b)| cmd(vec![
            "SETBIT".into(),
            k,
            o.to_string(),
            b.into()
        ])),
        (key(), 0u8..20).prop_map(|(k, o)| cmd(vec!["GETBIT".into(), k, o.to_string()])),
        key().prop_map(|k| cmd(vec!["BITCOUNT".into(), k])),
        (key(), prop::sample::select(&["0", "1"][..])).prop_map(|(k, b)| cmd(vec!["BITPOS".into(), k, b.into()])),
        (prop::sample::select(&["AND", "OR", "XOR"][..]), key(), key(), key()).prop_map(|(op, d, a, b)| cmd(vec![
            "BITOP".into(),
            op.into(),
            d,
            a,
            b
        ])),
    ]
}

fn generic() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), key()).prop_map(|(a, b)| cmd(vec!["DEL".into(), a, b])),
        (key(), key()).prop_map(|(a, b)| cmd(vec!["EXISTS".into(), a, b])),
        key().prop_map(|k| cmd(vec!["TYPE".into(), k])),
        (key(), key()).prop_map(|(a, b)| cmd(vec!["RENAME".into(), a, b])),
        (key(), key()).prop_map(|(a, b)| cmd(vec!["RENAMENX".into(), a, b])),
        (key(), key()).prop_map(|(a, b)| cmd(vec!["COPY".into(), a, b])),
        (key(), prop::sample::select(&["100", "1000", "0", "-1"][..])).prop_map(|(k, t)| cmd(vec![
            "EXPIRE".into(),
            k,
            t.into()
        ])),
        (key(), prop::sample::select(&["NX", "XX", "GT", "LT"][..])).prop_map(|(k, o)| cmd(vec![
            "EXPIRE".into(),
            k,
            "500".into(),
            o.into()
        ])),
        key().prop_map(|k| cmd(vec!["TTL".into(), k])),
        key().prop_map(|k| cmd(vec!["PERSIST".into(), k])),
        Just(cmd(vec!["KEYS".into(), "*".into()])),
        Just(cmd(vec!["DBSIZE".into()])),
        key().prop_map(|k| cmd(vec!["OBJECT".into(), "ENCODING".into(), k])),
    ]
}

fn lists() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), val(), val()).prop_map(|(k, a, b)| cmd(vec!["LPUSH".into(), k, a, b])),
        (key(), val()).prop_map(|(k, a)| cmd(vec!["RPUSH".into(), k, a])),
        (key(), val()).prop_map(|(k, a)| cmd(vec!["LPUSHX".into(), k, a])),
        key().prop_map(|k| cmd(vec!["LPOP".into(), k])),
        (key(), 0u8..4).prop_map(|(k, n)| cmd(vec!["RPOP".into(), k, n.to_string()])),
        key().prop_map(|k| cmd(vec!["LLEN".into(), k])),
        (key(), idx(), idx()).prop_map(|(k, a, b)| cmd(vec!["LRANGE".into(), k, a, b])),
        (key(), idx()).prop_map(|(k, i)| cmd(vec!["LINDEX".into(), k, i])),
        (key(), idx(), val()).prop_map(|(k, i, v)| cmd(vec!["LSET".into(), k, i, v])),
        (key(), idx(), val()).prop_map(|(k, i, v)| cmd(vec!["LREM".into(), k, i, v])),
        (key(), idx(), idx()).prop_map(|(k, a, b)| cmd(vec!["LTRIM".into(), k, a, b])),
        (key(), prop::sample::select(&["BEFORE", "AFTER"][..]), val(), val()).prop_map(|(k, w, p, v)| cmd(vec![
            "LINSERT".into(),
            k,
            w.into(),
            p,
            v
        ])),
        (key(), val()).prop_map(|(k, v)| cmd(vec!["LPOS".into(), k, v])),
        (
            key(),
            key(),
            prop::sample::select(&["LEFT", "RIGHT"][..]),
            prop::sample::select(&["LEFT", "RIGHT"][..])
        )
            .prop_map(|(a, b, x, y)| cmd(vec!["LMOVE".into(), a, b, x.into(), y.into()])),
        (key(), key()).prop_map(|(a, b)| cmd(vec!["RPOPLPUSH".into(), a, b])),
    ]
}

fn hashes() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), field(), val()).prop_map(|(k, f, v)| cmd(vec!["HSET".into(), k, f, v])),
        (key(), field()).prop_map(|(k, f)| cmd(vec!["HGET".into(), k, f])),
        (key(), field()).prop_map(|(k, f)| cmd(vec!["HDEL".into(), k, f])),
        key().prop_map(|k| cmd(vec!["HLEN".into(), k])),
        (key(), field()).prop_map(|(k, f)| cmd(vec!["HEXISTS".into(), k, f])),
        (key(), field(), idx()).prop_map(|(k, f, i)| cmd(vec!["HINCRBY".into(), k, f, i])),
        (key(), field(), prop::sample::select(&["0.5", "-2"][..])).prop_map(|(k, f, v)| cmd(vec![
            "HINCRBYFLOAT".into(),
            k,
            f,
            v.into()
        ])),
        key().prop_map(|k| cmd(vec!["HGETALL".into(), k])),
        key().prop_map(|k| cmd(vec!["HKEYS".into(), k])),
        (key(), field(), field()).prop_map(|(k, a, b)| cmd(vec!["HMGET".into(), k, a, b])),
        (key(), field(), val()).prop_map(|(k, f, v)| cmd(vec!["HSETNX".into(), k, f, v])),
        (key(), field()).prop_map(|(k, f)| cmd(vec!["HSTRLEN".into(), k, f])),
    ]
}

fn sets() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), val(), val()).prop_map(|(k, a, b)| cmd(vec!["SADD".into(), k, a, b])),
        (key(), val()).prop_map(|(k, a)| cmd(vec!["SREM".into(), k, a])),
        key().prop_map(|k| cmd(vec!["SCARD".into(), k])),
        (key(), val()).prop_map(|(k, a)| cmd(vec!["SISMEMBER".into(), k, a])),
        (key(), val(), val()).prop_map(|(k, a, b)| cmd(vec!["SMISMEMBER".into(), k, a, b])),
        key().prop_map(|k| cmd(vec!["SMEMBERS".into(), k])),
        (prop::sample::select(&["SINTER", "SUNION", "SDIFF"][..]), key(), key()).prop_map(|(c, a, b)| cmd(vec![
            c.into(),
            a,
            b
        ])),
        (
            prop::sample::select(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"][..]),
            key(),
            key(),
            key()
        )
            .prop_map(|(c, d, a, b)| cmd(vec![c.into(), d, a, b])),
        (key(), key(), val()).prop_map(|(a, b, m)| cmd(vec!["SMOVE".into(), a, b, m])),
    ]
}

fn zsets() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), score(), val()).prop_map(|(k, s, m)| cmd(vec!["ZADD".into(), k, s, m])),
        (
            key(),
            prop::sample::select(&["NX", "XX", "GT", "LT", "CH"][..]),
            score(),
            val()
        )
            .prop_map(|(k, o, s, m)| cmd(vec!["ZADD".into(), k, o.into(), s, m])),
        (key(), val()).prop_map(|(k, m)| cmd(vec!["ZREM".into(), k, m])),
        (key(), val()).prop_map(|(k, m)| cmd(vec!["ZSCORE".into(), k, m])),
        (key(), score(), val()).prop_map(|(k, s, m)| cmd(vec!["ZINCRBY".into(), k, s, m])),
        key().prop_map(|k| cmd(vec!["ZCARD".into(), k])),
        (key(), idx(), idx()).prop_map(|(k, a, b)| cmd(vec!["ZRANGE".into(), k, a, b, "WITHSCORES".into()])),
        (key(), score(), score()).prop_map(|(k, a, b)| cmd(vec!["ZRANGEBYSCORE".into(), k, a, b])),
        (key(), score(), score()).prop_map(|(k, a, b)| cmd(vec!["ZCOUNT".into(), k, a, b])),
        (key(), val()).prop_map(|(k, m)| cmd(vec!["ZRANK".into(), k, m])),
        (key(), val()).prop_map(|(k, m)| cmd(vec!["ZREVRANK".into(), k, m])),
        key().prop_map(|k| cmd(vec!["ZPOPMIN".into(), k])),
        (key(), 0u8..3).prop_map(|(k, n)| cmd(vec!["ZPOPMAX".into(), k, n.to_string()])),
        (key(), idx(), idx()).prop_map(|(k, a, b)| cmd(vec!["ZREMRANGEBYRANK".into(), k, a, b])),
        (key(), key(), key()).prop_map(|(d, a, b)| cmd(vec!["ZUNIONSTORE".into(), d, "2".into(), a, b])),
        (key(), key(), key()).prop_map(|(d, a, b)| cmd(vec![
            "ZINTERSTORE".into(),
            d,
            "2".into(),
            a,
            b,
            "AGGREGATE".into(),
            "MAX".into()
        ])),
        key().prop_map(|k| cmd(vec!["ZLEXCOUNT".into(), k, "-".into(), "+".into()])),
    ]
}

fn streams() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), 1u8..6, field(), val()).prop_map(|(k, id, f, v)| cmd(vec!["XADD".into(), k, format!("{id}-1"), f, v])),
        key().prop_map(|k| cmd(vec!["XLEN".into(), k])),
        key().prop_map(|k| cmd(vec!["XRANGE".into(), k, "-".into(), "+".into()])),
        (key(), 1u8..6).prop_map(|(k, id)| cmd(vec!["XDEL".into(), k, format!("{id}-1")])),
        (key(), 0u8..3).prop_map(|(k, n)| cmd(vec!["XTRIM".into(), k, "MAXLEN".into(), n.to_string()])),
    ]
}

fn any_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![strings(), generic(), lists(), hashes(), sets(), zsets(), streams()]
}

/// Commands whose reply order Redis does not specify.
fn unordered(name: &str) -> bool {
    matches!(
        name.to_ascii_uppercase().as_str(),
        "SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "HGETALL" | "HKEYS" | "HVALS" | "KEYS"
    )
}

#[test]
fn random_sequences_match_redis() {
    let server = support::server();
    let redis = support::redis_server(&[]);
    // proptest's runner takes an `Fn`, so the clients live in RefCells.
    let ours = std::cell::RefCell::new(RawClient::connect(server.addr));
    let theirs = std::cell::RefCell::new(RawClient::connect(redis.addr));
    let cases = std::env::var("FERROKV_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(any_command(), 1..40), |seq| {
        let mut ours = ours.borrow_mut();
        let mut theirs = theirs.borrow_mut();
        assert_eq!(ours.cmd(&["FLUSHALL"]), theirs.cmd(&["FLUSHALL"]));
        for (i, c) in seq.iter().enumerate() {
            let a = ours.cmd(c);
            let b = theirs.cmd(c);
            let (a, b) = if unordered(&c[0]) {
                (a.sorted(), b.sorted())
            } else {
                (a, b)
            };
            if a != b {
                return Err(TestCaseError::fail(format!(
                    "command #{i} {c:?}: ferrokv replied {a:?}, redis replied {b:?}"
                )));
            }
        }
        // The final keyspaces must agree too.
        let ka = ours.cmd(&["KEYS", "*"]).sorted();
        let kb = theirs.cmd(&["KEYS", "*"]).sorted();
        if ka != kb {
            return Err(TestCaseError::fail(format!("keyspaces differ: {ka:?} vs {kb:?}")));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Sanity: the comparison really ran against two live servers.
    assert_eq!(ours.borrow_mut().cmd(&["PING"]), Frame::Simple("PONG".into()));
}
