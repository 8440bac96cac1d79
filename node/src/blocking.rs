//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN, XREAD BLOCK, ...).
//!
//! A blocked client registers its command under each key it waits on. When a
//! write makes one of those keys ready, the writing connection, after
//! releasing its partition locks, serves the waiters in FIFO order by
//! re-running each waiter's command on its behalf and handing the reply to
//! the waiting connection. This is Redis' `handleClientsBlockedOnKeys`: the
//! first client to block is the first served, and an element pushed to a key
//! with waiters is never seen by anyone else first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::resp::Reply;

pub struct Waiter {
    pub client_id: u64,
    /// The command to re-run (possibly rewritten, e.g. XREAD `$` → last ID).
    pub args: Vec<Bytes>,
    pub keys: Vec<Bytes>,
    /// The reply when the wait times out (also `CLIENT UNBLOCK ... TIMEOUT`).
    pub on_timeout: Reply,
    /// `Some` while waiting. The server holds this lock while it runs the
    /// waiter's command, and the waiter takes it to give up on timeout or
    /// disconnect, so an element is never popped for a client that already
    /// left with a timeout reply.
    pub slot: Mutex<Option<oneshot::Sender<Reply>>>,
    /// Set with a forced unblock ([`Blocking::force_unblock`]): the
    /// connection closes after writing the error, as Redis'
    /// `CLIENT_CLOSE_AFTER_REPLY`.
    pub close: AtomicBool,
}

/// The error of a client unblocked because its node became a replica.
pub const ERR_ROLE_CHANGED: &str =
    "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)";

#[derive(Default)]
pub struct Blocking {
    waiting: AtomicUsize,
    queues: Mutex<HashMap<Bytes, VecDeque<Arc<Waiter>>>>,
}

impl Blocking {
    /// Is anybody blocked at all? (A relaxed load on the write path.)
    pub fn any(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    pub fn has_waiters(&self, key: &[u8]) -> bool {
        self.any() && self.queues.lock().get(key).is_some_and(|q| !q.is_empty())
    }

    pub fn register(
        &self,
        client_id: u64,
        args: Vec<Bytes>,
        keys: Vec<Bytes>,
        on_timeout: Reply,
    ) -> (Arc<Waiter>, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        let w = Arc::new(Waiter {
            client_id,
            args,
            keys,
            on_timeout,
            slot: Mutex::new(Some(tx)),
            close: AtomicBool::new(false),
        });
        let mut q = self.queues.lock();
        for k in &w.keys {
            q.entry(k.clone()).or_default().push_back(w.clone());
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        (w, rx)
    }

    /// Remove a waiter from every queue (after it was served, timed out or
    /// its client went away).
    pub fn unregister(&self, w: &Arc<Waiter>) {
        let mut q = self.queues.lock();
        let mut found = false;
        for k in &w.keys {
            if let Some(queue) = q.get_mut(k) {
                let before = queue.len();
                queue.retain(|x| !Arc::ptr_eq(x, w));
                found |= queue.len() != before;
                if queue.is_empty() {
                    q.remove(k);
                }
            }
        }
        if found {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The waiters of a key, oldest first (a snapshot; serving re-checks each).
    pub fn waiters(&self, key: &[u8]) -> Vec<Arc<Waiter>> {
        self.queues
            .lock()
            .get(key)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Unblock one waiter with `error` and close its connection after the
    /// reply. False if it was served, timed out or left already.
    pub fn force_unblock_one(&self, w: &Arc<Waiter>, error: &'static str) -> bool {
        self.unblock_with(w, Reply::err(error), true)
    }

    /// Answer a waiter `reply` instead of serving it (closing its
    /// connection after it if `close`). False if it was served, timed out
    /// or left already.
    pub fn unblock_with(&self, w: &Arc<Waiter>, reply: Reply, close: bool) -> bool {
        let tx = w.slot.lock().take();
        let Some(tx) = tx else { return false };
        w.close.store(close, Ordering::Relaxed);
        let _ = tx.send(reply);
        self.unregister(w);
        true
    }

    /// Every waiter, oldest first per key, each once (a snapshot).
    pub fn all_waiters(&self) -> Vec<Arc<Waiter>> {
        if !self.any() {
            return Vec::new();
        }
        // A waiter on several keys is in several queues: once each.
        let mut seen = std::collections::HashSet::new();
        self.queues
            .lock()
            .values()
            .flatten()
            .filter(|w| seen.insert(Arc::as_ptr(w)))
            .cloned()
            .collect()
    }

    /// Unblock every waiter with `error` (Redis' `disconnectAllBlockedClients`,
    /// when a primary becomes a replica). Returns how many were waiting.
    pub fn force_unblock(&self, error: &'static str) -> usize {
        self.all_waiters()
            .iter()
            .filter(|w| self.force_unblock_one(w, error))
            .count()
    }

    /// The waiter of client `id`, if it is blocked on keys.
    pub fn waiter_of(&self, id: u64) -> Option<Arc<Waiter>> {
        if !self.any() {
            return None;
        }
        self.queues
            .lock()
            .values()
            .flatten()
            .find(|w| w.client_id == id)
            .cloned()
    }

    /// Every key somebody waits on.
    pub fn keys(&self) -> Vec<Bytes> {
        if !self.any() {
            return Vec::new();
        }
        self.queues.lock().keys().cloned().collect()
    }

    pub fn blocked_keys(&self) -> usize {
        self.queues.lock().len()
    }
}
