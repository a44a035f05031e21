//! Which taints a node should carry for its conditions, as Kubernetes' node
//! lifecycle controller decides them (pure logic, no IO).
//!
//! Two families of taints are owned here, and only those are ever added or
//! removed; every other taint on the node is kept as it is:
//!
//! - `NoSchedule` taints mirroring conditions and `spec.unschedulable`
//!   (Kubernetes' "NoSchedule tainting pass"), which keep new pods off a
//!   node with a problem;
//! - the `NoExecute` taints `not-ready` and `unreachable`, which evict running
//!   pods (see [`super::eviction`]). Whether a missing one may be added is
//!   decided per zone ([`Gate`]), so that a control plane cut off from every
//!   node does not evict everything.
//!
//! Added taints carry `timeAdded`, as `SwapNodeControllerTaint` sets it;
//! taints already present keep theirs.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The node is not ready (its Ready condition is `False`).
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The node stopped reporting (its Ready condition is `Unknown`).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The node reports `MemoryPressure`.
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// The node reports `DiskPressure`.
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// The node reports `PIDPressure`.
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
/// The node reports `NetworkUnavailable`.
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// The node is cordoned (`spec.unschedulable`).
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The `NoSchedule` effect.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// The `NoExecute` effect.
pub const NO_EXECUTE: &str = "NoExecute";

/// `(condition type, status, taint key)`: a condition in that status puts
/// that `NoSchedule` taint on the node (Kubernetes'
/// `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", MEMORY_PRESSURE),
    ("DiskPressure", "True", DISK_PRESSURE),
    ("NetworkUnavailable", "True", NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", PID_PRESSURE),
];

/// Whether the `NoExecute` pass may taint a node that is not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Add the taint the Ready condition calls for.
    Allowed,
    /// Add none, keep (or swap) those present: evictions are paused in the
    /// node's zone.
    Held,
    /// Remove both `NoExecute` taints: the controller just found every node
    /// unready and assumes its own connectivity is at fault.
    Cleared,
}

/// The status of the node's condition `kind`, if it has one.
pub fn condition_status<'a>(node: &'a Node, kind: &str) -> Option<&'a str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.as_str())
}

/// Whether `taint` is one of the `NoSchedule` taints this controller owns.
fn owned_no_schedule(taint: &Taint) -> bool {
    taint.effect == NO_SCHEDULE
        && (taint.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == taint.key))
}

/// Whether `taint` is one of the `NoExecute` taints this controller owns.
fn owned_no_execute(taint: &Taint) -> bool {
    taint.effect == NO_EXECUTE && (taint.key == NOT_READY || taint.key == UNREACHABLE)
}

/// The `NoSchedule` keys the node's conditions and spec call for.
fn wanted_no_schedule(node: &Node) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = CONDITION_TAINTS
        .iter()
        .filter(|(kind, status, _)| condition_status(node, kind) == Some(*status))
        .map(|(_, _, key)| *key)
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// The `NoExecute` key the node should carry, given the taints it has: `None`
/// for none.
fn wanted_no_execute(node: &Node, current: &[Taint], gate: Gate) -> Option<&'static str> {
    if gate == Gate::Cleared {
        return None;
    }
    let has = |key: &str| {
        current
            .iter()
            .any(|t| t.key == key && t.effect == NO_EXECUTE)
    };
    let (key, other) = match condition_status(node, "Ready") {
        Some("True") => return None,
        Some("False") => (NOT_READY, UNREACHABLE),
        Some(_) => (UNREACHABLE, NOT_READY),
        // Never reported: leave whatever is there until the node is found stale.
        None => return [NOT_READY, UNREACHABLE].into_iter().find(|k| has(k)),
    };
    // Swapping one for the other happens at once even while evictions are
    // paused, as Kubernetes does: the node was already being evicted.
    (gate == Gate::Allowed || has(key) || has(other)).then_some(key)
}

