//! The stream type.

#[derive(Clone, Default)]
pub struct Stream {
    len: usize,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn mem_usage(&self) -> usize {
        0
    }
}
