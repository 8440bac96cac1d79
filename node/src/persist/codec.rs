//! The binary encoding of one key: type, encoding flags, expiry, key, value.
//!
//! Snapshots, replica full syncs and slot migration all move keys as this
//! encoding, so it is compact (LEB128 varints for every length and count,
//! integers stored as zig-zag varints) and it carries everything a client can
//! observe about a key, not just its contents: the TTL as an absolute unix
//! time in milliseconds (a relative TTL would stretch by however long the
//! file sat on disk), the encoding flags that `OBJECT ENCODING` reports, the
//! order of hashes and sets (HGETALL/SMEMBERS order is visible), and for
//! streams the macro-node shadows, ID bookkeeping and consumer groups.
//!
//! ```text
//! entry   := type:u8 flags:u8 [expire_at:u64 LE if flags & EXPIRE] key:bytes value
//! bytes   := len:varint raw[len]
//! value   := string: bytes | int string: zigzag varint
//!          | list/set: count:varint bytes* | hash: count:varint (field value)*
//!          | zset: count:varint (member score:f64 LE)*   (ascending order)
//!          | stream: see `encode_stream`
//! flags   := EXPIRE 0x01 | RAW 0x02 | EMBSTR 0x04 | UNSHARED 0x08 (as `Entry::flags`)
//!          | LARGE 0x10 (hash/set: hashtable; zset: skiplist)
//! ```
//!
//! Decoding treats its input as hostile (a replica may be fed garbage, a file
//! may be damaged in ways its checksums cannot see): every length is checked
//! against the bytes that remain before anything is allocated for it, counts
//! never size an allocation beyond what the remaining input could fill, and
//! every failure is a [`CodecError`] naming what was being read — never a
//! panic.

use bytes::Bytes;

use crate::db::entry::{FLAG_EMBSTR, FLAG_EXPIRE, FLAG_RAW, FLAG_UNSHARED};
use crate::db::hash::Hash;
use crate::db::limits::Limits;
use crate::db::list::List;
use crate::db::set::Set;
use crate::db::stream::{GroupParts, Nack, NodeParts, Stream, StreamId, StreamParts};
use crate::db::zset::ZSet;
use crate::db::{Entry, ValRef, Value};

const T_STR: u8 = 0;
const T_INT: u8 = 1;
const T_LIST: u8 = 2;
const T_HASH: u8 = 3;
const T_SET: u8 = 4;
const T_ZSET: u8 = 5;
const T_STREAM: u8 = 6;

