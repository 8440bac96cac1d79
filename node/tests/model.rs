//! Model-based test of the keyspace: random sequences of operations run on
//! `db::Db` through its `Keys` API and on a `BTreeMap` model, with a fake
//! clock, and after every step the two must agree.
//!
//! The model keeps what the store *physically* holds, expired keys included,
//! because that is what `key_counts()` reports: an expired key disappears only
//! when something looks it up (lazy expiry), is overwritten, or is cleared.
//! Reads, on the other hand, must never see an expired key. Memory accounting
//! is checked by deleting everything at the end: `used_memory()` must be 0.

use std::collections::{BTreeMap, BTreeSet};

use ferrokv_node::db::list::List;
use ferrokv_node::db::{Db, Expiry, Value, WRONGTYPE};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum MVal {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
}

#[derive(Debug, Clone)]
struct MEntry {
    val: MVal,
    expire: Option<u64>,
}

#[derive(Default)]
struct Model {
    now: u64,
    keys: BTreeMap<Vec<u8>, MEntry>,
}

impl Model {
    fn expired(&self, key: &[u8]) -> bool {
        self.keys
            .get(key)
            .is_some_and(|e| e.expire.is_some_and(|t| t <= self.now))
    }

    /// A lookup: an expired key is deleted, as the store's lazy expiry does.
    fn lookup(&mut self, key: &[u8]) -> Option<&mut MEntry> {
        if self.expired(key) {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    fn live_keys(&self) -> BTreeSet<Vec<u8>> {
        self.keys
            .iter()
            .filter(|(_, e)| e.expire.is_none_or(|t| t > self.now))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.keys.len(),
            self.keys.values().filter(|e| e.expire.is_some()).count(),
        )
    }
}

#[derive(Debug, Clone)]
enum Exp {
    Clear,
    Keep,
    /// Milliseconds from now (0 = already expired).
    In(u64),
}

#[derive(Debug, Clone)]
enum Op {
    SetStr(Vec<u8>, Vec<u8>, Exp),
    GetStr(Vec<u8>),
    Exists(Vec<u8>),
    Remove(Vec<u8>),
    SetExpire(Vec<u8>, Option<u64>),
    InsertList(Vec<u8>, Vec<Vec<u8>>, Option<u64>),
    Push(Vec<u8>, Vec<u8>),
    Pop(Vec<u8>),
    Advance(u64),
    Scan(usize),
    Clear,
}

/// Few distinct keys, so that operations hit the same keys often; some share
/// a hash tag (same slot, same partition).
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..12).prop_map(|i| format!("k{i}").into_bytes()),
        (0u8..4).prop_map(|i| format!("{{tag}}:{i}").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..6),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        // Larger values take other string encodings and allocation classes.
        (0usize..600).prop_map(|n| vec![b'x'; n]),
        (-1000i64..1000).prop_map(|n| n.to_string().into_bytes()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let exp = prop_oneof![Just(Exp::Clear), Just(Exp::Keep), (0u64..50).prop_map(Exp::In)];
    prop_oneof![
        4 => (key(), value(), exp).prop_map(|(k, v, e)| Op::SetStr(k, v, e)),
        3 => key().prop_map(Op::GetStr),
        2 => key().prop_map(Op::Exists),
        2 => key().prop_map(Op::Remove),
        2 => (key(), prop::option::of(0u64..50)).prop_map(|(k, t)| Op::SetExpire(k, t)),
        2 => (key(), prop::collection::vec(value(), 1..5), prop::option::of(0u64..50))
            .prop_map(|(k, v, t)| Op::InsertList(k, v, t)),
        2 => (key(), value()).prop_map(|(k, v)| Op::Push(k, v)),
        2 => key().prop_map(Op::Pop),
        2 => (0u64..30).prop_map(Op::Advance),
        1 => (1usize..20).prop_map(Op::Scan),
        1 => Just(Op::Clear),
    ]
}

fn list_of(items: &[Vec<u8>]) -> List {
    let mut l = List::default();
    for i in items {
        l.push_back(i);
    }
    l
}

