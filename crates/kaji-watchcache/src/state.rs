//! The cached state: latest key-values, the ring buffer of recent events, the watchers.
//!
//! Everything here is changed under one lock by the feed task (apply a batch,
//! swap in a re-list) and by watch registration, so that a new watcher's
//! replay from the buffer and its live events meet with no gap or duplicate.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use kaji_store::{EventType, KeyValue, ListOptions, ListResult, Revision, WatchEvent};

use crate::watchers::{Dropped, Watchers};

/// Bounds of the ring buffer of recent events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BufferLimits {
    pub events: usize,
    pub bytes: usize,
}

#[derive(Debug)]
pub(crate) struct State {
    /// True once a list has been loaded and the feed has continuity from it.
    pub ready: bool,
    /// The global revision the cache reflects: every revision up to it has
    /// been seen (the feed watches every key, so this is exact).
    pub revision: Revision,
    /// Latest value of every live key under the cached prefixes.
    pub kvs: BTreeMap<String, KeyValue>,
    /// Recent events under the cached prefixes, in revision order.
    pub buffer: VecDeque<Arc<WatchEvent>>,
    buffer_bytes: usize,
    /// Every cached event with revision >= this is in `buffer` (or not yet seen).
    pub buffer_from: Revision,
    pub watchers: Watchers,
}

impl State {
    pub fn new() -> Self {
        State {
            ready: false,
            revision: 0,
            kvs: BTreeMap::new(),
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            buffer_from: 1,
            watchers: Watchers::default(),
        }
    }

    /// Replaces the contents with a fresh list at `revision`. The buffer
    /// restarts after it, and every watcher is dropped with `WatchLagged`:
    /// the events between the old and the new revision are unknown.
    pub fn reset(&mut self, kvs: BTreeMap<String, KeyValue>, revision: Revision) -> Dropped {
        self.kvs = kvs;
        self.revision = revision;
        self.buffer.clear();
        self.buffer_bytes = 0;
        self.buffer_from = revision + 1;
        self.ready = true;
        self.watchers.lag_all()
    }

    /// Applies one event from the feed: `cached` says whether its key is under a cached prefix.
    pub fn apply(&mut self, event: WatchEvent, cached: bool, limits: BufferLimits) -> Dropped {
        let revision = event.kv.mod_revision;
        if revision <= self.revision {
            // Already seen (a resumed feed never repeats, but be safe).
            return Dropped::default();
        }
        self.revision = revision;
        if !cached {
            return Dropped::default();
        }
        match event.event_type {
            EventType::Put => {
                self.kvs.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventType::Delete => {
                self.kvs.remove(&event.kv.key);
            }
        }
        let event = Arc::new(event);
        let dropped = self.watchers.dispatch(&event);
        self.buffer_bytes += weight(&event);
        self.buffer.push_back(event);
        while self.buffer.len() > limits.events.max(1)
            || (self.buffer_bytes > limits.bytes && self.buffer.len() > 1)
        {
            let Some(old) = self.buffer.pop_front() else {
                break;
            };
            self.buffer_bytes -= weight(&old);
            self.buffer_from = old.kv.mod_revision + 1;
        }
        dropped
    }

    /// Buffered events under `prefix` with revision >= `from`.
    pub fn replay(&self, prefix: &str, from: Revision) -> Vec<Arc<WatchEvent>> {
        let first = self.buffer.partition_point(|e| e.kv.mod_revision < from);
        self.buffer
            .range(first..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// A latest-revision list, paged exactly like the backends.
    pub fn list(&self, prefix: &str, options: &ListOptions) -> ListResult {
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let lower = match &options.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let mut kvs = Vec::new();
        let mut more = false;
        for (_, kv) in self
            .kvs
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(kv.clone());
        }
        ListResult {
            kvs,
            revision: self.revision,
            more,
        }
    }

    /// Live keys under `prefix`.
    pub fn count(&self, prefix: &str) -> i64 {
        self.kvs
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count() as i64
    }
}

/// Bytes an event holds, for the buffer's byte bound.
fn weight(e: &WatchEvent) -> usize {
    let kv = |kv: &KeyValue| kv.key.len() + kv.value.len() + 64;
    kv(&e.kv) + e.prev.as_ref().map_or(0, kv)
}