/// Hash/set in the `hashtable` encoding, zset in the `skiplist` one.
const FLAG_LARGE: u8 = 0x10;
/// Entry flags that travel with the key.
const ENTRY_FLAGS: u8 = FLAG_EXPIRE | FLAG_RAW | FLAG_EMBSTR | FLAG_UNSHARED;
const KNOWN_FLAGS: u8 = ENTRY_FLAGS | FLAG_LARGE;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("truncated input while reading {0}")]
    Truncated(&'static str),
    #[error("unknown value type {0}")]
    UnknownType(u8),
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("varint too long while reading {0}")]
    BadVarint(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A key as decoded, ready to go into the keyspace with [`Decoded::into_entry`].
pub struct Decoded {
    pub key: Bytes,
    pub value: Value,
    pub expire_at: Option<u64>,
    /// `Entry::flags` to restore (expiry bit excluded: it follows `expire_at`).
    pub flags: u8,
}

impl Decoded {
    /// Build the keyspace entry. `lru` is the access clock to start with
    /// (access history is not persisted, as in Redis by default).
    pub fn into_entry(self, lru: u32) -> Entry {
        let mut e = Entry::new(&self.key, self.value, self.expire_at, lru);
        e.flags |= self.flags & (FLAG_RAW | FLAG_EMBSTR | FLAG_UNSHARED);
        e
    }
}

// ---- primitives ----

pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_zigzag(out: &mut Vec<u8>, n: i64) {
    put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_id(out: &mut Vec<u8>, id: StreamId) {
    put_varint(out, id.ms);
    put_varint(out, id.seq);
}

pub fn get_varint(input: &mut &[u8], what: &'static str) -> Result<u64, CodecError> {
    let mut n = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = input.split_first() else {
            return Err(CodecError::Truncated(what));
        };
        *input = rest;
        if i == 9 && b > 1 {
            return Err(CodecError::BadVarint(what));
        }
        n |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(CodecError::BadVarint(what))
}

fn get_zigzag(input: &mut &[u8], what: &'static str) -> Result<i64, CodecError> {
    let n = get_varint(input, what)?;
    Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
}

fn get_u8(input: &mut &[u8], what: &'static str) -> Result<u8, CodecError> {
    let (&b, rest) = input.split_first().ok_or(CodecError::Truncated(what))?;
    *input = rest;
    Ok(b)
}

fn get_fixed<const N: usize>(input: &mut &[u8], what: &'static str) -> Result<[u8; N], CodecError> {
    if input.len() < N {
        return Err(CodecError::Truncated(what));
    }
    let (head, rest) = input.split_at(N);
    let mut a = [0u8; N];
    a.copy_from_slice(head);
    *input = rest;
    Ok(a)
}

/// A length-prefixed byte string, checked against what remains.
fn get_slice<'a>(input: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], CodecError> {
    let len = get_varint(input, what)?;
    if len > input.len() as u64 {
        return Err(CodecError::Truncated(what));
    }
    let (head, rest) = input.split_at(len as usize);
    *input = rest;
    Ok(head)
}

fn get_bytes(input: &mut &[u8], what: &'static str) -> Result<Bytes, CodecError> {
    get_slice(input, what).map(Bytes::copy_from_slice)
}

/// A count of items each at least `min_item` bytes long: refused when the
/// remaining input could not hold that many, so it can size an allocation.
fn get_count(input: &mut &[u8], min_item: usize, what: &'static str) -> Result<usize, CodecError> {
    let n = get_varint(input, what)?;
    if n.saturating_mul(min_item as u64) > input.len() as u64 {
        return Err(CodecError::Truncated(what));
    }
    Ok(n as usize)
}

fn get_id(input: &mut &[u8], what: &'static str) -> Result<StreamId, CodecError> {
    Ok(StreamId::new(get_varint(input, what)?, get_varint(input, what)?))
}

// ---- encoding ----

/// The canonical integer a string holds, if it round-trips exactly (so the
/// int form never changes a value's bytes).
fn as_int(s: &[u8]) -> Option<i64> {
    crate::cmd::parse::parse_i64(s)
}

/// Append the encoding of one key.
pub fn encode_entry(out: &mut Vec<u8>, key: &[u8], e: &Entry) {
    let expire = e.expire_at();
    let mut flags = e.flags & ENTRY_FLAGS & !FLAG_EXPIRE;
    if expire.is_some() {
        flags |= FLAG_EXPIRE;
    }
    let ty = match e.value() {
        ValRef::Str(s) => {
            if as_int(s).is_some() {
                T_INT
            } else {
                T_STR
            }
        }
        ValRef::Obj(v) => {
            let large = match v {
                Value::Hash(h) => !h.is_listpack(),
                Value::Set(s) => !s.is_intset(),
                Value::ZSet(z) => !z.is_listpack(),
                _ => false,
            };
            if large {
                flags |= FLAG_LARGE;
            }
            match v {
                Value::Str(s) if as_int(s).is_some() => T_INT,
                Value::Str(_) => T_STR,
                Value::List(_) => T_LIST,
                Value::Hash(_) => T_HASH,
                Value::Set(_) => T_SET,
                Value::ZSet(_) => T_ZSET,
                Value::Stream(_) => T_STREAM,
            }
        }
    };
    out.push(ty);
    out.push(flags);
    if let Some(t) = expire {
        out.extend_from_slice(&t.to_le_bytes());
    }
    put_bytes(out, key);
    match e.value() {
        ValRef::Str(s) => encode_str(out, s),
        ValRef::Obj(v) => encode_value(out, v),
    }
}

fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    match as_int(s) {
        Some(n) => put_zigzag(out, n),
        None => put_bytes(out, s),
    }
}

fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => encode_str(out, s),
        Value::List(l) => {
            put_varint(out, l.len() as u64);
            for x in l.iter() {
                put_bytes(out, x);
            }
        }
        Value::Hash(h) => {
            put_varint(out, h.len() as u64);
            for (f, x) in h.iter() {
                put_bytes(out, f);
                put_bytes(out, x);
            }
        }
        Value::Set(s) => {
            put_varint(out, s.len() as u64);
            for m in s.iter() {
                put_bytes(out, m);
            }
        }
        Value::ZSet(z) => {
            put_varint(out, z.len() as u64);
            for (m, score) in z.iter() {
                put_bytes(out, m);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        Value::Stream(s) => encode_stream(out, s),
    }
}

/// ```text
/// stream := last_id first_id max_deleted_id entries_added:zigzag
///           nodes:count (master live deleted lp_bytes fields:count bytes* last)*
///           entries:count (id fields:count bytes*)*
///           groups:count (name last_id entries_read:zigzag
///                         pel:count (id consumer:bytes delivery_time:zigzag delivery_count)*
///                         consumers:count (name seen_time)*)*
/// id     := ms:varint seq:varint
/// ```
fn encode_stream(out: &mut Vec<u8>, s: &Stream) {
    put_id(out, s.last_id);
    put_id(out, s.first_id);
    put_id(out, s.max_deleted_id);
    put_zigzag(out, s.entries_added);
    let nodes = s.node_shadows();
    put_varint(out, nodes.len() as u64);
    for n in nodes {
        put_id(out, n.master);
        put_varint(out, n.live as u64);
        put_varint(out, n.deleted as u64);
        put_varint(out, n.lp_bytes as u64);
        put_varint(out, n.master_fields.len() as u64);
        for f in n.master_fields {
            put_bytes(out, f);
        }
        put_id(out, n.last);
    }
    let entries = s.entries();
    put_varint(out, entries.len() as u64);
    for (id, fields) in entries {
        put_id(out, id);
        put_varint(out, fields.len() as u64);
        for f in fields {
            put_bytes(out, f);
        }
    }
    put_varint(out, s.group_count() as u64);
    for (name, g) in s.groups() {
        put_bytes(out, name);
        put_id(out, g.last_id);
        put_zigzag(out, g.entries_read);
        put_varint(out, g.pel.len() as u64);
        for (id, n) in &g.pel {
            put_id(out, *id);
            put_bytes(out, &n.consumer);
            put_zigzag(out, n.delivery_time);
            put_varint(out, n.delivery_count);
        }
        put_varint(out, g.consumers.len() as u64);
        for (c, cons) in &g.consumers {
            put_bytes(out, c);
            put_varint(out, cons.seen_time);
        }
    }
}

// ---- decoding ----

