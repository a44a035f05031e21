//! Node heartbeats: when each node last showed signs of life, by this
//! controller's clock, and what its conditions become once it stops (pure
//! logic, no IO).
//!
//! A node agent proves it is alive in two ways: by renewing its Lease in
//! `kube-node-lease` (cheap, every few seconds) and by posting its Ready
//! condition's `lastHeartbeatTime`. As in Kubernetes, the controller does not
//! compare those timestamps with its own clock — the node's clock may be
//! skewed — but notes, by its own monotonic clock, when it last saw either one
//! *change*. A node is stale once that is longer ago than the grace period.
//! A freshly started controller (or a new leader) therefore gives every node
//! one whole grace period before judging it.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

/// The conditions a node agent reports and the controller sets to `Unknown`
/// when it stops (NetworkUnavailable is the network plugin's, so left alone).
pub const REPORTED_CONDITIONS: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The reason of a condition the agent used to report but no longer does.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
/// The message that goes with [`REASON_UNKNOWN`].
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
/// The reason of a condition the agent never reported.
pub const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
/// The message that goes with [`REASON_NEVER_UPDATED`].
pub const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// What the controller last saw of one node's heartbeats.
#[derive(Debug)]
struct Probe {
    /// The Lease's `renewTime`.
    lease_renewed: Option<Timestamp>,
    /// The Ready condition's `lastHeartbeatTime`; the outer `None` means the
    /// node had no Ready condition.
    ready_heartbeat: Option<Option<Timestamp>>,
    /// When either of the two last changed, by our clock.
    probed: Instant,
}

/// Every node's [`Probe`], keyed by node name.
#[derive(Debug, Default)]
pub struct Heartbeats {
    probes: HashMap<String, Probe>,
}

/// The grace periods a node is judged by.
#[derive(Clone, Copy, Debug)]
pub struct Grace {
    /// For a node that has reported a Ready condition.
    pub running: Duration,
    /// For a node that never has.
    pub startup: Duration,
}

impl Heartbeats {
    /// Notes what `node` and its `lease` show at `now`; returns whether the
    /// node is stale, i.e. nothing changed for longer than its grace period.
    pub fn observe(
        &mut self,
        node: &Node,
        lease: Option<&Lease>,
        grace: Grace,
        now: Instant,
        wall_now: Timestamp,
    ) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let ready = ready_condition(node);
        let ready_heartbeat = ready.map(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
        let lease_renewed = lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        let probe = self.probes.entry(name).or_insert_with(|| Probe {
            lease_renewed,
            ready_heartbeat,
            probed: first_probe(
                node,
                ready.is_some(),
                lease_renewed.is_some(),
                now,
                wall_now,
            ),
        });
        if probe.ready_heartbeat != ready_heartbeat {
            probe.ready_heartbeat = ready_heartbeat;
            probe.probed = now;
        }
        // Only a newer renewal counts; a Lease recreated with an older time does not.
        if lease_renewed.is_some() && lease_renewed > probe.lease_renewed {
            probe.lease_renewed = lease_renewed;
            probe.probed = now;
        }
        let grace = if ready.is_some() {
            grace.running
        } else {
            grace.startup
        };
        now.saturating_duration_since(probe.probed) > grace
    }

    /// Forgets the nodes `keep` says are gone.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.probes.retain(|name, _| keep(name));
    }

    /// Treats every node as just probed: after the controller found all nodes
    /// unready it distrusts what it saw and starts each grace period afresh.
    pub fn reset_all(&mut self, now: Instant) {
        for probe in self.probes.values_mut() {
            probe.probed = now;
        }
    }
}

/// When a node seen for the first time was last probed: now, unless it never
/// reported anything, in which case its startup grace runs from its creation.
fn first_probe(
    node: &Node,
    has_ready: bool,
    has_lease: bool,
    now: Instant,
    wall_now: Timestamp,
) -> Instant {
    if has_ready || has_lease {
        return now;
    }
    let age = node
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|created| Duration::try_from(wall_now.duration_since(created.0)).ok())
        .unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

