//! The keyspace.
//!
//! 16384 slot tables are spread over [`PARTITIONS`] partitions (slot `s` lives
//! in partition `s % PARTITIONS`), each behind its own mutex. A command locks
//! only the partitions of the keys it names, in ascending order (so two
//! multi-key commands can never deadlock), runs, and releases them: commands on
//! different partitions run in parallel on different cores, and there is no
//! global lock on the hot path. Commands that need the whole keyspace (KEYS,
//! SCAN, FLUSHALL, DBSIZE) take every partition in the same order.
//!
//! One hash table per slot makes counting and iterating a slot's keys cheap,
//! which slot migration and per-slot digests rely on, and gives SCAN a cursor
//! that survives table resizes (slot, then hash order within the slot).
//!
//! Every read goes through [`Keys`], which applies lazy expiry and updates the
//! access clock; every mutable access is remembered so that, when the command
//! ends, empty collections are deleted and memory accounting is corrected.

pub mod blocks;
pub mod dict;
pub mod entry;
pub mod evict;
pub mod expire;
pub mod hash;
pub mod lazyfree;
pub mod limits;
pub mod list;
pub mod set;
pub mod stream;
pub mod value;
pub mod zset;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

use crate::slot::{SLOTS, key_slot};
pub use entry::{Entry, ValRef};
pub use value::{Kind, Value};

/// Number of independently locked partitions. A power of two well above the
/// core count keeps collisions between concurrent commands rare while keeping
/// whole-keyspace commands (which lock all partitions) cheap.
pub const PARTITIONS: usize = 64;
const SLOTS_PER_PARTITION: usize = SLOTS / PARTITIONS;

/// Keys of one slot.
#[derive(Default)]
pub struct SlotTable {
    pub table: HashTable<Entry>,
    /// Keys in this slot with an expiry (lets active expiry skip slots).
    pub volatile: usize,
}

/// A group of slots sharing a lock.
pub struct Partition {
    slots: Vec<SlotTable>,
    pub keys: usize,
    pub volatile: usize,
    /// Accounted bytes of the keys in this partition.
    pub mem: usize,
    /// Where active expiry resumes (index into `slots`).
    pub expire_cursor: usize,
}

impl Partition {
    fn new() -> Self {
        Partition {
            slots: (0..SLOTS_PER_PARTITION).map(|_| SlotTable::default()).collect(),
            keys: 0,
            volatile: 0,
            mem: 0,
            expire_cursor: 0,
        }
    }

    pub fn slot(&self, slot: u16) -> &SlotTable {
        &self.slots[slot as usize / PARTITIONS]
    }

    /// Private: every change to a slot goes through [`Keys`], which first
    /// lets a running snapshot cut capture the slot ([`crate::persist::cut`]).
    fn slot_mut(&mut self, slot: u16) -> &mut SlotTable {
        &mut self.slots[slot as usize / PARTITIONS]
    }

    /// Read-only, for the same reason as `slot_mut` is private.
    pub fn slot_tables(&self) -> &[SlotTable] {
        &self.slots
    }

    /// A key accounted at `before` bytes now takes `after`: this
    /// partition's total and the keyspace's follow.
    fn reaccount(&mut self, db: &Db, before: usize, after: usize) {
        // Most edits leave the size alone; the total is an atomic on a line
        // every core writes, not to be touched for nothing.
        if before != after {
            self.mem = (self.mem + after).saturating_sub(before);
            db.adjust_mem(after as i64 - before as i64);
        }
    }
}

#[repr(align(128))]
struct Padded(Mutex<Partition>);

/// Hasher shared by all tables; seeded randomly per process so that a client
/// cannot choose keys that collide.
pub type KeyHasher = foldhash::fast::FixedState;

pub struct Db {
    parts: Box<[Padded]>,
    hasher: KeyHasher,
    /// Sum of partitions' `mem`, kept as an atomic so maxmemory checks do not
    /// need to lock anything.
    mem_total: AtomicI64,
    pub expired_keys: std::sync::atomic::AtomicU64,
    pub evicted_keys: std::sync::atomic::AtomicU64,
    /// Eviction policy, shared with the config so access tracking knows
    /// whether to keep LRU clocks or LFU counters.
    pub eviction: evict::EvictionConfig,
    /// Every change to the keyspace, in order (see [`crate::wlog`]). It
    /// lives with the keyspace because whoever changes keys appends to it
    /// while holding their partition locks (commands, active expiry,
    /// eviction).
    pub wlog: crate::wlog::WriteLog,
    /// This node is a replica: keys expire only when its primary says so
    /// (a `DEL` in the stream), never by this node's clock, or replica and
    /// primary would disagree about which keys exist (Redis' rule).
    pub no_expire: std::sync::atomic::AtomicBool,
    /// `notify-keyspace-events` asks for `new` events: [`Keys`] then
    /// records the keys a command creates ([`Keys::created`]). Kept here,
    /// not only in the config, because the keyspace has no config; set by
    /// [`crate::state::sync_notify`].
    pub record_new: std::sync::atomic::AtomicBool,
    /// The running snapshot cut, if any: [`Keys`] lets it capture a slot
    /// before the slot's first change.
    pub cut: crate::persist::cut::CutState,
    /// Frees big deleted values in the background ([`lazyfree`]).
    pub lazyfree: lazyfree::LazyFree,
    /// The function libraries (FUNCTION LOAD): data, as in Redis 7 —
    /// snapshot cuts take them at the same instant as the keys, loads
    /// replace them (see [`crate::script::function`]).
    pub functions: crate::script::function::Libraries,
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

/// What an expiry argument does to a key's TTL on write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Remove any TTL (plain SET).
    Clear,
    /// Keep the existing TTL (SET KEEPTTL, and in-place modifications).
    Keep,
    /// Absolute unix time in milliseconds.
    At(u64),
}

/// Millisecond unix time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The partitions of `slots`, ascending and without repeats: the order in
/// which a command takes their locks.
fn partitions_of(slots: impl Iterator<Item = u16>) -> SmallVec<[usize; 4]> {
    let mut parts: SmallVec<[usize; 4]> = slots.map(Db::partition_of).collect();
    parts.sort_unstable();
    parts.dedup();
    parts
}

