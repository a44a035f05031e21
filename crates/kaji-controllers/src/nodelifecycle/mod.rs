//! The node lifecycle controller: notices nodes that stopped reporting, taints
//! nodes with problems, and evicts pods from nodes they cannot stay on.
//!
//! Like Kubernetes' node lifecycle and taint-eviction controllers together:
//!
//! - every [`Config::monitor_period`] it checks each node's heartbeats (its
//!   Lease in [`NODE_LEASE_NAMESPACE`] and its Ready condition, see
//!   [`health`]); a node silent for longer than [`Config::grace_period`] gets
//!   its reported conditions set to `Unknown` (`NodeStatusUnknown`, through
//!   `nodes/status`), a `NodeNotReady` Event, and its pods' Ready condition
//!   set to `False` (`pods/status`), as `MarkPodsNotReady`;
//! - it keeps the node's condition taints right ([`taints`]): `NoSchedule`
//!   taints for problems and cordoning, and the `not-ready` / `unreachable`
//!   `NoExecute` taints, gated per zone so that losing sight of every node
//!   does not evict every pod ([`zones`]);
//! - it deletes pods that do not tolerate a node's `NoExecute` taints, at once
//!   or after their `tolerationSeconds` ([`eviction`]).
//!
//! It never marks a node healthy: the node agent does that by posting
//! `Ready=True`, after which this controller removes its taints.
//!
//! Wiring: one reflector each for Nodes, node Leases and Pods. Node changes
//! wake a taint pass over the changed nodes; node and pod changes wake the
//! eviction pass. Everything runs inside the future [`run`] returns, so
//! dropping it (losing leadership) stops all of it.

mod eviction;
mod health;
mod monitor;
pub mod taints;
mod zones;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

pub use self::eviction::{tolerates, verdict, Verdict};
pub use self::health::{MESSAGE_UNKNOWN, REASON_UNKNOWN};
use crate::events::{EventRecorder, EventType};
use crate::Error;

/// Where node agents keep their heartbeat Leases, named after their node.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The controller's timing and thresholds; the defaults are
/// kube-controller-manager's (Kubernetes 1.32).
#[derive(Clone, Debug)]
pub struct Config {
    /// How often node heartbeats are checked (`--node-monitor-period`).
    /// Zero is treated as one millisecond.
    pub monitor_period: Duration,
    /// How long a node that has reported may stay silent before it is marked
    /// `Unknown` (`--node-monitor-grace-period`).
    pub grace_period: Duration,
    /// How long a node that never reported a Ready condition has, from its
    /// creation (`--node-startup-grace-period`).
    pub startup_grace_period: Duration,
    /// The share of unready nodes at which a zone counts as partially
    /// disrupted (`--unhealthy-zone-threshold`).
    pub unhealthy_zone_threshold: f64,
    /// Partially disrupted zones with at most this many nodes stop evicting
    /// (`--large-cluster-size-threshold`).
    pub large_cluster_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            unhealthy_zone_threshold: 0.55,
            large_cluster_threshold: 50,
        }
    }
}

/// What the monitor and eviction loops share.
pub(crate) struct Shared {
    client: Client,
    config: Config,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    /// Records as `node-controller`.
    node_events: EventRecorder,
    /// Records as `taint-eviction-controller`.
    eviction_events: EventRecorder,
    /// Nodes changed since the last taint pass.
    dirty: Mutex<HashSet<String>>,
    /// Wakes the taint pass.
    taint_wake: Notify,
    /// Wakes the eviction pass.
    eviction_wake: Notify,
}

impl Shared {
    fn dirty(&self) -> MutexGuard<'_, HashSet<String>> {
        // A poisoned set only loses wake-ups; the monitor pass covers every node anyway.
        self.dirty.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the controller with the default [`Config`] until dropped.
///
/// # Errors
/// None in practice: watches retry forever and failed writes are retried on
/// the next pass.
pub async fn run(client: Client) -> Result<(), Error> {
    run_with(client, Config::default()).await
}

/// Runs the controller with `config` until dropped.
///
/// # Errors
/// As [`run`].
pub async fn run_with(client: Client, config: Config) -> Result<(), Error> {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let shared = Arc::new(Shared {
        node_events: EventRecorder::new(client.clone(), "node-controller"),
        eviction_events: EventRecorder::new(client.clone(), "taint-eviction-controller"),
        client: client.clone(),
        config,
        nodes,
        leases,
        pods,
        dirty: Mutex::new(HashSet::new()),
        taint_wake: Notify::new(),
        eviction_wake: Notify::new(),
    });

    let node_feed = watch(Api::<Node>::all(client.clone()))
        .reflect(node_writer)
        .for_each(|event| {
            match event {
                Ok(Event::Apply(n) | Event::InitApply(n) | Event::Delete(n)) => {
                    shared.dirty().insert(n.name_any());
                    shared.taint_wake.notify_one();
                    shared.eviction_wake.notify_one();
                }
                Ok(Event::Init | Event::InitDone) => shared.eviction_wake.notify_one(),
                Err(error) => tracing::debug!(%error, "node watch"),
            }
            futures::future::ready(())
        });
    // Lease renewals are only sampled by the monitor pass; nothing to wake.
    let lease_feed = watch(Api::<Lease>::namespaced(
        client.clone(),
        NODE_LEASE_NAMESPACE,
    ))
    .reflect(lease_writer)
    .for_each(|event| {
        if let Err(error) = event {
            tracing::debug!(%error, "node lease watch");
        }
        futures::future::ready(())
    });
    let pod_feed = watch(Api::<Pod>::all(client))
        .reflect(pod_writer)
        .for_each(|event| {
            match event {
                Ok(_) => shared.eviction_wake.notify_one(),
                Err(error) => tracing::debug!(%error, "pod watch"),
            }
            futures::future::ready(())
        });

    tokio::join!(
        node_feed,
        lease_feed,
        pod_feed,
        monitor::run(shared.clone()),
        eviction::run(shared.clone()),
    );
    Ok(())
}

/// A watch that relists and retries with backoff forever.
fn watch<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

/// Records an Event on its own task, so that no pass waits for it.
fn spawn_event(
    recorder: &EventRecorder,
    regarding: ObjectReference,
    type_: EventType,
    reason: &'static str,
    message: String,
) {
    let recorder = recorder.clone();
    tokio::spawn(async move { recorder.record(&regarding, type_, reason, &message).await });
}
