//! Black-box tests of the list family: every command, option and error
//! compared with a real Redis 7.0 (`support::Diff`), keyspace notifications,
//! and the blocking pops (served by later writes, FIFO among waiters,
//! timeouts, MULTI, disconnects, BLMOVE chains) run as the same scenario on
//! both servers with the replies compared.
//!
//! Tests that need a string key (WRONGTYPE) use SET, which belongs to the
//! strings family; until it is merged they check only what they can and say
//! so on stderr.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrokv_node::config::ServeArgs;
use support::{Diff, Frame, RawClient, RedisServer, Server, redis_server, server, server_with, wait_for};

const WAIT: Duration = Duration::from_secs(10);

fn arr(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| Frame::bulk(s)).collect())
}

fn err(msg: &str) -> Frame {
    Frame::Error(msg.into())
}

/// Create a string key on both servers.
fn set_string(d: &mut Diff, key: &str) -> bool {
    let (ours, theirs) = d.both(&["SET", key, "v"]);
    assert_eq!(theirs, Frame::Simple("OK".into()));
    assert_eq!(ours, theirs);
    true
}

// ---------------------------------------------------------------------------
// Differential: non-blocking commands

#[test]
fn push_pop_and_len_match_redis() {
    let mut d = Diff::new();
    d.check(&["LPUSH", "l", "a", "b", "c"]);
    d.check(&["RPUSH", "l", "d", "e"]);
    d.check(&["LRANGE", "l", "0", "-1"]);
    d.check(&["LPUSHX", "nokey", "a"]);
    d.check(&["RPUSHX", "nokey", "a", "b"]);
    d.check(&["LLEN", "nokey"]);
    d.check(&["LPUSHX", "l", "x", "y"]);
    d.check(&["RPUSHX", "l", "z"]);
    d.check(&["LLEN", "l"]);
    d.check(&["LPOP", "l"]);
    d.check(&["RPOP", "l"]);
    d.check(&["LPOP", "l", "0"]);
    d.check(&["LPOP", "l", "2"]);
    d.check(&["RPOP", "l", "2"]);
    d.check(&["LRANGE", "l", "0", "-1"]);
    d.check(&["RPOP", "l", "100"]);
    d.check(&["LLEN", "l"]);
    // Missing key: null bulk without a count, null array with one (even 0).
    d.check(&["LPOP", "l"]);
    d.check(&["RPOP", "l"]);
    d.check(&["LPOP", "l", "3"]);
    d.check(&["RPOP", "l", "0"]);
    d.check_error(&["LPOP", "l", "-1"]);
    d.check_error(&["LPOP", "l", "abc"]);
    d.check_error(&["RPOP", "l", "1", "2"]);
    d.check_error(&["LPUSH", "l"]);
    d.check_error(&["RPUSHX", "l"]);
    d.check_error(&["LLEN"]);
    d.check_error(&["LLEN", "a", "b"]);
    // Binary-safe elements, including empty ones.
    d.check(&["RPUSH", "bin", "", "a\r\nb", "\u{0}"]);
    d.check(&["LRANGE", "bin", "0", "-1"]);
    d.check(&["RPOP", "bin", "9223372036854775807"]);
}

#[test]
fn range_index_set_trim_match_redis() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "l", "a", "b", "c", "d", "e", "f"]);
    for (s, e) in [
        ("0", "-1"),
        ("1", "2"),
        ("-3", "-1"),
        ("-100", "100"),
        ("4", "2"),
        ("6", "10"),
        ("0", "-7"),
        ("-9223372036854775808", "9223372036854775807"),
        ("5", "5"),
    ] {
        d.check(&["LRANGE", "l", s, e]);
    }
    d.check(&["LRANGE", "nokey", "0", "-1"]);
    d.check_error(&["LRANGE", "l", "a", "1"]);
    d.check_error(&["LRANGE", "nokey", "0", "1.5"]);
    for i in [
        "0",
        "5",
        "-1",
        "-6",
        "6",
        "-7",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        d.check(&["LINDEX", "l", i]);
    }
    // LINDEX looks the key up before parsing the index.
    d.check(&["LINDEX", "nokey", "abc"]);
    d.check_error(&["LINDEX", "l", "abc"]);
    d.check(&["LSET", "l", "0", "A"]);
    d.check(&["LSET", "l", "-1", "F"]);
    d.check_error(&["LSET", "l", "6", "x"]);
    d.check_error(&["LSET", "l", "-7", "x"]);
    d.check_error(&["LSET", "l", "x", "x"]);
    d.check_error(&["LSET", "nokey", "0", "x"]);
    d.check_error(&["LSET", "nokey", "abc", "x"]);
    d.check(&["LRANGE", "l", "0", "-1"]);
    for (s, e) in [("1", "-2"), ("-100", "100"), ("1", "1")] {
        d.check(&["LTRIM", "l", s, e]);
        d.check(&["LRANGE", "l", "0", "-1"]);
    }
    d.check(&["LTRIM", "nokey", "0", "1"]);
    d.check_error(&["LTRIM", "l", "0", "x"]);
    d.check_error(&["LTRIM", "nokey", "x", "0"]);
    // Trimming to nothing deletes the key.
    d.check(&["LTRIM", "l", "5", "1"]);
    d.check(&["LLEN", "l"]);
    d.check(&["RPUSH", "t", "a", "b"]);
    d.check(&["LTRIM", "t", "0", "-3"]);
    d.check(&["LLEN", "t"]);
}

