//! The scheduling queue, shaped like kube-scheduler's `PriorityQueue`.
//!
//! - *activeQ* holds pods ready to be tried, highest `spec.priority` first,
//!   then first come, first served.
//! - *backoffQ* holds pods that failed recently and wait out a per-pod
//!   exponential backoff (1 s after the first attempt, doubling up to 10 s).
//! - *unschedulablePods* holds pods no node fitted. A cluster event that
//!   could make one fit (a node added or changed, an assigned pod deleted
//!   ...) moves it back — to backoffQ if its backoff has not passed yet — and
//!   so does time: none stays longer than five minutes.
//!
//! Pods with scheduling gates wait aside until an update removes the gates.
//! The queue is plain data; the caller passes in the current time.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::plugins::names;
use crate::pod_info::PodInfo;

/// The backoff after a pod's first failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest a pod stays in unschedulablePods without being retried.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// What changed on an updated node, as far as scheduling cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeChanges {
    /// `metadata.labels`.
    pub labels: bool,
    /// `spec.taints`.
    pub taints: bool,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `status.allocatable`.
    pub allocatable: bool,
}

impl NodeChanges {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.labels || self.taints || self.unschedulable || self.allocatable
    }
}

/// A change in the cluster that may let unschedulable pods fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node appeared.
    NodeAdded,
    /// A node changed.
    NodeUpdated(NodeChanges),
    /// A pod was bound to a node (it may satisfy pod affinity or spread).
    AssignedPodAdded,
    /// A bound pod changed (labels, or resources scaled down).
    AssignedPodUpdated,
    /// A bound pod went away, freeing resources and ports.
    AssignedPodDeleted,
}

impl ClusterEvent {
    /// Whether this event may make a pod that `plugin` rejected fit.
    pub fn may_help(&self, plugin: &str) -> bool {
        match self {
            ClusterEvent::NodeAdded => true,
            ClusterEvent::NodeUpdated(c) => match plugin {
                names::NODE_UNSCHEDULABLE => c.unschedulable,
                names::TAINT_TOLERATION => c.taints,
                names::NODE_AFFINITY | names::INTER_POD_AFFINITY => c.labels,
                names::POD_TOPOLOGY_SPREAD => c.labels || c.taints,
                names::NODE_RESOURCES_FIT => c.allocatable,
                names::NODE_PORTS | names::NODE_NAME => false,
                _ => c.any(),
            },
            ClusterEvent::AssignedPodAdded => {
                matches!(
                    plugin,
                    names::INTER_POD_AFFINITY | names::POD_TOPOLOGY_SPREAD
                )
            }
            ClusterEvent::AssignedPodUpdated => matches!(
                plugin,
                names::INTER_POD_AFFINITY | names::POD_TOPOLOGY_SPREAD | names::NODE_RESOURCES_FIT
            ),
            ClusterEvent::AssignedPodDeleted => matches!(
                plugin,
                names::NODE_RESOURCES_FIT
                    | names::NODE_PORTS
                    | names::INTER_POD_AFFINITY
                    | names::POD_TOPOLOGY_SPREAD
            ),
        }
    }
}

/// A pod in (or popped from) the queue, with its attempt history.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    /// The pod as last observed.
    pub info: Arc<PodInfo>,
    /// How many scheduling attempts it had.
    pub attempts: u32,
    /// When it was added or last failed; orders activeQ and starts backoff.
    pub timestamp: Instant,
    /// The plugins that rejected it last time; empty means any cluster
    /// event may help.
    pub rejectors: Vec<&'static str>,
}

/// Which sub-queue a pod is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// activeQ.
    Active,
    /// backoffQ.
    Backoff,
    /// unschedulablePods.
    Unschedulable,
    /// Waiting for its scheduling gates to be removed.
    Gated,
}

#[derive(Debug)]
struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Invalidates heap items pushed for an earlier placement.
    generation: u64,
    /// FIFO order among equal priorities.
    seq: u64,
    /// When it entered its current place.
    since: Instant,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    seq: u64,
    generation: u64,
    uid: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // A max-heap: higher priority first, then the earlier arrival.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// activeQ, backoffQ and unschedulablePods over one map of pods.
