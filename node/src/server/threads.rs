//! Connection threads: where client connections run, and how many of them
//! take new work.
//!
//! Each connection thread runs its own current-thread tokio runtime; a
//! connection lives on one thread at a time and is served there from read to
//! reply, as in a thread-per-core server. Nothing is shared between the
//! threads but the keyspace's partition locks and the few counters a command
//! bumps. A multi-threaded work-stealing runtime was measured to cost more
//! here: its idle workers search, park and wake each other around every
//! batch, and that showed up as context switches and cross-core wakeups in
//! the server's kernel time.
//!
//! **How many threads take work** is decided at run time (`--adaptive-threads`,
//! on by default), because a second thread is only worth having when a core
//! is free to run it. With the load generator on the same two cores, or a
//! busy host, two threads contend for one core with the clients they serve,
//! and the partition locks and cache lines of hot keys cross cores on every
//! batch: measured with `redis-benchmark -P 16` on this project's 2-core
//! machine, one thread served 5–20% more requests per second than two.
//! With the clients elsewhere and a core idle, the second thread has that
//! core to itself. So the node starts with one active thread and a balancer samples
//! CPU time four times a second (`/proc`, no extra syscalls on the hot path):
//!
//! - **grow** by one thread when the active threads are busy (≥ 85% of a
//!   core on average) and the CPUs this process may use have a core to spare
//!   beyond the active threads (what other processes use is subtracted);
//! - **shrink** by one when the load would fit on one thread fewer (half a
//!   core of slack), or when other processes leave less than the active
//!   threads' worth of cores — the threads would only take turns.
//!
//! Each condition must hold on two samples in a row (four for a light
//! load), a change is followed by a two-second pause, and after a shrink
//! forced by contention the next growth waits longer each time (up to a
//! minute), so a load that sits on the boundary costs a rare re-probe, not a
//! flapping thread count. After a change, connections are rebalanced: the
//! balancer asks some of them to move, and each moves between two request
//! batches (its socket leaves one thread's epoll and joins the other's; an
//! idle connection is woken to move at once).
//!
//! Without `/proc` (not Linux) or with `--adaptive-threads no`, every thread
//! takes connections from the start.
//!
//! **Busy polling** (`--busy-poll`): each thread has a poller task that,
//! once allowed, keeps the thread polling epoll for [`POLL_WINDOW`] after
//! its last request batch instead of sleeping; under `auto` the same
//! samples decide, per thread, whether its core would otherwise idle
//! (`may_poll`; see `poll_loop` for why it pays).

