//! Connected clients: the shared, observable part of each connection
//! (`CLIENT LIST`, `CLIENT KILL`, `INFO clients`) in one registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// What other connections may see or change of a connection.
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<Option<Bytes>>,
    pub lib_name: Mutex<Option<Bytes>>,
    pub lib_ver: Mutex<Option<Bytes>>,
    /// Unix time (ms) of the last command.
    pub last_interaction_ms: AtomicU64,
    /// The last command run, as its index in [`crate::cmd::table`] plus one
    /// (0: none yet). An atomic, not a `Mutex<&str>`: it is written after
    /// every command, and a lock/unlock pair per command was a visible share
    /// of a pipelined command's cost; `CLIENT LIST` resolves the name.
    pub last_cmd: AtomicUsize,
    pub proto: AtomicU8,
    pub subscriptions: AtomicUsize,
    pub psubscriptions: AtomicUsize,
    pub ssubscriptions: AtomicUsize,
    /// -1 outside MULTI, else the number of queued commands.
    pub multi: std::sync::atomic::AtomicI64,
    pub blocked: AtomicBool,
    pub no_evict: AtomicBool,
    pub no_touch: AtomicBool,
    pub killed: AtomicBool,
    pub kill: Notify,
    /// Bytes waiting in the input buffer (for CLIENT LIST qbuf).
    pub qbuf: AtomicUsize,
    /// Total bytes received and sent.
    pub net_in: AtomicU64,
    pub net_out: AtomicU64,
    /// Write-log offset after this client's last write: what `WAIT` and
    /// `appendfsync always` wait for before the client hears back.
    pub write_offset: AtomicU64,
    /// `crate::repl::client_role`: replica stream, link to our primary, or neither.
    pub repl_role: AtomicU8,
    /// The connection thread serving this connection
    /// ([`crate::server::threads`]), for CLIENT LIST's `io-thread`.
    pub io_thread: AtomicUsize,
    /// The thread the balancer asked this connection to move to, or
    /// [`crate::server::threads::STAY`].
    pub move_to: AtomicUsize,
    /// A connection from our listener: server shutdown notifies `kill`
    /// (see [`Clients::close_all`]).
    pub stop_on_shutdown: bool,
}

impl ClientHandle {
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr) -> Self {
        ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(None),
            lib_name: Mutex::new(None),
            lib_ver: Mutex::new(None),
            last_interaction_ms: AtomicU64::new(crate::db::now_ms()),
            last_cmd: AtomicUsize::new(0),
            proto: AtomicU8::new(2),
            subscriptions: AtomicUsize::new(0),
            psubscriptions: AtomicUsize::new(0),
            ssubscriptions: AtomicUsize::new(0),
            multi: (-1).into(),
            write_offset: AtomicU64::new(0),
            repl_role: AtomicU8::new(0),
            blocked: AtomicBool::new(false),
            no_evict: AtomicBool::new(false),
            no_touch: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            qbuf: AtomicUsize::new(0),
            net_in: AtomicU64::new(0),
            net_out: AtomicU64::new(0),
            io_thread: AtomicUsize::new(0),
            move_to: AtomicUsize::new(crate::server::threads::STAY),
            stop_on_shutdown: false,
        }
    }

    /// `CLIENT LIST`'s `cmd=`: the full name of the last command, or `NULL`.
    pub fn last_cmd_name(&self) -> &'static str {
        match self.last_cmd.load(Ordering::Relaxed) {
            0 => "NULL",
            i => crate::cmd::table()
                .all
                .get(i - 1)
                .map_or("NULL", |(_, name)| name.as_str()),
        }
    }

    /// Ask the connection to close (CLIENT KILL, pub/sub overflow, shutdown).
    /// A connection a client opened on a listener that is not a replica's
    /// feed (what a stop closes first, what the thread balancer moves).
    pub fn is_client_connection(&self) -> bool {
        self.stop_on_shutdown && self.repl_role.load(Ordering::Relaxed) == crate::repl::client_role::NORMAL
    }

    pub fn request_kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill.notify_one();
    }

    /// Ask the connection to move to connection thread `to` between two
    /// request batches. It is woken through `kill` so that an idle one
    /// moves at once; a wake without a kill or a shutdown is not a stop.
    pub fn request_move(&self, to: usize) {
        self.move_to.store(to, Ordering::Relaxed);
        self.kill.notify_one();
    }

    /// The thread to move to, if a move was asked for (once).
    pub fn take_move(&self) -> Option<usize> {
        if self.move_to.load(Ordering::Relaxed) == crate::server::threads::STAY {
            return None;
        }
        let to = self.move_to.swap(crate::server::threads::STAY, Ordering::Relaxed);
        (to != crate::server::threads::STAY).then_some(to)
    }

    /// Record activity at `now_ms` (unix ms; the caller's cached clock).
    pub fn touch(&self, now_ms: u64) {
        self.last_interaction_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn idle_secs(&self) -> u64 {
        crate::db::now_ms().saturating_sub(self.last_interaction_ms.load(Ordering::Relaxed)) / 1000
    }

    /// One `CLIENT LIST` / `CLIENT INFO` line, with Redis 7.0's fields.
    pub fn info_line(&self) -> String {
        let name = self
            .name
            .lock()
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let subs = self.subscriptions.load(Ordering::Relaxed);
        let psubs = self.psubscriptions.load(Ordering::Relaxed);
        let ssubs = self.ssubscriptions.load(Ordering::Relaxed);
        let multi = self.multi.load(Ordering::Relaxed);
        let mut flags = String::new();
        match self.repl_role.load(Ordering::Relaxed) {
            crate::repl::client_role::REPLICA => flags.push('S'),
            crate::repl::client_role::MASTER => flags.push('M'),
            _ => {}
        }
        if subs + psubs + ssubs > 0 {
            flags.push('P');
        }
        if multi >= 0 {
            flags.push('x');
        }
        if self.blocked.load(Ordering::Relaxed) {
            flags.push('b');
        }
        if self.no_evict.load(Ordering::Relaxed) {
            flags.push('e');
        }
        if self.no_touch.load(Ordering::Relaxed) {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let lib_name = self
            .lib_name
            .lock()
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let lib_ver = self
            .lib_ver
            .lock()
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} multi={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={} io-thread={}",
            self.id,
            self.addr,
            self.laddr,
            self.id + 7,
            name,
            self.created.elapsed().as_secs(),
            self.idle_secs(),
            flags,
            subs,
            psubs,
            ssubs,
            multi,
            self.qbuf.load(Ordering::Relaxed),
            self.last_cmd_name(),
            self.proto.load(Ordering::Relaxed),
            lib_name,
            lib_ver,
            self.io_thread.load(Ordering::Relaxed),
        )
    }
}

