//! Smoke tests of the server core: connection commands, protocol errors,
//! pipelining, RESP3 and pub/sub, over TCP.

mod support;

use support::{Frame, RawClient, server};

#[test]
fn ping_echo_and_unknown_command() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(c.cmd(&["ping", "hi"]), Frame::bulk("hi"));
    assert_eq!(c.cmd(&["ECHO", "x"]), Frame::bulk("x"));
    assert_eq!(
        c.cmd(&["NOPE", "a"]),
        Frame::Error("ERR unknown command 'NOPE', with args beginning with: 'a' ".into())
    );
    assert_eq!(
        c.cmd(&["ECHO"]),
        Frame::Error("ERR wrong number of arguments for 'echo' command".into())
    );
}

#[test]
fn protocol_error_closes_only_that_connection() {
    let s = server();
    let mut good = RawClient::connect(s.addr);
    let mut bad = RawClient::connect(s.addr);
    bad.send_raw(b"*1\r\n$-5\r\n");
    assert_eq!(
        bad.read(),
        Frame::Error("ERR Protocol error: invalid bulk length".into())
    );
    assert!(
        bad.try_read().is_err(),
        "connection must be closed after a protocol error"
    );
    assert_eq!(good.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn inline_and_pipelined_requests() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    c.send_raw(b"PING\r\nECHO \"a b\"\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(c.read(), Frame::Simple("PONG".into()));
    assert_eq!(c.read(), Frame::bulk("a b"));
    assert_eq!(c.read(), Frame::Simple("PONG".into()));
}

#[test]
fn hello_switches_protocol() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    let Frame::Map(m) = c.cmd(&["HELLO", "3"]) else {
        panic!("HELLO 3 must answer a map")
    };
    assert!(m.contains(&(Frame::bulk("proto"), Frame::Int(3))));
    assert_eq!(
        c.cmd(&["HELLO", "4"]),
        Frame::Error("NOPROTO unsupported protocol version".into())
    );
}

#[test]
fn pubsub_roundtrip_resp2_and_resp3() {
    let s = server();
    let mut sub = RawClient::connect(s.addr);
    let mut pubc = RawClient::connect(s.addr);
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "ch"]),
        Frame::Array(vec![Frame::bulk("subscribe"), Frame::bulk("ch"), Frame::Int(1)])
    );
    assert_eq!(pubc.cmd(&["PUBLISH", "ch", "hello"]), Frame::Int(1));
    assert_eq!(
        sub.read(),
        Frame::Array(vec![Frame::bulk("message"), Frame::bulk("ch"), Frame::bulk("hello")])
    );
    assert!(matches!(sub.cmd(&["ECHO", "x"]), Frame::Error(e) if e.contains("only (P|S)SUBSCRIBE")));
    let mut sub3 = RawClient::connect(s.addr);
    sub3.cmd(&["HELLO", "3"]);
    assert_eq!(
        sub3.cmd(&["PSUBSCRIBE", "c*"]),
        Frame::Push(vec![Frame::bulk("psubscribe"), Frame::bulk("c*"), Frame::Int(1)])
    );
    assert_eq!(pubc.cmd(&["PUBLISH", "ch", "x"]), Frame::Int(2));
    assert_eq!(
        sub3.read(),
        Frame::Push(vec![
            Frame::bulk("pmessage"),
            Frame::bulk("c*"),
            Frame::bulk("ch"),
            Frame::bulk("x")
        ])
    );
    // RESP3 clients may run normal commands while subscribed.
    assert_eq!(sub3.cmd(&["ECHO", "y"]), Frame::bulk("y"));
}

#[test]
fn multi_exec_discard_and_errors() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    assert_eq!(c.cmd(&["EXEC"]), Frame::Error("ERR EXEC without MULTI".into()));
    assert_eq!(c.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["MULTI"]),
        Frame::Error("ERR MULTI calls can not be nested".into())
    );
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["ECHO", "a"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![Frame::Simple("PONG".into()), Frame::bulk("a")])
    );
    c.cmd(&["MULTI"]);
    assert!(c.cmd(&["NOSUCH"]).is_error());
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Error("EXECABORT Transaction discarded because of previous errors.".into())
    );
}

#[test]
fn auth_required() {
    let s = support::server_with(ferrokv_node::config::ServeArgs {
        requirepass: Some("secret".into()),
        ..Default::default()
    });
    let mut c = RawClient::connect(s.addr);
    assert_eq!(
        c.cmd(&["ECHO", "x"]),
        Frame::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(
        c.cmd(&["AUTH", "wrong"]),
        Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(c.cmd(&["AUTH", "secret"]), Frame::Simple("OK".into()));
    assert_eq!(c.cmd(&["ECHO", "x"]), Frame::bulk("x"));
}

#[test]
fn writes_reach_the_write_log_in_order_and_reads_do_not() {
    let srv = support::server();
    srv.state.db.wlog.keep_backlog();
    let mut c = support::RawClient::connect(srv.addr);
    let start = srv.state.db.wlog.offset();
    c.cmd(&["SET", "k", "1"]);
    c.cmd(&["GET", "k"]);
    c.cmd(&["INCR", "k"]);
    c.cmd(&["DEL", "missing"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "k"]);
    c.cmd(&["GET", "k"]);
    c.cmd(&["INCR", "k"]);
    c.cmd(&["EXEC"]);
    let log = srv.state.db.wlog.read_from(start, 1 << 20).unwrap();
    let text = String::from_utf8_lossy(&log).replace("\r\n", " ");
    assert_eq!(
        text,
        "*3 $3 SET $1 k $1 1 *2 $4 INCR $1 k *1 $5 MULTI *2 $4 INCR $1 k *2 $4 INCR $1 k *1 $4 EXEC "
    );
}
