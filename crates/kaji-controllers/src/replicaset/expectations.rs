//! Expectations: the pod creations and deletions a ReplicaSet has sent but
//! its watch has not yet observed, so a lagging cache never makes the
//! controller create or delete twice.
//!
//! Creations are counted (their names are unknown until the server answers,
//! and the watch may deliver the pod before the answer arrives); deletions
//! are tracked by pod uid, so a relist that silently drops a pod can still
//! satisfy them. Every record carries the owning ReplicaSet's uid: a
//! ReplicaSet deleted and recreated under the same name starts clean.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an unobserved expectation blocks the create/delete step, as in
/// Kubernetes (`ExpectationsTimeout`).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

/// In-flight creations and deletions per ReplicaSet, keyed by `namespace/name`.
///
/// # Guarantees
/// Every method takes one short lock and never awaits; it is safe to call
/// from watch-stream callbacks and reconcilers concurrently.
#[derive(Debug)]
pub struct Expectations {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    owner_uid: String,
    creates: usize,
    deletes: HashSet<String>,
    since: Instant,
}

impl Entry {
    fn fulfilled(&self) -> bool {
        self.creates == 0 && self.deletes.is_empty()
    }
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations::new(EXPECTATIONS_TTL)
    }
}

impl Expectations {
    /// Expectations that expire `ttl` after they were set.
    pub fn new(ttl: Duration) -> Self {
        Expectations {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave an entry half-written.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `count` pods are about to be created for the ReplicaSet
    /// `key` (uid `owner_uid`). Replaces any previous record.
    ///
    /// # Caveats
    /// Call it *before* sending the creates: the watch may observe a pod
    /// before its create call returns.
    pub fn expect_creations(&self, key: &str, owner_uid: &str, count: usize) {
        let mut entries = self.lock();
        self.prune_expired(&mut entries);
        entries.insert(
            key.to_string(),
            Entry {
                owner_uid: owner_uid.to_string(),
                creates: count,
                deletes: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// Records that the pods with these uids are about to be deleted.
    /// Replaces any previous record.
    pub fn expect_deletions(
        &self,
        key: &str,
        owner_uid: &str,
        pod_uids: impl IntoIterator<Item = String>,
    ) {
        let mut entries = self.lock();
        self.prune_expired(&mut entries);
        entries.insert(
            key.to_string(),
            Entry {
                owner_uid: owner_uid.to_string(),
                creates: 0,
                deletes: pod_uids.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// One pod owned by `owner_uid` was observed for the first time, or one
    /// create call failed (so it will never be observed).
    pub fn creation_observed(&self, key: &str, owner_uid: &str) {
        if let Some(entry) = self.lock().get_mut(key) {
            if entry.owner_uid == owner_uid && entry.creates > 0 {
                entry.creates -= 1;
                if entry.fulfilled() {
                    tracing::debug!(replicaset = key, waited = ?entry.since.elapsed(), "creations observed");
                }
            }
        }
    }

    /// The pod `pod_uid` was observed gone or terminating, or its delete
    /// call failed (so it will never be observed).
    pub fn deletion_observed(&self, key: &str, owner_uid: &str, pod_uid: &str) {
        if let Some(entry) = self.lock().get_mut(key) {
            if entry.owner_uid == owner_uid {
                entry.deletes.remove(pod_uid);
            }
        }
    }

    /// Level-based catch-up: every expected deletion whose pod is no longer
    /// `live` (absent from the cache or terminating) counts as observed.
    /// This covers deletions a watch restart swallowed.
    pub fn observe_deletions_by_state(
        &self,
        key: &str,
        owner_uid: &str,
        live: impl Fn(&str) -> bool,
    ) {
        if let Some(entry) = self.lock().get_mut(key) {
            if entry.owner_uid == owner_uid {
                entry.deletes.retain(|uid| live(uid));
            }
        }
    }

    /// Whether the ReplicaSet may create or delete pods: nothing is
    /// recorded, everything recorded was observed, the record belongs to an
    /// older ReplicaSet of the same name, or the record expired.
    pub fn satisfied(&self, key: &str, owner_uid: &str) -> bool {
        self.time_left(key, owner_uid).is_none()
    }

    /// How long the create/delete step stays blocked at most, or `None` if
    /// it is not blocked (see [`Expectations::satisfied`]).
    pub fn time_left(&self, key: &str, owner_uid: &str) -> Option<Duration> {
        let mut entries = self.lock();
        let entry = entries.get(key)?;
        if entry.owner_uid != owner_uid {
            entries.remove(key);
            return None;
        }
        if entry.fulfilled() {
            return None;
        }
        let deadline = entry.since + self.ttl;
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    /// Forgets the ReplicaSet `key` (it was deleted).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn prune_expired(&self, entries: &mut HashMap<String, Entry>) {
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.since) < self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ns/web";

    #[test]
    fn nothing_recorded_is_satisfied() {
        let exp = Expectations::default();
        assert!(exp.satisfied(KEY, "u1"));
    }

    #[test]
    fn creations_block_until_each_one_is_observed() {
        let exp = Expectations::default();
        exp.expect_creations(KEY, "u1", 2);
        assert!(!exp.satisfied(KEY, "u1"));
        exp.creation_observed(KEY, "u1");
        assert!(!exp.satisfied(KEY, "u1"));
        exp.creation_observed(KEY, "u1");
        assert!(exp.satisfied(KEY, "u1"));
        // Extra observations (pods created by others) never underflow.
        exp.creation_observed(KEY, "u1");
        exp.expect_creations(KEY, "u1", 1);
        assert!(!exp.satisfied(KEY, "u1"));
    }

    #[test]
    fn deletions_are_tracked_by_pod_uid() {
        let exp = Expectations::default();
        exp.expect_deletions(KEY, "u1", ["p1".to_string(), "p2".to_string()]);
        exp.deletion_observed(KEY, "u1", "p1");
        exp.deletion_observed(KEY, "u1", "p1");
        assert!(!exp.satisfied(KEY, "u1"), "p2 is still pending");
        exp.deletion_observed(KEY, "u1", "p2");
        assert!(exp.satisfied(KEY, "u1"));
    }

    #[test]
    fn deletions_are_observed_from_cache_state() {
        let exp = Expectations::default();
        exp.expect_deletions(KEY, "u1", ["p1".to_string(), "p2".to_string()]);
        exp.observe_deletions_by_state(KEY, "u1", |uid| uid == "p2");
        assert!(!exp.satisfied(KEY, "u1"));
        exp.observe_deletions_by_state(KEY, "u1", |_| false);
        assert!(exp.satisfied(KEY, "u1"));
    }

    #[test]
    fn observations_for_another_owner_uid_are_ignored() {
        let exp = Expectations::default();
        exp.expect_creations(KEY, "u1", 1);
        exp.creation_observed(KEY, "old-uid");
        assert!(!exp.satisfied(KEY, "u1"));
    }

    #[test]
    fn a_recreated_replicaset_starts_clean() {
        let exp = Expectations::default();
        exp.expect_creations(KEY, "u1", 3);
        assert!(
            exp.satisfied(KEY, "u2"),
            "a new uid is not blocked by the old record"
        );
        // ... and the stale record is gone for good.
        assert!(exp.satisfied(KEY, "u1"));
    }

    #[test]
    fn forget_drops_the_record() {
        let exp = Expectations::default();
        exp.expect_creations(KEY, "u1", 3);
        exp.forget(KEY);
        assert!(exp.satisfied(KEY, "u1"));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire_after_the_ttl() {
        let exp = Expectations::new(Duration::from_secs(300));
        exp.expect_creations(KEY, "u1", 1);
        tokio::time::advance(Duration::from_secs(200)).await;
        assert_eq!(exp.time_left(KEY, "u1"), Some(Duration::from_secs(100)));
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(exp.satisfied(KEY, "u1"));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_records_of_other_replicasets_are_pruned() {
        let exp = Expectations::new(Duration::from_secs(10));
        exp.expect_creations("ns/gone", "u0", 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        exp.expect_creations(KEY, "u1", 1);
        assert_eq!(exp.lock().len(), 1);
    }
}
