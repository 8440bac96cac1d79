//! One client connection: read requests, execute them, write replies.
//!
//! Requests are parsed as they arrive and executed in order; replies to a
//! pipelined batch accumulate in one buffer and go out in a single write once
//! no complete request is left in the input, so `-P 16` costs one syscall
//! per batch rather than per command. Pub/sub messages arrive on a bounded
//! queue and are written between requests.
//!
//! Group commit (`appendfsync always`): before a batch's replies go out, the
//! connection waits until the append-only log has fsynced the client's last
//! write ([`crate::persist::aof`]); every connection waiting at that moment
//! is released by the same fsync. A batch without writes never waits. If the
//! fsync fails, the replies of the writes it covered are replaced by the
//! `-MISCONF` error: a write that is not on disk is never acknowledged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, mpsc};

use super::shutdown::Shutdown;
use super::threads::ConnThreads;
use crate::client::ClientHandle;
use crate::cmd::{self, BlockSpec, Outcome};
use crate::pubsub::{Message, QUEUE_LEN};
use crate::resp::Reply;
use crate::resp::parse::{self, Check, Limits};
use crate::session::Session;
use crate::state::State;

/// Flush replies early when a huge pipeline has built up this much output.
const OUT_FLUSH: usize = 256 * 1024;
/// A connection's input or output buffer that grew past this for one big
/// request or reply is given back once it is empty, rather than held for
/// the connection's life (Redis shrinks its query and reply buffers
/// likewise): a client that once sent or fetched a 100 MB value must not
/// keep 100 MB of the node's memory while it idles. Buffers of pipelined
/// small commands never get near it, so the hot path never reallocates.
const BUFFER_KEEP: usize = 256 * 1024;
/// Redis' default `client-query-buffer-limit`.
const QUERY_BUFFER_LIMIT: usize = 1 << 30;

fn push_reply(msg: Message) -> Reply {
    match msg {
        Message::Message { channel, payload } => Reply::Push(vec![
            Reply::bulk_static("message"),
            Reply::Bulk(channel),
            Reply::Bulk(payload),
        ]),
        Message::PMessage {
            pattern,
            channel,
            payload,
        } => Reply::Push(vec![
            Reply::bulk_static("pmessage"),
            Reply::Bulk(pattern),
            Reply::Bulk(channel),
            Reply::Bulk(payload),
        ]),
        Message::SMessage { channel, payload } => Reply::Push(vec![
            Reply::bulk_static("smessage"),
            Reply::Bulk(channel),
            Reply::Bulk(payload),
        ]),
        // A status line in RESP2 and RESP3 alike, as Redis sends it.
        Message::Monitor(line) => Reply::status(String::from_utf8_lossy(&line).into_owned()),
    }
}

/// A connection's state. The socket is held beside it ([`drive`]) and lent
/// to the methods that read or write, so that moving to another thread
/// re-registers the socket and leaves this as it is.
struct Conn {
    state: Arc<State>,
    inbuf: BytesMut,
    out: BytesMut,
    session: Session,
    push_rx: mpsc::Receiver<Message>,
    handle: Arc<ClientHandle>,
    /// Replies in `out` that acknowledge writes: (start, end, write-log
    /// offset after the write), so a failed fsync can turn them into errors.
    write_replies: Vec<(usize, usize, u64)>,
    /// The client has subscribed at some point: only then can pub/sub
    /// messages arrive, and only then is the queue polled (polling it
    /// registers a waker, a few atomic operations per request batch).
    push_used: bool,
    /// Requests in the batch being served (see `run`).
    batch: u32,
    /// A request longer than [`BUFFER_KEEP`] went through `inbuf`, whose
    /// allocation (not visible in `capacity()` once consumed) is that big.
    big_input: bool,
    /// The client's write-log offset when its writes were last pushed to
    /// the replicas (see `flush`).
    pushed_through: u64,
}

impl Drop for Conn {
    /// A connection that ends between a write and its flush (an I/O error,
    /// a kill) has not pushed that write: the senders must.
    fn drop(&mut self) {
        if self.handle.write_offset.load(Ordering::Relaxed) != self.pushed_through && self.state.db.wlog.has_listeners()
        {
            self.state.db.wlog.appended.notify_waiters();
        }
    }
}

