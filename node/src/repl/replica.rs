//! The replica side: one link task per configured primary. It connects,
//! handshakes, takes a full sync or continues partially, then applies the
//! primary's stream and acknowledges offsets; on any failure it reconnects
//! with exponential backoff, always asking for a partial resync first.
//!
//! Commands from the primary run through the normal command path
//! ([`crate::cmd::execute`]) with a "master" session, so they behave exactly
//! as they did on the primary; the session's exact received bytes are
//! relayed into this node's write log under the command's partition locks
//! (see [`crate::cmd::Ctx::flush_log`]), which keeps this node's offsets equal
//! to the primary's and its log ordered like its keyspace.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{LinkStatus, client_role, link_state, payload};
use crate::client::ClientHandle;
use crate::cmd::{self, Outcome};
use crate::resp::Reply;
use crate::resp::parse::{self, Args, Check, Limits};
use crate::server::shutdown::Shutdown;
use crate::session::Session;
use crate::state::State;

/// Redis' `repl-timeout`: a primary silent this long is considered gone (an
/// idle primary sends a keepalive every second).
const REPL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for each handshake reply.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to primary: {0}")]
    Connect(std::io::Error),
    #[error("connection to primary failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("primary closed the connection")]
    Closed,
    #[error("primary closed the connection during full sync (old dataset kept)")]
    ClosedMidSync,
    #[error("primary did not answer within {0:?}")]
    Timeout(Duration),
    #[error("primary refused {step}: {reply}")]
    Refused { step: &'static str, reply: String },
    #[error("primary's config epoch {theirs} is older than ours ({ours}): refusing to follow a deposed primary")]
    StaleMaster { theirs: u64, ours: u64 },
    #[error("unexpected reply to {step}: {reply}")]
    Unexpected { step: &'static str, reply: String },
    #[error("full sync payload rejected (old dataset kept): {0}")]
    Payload(#[from] payload::PayloadError),
    #[error("protocol error in the primary's stream: {0}")]
    Protocol(String),
    #[error("link killed (CLIENT KILL)")]
    Killed,
    #[error("failed to persist the config epoch: {0}")]
    Epoch(std::io::Error),
    #[error("this replica cannot persist the stream: {0}")]
    Persist(String),
    #[error("link replaced while loading")]
    Cancelled,
}

/// Follow `host:port` until stopped (the `MasterLink` is dropped) or the
/// server shuts down.
pub(crate) async fn run(
    state: Arc<State>,
    host: String,
    port: u16,
    status: Arc<LinkStatus>,
    mut stop: watch::Receiver<()>,
    mut shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        status.state.store(link_state::CONNECTING, Ordering::Relaxed);
        let mut synced = false;
        let r = tokio::select! {
            r = link(&state, &host, port, &status, &mut synced) => r,
            _ = stop.changed() => return,
            _ = shutdown.recv() => return,
        };
        status.state.store(link_state::CONNECT, Ordering::Relaxed);
        status.down_since_ms.store(crate::db::now_ms(), Ordering::Relaxed);
        if let Err(e) = r {
            tracing::warn!(primary = %format!("{host}:{port}"), error = %e, "replication link down");
            *status.last_error.lock() = e.to_string();
        }
        if synced {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
            _ = shutdown.recv() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Unregisters the link's client entry however the link ends.
struct ClientGuard<'a>(&'a State, Arc<ClientHandle>);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.clients.unregister(self.1.id);
    }
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn send(&mut self, args: &[&[u8]]) -> Result<(), LinkError> {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let mut out = Vec::new();
        crate::wlog::encode_command(&mut out, &args);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// One reply line, skipping the primary's `\n` keepalives.
    async fn line(&mut self, wait: Duration) -> Result<String, LinkError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(pos + 1);
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if text.is_empty() {
                    continue;
                }
                return Ok(text);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(LinkError::Protocol("reply line too long".into()));
            }
            self.read(wait).await?;
        }
    }

    async fn read(&mut self, wait: Duration) -> Result<usize, LinkError> {
        match tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(LinkError::Timeout(wait)),
            Ok(Ok(0)) => Err(LinkError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    async fn command(&mut self, step: &'static str, args: &[&[u8]]) -> Result<String, LinkError> {
        self.send(args).await?;
        self.line(HANDSHAKE_TIMEOUT).await.map_err(|e| match e {
            LinkError::Closed => LinkError::Refused {
                step,
                reply: "connection closed".into(),
            },
            e => e,
        })
    }

    async fn ack(&mut self, offset: u64) -> Result<(), LinkError> {
        let off = offset.to_string();
        self.send(&[b"REPLCONF", b"ACK", off.as_bytes()]).await
    }
}

fn expect_ok(step: &'static str, reply: String) -> Result<(), LinkError> {
    if reply.starts_with('+') {
        Ok(())
    } else {
        Err(LinkError::Refused { step, reply })
    }
}

async fn link(
    state: &Arc<State>,
    host: &str,
    port: u16,
    status: &Arc<LinkStatus>,
    synced: &mut bool,
) -> Result<(), LinkError> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| LinkError::Timeout(HANDSHAKE_TIMEOUT))?
        .map_err(LinkError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (peer, local) = (stream.peer_addr()?, stream.local_addr()?);
    let handle = state.clients.register(peer, local);
    handle.repl_role.store(client_role::MASTER, Ordering::Relaxed);
    let _guard = ClientGuard(state, handle.clone());
    let mut c = Conn {
        stream,
        buf: BytesMut::with_capacity(64 * 1024),
    };
    status.state.store(link_state::HANDSHAKE, Ordering::Relaxed);

    let pong = c.command("PING", &[b"PING"]).await?;
    if pong.starts_with('-') && !pong.starts_with("-NOAUTH") {
        return Err(LinkError::Refused {
            step: "PING",
            reply: pong,
        });
    }
    let auth = state.config.masterauth.read().clone();
    if let Some(pw) = auth {
        expect_ok("AUTH", c.command("AUTH", &[b"AUTH", pw.as_bytes()]).await?)?;
    }
    let lport = state.port.load(Ordering::Relaxed).to_string();
    expect_ok(
        "REPLCONF listening-port",
        c.command(
            "REPLCONF listening-port",
            &[b"REPLCONF", b"listening-port", lport.as_bytes()],
        )
        .await?,
    )?;
    expect_ok(
        "REPLCONF capa",
        c.command("REPLCONF capa", &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
            .await?,
    )?;
    let ours = state.repl.epoch.get();
    let reply = c
        .command("REPLCONF epoch", &[b"REPLCONF", b"epoch", ours.to_string().as_bytes()])
        .await?;
    let theirs = reply
        .strip_prefix("+EPOCH ")
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or(LinkError::Refused {
            step: "REPLCONF epoch",
            reply: reply.clone(),
        })?;
    if theirs < ours {
        return Err(LinkError::StaleMaster { theirs, ours });
    }
    state.repl.epoch.raise(theirs).map_err(LinkError::Epoch)?;

    // A replica keeps a backlog of its primary's stream (as Redis' replicas
    // do): promoted, it lets its own replicas resume partially.
    state.db.wlog.keep_backlog();
    let (replid, _, _) = state.repl.ids();
    let offset = state.db.wlog.offset();
    let want = (offset + 1).to_string();
    let reply = c
        .command("PSYNC", &[b"PSYNC", replid.as_bytes(), want.as_bytes()])
        .await?;
    status.last_io_ms.store(crate::db::now_ms(), Ordering::Relaxed);
    let words: Vec<&str> = reply.split_whitespace().collect();
    match words.as_slice() {
        ["+FULLRESYNC", id, off] => {
            let off: u64 = off.parse().map_err(|_| LinkError::Unexpected {
                step: "PSYNC",
                reply: reply.clone(),
            })?;
            full_sync(state, &mut c, status, id, off).await?;
        }
        ["+CONTINUE", rest @ ..] => {
            if let Some(id) = rest.first()
                && *id != replid
            {
                state.repl.adopt_continued_id(id, offset);
                state.repl.disconnect_replicas("the primary's replication ID changed");
            }
            tracing::info!(offset, "partial resync accepted by primary");
        }
        _ => {
            return Err(LinkError::Unexpected {
                step: "PSYNC",
                reply: reply.clone(),
            });
        }
    }
    *synced = true;
    status.state.store(link_state::CONNECTED, Ordering::Relaxed);
    tracing::info!(primary = %addr, offset = state.db.wlog.offset(), "replication link up");
    apply_stream(state, c, status, handle).await
}

/// Receive the snapshot, check it whole, then replace the dataset.
async fn full_sync(
    state: &Arc<State>,
    c: &mut Conn,
    status: &Arc<LinkStatus>,
    id: &str,
    offset: u64,
) -> Result<(), LinkError> {
    status.state.store(link_state::SYNC, Ordering::Relaxed);
    status.sync_read_bytes.store(0, Ordering::Relaxed);
    let header = c.line(REPL_TIMEOUT).await.map_err(mid_sync)?;
    let mut payload: Vec<u8> = Vec::new();
    if let Some(mark) = header.strip_prefix("$EOF:") {
        let mark = mark.as_bytes().to_vec();
        if mark.len() != 40 {
            return Err(LinkError::Unexpected {
                step: "full sync",
                reply: header,
            });
        }
        loop {
            let scan_from = payload.len().saturating_sub(mark.len());
            payload.extend_from_slice(&c.buf.split());
            status.sync_read_bytes.store(payload.len() as u64, Ordering::Relaxed);
            if let Some(pos) = payload[scan_from..]
                .windows(mark.len())
                .position(|w| w == mark.as_slice())
            {
                let end = scan_from + pos;
                // Bytes after the mark already belong to the stream.
                c.buf.extend_from_slice(&payload[end + mark.len()..]);
                payload.truncate(end);
                break;
            }
            c.read(REPL_TIMEOUT).await.map_err(mid_sync)?;
            status.last_io_ms.store(crate::db::now_ms(), Ordering::Relaxed);
        }
    } else if let Some(len) = header.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
        while c.buf.len() < len {
            c.read(REPL_TIMEOUT).await.map_err(mid_sync)?;
            status.sync_read_bytes.store(c.buf.len() as u64, Ordering::Relaxed);
        }
        payload = c.buf.split_to(len).to_vec();
    } else {
        return Err(LinkError::Unexpected {
            step: "full sync",
            reply: header,
        });
    }
    let bytes = payload.len();
    let started = std::time::Instant::now();
    let st = state.clone();
    let me = status.clone();
    let id = id.to_string();
    let keys = tokio::task::spawn_blocking(move || -> Result<u64, LinkError> {
        // Verify before flushing: a bad payload must leave the old data.
        payload::verify(&payload, offset)?;
        let repl = &st.repl;
        let _g = repl.role_lock.lock();
        if !repl.is_current(&me) {
            return Err(LinkError::Cancelled);
        }
        repl.loading.store(true, Ordering::Relaxed);
        // The append-only log holds the old history: close it, and start it
        // again from a base of the new dataset (Redis' restartAOFAfterSYNC).
        let aof_on = st.aof.enabled.load(Ordering::Acquire);
        if aof_on {
            crate::persist::aof::stop_writer(&st);
        }
        let r = payload::load(&st, &payload);
        st.db.wlog.reset(offset);
        match &r {
            Ok(_) => repl.adopt_full_sync_id(&id),
            // A partial dataset must never pass for the primary's history:
            // a new ID makes the next attempt a full sync again.
            Err(_) => repl.set_replid(super::new_replid()),
        }
        repl.loading.store(false, Ordering::Relaxed);
        // Every watched key may have changed (keys created by the load as well).
        st.watches.touch_existing(|_| true);
        let keys = r?;
        if st.config.appendonly.load(Ordering::Relaxed) {
            crate::persist::apply_config(&st).map_err(LinkError::Persist)?;
        }
        Ok(keys)
    })
    .await
    .map_err(|e| LinkError::Protocol(format!("loader failed: {e}")))??;
    // Our own replicas hold a history that no longer exists here.
    state.repl.disconnect_replicas("dataset replaced by a full sync");
    tracing::info!(
        keys,
        bytes,
        offset,
        load_ms = started.elapsed().as_millis() as u64,
        "full sync loaded"
    );
    Ok(())
}

