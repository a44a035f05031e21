//! The control loop: one task owns the cache and the queue, applies watch
//! events to them, and runs one scheduling cycle at a time whenever a pod
//! is ready — so a cycle reads the cache without locks or snapshots, and
//! watch events queued meanwhile are applied before the next cycle starts.
//!
//! Binding is the slow part (an API round trip), so it runs on its own
//! task: the chosen node is *assumed* in the cache first, the next cycle
//! starts at once, and the binding's outcome comes back on a channel. A
//! failed binding forgets the assumption and retries the pod after backoff.
//! Status writes and events also run on tasks, bounded in concurrency; a
//! pod's binding waits for its previous status write so an older
//! `PodScheduled=False` never lands after the binding. Every task lives in
//! a `JoinSet` owned by the loop, so dropping the loop (losing leadership)
//! stops them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::Shared;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kaji_controllers::events::{object_reference, EventRecorder, EventType};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cache::{Cache, NodeUpsert};
use crate::framework::{ClusterView, Profile, ScheduleError, NO_NODES_AVAILABLE};
use crate::plugins::default_profile;
use crate::pod_info::PodInfo;
use crate::queue::{ClusterEvent, QueuedPod, SchedulingQueue};
use crate::Error;

/// The component name on events, as kube-scheduler's.
const COMPONENT: &str = "default-scheduler";

/// How many bindings and status updates may be in flight at once.
const MAX_CONCURRENT_WRITES: usize = 32;

/// How many event writes may be in flight at once: events are
/// informational, so they get fewer slots than bindings and never hold
/// one of theirs.
const MAX_CONCURRENT_EVENTS: usize = 8;

/// How often unschedulable pods are checked for having waited too long.
const LEFTOVER_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// Runs the scheduler with the default profile until its watches end.
pub(crate) async fn run(client: Client) -> Result<(), Error> {
    let (namespaces, writer) = reflector::store::<Namespace>();
    let namespace_watch = watcher::watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .for_each(|_| std::future::ready(()));
    let nodes = watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff();
    let pods = watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff();
    let scheduler = Scheduler::new(client, default_profile(), namespaces);
    tokio::select! {
        () = namespace_watch => Ok(()),
        result = scheduler.run(nodes, pods) => result,
    }
}

/// How writing a binding ended.
#[derive(Debug)]
enum BindError {
    /// The pod is gone (404) or cannot be bound (409: bound already, or
    /// being deleted); the watch will show what happened.
    Rejected(String),
    /// Anything else; the pod is retried.
    Failed(String),
}

/// A binding task's report.
#[derive(Debug)]
struct BindOutcome {
    uid: String,
    result: Result<(), BindError>,
}

/// The UIDs seen during a relist, to drop what the relist no longer shows.
#[derive(Default)]
struct Relist {
    nodes: Option<HashSet<String>>,
    pods: Option<HashSet<String>>,
}

struct Scheduler {
    client: Client,
    profile: Profile,
    cache: Cache,
    queue: SchedulingQueue,
    namespaces: Store<Namespace>,
    /// Pods whose binding is being written, by UID.
    binding: HashMap<String, QueuedPod>,
    /// Where the next cycle starts filtering nodes.
    cursor: usize,
    rng: StdRng,
    events: EventRecorder,
    tasks: JoinSet<()>,
    outcomes_tx: mpsc::UnboundedSender<BindOutcome>,
    outcomes_rx: mpsc::UnboundedReceiver<BindOutcome>,
    /// Per pod, the completion of its latest status write.
    status_writes: HashMap<String, Shared<oneshot::Receiver<()>>>,
    write_slots: Arc<Semaphore>,
    event_slots: Arc<Semaphore>,
    relist: Relist,
    nodes_synced: bool,
    pods_synced: bool,
}