#[derive(Debug)]
pub struct SchedulingQueue {
    pods: HashMap<String, Entry>,
    /// The UIDs in unschedulablePods, so events need not scan every pod.
    unschedulable: HashSet<String>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_seq: u64,
    next_generation: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        SchedulingQueue::new(INITIAL_BACKOFF, MAX_BACKOFF)
    }
}

impl SchedulingQueue {
    /// An empty queue with the given backoff bounds.
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        SchedulingQueue {
            pods: HashMap::new(),
            unschedulable: HashSet::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            next_seq: 0,
            next_generation: 0,
            initial_backoff,
            max_backoff,
        }
    }

    /// Adds a pending pod, or updates it if queued already. A new pod goes
    /// to activeQ (or waits aside while it has scheduling gates).
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        if self.pods.contains_key(&info.uid) {
            self.update(info, now);
            return;
        }
        let place = if is_gated(&info) {
            Place::Gated
        } else {
            Place::Active
        };
        let pod = QueuedPod {
            info,
            attempts: 0,
            timestamp: now,
            rejectors: Vec::new(),
        };
        self.insert(pod, place, now);
    }

    /// Takes a newer version of a queued pod. An unschedulable pod whose
    /// spec, labels or annotations changed is retried (after its backoff);
    /// a gated pod whose gates are gone becomes active.
    pub fn update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let Some(entry) = self.pods.get_mut(&info.uid) else {
            self.add(info, now);
            return;
        };
        let relevant = scheduling_relevant_change(&entry.pod.info, &info);
        let priority_changed = entry.pod.info.priority != info.priority;
        let gated = is_gated(&info);
        let uid = info.uid.clone();
        entry.pod.info = info;
        match entry.place {
            Place::Gated if !gated => self.place(&uid, Place::Active, now),
            Place::Unschedulable if relevant => self.retry(&uid, now),
            Place::Active if priority_changed => self.place(&uid, Place::Active, now),
            _ => {}
        }
    }

    /// Removes a pod (deleted, bound, or no longer ours).
    pub fn delete(&mut self, uid: &str) -> Option<QueuedPod> {
        self.unschedulable.remove(uid);
        self.pods.remove(uid).map(|e| e.pod)
    }

    /// Whether the pod with `uid` is queued, and where.
    pub fn place_of(&self, uid: &str) -> Option<Place> {
        self.pods.get(uid).map(|e| e.place)
    }

    /// How many pods the queue holds in all.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the queue holds no pods.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// UIDs of every queued pod.
    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(String::as_str)
    }

    /// Whether activeQ has a pod to pop.
    pub fn has_active(&mut self) -> bool {
        self.drop_stale_active();
        !self.active.is_empty()
    }

    /// Takes the next pod from activeQ: highest priority, then oldest.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        self.drop_stale_active();
        let item = self.active.pop()?;
        self.unschedulable.remove(&item.uid);
        self.pods.remove(&item.uid).map(|e| e.pod)
    }

    /// Puts back a pod that no node fitted; it waits in unschedulablePods
    /// for a cluster event that `rejectors` say may help (empty: any event).
    pub fn requeue_unschedulable(
        &mut self,
        mut pod: QueuedPod,
        rejectors: Vec<&'static str>,
        now: Instant,
    ) {
        pod.timestamp = now;
        pod.rejectors = rejectors;
        self.insert(pod, Place::Unschedulable, now);
    }

    /// Puts back a pod whose attempt failed with an error; it is retried
    /// once its backoff passes.
    pub fn requeue_backoff(&mut self, mut pod: QueuedPod, now: Instant) {
        pod.timestamp = now;
        pod.rejectors = Vec::new();
        self.insert(pod, Place::Backoff, now);
    }

    /// Moves the unschedulable pods `event` may help back to activeQ (or
    /// backoffQ while they are backing off).
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) {
        let helped: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.pods.get(*uid).is_some_and(|e| {
                    e.pod.rejectors.is_empty() || e.pod.rejectors.iter().any(|p| event.may_help(p))
                })
            })
            .cloned()
            .collect();
        for uid in helped {
            self.retry(&uid, now);
        }
    }

    /// Moves pods whose backoff has passed to activeQ, and pods unschedulable
    /// for longer than [`MAX_UNSCHEDULABLE`] back to the queues.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((at, generation, uid))) = self.backoff.peek().cloned() {
            if at > now {
                break;
            }
            self.backoff.pop();
            let current = self
                .pods
                .get(&uid)
                .is_some_and(|e| e.place == Place::Backoff && e.generation == generation);
            if current {
                self.place(&uid, Place::Active, now);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.pods
                    .get(*uid)
                    .is_some_and(|e| now.duration_since(e.since) >= MAX_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        for uid in stale {
            self.retry(&uid, now);
        }
    }

    /// When the earliest backoff ends, if any pod is backing off.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((at, _, _))| *at)
    }

    /// How long `pod` backs off after its latest attempt.
    pub fn backoff_duration(&self, pod: &QueuedPod) -> Duration {
        let doublings = pod.attempts.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    fn backoff_expiry(&self, pod: &QueuedPod) -> Instant {
        pod.timestamp + self.backoff_duration(pod)
    }

    /// Sends a waiting pod back to be tried: to backoffQ if it is still
    /// backing off, else to activeQ.
    fn retry(&mut self, uid: &str, now: Instant) {
        let Some(entry) = self.pods.get(uid) else {
            return;
        };
        let place = if self.backoff_expiry(&entry.pod) > now {
            Place::Backoff
        } else {
            Place::Active
        };
        self.place(uid, place, now);
    }

    fn insert(&mut self, pod: QueuedPod, place: Place, now: Instant) {
        let uid = pod.info.uid.clone();
        self.next_seq += 1;
        let entry = Entry {
            pod,
            place,
            generation: 0,
            seq: self.next_seq,
            since: now,
        };
        self.pods.insert(uid.clone(), entry);
        self.place(&uid, place, now);
    }

    /// Moves a pod to `place`, pushing the heap item that place needs.
    fn place(&mut self, uid: &str, place: Place, now: Instant) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let backoff_at = self.pods.get(uid).map(|e| self.backoff_expiry(&e.pod));
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        entry.place = place;
        entry.generation = generation;
        entry.since = now;
        if place == Place::Unschedulable {
            self.unschedulable.insert(uid.to_string());
        } else {
            self.unschedulable.remove(uid);
        }
        match place {
            Place::Active => self.active.push(ActiveItem {
                priority: entry.pod.info.priority,
                seq: entry.seq,
                generation,
                uid: uid.to_string(),
            }),
            Place::Backoff => {
                let at = backoff_at.unwrap_or(now);
                self.backoff
                    .push(Reverse((at, generation, uid.to_string())));
            }
            Place::Unschedulable | Place::Gated => {}
        }
    }

    fn drop_stale_active(&mut self) {
        while let Some(top) = self.active.peek() {
            let current = self
                .pods
                .get(&top.uid)
                .is_some_and(|e| e.place == Place::Active && e.generation == top.generation);
            if current {
                return;
            }
            self.active.pop();
        }
    }
}

