//! The in-memory backend: full history until compaction, broadcast to watchers.
//!
//! Meant for unit tests and as the reference behaviour of the conformance
//! suite; nothing is durable.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::{
    EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// How many undelivered events a watcher may fall behind before it is dropped.
const DEFAULT_WATCH_BUFFER: usize = 16 * 1024;

/// One version of a key; `value: None` is a tombstone.
#[derive(Debug, Clone)]
struct Version {
    revision: Revision,
    create_revision: Revision,
    value: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Inner {
    revision: Revision,
    compacted: Revision,
    /// Every retained version of every key, oldest first.
    keys: BTreeMap<String, Vec<Version>>,
    /// Every retained event (revision >= `compacted`), for watch replay.
    log: VecDeque<WatchEvent>,
    /// Sent to while the lock is held, so subscribing under the lock sees no gap.
    events: broadcast::Sender<WatchEvent>,
}

/// An in-memory [`Store`]: keeps every version until compaction.
///
/// # Caveats
/// Not durable, and every write takes one global lock. A watcher more than
/// the watch buffer behind gets [`StoreError::WatchLagged`] and its stream ends.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::with_watch_buffer(DEFAULT_WATCH_BUFFER)
    }

    /// An empty store whose watchers are dropped once `buffer` events behind.
    pub fn with_watch_buffer(buffer: usize) -> Self {
        let (events, _) = broadcast::channel(buffer.max(1));
        MemoryStore {
            inner: Mutex::new(Inner {
                revision: 0,
                compacted: 0,
                keys: BTreeMap::new(),
                log: VecDeque::new(),
                events,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written in a
        // way that matters more than losing the store, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn check_read_revision(&self, revision: Option<Revision>) -> Result<Revision> {
        match revision {
            None | Some(0) => Ok(self.revision),
            Some(r) if r > self.revision => Err(StoreError::FutureRevision {
                requested: r,
                current: self.revision,
            }),
            Some(r) if r < self.compacted => Err(StoreError::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            Some(r) => Ok(r),
        }
    }

    fn latest(&self, key: &str) -> Option<KeyValue> {
        self.at(key, self.revision)
    }

    /// The key as of `revision`, if it was live then.
    fn at(&self, key: &str, revision: Revision) -> Option<KeyValue> {
        let versions = self.keys.get(key)?;
        let idx = versions.partition_point(|v| v.revision <= revision);
        let v = versions.get(idx.checked_sub(1)?)?;
        Some(KeyValue {
            key: key.to_owned(),
            value: v.value.clone()?,
            create_revision: v.create_revision,
            mod_revision: v.revision,
        })
    }

    /// Appends one version at the next revision and publishes its event.
    fn write(&mut self, key: &str, value: Option<Vec<u8>>, prev: Option<KeyValue>) -> WatchEvent {
        self.revision += 1;
        let revision = self.revision;
        let create_revision = match (&value, &prev) {
            (Some(_), Some(p)) => p.create_revision,
            (Some(_), None) => revision,
            (None, _) => 0,
        };
        let event = WatchEvent {
            event_type: if value.is_some() {
                EventType::Put
            } else {
                EventType::Delete
            },
            kv: KeyValue {
                key: key.to_owned(),
                value: value.clone().unwrap_or_default(),
                create_revision,
                mod_revision: revision,
            },
            prev,
        };
        self.keys.entry(key.to_owned()).or_default().push(Version {
            revision,
            create_revision,
            value,
        });
        self.log.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event.clone());
        event
    }
}

fn in_prefix(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
}

#[async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let inner = self.lock();
        let at = inner.check_read_revision(revision)?;
        Ok((inner.at(key, at), at))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let inner = self.lock();
        let at = inner.check_read_revision(options.revision)?;
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let lower = match &options.start_after {
            Some(after) if after.as_str() >= prefix => std::ops::Bound::Excluded(after.clone()),
            _ => std::ops::Bound::Included(prefix.to_owned()),
        };
        let mut kvs = Vec::new();
        let mut more = false;
        for key in inner
            .keys
            .range((lower, std::ops::Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| in_prefix(k, prefix))
        {
            if let Some(kv) = inner.at(key, at) {
                if kvs.len() == limit {
                    more = true;
                    break;
                }
                kvs.push(kv);
            }
        }
        Ok(ListResult {
            kvs,
            revision: at,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let inner = self.lock();
        let n = inner
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| in_prefix(k, prefix))
            .filter(|(_, versions)| versions.last().is_some_and(|v| v.value.is_some()))
            .count();
        Ok(n as i64)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut inner = self.lock();
        if inner.latest(key).is_some() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        Ok(inner.write(key, Some(value), None).kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        let mut inner = self.lock();
        let Some(current) = inner.latest(key) else {
            return Err(StoreError::NotFound {
                key: key.to_owned(),
            });
        };
        if current.mod_revision != expected_revision {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: expected_revision,
                current: Some(current),
            });
        }
        Ok(inner.write(key, Some(value), Some(current)).kv)
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        let mut inner = self.lock();
        let Some(current) = inner.latest(key) else {
            return Err(StoreError::NotFound {
                key: key.to_owned(),
            });
        };
        if let Some(expected) = expected_revision {
            if current.mod_revision != expected {
                return Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Some(current),
                });
            }
        }
        let event = inner.write(key, None, Some(current.clone()));
        Ok((event.kv.mod_revision, current))
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        let inner = self.lock();
        if start_revision > 0 && start_revision < inner.compacted {
            return Err(StoreError::Compacted {
                requested: start_revision,
                compacted: inner.compacted,
            });
        }
        let start = if start_revision <= 0 {
            inner.revision + 1
        } else {
            start_revision
        };
        // Subscribing and snapshotting the log under the same lock that writers
        // hold while sending means live events start exactly after the replay.
        let rx = inner.events.subscribe();
        let replay: Vec<_> = inner
            .log
            .iter()
            .filter(|e| e.kv.mod_revision >= start && in_prefix(&e.kv.key, prefix))
            .cloned()
            .map(Ok)
            .collect();
        let after = inner.revision.max(start - 1);
        drop(inner);
        let live = live_events(rx, prefix.to_owned(), after);
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut inner = self.lock();
        if revision > inner.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: inner.revision,
            });
        }
        if revision < inner.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: inner.compacted,
            });
        }
        inner.compacted = revision;
        while inner
            .log
            .front()
            .is_some_and(|e| e.kv.mod_revision < revision)
        {
            inner.log.pop_front();
        }
        inner.keys.retain(|_, versions| {
            // Keep the version visible at `revision` and everything after it;
            // a tombstone visible at `revision` reads the same as nothing.
            let visible = versions.partition_point(|v| v.revision <= revision);
            let mut keep_from = visible.saturating_sub(1);
            if versions
                .get(keep_from)
                .is_some_and(|v| v.revision <= revision && v.value.is_none())
            {
                keep_from += 1;
            }
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }
}