use std::cell::{Cell, OnceCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::shutdown::Shutdown;
use crate::config::BusyPoll;
use crate::state::State;

/// A connection's `move_to` when it stays where it is.
pub const STAY: usize = usize::MAX;

/// How often the balancer samples CPU time.
const SAMPLE: Duration = Duration::from_millis(250);
/// Average busy fraction of the active threads above which one more helps.
const BUSY: f64 = 0.85;
/// Cores beyond the active threads that must be free before growing.
const SPARE: f64 = 0.5;
/// Samples a grow or contention-shrink condition must hold.
const CONFIRM: u32 = 2;
/// Samples a light load must last before a thread is let go.
const CONFIRM_LIGHT: u32 = 4;
/// Samples to wait after any change.
const SETTLE: u32 = 8;
/// First and longest wait before growing again after a contention shrink.
const BACKOFF_MIN: u32 = 20;
const BACKOFF_MAX: u32 = 240;
/// How long a thread keeps polling after its last request batch.
const POLL_WINDOW: Duration = Duration::from_micros(50);
/// `--busy-poll auto`: a thread polls only while serving requests keeps it
/// at least this busy (in cores, polling not counted)...
const POLL_BUSY: f64 = 0.25;
/// ...with batches of fewer requests than this on average (a pipelined
/// load finds requests waiting without it)...
const POLL_BATCH: f64 = 2.0;
/// ...and other processes leave every active thread a core, give or take
/// this much.
const POLL_SLACK: f64 = 0.1;

/// Thread counts, readable without the threads themselves (INFO, metrics).
#[derive(Default)]
pub struct Counts {
    pub total: AtomicUsize,
    pub active: AtomicUsize,
    /// Threads allowed to busy-poll (`--busy-poll`).
    pub polling: AtomicUsize,
}

/// What one connection thread did, for the balancer, and whether it may
/// poll. Only the thread itself writes the counters (a load and a store,
/// no locked instruction on the hot path); the balancer reads them.
#[derive(Default)]
struct Activity {
    /// Request batches served (one per read that held requests).
    batches: AtomicU64,
    /// Requests served.
    requests: AtomicU64,
    /// Nanoseconds spent polling without finding work: CPU time that is
    /// not load, subtracted from the thread's busy time.
    polled_idle: AtomicU64,
    /// Set by the balancer (or `--busy-poll yes`).
    poll: AtomicBool,
}

thread_local! {
    /// The activity record of the connection thread this is (unset elsewhere).
    static ACTIVITY: OnceCell<Arc<Activity>> = const { OnceCell::new() };
    /// The poller task's waker while it sleeps.
    static POLLER: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// Called by a connection after serving a batch of `requests`: counts it
/// and wakes the thread's poller if polling is allowed.
pub fn served(requests: u32) {
    ACTIVITY.with(|a| {
        let Some(a) = a.get() else { return };
        bump(&a.batches, 1);
        bump(&a.requests, u64::from(requests));
        if a.poll.load(Ordering::Relaxed)
            && let Some(w) = POLLER.take()
        {
            w.wake();
        }
    });
}

/// Add to a counter only this thread writes.
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The busy-poll task of a connection thread. After a batch is served
/// (while polling is allowed) it yields in a loop instead of letting the
/// thread sleep: tokio then checks epoll with a zero timeout between
/// turns, so a request that arrives within [`POLL_WINDOW`] of the last one
/// is picked up without the thread being woken. What that saves is the
/// client's: a `send` to a socket whose reader sleeps in `epoll_wait` also
/// wakes that thread, and with unpipelined requests from a client that
/// saturates its own core, those wakeups are a measurable share of its CPU
/// time. The price is CPU time on the server's core, which is why `auto`
/// polls only where that core would otherwise idle.
async fn poll_loop(a: Arc<Activity>) {
    loop {
        let mut armed = false;
        std::future::poll_fn(|cx| {
            // Woken by `served` (which took the waker), or spuriously.
            if armed
                && POLLER.with(|p| {
                    let w = p.take();
                    let taken = w.is_none();
                    p.set(w);
                    taken
                })
            {
                return Poll::Ready(());
            }
            POLLER.set(Some(cx.waker().clone()));
            armed = true;
            Poll::Pending
        })
        .await;
        let mut seen = a.batches.load(Ordering::Relaxed);
        let mut turn = Instant::now();
        let mut last_work = turn;
        let mut idle = Duration::ZERO;
        while a.poll.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
            let now = Instant::now();
            let batches = a.batches.load(Ordering::Relaxed);
            if batches != seen {
                seen = batches;
                last_work = now;
            } else {
                idle += now - turn;
                if now - last_work >= POLL_WINDOW {
                    break;
                }
            }
            turn = now;
        }
        bump(&a.polled_idle, idle.as_nanos() as u64);
    }
}

struct Thread {
    handle: Handle,
    activity: Arc<Activity>,
    /// Connections living on this thread.
    conns: AtomicUsize,
    /// Kernel thread id, for its CPU time in `/proc`.
    tid: Option<u32>,
}

/// The connection threads of one server.
pub struct ConnThreads {
    threads: Vec<Thread>,
    stops: Mutex<Vec<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>>,
    state: Arc<State>,
}

impl ConnThreads {
    /// Start `n` threads (at least one); the first `active` take
    /// connections. With `busy_poll` other than `No` each thread runs a
    /// poller task, allowed to poll from the start with `Yes` and by the
    /// balancer with `Auto`.
    pub fn start(
        state: &Arc<State>,
        n: usize,
        active: usize,
        busy_poll: BusyPoll,
    ) -> std::io::Result<Arc<ConnThreads>> {
        let n = n.max(1);
        let mut threads = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, stopped) = oneshot::channel::<()>();
            let activity = Arc::new(Activity::default());
            activity.poll.store(busy_poll == BusyPoll::Yes, Ordering::Relaxed);
            let mine = activity.clone();
            let join = std::thread::Builder::new()
                .name(format!("ferrokv-conn-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok((rt.handle().clone(), own_tid())));
                    // Without busy polling nothing reads the counts:
                    // `served` then finds no record and does nothing.
                    if busy_poll != BusyPoll::No {
                        rt.spawn(poll_loop(mine.clone()));
                        ACTIVITY.with(|a| a.set(mine).ok());
                    }
                    // Runs the thread's connections until the server stops;
                    // dropping the runtime then drops whatever is left.
                    rt.block_on(async move {
                        let _ = stopped.await;
                    });
                })?;
            let (handle, tid) = rx
                .recv()
                .map_err(|_| std::io::Error::other("a connection thread exited while starting"))??;
            threads.push(Thread {
                handle,
                activity,
                conns: AtomicUsize::new(0),
                tid,
            });
            stops.push((stop, join));
        }
        let counts = &state.io_threads;
        counts.total.store(n, Ordering::Relaxed);
        counts.active.store(active.clamp(1, n), Ordering::Relaxed);
        counts
            .polling
            .store(if busy_poll == BusyPoll::Yes { n } else { 0 }, Ordering::Relaxed);
        Ok(Arc::new(ConnThreads {
            threads,
            stops: Mutex::new(stops),
            state: state.clone(),
        }))
    }

    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    fn active(&self) -> usize {
        self.state.io_threads.active.load(Ordering::Relaxed)
    }

    /// The active thread with the fewest connections, for a new one.
    pub fn place(&self) -> usize {
        let active = self.active().min(self.threads.len());
        (0..active)
            .min_by_key(|&i| self.threads[i].conns.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Serve a socket on thread `to`: it joins that thread's epoll there
    /// and `serve` runs with it, counted on `to` until the connection ends or
    /// moves on (the caller then calls [`ConnThreads::left`]). Both a new
    /// connection and a moving one come through here. `serve` gets the
    /// registration error instead when the socket cannot join, to clean up.
    pub fn adopt<S, F>(self: &Arc<Self>, to: usize, socket: std::net::TcpStream, serve: S)
    where
        S: FnOnce(std::io::Result<tokio::net::TcpStream>) -> F + Send + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.threads[to].conns.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        self.threads[to].handle.spawn(async move {
            let stream = tokio::net::TcpStream::from_std(socket);
            if let Err(e) = &stream {
                tracing::warn!(error = %e, "connection lost joining a connection thread");
                me.left(to);
            }
            serve(stream).await
        });
    }

    /// A connection left thread `i` (closed, moved, or became a replica stream).
    pub fn left(&self, i: usize) {
        self.threads[i].conns.fetch_sub(1, Ordering::Relaxed);
    }

    /// Stop every thread (their connections are dropped with them). Waits
    /// for them unless called on one of them.
    pub fn stop(&self) {
        let stops = std::mem::take(&mut *self.stops.lock());
        let me = std::thread::current().id();
        let mut joins = Vec::new();
        for (stop, join) in stops {
            let _ = stop.send(());
            if join.thread().id() != me {
                joins.push(join);
            }
        }
        for j in joins {
            let _ = j.join();
        }
    }

    /// Ask connections to move so that only the first `active` threads hold
    /// any and those hold about as many each. Replica streams and links
    /// stay where they are.
    fn rebalance(&self, state: &State, active: usize) {
        let clients: Vec<_> = state
            .clients
            .all()
            .into_iter()
            .filter(|c| c.is_client_connection())
            .collect();
        let mut load = vec![0usize; self.threads.len()];
        let mut at: Vec<(usize, &crate::client::ClientHandle)> = Vec::with_capacity(clients.len());
        for c in &clients {
            let t = c.io_thread.load(Ordering::Relaxed).min(load.len() - 1);
            load[t] += 1;
            at.push((t, c));
        }
        for (client, to) in plan_moves(&mut load, active, &at) {
            client.request_move(to);
        }
    }
}

