//! The primary side: deciding between partial and full resync, one sender
//! task per replica that streams the write log (after a snapshot for a full
//! sync), the reader of the replica's acknowledgements, and WAIT.
//!
//! A sender tails the write log (`appended` + `read_from`) rather than being
//! fed by the command path: a slow replica costs the primary no memory
//! beyond the shared backlog. The price is that a replica slower than the
//! backlog is disconnected (it reconnects and full-syncs) instead of being
//! buffered without bound.
//!
//! Once a replica is online, a connection whose batch wrote also pushes the
//! new log bytes to the replica's socket itself, just before its replies go
//! out ([`push_through`]), as Redis writes the replication stream in the same
//! event-loop pass as the replies. Waiting for the sender task instead put a
//! wakeup of another thread between a write's reply and its copy leaving for
//! the replica, and on a busy machine that wakeup is what a reader of the
//! replica waited for. Both writers take the [`Outlet`]'s lock and write only
//! what the socket takes without blocking; the sender, woken by every append,
//! writes whatever a connection left and is the only one that waits for the
//! socket to drain.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{ReplicaPeer, client_role, payload, sender_state};
use crate::client::ClientHandle;
use crate::resp::Reply;
use crate::resp::parse::{self, Check, Limits};
use crate::server::shutdown::Shutdown;
use crate::state::State;
use crate::wlog::WriteLog;

/// Largest slice of the log written to a replica at once.
const CHUNK: usize = 1 << 20;
/// Log kept for one replica while its full sync transfers, as Redis'
/// `client-output-buffer-limit replica` hard limit.
const FULL_SYNC_BUFFER_LIMIT: usize = 256 << 20;
/// Most log bytes a connection pushes to one replica per flush: a
/// replica catching up (after a partial resync) is the sender's work, not a
/// client's latency.
const PUSH_BUDGET: usize = 64 << 10;
/// Idle primaries send `\n` this often so replicas can tell a quiet primary
/// from a dead one.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The write side of an online replica stream (see the module doc). Every
/// write to the socket happens under the lock of [`ReplicaPeer::outlet`].
pub struct Outlet {
    wr: Arc<OwnedWriteHalf>,
    /// Offset of the next log byte to take from the write log.
    next: u64,
    /// Bytes taken but not yet written: log bytes, or a control message
    /// queued at a command boundary.
    pending: Bytes,
    /// The socket took less than offered: only the sender writes until it
    /// has seen the socket drain.
    blocked: bool,
}

/// How far [`Outlet::push`] got.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    /// Everything appended so far is written.
    All,
    /// The socket is full: the sender waits for it to drain.
    Blocked,
    /// The byte budget ran out first.
    Budget,
}