enum Step {
    Continue,
    Close,
    /// PSYNC/SYNC: the connection becomes a replica stream.
    Replica(crate::repl::primary::PsyncPlan),
}

/// How [`Conn::run`] ended.
enum Exit {
    Close,
    Replica(crate::repl::primary::PsyncPlan),
    /// The balancer asked the connection to continue on another thread.
    Move(usize),
}

/// The connection's stop signal: its `kill` notification (CLIENT KILL,
/// server shutdown), which the thread balancer also uses to wake an idle
/// connection that should move. Created once per connection (per thread it
/// lives on) and polled once per request batch. It is the connection's own
/// signal only: polling the server-wide shutdown broadcast as well locked
/// that channel's shared tail mutex on every poll, a lock every connection
/// on every thread took once per batch.
struct Signal<'a> {
    notify: &'a Notify,
    fut: Pin<Box<Notified<'a>>>,
}

impl<'a> Signal<'a> {
    fn new(notify: &'a Notify) -> Self {
        Signal {
            notify,
            fut: Box::pin(notify.notified()),
        }
    }

    /// After a wake that was not a stop (a move request, or its permit
    /// left over): wait for the next one.
    fn rearm(&mut self) {
        self.fut = Box::pin(self.notify.notified());
    }
}

/// Serve one connection until it closes, is killed, or the server shuts down.
pub async fn serve(
    state: Arc<State>,
    stream: TcpStream,
    handle: Arc<ClientHandle>,
    shutdown: Shutdown,
    threads: Arc<ConnThreads>,
    thread: usize,
) {
    let _ = stream.set_nodelay(true);
    let (push_tx, push_rx) = mpsc::channel(QUEUE_LEN);
    let authenticated = state.config.requirepass.read().is_none();
    let mut session = Session::new(handle.clone(), push_tx, authenticated);
    session.client_connection = true;
    session.chain_clock = true;
    session.pushes_through = true;
    let conn = Conn {
        state,
        inbuf: BytesMut::with_capacity(16 * 1024),
        out: BytesMut::with_capacity(16 * 1024),
        session,
        push_rx,
        handle,
        write_replies: Vec::new(),
        push_used: false,
        batch: 0,
        big_input: false,
        pushed_through: 0,
    };
    drive(conn, stream, shutdown, threads, thread).await
}

/// A connection's life on one thread: serve it, then close it, hand it
/// over as a replica stream, or move it to another thread.
async fn drive(mut conn: Conn, mut stream: TcpStream, shutdown: Shutdown, threads: Arc<ConnThreads>, thread: usize) {
    conn.handle.io_thread.store(thread, Ordering::Relaxed);
    let handle = conn.handle.clone();
    let state = conn.state.clone();
    let outcome = loop {
        let outcome = {
            let mut signal = Signal::new(&handle.kill);
            conn.run(&mut stream, &mut signal).await
        };
        match outcome {
            // Asked to move where it already is (two rebalances raced): stay.
            Ok(Exit::Move(to)) if to >= threads.len() || to == thread => continue,
            other => break other,
        }
    };
    threads.left(thread);
    match outcome {
        Ok(Exit::Move(to)) => {
            // The socket leaves this thread's epoll and joins the other's;
            // bytes that arrive meanwhile wait in the kernel, and what is
            // already read stays in `inbuf`.
            let socket = match stream.into_std() {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::warn!(client = handle.id, error = %e, "connection lost moving threads");
                    return forget(&state, &handle, &conn.session);
                }
            };
            let next = threads.clone();
            threads.adopt(to, socket, move |stream| match stream {
                Ok(stream) => boxed_drive(conn, stream, shutdown, next, to),
                Err(_) => {
                    forget(&conn.state, &conn.handle, &conn.session);
                    Box::pin(std::future::ready(()))
                }
            });
        }
        Ok(Exit::Replica(plan)) => {
            state.watches.unwatch(&conn.session.watched, &conn.session.watch_dirty);
            // Replies to commands pipelined before PSYNC go out first.
            if conn.flush(&mut stream).await.is_ok() {
                let port = conn.session.repl.listening_port.unwrap_or(handle.addr.port());
                let inbuf = std::mem::take(&mut conn.inbuf);
                crate::repl::primary::serve_replica(state.clone(), stream, inbuf, handle.clone(), plan, port, shutdown)
                    .await;
            }
            state.pubsub.remove_client(handle.id);
            state.clients.unregister(handle.id);
        }
        Ok(Exit::Close) | Err(_) => forget(&state, &handle, &conn.session),
    }
}