impl Db {
    pub fn new() -> Self {
        Db {
            parts: (0..PARTITIONS).map(|_| Padded(Mutex::new(Partition::new()))).collect(),
            hasher: KeyHasher::with_seed(rand::random()),
            mem_total: AtomicI64::new(0),
            expired_keys: 0.into(),
            evicted_keys: 0.into(),
            eviction: evict::EvictionConfig::default(),
            wlog: crate::wlog::WriteLog::default(),
            no_expire: std::sync::atomic::AtomicBool::new(false),
            record_new: std::sync::atomic::AtomicBool::new(false),
            cut: crate::persist::cut::CutState::default(),
            lazyfree: Default::default(),
            functions: Default::default(),
        }
    }

    /// Run `f` with every partition locked (a snapshot cut's instant):
    /// nothing in the keyspace or the write log changes meanwhile.
    pub fn freeze<R>(&self, f: impl FnOnce() -> R) -> R {
        let guards: Vec<MutexGuard<'_, Partition>> = self.parts.iter().map(|p| p.0.lock()).collect();
        let r = f();
        drop(guards);
        r
    }

    /// Read one slot's table with its partition locked (the cut's dumper,
    /// digests), without the bookkeeping of a [`Keys`].
    pub fn with_slot<R>(&self, slot: u16, f: impl FnOnce(&SlotTable) -> R) -> R {
        let g = self.parts[Self::partition_of(slot)].0.lock();
        f(g.slot(slot))
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn partition_of(slot: u16) -> usize {
        slot as usize % PARTITIONS
    }

    /// Lock the partitions holding `keys` (in ascending order) for one command.
    pub fn lock_keys<'a, K: AsRef<[u8]>>(&'a self, keys: impl IntoIterator<Item = K>, now: u64) -> Keys<'a> {
        self.lock_parts(partitions_of(keys.into_iter().map(|k| key_slot(k.as_ref()))), now)
    }

    /// [`Db::lock_keys`] for a command's own key arguments, which outlive
    /// the returned [`Keys`]: the first one's slot, computed here to find its
    /// partition, is remembered for the command's lookups (see
    /// [`Keys::slot_of`]).
    pub fn lock_args<'a>(&'a self, keys: impl IntoIterator<Item = &'a [u8]>, now: u64) -> Keys<'a> {
        let mut keys = keys.into_iter();
        let Some(k) = keys.next() else {
            return self.lock_parts(SmallVec::new(), now);
        };
        let first = (k, key_slot(k));
        let mut ks = match keys.next() {
            // Most commands name one key: its partition, without collecting and sorting.
            None => self.lock_slot(first.1, now),
            Some(second) => {
                let slots = [first.1, key_slot(second)].into_iter().chain(keys.map(key_slot));
                self.lock_parts(partitions_of(slots), now)
            }
        };
        ks.arg_slot = Some(first);
        ks
    }

    /// [`Db::lock_slot`] for a command whose key arguments cluster routing
    /// found all in `slot`: remembered as the first one's slot, as by
    /// [`Db::lock_args`].
    pub fn lock_slot_args<'a>(&'a self, slot: u16, first_key: Option<&'a [u8]>, now: u64) -> Keys<'a> {
        let mut ks = self.lock_slot(slot, now);
        ks.arg_slot = first_key.map(|k| (k, slot));
        ks
    }

    /// Lock every partition (whole-keyspace commands, MULTI/EXEC).
    pub fn lock_all(&self, now: u64) -> Keys<'_> {
        self.lock_parts((0..PARTITIONS).collect(), now)
    }

    /// Lock the partition of one slot.
    pub fn lock_slot(&self, slot: u16, now: u64) -> Keys<'_> {
        self.lock_parts(smallvec::smallvec![Self::partition_of(slot)], now)
    }

    fn lock_parts(&self, parts: SmallVec<[usize; 4]>, now: u64) -> Keys<'_> {
        let guards = match parts.as_slice() {
            &[p] => smallvec::smallvec![(p, self.parts[p].0.lock())],
            _ => parts.into_iter().map(|p| (p, self.parts[p].0.lock())).collect(),
        };
        Keys {
            db: self,
            guards,
            now,
            touched: SmallVec::new(),
            arg_slot: None,
            expired: Vec::new(),
            created: Vec::new(),
            lru_clock: evict::lru_clock(now),
            lfu: self.eviction.lfu.load(Ordering::Relaxed),
            no_touch: false,
            master_apply: false,
        }
    }

    /// Lock one partition by index (background jobs: expiry, eviction, stats).
    pub fn lock_partition(&self, p: usize, now: u64) -> Keys<'_> {
        self.lock_parts(smallvec::smallvec![p], now)
    }

    /// Accounted bytes of all keys.
    pub fn used_memory(&self) -> usize {
        self.mem_total.load(Ordering::Relaxed).max(0) as usize
    }

    /// Number of keys and keys with a TTL, reading each partition in turn.
    pub fn key_counts(&self) -> (usize, usize) {
        let mut keys = 0;
        let mut volatile = 0;
        for p in self.parts.iter() {
            let g = p.0.lock();
            keys += g.keys;
            volatile += g.volatile;
        }
        (keys, volatile)
    }

    /// Log the deletion of `keys` by the server itself (active expiry,
    /// eviction). Called with the keys' partitions still locked.
    pub fn log_deletes(&self, keys: &[Bytes]) {
        if keys.is_empty() {
            return;
        }
        let cmds: Vec<[Bytes; 2]> = keys.iter().map(|k| [Bytes::from_static(b"DEL"), k.clone()]).collect();
        self.wlog.append(&cmds, false);
    }

    fn adjust_mem(&self, delta: i64) {
        if delta != 0 {
            self.mem_total.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

/// A key handed out mutably during a command, with what is needed to find it
/// again when the command ends. The key is copied inline (no allocation for
/// keys up to 32 bytes) and its slot kept: this runs for every write.
struct Touched {
    key: SmallVec<[u8; 32]>,
    hash: u64,
    slot: u16,
    /// Its bucket in the slot table when handed out: where the fix-up
    /// looks first (a hint, checked against the key: the table may have
    /// changed since).
    idx: usize,
    /// Memory accounted for the entry before it was handed out.
    before: usize,
}

/// The partitions one command holds, and everything it may do to keys.
pub struct Keys<'a> {
    db: &'a Db,
    guards: SmallVec<[(usize, MutexGuard<'a, Partition>); 4]>,
    /// The command's clock: one value for the whole command, as Redis caches
    /// `mstime()` per command, so a key cannot expire halfway through.
    pub now: u64,
    lru_clock: u32,
    lfu: bool,
    /// `CLIENT NO-TOUCH`: reads do not update access clocks.
    pub no_touch: bool,
    /// Keys handed out mutably; fixed up (empty → deleted, memory) on drop.
    touched: SmallVec<[Touched; 2]>,
    /// The command's first key argument and its slot, from locking (only
    /// one: most commands name one key, and a `Keys` is moved by value
    /// several times per command, so every byte of it costs).
    arg_slot: Option<(&'a [u8], u16)>,
    /// Keys deleted by lazy expiry during this command (for notifications and
    /// replication, in the order they happened).
    pub expired: Vec<Bytes>,
    /// Keys this command created, in order, while `Db::record_new` is on
    /// (the `new` keyspace event, Redis' `dbAdd`).
    pub created: Vec<Bytes>,
    /// Applying the primary's stream on a replica: a key past its TTL is
    /// still there, as it was on the primary when the command ran there.
    pub master_apply: bool,
}

/// Answer for a key of the wrong type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

impl<'a> Keys<'a> {
    pub fn db(&self) -> &'a Db {
        self.db
    }

    /// The slot of `key`: remembered when `key` is the first key argument
    /// the partitions were locked for (the same slice: same address and
    /// length, and the borrow keeps those bytes alive and unchanged for as
    /// long as `self` lives), else computed. A command's lookups name its
    /// arguments, and hashing the key for its slot again was a visible share
    /// of a pipelined write.
    #[inline]
    fn slot_of(&self, key: &[u8]) -> u16 {
        match self.arg_slot {
            Some((k, slot)) if std::ptr::eq(k, key) => {
                debug_assert_eq!(slot, key_slot(key));
                slot
            }
            _ => key_slot(key),
        }
    }

    fn part_index(&self, p: usize) -> usize {
        match self.guards.iter().position(|(i, _)| *i == p) {
            Some(i) => i,
            None => {
                // A command's key spec missed a key: a bug in this server, never
                // the client's doing. Debug builds (and so every test) stop here;
                // a release build takes the lock late rather than fail the
                // command, accepting the out-of-order lock this one time.
                debug_assert!(false, "partition {p} not locked for this command");
                usize::MAX
            }
        }
    }

    /// The partition of `slot`, about to be changed: a running snapshot cut
    /// captures the slot first (one relaxed load when none runs).
    fn part_mut(&mut self, slot: u16) -> &mut Partition {
        let db = self.db;
        let part = self.part_ref(slot);
        db.cut.before_write(slot, part.slot(slot));
        part
    }

    /// The partition of `slot`, for reading (and access clocks, which
    /// snapshots do not hold).
    fn part_ref(&mut self, slot: u16) -> &mut Partition {
        let p = Db::partition_of(slot);
        let i = self.part_index(p);
        if i == usize::MAX {
            let g = self.db.parts[p].0.lock();
            self.guards.push((p, g));
            let last = self.guards.len() - 1;
            return &mut self.guards[last].1;
        }
        &mut self.guards[i].1
    }

    /// Partitions held, for whole-keyspace iteration.
    pub fn partitions_mut(&mut self) -> impl Iterator<Item = &mut Partition> {
        self.guards.iter_mut().map(|(_, g)| &mut **g)
    }

    pub fn lru_clock(&self) -> u32 {
        self.lru_clock
    }

    /// Find a live entry for changing it, deleting it first if it has expired.
    fn find(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.find_for(key, true)
    }

    /// Find a live entry for reading (its access clock may still change).
    fn find_read(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.find_for(key, false)
    }

    fn find_for(&mut self, key: &[u8], write: bool) -> Option<&mut Entry> {
        let hash = self.db.hash(key);
        self.find_hashed(key, hash, self.slot_of(key), write)
    }

    /// [`Self::find_for`] with the key's hash and slot already computed: a write
    /// looks its key up more than once (find, then find again after noting the
    /// memory it started with), and hashing it each time is a visible share of
    /// a pipelined INCR.
    fn find_hashed(&mut self, key: &[u8], hash: u64, slot: u16, write: bool) -> Option<&mut Entry> {
        let idx = self.find_index(key, hash, slot, write)?;
        self.entry_at(slot, idx)
    }

    /// The bucket index of a live entry in its slot table (lazy expiry
    /// applied; for a write, a running cut has captured the slot). An index
    /// rather than a reference, so that a write can do its bookkeeping and
    /// then reach the entry again with [`Self::entry_at`] without a second
    /// hash-table probe: the index stays valid until the table changes.
    fn find_index(&mut self, key: &[u8], hash: u64, slot: u16, write: bool) -> Option<usize> {
        let now = self.now;
        let table = &self.part_ref(slot).slot(slot).table;
        let idx = table.find_bucket_index(hash, |e| e.key() == key)?;
        let expired = table.get_bucket(idx).is_some_and(|e| e.is_expired(now));
        if expired && !self.master_apply {
            if self.db.no_expire.load(Ordering::Relaxed) {
                // A replica's reader sees the key as gone; deleting it is the
                // primary's call.
                return None;
            }
            self.delete_hashed(key, hash, slot);
            self.db.expired_keys.fetch_add(1, Ordering::Relaxed);
            self.expired.push(Bytes::copy_from_slice(key));
            return None;
        }
        if write {
            // Capturing the slot only reads the table, so `idx` stays valid.
            self.part_mut(slot);
        }
        Some(idx)
    }

    /// The entry at a bucket index [`Self::find_index`] returned (no table
    /// change in between).
    fn entry_at(&mut self, slot: u16, idx: usize) -> Option<&mut Entry> {
        self.part_ref(slot).slot_mut(slot).table.get_bucket_mut(idx)
    }

    fn delete_hashed(&mut self, key: &[u8], hash: u64, slot: u16) -> Option<Entry> {
        let st = self.part_mut(slot).slot_mut(slot);
        let Ok(occ) = st.table.find_entry(hash, |e| e.key() == key) else {
            return None;
        };
        let (e, _) = occ.remove();
        let volatile = e.expire_at().is_some();
        if volatile {
            st.volatile -= 1;
        }
        // A key handed out mutably earlier in this command (or transaction)
        // is still accounted at its size back then, not at its current size:
        // take back what was accounted, and drop the pending fix-up.
        let mem = match self.touched.iter().position(|t| t.key.as_slice() == key) {
            Some(i) => self.touched.swap_remove(i).before,
            None => e.mem_usage(),
        };
        let part = self.part_mut(slot);
        part.keys -= 1;
        if volatile {
            part.volatile -= 1;
        }
        part.mem -= mem;
        self.db.adjust_mem(-(mem as i64));
        Some(e)
    }

    /// Look a key up for reading: lazy expiry plus access-clock update.
    pub fn get(&mut self, key: &[u8]) -> Option<&Entry> {
        let (clock, lfu, now, no_touch) = (self.lru_clock, self.lfu, self.now, self.no_touch);
        let e = self.find_read(key)?;
        if !no_touch {
            evict::touch(e, clock, lfu, now);
        }
        Some(e)
    }

    /// Look a key up without touching its access clock (OBJECT, TYPE-free peeks).
    pub fn peek(&mut self, key: &[u8]) -> Option<&Entry> {
        self.find_read(key).map(|e| &*e)
    }

    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.find_read(key).is_some()
    }

    /// A string value, or WRONGTYPE.
    pub fn get_str(&mut self, key: &[u8]) -> Result<Option<&[u8]>, &'static str> {
        match self.get(key) {
            None => Ok(None),
            Some(e) => e.str_value().map(Some).ok_or(WRONGTYPE),
        }
    }

    /// A typed collection for reading, or WRONGTYPE.
    pub fn get_obj<T: Kind>(&mut self, key: &[u8]) -> Result<Option<&T>, &'static str> {
        match self.get(key) {
            None => Ok(None),
            Some(e) => match e.obj().and_then(T::from_value) {
                Some(v) => Ok(Some(v)),
                None => Err(WRONGTYPE),
            },
        }
    }

    fn remember_touched(&mut self, key: &[u8], hash: u64, slot: u16, idx: usize, mem_before: usize) {
        if !self.touched.iter().any(|t| t.key.as_slice() == key) {
            self.touched.push(Touched {
                key: SmallVec::from_slice(key),
                hash,
                slot,
                idx,
                before: mem_before,
            });
        }
    }

    /// A typed collection for writing, or WRONGTYPE. The caller must report a
    /// real change with `Ctx::changed`; emptiness and memory are fixed up when
    /// the command ends.
    pub fn get_obj_mut<T: Kind>(&mut self, key: &[u8]) -> Result<Option<&mut T>, &'static str> {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        let Some(idx) = self.find_index(key, hash, slot, true) else {
            return Ok(None);
        };
        self.obj_mut_at(key, hash, slot, idx).map(Some)
    }

    /// The collection at a bucket index, for writing: counts as an access,
    /// checks the type, remembers the key for the end-of-command fix-up.
    fn obj_mut_at<T: Kind>(&mut self, key: &[u8], hash: u64, slot: u16, idx: usize) -> Result<&mut T, &'static str> {
        let (clock, lfu, now) = (self.lru_clock, self.lfu, self.now);
        let Some(e) = self.entry_at(slot, idx) else {
            return Err(WRONGTYPE);
        };
        evict::touch(e, clock, lfu, now);
        if e.obj().and_then(T::from_value).is_none() {
            return Err(WRONGTYPE);
        }
        let mem = e.mem_usage();
        self.remember_touched(key, hash, slot, idx, mem);
        self.entry_at(slot, idx)
            .and_then(|e| e.obj_mut())
            .and_then(T::from_value_mut)
            .ok_or(WRONGTYPE)
    }

    /// Like [`Keys::get_obj_mut`], creating an empty collection when absent.
    pub fn get_obj_mut_or_create<T: Kind>(&mut self, key: &[u8]) -> Result<&mut T, &'static str> {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        if let Some(idx) = self.find_index(key, hash, slot, true) {
            return self.obj_mut_at(key, hash, slot, idx);
        }
        let entry = Entry::new(key, T::new_value(), None, evict::new_lru(self.lru_clock, self.db));
        self.insert_entry_hashed(key, hash, slot, entry);
        let table = &self.part_ref(slot).slot(slot).table;
        let idx = table.find_bucket_index(hash, |e| e.key() == key);
        let mem = idx.and_then(|i| table.get_bucket(i)).map_or(0, Entry::mem_usage);
        self.remember_touched(key, hash, slot, idx.unwrap_or(usize::MAX), mem);
        idx.and_then(|i| self.entry_at(slot, i))
            .and_then(|e| e.obj_mut())
            .and_then(T::from_value_mut)
            .ok_or(WRONGTYPE)
    }

    /// Add to the collection at `key`, creating it when absent, and account
    /// its memory change at once (LPUSH, SADD, HSET, ZADD): no end-of-command
    /// fix-up, so no copy of the key and no second lookup when the command
    /// ends. A collection `f` leaves empty is deleted (or never created).
    /// The caller reports a real change with `Ctx::changed`, as for
    /// [`Keys::get_obj_mut_or_create`].
    pub fn add_to<T: Kind, R>(&mut self, key: &[u8], f: impl FnOnce(&mut T) -> R) -> Result<R, &'static str> {
        if self.touched.iter().any(|t| t.key.as_slice() == key) {
            // Handed out earlier in this command: its pending fix-up covers this change too.
            return self.get_obj_mut_or_create::<T>(key).map(f);
        }
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        let Some(idx) = self.find_index(key, hash, slot, true) else {
            let mut entry = Entry::new(key, T::new_value(), None, evict::new_lru(self.lru_clock, self.db));
            let r = f(entry.obj_mut().and_then(T::from_value_mut).ok_or(WRONGTYPE)?);
            if !entry.obj().is_some_and(Value::is_empty_collection) {
                self.insert_entry_hashed(key, hash, slot, entry);
            }
            return Ok(r);
        };
        let edited = self.edit_accounted(slot, idx, |e| -> Result<(R, bool), &'static str> {
            let r = f(e.obj_mut().and_then(T::from_value_mut).ok_or(WRONGTYPE)?);
            Ok((r, e.obj().is_some_and(Value::is_empty_collection)))
        });
        let (r, emptied) = edited.ok_or(WRONGTYPE)??;
        if emptied {
            self.delete_hashed(key, hash, slot);
        }
        Ok(r)
    }

    /// Apply `f` to the entry at bucket `idx` of `slot`'s table, counting
    /// as an access, and account its memory change at once (the in-place
    /// edits that skip the end-of-command fix-up).
    fn edit_accounted<R>(&mut self, slot: u16, idx: usize, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let (clock, lfu, now, db) = (self.lru_clock, self.lfu, self.now, self.db);
        let part = self.part_ref(slot);
        let e = part.slot_mut(slot).table.get_bucket_mut(idx)?;
        evict::touch(e, clock, lfu, now);
        let before = e.mem_usage();
        let r = f(e);
        let after = e.mem_usage();
        part.reaccount(db, before, after);
        Some(r)
    }

    /// Raw mutable access to an entry (expiry changes, string edits). Memory is
    /// fixed up at the end of the command.
    pub fn entry_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.entry_mut_with(key, false)
    }

    /// [`Self::entry_mut`] that also counts as an access (Redis'
    /// `lookupKeyWrite`): for read-modify-write commands such as INCR, which
    /// then need one lookup instead of a read followed by a write.
    pub fn entry_mut_touched(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.entry_mut_with(key, true)
    }

    /// Change an entry in place (counting as an access) and account its
    /// memory change at once, for read-modify-write commands on a string
    /// (INCR and friends): no end-of-command fix-up, so no copy of the key
    /// and no second lookup. `f` must not change the entry's expiry.
    pub fn edit_touched<R>(&mut self, key: &[u8], f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        let (clock, lfu, now) = (self.lru_clock, self.lfu, self.now);
        let idx = self.find_index(key, hash, slot, true)?;
        if self.touched.iter().any(|t| t.key.as_slice() == key) {
            // Handed out earlier in this command: its pending fix-up covers this change too.
            let e = self.entry_at(slot, idx)?;
            evict::touch(e, clock, lfu, now);
            return Some(f(e));
        }
        self.edit_accounted(slot, idx, f)
    }

    fn entry_mut_with(&mut self, key: &[u8], touch: bool) -> Option<&mut Entry> {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        let (clock, lfu, now) = (self.lru_clock, self.lfu, self.now);
        let idx = self.find_index(key, hash, slot, true)?;
        let e = self.entry_at(slot, idx)?;
        if touch {
            evict::touch(e, clock, lfu, now);
        }
        let mem = e.mem_usage();
        self.remember_touched(key, hash, slot, idx, mem);
        self.entry_at(slot, idx)
    }

    /// Insert or overwrite a key. `expire` is an absolute ms time or none.
    pub fn insert(&mut self, key: &[u8], value: Value, expire: Option<u64>) {
        let entry = Entry::new(key, value, expire, evict::new_lru(self.lru_clock, self.db));
        self.insert_entry(key, entry);
    }

    /// Set a string, with `Expiry` deciding the TTL.
    pub fn set_str(&mut self, key: &[u8], val: &[u8], expiry: Expiry) {
        let expire = match expiry {
            Expiry::Clear => None,
            Expiry::At(t) => Some(t),
            Expiry::Keep => self.find_read(key).and_then(|e| e.expire_at()),
        };
        let entry = Entry::new_str(key, val, expire, evict::new_lru(self.lru_clock, self.db));
        self.insert_entry(key, entry);
    }

    /// Insert a ready-made entry, replacing any existing one. An existing
    /// key is replaced in place (one table probe instead of delete + insert:
    /// this is every SET of an existing key).
    pub fn insert_entry(&mut self, key: &[u8], entry: Entry) {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        self.insert_entry_hashed(key, hash, slot, entry);
    }

    /// [`Self::insert_entry`] for loading a dataset (snapshot, full sync,
    /// migrated keys): no `new` event, as Redis' `dbAddRDBLoad`.
    pub fn insert_loaded(&mut self, key: &[u8], entry: Entry) {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        self.store_hashed(key, hash, slot, entry);
    }

    /// Insert or replace, recording a created key for the `new` event.
    fn insert_entry_hashed(&mut self, key: &[u8], hash: u64, slot: u16, entry: Entry) {
        if self.store_hashed(key, hash, slot, entry) && self.db.record_new.load(Ordering::Relaxed) {
            self.created.push(Bytes::copy_from_slice(key));
        }
    }

    /// Insert or replace with the accounting; true when the key is new.
    fn store_hashed(&mut self, key: &[u8], hash: u64, slot: u16, entry: Entry) -> bool {
        let mem = entry.mem_usage();
        let volatile = entry.expire_at().is_some();
        // A key handed out mutably earlier in this command is accounted at
        // its size back then; it is replaced now, so its fix-up is dropped.
        let accounted = self
            .touched
            .iter()
            .position(|t| t.key.as_slice() == key)
            .map(|i| self.touched.swap_remove(i).before);
        let hasher = &self.db.hasher;
        let part = self.part_mut(slot);
        let st = part.slot_mut(slot);
        let (old_mem, old_volatile, added) = match st.table.find_mut(hash, |e| e.key() == key) {
            Some(existing) => {
                let old = std::mem::replace(existing, entry);
                let old_volatile = old.expire_at().is_some();
                (accounted.unwrap_or_else(|| old.mem_usage()), old_volatile, false)
            }
            None => {
                st.table.insert_unique(hash, entry, |e| hasher.hash_one(e.key()));
                part.keys += 1;
                (0, false, true)
            }
        };
        let st = part.slot_mut(slot);
        if volatile != old_volatile {
            if volatile {
                st.volatile += 1;
                part.volatile += 1;
            } else {
                st.volatile -= 1;
                part.volatile -= 1;
            }
        }
        part.mem = part.mem + mem - old_mem;
        self.db.adjust_mem(mem as i64 - old_mem as i64);
        added
    }

    /// Delete a key; returns its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Value> {
        self.remove_entry(key).map(Entry::into_value)
    }

    /// Delete a key; returns its entry (with TTL and access clock).
    pub fn remove_entry(&mut self, key: &[u8]) -> Option<Entry> {
        // Expired keys count as absent, but are still reported as expired.
        self.find(key)?;
        let hash = self.db.hash(key);
        let e = self.delete_hashed(key, hash, self.slot_of(key));
        self.touched.retain(|t| t.key.as_slice() != key);
        e
    }

    /// Set or clear a key's TTL. Returns false when the key does not exist.
    pub fn set_expire(&mut self, key: &[u8], expire: Option<u64>) -> bool {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        let Some(e) = self.find(key) else {
            return false;
        };
        let was = e.expire_at().is_some();
        let before = e.mem_usage();
        e.set_expire(expire);
        let after = e.mem_usage();
        let now_volatile = expire.is_some();
        let _ = hash;
        let part = self.part_mut(slot);
        if was != now_volatile {
            let st = part.slot_mut(slot);
            if now_volatile {
                st.volatile += 1;
                part.volatile += 1;
            } else {
                st.volatile -= 1;
                part.volatile -= 1;
            }
        }
        part.mem = part.mem + after - before;
        self.db.adjust_mem(after as i64 - before as i64);
        // A key handed out mutably earlier in this command or transaction is
        // accounted at its size back then until `finish`, which adds its
        // growth since: count this change in that base too, or `finish`
        // would count it a second time (and a later delete underflow).
        if let Some(t) = self.touched.iter_mut().find(|t| t.key.as_slice() == key) {
            t.before = (t.before + after).saturating_sub(before);
        }
        true
    }

    /// Keys in one slot (no expiry check).
    pub fn count_in_slot(&mut self, slot: u16) -> usize {
        self.part_ref(slot).slot(slot).table.len()
    }

    /// Visit every live key of the held partitions.
    pub fn for_each_key(&mut self, mut f: impl FnMut(&Entry)) {
        let now = self.now;
        for (_, g) in self.guards.iter_mut() {
            for st in g.slots.iter() {
                for e in st.table.iter() {
                    if !e.is_expired(now) {
                        f(e);
                    }
                }
            }
        }
    }

    /// Visit every live key of one slot (its partition must be held).
    pub fn for_each_key_in_slot(&mut self, slot: u16, mut f: impl FnMut(&Entry)) {
        let now = self.now;
        for e in self.part_ref(slot).slot(slot).table.iter() {
            if !e.is_expired(now) {
                f(e);
            }
        }
    }

    /// Whether a live key exists, without lazy expiry or access-clock side
    /// effects (slot migration's redirect check, which may refuse the
    /// command it runs for).
    pub fn contains_live(&mut self, key: &[u8]) -> bool {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        let now = self.now;
        self.part_ref(slot)
            .slot(slot)
            .table
            .find(hash, |e| e.key() == key)
            .is_some_and(|e| !e.is_expired(now))
    }

    /// Is `key` stored at all, expired or not (Redis' `dictFind` on the
    /// main dictionary)? No lazy expiry.
    pub fn contains_stored(&mut self, key: &[u8]) -> bool {
        let hash = self.db.hash(key);
        let slot = self.slot_of(key);
        self.part_ref(slot)
            .slot(slot)
            .table
            .find(hash, |e| e.key() == key)
            .is_some()
    }

    /// Visit the entries of one slot, expired ones included, until `f`
    /// returns false (slot migration takes a slot's keys batch by batch).
    pub fn visit_slot(&mut self, slot: u16, mut f: impl FnMut(&Entry) -> bool) {
        for e in self.part_ref(slot).slot(slot).table.iter() {
            if !f(e) {
                break;
            }
        }
    }

    /// Keys of one slot, in table order, up to `count`.
    pub fn keys_in_slot(&mut self, slot: u16, count: usize) -> Vec<Bytes> {
        let now = self.now;
        self.part_ref(slot)
            .slot(slot)
            .table
            .iter()
            .filter(|e| !e.is_expired(now))
            .take(count)
            .map(|e| Bytes::copy_from_slice(e.key()))
            .collect()
    }

    /// One step of SCAN over the held partitions (all of them for SCAN).
    ///
    /// The cursor is `slot << 50 | t`: keys of a slot are returned in the order
    /// of the top 50 bits of their hash, resuming at `t`. This order does not
    /// change when a table grows or shrinks, so every key present for the whole
    /// scan is returned at least once (and, unlike Redis, exactly once).
    pub fn scan(&mut self, cursor: u64, count: usize, mut filter: impl FnMut(&Entry) -> bool) -> (u64, Vec<Bytes>) {
        let mut slot = (cursor >> 50) as usize;
        let mut from = cursor & ((1 << 50) - 1);
        let mut out = Vec::new();
        let count = count.max(1);
        let now = self.now;
        let mut visited_empty = 0usize;
        while slot < SLOTS {
            let hasher = self.db.hasher.clone();
            let st = self.part_ref(slot as u16).slot(slot as u16);
            if st.table.is_empty() {
                slot += 1;
                from = 0;
                visited_empty += 1;
                if visited_empty >= count * 10 && !out.is_empty() {
                    break;
                }
                continue;
            }
            let mut cand: Vec<(u64, &Entry)> = st
                .table
                .iter()
                .map(|e| (hasher.hash_one(e.key()) >> 14, e))
                .filter(|(h, _)| *h >= from)
                .collect();
            cand.sort_unstable_by_key(|(h, _)| *h);
            let want = count.saturating_sub(out.len()).max(1);
            let mut taken = 0;
            let mut last_h = None;
            for (h, e) in cand.iter() {
                if taken >= want && last_h != Some(*h) {
                    break;
                }
                taken += 1;
                last_h = Some(*h);
                if !e.is_expired(now) && filter(e) {
                    out.push(Bytes::copy_from_slice(e.key()));
                }
            }
            if taken < cand.len() {
                let next = last_h.map_or(from, |h| h + 1);
                return (((slot as u64) << 50) | next, out);
            }
            slot += 1;
            from = 0;
            if out.len() >= count {
                break;
            }
        }
        if slot >= SLOTS {
            (0, out)
        } else {
            ((slot as u64) << 50, out)
        }
    }

    /// Remove every key in the held partitions; with `lazy` the tables are
    /// freed in the background ([`lazyfree`]).
    pub fn clear(&mut self, lazy: bool) -> usize {
        let mut to_free = Vec::new();
        let mut removed = 0;
        let mut mem = 0i64;
        let cut = &self.db.cut;
        for (p, g) in self.guards.iter_mut() {
            removed += g.keys;
            mem += g.mem as i64;
            for (i, st) in g.slots.iter_mut().enumerate() {
                let table = std::mem::take(st).table;
                // A running cut takes tables it has not captured yet.
                let left = if cut.is_active() {
                    cut.detach((i * PARTITIONS + *p) as u16, table)
                } else {
                    Some(table)
                };
                if let Some(t) = left
                    && lazy
                    && !t.is_empty()
                {
                    to_free.push(t);
                }
            }
            g.keys = 0;
            g.volatile = 0;
            g.mem = 0;
        }
        self.touched.clear();
        self.db.adjust_mem(-mem);
        if lazy {
            self.db.lazyfree.free_tables(to_free, removed as u64);
        }
        removed
    }

    /// Delete the expired keys of one slot table (active expiry), up to `limit`
    /// checks. Returns (checked, expired keys).
    pub fn expire_slot(&mut self, slot: u16, limit: usize) -> (usize, Vec<Bytes>) {
        let now = self.now;
        let st = self.part_mut(slot).slot(slot);
        let mut checked = 0;
        let mut dead = Vec::new();
        for e in st.table.iter() {
            if checked >= limit {
                break;
            }
            if e.expire_at().is_some() {
                checked += 1;
                if e.is_expired(now) {
                    dead.push(Bytes::copy_from_slice(e.key()));
                }
            }
        }
        for k in &dead {
            let hash = self.db.hash(k);
            self.delete_hashed(k, hash, slot);
            self.db.expired_keys.fetch_add(1, Ordering::Relaxed);
        }
        self.db.log_deletes(&dead);
        (checked, dead)
    }

    /// Fix up keys handed out mutably: delete emptied collections, account memory.
    fn finish(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        let db = self.db;
        for Touched {
            key,
            hash,
            slot,
            idx,
            before,
        } in touched
        {
            let part = self.part_mut(slot);
            let st = part.slot_mut(slot);
            // The bucket it was handed out from still holds the key unless the
            // table changed since (a resize, a delete): then a probe finds it.
            // Same key means same entry, since a slot table holds a key once.
            let found = st
                .table
                .get_bucket(idx)
                .filter(|e| e.key() == key.as_slice())
                .or_else(|| st.table.find(hash, |e| e.key() == key.as_slice()));
            let Some(e) = found else {
                continue;
            };
            let emptied = e.obj().is_some_and(Value::is_empty_collection);
            let after = e.mem_usage();
            part.reaccount(db, before, after);
            if emptied {
                // Accounted at its current size above: the delete takes that back.
                self.delete_hashed(&key, hash, slot);
            }
        }
    }
}

