//! Connection-local state: protocol version, authentication, the MULTI
//! queue, WATCHed keys and subscriptions. Only the connection's own task
//! touches it, so none of it needs a lock.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::client::ClientHandle;
use crate::pubsub::Message;

pub struct Multi {
    pub queue: Vec<(&'static crate::cmd::CommandSpec, Vec<Bytes>)>,
    /// A command failed to queue (unknown, wrong arity...): EXEC answers EXECABORT.
    pub aborted: bool,
}

pub struct Session {
    pub handle: Arc<ClientHandle>,
    pub proto: u8,
    pub authenticated: bool,
    pub multi: Option<Multi>,
    pub watched: Vec<Bytes>,
    pub watch_dirty: Arc<AtomicBool>,
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub shard_channels: HashSet<Bytes>,
    /// Sender half of this connection's pub/sub queue.
    pub push_tx: mpsc::Sender<Message>,
    /// In MONITOR mode: every command the node runs arrives on `push_tx`.
    pub monitor: bool,
    /// Close the connection after the current reply (QUIT).
    pub close: bool,
    /// CLIENT REPLY OFF/SKIP.
    pub reply_off: bool,
    pub reply_skip: bool,
    /// The running command's reply is skipped (it follows `CLIENT REPLY
    /// SKIP`); `CLIENT REPLY ON` clears it, so its own OK is sent, as Redis.
    pub reply_skipping: bool,
    /// The last command this connection ran (without subcommands) and its
    /// table id: clients repeat the same few commands, and comparing one
    /// name is far cheaper than a table lookup per request.
    pub last_command: Option<(&'static crate::cmd::CommandSpec, usize)>,
    /// Wall clock (unix ms) for the commands of the current pipelined
    /// batch, refreshed by the connection every few commands: reading the
    /// clock once per command is measurable, and like Redis' cached
    /// `mstime` a few microseconds of staleness cannot matter to expiry.
    pub clock_ms: Option<u64>,
    /// Chain command timings through a batch (see [`Session::clock_mark`]):
    /// set by client connections, whose batches run without awaiting.
    pub chain_clock: bool,
    /// The connection pushes this session's log appends to the replicas
    /// itself before its replies go out (`repl::primary::push_through`), so
    /// the appends need not wake the replicas' senders.
    pub pushes_through: bool,
    /// When the previous command of this batch finished: the next one's
    /// timing starts there instead of reading the clock again.
    pub clock_mark: Option<quanta::Instant>,
    /// READONLY: reads of this node's shard are served here on a replica.
    pub readonly: bool,
    /// ASKING: the next command may use a slot being imported.
    pub asking: bool,
    /// The command being run was let into a slot IMPORTING here by ASKING
    /// (set by routing, consumed by the check under the locks).
    pub admitted_asking: bool,
    /// Routing let the command into a slot of its own shard that was
    /// migrating: the check under the locks must redirect it if the
    /// ownership flipped in between.
    pub routed_migrating: bool,
    /// The slot every key of the command hashes to, when cluster routing
    /// computed it (cluster mode guarantees one slot per command): the
    /// command then locks that slot's partition without hashing its keys
    /// again. Set by routing, taken by the dispatcher right after it.
    pub routed_slot: Option<u16>,
    /// The cluster view this connection last routed with, and its
    /// generation (see `Cluster::with_view`).
    pub cluster_view: Option<(u64, std::sync::Arc<crate::cluster::View>)>,
    /// A client connection, which can wait for another client's script
    /// asynchronously and lend itself to a script thread
    /// (`Outcome::AwaitScript`, `Outcome::Script`). Internal sessions run
    /// scripts in place and block on the locks like any command.
    pub client_connection: bool,
    /// A connection the node itself drives (role changes, and the
    /// replication stream from a primary): never redirected.
    pub cluster_internal: bool,
    /// Replication: handshake facts, PSYNC/WAIT hand-offs, the primary's session.
    pub repl: crate::repl::SessionRepl,
}

impl Session {
    pub fn new(handle: Arc<ClientHandle>, push_tx: mpsc::Sender<Message>, authenticated: bool) -> Self {
        Session {
            handle,
            proto: 2,
            authenticated,
            multi: None,
            watched: Vec::new(),
            watch_dirty: Arc::new(AtomicBool::new(false)),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard_channels: HashSet::new(),
            push_tx,
            monitor: false,
            close: false,
            reply_off: false,
            reply_skip: false,
            reply_skipping: false,
            last_command: None,
            clock_ms: None,
            chain_clock: false,
            pushes_through: false,
            clock_mark: None,
            readonly: false,
            asking: false,
            admitted_asking: false,
            routed_migrating: false,
            routed_slot: None,
            cluster_view: None,
            client_connection: false,
            cluster_internal: false,
            repl: crate::repl::SessionRepl::default(),
        }
    }

    /// Subscriptions of any kind.
    pub fn subscription_count(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard_channels.len()
    }

    /// RESP2 clients with subscriptions may only run a few commands.
    pub fn in_pubsub_context(&self) -> bool {
        self.proto < 3 && self.subscription_count() > 0
    }

    pub fn id(&self) -> u64 {
        self.handle.id
    }
}