/// Which clients should move, given each thread's connection count: every
/// client of an inactive thread, then from the fullest active thread while
/// it holds two more than the emptiest. Updates `load` as if they had moved
/// and returns (client, destination).
fn plan_moves<C: Copy>(load: &mut [usize], active: usize, at: &[(usize, C)]) -> Vec<(C, usize)> {
    let active = active.clamp(1, load.len());
    let mut moves = Vec::new();
    let emptiest = |load: &[usize]| (0..active).min_by_key(|&i| load[i]).unwrap_or(0);
    let mut moved = vec![false; at.len()];
    for (k, &(t, c)) in at.iter().enumerate() {
        if t >= active {
            let to = emptiest(load);
            load[t] -= 1;
            load[to] += 1;
            moves.push((c, to));
            moved[k] = true;
        }
    }
    loop {
        let full = (0..active).max_by_key(|&i| load[i]).unwrap_or(0);
        let to = emptiest(load);
        if load[full] < load[to] + 2 {
            break;
        }
        let Some(k) = (0..at.len()).find(|&k| !moved[k] && at[k].0 == full) else {
            break;
        };
        moved[k] = true;
        load[full] -= 1;
        load[to] += 1;
        moves.push((at[k].1, to));
    }
    moves
}

/// This thread's kernel id, from `/proc/thread-self` ("PID/task/TID").
fn own_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// utime + stime (clock ticks) from a `/proc/.../stat` line. The command
/// name in parentheses may hold spaces, so fields count from the last `)`.
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The CPUs in a `Cpus_allowed_list` value such as `0-3,6`.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse::<usize>().ok()?),
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

