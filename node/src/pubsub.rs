//! Pub/sub: channel and pattern subscriptions, and message fan-out; and the
//! MONITOR feed, which reaches its clients the same way.
//!
//! Each subscribed connection owns a bounded queue; publishing never blocks on
//! a slow subscriber. A subscriber whose queue is full is disconnected, which
//! is what Redis' `client-output-buffer-limit pubsub` does, so one stuck
//! reader can neither stall publishers nor grow the server's memory.

use std::collections::HashMap;

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::glob::glob_match;

/// Messages queued per subscriber before it is considered stuck.
pub const QUEUE_LEN: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub enum Message {
    Message {
        channel: Bytes,
        payload: Bytes,
    },
    PMessage {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
    SMessage {
        channel: Bytes,
        payload: Bytes,
    },
    /// A MONITOR line (without the leading `+` and the CRLF).
    Monitor(Bytes),
}

#[derive(Clone)]
pub struct Subscriber {
    pub client_id: u64,
    pub tx: mpsc::Sender<Message>,
}

#[derive(Default)]
pub struct PubSub {
    channels: RwLock<HashMap<Bytes, Vec<Subscriber>>>,
    patterns: RwLock<Vec<(Bytes, Subscriber)>>,
    shard_channels: RwLock<HashMap<Bytes, Vec<Subscriber>>>,
    monitors: RwLock<Vec<Subscriber>>,
    /// `monitors` is not empty: the one load the command path pays when
    /// nobody monitors.
    monitoring: AtomicBool,
}

fn deliver(sub: &Subscriber, msg: Message, overflowed: &mut Vec<u64>) -> bool {
    match sub.tx.try_send(msg) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            overflowed.push(sub.client_id);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

impl PubSub {
    /// Subscribe; returns false if already subscribed.
    pub fn subscribe(&self, channel: Bytes, sub: Subscriber, shard: bool) -> bool {
        let map = if shard { &self.shard_channels } else { &self.channels };
        let mut m = map.write();
        let subs = m.entry(channel).or_default();
        if subs.iter().any(|s| s.client_id == sub.client_id) {
            return false;
        }
        subs.push(sub);
        true
    }

    pub fn unsubscribe(&self, channel: &[u8], client_id: u64, shard: bool) -> bool {
        let map = if shard { &self.shard_channels } else { &self.channels };
        let mut m = map.write();
        let Some(subs) = m.get_mut(channel) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|s| s.client_id != client_id);
        let removed = subs.len() != before;
        if subs.is_empty() {
            m.remove(channel);
        }
        removed
    }

    pub fn psubscribe(&self, pattern: Bytes, sub: Subscriber) -> bool {
        let mut p = self.patterns.write();
        if p.iter().any(|(pat, s)| *pat == pattern && s.client_id == sub.client_id) {
            return false;
        }
        p.push((pattern, sub));
        true
    }

    pub fn punsubscribe(&self, pattern: &[u8], client_id: u64) -> bool {
        let mut p = self.patterns.write();
        let before = p.len();
        p.retain(|(pat, s)| !(pat.as_ref() == pattern && s.client_id == client_id));
        p.len() != before
    }

    /// Publish; returns the number of receivers and the ids of subscribers
    /// whose queues overflowed (the caller disconnects them).
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> (usize, Vec<u64>) {
        let mut n = 0;
        let mut overflowed = Vec::new();
        if let Some(subs) = self.channels.read().get(channel) {
            for s in subs {
                let m = Message::Message {
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                if deliver(s, m, &mut overflowed) {
                    n += 1;
                }
            }
        }
        for (pat, s) in self.patterns.read().iter() {
            if glob_match(pat, channel, false) {
                let m = Message::PMessage {
                    pattern: pat.clone(),
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                if deliver(s, m, &mut overflowed) {
                    n += 1;
                }
            }
        }
        (n, overflowed)
    }

    /// Publish to a shard channel (SPUBLISH).
    pub fn spublish(&self, channel: &Bytes, payload: &Bytes) -> (usize, Vec<u64>) {
        let mut n = 0;
        let mut overflowed = Vec::new();
        if let Some(subs) = self.shard_channels.read().get(channel) {
            for s in subs {
                let m = Message::SMessage {
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                if deliver(s, m, &mut overflowed) {
                    n += 1;
                }
            }
        }
        (n, overflowed)
    }

    /// Active channels matching an optional pattern (PUBSUB CHANNELS).
    pub fn channels(&self, pattern: Option<&[u8]>, shard: bool) -> Vec<Bytes> {
        let map = if shard { &self.shard_channels } else { &self.channels };
        map.read()
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    pub fn numsub(&self, channel: &[u8], shard: bool) -> usize {
        let map = if shard { &self.shard_channels } else { &self.channels };
        map.read().get(channel).map_or(0, Vec::len)
    }

    /// Number of distinct patterns (PUBSUB NUMPAT).
    pub fn numpat(&self) -> usize {
        let p = self.patterns.read();
        let mut pats: Vec<&Bytes> = p.iter().map(|(pat, _)| pat).collect();
        pats.sort();
        pats.dedup();
        pats.len()
    }

    /// Drop every subscription of a client (on disconnect or RESET).
    pub fn remove_client(&self, client_id: u64) {
        for map in [&self.channels, &self.shard_channels] {
            let mut m = map.write();
            m.retain(|_, subs| {
                subs.retain(|s| s.client_id != client_id);
                !subs.is_empty()
            });
        }
        self.patterns.write().retain(|(_, s)| s.client_id != client_id);
        self.remove_monitor(client_id);
    }

    /// MONITOR: `sub` receives every command from now on.
    pub fn add_monitor(&self, sub: Subscriber) {
        let mut m = self.monitors.write();
        if !m.iter().any(|s| s.client_id == sub.client_id) {
            m.push(sub);
        }
        self.monitoring.store(true, Ordering::Relaxed);
    }

    pub fn remove_monitor(&self, client_id: u64) {
        if !self.is_monitored() {
            return;
        }
        let mut m = self.monitors.write();
        m.retain(|s| s.client_id != client_id);
        self.monitoring.store(!m.is_empty(), Ordering::Relaxed);
    }

    /// Is any client in MONITOR mode?
    #[inline]
    pub fn is_monitored(&self) -> bool {
        self.monitoring.load(Ordering::Relaxed)
    }

    /// Send `line` to every monitor; returns the monitors whose queue
    /// overflowed (the caller disconnects them, as for subscribers).
    pub fn feed_monitors(&self, line: Bytes) -> Vec<u64> {
        let mut overflowed = Vec::new();
        for s in self.monitors.read().iter() {
            deliver(s, Message::Monitor(line.clone()), &mut overflowed);
        }
        overflowed
    }
}

/// A MONITOR line as Redis writes it: `<unix time>.<µs> [0 <client>]`
/// then each argument quoted and escaped (`sdscatrepr`). What `redact`
/// marks is shown as `"(redacted)"` (passwords: AUTH, HELLO ... AUTH).
pub fn monitor_line(unix_us: u64, client: &str, args: &[&[u8]]) -> Bytes {
    let mut out = format!("{}.{:06} [0 {client}]", unix_us / 1_000_000, unix_us % 1_000_000).into_bytes();
    let redacted = redacted_args(args);
    for (i, a) in args.iter().enumerate() {
        out.push(b' ');
        if redacted.contains(&i) {
            out.extend_from_slice(b"\"(redacted)\"");
            continue;
        }
        out.push(b'"');
        for &c in a.iter() {
            match c {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x07 => out.extend_from_slice(b"\\a"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x20..=0x7e => out.push(c),
                _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
            }
        }
        out.push(b'"');
    }
    Bytes::from(out)
}

/// Positions of arguments a MONITOR line must not show.
fn redacted_args(args: &[&[u8]]) -> Vec<usize> {
    let Some(name) = args.first() else {
        return Vec::new();
    };
    if name.eq_ignore_ascii_case(b"auth") {
        return (1..args.len()).collect();
    }
    if name.eq_ignore_ascii_case(b"hello")
        && let Some(i) = args.iter().position(|a| a.eq_ignore_ascii_case(b"auth"))
    {
        return (i + 1..args.len().min(i + 3)).collect();
    }
    Vec::new()
}
