//! Watcher fan-out: a table of watchers indexed by prefix, one bounded queue each.
//!
//! The feed task dispatches every cached event once: it looks up the
//! watchers whose prefix is a prefix of the event's key (one hash lookup per
//! distinct watcher-prefix length, whatever the number of watchers) and
//! `try_send`s an `Arc` of the event into each one's queue. A full queue
//! never blocks the feed: that watcher is dropped and its stream reports
//! [`StoreError::WatchLagged`] once its queued events are drained.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use kaji_store::{Revision, StoreError, WatchEvent, WatchStream};
use tokio::sync::mpsc::{self, error::TrySendError};

/// How many registrations between sweeps for watchers whose stream was dropped.
const SWEEP_EVERY: usize = 1024;

/// One registered watcher, as the feed sees it.
#[derive(Debug)]
struct Watcher {
    queue: mpsc::Sender<Arc<WatchEvent>>,
    /// Set before the queue is dropped when the watcher fell behind.
    lagged: Arc<AtomicBool>,
    /// Live events below this revision are not for it (a start in the future).
    from: Revision,
}

impl Watcher {
    /// Ends this watcher's stream with `WatchLagged` after what is queued.
    fn lag(self) {
        self.lagged.store(true, Ordering::Release);
    }
}

/// What happened to watchers during one dispatch or drop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Watchers dropped with `WatchLagged`.
    pub lagged: u64,
}

/// Every live-fed watcher, grouped by exact prefix.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    by_prefix: HashMap<String, Vec<Watcher>>,
    /// How many prefixes of each length are registered, so dispatch probes
    /// only lengths that exist.
    lengths: BTreeMap<usize, usize>,
    /// Registrations since the last sweep.
    registrations: usize,
}

impl Watchers {
    /// Registers a watcher that gets `replay` first, then live events with revision >= `from`.
    pub fn register(
        &mut self,
        prefix: &str,
        from: Revision,
        replay: Vec<Arc<WatchEvent>>,
        queue_len: usize,
    ) -> WatchStream {
        self.registrations += 1;
        if self.registrations >= SWEEP_EVERY {
            self.registrations = 0;
            self.sweep();
        }
        let (queue, rx) = mpsc::channel(queue_len.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let group = self.by_prefix.entry(prefix.to_owned()).or_default();
        if group.is_empty() {
            *self.lengths.entry(prefix.len()).or_default() += 1;
        }
        group.push(Watcher {
            queue,
            lagged: lagged.clone(),
            from,
        });
        stream(replay, rx, lagged)
    }

    /// Number of registered watchers (including ones whose stream was dropped
    /// and not yet swept).
    pub fn len(&self) -> usize {
        self.by_prefix.values().map(Vec::len).sum()
    }

    /// Hands `event` to every watcher whose prefix matches its key.
    pub fn dispatch(&mut self, event: &Arc<WatchEvent>) -> Dropped {
        let key = event.kv.key.as_str();
        let revision = event.kv.mod_revision;
        let mut dropped = Dropped::default();
        let mut emptied = Vec::new();
        for &len in self.lengths.keys() {
            if len > key.len() {
                break;
            }
            if !key.is_char_boundary(len) {
                continue;
            }
            let Some(group) = self.by_prefix.get_mut(&key[..len]) else {
                continue;
            };
            let mut i = 0;
            while i < group.len() {
                let w = &group[i];
                if revision < w.from {
                    i += 1;
                    continue;
                }
                match w.queue.try_send(event.clone()) {
                    Ok(()) => i += 1,
                    Err(TrySendError::Full(_)) => {
                        group.swap_remove(i).lag();
                        dropped.lagged += 1;
                    }
                    Err(TrySendError::Closed(_)) => {
                        group.swap_remove(i);
                    }
                }
            }
            if group.is_empty() {
                emptied.push(len);
            }
        }
        for len in emptied {
            self.by_prefix.remove(&key[..len]);
            self.forget_length(len);
        }
        dropped
    }

    /// Drops every watcher with `WatchLagged` (the cache lost continuity).
    pub fn lag_all(&mut self) -> Dropped {
        let mut dropped = Dropped::default();
        for (_, group) in self.by_prefix.drain() {
            for w in group {
                if !w.queue.is_closed() {
                    dropped.lagged += 1;
                }
                w.lag();
            }
        }
        self.lengths.clear();
        dropped
    }

    /// Forgets watchers whose stream was dropped.
    fn sweep(&mut self) {
        let mut emptied = Vec::new();
        self.by_prefix.retain(|prefix, group| {
            group.retain(|w| !w.queue.is_closed());
            if group.is_empty() {
                emptied.push(prefix.len());
            }
            !group.is_empty()
        });
        for len in emptied {
            self.forget_length(len);
        }
    }

    fn forget_length(&mut self, len: usize) {
        if let Some(n) = self.lengths.get_mut(&len) {
            *n -= 1;
            if *n == 0 {
                self.lengths.remove(&len);
            }
        }
    }
}

/// The watcher's side: the replay, then its queue, then `WatchLagged` if it was dropped for lag.
fn stream(
    replay: Vec<Arc<WatchEvent>>,
    rx: mpsc::Receiver<Arc<WatchEvent>>,
    lagged: Arc<AtomicBool>,
) -> WatchStream {
    let live = futures::stream::unfold(Some((rx, lagged)), |state| async move {
        let (mut rx, lagged) = state?;
        match rx.recv().await {
            Some(event) => Some((Ok(Arc::unwrap_or_clone(event)), Some((rx, lagged)))),
            // The queue is closed: either dropped for lag, or the cache shut down.
            None if lagged.load(Ordering::Acquire) => Some((Err(StoreError::WatchLagged), None)),
            None => None,
        }
    });
    futures::stream::iter(replay)
        .map(|e| Ok(Arc::unwrap_or_clone(e)))
        .chain(live)
        .boxed()
}

#[cfg(test)]
mod tests {
    use kaji_store::{EventType, KeyValue};

