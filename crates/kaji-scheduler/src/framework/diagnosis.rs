//! Why a pod fits nowhere, in the words kube-scheduler uses in the
//! PodScheduled condition and the FailedScheduling event:
//!
//! ```text
//! 0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: },
//! 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for
//! scheduling, 2 No preemption victims found for incoming pod.
//! ```
//!
//! The first sentence counts each filter reason over the nodes; the
//! `preemption:` sentence is what kube-scheduler's DefaultPreemption
//! reports when preemption cannot help: nodes rejected for good
//! (UnschedulableAndUnresolvable) are not helped by evicting anything, and
//! nodes without lower-priority pods have no victims.

use std::collections::HashMap;

use super::{ClusterView, Code, Status};
use crate::pod_info::PodInfo;

/// The message when the cluster has no nodes at all.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// The reason preemption reports for nodes where evicting pods cannot help.
const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// The reason preemption reports for nodes without lower-priority pods.
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The diagnosis of a pod no node fits.
#[derive(Debug)]
pub struct FitError {
    num_all_nodes: usize,
    /// A pre-filter rejection, which applies to every node.
    pre_filter: Option<Status>,
    /// Each rejected node (index into the cluster's nodes) and why.
    node_statuses: Vec<(usize, Status)>,
    /// The status of nodes without one: those a pre-filter ruled out.
    absent: Option<Status>,
    post_filter: Option<String>,
}

impl FitError {
    pub(super) fn pre_filter(num_all_nodes: usize, status: Status) -> FitError {
        FitError {
            num_all_nodes,
            pre_filter: Some(status),
            node_statuses: Vec::new(),
            absent: None,
            post_filter: None,
        }
    }

    pub(super) fn filter(
        num_all_nodes: usize,
        node_statuses: Vec<(usize, Status)>,
        absent: Option<Status>,
    ) -> FitError {
        FitError {
            num_all_nodes,
            pre_filter: None,
            node_statuses,
            absent,
            post_filter: None,
        }
    }

    /// How many nodes the cluster had.
    pub fn num_all_nodes(&self) -> usize {
        self.num_all_nodes
    }

    /// Each rejected node (by index) and its status.
    pub fn node_statuses(&self) -> &[(usize, Status)] {
        &self.node_statuses
    }

    /// The plugins that rejected the pod somewhere, each once.
    pub fn rejectors(&self) -> Vec<&'static str> {
        let mut plugins: Vec<&'static str> = self
            .pre_filter
            .iter()
            .chain(self.node_statuses.iter().map(|(_, s)| s))
            .map(Status::plugin)
            .collect();
        plugins.sort_unstable();
        plugins.dedup();
        plugins
    }

    /// Adds what preemption found, as kube-scheduler's DefaultPreemption
    /// reports it when it cannot help. kaji does not evict pods: when a
    /// node has lower-priority pods that kube-scheduler would try to
    /// preempt, nothing is added.
    pub fn diagnose_preemption(&mut self, pod: &PodInfo, cluster: &ClusterView<'_>) {
        if pod.spec().preemption_policy.as_deref() == Some("Never") {
            self.post_filter =
                Some("preemption: not eligible due to preemptionPolicy=Never.".into());
            return;
        }
        let potential: Vec<usize> = match &self.pre_filter {
            Some(s) if s.code() == Code::Unschedulable => (0..cluster.nodes().len()).collect(),
            Some(_) => Vec::new(),
            None => self
                .node_statuses
                .iter()
                .filter(|(_, s)| s.code() == Code::Unschedulable)
                .map(|(i, _)| *i)
                .collect(),
        };
        let mut no_victims = Vec::with_capacity(potential.len());
        for i in potential {
            let Some(node) = cluster.nodes().get(i) else {
                continue;
            };
            if node.pods.iter().any(|p| p.priority < pod.priority) {
                return;
            }
            no_victims.push(Status::unresolvable(NO_VICTIMS));
        }
        let reasons = histogram(
            self.num_all_nodes,
            no_victims.iter(),
            Some(PREEMPTION_NOT_HELPFUL),
        );
        self.post_filter = Some(format!(
            "preemption: 0/{} nodes are available: {}.",
            self.num_all_nodes,
            reasons.join(", ")
        ));
    }

    /// The message for the PodScheduled condition and the event.
    pub fn message(&self) -> String {
        let mut message = format!("0/{} nodes are available:", self.num_all_nodes);
        if let Some(status) = &self.pre_filter {
            message.push_str(&format!(" {}.", status.message()));
        } else {
            let absent = self.absent.as_ref().map(Status::message);
            let reasons = histogram(
                self.num_all_nodes,
                self.node_statuses.iter().map(|(_, s)| s),
                absent.as_deref(),
            );
            if !reasons.is_empty() {
                message.push_str(&format!(" {}.", reasons.join(", ")));
            }
        }
        if let Some(post) = &self.post_filter {
            message.push(' ');
            message.push_str(post);
        }
        message
    }
}