/// The node's Ready condition, if it has one.
pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The node's conditions once marked as no longer reported, as Kubernetes'
/// `tryUpdateNodeHealth` does: each of [`REPORTED_CONDITIONS`] becomes
/// `Unknown` (a missing one is added as never reported); other conditions, and
/// conditions already `Unknown`, are kept. `None` when nothing changes.
pub fn mark_unknown(node: &Node, now: &Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for kind in REPORTED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".to_string();
                c.reason = Some(REASON_UNKNOWN.to_string());
                c.message = Some(MESSAGE_UNKNOWN.to_string());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.to_string(),
                    status: "Unknown".to_string(),
                    reason: Some(REASON_NEVER_UPDATED.to_string()),
                    message: Some(MESSAGE_NEVER_UPDATED.to_string()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GRACE: Grace = Grace {
        running: Duration::from_secs(40),
        startup: Duration::from_secs(60),
    };

    fn node(ready: Option<(&str, &str)>) -> Node {
        let conditions: Vec<_> = ready
            .into_iter()
            .map(|(status, beat)| {
                json!({"type": "Ready", "status": status, "lastHeartbeatTime": beat,
                       "reason": "KubeletReady", "message": "kubelet is posting ready status"})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "n", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn lease(renewed: &str) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "n", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n", "renewTime": renewed},
        }))
        .unwrap()
    }

    fn wall() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_node_is_stale_only_after_the_grace_period_without_change() {
        let mut hb = Heartbeats::default();
        let t0 = Instant::now();
        let n = node(Some(("True", "2024-01-01T00:00:00Z")));
        let l = lease("2024-01-01T00:00:00.000000Z");
        assert!(!hb.observe(&n, Some(&l), GRACE, t0, wall()));
        assert!(!hb.observe(&n, Some(&l), GRACE, t0 + GRACE.running, wall()));
        let late = t0 + GRACE.running + Duration::from_millis(1);
        assert!(hb.observe(&n, Some(&l), GRACE, late, wall()));
    }

    #[test]
    fn a_renewed_lease_or_a_new_ready_heartbeat_keeps_a_node_fresh() {
        let mut hb = Heartbeats::default();
        let t0 = Instant::now();
        let n = node(Some(("True", "2024-01-01T00:00:00Z")));
        hb.observe(&n, Some(&lease("2024-01-01T00:00:00Z")), GRACE, t0, wall());
        let t1 = t0 + Duration::from_secs(30);
        hb.observe(&n, Some(&lease("2024-01-01T00:00:30Z")), GRACE, t1, wall());
        let t2 = t1 + Duration::from_secs(30);
        assert!(!hb.observe(&n, Some(&lease("2024-01-01T00:00:30Z")), GRACE, t2, wall()));
        // The lease stops, but the Ready heartbeat moves.
        let beat = node(Some(("True", "2024-01-01T00:01:00Z")));
        assert!(!hb.observe(
            &beat,
            Some(&lease("2024-01-01T00:00:30Z")),
            GRACE,
            t2,
            wall()
        ));
        let t3 = t2 + Duration::from_secs(41);
        assert!(hb.observe(
            &beat,
            Some(&lease("2024-01-01T00:00:30Z")),
            GRACE,
            t3,
            wall()
        ));
        // An older renew time (a recreated lease) is no sign of life.
        let t4 = t3 + Duration::from_secs(1);
        assert!(hb.observe(
            &beat,
            Some(&lease("2024-01-01T00:00:10Z")),
            GRACE,
            t4,
            wall()
        ));
    }

    #[test]
    fn a_node_that_never_reported_gets_the_startup_grace_from_its_creation() {
        let mut hb = Heartbeats::default();
        let now = Instant::now() + Duration::from_secs(3600);
        // Created an hour ago and silent since: stale at once.
        assert!(hb.observe(&node(None), None, GRACE, now, wall()));
        // Created just now: not yet.
        let mut hb = Heartbeats::default();
        let created: Timestamp = "2024-01-01T00:59:30Z".parse().unwrap();
        let mut young = node(None);
        young.metadata.creation_timestamp = Some(Time(created));
        assert!(!hb.observe(&young, None, GRACE, now, wall()));
        assert!(hb.observe(&young, None, GRACE, now + Duration::from_secs(31), wall()));
    }

    #[test]
    fn resetting_gives_every_node_a_new_grace_period() {
        let mut hb = Heartbeats::default();
        let t0 = Instant::now();
        let n = node(Some(("True", "2024-01-01T00:00:00Z")));
        hb.observe(&n, None, GRACE, t0, wall());
        let late = t0 + Duration::from_secs(60);
        hb.reset_all(late);
        assert!(!hb.observe(&n, None, GRACE, late + Duration::from_secs(1), wall()));
    }

    #[test]
    fn marking_unknown_flips_reported_conditions_and_adds_missing_ones() {
        let mut n = node(Some(("True", "2024-01-01T00:00:00Z")));
        let extra =
            serde_json::from_value(json!({"type": "NetworkUnavailable", "status": "False"}))
                .unwrap();
        n.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(extra);
        let now = Time(wall());
        let cs = mark_unknown(&n, &now).unwrap();
        let find = |t: &str| cs.iter().find(|c| c.type_ == t).unwrap();
        let ready = find("Ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
        assert_eq!(ready.message.as_deref(), Some(MESSAGE_UNKNOWN));
        assert_eq!(ready.last_transition_time, Some(now.clone()));
        assert_eq!(
            ready.last_heartbeat_time,
            Some(Time("2024-01-01T00:00:00Z".parse().unwrap()))
        );
        let memory = find("MemoryPressure");
        assert_eq!(memory.status, "Unknown");
        assert_eq!(memory.reason.as_deref(), Some(REASON_NEVER_UPDATED));
        assert_eq!(memory.message.as_deref(), Some(MESSAGE_NEVER_UPDATED));
        assert_eq!(find("NetworkUnavailable").status, "False");
        assert_eq!(cs.len(), 5);

        n.status.as_mut().unwrap().conditions = Some(cs);
        assert_eq!(
            mark_unknown(&n, &now),
            None,
            "marking twice changes nothing"
        );
    }
}
