//! The network side: the runtime of the node's own tasks ([`runtime`]), the
//! connection threads ([`threads`]), listeners, the accept loop, background
//! jobs, shutdown.

pub mod admin;
pub mod conn;
pub mod shutdown;
pub mod threads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::config::{Config, ServeArgs};
use crate::db::Db;
use crate::state::State;
use shutdown::{Shutdown, StopOptions};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cluster mode: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{0}")]
    Epoch(#[from] crate::repl::epoch::EpochError),
    #[error("replication: {0}")]
    Repl(#[from] crate::repl::ReplError),
    #[error("failed to listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(transparent)]
    Persist(#[from] crate::persist::PersistError),
    #[error("failed to start the connection threads: {0}")]
    Threads(std::io::Error),
}

/// A started server: where it listens and how to stop it.
pub struct Running {
    pub state: Arc<State>,
    pub addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    notify_shutdown: broadcast::Sender<()>,
    done_rx: mpsc::Receiver<()>,
    done_tx: Option<mpsc::Sender<()>>,
    threads: Arc<threads::ConnThreads>,
}

impl Drop for Running {
    /// The connection threads end with the server (a test that drops a
    /// server without shutting it down drops its connections with them).
    fn drop(&mut self) {
        self.threads.stop();
    }
}

impl Running {
    /// The first client address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Wait until a client asks the node to stop (`SHUTDOWN`).
    pub async fn stop_requested(&self) -> StopOptions {
        self.state.stop.requested().await
    }

    /// [`Running::stop`] with a signal's defaults.
    pub async fn shutdown(self) {
        let _ = self.stop(StopOptions::default()).await;
    }

    /// Stop the node as Redis does on SIGTERM or `SHUTDOWN`, in an order
    /// that keeps every acknowledged write:
    ///
    /// 1. client connections are closed (new ones are refused) and we wait
    ///    until they have ended, so no write can be acknowledged after;
    /// 2. a primary then waits, up to [`REPLICA_CATCH_UP`], until each online
    ///    replica acknowledged the final offset (unless `now`), so a
    ///    replica promoted next holds every write (Redis 7's
    ///    `shutdown-timeout`);
    /// 3. every other task stops (replica feeds, the link to a primary);
    /// 4. a snapshot is written when save points are configured (or `SAVE`
    ///    asked for one; never with `NOSAVE`), as Redis' final save;
    /// 5. the log writer writes and fsyncs what is left, so a clean
    ///    shutdown loses nothing whatever `appendfsync` says.
    ///
    /// A failed final save is an `Err` (the caller exits non-zero). Redis
    /// would stay up and answer `SHUTDOWN` with an error; here the
    /// connections are closed before the snapshot so that it holds every
    /// acknowledged write, so there is no client left to tell.
    pub async fn stop(mut self, opts: StopOptions) -> Result<(), String> {
        let state = self.state.clone();
        state.clients.close_normal();
        let drained = tokio::time::Instant::now() + CLIENTS_DRAIN;
        while state.clients.normal_count() > 0 && tokio::time::Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !opts.now {
            wait_for_replicas(&state).await;
        }
        let _ = self.notify_shutdown.send(());
        // Client connections listen to their own `kill` signal only.
        state.clients.close_all();
        drop(self.done_tx.take());
        let _ = self.done_rx.recv().await;
        let save = opts.save.unwrap_or_else(|| !state.config.save_points.read().is_empty());
        let mut result = Ok(());
        if save {
            let s = state.clone();
            result = tokio::task::spawn_blocking(move || crate::persist::save::final_save(&s))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match &result {
                Ok(()) => tracing::info!("final snapshot saved"),
                Err(e) => tracing::error!(error = %e, "final snapshot failed"),
            }
        }
        let _ = tokio::task::spawn_blocking(move || crate::persist::aof::stop_writer(&state)).await;
        result
    }
}

/// How long a stop waits for closed client connections to end.
const CLIENTS_DRAIN: Duration = Duration::from_secs(5);
/// How long a stopping primary waits for its replicas (Redis'
/// `shutdown-timeout` default).
pub const REPLICA_CATCH_UP: Duration = Duration::from_secs(10);

/// Step 2 of [`Running::stop`]: ask every replica for an acknowledgement
/// and wait until all online ones reached this node's final offset.
async fn wait_for_replicas(state: &State) {
    if state.repl.is_replica() {
        return;
    }
    let online = state.repl.online_count();
    if online == 0 {
        return;
    }
    let target = state.db.wlog.offset();
    let deadline = tokio::time::Instant::now() + REPLICA_CATCH_UP;
    state.repl.getack.fetch_add(1, Ordering::Relaxed);
    state.db.wlog.appended.notify_waiters();
    loop {
        let notified = state.repl.acked.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let acked = state.repl.acked_count(target);
        if acked >= online.min(state.repl.online_count()) {
            tracing::info!(replicas = acked, offset = target, "replicas caught up before stopping");
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(acked, online, offset = target, "stopping before every replica caught up");
                return;
            }
        }
    }
}

/// The runtime `main` runs the server's own tasks on: the admin port,
/// active expiry, replication links, the save schedule and the thread
/// balancer (each accept loop gets a thread and a runtime of its own). One thread is enough for them; client connections run
/// on the connection threads [`start`] creates ([`threads`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Bind the listeners and start serving in the background.
pub async fn start(args: &ServeArgs) -> Result<Running, ServerError> {
    let db = Db::new();
    let config = Config::from_args(args, &db.eviction)?;
    let epoch = crate::repl::epoch::Epoch::load(config.epoch_dir.clone())?;
    let state = State::with_repl(db, config, crate::repl::Repl::new(epoch));
    // Load before listening: no client sees a half-loaded dataset.
    let persist = crate::persist::PersistConfig::from_args(args, &state.config)?;
    {
        let state = state.clone();
        tokio::task::spawn_blocking(move || crate::persist::startup(&state, &persist))
            .await
            .map_err(|e| crate::persist::PersistError::Inconsistent {
                dir: Default::default(),
                msg: format!("loading task failed: {e}"),
            })??;
    }
    // Before listening: a node must know its identity and held epoch before
    // it answers a single command (its routing depends on them).
    let role = if state.config.cluster_enabled {
        state
            .cluster
            .enable(&state.config.dir.read().clone(), &state.config.cluster_config_file)?
    } else {
        None
    };
    let (notify_shutdown, _) = broadcast::channel(1);
    let (done_tx, done_rx) = mpsc::channel(1);
    // `--threads`, or as many as the cores this process may use:
    // `available_parallelism` counts the CPU affinity mask and the cgroup
    // CPU quota, so a Pod with `limits.cpu: 1` (or 500m) gets one thread,
    // not one per core of its host.
    let n = state
        .config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let adaptive = state.config.adaptive_threads && n > 1;
    let busy_poll = state.config.busy_poll;
    let conn_threads = threads::ConnThreads::start(&state, n, if adaptive { 1 } else { n }, busy_poll)
        .map_err(ServerError::Threads)?;
    if adaptive || busy_poll == crate::config::BusyPoll::Auto {
        tokio::spawn(threads::balance(
            conn_threads.clone(),
            Shutdown::new(notify_shutdown.subscribe(), done_tx.clone()),
            adaptive,
            busy_poll,
        ));
    }

    let mut addrs = Vec::new();
    let mut port = state.config.port;
    for host in &state.config.bind {
        // With port 0 the first listener picks a port and the others reuse it.
        let host = host.trim_start_matches('-');
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let listener = TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        port = local.port();
        addrs.push(local);
        let shutdown = Shutdown::new(notify_shutdown.subscribe(), done_tx.clone());
        spawn_accept_thread(
            state.clone(),
            conn_threads.clone(),
            listener,
            shutdown,
            notify_shutdown.clone(),
            done_tx.clone(),
        )?;
    }
    state.port.store(port as u64, Ordering::Relaxed);

    let admin_addr = match state.config.admin_port {
        Some(p) => {
            let host = state.config.bind.first().cloned().unwrap_or_else(|| "127.0.0.1".into());
            let host = host.trim_start_matches('-').to_string();
            let addr = if host.contains(':') {
                format!("[{host}]:{p}")
            } else {
                format!("{host}:{p}")
            };
            let listener = TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            let shutdown = Shutdown::new(notify_shutdown.subscribe(), done_tx.clone());
            tokio::spawn(admin::serve(state.clone(), listener, shutdown));
            Some(local)
        }
        None => None,
    };

    tokio::spawn(expiry_job(
        state.clone(),
        Shutdown::new(notify_shutdown.subscribe(), done_tx.clone()),
    ));
    crate::repl::start(
        &state,
        crate::repl::Tasks {
            notify: notify_shutdown.clone(),
            done: done_tx.downgrade(),
        },
        state.config.replicaof.clone(),
    )?;
    tokio::spawn(crate::persist::save::schedule_task(
        state.clone(),
        Shutdown::new(notify_shutdown.subscribe(), done_tx.clone()),
    ));
    if let (Some(role), Some(view)) = (role, state.cluster.view()) {
        crate::cluster::apply_role(&state, role, view.epoch());
    }
    if state.cluster.is_enabled() {
        crate::cluster::migrate::resume_all(&state);
    }
    state.ready.store(true, Ordering::Relaxed);
    Ok(Running {
        state,
        addrs,
        admin_addr,
        notify_shutdown,
        done_rx,
        done_tx: Some(done_tx),
        threads: conn_threads,
    })
}

/// Run a listener's accept loop on a thread of its own. Accepting touches
/// no keyspace lock, so new connections (a `SCRIPT KILL`, a `SHUTDOWN
/// NOSAVE`, a probe's PING) are taken even while something on the server's
/// runtime waits for locks a long script holds (a replica applying its
/// primary's stream, say).
fn spawn_accept_thread(
    state: Arc<State>,
    threads: Arc<threads::ConnThreads>,
    listener: TcpListener,
    shutdown: Shutdown,
    notify: broadcast::Sender<()>,
    done: mpsc::Sender<()>,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let bind_err = |source: std::io::Error| ServerError::Bind {
        addr: addr.clone(),
        source,
    };
    // The listener moves to the thread's own reactor.
    let std_listener = listener.into_std().map_err(bind_err)?;
    let rt = runtime().map_err(bind_err)?;
    std::thread::Builder::new()
        .name("ferrokv-accept".into())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(listener) => accept_loop(state, threads, listener, shutdown, notify, done).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve the listener"),
                }
            })
        })
        .map_err(bind_err)?;
    Ok(())
}