impl Drop for Keys<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_and_accounting() {
        let db = Db::new();
        {
            let mut ks = db.lock_keys([b"a", b"b"], 1000);
            ks.set_str(b"a", b"1", Expiry::Clear);
            ks.set_str(b"b", b"2", Expiry::At(2000));
            assert_eq!(ks.get_str(b"a"), Ok(Some(&b"1"[..])));
            assert!(ks.exists(b"b"));
        }
        assert_eq!(db.key_counts(), (2, 1));
        assert!(db.used_memory() > 0);
        {
            // At t=2000 the key has expired.
            let mut ks = db.lock_keys([b"b"], 2000);
            assert!(!ks.exists(b"b"));
            assert_eq!(ks.expired, vec![Bytes::from_static(b"b")]);
        }
        {
            let mut ks = db.lock_keys([b"a"], 2000);
            assert!(ks.remove(b"a").is_some());
        }
        assert_eq!(db.key_counts(), (0, 0));
        assert_eq!(db.used_memory(), 0);
    }

    #[test]
    fn empty_collections_are_deleted_and_memory_balances() {
        let db = Db::new();
        {
            let mut ks = db.lock_keys([b"l"], 0);
            let l = ks.get_obj_mut_or_create::<list::List>(b"l").unwrap();
            l.push_back(b"x");
            l.push_back(b"y");
        }
        assert_eq!(db.key_counts().0, 1);
        assert!(db.used_memory() > 0);
        {
            let mut ks = db.lock_keys([b"l"], 0);
            let l = ks.get_obj_mut::<list::List>(b"l").unwrap().unwrap();
            l.pop_front();
            l.pop_front();
        }
        assert_eq!(db.key_counts().0, 0);
        assert_eq!(db.used_memory(), 0);
        let mut ks = db.lock_keys([b"s"], 0);
        ks.set_str(b"s", b"v", Expiry::Clear);
        assert_eq!(ks.get_obj_mut::<list::List>(b"s").err(), Some(WRONGTYPE));
    }

    #[test]
    fn deleting_or_replacing_a_key_changed_earlier_in_the_command_balances_memory() {
        // As in MULTI; RPUSH k ...; DEL k / SET k v; EXEC: one `Keys` for all.
        let db = Db::new();
        {
            let mut ks = db.lock_keys([b"l", b"m"], 0);
            for key in [&b"l"[..], b"m"] {
                let l = ks.get_obj_mut_or_create::<list::List>(key).expect("a list");
                for i in 0..100 {
                    l.push_back(format!("element-{i}").as_bytes());
                }
            }
            assert!(ks.remove(b"l").is_some());
            ks.set_str(b"m", b"v", Expiry::Clear);
        }
        assert_eq!(db.key_counts().0, 1);
        let mut ks = db.lock_keys([b"m"], 0);
        assert!(ks.remove(b"m").is_some());
        drop(ks);
        assert_eq!(db.used_memory(), 0);
    }

    /// Accounted bytes recomputed from every entry, to compare with `used_memory`.
    fn accounted_from_entries(db: &Db) -> usize {
        (0..SLOTS as u16)
            .map(|s| db.with_slot(s, |st| st.table.iter().map(Entry::mem_usage).sum::<usize>()))
            .sum()
    }

    #[test]
    fn an_edit_in_place_is_accounted_at_once_and_with_an_earlier_fix_up() {
        let db = Db::new();
        let long = vec![b'x'; 300];
        {
            let mut ks = db.lock_keys([&b"s"[..], b"missing"], 0);
            ks.set_str(b"s", b"1", Expiry::Clear);
            assert_eq!(ks.edit_touched(b"s", |e| e.set_str_value(&long)), Some(()));
            assert_eq!(ks.edit_touched(b"missing", |_| ()), None);
        }
        assert_eq!(db.used_memory(), accounted_from_entries(&db));
        {
            // Handed out by `entry_mut` first (a pending fix-up), then edited.
            let mut ks = db.lock_keys([b"s"], 0);
            ks.entry_mut(b"s").expect("present").set_str_value(b"22");
            assert_eq!(ks.edit_touched(b"s", |e| e.set_str_value(&long[..200])), Some(()));
        }
        assert_eq!(db.used_memory(), accounted_from_entries(&db));
        {
            let mut ks = db.lock_keys([b"s"], 0);
            assert_eq!(ks.edit_touched(b"s", |e| e.set_str_value(b"3")), Some(()));
            assert!(ks.remove(b"s").is_some());
        }
        assert_eq!(db.used_memory(), 0);
    }

    #[test]
    fn an_addition_is_accounted_at_once_creates_and_type_checks() {
        let db = Db::new();
        let key_count = |db: &Db| db.key_counts().0;
        {
            let mut ks = db.lock_keys([&b"l"[..], b"s", b"e"], 0);
            // Created, grown, and an existing key of another type refused.
            assert_eq!(ks.add_to::<list::List, _>(b"l", |l| l.push_back(b"a")), Ok(()));
            let long = vec![b'y'; 300];
            assert_eq!(
                ks.add_to::<list::List, _>(b"l", |l| {
                    l.push_back(&long);
                    l.len()
                }),
                Ok(2)
            );
            ks.set_str(b"s", b"1", Expiry::Clear);
            assert_eq!(ks.add_to::<list::List, _>(b"s", |l| l.push_back(b"x")), Err(WRONGTYPE));
            // Nothing added to an absent key: nothing created.
            assert_eq!(ks.add_to::<set::Set, _>(b"e", |_| 0), Ok(0));
        }
        assert_eq!(key_count(&db), 2);
        assert_eq!(db.used_memory(), accounted_from_entries(&db));
        {
            // Handed out first (a pending fix-up), then added to; then emptied by an addition's closure.
            let mut ks = db.lock_keys([b"l"], 0);
            ks.get_obj_mut::<list::List>(b"l")
                .expect("a list")
                .expect("present")
                .push_front(b"z");
            assert_eq!(ks.add_to::<list::List, _>(b"l", |l| l.len()), Ok(3));
        }
        assert_eq!(db.used_memory(), accounted_from_entries(&db));
        {
            let mut ks = db.lock_keys([b"l"], 0);
            assert_eq!(ks.add_to::<list::List, _>(b"l", |l| l.trim(3, 0)), Ok(()));
            assert!(!ks.exists(b"l"));
        }
        assert_eq!(key_count(&db), 1);
        assert_eq!(db.used_memory(), accounted_from_entries(&db));
    }

    #[test]
    fn a_key_changed_after_its_table_grew_is_accounted_at_its_new_size() {
        // The end-of-command fix-up looks for a changed key at the bucket it
        // was handed out from; growing its slot's table moves it elsewhere.
        let db = Db::new();
        {
            let mut ks = db.lock_keys([b"{t}l"], 0);
            let l = ks.get_obj_mut_or_create::<list::List>(b"{t}l").expect("a list");
            l.push_back(b"x");
            for i in 0..2000 {
                ks.set_str(format!("{{t}}k{i}").as_bytes(), b"v", Expiry::Clear);
            }
            let l = ks.get_obj_mut::<list::List>(b"{t}l").expect("a list").expect("present");
            for i in 0..500 {
                l.push_back(format!("a longer element {i}").as_bytes());
            }
        }
        assert_eq!(db.key_counts().0, 2001);
        assert_eq!(db.used_memory(), accounted_from_entries(&db));
        {
            // Emptied after the table moved it: still deleted.
            let mut ks = db.lock_keys([b"{t}l"], 0);
            let l = ks.get_obj_mut::<list::List>(b"{t}l").expect("a list").expect("present");
            while l.pop(list::End::Left).is_some() {}
            for i in 2000..6000 {
                ks.set_str(format!("{{t}}k{i}").as_bytes(), b"v", Expiry::Clear);
            }
        }
        assert_eq!(db.key_counts().0, 6000);
        assert_eq!(db.used_memory(), accounted_from_entries(&db));
    }

    #[test]
    fn scan_returns_every_key_once_across_resizes() {
        let db = Db::new();
        let n = 5000;
        {
            let mut ks = db.lock_all(0);
            for i in 0..n {
                ks.set_str(format!("k{i}").as_bytes(), b"v", Expiry::Clear);
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            let mut ks = db.lock_all(0);
            let (next, keys) = ks.scan(cursor, 10, |_| true);
            for k in keys {
                assert!(seen.insert(k), "duplicate");
            }
            // Grow the keyspace while scanning: tables resize under the cursor.
            if round < 100 {
                ks.set_str(format!("extra{round}").as_bytes(), b"v", Expiry::Clear);
            }
            round += 1;
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        for i in 0..n {
            assert!(seen.contains(format!("k{i}").as_bytes()), "missing k{i}");
        }
    }
}