impl Scheduler {
    fn new(client: Client, profile: Profile, namespaces: Store<Namespace>) -> Scheduler {
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        Scheduler {
            events: EventRecorder::new(client.clone(), COMPONENT),
            client,
            profile,
            cache: Cache::default(),
            queue: SchedulingQueue::default(),
            namespaces,
            binding: HashMap::new(),
            cursor: 0,
            rng: StdRng::from_os_rng(),
            tasks: JoinSet::new(),
            outcomes_tx,
            outcomes_rx,
            status_writes: HashMap::new(),
            write_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_WRITES)),
            event_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_EVENTS)),
            relist: Relist::default(),
            nodes_synced: false,
            pods_synced: false,
        }
    }

    async fn run(
        mut self,
        nodes: impl Stream<Item = watcher::Result<Event<Node>>>,
        pods: impl Stream<Item = watcher::Result<Event<Pod>>>,
    ) -> Result<(), Error> {
        tokio::pin!(nodes, pods);
        let mut leftovers = tokio::time::interval(LEFTOVER_FLUSH_INTERVAL);
        loop {
            // Scheduling waits for both caches, lest a pod be judged against
            // half the cluster.
            let ready = self.nodes_synced && self.pods_synced && self.queue.has_active();
            let backoff_expiry = self.queue.next_backoff_expiry();
            tokio::select! {
                biased;
                event = nodes.next() => match event {
                    Some(Ok(event)) => self.on_node_event(event),
                    Some(Err(error)) => tracing::warn!(%error, "node watch failed; retrying"),
                    None => return Ok(()),
                },
                event = pods.next() => match event {
                    Some(Ok(event)) => self.on_pod_event(event),
                    Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                    None => return Ok(()),
                },
                Some(outcome) = self.outcomes_rx.recv() => self.on_bind_outcome(outcome),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                () = sleep_until(backoff_expiry), if backoff_expiry.is_some() => {
                    self.queue.flush(Instant::now());
                }
                _ = leftovers.tick() => self.queue.flush(Instant::now()),
                () = std::future::ready(()), if ready => self.schedule_one(),
            }
        }
    }

    fn on_node_event(&mut self, event: Event<Node>) {
        let now = Instant::now();
        match event {
            Event::Apply(node) => self.upsert_node(&node, now),
            Event::Delete(node) => self
                .cache
                .remove_node(node.metadata.name.as_deref().unwrap_or_default()),
            Event::Init => self.relist.nodes = Some(HashSet::new()),
            Event::InitApply(node) => {
                if let Some(seen) = self.relist.nodes.as_mut() {
                    seen.insert(node.metadata.name.clone().unwrap_or_default());
                }
                self.upsert_node(&node, now);
            }
            Event::InitDone => {
                if let Some(seen) = self.relist.nodes.take() {
                    let gone: Vec<String> = self
                        .cache
                        .node_names()
                        .filter(|n| !seen.contains(*n))
                        .map(str::to_string)
                        .collect();
                    for name in gone {
                        self.cache.remove_node(&name);
                    }
                }
                self.nodes_synced = true;
            }
        }
    }

    fn upsert_node(&mut self, node: &Node, now: Instant) {
        match self.cache.upsert_node(node) {
            NodeUpsert::Added => self.queue.on_event(ClusterEvent::NodeAdded, now),
            NodeUpsert::Updated(changes) if changes.any() => {
                self.queue.on_event(ClusterEvent::NodeUpdated(changes), now);
            }
            NodeUpsert::Updated(_) => {}
        }
    }

    fn on_pod_event(&mut self, event: Event<Pod>) {
        let now = Instant::now();
        match event {
            Event::Apply(pod) => self.upsert_pod(pod, now),
            Event::Delete(pod) => {
                self.delete_pod(pod.metadata.uid.as_deref().unwrap_or_default(), now);
            }
            Event::Init => self.relist.pods = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let Some(seen) = self.relist.pods.as_mut() {
                    seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                }
                self.upsert_pod(pod, now);
            }
            Event::InitDone => {
                if let Some(seen) = self.relist.pods.take() {
                    // Assumed pods are ours until their binding reports back.
                    let gone: Vec<String> = self
                        .cache
                        .pod_uids()
                        .chain(self.queue.uids())
                        .filter(|uid| !seen.contains(*uid) && !self.cache.is_assumed(uid))
                        .map(str::to_string)
                        .collect();
                    for uid in gone {
                        self.delete_pod(&uid, now);
                    }
                }
                self.pods_synced = true;
            }
        }
    }

    fn upsert_pod(&mut self, pod: Pod, now: Instant) {
        let info = Arc::new(PodInfo::new(pod));
        let phase = info.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // Finished pods hold no resources.
            self.delete_pod(&info.uid, now);
            return;
        }
        if info.node_name().is_some() {
            self.queue.delete(&info.uid);
            let event = match self.cache.upsert_bound_pod(info.clone()) {
                // New to the cache, or the confirmation of an assumed pod.
                None => Some(ClusterEvent::AssignedPodAdded),
                Some(previous) if previous.node_name().is_none() => {
                    Some(ClusterEvent::AssignedPodAdded)
                }
                // Status updates of running pods help no one.
                Some(previous) => {
                    may_free_room(&previous, &info).then_some(ClusterEvent::AssignedPodUpdated)
                }
            };
            if let Some(event) = event {
                self.queue.on_event(event, now);
            }
            return;
        }
        if self.cache.is_assumed(&info.uid) {
            // Being bound: keep the newest version in case binding fails.
            if let Some(queued) = self.binding.get_mut(&info.uid) {
                queued.info = info;
            }
            return;
        }
        if self.is_ours(&info) {
            self.queue.add(info, now);
        } else {
            self.queue.delete(&info.uid);
        }
    }

    /// Whether the pod is this scheduler's to place (and not being deleted).
    fn is_ours(&self, pod: &PodInfo) -> bool {
        let name = pod.spec().scheduler_name.as_deref().unwrap_or_default();
        (name.is_empty() || name == self.profile.scheduler_name) && !pod.is_terminating()
    }

    fn delete_pod(&mut self, uid: &str, now: Instant) {
        self.queue.delete(uid);
        self.status_writes.remove(uid);
        if self.cache.remove_pod(uid).is_some() {
            self.queue.on_event(ClusterEvent::AssignedPodDeleted, now);
        }
    }

    /// One scheduling cycle for the next pod of activeQ.
    fn schedule_one(&mut self) {
        let Some(mut queued) = self.queue.pop() else {
            return;
        };
        let now = Instant::now();
        queued.attempts += 1;
        let pod = queued.info.clone();
        let cluster = ClusterView {
            cache: &self.cache,
            namespaces: &self.namespaces,
        };
        let result = self
            .profile
            .schedule(&pod, &cluster, &mut self.cursor, &mut self.rng);
        match result {
            Ok(decision) => {
                tracing::debug!(pod = %pod.key(), node = %decision.node,
                    evaluated = decision.evaluated, feasible = decision.feasible, "scheduled");
                self.cache.assume(pod.clone(), &decision.node);
                self.binding.insert(pod.uid.clone(), queued);
                self.spawn_bind(pod, decision.node);
            }
            Err(ScheduleError::NoNodes) => {
                self.queue.requeue_unschedulable(queued, Vec::new(), now);
                self.report_failure(&pod, "Unschedulable", NO_NODES_AVAILABLE.to_string());
            }
            Err(ScheduleError::Unschedulable(mut fit)) => {
                fit.diagnose_preemption(&pod, &cluster);
                let message = fit.message();
                self.queue
                    .requeue_unschedulable(queued, fit.rejectors(), now);
                self.report_failure(&pod, "Unschedulable", message);
            }
            Err(ScheduleError::Error(message)) => {
                self.queue.requeue_backoff(queued, now);
                self.report_failure(&pod, "SchedulerError", message);
            }
        }
    }

    fn on_bind_outcome(&mut self, outcome: BindOutcome) {
        let now = Instant::now();
        let queued = self.binding.remove(&outcome.uid);
        match outcome.result {
            Ok(()) => {}
            Err(BindError::Rejected(message)) => {
                tracing::debug!(uid = %outcome.uid, %message, "binding rejected");
                if self.cache.forget(&outcome.uid) {
                    self.queue.on_event(ClusterEvent::AssignedPodDeleted, now);
                }
            }
            Err(BindError::Failed(message)) => {
                if self.cache.forget(&outcome.uid) {
                    self.queue.on_event(ClusterEvent::AssignedPodDeleted, now);
                }
                if let Some(queued) = queued {
                    let pod = queued.info.clone();
                    self.queue.requeue_backoff(queued, now);
                    self.report_failure(
                        &pod,
                        "SchedulerError",
                        format!("Binding rejected: {message}"),
                    );
                }
            }
        }
    }

    fn spawn_bind(&mut self, pod: Arc<PodInfo>, node: String) {
        let previous_write = self.status_writes.remove(&pod.uid);
        let client = self.client.clone();
        let outcomes = self.outcomes_tx.clone();
        let events = self.events.clone();
        let slots = self.write_slots.clone();
        let event_slots = self.event_slots.clone();
        self.tasks.spawn(async move {
            if let Some(write) = previous_write {
                let _ = write.await;
            }
            let result = {
                let _slot = slots.acquire().await;
                bind(&client, &pod, &node).await
            };
            let bound = result.is_ok();
            let _ = outcomes.send(BindOutcome {
                uid: pod.uid.clone(),
                result,
            });
            if bound {
                let _slot = event_slots.acquire().await;
                let message = format!("Successfully assigned {} to {node}", pod.key());
                events
                    .record(
                        &object_reference(pod.pod.as_ref(), &()),
                        EventType::Normal,
                        "Scheduled",
                        &message,
                    )
                    .await;
            }
        });
    }

    /// Records why `pod` was not placed: a `FailedScheduling` event and,
    /// if it changed, the `PodScheduled=False` condition.
    fn report_failure(&mut self, pod: &Arc<PodInfo>, reason: &'static str, message: String) {
        tracing::debug!(pod = %pod.key(), %reason, "{message}");
        let regarding = object_reference(pod.pod.as_ref(), &());
        self.spawn_event(regarding, message.clone());
        let condition = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let unchanged = condition.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message.as_str())
        });
        if unchanged {
            return;
        }
        // The transition time moves only when the status flips.
        let transition = match condition {
            Some(c) if c.status == "False" => c.last_transition_time.clone().map(|t| t.0),
            _ => None,
        }
        .unwrap_or_else(Timestamp::now);
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]}});
        let (done, done_rx) = oneshot::channel::<()>();
        let previous = self.status_writes.insert(pod.uid.clone(), done_rx.shared());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let name = pod.name.clone();
        let slots = self.write_slots.clone();
        self.tasks.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let _slot = slots.acquire().await;
            if let Err(error) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::warn!(pod = %name, %error, "failed to update the PodScheduled condition");
            }
            drop(done);
        });
    }

    fn spawn_event(&mut self, regarding: ObjectReference, message: String) {
        let events = self.events.clone();
        let slots = self.event_slots.clone();
        self.tasks.spawn(async move {
            let _slot = slots.acquire().await;
            events
                .record(&regarding, EventType::Warning, "FailedScheduling", &message)
                .await;
        });
    }
}

/// Whether an update of a bound pod may let others fit: its labels
/// changed (affinity, spread), it started terminating (no longer counted
/// for spread), or its requests shrank.
fn may_free_room(old: &PodInfo, new: &PodInfo) -> bool {
    let (before, after) = (&old.requests.requests, &new.requests.requests);
    old.labels != new.labels
        || old.is_terminating() != new.is_terminating()
        || after.milli_cpu < before.milli_cpu
        || after.memory < before.memory
        || after.ephemeral_storage < before.ephemeral_storage
        || after
            .scalars
            .iter()
            .any(|(name, amount)| *amount < before.scalar(name))
}

/// Sleeps until `at` (never, for `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// POSTs the pod's `Binding` to `node`.
async fn bind(client: &Client, pod: &PodInfo, node: &str) -> Result<(), BindError> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Err(BindError::Rejected(status.message))
        }
        Err(error) => Err(BindError::Failed(error.to_string())),
    }
}