/// `"<count> <reason>"` for each reason over `statuses`, plus `absent`
/// for the nodes without a status, sorted as strings (as Kubernetes sorts
/// them, so "10 x" comes before "2 y").
fn histogram<'a>(
    num_all_nodes: usize,
    statuses: impl Iterator<Item = &'a Status>,
    absent: Option<&str>,
) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut explicit = 0;
    for status in statuses {
        explicit += 1;
        for reason in status.reasons() {
            *counts.entry(reason).or_default() += 1;
        }
    }
    if let Some(reason) = absent {
        if explicit < num_all_nodes {
            *counts.entry(reason).or_default() += num_all_nodes - explicit;
        }
    }
    let mut lines: Vec<String> = counts
        .into_iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn cache(names: &[&str]) -> Cache {
        let mut cache = Cache::default();
        for name in names {
            cache.upsert_node(
                &serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap(),
            );
        }
        cache
    }

    fn pod(priority: i32, preemption_policy: Option<&str>) -> PodInfo {
        PodInfo::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "d", "uid": format!("u{priority}")},
                "spec": {"containers": [], "priority": priority, "preemptionPolicy": preemption_policy},
            }))
            .unwrap(),
        )
    }

    fn taint_and_cpu() -> FitError {
        FitError::filter(
            3,
            vec![
                (
                    0,
                    Status::unresolvable(
                        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }",
                    )
                    .with_plugin("TaintToleration"),
                ),
                (
                    1,
                    Status::unschedulable("Insufficient cpu").with_plugin("NodeResourcesFit"),
                ),
                (
                    2,
                    Status::unschedulable("Insufficient cpu").with_plugin("NodeResourcesFit"),
                ),
            ],
            None,
        )
    }

    #[test]
    fn reasons_are_counted_and_sorted() {
        let fit = taint_and_cpu();
        assert_eq!(
            fit.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 2 Insufficient cpu."
        );
        assert_eq!(fit.rejectors(), ["NodeResourcesFit", "TaintToleration"]);
    }

    #[test]
    fn preemption_reports_no_victims_where_it_might_help_and_not_helpful_elsewhere() {
        let mut fit = taint_and_cpu();
        let nodes = cache(&["a", "b", "c"]);
        let namespaces = BTreeMap::new();
        let cluster = ClusterView {
            cache: &nodes,
            namespaces: &namespaces,
        };
        fit.diagnose_preemption(&pod(0, None), &cluster);
        assert_eq!(
            fit.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn preemption_is_not_helpful_when_every_rejection_is_unresolvable() {
        let mut fit = FitError::filter(
            1,
            vec![(
                0,
                Status::unresolvable("node(s) didn't match Pod's node affinity/selector"),
            )],
            None,
        );
        let nodes = cache(&["a"]);
        let namespaces = BTreeMap::new();
        let cluster = ClusterView {
            cache: &nodes,
            namespaces: &namespaces,
        };
        fit.diagnose_preemption(&pod(0, None), &cluster);
        assert_eq!(
            fit.message(),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn preemption_policy_never_is_reported_and_lower_priority_pods_leave_preemption_out() {
        let mut nodes = cache(&["a", "b", "c"]);
        let namespaces = BTreeMap::new();
        let cluster = ClusterView {
            cache: &nodes,
            namespaces: &namespaces,
        };
        let mut fit = taint_and_cpu();
        fit.diagnose_preemption(&pod(0, Some("Never")), &cluster);
        assert!(fit.message().ends_with(
            "2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        ));

        nodes.assume(Arc::new(pod(0, None)), "b");
        let cluster = ClusterView {
            cache: &nodes,
            namespaces: &namespaces,
        };
        let mut fit = taint_and_cpu();
        fit.diagnose_preemption(&pod(100, None), &cluster);
        assert!(fit.message().ends_with("2 Insufficient cpu."));
    }

    #[test]
    fn histograms_sort_as_strings() {
        let statuses: Vec<Status> = (0..10)
            .map(|_| Status::unschedulable("b"))
            .chain((0..2).map(|_| Status::unschedulable("a")))
            .collect();
        assert_eq!(histogram(12, statuses.iter(), None), ["10 b", "2 a"]);
    }

    #[test]
    fn a_pre_filter_rejection_speaks_for_every_node() {
        let fit = FitError::pre_filter(4, Status::unresolvable("bad selector"));
        assert_eq!(fit.message(), "0/4 nodes are available: bad selector.");
    }
}