#[test]
fn lrem_and_linsert_match_redis() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "l", "x", "a", "x", "b", "x", "c", "x"]);
    d.check(&["LREM", "l", "2", "x"]);
    d.check(&["LRANGE", "l", "0", "-1"]);
    d.check(&["LREM", "l", "-1", "x"]);
    d.check(&["LRANGE", "l", "0", "-1"]);
    d.check(&["LREM", "l", "0", "nope"]);
    d.check(&["LREM", "l", "0", "x"]);
    d.check(&["LRANGE", "l", "0", "-1"]);
    d.check(&["LREM", "nokey", "1", "x"]);
    d.check_error(&["LREM", "l", "x", "a"]);
    d.check_error(&["LREM", "nokey", "1.0", "a"]);
    d.check(&["RPUSH", "m", "y", "y", "y"]);
    d.check(&["LREM", "m", "-9223372036854775808", "y"]);
    d.check(&["LLEN", "m"]);

    d.check(&["LINSERT", "l", "BEFORE", "b", "B0"]);
    d.check(&["LINSERT", "l", "after", "b", "B1"]);
    d.check(&["LINSERT", "l", "After", "c", "end"]);
    d.check(&["LINSERT", "l", "before", "a", "start"]);
    d.check(&["LINSERT", "l", "before", "missing", "x"]);
    d.check(&["LRANGE", "l", "0", "-1"]);
    d.check(&["LINSERT", "nokey", "before", "a", "x"]);
    d.check_error(&["LINSERT", "l", "middle", "a", "x"]);
    d.check_error(&["LINSERT", "nokey", "middle", "a", "x"]);
    d.check_error(&["LINSERT", "l", "before", "a"]);
}

#[test]
fn lpos_matches_redis() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "l", "a", "b", "c", "1", "2", "3", "c", "c"]);
    for opts in [
        &[][..],
        &["RANK", "1"],
        &["RANK", "2"],
        &["RANK", "-1"],
        &["RANK", "-3"],
        &["RANK", "4"],
        &["COUNT", "0"],
        &["COUNT", "2"],
        &["COUNT", "2", "RANK", "2"],
        &["COUNT", "0", "RANK", "-1"],
        &["COUNT", "10", "RANK", "-2"],
        &["MAXLEN", "3"],
        &["MAXLEN", "7", "COUNT", "0"],
        &["MAXLEN", "2", "RANK", "-1"],
        &["MAXLEN", "0", "COUNT", "0"],
        &["rank", "1", "count", "1", "maxlen", "8"],
        // C `long` negation leaves this rank negative in Redis 7.0.
        &["RANK", "-9223372036854775808"],
        &["RANK", "-9223372036854775808", "COUNT", "2"],
        &["RANK", "9223372036854775807"],
    ] {
        let mut args = vec!["LPOS", "l", "c"];
        args.extend_from_slice(opts);
        d.check(&args);
    }
    d.check(&["LPOS", "l", "zzz"]);
    d.check(&["LPOS", "l", "zzz", "COUNT", "3"]);
    d.check(&["LPOS", "nokey", "a"]);
    d.check(&["LPOS", "nokey", "a", "COUNT", "1"]);
    d.check(&["LPOS", "nokey", "a", "RANK", "-1"]);
    for opts in [
        &["RANK", "0"][..],
        &["RANK", "x"],
        &["COUNT", "-1"],
        &["COUNT", "x"],
        &["MAXLEN", "-1"],
        &["MAXLEN", "1.5"],
        &["RANK"],
        &["COUNT"],
        &["BOGUS", "1"],
        &["COUNT", "1", "RANK"],
    ] {
        let mut args = vec!["LPOS", "l", "c"];
        args.extend_from_slice(opts);
        d.check_error(&args);
        // Options are checked before the key is looked up.
        args[1] = "nokey";
        d.check_error(&args);
    }
}

#[test]
fn lmove_and_rpoplpush_match_redis() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "src", "a", "b", "c", "d"]);
    for (from, to) in [
        ("LEFT", "LEFT"),
        ("LEFT", "RIGHT"),
        ("right", "left"),
        ("Right", "Right"),
    ] {
        d.check(&["LMOVE", "src", "dst", from, to]);
        d.check(&["LRANGE", "dst", "0", "-1"]);
    }
    d.check(&["LLEN", "src"]);
    d.check(&["LMOVE", "src", "dst", "LEFT", "LEFT"]);
    d.check(&["RPUSH", "r", "1", "2", "3"]);
    // Same key: rotation.
    d.check(&["LMOVE", "r", "r", "LEFT", "RIGHT"]);
    d.check(&["RPOPLPUSH", "r", "r"]);
    d.check(&["LRANGE", "r", "0", "-1"]);
    d.check(&["RPUSH", "one", "x"]);
    d.check(&["LMOVE", "one", "one", "RIGHT", "LEFT"]);
    d.check(&["LRANGE", "one", "0", "-1"]);
    d.check(&["RPOPLPUSH", "r", "other"]);
    d.check(&["LRANGE", "other", "0", "-1"]);
    d.check(&["RPOPLPUSH", "nokey", "other"]);
    d.check_error(&["LMOVE", "r", "dst", "UP", "LEFT"]);
    d.check_error(&["LMOVE", "r", "dst", "LEFT", "DOWN"]);
    d.check_error(&["LMOVE", "nokey", "dst", "LEFT", "DOWN"]);
    d.check_error(&["LMOVE", "r", "dst", "LEFT"]);
    d.check_error(&["RPOPLPUSH", "r"]);
}

