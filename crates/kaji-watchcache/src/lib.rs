//! The API server's watch cache: a [`Store`] decorator that serves latest
//! reads and watches from memory.
//!
//! Owns, for a set of cached key prefixes (typically `/registry/`): the
//! latest value of every key under them, a bounded ring buffer of their
//! recent events, and the fan-out of those events to any number of
//! watchers, each with its own bounded queue. It is fed by ONE watch on the
//! inner store (see [`WatchCache`] for why it watches every key), after an
//! initial list. Writes, compaction, reads at an explicit revision and
//! anything outside the cached prefixes pass straight through to the inner
//! store. It must not touch the inner store's data beyond what callers ask
//! for (it never writes on its own), and, like the [`Store`] seam it
//! implements, it knows nothing of Kubernetes objects.

#![warn(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use kaji_store::{
    KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchEvent, WatchStream,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod feed;
mod state;
mod watchers;

use state::{BufferLimits, State};

/// How a [`WatchCache`] is sized and which keys it caches.
#[derive(Debug, Clone)]
pub struct WatchCacheConfig {
    /// Key prefixes held in memory. A prefix covered by another is ignored.
    pub prefixes: Vec<String>,
    /// The ring buffer keeps at most this many recent events.
    pub buffer_events: usize,
    /// ... and at most about this many bytes of keys and values (the newest
    /// event is always kept).
    pub buffer_bytes: usize,
    /// Events a watcher may have queued before it is dropped with `WatchLagged`.
    /// Queues hold `Arc`s of the buffered events and grow in small blocks as
    /// they fill, so a large bound costs nothing while a watcher keeps up.
    pub watcher_queue: usize,
    /// How long a latest read waits for the cache to catch up with the inner
    /// store's revision before it is served by the inner store instead.
    pub consistent_read_timeout: Duration,
}

impl WatchCacheConfig {
    /// Defaults for `prefixes`: 10,000 events or 64 MiB of history; queues of
    /// 10,000 events (a watcher further behind than the history could not
    /// be resumed from the cache anyway); a 3 s consistent-read wait.
    pub fn new(prefixes: &[&str]) -> Self {
        WatchCacheConfig {
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            buffer_events: 10_000,
            buffer_bytes: 64 << 20,
            watcher_queue: 10_000,
            consistent_read_timeout: Duration::from_secs(3),
        }
    }
}

/// Counters and gauges of a [`WatchCache`], for tests and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchCacheStats {
    /// Whether the cache has a loaded list and continuity from it.
    pub ready: bool,
    /// The revision the cache reflects.
    pub revision: Revision,
    /// Every cached event at or after this revision is in the ring buffer.
    pub buffer_from: Revision,
    /// Events in the ring buffer.
    pub buffered_events: usize,
    /// Watchers fed by the cache (some may be closed and not yet forgotten).
    pub watchers: usize,
    /// Latest reads (`get`, `list`, `count`) answered from memory.
    pub reads_from_cache: u64,
    /// Latest reads under a cached prefix that fell back to the inner store.
    pub reads_from_inner: u64,
    /// Watches served by the cache.
    pub watches_from_cache: u64,
    /// Watches under a cached prefix delegated to the inner store (start too old, not ready).
    pub watches_from_inner: u64,
    /// Watchers dropped with `WatchLagged` (full queue or lost continuity).
    pub watchers_lagged: u64,
    /// Complete lists loaded from the inner store (1 after a clean start).
    pub relists: u64,
    /// Times the inner watch was resumed without a re-list.
    pub resumes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reads_from_cache: AtomicU64,
    reads_from_inner: AtomicU64,
    watches_from_cache: AtomicU64,
    watches_from_inner: AtomicU64,
    watchers_lagged: AtomicU64,
    relists: AtomicU64,
    resumes: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn count_resume(&self) {
        Self::bump(&self.resumes, 1);
    }
}