/// The node's taints after this controller's passes, or `None` when they are
/// already right. Taints it does not own are kept in place; added taints get
/// `timeAdded: now`.
pub fn reconcile(node: &Node, gate: Gate, now: &Time) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut wanted: Vec<(&str, &str)> = wanted_no_schedule(node)
        .into_iter()
        .map(|k| (k, NO_SCHEDULE))
        .collect();
    if let Some(key) = wanted_no_execute(node, &current, gate) {
        wanted.push((key, NO_EXECUTE));
    }
    let is_wanted = |t: &Taint| wanted.iter().any(|(k, e)| t.key == *k && t.effect == *e);

    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !(owned_no_schedule(t) || owned_no_execute(t)) || is_wanted(t))
        .cloned()
        .collect();
    for (key, effect) in &wanted {
        if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
            next.push(Taint {
                key: (*key).to_string(),
                effect: (*effect).to_string(),
                time_added: Some(now.clone()),
                value: None,
            });
        }
    }
    (next != current).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(conditions: &[(&str, &str)], taints: serde_json::Value) -> Node {
        let conditions: Vec<_> = conditions
            .iter()
            .map(|(t, s)| json!({"type": t, "status": s}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn keys(taints: &[Taint]) -> Vec<(String, String)> {
        taints
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::now())
    }

    #[test]
    fn an_unknown_node_gets_unreachable_taints_with_time_added() {
        let n = node(&[("Ready", "Unknown")], json!([]));
        let at = now();
        let taints = reconcile(&n, Gate::Allowed, &at).unwrap();
        assert_eq!(
            keys(&taints),
            [
                (UNREACHABLE.into(), NO_SCHEDULE.into()),
                (UNREACHABLE.into(), NO_EXECUTE.into())
            ]
        );
        assert!(taints.iter().all(|t| t.time_added == Some(at.clone())));
    }

    #[test]
    fn a_not_ready_node_gets_not_ready_taints_and_pressure_gets_no_schedule() {
        let n = node(
            &[
                ("Ready", "False"),
                ("MemoryPressure", "True"),
                ("DiskPressure", "True"),
                ("PIDPressure", "True"),
                ("NetworkUnavailable", "False"),
            ],
            json!([]),
        );
        let taints = reconcile(&n, Gate::Allowed, &now()).unwrap();
        assert_eq!(
            keys(&taints),
            [
                (NOT_READY.into(), NO_SCHEDULE.into()),
                (MEMORY_PRESSURE.into(), NO_SCHEDULE.into()),
                (DISK_PRESSURE.into(), NO_SCHEDULE.into()),
                (PID_PRESSURE.into(), NO_SCHEDULE.into()),
                (NOT_READY.into(), NO_EXECUTE.into()),
            ]
        );
    }

    #[test]
    fn a_cordoned_node_gets_the_unschedulable_taint() {
        let mut n = node(&[("Ready", "True")], json!([]));
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        let taints = reconcile(&n, Gate::Allowed, &now()).unwrap();
        assert_eq!(keys(&taints), [(UNSCHEDULABLE.into(), NO_SCHEDULE.into())]);
    }

    #[test]
    fn a_ready_node_loses_owned_taints_and_keeps_foreign_ones() {
        let n = node(
            &[("Ready", "True"), ("MemoryPressure", "False")],
            json!([
                {"key": "example.com/gpu", "effect": "NoSchedule"},
                {"key": UNREACHABLE, "effect": "NoSchedule"},
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"},
                {"key": MEMORY_PRESSURE, "effect": "NoSchedule"},
                {"key": NOT_READY, "effect": "PreferNoSchedule"},
            ]),
        );
        let taints = reconcile(&n, Gate::Allowed, &now()).unwrap();
        assert_eq!(
            keys(&taints),
            [
                ("example.com/gpu".into(), NO_SCHEDULE.into()),
                (NOT_READY.into(), "PreferNoSchedule".into()),
            ]
        );
    }

    #[test]
    fn taints_already_right_are_left_alone_and_keep_their_time() {
        let n = node(
            &[("Ready", "Unknown")],
            json!([
                {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"},
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"},
            ]),
        );
        assert_eq!(reconcile(&n, Gate::Allowed, &now()), None);
        assert_eq!(reconcile(&n, Gate::Held, &now()), None);
    }

    #[test]
    fn a_held_zone_adds_no_no_execute_taint_but_swaps_an_existing_one() {
        let fresh = node(&[("Ready", "Unknown")], json!([]));
        let taints = reconcile(&fresh, Gate::Held, &now()).unwrap();
        assert_eq!(keys(&taints), [(UNREACHABLE.into(), NO_SCHEDULE.into())]);

        let swapped = node(
            &[("Ready", "False")],
            json!([{"key": UNREACHABLE, "effect": "NoExecute"}]),
        );
        let taints = reconcile(&swapped, Gate::Held, &now()).unwrap();
        assert_eq!(
            keys(&taints),
            [
                (NOT_READY.into(), NO_SCHEDULE.into()),
                (NOT_READY.into(), NO_EXECUTE.into())
            ]
        );
    }

    #[test]
    fn a_cleared_gate_removes_no_execute_taints_only() {
        let n = node(
            &[("Ready", "Unknown")],
            json!([
                {"key": UNREACHABLE, "effect": "NoSchedule"},
                {"key": UNREACHABLE, "effect": "NoExecute"},
            ]),
        );
        let taints = reconcile(&n, Gate::Cleared, &now()).unwrap();
        assert_eq!(keys(&taints), [(UNREACHABLE.into(), NO_SCHEDULE.into())]);
    }

    #[test]
    fn a_node_that_never_reported_keeps_what_it_has() {
        let n = node(&[], json!([{"key": NOT_READY, "effect": "NoExecute"}]));
        assert_eq!(reconcile(&n, Gate::Allowed, &now()), None);
        let bare = node(&[], json!([]));
        assert_eq!(reconcile(&bare, Gate::Allowed, &now()), None);
    }
}