/// Busy ticks (everything but idle and iowait) summed over `cpus`, from
/// `/proc/stat`'s per-CPU lines.
fn busy_ticks(proc_stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut busy = 0;
    for line in proc_stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else { continue };
        let mut f = rest.split_whitespace();
        let Some(Ok(n)) = f.next().map(str::parse::<usize>) else {
            continue; // the "cpu" total line
        };
        if !cpus.contains(&n) {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest time is
        // already in user).
        let v: Vec<u64> = f.take(8).filter_map(|x| x.parse().ok()).collect();
        if v.len() < 8 {
            return None;
        }
        busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    }
    Some(busy)
}

/// One reading of the CPU time counters the balancer compares, and of the
/// threads' own counts.
struct Reading {
    at: Instant,
    threads: Vec<u64>,
    process: u64,
    cpus_busy: u64,
    /// Per thread: request batches, requests, nanoseconds polled idle.
    batches: Vec<u64>,
    requests: Vec<u64>,
    polled_idle: Vec<u64>,
}

/// What `/proc` tells about this process and the CPUs it may run on.
struct Probe {
    tids: Vec<u32>,
    cpus: Vec<usize>,
    activity: Vec<Arc<Activity>>,
}

impl Probe {
    fn new(threads: &ConnThreads) -> Option<Probe> {
        let tids = threads.threads.iter().map(|t| t.tid).collect::<Option<Vec<_>>>()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
        let cpus = parse_cpu_list(list)?;
        let activity = threads.threads.iter().map(|t| t.activity.clone()).collect();
        let probe = Probe { tids, cpus, activity };
        probe.read()?;
        Some(probe)
    }