/// Live events from `rx` under `prefix` with revision > `after`; ends after
/// reporting [`StoreError::WatchLagged`] or when the store is dropped.
fn live_events(
    rx: broadcast::Receiver<WatchEvent>,
    prefix: String,
    after: Revision,
) -> impl futures::Stream<Item = Result<WatchEvent>> + Send + 'static {
    futures::stream::unfold(Some(rx), move |state| {
        let prefix = prefix.clone();
        async move {
            let mut rx = state?;
            loop {
                match rx.recv().await {
                    Ok(e) if e.kv.mod_revision > after && in_prefix(&e.kv.key, &prefix) => {
                        return Some((Ok(e), Some(rx)));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some((Err(StoreError::WatchLagged), None));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watcher_that_lags_gets_one_error_then_ends() {
        let store = MemoryStore::with_watch_buffer(4);
        let mut w = store.watch("/k", 0).await.unwrap();
        for i in 0..10 {
            store.create(&format!("/k{i}"), vec![]).await.unwrap();
        }
        assert!(matches!(w.next().await, Some(Err(StoreError::WatchLagged))));
        assert!(w.next().await.is_none());
    }

    #[tokio::test]
    async fn watch_stream_ends_when_store_is_dropped() {
        let store = MemoryStore::new();
        let mut w = store.watch("/", 0).await.unwrap();
        drop(store);
        assert!(w.next().await.is_none());
    }
}