    use super::*;

    fn event(key: &str, revision: Revision) -> Arc<WatchEvent> {
        Arc::new(WatchEvent {
            event_type: EventType::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: vec![],
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        })
    }

    async fn keys(mut s: WatchStream, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(s.next().await.unwrap().unwrap().kv.key);
        }
        out
    }

    #[tokio::test]
    async fn dispatch_should_reach_only_watchers_whose_prefix_matches() {
        let mut w = Watchers::default();
        let all = w.register("", 0, vec![], 8);
        let a = w.register("/a/", 0, vec![], 8);
        let a_bare = w.register("/a", 0, vec![], 8);
        let b = w.register("/b/", 0, vec![], 8);
        for (i, key) in ["/a/x", "/ab", "/b/y", "/a"].iter().enumerate() {
            w.dispatch(&event(key, i as Revision + 1));
        }
        drop(w);
        assert_eq!(keys(all, 4).await, ["/a/x", "/ab", "/b/y", "/a"]);
        assert_eq!(keys(a, 1).await, ["/a/x"]);
        assert_eq!(keys(a_bare, 3).await, ["/a/x", "/ab", "/a"]);
        assert_eq!(keys(b, 1).await, ["/b/y"]);
    }

    #[tokio::test]
    async fn a_full_queue_should_drop_only_that_watcher_with_lagged() {
        let mut w = Watchers::default();
        let mut slow = w.register("/", 0, vec![], 2);
        let mut fast = w.register("/", 0, vec![], 2);
        let mut lagged = 0;
        for r in 1..=5 {
            lagged += w.dispatch(&event("/k", r)).lagged;
            assert_eq!(fast.next().await.unwrap().unwrap().kv.mod_revision, r);
        }
        assert_eq!(lagged, 1);
        assert_eq!(w.len(), 1);
        assert!(slow.next().await.unwrap().is_ok());
        assert!(slow.next().await.unwrap().is_ok());
        assert!(matches!(
            slow.next().await,
            Some(Err(StoreError::WatchLagged))
        ));
        assert!(slow.next().await.is_none());
    }

    #[tokio::test]
    async fn dropped_streams_should_be_forgotten() {
        let mut w = Watchers::default();
        drop(w.register("/x/", 0, vec![], 2));
        w.dispatch(&event("/x/1", 1));
        assert_eq!(w.len(), 0);
        assert!(w.lengths.is_empty());
    }
}
