//! Disruption per zone: whether evictions go on when many nodes fail at once
//! (pure logic, no IO).
//!
//! As in Kubernetes, nodes are grouped by zone (their region and zone
//! labels). A zone where no node is ready is fully disrupted; one where at
//! least [`Zones::unhealthy_threshold`] of the nodes (and more than two) are
//! unready is partially disrupted. When *every* zone is fully disrupted, the
//! likelier culprit is the control plane's own connectivity, so evictions
//! stop everywhere and the `NoExecute` taints are taken off ("master
//! disruption mode"); when some node comes back, every node gets a fresh grace
//! period. A partially disrupted small zone (at most
//! [`Zones::large_cluster_threshold`] nodes) pauses its evictions.
//!
//! Kubernetes also paces evictions with a token bucket per zone
//! (`--node-eviction-rate`); kaji taints at once where Kubernetes would
//! taint at its normal or reduced rate.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Node;

use super::taints::Gate;

/// Nodes with this label are left out of the disruption counts.
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";

/// A zone's health, as Kubernetes' `ZoneState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    /// Few enough nodes are unready.
    Normal,
    /// Many nodes are unready.
    PartialDisruption,
    /// No node is ready.
    FullDisruption,
}

/// What changed in the cluster-wide mode with one [`Zones::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing cluster-wide.
    None,
    /// Every zone just became fully disrupted: clear the `NoExecute` taints.
    EnteredMasterDisruption,
    /// Some node is ready again: start every node's grace period afresh.
    ExitedMasterDisruption,
}