/// State shared by the cache handle and its feed task.
struct Shared {
    inner: Arc<dyn Store>,
    prefixes: Vec<String>,
    limits: BufferLimits,
    watcher_queue: usize,
    state: RwLock<State>,
    /// `(ready, revision)`, published after every change, for readers waiting to catch up.
    progress: watch::Sender<(bool, Revision)>,
    stats: Counters,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // The state is only replaced or appended to under the lock; a panic
        // elsewhere cannot leave it inconsistent in a way worth dying for.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn covers(&self, key_or_prefix: &str) -> bool {
        self.prefixes.iter().any(|p| key_or_prefix.starts_with(p))
    }

    /// The revision to resume the feed after, when the cache has continuity.
    fn resumable_revision(&self) -> Option<Revision> {
        let state = self.read();
        state.ready.then_some(state.revision)
    }

    fn set_unready(&self) {
        let revision = {
            let mut state = self.write();
            state.ready = false;
            state.revision
        };
        self.progress.send_replace((false, revision));
    }

    /// Swaps in a fresh list at `revision`.
    fn install(&self, kvs: std::collections::BTreeMap<String, KeyValue>, revision: Revision) {
        let dropped = self.write().reset(kvs, revision);
        Counters::bump(&self.stats.relists, 1);
        Counters::bump(&self.stats.watchers_lagged, dropped.lagged);
        self.progress.send_replace((true, revision));
    }

    /// Applies a batch of feed events (draining it) under one lock.
    fn apply(&self, batch: &mut Vec<WatchEvent>) {
        let mut lagged = 0;
        let (ready, revision) = {
            let mut state = self.write();
            for event in batch.drain(..) {
                let cached = self.covers(&event.kv.key);
                lagged += state.apply(event, cached, self.limits).lagged;
            }
            (state.ready, state.revision)
        };
        Counters::bump(&self.stats.watchers_lagged, lagged);
        self.progress.send_replace((ready, revision));
    }

    /// Runs `read` on the state if it is ready and at or past `target`.
    fn read_at<T>(&self, target: Revision, read: &impl Fn(&State) -> T) -> Option<T> {
        let state = self.read();
        (state.ready && state.revision >= target).then(|| read(&state))
    }
}

/// A [`Store`] that serves latest reads and watches under its cached
/// prefixes from memory, and everything else from the inner store.
///
/// # Design
/// - **One inner watch, on every key.** The cache watches the empty prefix
///   and keeps only events under its cached prefixes. The [`Store`] seam has
///   no progress notification (etcd's bookmark), so a watch on `/registry/`
///   alone could not tell the cache that the global revision moved on with a
///   write elsewhere, and a consistent read would wait for nothing. Backends
///   broadcast every event to every watcher and filter per watcher anyway, so
///   the wider watch costs one filter per event; and one watch instead of one
///   per resource means one ordered feed, one revision, one re-list.
/// - **Consistent latest reads.** A `get`/`list`/`count` at the latest
///   revision reads the inner store's current revision R, waits until the
///   cache has applied R, and answers from memory at the cache's revision (≥ R).
///   A write acknowledged before the read is therefore visible.
/// - **Watches** whose start lies in the ring buffer (or 0, "from now") are
///   replayed from it and then fed live; older starts are delegated to the inner store.
///
/// # Example
/// ```no_run
/// # async fn demo(inner: std::sync::Arc<dyn kaji_store::Store>) -> kaji_store::Result<()> {
/// use kaji_store::Store;
/// let cache = kaji_watchcache::WatchCache::new(inner, &["/registry/"]);
/// cache.ready().await;
/// let pods = cache.list("/registry/pods/", Default::default()).await?; // from memory
/// let events = cache.watch("/registry/pods/", pods.revision + 1).await?; // from the buffer
/// # drop(events);
/// # Ok(())
/// # }
/// ```
///
/// # Guarantees
/// Everything in the [`Store`] contract: answers are those of the inner store
/// at some revision at least as new as its revision when the call began;
/// watches have no gap or duplicate; pagination matches the inner store's.
///
/// # Caveats
/// - Must be created inside a Tokio runtime: it spawns its feed task.
/// - A watcher whose queue fills up, and every cache watcher when the cache
///   must re-list (its history was compacted before it caught up), gets
///   [`kaji_store::StoreError::WatchLagged`] and must re-list.
/// - Reads at an explicit revision (including continuation pages pinned to
///   the first page's revision) are served by the inner store.
pub struct WatchCache {
    shared: Arc<Shared>,
    consistent_read_timeout: Duration,
    feed: JoinHandle<()>,
}

impl std::fmt::Debug for WatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache")
            .field("prefixes", &self.shared.prefixes)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        // Ends the feed; once it lets go of the shared state, every cache
        // watcher's stream ends, as a backend's do when it shuts down.
        self.feed.abort();
    }
}