fn mid_sync(e: LinkError) -> LinkError {
    match e {
        LinkError::Closed => LinkError::ClosedMidSync,
        e => e,
    }
}

/// Apply the primary's stream until the link fails.
async fn apply_stream(
    state: &Arc<State>,
    mut c: Conn,
    status: &Arc<LinkStatus>,
    handle: Arc<ClientHandle>,
) -> Result<(), LinkError> {
    let (push_tx, _push_rx) = tokio::sync::mpsc::channel(1);
    let mut sess = Session::new(handle.clone(), push_tx, true);
    sess.repl.master = true;
    let mut pending = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    c.ack(state.db.wlog.offset()).await?;
    let mut last_io = tokio::time::Instant::now();
    loop {
        let wants_ack = {
            // Role changes wait for the chunk being applied, and once this
            // link is replaced nothing more of its stream is applied: a
            // promoted node's history ends exactly where it was promoted.
            let _g = state.repl.role_lock.lock();
            if !state.repl.is_current(status) {
                return Err(LinkError::Cancelled);
            }
            apply(state, &mut sess, &mut c.buf, &mut pending)?
        };
        let applied = state.db.wlog.offset();
        status
            .read_offset
            .store(applied + (pending.len() + c.buf.len()) as u64, Ordering::Relaxed);
        if wants_ack {
            c.ack(applied).await?;
        }
        tokio::select! {
            r = c.stream.read_buf(&mut c.buf) => {
                let n = r?;
                if n == 0 {
                    return Err(LinkError::Closed);
                }
                state.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                handle.net_in.fetch_add(n as u64, Ordering::Relaxed);
                status.last_io_ms.store(crate::db::now_ms(), Ordering::Relaxed);
                last_io = tokio::time::Instant::now();
            }
            _ = tick.tick() => c.ack(applied).await?,
            _ = handle.kill.notified() => return Err(LinkError::Killed),
            _ = tokio::time::sleep_until(last_io + REPL_TIMEOUT) => return Err(LinkError::Timeout(REPL_TIMEOUT)),
        }
    }
}

