//! Black-box tests of the hash commands: differential against Redis 7.0.15
//! (same commands on both, replies compared) and property checks where
//! Redis' answer is random or its order unspecified.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::{Diff, Frame, RawClient, redis_server, server, server_with};

fn bulk(f: &Frame) -> Vec<u8> {
    match f {
        Frame::Bulk(b) => b.clone(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

fn items(f: &Frame) -> Vec<Frame> {
    match f {
        Frame::Array(v) | Frame::Set(v) => v.clone(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// Field → value from a flat RESP2 array or a RESP3 map.
fn pairs(f: &Frame) -> BTreeMap<Vec<u8>, Vec<u8>> {
    match f {
        Frame::Map(v) => v.iter().map(|(k, v)| (bulk(k), bulk(v))).collect(),
        Frame::Array(v) => v.chunks(2).map(|p| (bulk(&p[0]), bulk(&p[1]))).collect(),
        other => panic!("expected a map or a flat array, got {other:?}"),
    }
}

/// Compare OBJECT ENCODING of `key` on both servers (and with `expected`).
fn check_encoding(d: &mut Diff, key: &str, expected: &str) -> bool {
    let (ours, theirs) = d.both(&["OBJECT", "ENCODING", key]);
    assert_eq!(theirs, Frame::bulk(expected), "redis encoding of {key}");
    assert_eq!(ours, theirs, "OBJECT ENCODING {key}");
    true
}

/// Every field/value of a hash through HSCAN, with `opts` after the cursor.
fn hscan_all(c: &mut RawClient, key: &str, opts: &[&str]) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
    let mut cursor = "0".to_string();
    let mut out = BTreeMap::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["HSCAN", key, &cursor];
        args.extend_from_slice(opts);
        let reply = items(&c.cmd(&args));
        calls += 1;
        for (k, v) in pairs(&reply[1]) {
            out.insert(k, v);
        }
        cursor = String::from_utf8(bulk(&reply[0])).expect("cursor is ascii");
        if cursor == "0" {
            return (out, calls);
        }
        assert!(calls < 100_000, "HSCAN does not terminate");
    }
}

#[test]
fn hset_hget_hmset_hmget_hdel_and_friends_match_redis() {
    let mut d = Diff::new();
    d.check(&["HSET", "h", "a", "1", "b", "2", "c", "3"]);
    d.check(&["HSET", "h", "b", "5", "d", "4"]);
    // Small hashes keep insertion order (listpack), so order is compared too.
    d.check(&["HGETALL", "h"]);
    d.check(&["HDEL", "h", "a"]);
    d.check(&["HSET", "h", "a", "9"]);
    d.check(&["HGETALL", "h"]);
    d.check(&["HKEYS", "h"]);
    d.check(&["HVALS", "h"]);
    d.check(&["HLEN", "h"]);
    d.check(&["HMSET", "h", "x", "1", "y", "2"]);
    d.check(&["HGET", "h", "x"]);
    d.check(&["HGET", "h", "nope"]);
    d.check(&["HGET", "nokey", "x"]);
    d.check(&["HMGET", "h", "a", "nope", "x"]);
    d.check(&["HMGET", "nokey", "a", "b"]);
    d.check(&["HSETNX", "h", "a", "2"]);
    d.check(&["HSETNX", "h", "new", "2"]);
    d.check(&["HSETNX", "fresh", "f", "v"]);
    d.check(&["HGETALL", "fresh"]);
    d.check(&["HSTRLEN", "h", "a"]);
    d.check(&["HSTRLEN", "h", "nope"]);
    d.check(&["HSTRLEN", "nokey", "a"]);
    d.check(&["HEXISTS", "h", "a"]);
    d.check(&["HEXISTS", "h", "nope"]);
    d.check(&["HEXISTS", "nokey", "a"]);
    d.check(&["HLEN", "nokey"]);
    d.check(&["HKEYS", "nokey"]);
    d.check(&["HVALS", "nokey"]);
    d.check(&["HGETALL", "nokey"]);
    d.check(&["HDEL", "h", "nope"]);
    d.check(&["HDEL", "nokey", "a"]);
    d.check(&["HSET", "e", "f", "v"]);
    d.check(&["HDEL", "e", "f", "nope", "f"]);
    d.check(&["HLEN", "e"]);
    d.check(&["HGETALL", "e"]);
    // Binary-safe fields and values, empty strings included.
    d.check(&["HSET", "bin", "", "", "a\r\nb", "\0\u{1}"]);
    d.check(&["HGETALL", "bin"]);
    d.check(&["HSTRLEN", "bin", "a\r\nb"]);
    d.check(&["HGETALL", "h"]);
}

#[test]
fn hash_errors_match_redis() {
    let mut d = Diff::new();
    d.check(&["SADD", "s", "m"]);
    d.check(&["HSET", "h", "f", "v"]);
    for args in [
        &["HSET", "s", "a", "1"][..],
        &["HMSET", "s", "a", "1"],
        &["HSETNX", "s", "a", "1"],
        &["HGET", "s", "a"],
        &["HMGET", "s", "a"],
        &["HDEL", "s", "a"],
        &["HEXISTS", "s", "a"],
        &["HLEN", "s"],
        &["HSTRLEN", "s", "a"],
        &["HKEYS", "s"],
        &["HVALS", "s"],
        &["HGETALL", "s"],
        &["HINCRBY", "s", "a", "1"],
        &["HINCRBYFLOAT", "s", "a", "1"],
        &["HSCAN", "s", "0"],
        &["HSCAN", "s", "x"],
        &["HRANDFIELD", "s"],
        &["HRANDFIELD", "s", "1"],
        &["HRANDFIELD", "s", "0"],
        &["HRANDFIELD", "s", "x"],
        // Arity, with the lower-case command name Redis uses.
        &["HSET", "h", "a"],
        &["HSET", "h", "a", "1", "b"],
        &["HMSET", "h", "a"],
        &["HMSET", "h", "a", "1", "b"],
        &["HGET", "h"],
        &["HMGET", "h"],
        &["HDEL", "h"],
        &["HSETNX", "h", "a"],
        &["HINCRBY", "h", "a"],
        &["HRANDFIELD"],
        &["HSCAN", "h"],
        // HSCAN: the cursor is parsed before the key is looked up; options
        // only once the key exists.
        &["HSCAN", "nokey", "x"],
        &["HSCAN", "h", "x"],
        &["HSCAN", "h", "18446744073709551616"],
        &["HSCAN", "h", " 1"],
        &["HSCAN", "h", "0", "COUNT", "0"],
        &["HSCAN", "h", "0", "COUNT", "-1"],
        &["HSCAN", "h", "0", "COUNT", "x"],
        &["HSCAN", "h", "0", "COUNT"],
        &["HSCAN", "h", "0", "MATCH"],
        &["HSCAN", "h", "0", "TYPE", "string"],
        &["HSCAN", "h", "0", "NOVALUES"],
        // HRANDFIELD
        &["HRANDFIELD", "h", "x"],
        &["HRANDFIELD", "h", "1", "x"],
        &["HRANDFIELD", "h", "1", "withvalues", "x"],
        &["HRANDFIELD", "h", "-9223372036854775808"],
        &["HRANDFIELD", "h", "-9223372036854775807", "WITHVALUES"],
        &["HRANDFIELD", "h", "4611686018427387904", "WITHVALUES"],
    ] {
        d.check_error(args);
    }
    // Options are not validated for a missing key (Redis answers the empty scan).
    d.check(&["HSCAN", "nokey", "0", "foo"]);
    d.check(&["HSCAN", "nokey", "0", "COUNT", "0"]);
    // A huge positive count is fine: it means "the whole hash".
    d.check(&["HRANDFIELD", "h", "4611686018427387903", "WITHVALUES"]);
    d.check(&["HRANDFIELD", "h", "9223372036854775807"]);
    d.check(&["HRANDFIELD", "nokey", "-9223372036854775807"]);
}

#[test]
fn hincrby_and_hincrbyfloat_match_redis() {
    let mut d = Diff::new();
    for args in [
        &["HINCRBY", "h", "n", "5"][..],
        &["HINCRBY", "h", "n", "-7"],
        &["HINCRBY", "h", "n", "x"],
        &["HINCRBY", "h", "n", "1.5"],
        &["HINCRBY", "h", "n", "9223372036854775808"],
        &["HINCRBY", "h", "n", "9223372036854775807"],
        &["HINCRBY", "h", "big", "9223372036854775807"],
        &["HINCRBY", "h", "big", "1"],
        &["HINCRBY", "h", "neg", "-9223372036854775808"],
        &["HINCRBY", "h", "neg", "-1"],
        &["HINCRBY", "h", "neg", "0"],
        &[
            "HSET", "h", "s", "str", "sp", " 1", "plus", "+1", "lead", "01", "e", "1e3", "hex", "0x10",
        ],
        &["HINCRBY", "h", "s", "1"],
        &["HINCRBY", "h", "sp", "1"],
        &["HINCRBY", "h", "plus", "1"],
        &["HINCRBY", "h", "lead", "1"],
        &["HINCRBY", "h", "e", "1"],
        &["HINCRBYFLOAT", "h", "s", "1"],
        &["HINCRBYFLOAT", "h", "sp", "1"],
        &["HINCRBYFLOAT", "h", "plus", "1"],
        &["HINCRBYFLOAT", "h", "lead", "1"],
        &["HINCRBYFLOAT", "h", "e", "1"],
        &["HINCRBYFLOAT", "h", "hex", "1"],
        &["HINCRBYFLOAT", "h", "hex", "0x1p4"],
        &["HINCRBY", "h", "e", "1"],
        &["HINCRBYFLOAT", "h", "f", "10.5"],
        &["HINCRBYFLOAT", "h", "f", "1.5"],
        &["HINCRBYFLOAT", "h", "f", "-12"],
        &["HINCRBYFLOAT", "h", "f", "inf"],
        &["HINCRBYFLOAT", "h", "f", "-inf"],
        &["HINCRBYFLOAT", "h", "f", "nan"],
        &["HINCRBYFLOAT", "h", "f", "x"],
        &["HINCRBYFLOAT", "h", "f", ""],
        &["HINCRBYFLOAT", "h", "f", " 1"],
        &["HINCRBYFLOAT", "h", "f", "1e"],
        &["HINCRBYFLOAT", "h", "g", "1e20"],
        &["HINCRBYFLOAT", "h", "g2", "5.0e3"],
        &["HINCRBYFLOAT", "h", "g3", "1.23456789012345678e-5"],
        &["HINCRBYFLOAT", "h", "g4", "-0.0"],
        &["HGET", "h", "g4"],
        &["HINCRBYFLOAT", "h", "g5", "3e-320"],
        &["HINCRBYFLOAT", "h", "g6", "1."],
        &["HINCRBYFLOAT", "h", "g7", ".5"],
        &["HINCRBYFLOAT", "h", "g8", "+2.25"],
        &["HINCRBYFLOAT", "h", "g8", "0.25"],
        &["HINCRBYFLOAT", "h", "big", "1"],
        &["HINCRBYFLOAT", "fresh", "x", "2.5"],
    ] {
        d.check(args);
    }
    // Both leave the same hash behind (listpack: same order too).
    d.check(&["HGETALL", "h"]);
    d.check(&["HGETALL", "fresh"]);
}

#[test]
fn hscan_small_hash_returns_everything_at_once() {
    let mut d = Diff::new();
    d.check(&["HSET", "h", "a1", "1", "b1", "2", "a2", "3", "c", "4"]);
    for args in [
        &["HSCAN", "h", "0"][..],
        &["HSCAN", "h", "0", "COUNT", "1"],
        &["HSCAN", "h", "123", "COUNT", "1"],
        &["HSCAN", "h", "0", "MATCH", "a*"],
        &["HSCAN", "h", "0", "MATCH", "*"],
        &["HSCAN", "h", "0", "MATCH", "nothing*"],
        &["HSCAN", "h", "0", "count", "1", "match", "b*", "count", "2"],
        &["HSCAN", "h", "-1"],
        &["HSCAN", "h", "+5"],
        &["HSCAN", "h", "01"],
        &["HSCAN", "h", ""],
        &["HSCAN", "h", "18446744073709551615"],
        &["HSCAN", "nokey", "0"],
    ] {
        d.check(args);
    }
}

#[test]
fn hscan_large_hash_iterates_everything_with_a_cursor() {
    let mut d = Diff::new();
    let n = 1000;
    for i in 0..n {
        let (f, v) = (format!("field:{i}"), format!("v{i}"));
        d.check(&["HSET", "h", &f, &v]);
    }
    for opts in [&[][..], &["COUNT", "7"], &["COUNT", "100", "MATCH", "field:1*"]] {
        let (ours, calls) = hscan_all(&mut d.ours, "h", opts);
        let (theirs, _) = hscan_all(&mut d.theirs, "h", opts);
        assert_eq!(ours, theirs, "HSCAN {opts:?}");
        assert!(calls > 1, "a hashtable is scanned in several calls");
    }
    // A cursor survives the table growing and shrinking between calls: every
    // field present for the whole scan is returned.
    let mut c = RawClient::connect(d._server.addr);
    let mut cursor = "0".to_string();
    let mut seen = BTreeSet::new();
    let mut round = 0;
    loop {
        let reply = items(&c.cmd(&["HSCAN", "h", &cursor, "COUNT", "20"]));
        seen.extend(pairs(&reply[1]).into_keys());
        cursor = String::from_utf8(bulk(&reply[0])).expect("ascii");
        round += 1;
        if round <= 10 {
            for j in 0..400 {
                c.cmd(&["HSET", "h", &format!("extra:{round}:{j}"), "x"]);
            }
        } else if round <= 20 {
            let mut args = vec!["HDEL".to_string(), "h".to_string()];
            args.extend((0..400).map(|j| format!("extra:{}:{j}", round - 10)));
            c.cmd(&args);
        }
        if cursor == "0" {
            break;
        }
    }
    for i in 0..n {
        assert!(seen.contains(format!("field:{i}").as_bytes()), "field:{i} missed");
    }
}

#[test]
fn listpack_to_hashtable_transitions() {
    let mut d = Diff::new();
    let long = "x".repeat(65);
    let edge = "y".repeat(64);
    d.check(&["HSET", "small", "f", &edge]);
    d.check(&["HSET", "longval", "f", &long]);
    d.check(&["HSET", "longfield", &long, "v"]);
    // Redis 7.0.15's built-in default (and Debian's redis.conf) is
    // hash-max-listpack-entries 512.
    for i in 0..512 {
        d.check(&["HSET", "many", &format!("f{i}"), "v"]);
    }
    // Still a listpack at exactly 512 entries: one-call HSCAN, insertion order.
    d.check(&["HSCAN", "many", "0", "COUNT", "1"]);
    d.check(&["HGETALL", "many"]);
    let has_object = check_encoding(&mut d, "small", "listpack");
    check_encoding(&mut d, "longval", "hashtable");
    check_encoding(&mut d, "longfield", "hashtable");
    check_encoding(&mut d, "many", "listpack");
    d.check(&["HSET", "many", "f512", "v"]);
    check_encoding(&mut d, "many", "hashtable");
    // Past the limit HSCAN needs a cursor; shrinking does not convert back.
    let r = items(&d.ours.cmd(&["HSCAN", "many", "0", "COUNT", "1"]));
    assert_ne!(r[0], Frame::bulk("0"), "a hashtable is not returned in one call");
    for i in 0..500 {
        d.check(&["HDEL", "many", &format!("f{i}")]);
    }
    check_encoding(&mut d, "many", "hashtable");
    d.check_unordered(&["HKEYS", "many"]);
    // HINCRBYFLOAT producing a value longer than 64 bytes converts too.
    d.check(&["HSET", "grow", "f", "1"]);
    d.check(&["HINCRBYFLOAT", "grow", "f", "1e70"]);
    check_encoding(&mut d, "grow", "hashtable");
    if !has_object {
        eprintln!("OBJECT is not in this build: encodings checked through HSCAN/order only");
    }
}

#[test]
fn resp3_shapes_match_redis() {
    let mut d = Diff::new();
    // HELLO's server/version fields legitimately differ; only switch protocol.
    d.both(&["HELLO", "3"]);
    d.check(&["HSET", "h", "a", "1", "b", "2"]);
    let m = d.check(&["HGETALL", "h"]);
    assert!(matches!(m, Frame::Map(_)), "HGETALL is a map in RESP3: {m:?}");
    d.check(&["HGETALL", "nokey"]);
    d.check(&["HGET", "nokey", "a"]);
    d.check(&["HMGET", "h", "a", "nope"]);
    d.check(&["HKEYS", "h"]);
    d.check(&["HRANDFIELD", "nokey"]);
    d.check(&["HRANDFIELD", "nokey", "3", "WITHVALUES"]);
    // Count ≥ size answers the whole hash: pairs are 2-element arrays.
    let r = d.check(&["HRANDFIELD", "h", "5", "WITHVALUES"]);
    assert_eq!(
        r,
        Frame::Array(vec![
            Frame::Array(vec![Frame::bulk("a"), Frame::bulk("1")]),
            Frame::Array(vec![Frame::bulk("b"), Frame::bulk("2")]),
        ])
    );
    d.check(&["HSCAN", "h", "0"]);
    d.check(&["HINCRBYFLOAT", "h", "c", "1.5"]);
}

#[test]
fn hrandfield_properties() {
    // Random replies cannot be compared with Redis; shapes and membership are.
    let s = server();
    let mut c = RawClient::connect(s.addr);
    let mut all = BTreeMap::new();
    for i in 0..10 {
        let (f, v) = (format!("f{i}"), format!("v{i}"));
        c.cmd(&["HSET", "small", &f, &v]);
        all.insert(f.into_bytes(), v.into_bytes());
    }
    for i in 0..300 {
        c.cmd(&["HSET", "big", &format!("f{i}"), &format!("v{i}")]);
    }
    let one = bulk(&c.cmd(&["HRANDFIELD", "small"]));
    assert!(all.contains_key(&one));
    for key in ["small", "big"] {
        let len = if key == "small" { 10 } else { 300 };
        // Positive count below the size: distinct fields.
        let r = items(&c.cmd(&["HRANDFIELD", key, "5"]));
        let distinct: BTreeSet<Vec<u8>> = r.iter().map(bulk).collect();
        assert_eq!((r.len(), distinct.len()), (5, 5), "{key}: {r:?}");
        // Negative count: exactly |count| picks, repetitions allowed.
        let r = items(&c.cmd(&["HRANDFIELD", key, "-50"]));
        assert_eq!(r.len(), 50);
        let r = items(&c.cmd(&["HRANDFIELD", key, "-20", "WITHVALUES"]));
        assert_eq!(r.len(), 40);
        for p in r.chunks(2) {
            let (f, v) = (bulk(&p[0]), bulk(&p[1]));
            assert_eq!(v, [b"v", &f[1..]].concat(), "value belongs to its field");
        }
        // Count above the size: every field once.
        let r = items(&c.cmd(&["HRANDFIELD", key, "1000", "WITHVALUES"]));
        assert_eq!(r.len(), 2 * len);
        assert_eq!(pairs(&Frame::Array(r)).len(), len);
    }
    // On a listpack, unique samples come in hash order (as Redis' listpack sampling).
    let order: Vec<Vec<u8>> = items(&c.cmd(&["HKEYS", "small"])).iter().map(bulk).collect();
    let r: Vec<Vec<u8>> = items(&c.cmd(&["HRANDFIELD", "small", "6"])).iter().map(bulk).collect();
    let pos: Vec<usize> = r
        .iter()
        .map(|f| order.iter().position(|o| o == f).expect("member"))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    // RESP3: pairs with repetition are 2-element arrays.
    c.cmd(&["HELLO", "3"]);
    let r = items(&c.cmd(&["HRANDFIELD", "big", "-3", "WITHVALUES"]));
    assert_eq!(r.len(), 3);
    for p in r {
        assert_eq!(items(&p).len(), 2);
    }
    // A negative count too large to answer is refused instead of exhausting memory.
    assert!(c.cmd(&["HRANDFIELD", "big", "-9223372036854775807"]).is_error());
}

/// Both servers with keyspace notifications on; a pattern subscriber on each.
fn notifying_pair() -> (Diff, RawClient, RawClient) {
    let ours = server_with(ferrokv_node::config::ServeArgs {
        notify_keyspace_events: Some("KEA".into()),
        ..Default::default()
    });
    let redis = redis_server(&["--notify-keyspace-events", "KEA"]);
    let mut sub_ours = RawClient::connect(ours.addr);
    let mut sub_theirs = RawClient::connect(redis.addr);
    for s in [&mut sub_ours, &mut sub_theirs] {
        s.cmd(&["PSUBSCRIBE", "__keyevent@0__:*"]);
    }
    let d = Diff {
        ours: RawClient::connect(ours.addr),
        theirs: RawClient::connect(redis.addr),
        _server: ours,
        _redis: redis,
    };
    (d, sub_ours, sub_theirs)
}

/// Events (`event key`) a subscriber received up to the `end` marker.
fn events(sub: &mut RawClient, publisher: &mut RawClient) -> Vec<String> {
    publisher.cmd(&["PUBLISH", "__keyevent@0__:end", "end"]);
    sub.set_timeout(Duration::from_secs(5));
    let mut out = Vec::new();
    loop {
        let Frame::Array(m) = sub.read() else {
            panic!("expected a pmessage")
        };
        let channel = String::from_utf8(bulk(&m[2])).expect("utf8");
        let event = channel.trim_start_matches("__keyevent@0__:").to_string();
        if event == "end" {
            return out;
        }
        out.push(format!("{event} {}", String::from_utf8_lossy(&bulk(&m[3]))));
    }
}

#[test]
fn notifications_match_redis() {
    let (mut d, mut sub_ours, mut sub_theirs) = notifying_pair();
    for args in [
        &["HSET", "h", "a", "1", "b", "2"][..],
        &["HSET", "h", "a", "1"],
        &["HMSET", "h", "c", "3"],
        &["HSETNX", "h", "a", "9"],
        &["HSETNX", "h", "d", "4"],
        &["HINCRBY", "h", "n", "1"],
        &["HINCRBY", "h", "a", "x"],
        &["HINCRBYFLOAT", "h", "x", "1.5"],
        &["HDEL", "h", "nope"],
        &["HDEL", "h", "a", "b", "c"],
        &["HDEL", "h", "d", "n", "x"],
        &["HGET", "h", "a"],
    ] {
        d.check(args);
    }
    let ours = events(&mut sub_ours, &mut d.ours);
    let theirs = events(&mut sub_theirs, &mut d.theirs);
    assert_eq!(ours, theirs);
    assert!(ours.contains(&"del h".to_string()), "{ours:?}");
}

#[test]
fn watch_sees_hash_changes_and_multi_runs_hash_commands() {
    let s = server();
    let mut a = RawClient::connect(s.addr);
    let mut b = RawClient::connect(s.addr);
    a.cmd(&["HSET", "h", "f", "1"]);
    a.cmd(&["WATCH", "h"]);
    b.cmd(&["HINCRBY", "h", "f", "1"]);
    a.cmd(&["MULTI"]);
    a.cmd(&["HGET", "h", "f"]);
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray, "HINCRBY must invalidate WATCH");
    // A failed write does not touch the key.
    a.cmd(&["WATCH", "h"]);
    assert!(b.cmd(&["HINCRBY", "h", "f", "x"]).is_error());
    b.cmd(&["HGET", "h", "f"]);
    a.cmd(&["MULTI"]);
    a.cmd(&["HSET", "h", "g", "2"]);
    a.cmd(&["HGETALL", "h"]);
    assert_eq!(
        a.cmd(&["EXEC"]),
        Frame::Array(vec![
            Frame::Int(1),
            Frame::Array(vec![
                Frame::bulk("f"),
                Frame::bulk("2"),
                Frame::bulk("g"),
                Frame::bulk("2")
            ])
        ])
    );
}

#[test]
fn works_with_the_redis_crate() {
    use redis::Commands;
    let s = server();
    let client = redis::Client::open(s.url()).expect("client");
    let mut con = client.get_connection().expect("connect");
    let () = con
        .hset_multiple("user:1", &[("name", "ada"), ("lang", "rust")])
        .expect("hmset");
    let name: String = con.hget("user:1", "name").expect("hget");
    assert_eq!(name, "ada");
    let all: std::collections::HashMap<String, String> = con.hgetall("user:1").expect("hgetall");
    assert_eq!(all.len(), 2);
    assert_eq!(all["lang"], "rust");
    let n: i64 = con.hincr("user:1", "visits", 3).expect("hincrby");
    assert_eq!(n, 3);
    let f: f64 = con.hincr("user:1", "score", 1.25).expect("hincrbyfloat");
    assert_eq!(f, 1.25);
    let exists: bool = con.hexists("user:1", "name").expect("hexists");
    assert!(exists);
    let n: usize = con.hdel("user:1", &["name", "nope"]).expect("hdel");
    assert_eq!(n, 1);
    let keys: Vec<String> = con.hkeys("user:1").expect("hkeys");
    assert_eq!(keys, vec!["lang", "visits", "score"]);
    let fields: Vec<(String, String)> = con
        .hscan("user:1")
        .expect("hscan")
        .collect::<Result<_, _>>()
        .expect("hscan items");
    assert_eq!(fields.len(), 3);
    // WRONGTYPE surfaces as a typed error.
    let _: () = con.sadd("s", "m").expect("sadd");
    let err = con.hget::<_, _, Option<String>>("s", "f").expect_err("wrong type");
    assert_eq!(err.code(), Some("WRONGTYPE"));
}