#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    /// [`Clients::close_all`] has run: client connections registered from
    /// now on are told to stop at once.
    closing: AtomicBool,
}

impl Clients {
    /// Register a connection that is not a client of our listener (the
    /// link to our primary): shutdown does not go through its `kill`.
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientHandle> {
        self.insert(ClientHandle::new(self.next_id(), addr, laddr))
    }

    /// Register a client connection accepted by a listener: its `kill` is
    /// notified when the server shuts down.
    pub fn register_client(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientHandle> {
        let mut h = ClientHandle::new(self.next_id(), addr, laddr);
        h.stop_on_shutdown = true;
        self.insert(h)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn insert(&self, h: ClientHandle) -> Arc<ClientHandle> {
        let h = Arc::new(h);
        let mut map = self.map.lock();
        map.insert(h.id, h.clone());
        // Under the map lock, which `close_all` takes after setting
        // `closing`: either it sees this handle or we see the flag.
        if h.stop_on_shutdown && self.closing.load(Ordering::Relaxed) {
            h.kill.notify_one();
        }
        drop(map);
        h
    }

    /// Server shutdown: tell every client connection to stop, through the
    /// same per-connection `kill` signal as CLIENT KILL (without marking
    /// it killed). A connection waits on that one signal only; also
    /// waiting on the server-wide shutdown broadcast cost a lock of the
    /// broadcast's shared tail mutex per request batch, on a line every
    /// worker thread wrote.
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::Release);
        for h in self.map.lock().values() {
            if h.stop_on_shutdown {
                h.kill.notify_one();
            }
        }
    }

    /// First step of a stop: refuse new connections (as [`Clients::close_all`]
    /// does) and tell the client connections to stop, but not the feeds of
    /// attached replicas, which must first carry the last writes.
    pub fn close_normal(&self) {
        self.closing.store(true, Ordering::Release);
        for h in self.map.lock().values() {
            if h.is_client_connection() {
                h.kill.notify_one();
            }
        }
    }

    /// Client connections still open that are not replica feeds.
    pub fn normal_count(&self) -> usize {
        self.map.lock().values().filter(|h| h.is_client_connection()).count()
    }

    /// [`Clients::close_all`] has run: a wake of a connection's `kill`
    /// means stop.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn unregister(&self, id: u64) {
        self.map.lock().remove(&id);
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.map.lock().get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.map.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn blocked_count(&self) -> usize {
        self.map
            .lock()
            .values()
            .filter(|c| c.blocked.load(Ordering::Relaxed))
            .count()
    }
}
