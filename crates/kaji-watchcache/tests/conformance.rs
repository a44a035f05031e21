//! The watch cache passes the whole store conformance suite, over each backend.

use std::sync::Arc;

use kaji_store::{MemoryStore, Store};
use kaji_watchcache::WatchCache;

/// Over the in-memory store, caching every key (so `count("")` and the like
/// are served from memory too).
mod over_memory {
    use super::*;

    kaji_store::store_conformance_tests!(async {
        let cache = WatchCache::new(Arc::new(MemoryStore::new()) as Arc<dyn Store>, &[""]);
        cache.ready().await;
        cache
    });
}

/// Over the SQLite store, caching `/` (keys outside it, and the empty
/// prefix, go to the inner store).
mod over_sqlite {
    use super::*;

    kaji_store::store_conformance_tests!(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = kaji_store_sqlite::SqliteStore::open(dir.path().join("kaji.db")).expect("open");
        let cache = WatchCache::new(Arc::new(inner) as Arc<dyn Store>, &["/"]);
        cache.ready().await;
        (cache, dir)
    });
}