#[test]
fn lmpop_matches_redis() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "b", "1", "2", "3", "4", "5"]);
    d.check(&["RPUSH", "c", "x"]);
    d.check(&["LMPOP", "2", "a", "b", "LEFT"]);
    d.check(&["LMPOP", "2", "a", "b", "RIGHT", "COUNT", "2"]);
    d.check(&["LMPOP", "3", "a", "b", "c", "left", "count", "10"]);
    d.check(&["LMPOP", "3", "a", "b", "c", "left", "count", "10"]);
    d.check(&["LMPOP", "3", "a", "b", "c", "left"]);
    d.check(&["LLEN", "c"]);
    for bad in [
        &["LMPOP", "0", "a", "LEFT"][..],
        &["LMPOP", "-1", "a", "LEFT"],
        &["LMPOP", "x", "a", "LEFT"],
        &["LMPOP", "2", "a", "LEFT"],
        &["LMPOP", "3", "a", "b", "LEFT"],
        &["LMPOP", "9223372036854775807", "a", "LEFT"],
        &["LMPOP", "1", "a", "UP"],
        &["LMPOP", "1", "a", "LEFT", "COUNT"],
        &["LMPOP", "1", "a", "LEFT", "COUNT", "0"],
        &["LMPOP", "1", "a", "LEFT", "COUNT", "-1"],
        &["LMPOP", "1", "a", "LEFT", "COUNT", "x"],
        &["LMPOP", "1", "a", "LEFT", "COUNT", "1", "COUNT", "1"],
        &["LMPOP", "1", "a", "LEFT", "EXTRA"],
        &["LMPOP", "1", "a"],
    ] {
        d.check_error(bad);
    }
}

#[test]
fn blocking_commands_with_data_or_bad_arguments_match_redis() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "a", "1", "2", "3", "4"]);
    d.check(&["RPUSH", "b", "x", "y"]);
    d.check(&["BLPOP", "nokey", "a", "b", "0"]);
    d.check(&["BRPOP", "nokey", "b", "a", "1.5"]);
    d.check(&["BLMOVE", "a", "d", "RIGHT", "LEFT", "0"]);
    d.check(&["BRPOPLPUSH", "a", "d", "0"]);
    d.check(&["LRANGE", "d", "0", "-1"]);
    d.check(&["BLMPOP", "0", "2", "nokey", "b", "RIGHT", "COUNT", "5"]);
    d.check(&["LLEN", "b"]);
    d.check(&["BLMPOP", "0.5", "1", "d", "LEFT"]);
    for bad in [
        &["BLPOP", "a", "abc"][..],
        &["BLPOP", "a", "-1"],
        &["BLPOP", "a", "inf"],
        &["BLPOP", "a", "-inf"],
        &["BLPOP", "a", "1e20"],
        &["BLPOP", "nokey", "-1"],
        &["BRPOP", "a", "1x"],
        &["BLPOP", "a"],
        &["BLMOVE", "a", "d", "UP", "LEFT", "0"],
        &["BLMOVE", "a", "d", "LEFT", "LEFT", "x"],
        &["BLMOVE", "a", "d", "LEFT", "LEFT", "-0.5"],
        &["BRPOPLPUSH", "a", "d", "x"],
        &["BRPOPLPUSH", "a", "d"],
        &["BLMPOP", "x", "1", "a", "LEFT"],
        &["BLMPOP", "-1", "1", "a", "LEFT"],
        &["BLMPOP", "0", "0", "a", "LEFT"],
        &["BLMPOP", "0", "2", "a", "LEFT"],
        &["BLMPOP", "0", "1", "a", "SIDEWAYS"],
        &["BLMPOP", "0", "1", "a", "LEFT", "COUNT", "0"],
        &["BLMPOP", "0", "1", "a", "LEFT", "COUNT"],
        // Redis checks the timeout after numkeys, direction and COUNT.
        &["BLMPOP", "x", "1", "a", "UP"],
        &["BLMPOP", "0", "1", "a"],
    ] {
        d.check_error(bad);
    }
}