    fn read(&self) -> Option<Reading> {
        let threads = self
            .tids
            .iter()
            .map(|t| stat_ticks(&std::fs::read_to_string(format!("/proc/self/task/{t}/stat")).ok()?))
            .collect::<Option<Vec<_>>>()?;
        let process = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let cpus_busy = busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?, &self.cpus)?;
        let count =
            |f: fn(&Activity) -> &AtomicU64| self.activity.iter().map(|a| f(a).load(Ordering::Relaxed)).collect();
        Some(Reading {
            at: Instant::now(),
            threads,
            process,
            cpus_busy,
            batches: count(|a| &a.batches),
            requests: count(|a| &a.requests),
            polled_idle: count(|a| &a.polled_idle),
        })
    }
}

/// `/proc` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// One sample: each active thread's use in cores (polling that found no
/// work not counted) and its requests per batch, and the cores of our CPUs
/// that other processes left free.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    busy: Vec<f64>,
    batch: Vec<f64>,
    free: f64,
}

fn sample(before: &Reading, after: &Reading, active: usize, cpus: usize, quota: usize) -> Sample {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let cores = |d: u64| d as f64 / TICKS_PER_SEC / secs;
    let delta = |v: fn(&Reading) -> &Vec<u64>, i: usize| v(after)[i].wrapping_sub(v(before)[i]);
    let busy = (0..active)
        .map(|i| {
            let polled = delta(|r| &r.polled_idle, i) as f64 / 1e9 / secs;
            (cores(after.threads[i].saturating_sub(before.threads[i])) - polled).max(0.0)
        })
        .collect();
    let batch = (0..active)
        .map(|i| match delta(|r| &r.batches, i) {
            0 => 0.0,
            b => delta(|r| &r.requests, i) as f64 / b as f64,
        })
        .collect();
    let all = cores(after.cpus_busy.saturating_sub(before.cpus_busy));
    let ours = cores(after.process.saturating_sub(before.process));
    let others = (all - ours).max(0.0);
    // A CPU quota (cgroup) caps us below the CPUs we may run on.
    let free = (cpus as f64 - others).min(quota as f64);
    Sample { busy, batch, free }
}

/// `--busy-poll auto`: whether active thread `i` may poll. Only for an
/// unpipelined load that keeps the thread busy, only when other processes
/// leave each active thread a core (polling on a shared core takes it
/// from whoever else would run there), and only when the CPU quota leaves
/// a core beyond the active threads (the polling must not eat the quota
/// the process's other threads, and the next grown connection thread,
/// need).
fn may_poll(s: &Sample, i: usize, active: usize, quota: usize) -> bool {
    quota > active
        && s.free >= active as f64 - POLL_SLACK
        && s.busy[i] >= POLL_BUSY
        && s.batch[i] > 0.0
        && s.batch[i] < POLL_BATCH
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Grow,
    /// The load fits on fewer threads.
    ShrinkLight,
    /// Other processes leave too few cores for the active threads.
    ShrinkContended,
    Stay,
}

fn verdict(s: &Sample, active: usize, max: usize) -> Verdict {
    let k = active as f64;
    let total: f64 = s.busy.iter().sum();
    if active > 1 && s.free < k - SPARE {
        return Verdict::ShrinkContended;
    }
    if active > 1 && total <= (k - 1.0) - SPARE {
        return Verdict::ShrinkLight;
    }
    if active < max && total / k >= BUSY && s.free >= k + SPARE {
        return Verdict::Grow;
    }
    Verdict::Stay
}

/// The balancer's memory between samples: how long a verdict has held and
/// the waits after changes.
struct Balancer {
    last: Verdict,
    streak: u32,
    settle: u32,
    hold_growth: u32,
    backoff: u32,
}

impl Balancer {
    fn new() -> Balancer {
        Balancer {
            last: Verdict::Stay,
            streak: 0,
            settle: 0,
            hold_growth: 0,
            backoff: BACKOFF_MIN,
        }
    }

