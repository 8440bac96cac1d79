//! The sorted-set type.

#[derive(Clone, Default)]
pub struct ZSet {
    len: usize,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn mem_usage(&self) -> usize {
        0
    }
    pub fn encoding(&self) -> &'static str {
        "skiplist"
    }
}