impl Outlet {
    /// Write the pending bytes and then the log after them, as far as the
    /// socket takes them without blocking, taking at most `budget` bytes
    /// from the log.
    fn push(&mut self, wlog: &WriteLog, mut budget: usize) -> Result<Pushed, SendError> {
        loop {
            if self.pending.is_empty() {
                if budget == 0 {
                    return Ok(Pushed::Budget);
                }
                self.pending = wlog
                    .read_from(self.next, CHUNK.min(budget))
                    .map_err(|_| SendError::OutOfBacklog)?;
                budget -= self.pending.len();
                if self.pending.is_empty() {
                    return Ok(Pushed::All);
                }
                self.next += self.pending.len() as u64;
            }
            match self.wr.try_write(&self.pending) {
                Ok(n) => {
                    let _ = self.pending.split_to(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(Pushed::Blocked);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Queue a control message (GETACK, keepalive) if the stream is between
    /// two whole commands: everything appended so far written.
    fn queue_control(&mut self, msg: &'static [u8], wlog: &WriteLog) -> bool {
        let boundary = self.pending.is_empty() && self.next == wlog.offset();
        if boundary {
            self.pending = Bytes::from_static(msg);
        }
        boundary
    }
}

/// Push the log written so far to every online replica (a connection,
/// after a batch that wrote and before its replies go out; see the module
/// doc). A replica not yet online, a full socket or an error is left to the
/// replica's sender, which is then woken: the connection's appends did not
/// wake it (`Session::pushes_through`).
///
/// The outlet's lock is waited for, not tried: its holder is writing without
/// blocking (microseconds), while giving up would mean waking the sender
/// task, often on the other thread, for every write that met a busy lock.
pub fn push_through(state: &State) {
    let wlog = &state.db.wlog;
    let mut wake = false;
    for peer in state.repl.replicas.lock().iter() {
        let mut outlet = peer.outlet.lock();
        wake |= match outlet.as_mut() {
            // The sender waits for the socket to drain; until then, writing
            // here would only fail again.
            Some(o) if !o.blocked => o.push(wlog, PUSH_BUDGET).map_or(true, |p| p != Pushed::All),
            _ => true,
        };
    }
    if wake {
        wlog.appended.notify_waiters();
    }
}

/// What a PSYNC decided.
#[derive(Debug, Clone, Copy)]
pub struct PsyncPlan {
    pub full: bool,
    /// Partial resync: offset of the first byte to send (0-based).
    pub from: u64,
}

/// A WAIT that could not be answered at once.
#[derive(Debug, Clone, Copy)]
pub struct WaitRequest {
    pub numreplicas: usize,
    pub target: u64,
    pub timeout: Option<Duration>,
}

/// PSYNC `<replid> <offset>` (offset = 1-based index of the next byte the
/// replica wants, as Redis counts).
pub fn plan_psync(state: &State, replid: &[u8], offset: i64) -> PsyncPlan {
    // From now on the write log keeps its bytes for replicas (a no-op after
    // the first PSYNC). A full sync's snapshot is cut after this, so the
    // stream it continues with is all kept (see `crate::wlog`).
    state.db.wlog.keep_backlog();
    let (id, id2, second) = state.repl.ids();
    let same_history =
        replid == id.as_bytes() || (replid == id2.as_bytes() && id2 != super::NO_REPLID && offset <= second);
    if same_history && offset >= 1 {
        let from = offset as u64 - 1;
        if state.db.wlog.read_from(from, 0).is_ok() {
            return PsyncPlan { full: false, from };
        }
    }
    if replid != b"?" {
        state.repl.stats.sync_partial_err.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            replid = %String::from_utf8_lossy(replid),
            offset,
            our_replid = %id,
            backlog_start = state.db.wlog.backlog_start() + 1,
            "partial resync not possible, full sync"
        );
    }
    PsyncPlan { full: true, from: 0 }
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("replica connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("full sync payload failed: {0}")]
    Payload(#[from] payload::PayloadError),
    #[error("replica fell behind the replication backlog")]
    OutOfBacklog,
    #[error("replica disconnected")]
    Closed,
    #[error("more than {0} bytes of writes arrived during the full sync")]
    BufferLimit(usize),
}

/// Removes a replica from the registry however its connection ends.
struct PeerGuard<'a> {
    state: &'a State,
    peer: Arc<ReplicaPeer>,
}

impl Drop for PeerGuard<'_> {
    fn drop(&mut self) {
        self.state.repl.replicas.lock().retain(|p| !Arc::ptr_eq(p, &self.peer));
        // WAIT callers count replicas: one fewer may change their answer.
        self.state.repl.acked.notify_waiters();
    }
}

/// Turn a client connection that sent PSYNC into a replica stream.
pub async fn serve_replica(
    state: Arc<State>,
    stream: TcpStream,
    leftover: BytesMut,
    handle: Arc<ClientHandle>,
    plan: PsyncPlan,
    listening_port: u16,
    mut shutdown: Shutdown,
) {
    handle.repl_role.store(client_role::REPLICA, Ordering::Relaxed);
    // Appends wake senders only while one listens (see WriteLog::listen).
    let _listen = state.db.wlog.listen();
    let peer = Arc::new(ReplicaPeer {
        handle: handle.clone(),
        ip: handle.addr.ip().to_string(),
        listening_port,
        state: sender_state::WAIT_BGSAVE.into(),
        ack_offset: 0.into(),
        last_ack_ms: crate::db::now_ms().into(),
        outlet: Mutex::new(None),
    });
    state.repl.replicas.lock().push(peer.clone());
    let _guard = PeerGuard {
        state: &state,
        peer: peer.clone(),
    };
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let reader = tokio::spawn(ack_reader(state.clone(), rd, leftover, peer.clone()));
    let name = format!("{}:{}", peer.ip, listening_port);
    tracing::info!(replica = %name, full = plan.full, "replica attached");
    let result = tokio::select! {
        r = send(&state, wr, plan, &peer) => r,
        _ = handle.kill.notified() => Err(SendError::Closed),
        _ = shutdown.recv() => Err(SendError::Closed),
    };
    reader.abort();
    // The socket's write side closes once the sender's handle and this one
    // are gone.
    peer.outlet.lock().take();
    match result {
        Err(SendError::OutOfBacklog) => {
            state.repl.stats.backlog_disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(replica = %name, backlog = state.db.wlog.backlog_cap(),
                "replica fell further behind than the replication backlog: disconnected, it will full-sync");
        }
        Err(e) => tracing::info!(replica = %name, error = %e, "replica detached"),
        Ok(()) => {}
    }
}

async fn send(
    state: &Arc<State>,
    mut wr: OwnedWriteHalf,
    plan: PsyncPlan,
    peer: &ReplicaPeer,
) -> Result<(), SendError> {
    let replid = state.repl.replid();
    let from = if plan.full {
        let mut cut = payload::start_cut(state).await?;
        state.repl.stats.sync_full.fetch_add(1, Ordering::Relaxed);
        wr.write_all(format!("+FULLRESYNC {replid} {}\r\n", cut.offset).as_bytes())
            .await?;
        peer.state.store(sender_state::SEND_BULK, Ordering::Relaxed);
        let mark = super::new_replid();
        wr.write_all(format!("$EOF:{mark}\r\n").as_bytes()).await?;
        // The log written meanwhile is kept for this replica (Redis' replica
        // output buffer), so a transfer longer than the backlog can hold
        // does not end in another full sync.
        let mut held = Vec::new();
        let mut tail = cut.offset;
        let wlog = &state.db.wlog;
        loop {
            let notified = wlog.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            loop {
                let b = wlog.read_from(tail, CHUNK).map_err(|_| SendError::OutOfBacklog)?;
                if b.is_empty() {
                    break;
                }
                tail += b.len() as u64;
                held.extend_from_slice(&b);
                if held.len() > FULL_SYNC_BUFFER_LIMIT {
                    return Err(SendError::BufferLimit(FULL_SYNC_BUFFER_LIMIT));
                }
            }
            tokio::select! {
                chunk = cut.chunks.recv() => match chunk {
                    Some(chunk) => wr.write_all(&chunk?).await?,
                    None => break,
                },
                _ = notified => {}
            }
        }
        wr.write_all(mark.as_bytes()).await?;
        wr.write_all(&held).await?;
        tail
    } else {
        state.repl.stats.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
        wr.write_all(format!("+CONTINUE {replid}\r\n").as_bytes()).await?;
        plan.from
    };
    peer.last_ack_ms.store(crate::db::now_ms(), Ordering::Relaxed);
    let wr = Arc::new(wr);
    *peer.outlet.lock() = Some(Outlet {
        wr: wr.clone(),
        next: from,
        pending: Bytes::new(),
        blocked: false,
    });
    peer.state.store(sender_state::ONLINE, Ordering::Relaxed);
    let wlog = &state.db.wlog;
    let mut getack_seen = state.repl.getack.load(Ordering::Relaxed);
    let mut last_write = tokio::time::Instant::now();
    // Where the stream stood at the last look: when it has moved (our
    // writes or a connection's), the link was not idle.
    let mut seen_next = from;
    loop {
        // Enabled before looking, so an append after the look wakes us.
        let notified = wlog.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (pushed, next) = with_outlet(peer, |o| {
            o.blocked = false;
            (o.push(wlog, CHUNK), o.next)
        })?;
        if next != seen_next {
            seen_next = next;
            last_write = tokio::time::Instant::now();
        }
        match pushed? {
            Pushed::All => {}
            Pushed::Blocked => {
                wr.writable().await?;
                continue;
            }
            // Let this thread's other tasks run between two chunks.
            Pushed::Budget => {
                tokio::task::yield_now().await;
                continue;
            }
        }
        let g = state.repl.getack.load(Ordering::Relaxed);
        if g != getack_seen {
            // Not at a boundary (a write landed meanwhile): push it first.
            if with_outlet(peer, |o| o.queue_control(GETACK, wlog))? {
                getack_seen = g;
            }
            continue;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(last_write + KEEPALIVE) => {
                // Not at a boundary: what is being written keeps the link
                // alive instead.
                with_outlet(peer, |o| o.queue_control(b"\n", wlog))?;
                last_write = tokio::time::Instant::now();
            }
        }
    }
}

/// Run `f` on a replica's outlet; `Closed` once its stream has ended.
fn with_outlet<R>(peer: &ReplicaPeer, f: impl FnOnce(&mut Outlet) -> R) -> Result<R, SendError> {
    peer.outlet.lock().as_mut().map(f).ok_or(SendError::Closed)
}

/// Asks a replica for its offset.
const GETACK: &[u8] = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";

/// Read `REPLCONF ACK <offset>` from a replica until it disconnects.
async fn ack_reader(state: Arc<State>, mut rd: OwnedReadHalf, mut buf: BytesMut, peer: Arc<ReplicaPeer>) {
    let limits = Limits {
        max_bulk_len: 1 << 20,
        unauthenticated: false,
    };
    loop {
        loop {
            match parse::check(&buf, &limits) {
                Ok(Check::Complete(req)) => {
                    let args = parse::take(&mut buf, req);
                    if args.len() >= 3
                        && args[0].eq_ignore_ascii_case(b"REPLCONF")
                        && args[1].eq_ignore_ascii_case(b"ACK")
                        && let Some(off) = std::str::from_utf8(&args[2]).ok().and_then(|s| s.parse::<u64>().ok())
                    {
                        peer.ack_offset.fetch_max(off, Ordering::Relaxed);
                        peer.last_ack_ms.store(crate::db::now_ms(), Ordering::Relaxed);
                        state.repl.acked.notify_waiters();
                    }
                }
                Ok(Check::Incomplete) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "protocol error from replica");
                    peer.handle.request_kill();
                    return;
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(n) if n > 0 => {
                state.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            _ => break,
        }
    }
    peer.handle.request_kill();
}

/// WAIT that could not be answered at once: ask every replica for an ack
/// and wait for enough of them, the timeout, or the client going away.
pub async fn wait(state: &State, req: WaitRequest, handle: &ClientHandle) -> Reply {
    let deadline = req.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut asked = false;
    loop {
        let notified = state.repl.acked.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let n = state.repl.acked_count(req.target);
        if n >= req.numreplicas {
            return Reply::Int(n as i64);
        }
        if !asked {
            asked = true;
            state.repl.getack.fetch_add(1, Ordering::Relaxed);
            state.db.wlog.appended.notify_waiters();
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = notified => {}
            _ = sleep => return Reply::Int(state.repl.acked_count(req.target) as i64),
            _ = handle.kill.notified() => return Reply::Int(n as i64),
        }
    }
}
