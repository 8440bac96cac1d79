//! Graceful shutdown, after mini-redis: a broadcast tells every task to stop;
//! each task holds a clone of an mpsc sender, so when the receiver sees the
//! channel close, every task has finished.

use tokio::sync::{broadcast, mpsc};

/// Listens for the shutdown signal.
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
    /// Dropped when the task ends, confirming it is done.
    _done: mpsc::Sender<()>,
}

impl Shutdown {
    pub fn new(notify: broadcast::Receiver<()>, done: mpsc::Sender<()>) -> Self {
        Shutdown {
            is_shutdown: false,
            notify,
            _done: done,
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Wait for the signal (returns at once if it was already received).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// How a node stops: what `SHUTDOWN`'s options ask, or the defaults a
/// signal (SIGTERM, Ctrl-C) gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopOptions {
    /// Snapshot before exiting: `None` does so when save points are
    /// configured (Redis' rule), `Some(true)` always (`SAVE`), `Some(false)`
    /// never (`NOSAVE`).
    pub save: Option<bool>,
    /// Skip waiting for lagging replicas (`NOW`).
    pub now: bool,
}

/// A stop requested from inside the server (the `SHUTDOWN` command), for
/// whoever owns the [`super::Running`] server to act on.
#[derive(Default)]
pub struct StopRequest {
    wanted: parking_lot::Mutex<Option<StopOptions>>,
    notify: tokio::sync::Notify,
}

impl StopRequest {
    /// Ask for a stop (the first request's options win).
    pub fn request(&self, opts: StopOptions) {
        self.wanted.lock().get_or_insert(opts);
        self.notify.notify_one();
    }

    /// Wait until a stop is requested.
    pub async fn requested(&self) -> StopOptions {
        loop {
            let notified = self.notify.notified();
            if let Some(o) = *self.wanted.lock() {
                return o;
            }
            notified.await;
        }
    }
}
