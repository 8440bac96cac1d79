//! The set type: unique members with a running byte count.

use bytes::Bytes;

use super::entry::round_alloc;

#[derive(Clone, Default)]
pub struct Set {
    members: hashbrown::HashSet<Bytes, foldhash::fast::RandomState>,
    bytes: usize,
}

impl Set {
    pub fn len(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    pub fn mem_usage(&self) -> usize {
        self.bytes + self.members.capacity() * (std::mem::size_of::<Bytes>() + 1)
    }
    pub fn encoding(&self) -> &'static str {
        "hashtable"
    }
    pub fn contains(&self, m: &[u8]) -> bool {
        self.members.contains(m)
    }
    pub fn insert(&mut self, m: Bytes) -> bool {
        let n = round_alloc(m.len());
        let new = self.members.insert(m);
        if new {
            self.bytes += n;
        }
        new
    }
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.members.take(m) {
            Some(m) => {
                self.bytes -= round_alloc(m.len());
                true
            }
            None => false,
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.members.iter()
    }
}
