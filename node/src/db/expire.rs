//! Active expiry: reclaim keys whose TTL passed even if nobody reads them.
//!
//! Like Redis' `activeExpireCycle`, each cycle walks the volatile keys
//! incrementally from a saved cursor (per partition), checks a bounded number
//! of keys, and keeps going while a large share of what it checks turns out to
//! be expired, within a time budget so that clients never see a long pause.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Db, PARTITIONS, SLOTS_PER_PARTITION};

/// Keys checked per slot visit (Redis' ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP).
const KEYS_PER_LOOP: usize = 20;

/// Run one cycle; returns the expired keys.
pub fn active_expire_cycle(db: &Db, budget: Duration) -> Vec<Bytes> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        let mut checked_total = 0;
        let mut expired_total = 0;
        for p in 0..PARTITIONS {
            let now = super::now_ms();
            let mut ks = db.lock_partition(p, now);
            let (volatile, cursor) = {
                let part = ks.partitions_mut().next();
                match part {
                    Some(part) => (part.volatile, part.expire_cursor),
                    None => (0, 0),
                }
            };
            if volatile == 0 {
                continue;
            }
            // Visit up to a handful of slots that have volatile keys.
            let mut visited = 0;
            let mut idx = cursor;
            for _ in 0..SLOTS_PER_PARTITION {
                idx = (idx + 1) % SLOTS_PER_PARTITION;
                let slot = (idx * PARTITIONS + p) as u16;
                let has = ks
                    .partitions_mut()
                    .next()
                    .is_some_and(|part| part.slot(slot).volatile > 0);
                if !has {
                    continue;
                }
                let (checked, dead) = ks.expire_slot(slot, KEYS_PER_LOOP);
                checked_total += checked;
                expired_total += dead.len();
                out.extend(dead);
                visited += 1;
                if visited >= 4 {
                    break;
                }
            }
            if let Some(part) = ks.partitions_mut().next() {
                part.expire_cursor = idx;
            }
        }
        // Repeat only while more than 10% of checked keys were expired.
        if checked_total == 0 || expired_total * 10 <= checked_total || start.elapsed() >= budget {
            break;
        }
    }
    out
}