impl WatchCache {
    /// Caches `prefixes` of `inner` with default sizes.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(inner: Arc<dyn Store>, prefixes: &[&str]) -> Self {
        Self::with_config(inner, WatchCacheConfig::new(prefixes))
    }

    /// Caches `inner` as `config` says and starts the feed (list, then watch).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn with_config(inner: Arc<dyn Store>, config: WatchCacheConfig) -> Self {
        let shared = Arc::new(Shared {
            inner,
            prefixes: normalize(config.prefixes),
            limits: BufferLimits {
                events: config.buffer_events,
                bytes: config.buffer_bytes,
            },
            watcher_queue: config.watcher_queue,
            state: RwLock::new(State::new()),
            progress: watch::channel((false, 0)).0,
            stats: Counters::default(),
        });
        let feed = tokio::spawn(feed::run(shared.clone()));
        WatchCache {
            shared,
            consistent_read_timeout: config.consistent_read_timeout,
            feed,
        }
    }

    /// The cached prefixes, after dropping those covered by others.
    pub fn prefixes(&self) -> &[String] {
        &self.shared.prefixes
    }

    /// Waits until the initial list is loaded (reads before that fall back to the inner store).
    pub async fn ready(&self) {
        let mut progress = self.shared.progress.subscribe();
        // The sender lives in `shared`, which `self` holds: this cannot fail.
        let _ = progress.wait_for(|(ready, _)| *ready).await;
    }

    /// A snapshot of the cache's counters and gauges.
    pub fn stats(&self) -> WatchCacheStats {
        let c = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = self.shared.read();
        WatchCacheStats {
            ready: state.ready,
            revision: state.revision,
            buffer_from: state.buffer_from,
            buffered_events: state.buffer.len(),
            watchers: state.watchers.len(),
            reads_from_cache: get(&c.reads_from_cache),
            reads_from_inner: get(&c.reads_from_inner),
            watches_from_cache: get(&c.watches_from_cache),
            watches_from_inner: get(&c.watches_from_inner),
            watchers_lagged: get(&c.watchers_lagged),
            relists: get(&c.relists),
            resumes: get(&c.resumes),
        }
    }

    fn inner(&self) -> &dyn Store {
        &*self.shared.inner
    }

    /// Answers `read` from memory once the cache has caught up with the inner
    /// store's current revision; `None` means "ask the inner store".
    async fn consistent<T>(&self, read: impl Fn(&State) -> T) -> Option<T> {
        let answer = self.try_consistent(read).await;
        let counter = match answer {
            Some(_) => &self.shared.stats.reads_from_cache,
            None => &self.shared.stats.reads_from_inner,
        };
        Counters::bump(counter, 1);
        answer
    }

    async fn try_consistent<T>(&self, read: impl Fn(&State) -> T) -> Option<T> {
        let target = self.inner().current_revision().await.ok()?;
        if let Some(answer) = self.shared.read_at(target, &read) {
            return Some(answer);
        }
        let mut progress = self.shared.progress.subscribe();
        let caught_up = matches!(
            tokio::time::timeout(
                self.consistent_read_timeout,
                progress.wait_for(|(ready, revision)| *ready && *revision >= target),
            )
            .await,
            Ok(Ok(_))
        );
        if !caught_up {
            tracing::debug!(
                target,
                "watch cache did not catch up in time; reading through"
            );
            return None;
        }
        self.shared.read_at(target, &read)
    }
}

/// Sorted, deduplicated, without prefixes covered by a shorter one.
fn normalize(mut prefixes: Vec<String>) -> Vec<String> {
    prefixes.sort();
    prefixes.dedup();
    let mut kept: Vec<String> = Vec::new();
    for p in prefixes {
        if !kept.iter().any(|k| p.starts_with(k.as_str())) {
            kept.push(p);
        }
    }
    kept
}

