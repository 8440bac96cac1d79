//! A hash of the dataset (or of one slot) that two nodes holding the same
//! data agree on: what tests, replicas and backups compare (`DIGEST`).
//!
//! Hash tables iterate in an order that depends on per-process random seeds
//! and on history (a table that grew and shrank), so the digest must not:
//! each key is hashed on its own (XXH3-128 over its type, key, absolute
//! expiry time and value) and key hashes are combined by wrapping addition,
//! which does not care about order. Inside a hash or a set the same is done
//! per field/member; lists, sorted sets and streams are hashed in their
//! natural order, which is part of their value. Every variable-length piece
//! is length-prefixed so that different values cannot run together into the
//! same byte string.
//!
//! Left out on purpose, because a node that holds the same data still
//! derives them from its own clock or history: access clocks (LRU/LFU),
//! encodings (`OBJECT ENCODING`), stream macro-node layout, and stream
//! consumer seen times and PEL delivery times. Keys whose TTL has passed
//! are left out too (they are logically gone, even if not yet reclaimed).

use xxhash_rust::xxh3::Xxh3;

use crate::db::{Db, Entry, ValRef, Value};
use crate::slot::SLOTS;

/// The digest of an empty dataset or slot.
pub const EMPTY: u128 = 0;

fn put(h: &mut Xxh3, b: &[u8]) {
    h.update(&(b.len() as u64).to_le_bytes());
    h.update(b);
}

/// Order-independent digest of a set of byte strings (or field/value pairs).
fn unordered<'a>(items: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> u128 {
    let mut sum = 0u128;
    let mut h = Xxh3::new();
    for (a, b) in items {
        h.reset();
        put(&mut h, a);
        if let Some(b) = b {
            put(&mut h, b);
        }
        sum = sum.wrapping_add(h.digest128());
    }
    sum
}

/// The digest of one key.
pub fn key_digest(e: &Entry) -> u128 {
    let mut h = Xxh3::new();
    put(&mut h, e.key());
    h.update(&e.expire_at().unwrap_or(0).to_le_bytes());
    match e.value() {
        ValRef::Str(s) => {
            h.update(b"s");
            put(&mut h, s);
        }
        ValRef::Obj(v) => value_digest(&mut h, v),
    }
    h.digest128()
}

fn value_digest(h: &mut Xxh3, v: &Value) {
    match v {
        Value::Str(s) => {
            h.update(b"s");
            put(h, s);
        }
        Value::List(l) => {
            h.update(b"l");
            h.update(&(l.len() as u64).to_le_bytes());
            for x in l.iter() {
                put(h, x);
            }
        }
        Value::Hash(m) => {
            h.update(b"h");
            h.update(&(m.len() as u64).to_le_bytes());
            let d = unordered(m.iter().map(|(f, x)| (f, Some(x))));
            h.update(&d.to_le_bytes());
        }
        Value::Set(s) => {
            h.update(b"t");
            h.update(&(s.len() as u64).to_le_bytes());
            let d = unordered(s.iter().map(|m| (m, None)));
            h.update(&d.to_le_bytes());
        }
        Value::ZSet(z) => {
            h.update(b"z");
            h.update(&(z.len() as u64).to_le_bytes());
            for (m, score) in z.iter() {
                put(h, m);
                h.update(&score.to_le_bytes());
            }
        }
        Value::Stream(s) => {
            h.update(b"x");
            for id in [s.last_id, s.max_deleted_id] {
                h.update(&id.ms.to_le_bytes());
                h.update(&id.seq.to_le_bytes());
            }
            h.update(&s.entries_added.to_le_bytes());
            h.update(&(s.len() as u64).to_le_bytes());
            for (id, fields) in s.entries() {
                h.update(&id.ms.to_le_bytes());
                h.update(&id.seq.to_le_bytes());
                h.update(&(fields.len() as u64).to_le_bytes());
                for f in fields {
                    put(h, f);
                }
            }
            h.update(&(s.group_count() as u64).to_le_bytes());
            for (name, g) in s.groups() {
                put(h, name);
                h.update(&g.last_id.ms.to_le_bytes());
                h.update(&g.last_id.seq.to_le_bytes());
                h.update(&g.entries_read.to_le_bytes());
                h.update(&(g.pel.len() as u64).to_le_bytes());
                for (id, n) in &g.pel {
                    h.update(&id.ms.to_le_bytes());
                    h.update(&id.seq.to_le_bytes());
                    put(h, &n.consumer);
                    h.update(&n.delivery_count.to_le_bytes());
                }
                h.update(&(g.consumers.len() as u64).to_le_bytes());
                for c in g.consumers.keys() {
                    put(h, c);
                }
            }
        }
    }
}