async fn accept_loop(
    state: Arc<State>,
    threads: Arc<threads::ConnThreads>,
    listener: TcpListener,
    mut shutdown: Shutdown,
    notify: broadcast::Sender<()>,
    done: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.recv() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        state.stats.total_connections_received.fetch_add(1, Ordering::Relaxed);
        if state.clients.len() >= state.config.maxclients.load(Ordering::Relaxed) {
            state.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
            });
            continue;
        }
        let local = stream.local_addr().unwrap_or(peer);
        // The socket leaves this thread's epoll for its connection thread's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepted connection lost");
                continue;
            }
        };
        let handle = state.clients.register_client(peer, local);
        let conn_shutdown = Shutdown::new(notify.subscribe(), done.clone());
        let thread = threads.place();
        let (state, on) = (state.clone(), threads.clone());
        threads.adopt(thread, stream, move |stream| async move {
            match stream {
                Ok(stream) => conn::serve(state, stream, handle, conn_shutdown, on, thread).await,
                Err(_) => state.clients.unregister(handle.id),
            }
        });
    }
}

/// Active expiry, ten times a second with a 25 ms budget (Redis' hz 10 and
/// 25% slow-cycle budget).
async fn expiry_job(state: Arc<State>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        // Replicas never expire keys themselves: their primary sends DELs.
        if state.db.no_expire.load(Ordering::Relaxed) {
            continue;
        }
        // A client's script holds every partition: a cycle now would block
        // this runtime (replication links, probes, the save schedule) until
        // the script ends. Redis does not expire keys during a script either.
        if state.scripts.is_scheduled() {
            continue;
        }
        let expired = crate::db::expire::active_expire_cycle(&state.db, Duration::from_millis(25));
        if !expired.is_empty() {
            crate::cmd::after_command(&state, expired, Vec::new(), Default::default());
        }
    }
}