#[test]
fn timeouts_reply_with_null_arrays_in_resp2_and_resp3() {
    let mut d = Diff::new();
    let started = Instant::now();
    // Redis answers every list timeout with a null array, BLMOVE's included.
    assert_eq!(d.check(&["BLPOP", "e1", "e2", "0.05"]), Frame::NullArray);
    assert!(started.elapsed() >= Duration::from_millis(50));
    d.check(&["BRPOP", "e1", "0.01"]);
    d.check(&["BLMOVE", "e1", "e2", "LEFT", "RIGHT", "0.01"]);
    d.check(&["BRPOPLPUSH", "e1", "e2", "0.01"]);
    d.check(&["BLMPOP", "0.01", "2", "e1", "e2", "LEFT", "COUNT", "2"]);
    // A sub-millisecond timeout rounds up to 1 ms rather than to "forever".
    d.check(&["BLPOP", "e1", "0.0001"]);
    d.both(&["HELLO", "3"]);
    assert_eq!(d.check(&["BLPOP", "e1", "0.01"]), Frame::Null);
    d.check(&["BLMOVE", "e1", "e2", "LEFT", "RIGHT", "0.01"]);
    d.check(&["BLMPOP", "0.01", "1", "e1", "RIGHT"]);
    // The other RESP3 nulls of the family.
    d.check(&["LPOP", "e1"]);
    d.check(&["LPOP", "e1", "1"]);
    d.check(&["LINDEX", "e1", "0"]);
    d.check(&["LPOS", "e1", "x"]);
    d.check(&["LMPOP", "1", "e1", "LEFT"]);
    d.check(&["LMOVE", "e1", "e2", "LEFT", "LEFT"]);
    d.check(&["RPUSH", "l", "a"]);
    d.check(&["LPOS", "l", "b"]);
    d.check(&["BLPOP", "l", "0"]);
    // Nothing was created by the timed-out moves.
    d.check(&["LLEN", "e2"]);
}

#[test]
fn blocking_commands_inside_multi_do_not_block() {
    let mut d = Diff::new();
    d.check(&["MULTI"]);
    for cmd in [
        &["BLPOP", "e", "0"][..],
        &["BRPOP", "e", "e2", "0"],
        &["BLMOVE", "e", "d", "LEFT", "LEFT", "0"],
        &["BRPOPLPUSH", "e", "d", "0"],
        &["BLMPOP", "0", "1", "e", "LEFT"],
        &["RPUSH", "e", "a", "b"],
        &["BLPOP", "e", "0"],
        &["BLMOVE", "e", "d", "LEFT", "LEFT", "0"],
        &["BLPOP", "e", "0"],
    ] {
        d.check(cmd);
    }
    let started = Instant::now();
    d.check(&["EXEC"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    d.check(&["LRANGE", "d", "0", "-1"]);
    d.both(&["HELLO", "3"]);
    d.check(&["MULTI"]);
    d.check(&["BLMOVE", "e", "d", "LEFT", "LEFT", "0"]);
    d.check(&["BLPOP", "e", "0"]);
    d.check(&["EXEC"]);
}

#[test]
fn a_list_emptied_inside_multi_counts_as_absent() {
    let mut d = Diff::new();
    d.check(&["MULTI"]);
    for cmd in [
        &["RPUSH", "k", "a"][..],
        &["LPOP", "k"],
        &["LPOP", "k"],
        &["RPOP", "k", "1"],
        &["LSET", "k", "0", "x"],
        &["LPUSHX", "k", "y"],
        &["LINSERT", "k", "BEFORE", "a", "b"],
        &["LREM", "k", "0", "a"],
        &["LTRIM", "k", "0", "1"],
        &["LINDEX", "k", "abc"],
        &["LPOS", "k", "a"],
        &["LMOVE", "k", "k2", "LEFT", "LEFT"],
        &["LMPOP", "1", "k", "LEFT"],
        &["BLPOP", "k", "0"],
        &["LLEN", "k"],
        &["RPUSH", "k", "again"],
        &["LRANGE", "k", "0", "-1"],
    ] {
        d.check(cmd);
    }
    d.check(&["EXEC"]);
    d.check(&["LRANGE", "k", "0", "-1"]);
}

#[test]
fn wrong_type_errors_match_redis() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "l", "a"]);
    if !set_string(&mut d, "s") {
        return;
    }
    for cmd in [
        &["LPUSH", "s", "a"][..],
        &["RPUSH", "s", "a"],
        &["LPUSHX", "s", "a"],
        &["RPUSHX", "s", "a"],
        &["LPOP", "s"],
        &["RPOP", "s", "0"],
        &["LLEN", "s"],
        &["LRANGE", "s", "0", "-1"],
        &["LINDEX", "s", "0"],
        &["LINDEX", "s", "abc"],
        &["LSET", "s", "0", "x"],
        &["LSET", "s", "abc", "x"],
        &["LREM", "s", "0", "x"],
        &["LTRIM", "s", "0", "1"],
        &["LINSERT", "s", "BEFORE", "a", "b"],
        &["LPOS", "s", "a"],
        &["LMOVE", "s", "l", "LEFT", "LEFT"],
        &["LMOVE", "l", "s", "LEFT", "LEFT"],
        &["RPOPLPUSH", "s", "l"],
        &["RPOPLPUSH", "l", "s"],
        &["LMPOP", "2", "nokey", "s", "LEFT"],
        &["BLPOP", "nokey", "s", "0"],
        &["BRPOP", "s", "l", "0"],
        &["BLMOVE", "l", "s", "LEFT", "LEFT", "0"],
        &["BRPOPLPUSH", "s", "l", "0"],
        &["BLMPOP", "0", "2", "s", "l", "LEFT"],
    ] {
        d.check_error(cmd);
    }
    // Nothing was popped by the failed moves.
    d.check(&["LRANGE", "l", "0", "-1"]);
    // A list before the string is served first.
    d.check(&["BLPOP", "l", "s", "0"]);
    d.check(&["LMPOP", "2", "l", "s", "LEFT"]);
}

// ---------------------------------------------------------------------------
// Keyspace notifications

