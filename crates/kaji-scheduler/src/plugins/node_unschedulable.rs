//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only
//! pods that tolerate the `node.kubernetes.io/unschedulable:NoSchedule`
//! taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::pod_info::PodInfo;

use super::{names, tolerated};

/// Kubernetes' reason for a cordoned node.
pub const ERR_REASON: &str = "node(s) were unschedulable";

/// The taint a cordon stands for.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The NodeUnschedulable filter.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        names::NODE_UNSCHEDULABLE
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let cordon = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if tolerated(pod.tolerations(), &cordon) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node_info, pod};
    use serde_json::json;

    #[test]
    fn a_cordoned_node_rejects_pods_that_do_not_tolerate_it() {
        let cordoned = node_info("a", json!({"spec": {"unschedulable": true}}));
        let status =
            NodeUnschedulable.filter(&CycleState::default(), &pod("p", json!({})), &cordoned);
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(status.message(), ERR_REASON);
    }

    #[test]
    fn tolerating_the_unschedulable_taint_passes_a_cordon() {
        let cordoned = node_info("a", json!({"spec": {"unschedulable": true}}));
        let p = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(NodeUnschedulable
            .filter(&CycleState::default(), &p, &cordoned)
            .is_success());
        let uncordoned = node_info("b", json!({}));
        assert!(NodeUnschedulable
            .filter(&CycleState::default(), &pod("q", json!({})), &uncordoned)
            .is_success());
    }
}