/// Apply every complete command in `buf`. Returns whether the primary asked
/// for an acknowledgement.
fn apply(state: &State, sess: &mut Session, buf: &mut BytesMut, pending: &mut Vec<u8>) -> Result<bool, LinkError> {
    let limits = Limits {
        max_bulk_len: i64::MAX,
        unauthenticated: false,
    };
    let mut wants_ack = false;
    loop {
        let req = match parse::check(buf, &limits) {
            Ok(Check::Complete(req)) => req,
            Ok(Check::Incomplete) => return Ok(wants_ack),
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        };
        let frame = buf.split_to(req.len).freeze();
        let args: Vec<Bytes> = match req.args {
            Args::Ranges(r) => r.into_iter().map(|(s, e)| frame.slice(s..e)).collect(),
            Args::Owned(v) => v.into_iter().map(Bytes::from).collect(),
        };
        // `\n` keepalive: not part of the stream.
        if args.is_empty() {
            continue;
        }
        let name = &args[0];
        if name.eq_ignore_ascii_case(b"REPLCONF") {
            if args.len() >= 2 && args[1].eq_ignore_ascii_case(b"GETACK") {
                wants_ack = true;
            }
            continue;
        }
        // A replica that cannot persist must not apply (and acknowledge)
        // what it would then lose: drop the link, resume later from here.
        if let Some(msg) = state.aof.write_error() {
            return Err(LinkError::Persist(msg.to_string()));
        }
        // A transaction is relayed whole at its EXEC, so that our offset
        // (what we acknowledge and resume from) never points inside one.
        let in_multi = sess.multi.is_some();
        sess.repl.relay = if in_multi {
            pending.extend_from_slice(&frame);
            if name.eq_ignore_ascii_case(b"EXEC") {
                Some(std::mem::take(pending))
            } else {
                if name.eq_ignore_ascii_case(b"DISCARD") {
                    pending.clear();
                }
                None
            }
        } else if name.eq_ignore_ascii_case(b"MULTI") {
            pending.clear();
            pending.extend_from_slice(&frame);
            None
        } else {
            Some(frame.to_vec())
        };
        // Only what a write log holds is executed: a stream carrying other
        // commands (REPLICAOF, CONFIG...) is not a primary's log, and its
        // bytes are only relayed so that offsets stay the primary's.
        let txn = name.eq_ignore_ascii_case(b"MULTI") || name.eq_ignore_ascii_case(b"EXEC");
        let args = cmd::view(&args);
        let write = cmd::resolve(&args).is_ok_and(|spec| spec.is_write());
        if !write && !txn && !name.eq_ignore_ascii_case(b"DISCARD") {
            tracing::debug!(command = %String::from_utf8_lossy(name), "non-write command in the primary's stream not executed");
        } else if let Outcome::Reply(Reply::Error(e)) = cmd::execute(state, sess, &args) {
            tracing::warn!(error = %e, "command from primary failed on this replica");
        }
        // A command refused before it ran never flushed its log: relay it
        // anyway so that offsets stay equal to the primary's.
        if let Some(raw) = sess.repl.relay.take() {
            state.db.wlog.append_raw(&raw);
        }
    }
}
