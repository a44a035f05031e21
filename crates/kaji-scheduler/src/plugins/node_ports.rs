//! NodePorts: a pod fits a node only if none of its host ports is bound
//! there already (same protocol and port, on the same IP or either side
//! binding `0.0.0.0`).

use crate::cache::NodeInfo;
use crate::framework::{
    ClusterView, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, Status,
};
use crate::pod_info::PodInfo;

use super::names;

/// Kubernetes' reason for a host port conflict.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The NodePorts pre-filter and filter.
#[derive(Debug, Default)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        names::NODE_PORTS
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &ClusterView<'_>,
    ) -> PreFilterResult {
        if pod.host_ports.is_empty() {
            Status::skip().into()
        } else {
            Status::success().into()
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let conflict = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts_with(want)));
        if conflict {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{cache, node, pod};
    use serde_json::json;

    fn with_port(
        name: &str,
        port: i32,
        ip: Option<&str>,
        protocol: &str,
    ) -> std::sync::Arc<PodInfo> {
        pod(
            name,
            json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": protocol}]}]}}),
        )
    }

    #[test]
    fn a_bound_host_port_rejects_another_pod_wanting_it() {
        let nodes = cache(
            vec![node("n", json!({}))],
            &[(with_port("web", 8080, None, "TCP"), "n")],
        );
        let n = nodes.node("n").unwrap();
        let state = CycleState::default();
        let status = NodePorts.filter(&state, &with_port("p", 8080, Some("10.0.0.1"), "TCP"), n);
        assert_eq!(status.code(), Code::Unschedulable);
        assert_eq!(status.message(), ERR_REASON);
        assert!(NodePorts
            .filter(&state, &with_port("q", 8080, None, "UDP"), n)
            .is_success());
        assert!(NodePorts
            .filter(&state, &with_port("r", 8081, None, "TCP"), n)
            .is_success());
    }

    #[test]
    fn pods_without_host_ports_skip_the_filter() {
        let nodes = cache(vec![node("n", json!({}))], &[]);
        let (_, status) = crate::testing::pre_filtered(&NodePorts, &pod("p", json!({})), &nodes);
        assert_eq!(status.code(), Code::Skip);
    }
}