/// [`drive`] as a boxed future: a connection that moves runs it again on
/// another thread, and a future cannot contain itself.
fn boxed_drive(
    conn: Conn,
    stream: TcpStream,
    shutdown: Shutdown,
    threads: Arc<ConnThreads>,
    thread: usize,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(drive(conn, stream, shutdown, threads, thread))
}

/// Leave no trace of a closed connection: subscriptions, watches, registry entry.
fn forget(state: &State, handle: &ClientHandle, session: &Session) {
    state.pubsub.remove_client(handle.id);
    state.watches.unwatch(&session.watched, &session.watch_dirty);
    state.clients.unregister(handle.id);
}

impl Conn {
    /// A wake of the connection's signal is a stop (not a move request).
    fn must_stop(&self) -> bool {
        self.handle.killed.load(Ordering::Relaxed) || self.state.clients.is_closing()
    }

    /// Serve requests until the connection closes, turns into a replica,
    /// or is asked to move.
    async fn run(&mut self, io: &mut TcpStream, signal: &mut Signal<'_>) -> std::io::Result<Exit> {
        // Killed or shut down while moving here: the wake was spent there.
        if self.must_stop() {
            return Ok(Exit::Close);
        }
        loop {
            match self.process_input(io, signal).await? {
                Step::Close => {
                    self.flush(io).await?;
                    return Ok(Exit::Close);
                }
                Step::Replica(plan) => return Ok(Exit::Replica(plan)),
                Step::Continue => {}
            }
            if self.batch > 0 {
                super::threads::served(self.batch);
            }
            // So do the replies of a batch that wrote while replicas listen:
            // the first of this round's connections to flush then pushes
            // every write of the round to the replicas in one write each, as
            // Redis feeds its replicas once per event-loop pass (see
            // `repl::primary::push_through`).
            let replicated_write = || {
                self.state.db.wlog.has_listeners()
                    && self.handle.write_offset.load(Ordering::Relaxed) != self.pushed_through
            };
            if (self.batch > 1 || replicated_write()) && !self.out.is_empty() {
                // A pipelined batch's replies go out after the other
                // connections that are ready on this thread have been served
                // (tokio runs a yielded task after polling for I/O again), as
                // Redis writes all replies just before it sleeps: a client
                // sent replies on many connections in one burst is woken
                // once, not once per connection. Measured with
                // redis-benchmark -P 16 on one thread: 3–7% more requests per
                // second, less kernel time per request. A single request's
                // reply goes out at once: with -P 1 the wait only added
                // latency (GET p99 0.36 instead of 0.31 ms).
                tokio::task::yield_now().await;
            }
            self.flush(io).await?;
            if self.handle.killed.load(Ordering::Relaxed) {
                return Ok(Exit::Close);
            }
            if let Some(to) = self.handle.take_move() {
                return Ok(Exit::Move(to));
            }
            // Once set it stays set: messages sent before an unsubscribe
            // are still delivered, as before.
            self.push_used |= self.session.subscription_count() > 0 || self.session.monitor;
            let idle = self.state.config.timeout.load(Ordering::Relaxed);
            // A timer only when `timeout` is set: arming and disarming one per
            // read is a measurable share of a pipelined request's cost.
            // Subscribers and monitors only listen: `timeout` spares them, as Redis.
            let idle_limit = (idle > 0 && self.session.subscription_count() == 0 && !self.session.monitor)
                .then(|| Duration::from_secs(idle));
            let idle_timer = async {
                match idle_limit {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            if self.big_input && self.inbuf.is_empty() {
                self.inbuf = BytesMut::with_capacity(16 * 1024);
                self.big_input = false;
            }
            if self.inbuf.capacity() - self.inbuf.len() < 4096 {
                self.inbuf.reserve(16 * 1024);
            }
            tokio::select! {
                r = io.read_buf(&mut self.inbuf) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(Exit::Close);
                    }
                    self.on_read(n);
                    if self.inbuf.len() > QUERY_BUFFER_LIMIT {
                        tracing::warn!(client = self.handle.id, "closing client that reached max query buffer length");
                        return Ok(Exit::Close);
                    }
                }
                Some(msg) = self.push_rx.recv(), if self.push_used => {
                    self.write_push(msg);
                    while let Ok(msg) = self.push_rx.try_recv() {
                        self.write_push(msg);
                        if self.out.len() > OUT_FLUSH {
                            break;
                        }
                    }
                }
                _ = signal.fut.as_mut() => {
                    if self.must_stop() {
                        return Ok(Exit::Close);
                    }
                    signal.rearm();
                    if let Some(to) = self.handle.take_move() {
                        return Ok(Exit::Move(to));
                    }
                }
                _ = idle_timer => return Ok(Exit::Close),
            }
        }
    }

