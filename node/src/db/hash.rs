//! The hash type: field → value with a running byte count.

use bytes::Bytes;

use super::entry::round_alloc;

#[derive(Clone, Default)]
pub struct Hash {
    map: hashbrown::HashMap<Bytes, Bytes, foldhash::fast::RandomState>,
    bytes: usize,
}

impl Hash {
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn mem_usage(&self) -> usize {
        self.bytes + self.map.capacity() * (2 * std::mem::size_of::<Bytes>() + 1)
    }
    pub fn encoding(&self) -> &'static str {
        "hashtable"
    }
    pub fn get(&self, f: &[u8]) -> Option<&Bytes> {
        self.map.get(f)
    }
    /// Insert or replace; returns true when the field is new.
    pub fn insert(&mut self, f: Bytes, v: Bytes) -> bool {
        let add = round_alloc(f.len()) + round_alloc(v.len());
        match self.map.insert(f.clone(), v) {
            Some(old) => {
                self.bytes = self.bytes + add - round_alloc(f.len()) - round_alloc(old.len());
                false
            }
            None => {
                self.bytes += add;
                true
            }
        }
    }
    pub fn remove(&mut self, f: &[u8]) -> Option<Bytes> {
        let (k, v) = self.map.remove_entry(f)?;
        self.bytes -= round_alloc(k.len()) + round_alloc(v.len());
        Some(v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.map.iter()
    }
}