/// Whether a pod still waits for its scheduling gates.
fn is_gated(info: &PodInfo) -> bool {
    info.spec()
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty())
}

/// Whether an update to a pod could change where it fits: anything but
/// its status and bookkeeping metadata.
fn scheduling_relevant_change(old: &PodInfo, new: &PodInfo) -> bool {
    old.pod.spec != new.pod.spec
        || old.pod.metadata.labels != new.pod.metadata.labels
        || old.pod.metadata.annotations != new.pod.metadata.annotations
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, priority: i32) -> Arc<PodInfo> {
        pod_with(
            uid,
            json!({"containers": [{"name": "c"}], "priority": priority}),
        )
    }

    fn pod_with(uid: &str, spec: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(
            serde_json::from_value(
                json!({"metadata": {"name": uid, "namespace": "d", "uid": uid}, "spec": spec}),
            )
            .unwrap(),
        ))
    }

    fn popped(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop().map(|p| p.info.uid.clone())).collect()
    }

    #[test]
    fn active_pods_pop_by_priority_then_arrival() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.add(pod("low", 0), now);
        q.add(pod("high", 10), now);
        q.add(pod("low2", 0), now);
        q.add(pod("high2", 10), now);
        assert_eq!(popped(&mut q), ["high", "high2", "low", "low2"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let q = SchedulingQueue::default();
        let mut p = QueuedPod {
            info: pod("a", 0),
            attempts: 1,
            timestamp: Instant::now(),
            rejectors: Vec::new(),
        };
        let mut seen = Vec::new();
        for attempts in 1..=6 {
            p.attempts = attempts;
            seen.push(q.backoff_duration(&p).as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn failed_pods_wait_out_their_backoff() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        q.add(pod("a", 0), start);
        let mut p = q.pop().unwrap();
        p.attempts += 1;
        q.requeue_backoff(p, start);
        assert!(!q.has_active());
        assert_eq!(q.next_backoff_expiry(), Some(start + INITIAL_BACKOFF));
        q.flush(start + Duration::from_millis(999));
        assert!(!q.has_active());
        q.flush(start + INITIAL_BACKOFF);
        assert_eq!(popped(&mut q), ["a"]);
    }

    fn unschedulable(q: &mut SchedulingQueue, uid: &str, rejector: &'static str, at: Instant) {
        q.add(pod(uid, 0), at);
        let mut p = q.pop().unwrap();
        p.attempts += 1;
        q.requeue_unschedulable(p, vec![rejector], at);
        assert_eq!(q.place_of(uid), Some(Place::Unschedulable));
    }

    #[test]
    fn unschedulable_pods_move_only_on_events_that_may_help() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        unschedulable(&mut q, "cpu", names::NODE_RESOURCES_FIT, start);
        unschedulable(&mut q, "taint", names::TAINT_TOLERATION, start);
        let later = start + Duration::from_secs(5);
        q.on_event(ClusterEvent::AssignedPodDeleted, later);
        assert_eq!(q.place_of("cpu"), Some(Place::Active));
        assert_eq!(q.place_of("taint"), Some(Place::Unschedulable));
        q.on_event(
            ClusterEvent::NodeUpdated(NodeChanges {
                labels: true,
                ..NodeChanges::default()
            }),
            later,
        );
        assert_eq!(q.place_of("taint"), Some(Place::Unschedulable));
        q.on_event(ClusterEvent::NodeAdded, later);
        assert_eq!(q.place_of("taint"), Some(Place::Active));
    }

    #[test]
    fn a_pod_helped_while_backing_off_goes_to_backoff_first() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        unschedulable(&mut q, "a", names::NODE_RESOURCES_FIT, start);
        q.on_event(ClusterEvent::NodeAdded, start + Duration::from_millis(10));
        assert_eq!(q.place_of("a"), Some(Place::Backoff));
        q.flush(start + INITIAL_BACKOFF);
        assert_eq!(q.place_of("a"), Some(Place::Active));
    }

    #[test]
    fn unschedulable_pods_are_retried_after_five_minutes_anyway() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        unschedulable(&mut q, "a", names::NODE_AFFINITY, start);
        q.flush(start + MAX_UNSCHEDULABLE - Duration::from_secs(1));
        assert_eq!(q.place_of("a"), Some(Place::Unschedulable));
        q.flush(start + MAX_UNSCHEDULABLE);
        assert_eq!(q.place_of("a"), Some(Place::Active));
    }

    #[test]
    fn a_spec_change_retries_an_unschedulable_pod_but_a_status_change_does_not() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        unschedulable(&mut q, "a", names::NODE_AFFINITY, start);
        let later = start + Duration::from_secs(30);
        let mut status_only: k8s_openapi::api::core::v1::Pod = (*pod("a", 0).pod).clone();
        status_only.status = Some(Default::default());
        q.update(Arc::new(PodInfo::new(status_only)), later);
        assert_eq!(q.place_of("a"), Some(Place::Unschedulable));
        q.update(
            pod_with(
                "a",
                json!({"containers": [{"name": "c"}], "nodeSelector": {"x": "y"}}),
            ),
            later,
        );
        assert_eq!(q.place_of("a"), Some(Place::Active));
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_removed() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.add(
            pod_with(
                "a",
                json!({"containers": [{"name": "c"}], "schedulingGates": [{"name": "wait"}]}),
            ),
            now,
        );
        assert!(!q.has_active());
        q.update(pod("a", 0), now);
        assert_eq!(popped(&mut q), ["a"]);
    }

    #[test]
    fn deleted_pods_never_pop() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.add(pod("a", 0), now);
        q.add(pod("b", 0), now);
        q.delete("a");
        assert_eq!(popped(&mut q), ["b"]);
        assert!(q.is_empty());
    }
}
