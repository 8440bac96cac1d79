//! The value of a key. Strings are stored inline in their [`super::entry::Entry`];
//! `Value::Str` exists for values in flight (RENAME, COPY, MIGRATE-style moves).

use bytes::Bytes;

use super::hash::Hash;
use super::list::List;
use super::set::Set;
use super::stream::Stream;
use super::zset::ZSet;

#[derive(Clone)]
pub enum Value {
    Str(Bytes),
    List(List),
    Hash(Hash),
    Set(Set),
    ZSet(ZSet),
    Stream(Box<Stream>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// Approximate bytes held by the value (excluding the key).
    pub fn mem_usage(&self) -> usize {
        match self {
            Value::Str(b) => super::entry::round_alloc(b.len()),
            Value::List(v) => v.mem_usage(),
            Value::Hash(v) => v.mem_usage(),
            Value::Set(v) => v.mem_usage(),
            Value::ZSet(v) => v.mem_usage(),
            Value::Stream(v) => v.mem_usage(),
        }
    }

    /// Roughly how many allocations dropping the value frees (Redis'
    /// `lazyfreeGetFreeEffort`): one per element of a collection (a list's
    /// long elements are boxed one by one, a hash's pairs, a set's members),
    /// a stream's entries plus its consumer groups.
    pub fn free_effort(&self) -> usize {
        match self {
            Value::Str(_) => 1,
            Value::List(v) => v.len(),
            Value::Hash(v) => v.len(),
            Value::Set(v) => v.len(),
            Value::ZSet(v) => v.len(),
            Value::Stream(v) => v.len() + v.group_count(),
        }
    }

    /// Collections are deleted when they become empty, as in Redis. Streams are
    /// not: an empty stream is a valid key.
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) | Value::Stream(_) => false,
            Value::List(v) => v.is_empty(),
            Value::Hash(v) => v.is_empty(),
            Value::Set(v) => v.is_empty(),
            Value::ZSet(v) => v.is_empty(),
        }
    }

    /// `OBJECT ENCODING` for a non-string value, following Redis 7.0's thresholds.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(_) => "raw",
            Value::List(v) => v.encoding(),
            Value::Hash(v) => v.encoding(),
            Value::Set(v) => v.encoding(),
            Value::ZSet(v) => v.encoding(),
            Value::Stream(_) => "stream",
        }
    }
}

/// Typed access to a [`Value`], so `Keys::get_mut::<List>(key)` can check the
/// type and answer WRONGTYPE in one place.
pub trait Kind: Sized {
    fn from_value(v: &Value) -> Option<&Self>;
    fn from_value_mut(v: &mut Value) -> Option<&mut Self>;
    fn new_value() -> Value;
}

macro_rules! kind {
    ($t:ty, $variant:ident, $new:expr) => {
        impl Kind for $t {
            fn from_value(v: &Value) -> Option<&Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn from_value_mut(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn new_value() -> Value {
                $new
            }
        }
    };
}

kind!(List, List, Value::List(List::default()));
kind!(Hash, Hash, Value::Hash(Hash::default()));
kind!(Set, Set, Value::Set(Set::default()));
kind!(ZSet, ZSet, Value::ZSet(ZSet::default()));

impl Kind for Stream {
    fn from_value(v: &Value) -> Option<&Self> {
        match v {
            Value::Stream(x) => Some(x),
            _ => None,
        }
    }
    fn from_value_mut(v: &mut Value) -> Option<&mut Self> {
        match v {
            Value::Stream(x) => Some(x),
            _ => None,
        }
    }
    fn new_value() -> Value {
        Value::Stream(Box::default())
    }
}