/// Fold a key's digest into an accumulated one.
pub fn combine(acc: u128, key: u128) -> u128 {
    acc.wrapping_add(key)
}

/// Digest of every live key visited by `for_each` (the partitions a
/// [`crate::db::Keys`] holds: all of them for the whole dataset).
pub fn of_keys(ks: &mut crate::db::Keys<'_>) -> u128 {
    let mut acc = EMPTY;
    ks.for_each_key(|e| acc = combine(acc, key_digest(e)));
    acc
}

/// Digest of one slot's live keys at time `now` (locks only its partition).
pub fn of_slot(db: &Db, slot: u16, now: u64) -> u128 {
    db.with_slot(slot, |t| {
        t.table
            .iter()
            .filter(|e| !e.is_expired(now))
            .fold(EMPTY, |acc, e| combine(acc, key_digest(e)))
    })
}

/// Digest of the whole dataset, consistent across partitions (holds every
/// partition lock while it hashes).
pub fn of_db(db: &Db, now: u64) -> u128 {
    let mut ks = db.lock_all(now);
    of_keys(&mut ks)
}

/// The sum of all slot digests equals [`of_db`]: a replica can compare slot
/// by slot and find which slots differ.
pub fn of_all_slots(db: &Db, now: u64) -> u128 {
    (0..SLOTS as u16).fold(EMPTY, |acc, s| combine(acc, of_slot(db, s, now)))
}

/// Hex form, as `DIGEST` replies it.
pub fn hex(d: u128) -> String {
    format!("{d:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Expiry;
    use crate::db::hash::Hash;

    fn fill(db: &Db, order: &[usize]) {
        let mut ks = db.lock_all(0);
        for &i in order {
            ks.set_str(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), Expiry::Clear);
            let h = ks.get_obj_mut_or_create::<Hash>(b"h").expect("hash");
            h.insert(format!("f{i}").as_bytes(), b"x", &Default::default());
        }
    }

    #[test]
    fn independent_of_insertion_order_and_sensitive_to_content() {
        let a = Db::new();
        let b = Db::new();
        let fwd: Vec<usize> = (0..500).collect();
        let rev: Vec<usize> = (0..500).rev().collect();
        fill(&a, &fwd);
        fill(&b, &rev);
        let da = of_db(&a, 0);
        assert_ne!(da, EMPTY);
        assert_eq!(da, of_db(&b, 0));
        assert_eq!(da, of_all_slots(&a, 0));
        {
            let mut ks = b.lock_keys([b"k1"], 0);
            ks.set_expire(b"k1", Some(10_000));
        }
        assert_ne!(da, of_db(&b, 0), "a TTL changes the digest");
        {
            let mut ks = b.lock_keys([b"k1"], 0);
            ks.set_expire(b"k1", None);
        }
        assert_eq!(da, of_db(&b, 0));
        {
            let mut ks = b.lock_keys([b"k2"], 0);
            ks.set_str(b"k2", b"other", Expiry::Clear);
        }
        assert_ne!(da, of_db(&b, 0));
        assert_eq!(hex(EMPTY), "0".repeat(32));
    }
}