#[async_trait]
impl Store for WatchCache {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner().current_revision().await
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        if revision.is_none() && self.shared.covers(key) {
            if let Some(answer) = self
                .consistent(|s| (s.kvs.get(key).cloned(), s.revision))
                .await
            {
                return Ok(answer);
            }
        }
        self.inner().get(key, revision).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        if options.revision.is_none() && self.shared.covers(prefix) {
            if let Some(answer) = self.consistent(|s| s.list(prefix, &options)).await {
                return Ok(answer);
            }
        }
        self.inner().list(prefix, options).await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        if self.shared.covers(prefix) {
            if let Some(answer) = self.consistent(|s| s.count(prefix)).await {
                return Ok(answer);
            }
        }
        self.inner().count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.inner().create(key, value).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        self.inner().update(key, value, expected_revision).await
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        self.inner().delete(key, expected_revision).await
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        if !self.shared.covers(prefix) {
            return self.inner().watch(prefix, start_revision).await;
        }
        let from = if start_revision <= 0 {
            // "From now" means after the inner store's current revision, even
            // if the cache has not applied it yet: its events will come live.
            self.inner().current_revision().await? + 1
        } else if start_revision < self.inner().compacted_revision().await? {
            // Let the inner store answer `Compacted`, even if the buffer still has it.
            return self.inner().watch(prefix, start_revision).await;
        } else {
            start_revision
        };
        {
            let mut state = self.shared.write();
            if state.ready && from >= state.buffer_from {
                // Replay and registration under one lock: the feed applies
                // nothing in between, so live events start right after the replay.
                let replay = state.replay(prefix, from);
                let stream =
                    state
                        .watchers
                        .register(prefix, from, replay, self.shared.watcher_queue);
                drop(state);
                Counters::bump(&self.shared.stats.watches_from_cache, 1);
                return Ok(stream);
            }
        }
        Counters::bump(&self.shared.stats.watches_from_inner, 1);
        self.inner().watch(prefix, start_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner().compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner().compacted_revision().await
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use kaji_store::{EventType, MemoryStore, StoreError};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    async fn started(inner: MemoryStore, config: WatchCacheConfig) -> WatchCache {
        let cache = WatchCache::with_config(Arc::new(inner), config);
        cache.ready().await;
        cache
    }

    async fn next(w: &mut WatchStream) -> Result<WatchEvent> {
        tokio::time::timeout(WAIT, w.next())
            .await
            .expect("no watch item in time")
            .expect("watch ended")
    }

    async fn revisions(w: &mut WatchStream, n: usize) -> Vec<Revision> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(next(w).await.expect("watch error").kv.mod_revision);
        }
        out
    }

    #[test]
    fn prefixes_covered_by_others_should_be_dropped() {
        let got = normalize(vec![
            "/registry/pods/".into(),
            "/registry/".into(),
            "/a".into(),
            "/ab".into(),
            "/registry/".into(),
        ]);
        assert_eq!(got, ["/a", "/registry/"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_thousand_watchers_should_each_receive_every_event_in_order() {
        const WATCHERS: usize = 2000;
        const KEYS: usize = 50;
        let cache = started(MemoryStore::new(), WatchCacheConfig::new(&["/m/"])).await;
        let mut watchers = Vec::new();
        for _ in 0..WATCHERS {
            watchers.push(cache.watch("/m/", 0).await.unwrap());
        }
        let mut expected = Vec::new();
        for i in 0..KEYS {
            let key = format!("/m/{i:03}");
            let kv = cache.create(&key, vec![1]).await.unwrap();
            cache.create(&format!("/n/{i}"), vec![]).await.unwrap();
            let kv2 = cache.update(&key, vec![2], kv.mod_revision).await.unwrap();
            let (del, _) = cache.delete(&key, None).await.unwrap();
            expected.extend([kv.mod_revision, kv2.mod_revision, del]);
        }
        for mut w in watchers {
            assert_eq!(revisions(&mut w, expected.len()).await, expected);
        }
        let stats = cache.stats();
        assert_eq!(stats.watches_from_cache, WATCHERS as u64);
        assert_eq!(stats.watchers_lagged, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_that_never_polls_should_be_dropped_while_others_continue() {
        let mut config = WatchCacheConfig::new(&["/s/"]);
        config.watcher_queue = 16;
        let cache = started(MemoryStore::new(), config).await;
        let mut slow = cache.watch("/s/", 0).await.unwrap();
        let mut fast = cache.watch("/s/", 0).await.unwrap();
        for i in 0..100 {
            let kv = cache.create(&format!("/s/{i}"), vec![]).await.unwrap();
            assert_eq!(next(&mut fast).await.unwrap().kv, kv);
        }
        assert_eq!(revisions(&mut slow, 16).await, (1..=16).collect::<Vec<_>>());
        assert!(matches!(
            next(&mut slow).await,
            Err(StoreError::WatchLagged)
        ));
        assert!(slow.next().await.is_none());
        let kv = cache.create("/s/after", vec![]).await.unwrap();
        assert_eq!(next(&mut fast).await.unwrap().kv, kv);
        assert_eq!(cache.stats().watchers_lagged, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_latest_read_right_after_a_write_should_see_it_from_memory() {
        let cache = started(MemoryStore::new(), WatchCacheConfig::new(&["/y/"])).await;
        for i in 0..300 {
            let key = format!("/y/{i:03}");
            let kv = cache.create(&key, vec![i as u8]).await.unwrap();
            let list = cache.list("/y/", ListOptions::default()).await.unwrap();
            assert_eq!(list.kvs.last(), Some(&kv));
            assert!(list.revision >= kv.mod_revision);
            let (got, _) = cache.get(&key, None).await.unwrap();
            assert_eq!(got, Some(kv));
        }
        let stats = cache.stats();
        assert_eq!((stats.reads_from_cache, stats.reads_from_inner), (600, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_outside_the_cached_prefixes_should_not_stall_consistent_reads() {
        let mut config = WatchCacheConfig::new(&["/registry/"]);
        config.consistent_read_timeout = Duration::from_secs(30);
        let cache = started(MemoryStore::new(), config).await;
        let kv = cache.create("/registry/a", vec![]).await.unwrap();
        let other = cache.create("/elsewhere/b", vec![]).await.unwrap();
        let t = std::time::Instant::now();
        let list = cache
            .list("/registry/", ListOptions::default())
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!((list.kvs, list.revision), (vec![kv], other.mod_revision));
        assert_eq!(cache.count("/elsewhere/").await.unwrap(), 1);
        assert_eq!(cache.stats().reads_from_cache, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_older_than_the_buffer_should_be_served_by_the_inner_store_without_gap() {
        let mut config = WatchCacheConfig::new(&["/o/"]);
        config.buffer_events = 8;
        let cache = started(MemoryStore::new(), config).await;
        for i in 0..50 {
            cache.create(&format!("/o/{i}"), vec![]).await.unwrap();
        }
        // Reading the latest makes sure the cache has applied every write.
        cache.list("/o/", ListOptions::default()).await.unwrap();
        assert_eq!(cache.stats().buffer_from, 43);
        let mut old = cache.watch("/o/", 1).await.unwrap();
        let mut recent = cache.watch("/o/", 45).await.unwrap();
        for i in 50..55 {
            cache.create(&format!("/o/{i}"), vec![]).await.unwrap();
        }
        assert_eq!(revisions(&mut old, 55).await, (1..=55).collect::<Vec<_>>());
        assert_eq!(
            revisions(&mut recent, 11).await,
            (45..=55).collect::<Vec<_>>()
        );
        let stats = cache.stats();
        assert_eq!((stats.watches_from_inner, stats.watches_from_cache), (1, 1));
    }

    // Current-thread runtime: the writes below never yield, so the feed's
    // inner watch (a buffer of 4) is sure to lag before the feed runs.
    #[tokio::test]
    async fn a_lagging_inner_watch_should_be_resumed_without_dropping_watchers() {
        let cache = started(
            MemoryStore::with_watch_buffer(4),
            WatchCacheConfig::new(&["/r/"]),
        )
        .await;
        let mut w = cache.watch("/r/", 0).await.unwrap();
        for i in 0..200 {
            cache.create(&format!("/r/{i:03}"), vec![]).await.unwrap();
        }
        assert_eq!(revisions(&mut w, 200).await, (1..=200).collect::<Vec<_>>());
        let stats = cache.stats();
        assert!(stats.resumes >= 1, "{stats:?}");
        assert_eq!((stats.relists, stats.watchers_lagged), (1, 0));
        assert_eq!(cache.count("/r/").await.unwrap(), 200);
    }

    #[tokio::test]
    async fn compacted_history_should_force_a_relist_and_lag_cache_watchers() {
        let cache = started(
            MemoryStore::with_watch_buffer(4),
            WatchCacheConfig::new(&["/c/"]),
        )
        .await;
        let mut w = cache.watch("/c/", 0).await.unwrap();
        for i in 0..50 {
            cache.create(&format!("/c/{i:02}"), vec![]).await.unwrap();
        }
        let (gone, _) = cache.delete("/c/00", None).await.unwrap();
        cache.compact(gone).await.unwrap();
        assert!(matches!(next(&mut w).await, Err(StoreError::WatchLagged)));
        assert!(w.next().await.is_none());
        let list = cache.list("/c/", ListOptions::default()).await.unwrap();
        assert_eq!((list.kvs.len(), list.revision), (49, gone));
        let stats = cache.stats();
        assert_eq!((stats.relists, stats.watchers_lagged), (2, 1));
        assert_eq!(stats.reads_from_cache, 1);
        // New watches are served again, from the fresh list on.
        let mut w = cache.watch("/c/", 0).await.unwrap();
        let kv = cache.create("/c/new", vec![]).await.unwrap();
        let e = next(&mut w).await.unwrap();
        assert_eq!((e.event_type, e.kv), (EventType::Put, kv));
    }
}
