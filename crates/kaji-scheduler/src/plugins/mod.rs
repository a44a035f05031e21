//! The in-tree plugins of kube-scheduler's default profile that decide
//! where a pod fits and how well, and [`default_profile`], which wires them
//! with Kubernetes' default score weights.
//!
//! Each plugin's rejection reasons are Kubernetes' own, word for word, so
//! that `kubectl describe pod` reads the same as on any cluster.

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::Profile;

/// Plugin names, as Kubernetes spells them.
pub mod names {
    /// [`super::node_name::NodeName`].
    pub const NODE_NAME: &str = "NodeName";
    /// [`super::node_unschedulable::NodeUnschedulable`].
    pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
    /// [`super::taint_toleration::TaintToleration`].
    pub const TAINT_TOLERATION: &str = "TaintToleration";
    /// [`super::node_affinity::NodeAffinity`].
    pub const NODE_AFFINITY: &str = "NodeAffinity";
    /// [`super::node_ports::NodePorts`].
    pub const NODE_PORTS: &str = "NodePorts";
    /// [`super::node_resources::Fit`].
    pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
    /// [`super::node_resources::BalancedAllocation`].
    pub const NODE_RESOURCES_BALANCED_ALLOCATION: &str = "NodeResourcesBalancedAllocation";
    /// [`super::pod_topology_spread::PodTopologySpread`].
    pub const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";
    /// [`super::inter_pod_affinity::InterPodAffinity`].
    pub const INTER_POD_AFFINITY: &str = "InterPodAffinity";
}

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// kube-scheduler's default profile, less what kaji has no use for yet
/// (volumes, images, dynamic resources): filters in Kubernetes' order, and
/// scores weighted as Kubernetes weighs them — TaintToleration 3,
/// NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2,
/// NodeResourcesFit 1, NodeResourcesBalancedAllocation 1.
pub fn default_profile() -> Profile {
    let node_affinity = Arc::new(node_affinity::NodeAffinity);
    let node_ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources::Fit);
    let taints = Arc::new(taint_toleration::TaintToleration);
    let spread = Arc::new(pod_topology_spread::PodTopologySpread);
    let inter_pod = Arc::new(inter_pod_affinity::InterPodAffinity);
    Profile::new(DEFAULT_SCHEDULER_NAME)
        .pre_filter(node_affinity.clone())
        .pre_filter(node_ports.clone())
        .pre_filter(spread.clone())
        .pre_filter(inter_pod.clone())
        .filter(Arc::new(node_unschedulable::NodeUnschedulable))
        .filter(Arc::new(node_name::NodeName))
        .filter(taints.clone())
        .filter(node_affinity.clone())
        .filter(node_ports)
        .filter(fit.clone())
        .filter(spread.clone())
        .filter(inter_pod.clone())
        .score(taints, 3)
        .score(node_affinity, 2)
        .score(fit, 1)
        .score(spread, 2)
        .score(inter_pod, 2)
        .score(Arc::new(node_resources::BalancedAllocation), 1)
}

/// Whether a toleration tolerates a taint, as the taint eviction controller decides it.
pub use kaji_controllers::nodelifecycle::tolerates;

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: Option<&str>, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()).filter(|o: &String| !o.is_empty()),
            value: value.map(Into::into),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_key_value_and_effect() {
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerates(
            &toleration("dedicated", "Equal", Some("gpu"), "NoSchedule"),
            &t
        ));
        assert!(tolerates(&toleration("dedicated", "", Some("gpu"), ""), &t));
        assert!(!tolerates(
            &toleration("dedicated", "Equal", Some("cpu"), "NoSchedule"),
            &t
        ));
        assert!(!tolerates(
            &toleration("dedicated", "Equal", Some("gpu"), "NoExecute"),
            &t
        ));
        assert!(tolerates(&toleration("dedicated", "Exists", None, ""), &t));
        assert!(tolerates(&toleration("", "Exists", None, ""), &t));
        assert!(!tolerates(&toleration("other", "Exists", None, ""), &t));
        assert!(!tolerates(
            &toleration("dedicated", "Bogus", Some("gpu"), ""),
            &t
        ));
    }

    #[test]
    fn the_default_profile_weighs_scores_as_kubernetes() {
        let profile = default_profile();
        assert_eq!(
            profile.score_weights(),
            [
                (names::TAINT_TOLERATION, 3),
                (names::NODE_AFFINITY, 2),
                (names::NODE_RESOURCES_FIT, 1),
                (names::POD_TOPOLOGY_SPREAD, 2),
                (names::INTER_POD_AFFINITY, 2),
                (names::NODE_RESOURCES_BALANCED_ALLOCATION, 1),
            ]
        );
    }
}
