//! A fault-injecting [`Store`] decorator for robustness tests: latency on
//! every call, backend errors on writes, and compare-and-swap conflicts on
//! updates and deletes, switchable on and off at run time.
//!
//! # Guarantees
//! - An injected failure is decided *before* the inner store is called: a
//!   write that fails with an injected error never reached the inner store
//!   (no half-writes), so callers may retry it safely.
//! - An injected conflict carries the key's real current value, read from
//!   the inner store, as a racing writer would cause.
//! - With faults switched off (or a [`FaultConfig::default`]) the wrapper is
//!   transparent: it passes the conformance suite like the store it wraps.
//!
//! # Caveats
//! Decisions come from one seeded generator, so a run is reproducible only
//! as far as the order of concurrent calls is.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchStream};

/// Which faults a [`FaultyStore`] injects while switched on.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Every call (reads, writes, watch setup) first sleeps for a duration
    /// drawn uniformly from this range; an empty range adds no latency.
    pub latency: Range<Duration>,
    /// Probability that a write (create, update, delete) fails with
    /// [`StoreError::Backend`] without reaching the inner store.
    pub error_rate: f64,
    /// Probability that a compare-and-swap write (update, delete with an
    /// expected revision) fails with [`StoreError::Conflict`] without
    /// reaching the inner store.
    pub conflict_rate: f64,
    /// Seed of the generator deciding latency and faults.
    pub seed: u64,
}

impl Default for FaultConfig {
    /// No latency, no faults.
    fn default() -> Self {
        FaultConfig {
            latency: Duration::ZERO..Duration::ZERO,
            error_rate: 0.0,
            conflict_rate: 0.0,
            seed: 0,
        }
    }
}

/// How many faults a [`FaultyStore`] has injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Writes failed with an injected [`StoreError::Backend`].
    pub errors: u64,
    /// Writes failed with an injected [`StoreError::Conflict`].
    pub conflicts: u64,
}

/// A [`Store`] that delays calls and fails writes before passing them on
/// to `inner`. Faults start switched on; see [`FaultyStore::set_enabled`].
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    config: FaultConfig,
    enabled: AtomicBool,
    rng: Mutex<StdRng>,
    errors: AtomicU64,
    conflicts: AtomicU64,
}

/// What the generator decided for one write.
enum Fault {
    None,
    Error,
    Conflict,
}

impl FaultyStore {
    /// Wraps `inner`, injecting the faults of `config` (switched on).
    pub fn new(inner: Arc<dyn Store>, config: FaultConfig) -> Self {
        let rng = Mutex::new(StdRng::seed_from_u64(config.seed));
        FaultyStore {
            inner,
            config,
            enabled: AtomicBool::new(true),
            rng,
            errors: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }

    /// Switches every fault, latency included, on or off; takes effect on
    /// the next call.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
    }