/// The zone key of a node: its region and zone labels, as Kubernetes'
/// `GetZoneKey` (the deprecated beta labels count when the GA ones are absent).
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let label = |ga: &str, beta: &str| {
        labels
            .and_then(|l| l.get(ga).or_else(|| l.get(beta)))
            .cloned()
            .unwrap_or_default()
    };
    let region = label(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = label(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    // The separator cannot occur in a label value.
    format!("{region}:\u{0}:{zone}")
}

/// Whether a node counts in the disruption checks.
pub fn counts_for_disruption(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_none_or(|l| !l.contains_key(EXCLUDE_DISRUPTION_LABEL))
}

/// The state of a zone whose nodes are ready (`true`) or not.
fn zone_state(ready: &[bool], unhealthy_threshold: f64) -> ZoneState {
    let ready_count = ready.iter().filter(|r| **r).count();
    let unready = ready.len() - ready_count;
    #[allow(clippy::cast_precision_loss)] // Node counts are far below 2^52.
    let unready_share = unready as f64 / ready.len().max(1) as f64;
    if ready_count == 0 && unready > 0 {
        ZoneState::FullDisruption
    } else if unready > 2 && unready_share >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Every zone's last state, and the thresholds that judge them.
#[derive(Debug)]
pub struct Zones {
    /// The share of unready nodes at which a zone is partially disrupted.
    pub unhealthy_threshold: f64,
    /// Zones with more nodes than this keep evicting while partially disrupted.
    pub large_cluster_threshold: usize,
    /// State and node count per zone key, as of the last update.
    states: HashMap<String, (ZoneState, usize)>,
    /// Whether evictions are stopped everywhere.
    master_disruption: bool,
}

impl Zones {
    /// No zones seen yet.
    pub fn new(unhealthy_threshold: f64, large_cluster_threshold: usize) -> Self {
        Zones {
            unhealthy_threshold,
            large_cluster_threshold,
            states: HashMap::new(),
            master_disruption: false,
        }
    }

    /// Takes in every counted node's readiness, grouped by zone key, and
    /// reports whether the cluster entered or left master disruption mode.
    pub fn update(&mut self, readiness: &HashMap<String, Vec<bool>>) -> Transition {
        self.states = readiness
            .iter()
            .map(|(zone, ready)| {
                let state = zone_state(ready, self.unhealthy_threshold);
                (zone.clone(), (state, ready.len()))
            })
            .collect();
        let all_fully_disrupted = !self.states.is_empty()
            && self
                .states
                .values()
                .all(|(s, _)| *s == ZoneState::FullDisruption);
        match (self.master_disruption, all_fully_disrupted) {
            (false, true) => {
                self.master_disruption = true;
                Transition::EnteredMasterDisruption
            }
            (true, false) => {
                self.master_disruption = false;
                Transition::ExitedMasterDisruption
            }
            _ => Transition::None,
        }
    }

    /// Whether evictions are stopped everywhere.
    #[cfg(test)]
    pub fn in_master_disruption(&self) -> bool {
        self.master_disruption
    }

    /// The state of a zone as of the last update, if it had counted nodes.
    pub fn state(&self, zone: &str) -> Option<ZoneState> {
        self.states.get(zone).map(|(s, _)| *s)
    }

    /// Whether unready nodes in `zone` may get a `NoExecute` taint now.
    pub fn gate(&self, zone: &str) -> Gate {
        if self.master_disruption {
            return Gate::Held;
        }
        match self.states.get(zone) {
            // A fully disrupted zone while others are fine evicts normally.
            Some((ZoneState::Normal | ZoneState::FullDisruption, _)) => Gate::Allowed,
            Some((ZoneState::PartialDisruption, size)) if *size > self.large_cluster_threshold => {
                Gate::Allowed
            }
            Some((ZoneState::PartialDisruption, _)) => Gate::Held,
            // Only nodes left out of the counts live here: nothing to judge by.
            None => Gate::Allowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zones(pairs: &[(&str, &[bool])]) -> HashMap<String, Vec<bool>> {
        pairs
            .iter()
            .map(|(z, r)| ((*z).to_string(), r.to_vec()))
            .collect()
    }

    #[test]
    fn zone_states_follow_kubernetes_thresholds() {
        assert_eq!(zone_state(&[true, false], 0.55), ZoneState::Normal);
        assert_eq!(zone_state(&[false, false], 0.55), ZoneState::FullDisruption);
        // Two unready of three is not enough: more than two must be.
        assert_eq!(zone_state(&[true, false, false], 0.55), ZoneState::Normal);
        assert_eq!(
            zone_state(&[true, true, false, false, false], 0.55),
            ZoneState::PartialDisruption
        );
        assert_eq!(
            zone_state(&[true, true, true, false, false, false], 0.55),
            ZoneState::Normal
        );
    }

    #[test]
    fn every_zone_down_enters_and_a_ready_node_exits_master_disruption() {
        let mut z = Zones::new(0.55, 50);
        assert_eq!(
            z.update(&zones(&[("a", &[true]), ("b", &[false])])),
            Transition::None
        );
        assert_eq!(z.gate("b"), Gate::Allowed);
        assert_eq!(
            z.update(&zones(&[("a", &[false]), ("b", &[false])])),
            Transition::EnteredMasterDisruption
        );
        assert!(z.in_master_disruption());
        assert_eq!(z.gate("a"), Gate::Held);
        assert_eq!(
            z.update(&zones(&[("a", &[false]), ("b", &[false])])),
            Transition::None
        );
        assert_eq!(
            z.update(&zones(&[("a", &[true]), ("b", &[false])])),
            Transition::ExitedMasterDisruption
        );
        assert_eq!(z.gate("b"), Gate::Allowed);
    }

    #[test]
    fn partially_disrupted_small_zones_hold_evictions_and_large_ones_do_not() {
        let mut z = Zones::new(0.55, 4);
        let small: &[bool] = &[true, false, false, false];
        let large: &[bool] = &[true, true, false, false, false];
        z.update(&zones(&[("small", small), ("large", large)]));
        assert_eq!(z.state("small"), Some(ZoneState::PartialDisruption));
        assert_eq!(z.gate("small"), Gate::Held);
        assert_eq!(z.state("large"), Some(ZoneState::PartialDisruption));
        assert_eq!(z.gate("large"), Gate::Allowed);
    }

    #[test]
    fn zone_keys_come_from_region_and_zone_labels() {
        let node = |labels: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n", "labels": labels}})).unwrap()
        };
        assert_eq!(zone_key(&node(json!({}))), "");
        assert_eq!(
            zone_key(&node(json!({"topology.kubernetes.io/region": "r",
                                  "topology.kubernetes.io/zone": "z"}))),
            "r:\u{0}:z"
        );
        assert_eq!(
            zone_key(&node(
                json!({"failure-domain.beta.kubernetes.io/zone": "z"})
            )),
            ":\u{0}:z"
        );
        assert!(!counts_for_disruption(&node(
            json!({EXCLUDE_DISRUPTION_LABEL: ""})
        )));
        assert!(counts_for_disruption(&node(json!({}))));
    }
}
