//! placeholder
pub struct MemoryStore;