    /// Whether faults are switched on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// The faults injected so far.
    pub fn injected(&self) -> FaultCounts {
        FaultCounts {
            errors: self.errors.load(Ordering::SeqCst),
            conflicts: self.conflicts.load(Ordering::SeqCst),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps for the configured latency, when switched on.
    async fn delay(&self) {
        let Range { start, end } = self.config.latency;
        if !self.enabled() || end <= start {
            return;
        }
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let pause = self.rng().random_range(nanos(start)..nanos(end));
        tokio::time::sleep(Duration::from_nanos(pause)).await;
    }

    /// Delays, then decides whether this write fails; `cas` says whether
    /// it is a compare-and-swap that could lose a race.
    async fn decide(&self, cas: bool) -> Fault {
        self.delay().await;
        if !self.enabled() {
            return Fault::None;
        }
        let mut rng = self.rng();
        if rng.random_bool(self.config.error_rate.clamp(0.0, 1.0)) {
            Fault::Error
        } else if cas && rng.random_bool(self.config.conflict_rate.clamp(0.0, 1.0)) {
            Fault::Conflict
        } else {
            Fault::None
        }
    }

    fn injected_error(&self, op: &str, key: &str) -> StoreError {
        self.errors.fetch_add(1, Ordering::SeqCst);
        StoreError::Backend {
            message: format!("injected fault: {op} {key} failed"),
            source: None,
        }
    }

    /// The conflict a racing writer would have caused, with the key's real
    /// current value; `None` when the key is absent, so that the inner
    /// store reports that itself.
    async fn injected_conflict(&self, key: &str, expected: Revision) -> Option<StoreError> {
        let (current, _) = self.inner.get(key, None).await.ok()?;
        let current = current?;
        self.conflicts.fetch_add(1, Ordering::SeqCst);
        Some(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            current: Some(current),
        })
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.delay().await;
        self.inner.current_revision().await
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        self.delay().await;
        self.inner.get(key, revision).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        self.delay().await;
        self.inner.list(prefix, options).await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        self.delay().await;
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        match self.decide(false).await {
            Fault::Error => Err(self.injected_error("create", key)),
            Fault::None | Fault::Conflict => self.inner.create(key, value).await,
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        match self.decide(true).await {
            Fault::Error => return Err(self.injected_error("update", key)),
            Fault::Conflict => {
                if let Some(conflict) = self.injected_conflict(key, expected_revision).await {
                    return Err(conflict);
                }
            }
            Fault::None => {}
        }
        self.inner.update(key, value, expected_revision).await
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        match self.decide(expected_revision.is_some()).await {
            Fault::Error => return Err(self.injected_error("delete", key)),
            Fault::Conflict => {
                let expected = expected_revision.unwrap_or_default();
                if let Some(conflict) = self.injected_conflict(key, expected).await {
                    return Err(conflict);
                }
            }
            Fault::None => {}
        }
        self.inner.delete(key, expected_revision).await
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        self.delay().await;
        self.inner.watch(prefix, start_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.delay().await;
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.delay().await;
        self.inner.compacted_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn noisy(seed: u64) -> FaultConfig {
        FaultConfig {
            latency: Duration::ZERO..Duration::from_micros(200),
            error_rate: 0.3,
            conflict_rate: 0.3,
            seed,
        }
    }

    #[tokio::test]
    async fn injected_conflict_carries_the_real_current_value() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let kv = inner.create("/k", b"v1".to_vec()).await.unwrap();
        let store = FaultyStore::new(
            inner.clone(),
            FaultConfig {
                conflict_rate: 1.0,
                ..FaultConfig::default()
            },
        );
        match store.update("/k", b"v2".to_vec(), kv.mod_revision).await {
            Err(StoreError::Conflict {
                key,
                expected,
                current: Some(current),
            }) => {
                assert_eq!(key, "/k");
                assert_eq!(expected, kv.mod_revision);
                assert_eq!(current, kv);
            }
            other => panic!("expected an injected conflict, got {other:?}"),
        }
        // Creates and unconditional deletes cannot lose a race.
        store.create("/other", b"x".to_vec()).await.unwrap();
        store.delete("/other", None).await.unwrap();
        assert_eq!(store.injected().conflicts, 1);
        assert_eq!(inner.get("/k", None).await.unwrap().0, Some(kv));
    }

    #[tokio::test]
    async fn switched_off_it_injects_nothing() {
        let store = FaultyStore::new(
            Arc::new(MemoryStore::new()),
            FaultConfig {
                error_rate: 1.0,
                conflict_rate: 1.0,
                ..FaultConfig::default()
            },
        );
        store.set_enabled(false);
        let kv = store.create("/k", b"v1".to_vec()).await.unwrap();
        let kv = store
            .update("/k", b"v2".to_vec(), kv.mod_revision)
            .await
            .unwrap();
        store.delete("/k", Some(kv.mod_revision)).await.unwrap();
        assert_eq!(store.injected(), FaultCounts::default());
        store.set_enabled(true);
        assert!(matches!(
            store.create("/k", Vec::new()).await,
            Err(StoreError::Backend { .. })
        ));
    }

    #[tokio::test]
    async fn the_same_seed_injects_the_same_faults() {
        async fn outcomes(seed: u64) -> Vec<bool> {
            let store = FaultyStore::new(Arc::new(MemoryStore::new()), noisy(seed));
            let mut out = Vec::new();
            for i in 0..50 {
                out.push(store.create(&format!("/k{i}"), Vec::new()).await.is_ok());
            }
            out
        }
        assert_eq!(outcomes(7).await, outcomes(7).await);
        assert_ne!(outcomes(7).await, outcomes(8).await);
    }
}