    /// The new active count after one sample's verdict, if it changes.
    fn step(&mut self, v: Verdict, active: usize) -> Option<usize> {
        self.hold_growth = self.hold_growth.saturating_sub(1);
        if self.settle > 0 {
            self.settle -= 1;
            self.last = Verdict::Stay;
            self.streak = 0;
            return None;
        }
        self.streak = if v == self.last { self.streak + 1 } else { 1 };
        self.last = v;
        let needed = match v {
            Verdict::Stay => return None,
            Verdict::Grow if self.hold_growth > 0 => return None,
            Verdict::ShrinkLight => CONFIRM_LIGHT,
            Verdict::Grow | Verdict::ShrinkContended => CONFIRM,
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.settle = SETTLE;
        match v {
            Verdict::Grow => Some(active + 1),
            Verdict::ShrinkContended => {
                self.hold_growth = self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Some(active - 1)
            }
            Verdict::ShrinkLight => Some(active - 1),
            Verdict::Stay => None,
        }
    }
}

/// Sample CPU use until shutdown: with `adaptive`, grow or shrink the
/// active threads; with `--busy-poll auto`, decide which threads may poll.
/// Returns at once when `/proc` cannot tell (then every thread stays
/// active, and none polls under `auto`).
pub async fn balance(threads: Arc<ConnThreads>, mut shutdown: Shutdown, adaptive: bool, busy_poll: BusyPoll) {
    let state = threads.state.clone();
    let max = threads.len();
    let Some(probe) = Probe::new(&threads) else {
        if adaptive {
            tracing::info!("CPU time not readable from /proc: all connection threads stay active");
            state.io_threads.active.store(max, Ordering::Relaxed);
            threads.rebalance(&state, max);
        }
        return;
    };
    let quota = std::thread::available_parallelism().map_or(max, |n| n.get());
    let mut balancer = Balancer::new();
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut before = probe.read();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        let now = probe.read();
        let (Some(b), Some(a)) = (&before, &now) else {
            before = now;
            continue;
        };
        let active = threads.active();
        let s = sample(b, a, active, probe.cpus.len(), quota);
        before = now;
        if busy_poll == BusyPoll::Auto {
            let mut polling = 0;
            for (i, t) in threads.threads.iter().enumerate() {
                let poll = i < active && may_poll(&s, i, active, quota);
                t.activity.poll.store(poll, Ordering::Relaxed);
                polling += usize::from(poll);
            }
            state.io_threads.polling.store(polling, Ordering::Relaxed);
        }
        if !adaptive {
            continue;
        }
        let v = verdict(&s, active, max);
        if let Some(next) = balancer.step(v, active) {
            tracing::info!(from = active, to = next, busy = ?s.busy, free_cores = s.free, "connection threads");
            state.io_threads.active.store(next, Ordering::Relaxed);
            threads.rebalance(&state, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        let stat = "1234 (ferrokv (conn) 0) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0";
        assert_eq!(stat_ticks(stat), Some(280));
        assert_eq!(stat_ticks("garbage"), None);
        assert_eq!(parse_cpu_list("0-3,6\n"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("0-x"), None);
        assert_eq!(parse_cpu_list("\t1\n"), Some(vec![1]));
        let proc_stat =
            "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 1 2 3 100 7 4 5 6 0 0\ncpu1 10 0 0 100 0 0 0 0 0 0\nintr 5\n";
        assert_eq!(busy_ticks(proc_stat, &[0]), Some(1 + 2 + 3 + 4 + 5 + 6));
        assert_eq!(busy_ticks(proc_stat, &[0, 1]), Some(21 + 10));
        assert_eq!(busy_ticks(proc_stat, &[7]), Some(0));
    }

    fn reading(secs: f64, threads: Vec<u64>, process: u64, cpus_busy: u64, base: Instant) -> Reading {
        let n = threads.len();
        Reading {
            at: base + Duration::from_secs_f64(secs),
            threads,
            process,
            cpus_busy,
            batches: vec![0; n],
            requests: vec![0; n],
            polled_idle: vec![0; n],
        }
    }

    #[test]
    fn sample_subtracts_our_own_cpu_from_the_machine_busy_time() {
        let t0 = Instant::now();
        let a = reading(0.0, vec![0, 0], 0, 0, t0);
        // One second: thread 0 used 95 ticks, the process 100, the two CPUs
        // 190 in all, so others used 0.9 cores.
        let b = reading(1.0, vec![95, 0], 100, 190, t0);
        let s = sample(&a, &b, 1, 2, 2);
        assert!((s.busy[0] - 0.95).abs() < 1e-9);
        assert!((s.free - 1.1).abs() < 1e-9, "{s:?}");
        // A quota of one core caps what is free.
        assert!((sample(&a, &b, 1, 2, 1).free - 1.0).abs() < 1e-9);
    }

    #[test]
    fn sample_does_not_count_idle_polling_as_load_and_measures_batches() {
        let t0 = Instant::now();
        let a = reading(0.0, vec![0, 0], 0, 0, t0);
        let mut b = reading(1.0, vec![90, 40], 130, 190, t0);
        // Thread 0 polled 0.6 s without work and served 1000 batches of
        // 3000 requests; thread 1 served nothing.
        b.polled_idle = vec![600_000_000, 0];
        b.batches = vec![1000, 0];
        b.requests = vec![3000, 0];
        let s = sample(&a, &b, 2, 2, 2);
        assert!((s.busy[0] - 0.3).abs() < 1e-9, "{s:?}");
        assert!((s.busy[1] - 0.4).abs() < 1e-9, "{s:?}");
        assert_eq!(s.batch, vec![3.0, 0.0]);
        // Polled time is never more than the thread's CPU time.
        b.polled_idle = vec![2_000_000_000, 0];
        assert_eq!(sample(&a, &b, 2, 2, 2).busy[0], 0.0);
    }

    #[test]
    fn polling_only_for_a_busy_unpipelined_load_with_a_core_to_itself() {
        let s = |busy: f64, batch: f64, free: f64| Sample {
            busy: vec![busy],
            batch: vec![batch],
            free,
        };
        // redis-benchmark -P 1 beside the node on two cores: the client
        // takes one, the node's thread has the other.
        assert!(may_poll(&s(0.67, 1.0, 1.0), 0, 1, 2));
        assert!(may_poll(&s(0.67, 1.2, 0.95), 0, 1, 2));
        // Pipelined: requests are waiting anyway.
        assert!(!may_poll(&s(0.95, 16.0, 1.0), 0, 1, 2));
        // A light load, or none.
        assert!(!may_poll(&s(0.1, 1.0, 1.9), 0, 1, 2));
        assert!(!may_poll(&s(0.0, 0.0, 1.9), 0, 1, 2));
        // Other processes want the core (six nodes and a client on two cores).
        assert!(!may_poll(&s(0.5, 1.0, 0.6), 0, 1, 2));
        // A CPU quota of one core: polling would eat what the process's
        // other threads need.
        assert!(!may_poll(&s(0.67, 1.0, 1.0), 0, 1, 1));
        // Two active threads on two cores.
        let two = Sample {
            busy: vec![0.6, 0.6],
            batch: vec![1.0, 1.0],
            free: 2.0,
        };
        assert!(!may_poll(&two, 0, 2, 2));
        assert!(may_poll(&two, 1, 2, 4));
    }

    #[test]
    fn verdicts() {
        let s = |busy: &[f64], free: f64| Sample {
            busy: busy.to_vec(),
            batch: vec![1.0; busy.len()],
            free,
        };
        // The load generator beside us on two cores: no room for a second thread.
        assert_eq!(verdict(&s(&[1.0], 1.1), 1, 2), Verdict::Stay);
        // Clients elsewhere, a core idle: grow.
        assert_eq!(verdict(&s(&[0.97], 1.95), 1, 2), Verdict::Grow);
        // Already at the maximum.
        assert_eq!(verdict(&s(&[0.97, 0.97], 1.95), 2, 2), Verdict::Stay);
        // Not busy enough to need another.
        assert_eq!(verdict(&s(&[0.6], 1.95), 1, 2), Verdict::Stay);
        // Two threads, but others took a core: they would take turns.
        assert_eq!(verdict(&s(&[0.6, 0.6], 1.1), 2, 2), Verdict::ShrinkContended);
        // Two threads, light load: one is enough.
        assert_eq!(verdict(&s(&[0.2, 0.1], 1.9), 2, 2), Verdict::ShrinkLight);
        assert_eq!(verdict(&s(&[0.5, 0.4], 1.9), 2, 2), Verdict::Stay);
        // Never below one.
        assert_eq!(verdict(&s(&[0.0], 0.0), 1, 2), Verdict::Stay);
    }

    #[test]
    fn balancer_confirms_settles_and_backs_off() {
        let mut b = Balancer::new();
        assert_eq!(b.step(Verdict::Grow, 1), None, "one sample is not enough");
        assert_eq!(b.step(Verdict::Grow, 1), Some(2));
        for _ in 0..SETTLE {
            assert_eq!(b.step(Verdict::ShrinkContended, 2), None, "settling");
        }
        assert_eq!(b.step(Verdict::ShrinkContended, 2), None);
        assert_eq!(b.step(Verdict::ShrinkContended, 2), Some(1));
        // Growth is held off for the backoff (which doubles each time); a
        // verdict that held throughout counts as confirmed when it ends.
        for _ in 0..BACKOFF_MIN - 1 {
            assert_eq!(b.step(Verdict::Grow, 1), None);
        }
        assert_eq!(b.step(Verdict::Grow, 1), Some(2));
        assert_eq!(b.backoff, BACKOFF_MIN * 2);
        // A light load must last longer than a busy one.
        for _ in 0..SETTLE {
            b.step(Verdict::Stay, 2);
        }
        for _ in 0..CONFIRM_LIGHT - 1 {
            assert_eq!(b.step(Verdict::ShrinkLight, 2), None);
        }
        assert_eq!(b.step(Verdict::ShrinkLight, 2), Some(1));
        // Alternating verdicts never confirm.
        for _ in 0..SETTLE {
            b.step(Verdict::Stay, 1);
        }
        for i in 0..10 {
            let v = if i % 2 == 0 { Verdict::Grow } else { Verdict::Stay };
            assert_eq!(b.step(v, 1), None);
        }
    }

    #[test]
    fn moves_empty_inactive_threads_and_even_out_active_ones() {
        // Thread loads 3, 0, 2 (threads 0..3); one active thread.
        let at = [(0, 'a'), (0, 'b'), (0, 'c'), (2, 'd'), (2, 'e')];
        let mut load = vec![3, 0, 2];
        let moves = plan_moves(&mut load, 1, &at);
        assert_eq!(moves, vec![('d', 0), ('e', 0)]);
        assert_eq!(load, vec![5, 0, 0]);
        // Two active threads: thread 2's clients go to thread 1, then the
        // two even out.
        let mut load = vec![3, 0, 2];
        let moves = plan_moves(&mut load, 2, &at);
        assert_eq!(moves, vec![('d', 1), ('e', 1)]);
        assert_eq!(load, vec![3, 2, 0]);
        let at = [(0, 'a'), (0, 'b'), (0, 'c'), (0, 'd')];
        let mut load = vec![4, 0];
        assert_eq!(plan_moves(&mut load, 2, &at), vec![('a', 1), ('b', 1)]);
        assert_eq!(load, vec![2, 2]);
    }
}
