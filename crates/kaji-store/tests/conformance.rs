//! The in-memory backend passes the whole conformance suite.

kaji_store::store_conformance_tests!(async { kaji_store::MemoryStore::new() });
