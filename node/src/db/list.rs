//! The list type: a deque of elements with a running byte count.

use bytes::Bytes;
use std::collections::VecDeque;

use super::entry::round_alloc;

#[derive(Clone, Default)]
pub struct List {
    items: VecDeque<Bytes>,
    bytes: usize,
}

impl List {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn mem_usage(&self) -> usize {
        self.bytes + self.items.capacity() * std::mem::size_of::<Bytes>()
    }
    pub fn encoding(&self) -> &'static str {
        // Redis 7.0 always reports quicklist for lists.
        "quicklist"
    }
    pub fn push_back(&mut self, v: Bytes) {
        self.bytes += round_alloc(v.len());
        self.items.push_back(v);
    }
    pub fn push_front(&mut self, v: Bytes) {
        self.bytes += round_alloc(v.len());
        self.items.push_front(v);
    }
    pub fn pop_front(&mut self) -> Option<Bytes> {
        let v = self.items.pop_front()?;
        self.bytes -= round_alloc(v.len());
        Some(v)
    }
    pub fn pop_back(&mut self) -> Option<Bytes> {
        let v = self.items.pop_back()?;
        self.bytes -= round_alloc(v.len());
        Some(v)
    }
    pub fn get(&self, i: usize) -> Option<&Bytes> {
        self.items.get(i)
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Bytes> + ExactSizeIterator {
        self.items.iter()
    }
}