/// Decode one key, advancing `input` past it.
pub fn decode_entry(input: &mut &[u8]) -> Result<Decoded, CodecError> {
    let ty = get_u8(input, "value type")?;
    let flags = get_u8(input, "flags")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(CodecError::UnknownFlags(flags));
    }
    let expire_at = if flags & FLAG_EXPIRE != 0 {
        Some(u64::from_le_bytes(get_fixed(input, "expire time")?))
    } else {
        None
    };
    let key = get_bytes(input, "key")?;
    let large = flags & FLAG_LARGE != 0;
    // A value comes back in the encoding it was saved in: its small form
    // is rebuilt without converting (the saving node's thresholds decided,
    // and a replica or restore then answers HSCAN/ZSCAN in the same order
    // as its source); the next write re-checks this node's thresholds.
    let keep = &Limits::KEEP;
    let value = match ty {
        T_STR => Value::Str(get_bytes(input, "string value")?),
        T_INT => {
            let n = get_zigzag(input, "integer value")?;
            let mut buf = itoa::Buffer::new();
            Value::Str(Bytes::copy_from_slice(buf.format(n).as_bytes()))
        }
        T_LIST => {
            let n = get_count(input, 1, "list length")?;
            let mut l = List::default();
            for _ in 0..n {
                l.push_back(&get_bytes(input, "list element")?);
            }
            Value::List(l)
        }
        T_HASH => {
            let n = get_count(input, 2, "hash length")?;
            let mut h = if large { Hash::new_hashtable() } else { Hash::default() };
            for _ in 0..n {
                let f = get_bytes(input, "hash field")?;
                let v = get_bytes(input, "hash value")?;
                if !h.insert(&f, &v, keep) {
                    return Err(CodecError::Invalid("hash: duplicate field"));
                }
            }
            Value::Hash(h)
        }
        T_SET => {
            let n = get_count(input, 1, "set length")?;
            let mut s = if large { Set::new_hashtable() } else { Set::default() };
            for _ in 0..n {
                if !s.insert(&get_bytes(input, "set member")?, keep) {
                    return Err(CodecError::Invalid("set: duplicate member"));
                }
            }
            Value::Set(s)
        }
        T_ZSET => {
            let n = get_count(input, 9, "sorted set length")?;
            let mut z = if large { ZSet::new_skiplist() } else { ZSet::default() };
            for _ in 0..n {
                let m = get_slice(input, "sorted set member")?;
                let score = f64::from_le_bytes(get_fixed(input, "sorted set score")?);
                if score.is_nan() {
                    return Err(CodecError::Invalid("sorted set: NaN score"));
                }
                if !z.insert(m, score, keep) {
                    return Err(CodecError::Invalid("sorted set: duplicate member"));
                }
            }
            Value::ZSet(z)
        }
        T_STREAM => Value::Stream(Box::new(decode_stream(input)?)),
        t => return Err(CodecError::UnknownType(t)),
    };
    if value.is_empty_collection() {
        return Err(CodecError::Invalid("empty collection"));
    }
    Ok(Decoded {
        key,
        value,
        expire_at,
        flags: flags & (FLAG_RAW | FLAG_EMBSTR | FLAG_UNSHARED),
    })
}

