//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.
//!
//! The scheduler only takes pods without a node, so in a scheduling cycle
//! this filter always passes; it matters where filters are rerun for pods
//! that already name one (preemption dry runs).

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::pod_info::PodInfo;

use super::names;

/// Kubernetes' reason when the node is not the one the pod names.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// The NodeName filter.
#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        names::NODE_NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name() {
            Some(name) if name != node.name => Status::unresolvable(ERR_REASON),
            _ => Status::success(),
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
    fn a_pod_naming_a_node_fits_only_that_node() {
        let p = pod("p", json!({"spec": {"nodeName": "a"}}));
        let state = CycleState::default();
        assert!(NodeName
            .filter(&state, &p, &node_info("a", json!({})))
            .is_success());
        let other = NodeName.filter(&state, &p, &node_info("b", json!({})));
        assert_eq!(other.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(other.message(), ERR_REASON);
    }

    #[test]
    fn a_pod_without_a_node_fits_any() {
        let p = pod("p", json!({}));
        assert!(NodeName
            .filter(&CycleState::default(), &p, &node_info("b", json!({})))
            .is_success());
    }
}
