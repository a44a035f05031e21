//! A work queue that dedupes keys, never hands one key to two workers at
//! once, and requeues failed keys with exponential backoff.
//!
//! Shaped after client-go's rate-limited work queue: a key added while it is
//! being processed is parked and handed out again once `done` is called.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// First retry delay after a failure.
const BASE_DELAY: Duration = Duration::from_millis(50);
/// Longest retry delay after repeated failures.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// A deduplicating, delaying, rate-limited queue of keys.
///
/// # Guarantees
/// - A key is queued at most once however often it is added.
/// - A key handed out by [`WorkQueue::next`] is not handed out again until
///   [`WorkQueue::done`] is called for it; adds in between are kept.
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

struct State<K> {
    ready: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    waiting: BTreeMap<Instant, Vec<K>>,
    failures: HashMap<K, u32>,
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Marks `key` dirty and, unless it is being processed, ready; true when
    /// a worker should be woken.
    fn add(&mut self, key: K) -> bool {
        if !self.dirty.insert(key.clone()) {
            return false;
        }
        if self.processing.contains(&key) {
            return false;
        }
        self.ready.push_back(key);
        true
    }

    /// Moves every delayed key whose time has come to the ready queue.
    fn promote(&mut self, now: Instant) {
        let later = self.waiting.split_off(&(now + Duration::from_nanos(1)));
        let due = std::mem::replace(&mut self.waiting, later);
        for key in due.into_values().flatten() {
            self.add(key);
        }
    }
}

impl<K: Clone + Eq + Hash> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: BTreeMap::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` now (a no-op if it is already queued).
    pub fn add(&self, key: K) {
        if self.state().add(key) {
            self.notify.notify_one();
        }
    }

    /// Queues `key` once `delay` has passed.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        self.state()
            .waiting
            .entry(Instant::now() + delay)
            .or_default()
            .push(key);
        // Wake a worker so that it re-arms its timer for the new deadline.
        self.notify.notify_one();
    }

    /// Queues `key` after a delay that doubles with each consecutive failure.
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut state = self.state();
            let n = state.failures.entry(key.clone()).or_insert(0);
            let delay = BASE_DELAY
                .saturating_mul(2u32.saturating_pow(*n))
                .min(MAX_DELAY);
            *n = n.saturating_add(1);
            delay
        };
        self.add_after(key, delay);
    }

    /// Clears the failure count of `key`, so its next failure retries quickly.
    pub fn forget(&self, key: &K) {
        self.state().failures.remove(key);
    }

    /// Waits for the next ready key and marks it as being processed.
    pub async fn next(&self) -> K {
        loop {
            let deadline = {
                let mut state = self.state();
                state.promote(Instant::now());
                if let Some(key) = state.ready.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    return key;
                }
                state.waiting.keys().next().copied()
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = self.notify.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }

    /// Marks `key` as processed; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &K) {
        let mut state = self.state();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.ready.push_back(key.clone());
            drop(state);
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_now(q: &WorkQueue<&'static str>) -> Option<&'static str> {
        tokio::time::timeout(Duration::from_millis(1), q.next())
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_twice_is_handed_out_once() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(next_now(&q).await, Some("a"));
        assert_eq!(next_now(&q).await, Some("b"));
        assert_eq!(next_now(&q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_processing_waits_for_done() {
        let q = WorkQueue::default();
        q.add("a");
        assert_eq!(next_now(&q).await, Some("a"));
        q.add("a");
        assert_eq!(next_now(&q).await, None, "never two workers on one key");
        q.done(&"a");
        assert_eq!(next_now(&q).await, Some("a"));
        q.done(&"a");
        assert_eq!(next_now(&q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_key_becomes_ready_after_its_delay() {
        let q = WorkQueue::default();
        q.add_after("a", Duration::from_secs(5));
        assert_eq!(next_now(&q).await, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(next_now(&q).await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let q = WorkQueue::default();
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        // The first retry (50 ms) fires, the second (100 ms) is still pending.
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(next_now(&q).await, Some("a"));
        q.done(&"a");
        q.forget(&"a");
        q.add_rate_limited("a");
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(
            next_now(&q).await,
            Some("a"),
            "forgotten: back to the base delay"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_a_new_key() {
        let q = std::sync::Arc::new(WorkQueue::default());
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add("a");
        let got = tokio::time::timeout(Duration::from_secs(1), worker).await;
        assert_eq!(got.unwrap().unwrap(), "a");
    }
}