    fn on_read(&mut self, n: usize) {
        self.state.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.handle.net_in.fetch_add(n as u64, Ordering::Relaxed);
        self.handle.qbuf.store(self.inbuf.len(), Ordering::Relaxed);
    }

    fn write_push(&mut self, msg: Message) {
        push_reply(msg).encode(&mut self.out, self.session.proto);
    }

    /// Write a reply unless `CLIENT REPLY OFF`, or `SKIP` for this command.
    /// Pub/sub confirmations (`Reply::Push`) are written either way, in
    /// RESP2 as in RESP3: Redis marks them `CLIENT_PUSHING`, which `CLIENT
    /// REPLY` does not silence, and a subscriber waits for them.
    fn write_reply(&mut self, reply: Reply, skip: bool) {
        if skip || self.session.reply_off {
            match reply {
                Reply::Push(_) => reply.encode(&mut self.out, self.session.proto),
                Reply::Multi(parts) => {
                    for p in parts.into_iter().filter(|p| matches!(p, Reply::Push(_))) {
                        p.encode(&mut self.out, self.session.proto);
                    }
                }
                _ => {}
            }
            return;
        }
        reply.encode(&mut self.out, self.session.proto);
    }

    /// Send the replies. Every await between two commands of a batch (WAIT,
    /// a blocking command, a huge pipeline's early flush) comes through
    /// here, so this is where the batch's chain of command timings ends.
    async fn flush(&mut self, io: &mut TcpStream) -> std::io::Result<()> {
        self.session.clock_mark = None;
        let offset = self.handle.write_offset.load(Ordering::Relaxed);
        if self.out.is_empty() {
            self.write_replies.clear();
            self.push_through(offset);
            return Ok(());
        }
        if self.state.aof.must_wait(offset)
            && let Err(msg) = self.state.aof.wait_acked(offset).await
        {
            self.replace_unpersisted(&msg);
        }
        // The batch's log bytes leave for the replicas before its replies.
        self.push_through(offset);
        self.write_replies.clear();
        let n = self.out.len() as u64;
        io.write_all(&self.out).await?;
        if self.out.capacity() > BUFFER_KEEP {
            self.out = BytesMut::with_capacity(16 * 1024);
        } else {
            self.out.clear();
        }
        self.state.stats.net_output_bytes.fetch_add(n, Ordering::Relaxed);
        self.handle.net_out.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// This session's appends do not wake the replicas' senders
    /// (`Session::pushes_through`): push what it wrote up to `offset` to the
    /// replicas now (the senders are woken for whatever could not be).
    fn push_through(&mut self, offset: u64) {
        if offset != self.pushed_through {
            self.pushed_through = offset;
            if self.state.db.wlog.has_listeners() {
                crate::repl::primary::push_through(&self.state);
            }
        }
    }

    /// The log could not persist writes: their replies become `msg`.
    fn replace_unpersisted(&mut self, msg: &str) {
        let durable = self.state.aof.acked();
        let old = std::mem::take(&mut self.out);
        let mut pos = 0;
        for &(start, end, offset) in &self.write_replies {
            // `start == end`: the reply was suppressed (CLIENT REPLY OFF/SKIP).
            if offset <= durable || start == end {
                continue;
            }
            self.out.extend_from_slice(&old[pos..start]);
            Reply::err(msg.to_string()).encode(&mut self.out, self.session.proto);
            pos = end;
        }
        self.out.extend_from_slice(&old[pos..]);
    }

    /// Execute every complete request in the input buffer.
    async fn process_input(&mut self, io: &mut TcpStream, signal: &mut Signal<'_>) -> std::io::Result<Step> {
        let mut since_clock = 0u32;
        self.batch = 0;
        // A batch starts after an await: its first command reads the clock.
        self.session.clock_mark = None;
        loop {
            // One wall-clock read per 32 commands of a batch (see Session::clock_ms).
            if since_clock == 0 {
                self.session.clock_ms = Some(crate::db::now_ms());
            }
            since_clock = (since_clock + 1) % 32;
            let limits = Limits {
                max_bulk_len: self.state.config.proto_max_bulk_len.load(Ordering::Relaxed),
                unauthenticated: !self.session.authenticated,
            };
            let req = match parse::check(&self.inbuf, &limits) {
                Ok(Check::Complete(req)) => req,
                Ok(Check::Incomplete) => return Ok(Step::Continue),
                Err(e) => {
                    // As Redis: reply with the protocol error, then close.
                    tracing::debug!(client = self.handle.id, error = %e, "protocol error");
                    Reply::err(format!("ERR {e}")).encode(&mut self.out, self.session.proto);
                    return Ok(Step::Close);
                }
            };
            self.big_input |= req.len > BUFFER_KEEP;
            if req.has_no_args() {
                self.inbuf.advance(req.len);
                continue;
            }
            self.batch += 1;
            self.handle.touch(self.session.clock_ms.unwrap_or_default());
            // `CLIENT REPLY SKIP` sets the flag for the command after it.
            self.session.reply_skipping = std::mem::take(&mut self.session.reply_skip);
            let before = self.handle.write_offset.load(Ordering::Relaxed);
            let mut start = self.out.len();
            // The arguments are borrowed from the input buffer for the
            // command's run only (see `parse::view`); the request leaves the
            // buffer once it is done.
            let outcome = loop {
                let outcome = {
                    let (args, frame) = parse::view(&self.inbuf, &req);
                    cmd::execute_framed(&self.state, &mut self.session, &args, frame)
                };
                match outcome {
                    // Another client's script holds the keyspace: wait for it
                    // without blocking this thread, then try again.
                    Outcome::AwaitScript => {
                        since_clock = 0;
                        self.flush(io).await?;
                        start = 0;
                        self.session.clock_mark = None;
                        let state = self.state.clone();
                        state.scripts.settled().await;
                    }
                    Outcome::Script {
                        spec,
                        id,
                        args,
                        routed_slot,
                    } => {
                        since_clock = 0;
                        self.flush(io).await?;
                        start = 0;
                        break self.run_script(spec, id, args, routed_slot).await;
                    }
                    outcome => break outcome,
                }
            };
            self.inbuf.advance(req.len);
            match outcome {
                Outcome::Reply(r) => {
                    if let Some(plan) = self.session.repl.psync.take() {
                        return Ok(Step::Replica(plan));
                    }
                    let r = match self.session.repl.wait.take() {
                        Some(w) => {
                            self.flush(io).await?;
                            let state = self.state.clone();
                            let wait = crate::repl::primary::wait(&state, w, &self.handle);
                            tokio::pin!(wait);
                            loop {
                                tokio::select! {
                                    r = &mut wait => break r,
                                    _ = signal.fut.as_mut() => {
                                        if self.must_stop() {
                                            return Ok(Step::Close);
                                        }
                                        // A move waits for the end of the batch.
                                        signal.rearm();
                                    }
                                }
                            }
                        }
                        None => r,
                    };
                    let skip = std::mem::take(&mut self.session.reply_skipping);
                    self.write_reply(r, skip)
                }
                Outcome::Script { .. } | Outcome::AwaitScript => unreachable!("handled above"),
                Outcome::Block { spec, args } => {
                    since_clock = 0;
                    self.flush(io).await?;
                    start = 0;
                    match self.block(io, spec, args, signal).await? {
                        Some(r) => {
                            let skip = std::mem::take(&mut self.session.reply_skipping);
                            self.write_reply(r, skip)
                        }
                        None => return Ok(Step::Close),
                    }
                }
            }
            let after = self.handle.write_offset.load(Ordering::Relaxed);
            if after > before {
                self.write_replies.push((start, self.out.len(), after));
            }
            if self.session.close {
                return Ok(Step::Close);
            }
            if self.out.len() > OUT_FLUSH {
                self.flush(io).await?;
            }
        }
    }

    /// Run a script command on a blocking thread, with this connection's
    /// session lent to it: the script holds every partition while it runs,
    /// and this thread keeps serving its other connections (their commands
    /// wait for it, or get `-BUSY`, instead of blocking the thread).
    async fn run_script(
        &mut self,
        spec: &'static cmd::CommandSpec,
        id: usize,
        args: Vec<Bytes>,
        routed_slot: Option<u16>,
    ) -> Outcome {
        let lent = Session::new(self.handle.clone(), self.session.push_tx.clone(), false);
        let session = std::mem::replace(&mut self.session, lent);
        let state = self.state.clone();
        let job = tokio::task::spawn_blocking(move || {
            let mut session = session;
            let outcome = cmd::run_script(&state, &mut session, spec, id, &args, routed_slot);
            (session, outcome)
        });
        match job.await {
            Ok((session, outcome)) => {
                self.session = session;
                outcome
            }
            Err(e) => {
                // The script thread panicked: the schedule was released by
                // its guard; this connection's state went with the thread.
                tracing::error!(client = self.handle.id, error = %e, "script thread failed");
                self.session.close = true;
                Outcome::Reply(Reply::err("ERR internal error running the script"))
            }
        }
    }

    /// Wait for a blocked command to be served or time out. `None` when the
    /// connection must close (client gone, killed, shutdown).
    async fn block(
        &mut self,
        io: &mut TcpStream,
        spec: BlockSpec,
        args: Vec<Bytes>,
        signal: &mut Signal<'_>,
    ) -> std::io::Result<Option<Reply>> {
        let state = self.state.clone();
        let (waiter, mut rx) =
            state
                .blocking
                .register(self.handle.id, args, spec.keys.clone(), spec.on_timeout.clone());
        self.handle.blocked.store(true, Ordering::Relaxed);
        // A write between our failed attempt and registration signalled nobody;
        // serve our own keys once now that we are registered.
        cmd::serve_blocked(&state, spec.keys.clone());
        let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
        let give_up = |state: &State| -> bool {
            let mut slot = waiter.slot.lock();
            let was_waiting = slot.take().is_some();
            drop(slot);
            state.blocking.unregister(&waiter);
            was_waiting
        };
        let result = loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut rx => break r.ok(),
                _ = sleep => {
                    if give_up(&state) {
                        break Some(spec.on_timeout.clone());
                    }
                    // Served concurrently: the reply is on its way.
                    break (&mut rx).await.ok();
                }
                r = io.read_buf(&mut self.inbuf) => {
                    match r {
                        Ok(n) if n > 0 && self.inbuf.len() <= QUERY_BUFFER_LIMIT => self.on_read(n),
                        _ => {
                            if !give_up(&state) {
                                let _ = (&mut rx).await;
                            }
                            break None;
                        }
                    }
                }
                _ = signal.fut.as_mut() => {
                    if self.must_stop() {
                        give_up(&state);
                        break None;
                    }
                    // A move waits until the command is served.
                    signal.rearm();
                }
            }
        };
        self.handle.blocked.store(false, Ordering::Relaxed);
        // An error the waiter is woken with (NOGROUP, UNBLOCKED, MOVED...)
        // counts in INFO errorstats as any error reply does.
        if let Some(e @ Reply::Error(_)) = &result {
            cmd::count_woken_error(&state, &waiter.args, e);
        }
        if waiter.close.load(Ordering::Relaxed) {
            self.session.close = true;
        }
        Ok(result)
    }
}
