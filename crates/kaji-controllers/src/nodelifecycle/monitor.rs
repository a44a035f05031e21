//! The monitor loop: node health every monitor period, taints on every node
//! change.
//!
//! Each monitor pass checks every node's heartbeats, marks stale nodes
//! `Unknown` and their pods not ready, re-judges the zones, and reconciles
//! every node's taints. Between passes, node changes trigger a taint pass over
//! just the changed nodes, so a node reporting Ready again (or being cordoned)
//! gets its taints fixed at once. Both run on one task, so this controller's
//! own writes to a node never race each other; writes are pinned to the
//! resourceVersion they were computed from, so they never overwrite a newer
//! report from the node agent either (the conflict is retried next pass).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};

use super::health::{self, Grace, Heartbeats};
use super::taints::{self, condition_status, Gate};
use super::zones::{self, Transition, Zones};
use super::{spawn_event, Shared, NODE_LEASE_NAMESPACE};
use crate::events::{object_reference, EventType};

/// Runs the monitor and taint passes until dropped.
pub(super) async fn run(shared: Arc<Shared>) {
    let ready = futures::future::try_join3(
        shared.nodes.wait_until_ready(),
        shared.leases.wait_until_ready(),
        shared.pods.wait_until_ready(),
    );
    if ready.await.is_err() {
        return;
    }
    let config = &shared.config;
    let mut monitor = Monitor {
        heartbeats: Heartbeats::default(),
        zones: Zones::new(
            config.unhealthy_zone_threshold,
            config.large_cluster_threshold,
        ),
    };
    let period = config
        .monitor_period
        .max(std::time::Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => monitor.pass(&shared).await,
            () = shared.taint_wake.notified() => monitor.changed_nodes_pass(&shared).await,
        }
    }
}

/// What the monitor remembers between passes.
struct Monitor {
    heartbeats: Heartbeats,
    zones: Zones,
}

impl Monitor {
    /// One monitor pass over every node.
    async fn pass(&mut self, shared: &Shared) {
        let now = Instant::now();
        let wall = Timestamp::now();
        let stamp = Time(wall);
        let grace = Grace {
            running: shared.config.grace_period,
            startup: shared.config.startup_grace_period,
        };
        // This pass covers every node.
        shared.dirty().clear();
        let nodes = shared.nodes.state();
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.heartbeats.retain(|name| names.contains(name));

        let mut pods_by_node = None;
        let mut readiness: HashMap<String, Vec<bool>> = HashMap::new();
        let mut current = Vec::with_capacity(nodes.len());
        for node in nodes {
            let name = node.name_any();
            let lease = shared
                .leases
                .get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
            let stale = self
                .heartbeats
                .observe(&node, lease.as_deref(), grace, now, wall);
            let mut node = (*node).clone();
            if stale {
                if let Some(updated) = mark_unknown(shared, &node, &stamp).await {
                    node = updated;
                }
            }
            let ready = condition_status(&node, "Ready");
            if ready == Some("Unknown") {
                // Nobody else will: the node agent that owns pod readiness is silent.
                let index = pods_by_node.get_or_insert_with(|| index_pods(shared));
                if let Some(pods) = index.get(&name) {
                    mark_pods_not_ready(shared, pods, &stamp).await;
                }
            }
            if zones::counts_for_disruption(&node) {
                readiness
                    .entry(zones::zone_key(&node))
                    .or_default()
                    .push(ready == Some("True"));
            }
            current.push(node);
        }

        let transition = self.zones.update(&readiness);
        match transition {
            Transition::EnteredMasterDisruption => tracing::warn!(
                "every node is unready; assuming the control plane is cut off: \
                 stopping evictions and removing NoExecute taints"
            ),
            Transition::ExitedMasterDisruption => {
                tracing::info!("some nodes are ready again; resuming evictions");
                self.heartbeats.reset_all(now);
            }
            Transition::None => {}
        }
        for node in &current {
            let gate = match transition {
                Transition::EnteredMasterDisruption => Gate::Cleared,
                _ => self.zones.gate(&zones::zone_key(node)),
            };
            apply_taints(shared, node, gate, &stamp).await;
        }
    }

    /// A taint pass over the nodes changed since the last pass.
    async fn changed_nodes_pass(&self, shared: &Shared) {
        let names: Vec<String> = shared.dirty().drain().collect();
        let stamp = Time(Timestamp::now());
        for name in names {
            let Some(node) = shared.nodes.get(&ObjectRef::new(&name)) else {
                continue;
            };
            let zone = zones::zone_key(&node);
            // A zone the last pass did not judge may not start evicting yet.
            let gate = match self.zones.state(&zone) {
                Some(_) => self.zones.gate(&zone),
                None => Gate::Held,
            };
            apply_taints(shared, &node, gate, &stamp).await;
        }
    }
}

/// Sets a stale node's reported conditions to `Unknown`; returns the node as
/// written, or `None` if nothing was (already `Unknown`, or the write failed).
async fn mark_unknown(shared: &Shared, node: &Node, stamp: &Time) -> Option<Node> {
    let conditions = health::mark_unknown(node, stamp)?;
    let name = node.name_any();
    let was_ready = condition_status(node, "Ready") == Some("True");
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "status": {"conditions": conditions},
    });
    let nodes: Api<Node> = Api::all(shared.client.clone());
    match nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(updated) => {
            tracing::info!(node = %name, "node stopped posting status; its conditions are now Unknown");
            if was_ready {
                spawn_event(
                    &shared.node_events,
                    object_reference(&updated, &()),
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
            Some(updated)
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
            tracing::debug!(node = %name, "node changed meanwhile; judging it again next pass");
            None
        }
        Err(error) => {
            tracing::warn!(node = %name, %error, "failed to mark a node Unknown");
            None
        }
    }
}

/// Every pod bound to a node, by node name.
fn index_pods(shared: &Shared) -> HashMap<String, Vec<Arc<Pod>>> {
    let mut index: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in shared.pods.state() {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            index.entry(node).or_default().push(pod);
        }
    }
    index
}

/// Sets the Ready condition of each of `pods` that is ready to `False`, as
/// Kubernetes' `MarkPodsNotReady`.
async fn mark_pods_not_ready(shared: &Shared, pods: &[Arc<Pod>], stamp: &Time) {
    for pod in pods {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if !ready || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let api: Api<Pod> =
            Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
        // Conditions merge by type: only Ready's status and transition time change.
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": stamp},
        ]}});
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(updated) => spawn_event(
                &shared.node_events,
                object_reference(&updated, &()),
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready".to_string(),
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            // The next pass finds the pod still ready and tries again.
            Err(error) => {
                tracing::warn!(pod = %pod.name_any(), %error, "failed to mark a pod not ready")
            }
        }
    }
}

/// Writes the node's taints if this controller's passes change them.
async fn apply_taints(shared: &Shared, node: &Node, gate: Gate, stamp: &Time) {
    let Some(next) = taints::reconcile(node, gate, stamp) else {
        return;
    };
    let name = node.name_any();
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": next},
    });
    let nodes: Api<Node> = Api::all(shared.client.clone());
    match nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            let keys: Vec<String> = next
                .iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect();
            tracing::info!(node = %name, taints = ?keys, "updated node taints");
        }
        // A newer version is on its way through the watch and triggers another pass.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(error) => tracing::warn!(node = %name, %error, "failed to update node taints"),
    }
}