fn decode_stream(input: &mut &[u8]) -> Result<Stream, CodecError> {
    let last_id = get_id(input, "stream last ID")?;
    let first_id = get_id(input, "stream first ID")?;
    let max_deleted_id = get_id(input, "stream max deleted ID")?;
    let entries_added = get_zigzag(input, "stream entries added")?;
    let n = get_count(input, 8, "stream node count")?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let master = get_id(input, "stream node ID")?;
        let live = u32::try_from(get_varint(input, "stream node live count")?)
            .map_err(|_| CodecError::Invalid("stream node live count"))?;
        let deleted = u32::try_from(get_varint(input, "stream node deleted count")?)
            .map_err(|_| CodecError::Invalid("stream node deleted count"))?;
        let lp_bytes = usize::try_from(get_varint(input, "stream node size")?)
            .map_err(|_| CodecError::Invalid("stream node size"))?;
        let nf = get_count(input, 1, "stream node field count")?;
        let mut fields = Vec::with_capacity(nf);
        for _ in 0..nf {
            fields.push(get_bytes(input, "stream node field")?);
        }
        let last = get_id(input, "stream node last ID")?;
        nodes.push(NodeParts {
            master,
            live,
            deleted,
            lp_bytes,
            master_fields: fields.into(),
            last,
        });
    }
    let n = get_count(input, 5, "stream entry count")?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let id = get_id(input, "stream entry ID")?;
        let nf = get_count(input, 1, "stream entry field count")?;
        let mut fields = Vec::with_capacity(nf);
        for _ in 0..nf {
            fields.push(get_bytes(input, "stream entry field")?);
        }
        entries.push((id, fields.into_boxed_slice()));
    }
    let n = get_count(input, 7, "stream group count")?;
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        let name = get_bytes(input, "stream group name")?;
        let last_id = get_id(input, "stream group last ID")?;
        let entries_read = get_zigzag(input, "stream group entries read")?;
        let np = get_count(input, 5, "stream pending count")?;
        let mut pel = Vec::with_capacity(np);
        for _ in 0..np {
            let id = get_id(input, "stream pending ID")?;
            let consumer = get_bytes(input, "stream pending consumer")?;
            let delivery_time = get_zigzag(input, "stream pending delivery time")?;
            let delivery_count = get_varint(input, "stream pending delivery count")?;
            pel.push((
                id,
                Nack {
                    consumer,
                    delivery_time,
                    delivery_count,
                },
            ));
        }
        let nc = get_count(input, 2, "stream consumer count")?;
        let mut consumers = Vec::with_capacity(nc);
        for _ in 0..nc {
            let c = get_bytes(input, "stream consumer name")?;
            let seen = get_varint(input, "stream consumer seen time")?;
            consumers.push((c, seen));
        }
        groups.push(GroupParts {
            name,
            last_id,
            entries_read,
            pel,
            consumers,
        });
    }
    Stream::from_parts(StreamParts {
        entries,
        nodes,
        last_id,
        first_id,
        max_deleted_id,
        entries_added,
        groups,
    })
    .map_err(CodecError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::stream::{AddId, ClaimArgs};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn roundtrip(e: &Entry) -> (Vec<u8>, Entry) {
        let mut out = Vec::new();
        encode_entry(&mut out, e.key(), e);
        let mut input = &out[..];
        let d = decode_entry(&mut input).expect("decodes");
        assert!(input.is_empty(), "trailing bytes");
        let back = d.into_entry(0);
        (out, back)
    }

    /// Re-encoding the decoded entry gives the same bytes: everything encoded
    /// survived, in the same order.
    fn assert_stable(e: &Entry) -> Entry {
        let (first, back) = roundtrip(e);
        let (second, _) = roundtrip(&back);
        assert_eq!(first, second);
        assert_eq!(back.key(), e.key());
        assert_eq!(back.expire_at(), e.expire_at());
        assert_eq!(back.flags, e.flags);
        back
    }

    #[test]
    fn strings_raw_and_int_encoded() {
        for (v, int) in [
            ("hello", false),
            ("", false),
            ("12345", true),
            ("-9223372036854775808", true),
            ("007", false),
            ("-0", false),
        ] {
            let e = Entry::new_str(b"k", v.as_bytes(), Some(1_700_000_000_123), 0);
            let (bytes, back) = roundtrip(&e);
            assert_eq!(back.str_value(), Some(v.as_bytes()), "{v}");
            assert_eq!(bytes[0] == T_INT, int, "{v}");
            assert_stable(&e);
        }
        let mut e = Entry::new_str(b"k", b"x", None, 0);
        e.flags |= FLAG_RAW | FLAG_UNSHARED;
        assert_stable(&e);
    }

    #[test]
    fn collections_keep_order_and_encoding() {
        let mut l = List::default();
        for x in ["a", "b", "", "c"] {
            l.push_back(&b(x));
        }
        let back = assert_stable(&Entry::new_obj(b"l", Value::List(l), None, 0));
        let got: Vec<&[u8]> = match back.obj() {
            Some(Value::List(l)) => l.iter().collect(),
            _ => panic!("not a list"),
        };
        assert_eq!(got, vec![&b"a"[..], b"b", b"", b"c"]);

        // A hashtable hash that shrank back below the listpack limits stays one.
        let mut h = Hash::default();
        h.insert(b"long", &[b'x'; 100], &Limits::default());
        h.insert(b"f2", b"v2", &Limits::default());
        h.insert(b"f1", b"v1", &Limits::default());
        h.remove(b"long");
        let back = assert_stable(&Entry::new_obj(b"h", Value::Hash(h), Some(5), 0));
        assert_eq!(back.obj().map(Value::encoding), Some("hashtable"));

        // A hashtable set of integers keeps its (unsorted) order.
        let mut s = Set::default();
        for m in ["x", "10", "2", "5"] {
            s.insert(&b(m), &Limits::default());
        }
        s.remove(b"x");
        let back = assert_stable(&Entry::new_obj(b"s", Value::Set(s), None, 0));
        let order: Vec<&[u8]> = match back.obj() {
            Some(Value::Set(s)) => s.iter().collect(),
            _ => panic!("not a set"),
        };
        assert_eq!(order, vec![&b"5"[..], b"10", b"2"]);
        let mut s = Set::default();
        for m in ["3", "1", "2"] {
            s.insert(&b(m), &Limits::default());
        }
        let back = assert_stable(&Entry::new_obj(b"s", Value::Set(s), None, 0));
        assert_eq!(back.obj().map(Value::encoding), Some("intset"));

        let mut z = ZSet::new_skiplist();
        z.insert(b"a", -0.0, &Limits::default());
        z.insert(b"b", f64::INFINITY, &Limits::default());
        z.insert(b"c", 1.5, &Limits::default());
        let back = assert_stable(&Entry::new_obj(b"z", Value::ZSet(z), None, 0));
        match back.obj() {
            Some(Value::ZSet(z)) => {
                assert_eq!(z.encoding(), "skiplist");
                assert!(z.score(b"a").is_some_and(|s| s == 0.0 && s.is_sign_negative()));
            }
            _ => panic!("not a zset"),
        }
    }

    fn sample_stream() -> Stream {
        let mut s = Stream::default();
        for i in 1..=250u64 {
            let f = [b("field"), Bytes::from(format!("value-{i}"))];
            s.add(AddId::Exact(StreamId::new(i, 0)), &f, 0, &Limits::default())
                .expect("test setup");
        }
        s.delete(&[StreamId::new(5, 0), StreamId::new(150, 0)]);
        s.create_group(&b("g1"), StreamId::ZERO, 0);
        s.create_group(&b("g2"), StreamId::new(3, 0), -1);
        s.create_consumer(b"g1", &b("alice"), 77);
        s.read_group_new(b"g1", &b("alice"), StreamId::new(0, 1), 10, false, 1000);
        s.create_consumer(b"g1", &b("bob"), 78);
        let args = ClaimArgs {
            consumer: &b("bob"),
            min_idle: 0,
            delivery_time: 2000,
            retry_count: Some(7),
            force: false,
            justid: false,
            now: 2000,
        };
        s.claim(b"g1", &[StreamId::new(2, 0)], &args);
        s
    }

    #[test]
    fn streams_with_groups_pel_and_consumers() {
        let s = sample_stream();
        let back = assert_stable(&Entry::new_obj(b"st", Value::Stream(Box::new(s.clone())), None, 0));
        let Some(Value::Stream(r)) = back.obj() else {
            panic!("not a stream")
        };
        assert_eq!(r.len(), s.len());
        assert_eq!(r.radix_tree_keys(), s.radix_tree_keys());
        assert_eq!(r.mem_usage(), s.mem_usage());
        assert_eq!(
            (r.last_id, r.first_id, r.max_deleted_id),
            (s.last_id, s.first_id, s.max_deleted_id)
        );
        let g = r.group(b"g1").expect("group");
        assert_eq!(g.pel.len(), 10);
        assert_eq!(g.pel.get(&StreamId::new(2, 0)).map(|n| n.delivery_count), Some(7));
        assert_eq!(g.consumers.get(&b("bob")).map(|c| c.pel.len()), Some(1));
        assert_eq!(g.consumers.get(&b("alice")).map(|c| c.pel.len()), Some(9));
        assert_eq!(r.group(b"g2").map(|g| g.entries_read), Some(-1));
    }

    /// Every prefix of a valid encoding and every single-byte change fails
    /// cleanly or decodes to something: never a panic.
    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        let st = Entry::new_obj(b"st", Value::Stream(Box::new(sample_stream())), Some(9), 0);
        encode_entry(&mut out, st.key(), &st);
        let mut h = Hash::default();
        h.insert(b"f", b"v", &Limits::default());
        let he = Entry::new_obj(b"h", Value::Hash(h), None, 0);
        encode_entry(&mut out, he.key(), &he);
        let stream_len = {
            let mut input = &out[..];
            decode_entry(&mut input).expect("valid");
            out.len() - input.len()
        };
        for cut in 0..stream_len {
            assert!(decode_entry(&mut &out[..cut]).is_err(), "prefix {cut}");
        }
        for i in 0..out.len().min(3000) {
            for delta in [1u8, 0x80, 0xff] {
                let mut bad = out.clone();
                bad[i] = bad[i].wrapping_add(delta);
                let mut input = &bad[..];
                while !input.is_empty() {
                    if decode_entry(&mut input).is_err() {
                        break;
                    }
                }
            }
        }
    }

    /// A value of some type built from random members (small and large
    /// encodings, integers and not), with an optional TTL.
    /// An entry for proptest, which needs `Debug` to report a failing case.
    struct Arb(Entry);

    impl std::fmt::Debug for Arb {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let mut out = Vec::new();
            encode_entry(&mut out, self.0.key(), &self.0);
            write!(f, "{} {:02x?}", self.0.type_name(), out)
        }
    }

    fn arb_entry() -> impl proptest::strategy::Strategy<Value = Arb> {
        use proptest::prelude::*;
        let member = prop_oneof![
            (-1000i64..1000).prop_map(|n| n.to_string()),
            "[a-z]{0,8}",
            "[a-z]{60,80}",
        ];
        (
            0u8..6,
            proptest::collection::vec((member, any::<f64>()), 1..300),
            proptest::option::of(1u64..u64::MAX),
        )
            .prop_map(|(ty, items, ttl)| {
                let b = |m: &str| Bytes::copy_from_slice(m.as_bytes());
                let value = match ty {
                    0 => Value::Str(b(&items[0].0)),
                    1 => {
                        let mut l = List::default();
                        items.iter().for_each(|(m, _)| l.push_back(&b(m)));
                        Value::List(l)
                    }
                    2 => {
                        let mut h = Hash::default();
                        items.iter().for_each(|(m, _)| {
                            h.insert(&b(m), &b(&m.len().to_string()), &Limits::default());
                        });
                        Value::Hash(h)
                    }
                    3 => {
                        let mut s = Set::default();
                        items.iter().for_each(|(m, _)| {
                            s.insert(&b(m), &Limits::default());
                        });
                        Value::Set(s)
                    }
                    4 => {
                        let mut z = ZSet::default();
                        items.iter().filter(|(_, sc)| !sc.is_nan()).for_each(|(m, sc)| {
                            z.insert(m.as_bytes(), *sc, &Limits::default());
                        });
                        if z.is_empty() {
                            z.insert(b"x", 0.0, &Limits::default());
                        }
                        Value::ZSet(z)
                    }
                    _ => {
                        let mut st = Stream::default();
                        for (i, (m, _)) in items.iter().enumerate() {
                            let f = [b("f"), b(m)];
                            let _ = st.add(
                                crate::db::stream::AddId::Exact(StreamId::new(i as u64 + 1, 0)),
                                &f,
                                0,
                                &Limits::default(),
                            );
                        }
                        Value::Stream(Box::new(st))
                    }
                };
                Arb(Entry::new(b"key", value, ttl, 0))
            })
    }

    proptest::proptest! {
        /// Decoding what was encoded gives a key with the same digest,
        /// encoding and TTL, whose re-encoding is byte-identical.
        #[test]
        fn roundtrip_preserves_everything(e in arb_entry()) {
            let e = e.0;
            let back = assert_stable(&e);
            proptest::prop_assert_eq!(
                crate::persist::digest::key_digest(&back),
                crate::persist::digest::key_digest(&e)
            );
            proptest::prop_assert_eq!(back.obj().map(Value::encoding), e.obj().map(Value::encoding));
        }
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut out = vec![T_LIST, 0];
        put_bytes(&mut out, b"k");
        put_varint(&mut out, u64::MAX);
        assert_eq!(
            decode_entry(&mut &out[..]).err(),
            Some(CodecError::Truncated("list length"))
        );
        let mut out = vec![T_STR, 0];
        put_varint(&mut out, 1 << 62);
        assert_eq!(decode_entry(&mut &out[..]).err(), Some(CodecError::Truncated("key")));
        let unknown = [9u8, 0, 1, b'k', 0];
        assert_eq!(
            decode_entry(&mut &unknown[..]).err().map(|e| e.to_string()),
            Some("unknown value type 9".into())
        );
        let mut out = vec![T_LIST, 0];
        put_bytes(&mut out, b"k");
        put_varint(&mut out, 0);
        assert_eq!(
            decode_entry(&mut &out[..]).err(),
            Some(CodecError::Invalid("empty collection"))
        );
    }
}