/// Subscribe to all keyspace and keyevent channels; returns the subscriber.
fn subscribe_events(addr: SocketAddr) -> RawClient {
    let mut sub = RawClient::connect(addr);
    sub.cmd(&["PSUBSCRIBE", "__key*__:*"]);
    sub.cmd(&["SUBSCRIBE", "done"]);
    sub
}

/// Events received until the `done` marker, as "channel payload" lines.
fn collect_events(sub: &mut RawClient, publisher: &mut RawClient) -> Vec<String> {
    publisher.cmd(&["PUBLISH", "done", "x"]);
    let mut out = Vec::new();
    loop {
        match sub.read() {
            Frame::Array(v) if v.first() == Some(&Frame::bulk("message")) => return out,
            Frame::Array(v) if v.len() == 4 => {
                let text = |f: &Frame| match f {
                    Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                };
                out.push(format!("{} {}", text(&v[2]), text(&v[3])));
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[test]
fn keyspace_events_match_redis() {
    let ours = server_with(ServeArgs {
        notify_keyspace_events: Some("KEA".into()),
        ..ServeArgs::default()
    });
    let theirs = redis_server(&["--notify-keyspace-events", "KEA"]);
    let mut d = Diff {
        ours: RawClient::connect(ours.addr),
        theirs: RawClient::connect(theirs.addr),
        _server: ours,
        _redis: theirs,
    };
    let mut sub_ours = subscribe_events(d._server.addr);
    let mut sub_theirs = subscribe_events(d._redis.addr);
    for cmd in [
        &["RPUSH", "l", "a", "b", "c", "d", "e", "f"][..],
        &["LPUSH", "l", "z"],
        &["LPUSHX", "l", "y"],
        &["RPUSHX", "l", "x"],
        &["LPUSHX", "nokey", "y"],
        &["LPOP", "l"],
        &["RPOP", "l", "2"],
        &["LPOP", "l", "0"],
        &["LSET", "l", "0", "A"],
        &["LREM", "l", "0", "nothing"],
        &["LREM", "l", "1", "b"],
        &["LTRIM", "l", "0", "-1"],
        &["LINSERT", "l", "BEFORE", "c", "C"],
        &["LINSERT", "l", "BEFORE", "nothing", "C"],
        &["LMOVE", "l", "m", "LEFT", "RIGHT"],
        &["RPOPLPUSH", "l", "m"],
        &["LMOVE", "m", "m", "LEFT", "RIGHT"],
        &["LMPOP", "2", "nokey", "m", "RIGHT", "COUNT", "1"],
        &["BLPOP", "m", "0"],
        &["BRPOPLPUSH", "l", "n", "0"],
        // Emptying pops, moves, trims and removals also publish `del`.
        &["LMPOP", "1", "l", "LEFT", "COUNT", "10"],
        &["BLMOVE", "n", "l", "LEFT", "LEFT", "0"],
        &["LREM", "l", "0", "d"],
        &["RPUSH", "t", "1"],
        &["LTRIM", "t", "1", "0"],
        &["RPUSH", "p", "1"],
        &["RPOP", "p"],
    ] {
        d.check(cmd);
    }
    let ours_events = collect_events(&mut sub_ours, &mut d.ours);
    let theirs_events = collect_events(&mut sub_theirs, &mut d.theirs);
    assert!(theirs_events.len() > 40, "{theirs_events:?}");
    assert_eq!(ours_events, theirs_events);
}

// ---------------------------------------------------------------------------
// Blocking scenarios, run on both servers

/// Either server, seen the way a blocking scenario needs it.
enum Target<'a> {
    Ours(&'a Server),
    Redis(&'a RedisServer),
}

impl Target<'_> {
    fn addr(&self) -> SocketAddr {
        match self {
            Target::Ours(s) => s.addr,
            Target::Redis(r) => r.addr,
        }
    }

    fn client(&self) -> RawClient {
        RawClient::connect(self.addr())
    }

    /// Wait until exactly `n` clients are blocked.
    fn wait_blocked(&self, n: usize) {
        match self {
            Target::Ours(s) => wait_for(&format!("{n} blocked clients"), WAIT, || {
                (s.state.clients.blocked_count() == n).then_some(())
            }),
            Target::Redis(r) => {
                let mut c = RawClient::connect(r.addr);
                let want = format!("blocked_clients:{n}\r\n");
                wait_for(&format!("{n} blocked clients in redis"), WAIT, || {
                    match c.cmd(&["INFO", "clients"]) {
                        Frame::Bulk(b) | Frame::Verbatim(b) => {
                            String::from_utf8_lossy(&b).contains(&want).then_some(())
                        }
                        _ => None,
                    }
                })
            }
        }
    }

    /// Send a blocking command from a new client and wait until it blocks.
    fn block(&self, args: &[&str], blocked_before: usize) -> RawClient {
        let mut c = self.client();
        c.send(args);
        self.wait_blocked(blocked_before + 1);
        c
    }
}

/// Run `scenario` on ferrokv and on Redis; the replies it returns must match.
fn on_both(scenario: fn(&Target) -> Vec<Frame>) -> Vec<Frame> {
    on_both_with(ServeArgs::default(), &[], scenario)
}

/// [`on_both`] with server settings (ours as `ServeArgs`, Redis' as flags).
fn on_both_with(args: ServeArgs, redis_args: &[&str], scenario: fn(&Target) -> Vec<Frame>) -> Vec<Frame> {
    let ours = server_with(args);
    let theirs = redis_server(redis_args);
    let a = scenario(&Target::Ours(&ours));
    let b = scenario(&Target::Redis(&theirs));
    assert_eq!(a, b, "left: ferrokv, right: redis");
    a
}

#[test]
fn blpop_is_served_by_a_later_push() {
    let replies = on_both(|t| {
        let mut blocked = t.block(&["BLPOP", "k", "0"], 0);
        let mut w = t.client();
        let pushed = w.cmd(&["RPUSH", "k", "v1", "v2"]);
        vec![pushed, blocked.read(), w.cmd(&["LRANGE", "k", "0", "-1"])]
    });
    assert_eq!(replies[1], arr(&["k", "v1"]));
}

#[test]
fn waiters_are_served_in_fifo_order_and_one_push_serves_several() {
    let replies = on_both(|t| {
        let mut a = t.block(&["BLPOP", "q", "0"], 0);
        let mut b = t.block(&["BRPOP", "q", "0"], 1);
        let mut c = t.block(&["BLPOP", "q", "other", "0"], 2);
        let mut w = t.client();
        let mut out = vec![w.cmd(&["RPUSH", "q", "1"]), a.read()];
        t.wait_blocked(2);
        // Two elements in one push: the next two waiters, in order.
        out.push(w.cmd(&["RPUSH", "q", "2", "3", "4"]));
        out.push(b.read());
        out.push(c.read());
        out.push(w.cmd(&["LRANGE", "q", "0", "-1"]));
        t.wait_blocked(0);
        out
    });
    assert_eq!(replies[1], arr(&["q", "1"]));
    assert_eq!(replies[3], arr(&["q", "4"]));
    assert_eq!(replies[4], arr(&["q", "2"]));
}

#[test]
fn multi_key_waiter_gets_the_key_that_was_pushed() {
    let replies = on_both(|t| {
        let mut a = t.block(&["BLPOP", "k1", "k2", "k3", "0"], 0);
        let mut b = t.block(&["BLMPOP", "0", "2", "k1", "k3", "RIGHT", "COUNT", "5"], 1);
        let mut w = t.client();
        vec![
            w.cmd(&["RPUSH", "k3", "x", "y", "z"]),
            a.read(),
            b.read(),
            w.cmd(&["LLEN", "k3"]),
        ]
    });
    assert_eq!(replies[1], arr(&["k3", "x"]));
    assert_eq!(replies[2], Frame::Array(vec![Frame::bulk("k3"), arr(&["z", "y"])]));
}

#[test]
fn a_waiter_is_served_from_the_key_that_became_ready_first() {
    let replies = on_both(|t| {
        let mut a = t.block(&["BLPOP", "k1", "k2", "0"], 0);
        let mut b = t.block(&["BLMPOP", "0", "2", "k1", "k2", "LEFT", "COUNT", "9"], 1);
        let mut w = t.client();
        let mut out = vec![w.cmd(&["MULTI"])];
        // k2 is filled first: both waiters are served from k2, not from k1
        // although k1 comes first in their key lists.
        out.push(w.cmd(&["RPUSH", "k2", "a", "b", "c"]));
        out.push(w.cmd(&["RPUSH", "k1", "x"]));
        out.push(w.cmd(&["EXEC"]));
        out.push(a.read());
        out.push(b.read());
        out.push(w.cmd(&["LRANGE", "k1", "0", "-1"]));
        out
    });
    assert_eq!(replies[4], arr(&["k2", "a"]));
}

#[test]
fn blmove_target_feeds_another_blocked_client() {
    let replies = on_both(|t| {
        let mut mover = t.block(&["BLMOVE", "src", "mid", "LEFT", "RIGHT", "0"], 0);
        let mut chained = t.block(&["BRPOPLPUSH", "mid", "end", "0"], 1);
        let mut last = t.block(&["BLPOP", "end", "0"], 2);
        let mut w = t.client();
        vec![
            w.cmd(&["LPUSH", "src", "x"]),
            mover.read(),
            chained.read(),
            last.read(),
            w.cmd(&["LLEN", "src"]),
            w.cmd(&["LLEN", "mid"]),
            w.cmd(&["LLEN", "end"]),
        ]
    });
    assert_eq!(replies[1], Frame::bulk("x"));
    assert_eq!(replies[3], arr(&["end", "x"]));
}

#[test]
fn a_disconnected_waiter_does_not_swallow_the_next_element() {
    let replies = on_both(|t| {
        let gone = t.block(&["BLPOP", "k", "0"], 0);
        let mut stays = t.block(&["BLPOP", "k", "0"], 1);
        drop(gone);
        t.wait_blocked(1);
        let mut w = t.client();
        vec![w.cmd(&["RPUSH", "k", "only"]), stays.read(), w.cmd(&["LLEN", "k"])]
    });
    assert_eq!(replies[1], arr(&["k", "only"]));
}

#[test]
fn a_timed_out_waiter_leaves_later_elements_alone() {
    on_both(|t| {
        let mut c = t.client();
        let mut out = vec![c.cmd(&["BLPOP", "k", "0.05"])];
        let mut timed = t.block(&["BRPOPLPUSH", "k", "d", "0.5"], 0);
        out.push(timed.read());
        t.wait_blocked(0);
        out.push(c.cmd(&["RPUSH", "k", "v"]));
        out.push(c.cmd(&["LRANGE", "k", "0", "-1"]));
        out.push(c.cmd(&["LLEN", "d"]));
        // The connection that timed out is usable again.
        out.push(timed.cmd(&["LPOP", "k"]));
        out
    });
}

#[test]
fn blocked_resp3_client_gets_resp3_replies() {
    on_both(|t| {
        let mut c = t.client();
        c.cmd(&["HELLO", "3"]);
        c.send(&["BLMPOP", "0", "1", "k", "LEFT", "COUNT", "2"]);
        t.wait_blocked(1);
        let mut w = t.client();
        let pushed = w.cmd(&["RPUSH", "k", "a", "b", "c"]);
        vec![pushed, c.read(), c.cmd(&["BLPOP", "nothing", "0.01"])]
    });
}

#[test]
fn a_key_of_another_type_keeps_list_waiters_blocked() {
    let mut d = Diff::new();
    if !set_string(&mut d, "probe") {
        return;
    }
    on_both(|t| {
        let mut a = t.block(&["BLPOP", "k", "k2", "0"], 0);
        let mut mv = t.block(&["BLMOVE", "src", "dst", "LEFT", "LEFT", "0"], 1);
        let mut w = t.client();
        // SET signals the key, but a string cannot serve a list waiter.
        let mut out = vec![w.cmd(&["SET", "k", "s"]), w.cmd(&["SET", "dst", "s"])];
        t.wait_blocked(2);
        out.push(w.cmd(&["RPUSH", "k2", "v"]));
        out.push(a.read());
        // BLMOVE's destination is checked when it is served: WRONGTYPE, and
        // the element stays in the source.
        out.push(w.cmd(&["RPUSH", "src", "e"]));
        out.push(mv.read());
        out.push(w.cmd(&["LLEN", "src"]));
        out
    });
}

#[test]
fn serving_a_waiter_publishes_the_same_events_as_redis() {
    let args = ServeArgs {
        notify_keyspace_events: Some("KEA".into()),
        ..ServeArgs::default()
    };
    on_both_with(args, &["--notify-keyspace-events", "KEA"], |t| {
        let mut sub = subscribe_events(t.addr());
        let mut a = t.block(&["BLPOP", "k", "0"], 0);
        let mut b = t.block(&["BLMOVE", "s", "d", "LEFT", "RIGHT", "0"], 1);
        let mut c = t.block(&["BLMPOP", "0", "1", "m", "RIGHT", "COUNT", "2"], 2);
        let mut w = t.client();
        let mut out = vec![w.cmd(&["RPUSH", "k", "v"]), a.read()];
        out.push(w.cmd(&["RPUSH", "s", "v", "v2"]));
        out.push(b.read());
        out.push(w.cmd(&["LPUSH", "m", "1", "2", "3"]));
        out.push(c.read());
        let events = collect_events(&mut sub, &mut w);
        assert!(events.len() >= 16, "{events:?}");
        out.extend(events.iter().map(|e| Frame::bulk(e)));
        out
    });
}

#[test]
fn emptied_lists_are_deleted_and_memory_is_returned() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    let base = s.state.db.used_memory();
    let many: Vec<String> = (0..1000).map(|i| format!("element-{i}")).collect();
    let mut push = vec!["RPUSH".to_string(), "l".to_string()];
    push.extend(many.iter().cloned());
    assert_eq!(c.cmd(&push), Frame::Int(1000));
    c.cmd(&["RPUSH", "m", "x"]);
    assert_eq!(s.state.db.key_counts().0, 2);
    assert!(s.state.db.used_memory() > base + 1000 * 8);
    c.cmd(&["LTRIM", "l", "0", "9"]);
    c.cmd(&["LMOVE", "m", "l", "LEFT", "LEFT"]);
    assert_eq!(s.state.db.key_counts().0, 1);
    for cmd in [
        &["LREM", "l", "-3", "element-1"][..],
        &["LPOP", "l", "3"],
        &["RPOP", "l"],
        &["LMPOP", "1", "l", "LEFT", "COUNT", "2"],
        &["BLPOP", "l", "0"],
    ] {
        assert!(!c.cmd(cmd).is_error(), "{cmd:?}");
    }
    assert_eq!(c.cmd(&["LLEN", "l"]), Frame::Int(3));
    assert_eq!(
        c.cmd(&["LRANGE", "l", "0", "-1"]),
        arr(&["element-6", "element-7", "element-8"])
    );
    c.cmd(&["LTRIM", "l", "1", "0"]);
    assert_eq!(s.state.db.key_counts().0, 0);
    assert_eq!(s.state.db.used_memory(), base);
}

#[test]
fn object_encoding_is_quicklist() {
    let mut d = Diff::new();
    d.check(&["RPUSH", "l", "a"]);
    assert_eq!(d.check(&["OBJECT", "ENCODING", "l"]), Frame::bulk("quicklist"));
}

#[test]
fn concurrent_producers_and_blocked_consumers_lose_and_duplicate_nothing() {
    const PRODUCERS: usize = 3;
    const PER_PRODUCER: usize = 300;
    const CONSUMERS: usize = 4;
    let s = server();
    let addr = s.addr;
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = RawClient::connect(addr);
                let mut got = Vec::new();
                loop {
                    // Alternate the blocking pops; `stop` ends a consumer.
                    let reply = match i % 3 {
                        0 => c.cmd(&["BLPOP", "q", "q2", "0"]),
                        1 => c.cmd(&["BRPOP", "q2", "q", "30"]),
                        _ => c.cmd(&["BLMPOP", "0", "2", "q", "q2", "LEFT", "COUNT", "3"]),
                    };
                    let items = match reply {
                        Frame::Array(v) if v.len() == 2 => match &v[1] {
                            Frame::Array(items) => items.clone(),
                            one => vec![one.clone()],
                        },
                        other => panic!("consumer {i}: unexpected {other:?}"),
                    };
                    for item in items {
                        match item {
                            Frame::Bulk(b) if b == b"stop" => return got,
                            Frame::Bulk(b) => got.push(String::from_utf8(b).expect("utf8")),
                            other => panic!("consumer {i}: unexpected item {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            std::thread::spawn(move || {
                let mut c = RawClient::connect(addr);
                for n in 0..PER_PRODUCER {
                    let key = if n % 2 == 0 { "q" } else { "q2" };
                    let cmd = if n % 3 == 0 { "LPUSH" } else { "RPUSH" };
                    let item = format!("{p}-{n}");
                    assert!(matches!(c.cmd(&[cmd, key, &item]), Frame::Int(_)));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    // Wait until everything produced has been consumed, then stop everyone.
    let mut c = RawClient::connect(addr);
    wait_for("queues to drain", WAIT, || {
        (c.cmd(&["LLEN", "q"]) == Frame::Int(0) && c.cmd(&["LLEN", "q2"]) == Frame::Int(0)).then_some(())
    });
    // One `stop` at a time, so that a BLMPOP ... COUNT 3 never takes two.
    for _ in 0..CONSUMERS {
        c.cmd(&["RPUSH", "q", "stop"]);
        wait_for("stop to be taken", WAIT, || {
            (c.cmd(&["LLEN", "q"]) == Frame::Int(0)).then_some(())
        });
    }
    let mut all: Vec<String> = consumers
        .into_iter()
        .flat_map(|h| h.join().expect("consumer"))
        .collect();
    all.sort();
    let mut want: Vec<String> = (0..PRODUCERS)
        .flat_map(|p| (0..PER_PRODUCER).map(move |n| format!("{p}-{n}")))
        .collect();
    want.sort();
    assert_eq!(all.len(), want.len());
    assert_eq!(all, want);
}

#[test]
fn blocked_pop_served_through_the_redis_crate() {
    use redis::Commands;
    let s = server();
    let client = redis::Client::open(s.url()).expect("client");
    let mut waiter = client.get_connection().expect("connect");
    let handle = std::thread::spawn(move || -> redis::RedisResult<Option<[String; 2]>> { waiter.blpop("jobs", 0.0) });
    wait_for("waiter to block", WAIT, || {
        (s.state.clients.blocked_count() == 1).then_some(())
    });
    let mut con = client.get_connection().expect("connect");
    let len: usize = con.rpush("jobs", &["job-1", "job-2"]).expect("rpush");
    assert_eq!(len, 2);
    let got = handle.join().expect("thread").expect("blpop");
    assert_eq!(got, Some(["jobs".to_string(), "job-1".to_string()]));
    let rest: Vec<String> = con.lrange("jobs", 0, -1).expect("lrange");
    assert_eq!(rest, vec!["job-2".to_string()]);
    let timed_out: Option<[String; 2]> = con.brpop("none", 0.05).expect("brpop");
    assert_eq!(timed_out, None);
    let moved: Option<String> = con
        .lmove("jobs", "done", redis::Direction::Left, redis::Direction::Right)
        .expect("lmove");
    assert_eq!(moved.as_deref(), Some("job-2"));
}

#[test]
fn large_counts_and_indexes_do_not_hurt_the_server() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    assert_eq!(c.cmd(&["RPUSH", "l", "a", "b"]), Frame::Int(2));
    assert_eq!(c.cmd(&["LPOP", "l", "9223372036854775807"]), arr(&["a", "b"]));
    c.cmd(&["RPUSH", "l", "a"]);
    assert_eq!(
        c.cmd(&["LMPOP", "1", "l", "RIGHT", "COUNT", "9223372036854775807"]),
        Frame::Array(vec![Frame::bulk("l"), arr(&["a"])])
    );
    assert_eq!(c.cmd(&["LINDEX", "l", "-9223372036854775808"]), Frame::Null);
    assert_eq!(
        c.cmd(&["BLPOP", "l", "9223372036854775807"]),
        err("ERR timeout is negative")
    );
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    // Far-future deadlines (the largest finite one and "forever" by size).
    let mut far = RawClient::connect(s.addr);
    far.send(&["BLPOP", "far", "99999999999"]);
    let mut farther = RawClient::connect(s.addr);
    farther.send(&["BRPOP", "far", "9000000000000000"]);
    wait_for("two blocked clients", WAIT, || {
        (s.state.clients.blocked_count() == 2).then_some(())
    });
    assert_eq!(c.cmd(&["RPUSH", "far", "1", "2"]), Frame::Int(2));
    assert_eq!(far.read(), arr(&["far", "1"]));
    assert_eq!(farther.read(), arr(&["far", "2"]));
}