/// Run one operation on both; return a description of any disagreement.
fn step(db: &Db, m: &mut Model, op: &Op) -> Result<(), String> {
    let now = m.now;
    match op {
        Op::SetStr(k, v, e) => {
            let mut ks = db.lock_keys([k], now);
            let (expiry, expire) = match e {
                Exp::Clear => (Expiry::Clear, None),
                Exp::In(d) => (Expiry::At(now + d), Some(now + d)),
                // KEEPTTL looks the key up first: an expired key's TTL is gone.
                Exp::Keep => (Expiry::Keep, m.lookup(k).and_then(|e| e.expire)),
            };
            ks.set_str(k, v, expiry);
            m.keys.insert(
                k.clone(),
                MEntry {
                    val: MVal::Str(v.clone()),
                    expire,
                },
            );
        }
        Op::GetStr(k) => {
            let mut ks = db.lock_keys([k], now);
            let got = ks.get_str(k).map(|v| v.map(<[u8]>::to_vec));
            let want = match m.lookup(k) {
                None => Ok(None),
                Some(MEntry { val: MVal::Str(v), .. }) => Ok(Some(v.clone())),
                Some(_) => Err(WRONGTYPE),
            };
            if got != want {
                return Err(format!("get_str {k:?}: store {got:?}, model {want:?}"));
            }
        }
        Op::Exists(k) => {
            let got = db.lock_keys([k], now).exists(k);
            let want = m.lookup(k).is_some();
            if got != want {
                return Err(format!("exists {k:?}: store {got}, model {want}"));
            }
        }
        Op::Remove(k) => {
            let got = db.lock_keys([k], now).remove(k).map(|v| match v {
                Value::List(l) => MVal::List(l.iter().map(|b| b.to_vec()).collect()),
                Value::Str(s) => MVal::Str(s.to_vec()),
                other => MVal::Str(format!("unexpected {}", other.type_name()).into_bytes()),
            });
            let want = m.lookup(k).map(|e| e.val.clone());
            m.keys.remove(k);
            if got != want {
                return Err(format!("remove {k:?}: store {got:?}, model {want:?}"));
            }
        }
        Op::SetExpire(k, d) => {
            let at = d.map(|d| now + d);
            let got = db.lock_keys([k], now).set_expire(k, at);
            let want = match m.lookup(k) {
                Some(e) => {
                    e.expire = at;
                    true
                }
                None => false,
            };
            if got != want {
                return Err(format!("set_expire {k:?}: store {got}, model {want}"));
            }
        }
        Op::InsertList(k, items, d) => {
            let at = d.map(|d| now + d);
            db.lock_keys([k], now).insert(k, Value::List(list_of(items)), at);
            m.keys.insert(
                k.clone(),
                MEntry {
                    val: MVal::List(items.clone()),
                    expire: at,
                },
            );
        }
        Op::Push(k, v) => {
            let mut ks = db.lock_keys([k], now);
            let got = ks.get_obj_mut_or_create::<List>(k).map(|l| l.push_back(v));
            drop(ks);
            let want = match m.lookup(k) {
                None => {
                    m.keys.insert(
                        k.clone(),
                        MEntry {
                            val: MVal::List(vec![v.clone()]),
                            expire: None,
                        },
                    );
                    Ok(())
                }
                Some(MEntry { val: MVal::List(l), .. }) => {
                    l.push(v.clone());
                    Ok(())
                }
                Some(_) => Err(WRONGTYPE),
            };
            if got != want {
                return Err(format!("push {k:?}: store {got:?}, model {want:?}"));
            }
        }
        Op::Pop(k) => {
            let mut ks = db.lock_keys([k], now);
            let got = ks
                .get_obj_mut::<List>(k)
                .map(|l| l.and_then(|l| l.pop_front()).map(|b| b.to_vec()));
            // Dropping the lock ends the command: an emptied list is deleted.
            drop(ks);
            let want = match m.lookup(k) {
                None => Ok(None),
                Some(MEntry { val: MVal::List(l), .. }) => {
                    let v = (!l.is_empty()).then(|| l.remove(0));
                    if l.is_empty() {
                        m.keys.remove(k);
                    }
                    Ok(v)
                }
                Some(_) => Err(WRONGTYPE),
            };
            if got != want {
                return Err(format!("pop {k:?}: store {got:?}, model {want:?}"));
            }
        }
        Op::Advance(d) => m.now += d,
        Op::Scan(count) => {
            let mut seen = BTreeSet::new();
            let mut cursor = 0;
            let mut rounds = 0;
            loop {
                let (next, keys) = db.lock_all(now).scan(cursor, *count, |_| true);
                for k in keys {
                    if !seen.insert(k.to_vec()) {
                        return Err(format!("scan returned {k:?} twice"));
                    }
                }
                cursor = next;
                rounds += 1;
                if cursor == 0 {
                    break;
                }
                if rounds > 10_000 {
                    return Err("scan does not terminate".into());
                }
            }
            let want = m.live_keys();
            if seen != want {
                return Err(format!("scan: store {seen:?}, model {want:?}"));
            }
        }
        Op::Clear => {
            db.lock_all(now).clear(false);
            m.keys.clear();
        }
    }
    let (got, want) = (db.key_counts(), m.counts());
    if got != want {
        return Err(format!("key_counts after {op:?}: store {got:?}, model {want:?}"));
    }
    if m.keys.is_empty() != (db.used_memory() == 0) {
        return Err(format!(
            "used_memory {} with {} keys after {op:?}",
            db.used_memory(),
            m.keys.len()
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn keyspace_matches_btreemap_model(ops in prop::collection::vec(op(), 1..120)) {
        let db = Db::new();
        let mut m = Model { now: 1_000_000, ..Model::default() };
        for (i, op) in ops.iter().enumerate() {
            if let Err(e) = step(&db, &mut m, op) {
                prop_assert!(false, "step {i}: {e}");
            }
        }
        // Delete everything one key at a time: memory accounting must return to 0.
        let keys: Vec<Vec<u8>> = m.keys.keys().cloned().collect();
        for k in keys {
            step(&db, &mut m, &Op::Remove(k)).map_err(TestCaseError::fail)?;
        }
        prop_assert_eq!(db.key_counts(), (0, 0));
        prop_assert_eq!(db.used_memory(), 0);
    }
}

/// The same end state, reached by FLUSHALL-style clearing instead.
#[test]
fn clear_returns_memory_to_zero() {
    let db = Db::new();
    {
        let mut ks = db.lock_all(0);
        for i in 0..1000 {
            ks.set_str(format!("k{i}").as_bytes(), &vec![b'v'; i % 300], Expiry::Clear);
            if i % 3 == 0 {
                ks.set_expire(format!("k{i}").as_bytes(), Some(10_000));
            }
        }
        ks.insert(b"list", Value::List(list_of(&[b"a".to_vec(), b"b".to_vec()])), None);
    }
    assert_eq!(db.key_counts(), (1001, 334));
    assert!(db.used_memory() > 1000 * 16);
    assert_eq!(db.lock_all(0).clear(true), 1001);
    assert_eq!(db.key_counts(), (0, 0));
    assert_eq!(db.used_memory(), 0);
}
