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
