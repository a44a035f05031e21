//! PodTopologySpread: `spec.topologySpreadConstraints` keep matching pods
//! evenly spread over topology domains.
//!
//! - `whenUnsatisfiable: DoNotSchedule` (filter): placing the pod in a
//!   node's domain must keep `matching pods there + 1 - fewest in any
//!   domain` within `maxSkew`; with fewer eligible domains than
//!   `minDomains`, the fewest counts as 0. A node without the topology
//!   label is rejected for good.
//! - `whenUnsatisfiable: ScheduleAnyway` (score): fewer matching pods in a
//!   node's domain is better, each constraint weighted by the log of its
//!   number of domains; normalized so the emptiest domain scores 100.
//!
//! Only nodes that satisfy the pod's node affinity and node selector count
//! as domains (`nodeAffinityPolicy: Honor`), taints are ignored unless
//! `nodeTaintsPolicy: Honor`, and `matchLabelKeys` narrow the selector to
//! the pod's own values. Terminating pods and pods in other namespaces are
//! not counted.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use kube::core::{Expression, Selector, SelectorExt};

use crate::cache::NodeInfo;
use crate::framework::{
    ClusterView, CycleState, FilterPlugin, NodeScore, Plugin, PreFilterPlugin, PreFilterResult,
    ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::pod_info::PodInfo;

use super::node_affinity::RequiredNodeAffinity;
use super::{names, tolerated};

/// Kubernetes' reason when placing the pod would exceed `maxSkew`.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// Kubernetes' reason when a node lacks a constraint's topology label.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The well-known hostname label: every node is its own domain.
const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

/// The PodTopologySpread pre-filter, filter and scorer.
#[derive(Debug, Default)]
pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        names::POD_TOPOLOGY_SPREAD
    }
}

/// One parsed constraint.
#[derive(Debug)]
struct Constraint {
    max_skew: i64,
    min_domains: usize,
    topology_key: String,
    /// `None` (no label selector) selects nothing.
    selector: Option<Selector>,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    /// Whether `node` counts as part of a domain for `pod`.
    fn includes(&self, pod: &PodInfo, node: &NodeInfo, required: &RequiredNodeAffinity) -> bool {
        if self.honor_node_affinity && !required.matches(node) {
            return false;
        }
        if self.honor_node_taints {
            let untolerated = node.taints.iter().any(|t| {
                matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                    && !tolerated(pod.tolerations(), t)
            });
            if untolerated {
                return false;
            }
        }
        true
    }

    /// How many pods on `node` count against this constraint.
    fn count_on(&self, node: &NodeInfo, namespace: &str) -> i64 {
        let Some(selector) = self.selector.as_ref().filter(|s| !s.selects_all()) else {
            return 0;
        };
        let count = node
            .pods
            .iter()
            .filter(|p| !p.is_terminating() && p.namespace == namespace)
            .filter(|p| selector.matches(&p.labels))
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }
}

/// The pod's constraints with `whenUnsatisfiable` equal to `action`.
fn constraints(pod: &PodInfo, action: &str) -> Result<Vec<Constraint>, String> {
    let all: &[TopologySpreadConstraint] = pod
        .spec()
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default();
    all.iter()
        .filter(|c| c.when_unsatisfiable == action)
        .map(|c| {
            let mut selector = c
                .label_selector
                .clone()
                .map(Selector::try_from)
                .transpose()
                .map_err(|e| e.to_string())?;
            if let Some(selector) = selector.as_mut() {
                let own: Vec<Expression> = c
                    .match_label_keys
                    .iter()
                    .flatten()
                    .filter_map(|key| {
                        let value = pod.labels.get(key)?;
                        Some(Expression::In(key.clone(), [value.clone()].into()))
                    })
                    .collect();
                selector.extend(own);
            }
            Ok(Constraint {
                max_skew: i64::from(c.max_skew),
                min_domains: c
                    .min_domains
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(1),
                topology_key: c.topology_key.clone(),
                selector,
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            })
        })
        .collect()
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.labels.contains_key(&c.topology_key))
}

/// What Filter needs, computed once per pod.
#[derive(Debug)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain (label value).
    counts: Vec<HashMap<String, i64>>,
}

impl PreFilterState {
    /// The fewest matching pods in any domain of constraint `i`, 0 when
    /// there are fewer domains than `minDomains`.
    fn min_count(&self, i: usize) -> i64 {
        let counts = &self.counts[i];
        if counts.len() < self.constraints[i].min_domains {
            return 0;
        }
        counts.values().copied().min().unwrap_or(0)
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &ClusterView<'_>,
    ) -> PreFilterResult {
        let constraints = match constraints(pod, "DoNotSchedule") {
            Ok(c) if c.is_empty() => return Status::skip().into(),
            Ok(c) => c,
            Err(e) => {
                return Status::error(format!(
                    "obtaining pod's hard topology spread constraints: {e}"
                ))
                .into()
            }
        };
        let required = RequiredNodeAffinity::of(pod);
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in cluster.nodes() {
            if !has_all_keys(node, &constraints) {
                continue;
            }
            for (c, counts) in constraints.iter().zip(counts.iter_mut()) {
                if !c.includes(pod, node, &required) {
                    continue;
                }
                let value = &node.labels[&c.topology_key];
                let n = c.count_on(node, &pod.namespace);
                match counts.get_mut(value) {
                    Some(count) => *count += n,
                    None => {
                        counts.insert(value.clone(), n);
                    }
                }
            }
        }
        state.write(
            names::POD_TOPOLOGY_SPREAD,
            PreFilterState {
                constraints,
                counts,
            },
        );
        Status::success().into()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(names::POD_TOPOLOGY_SPREAD) else {
            return Status::error("PodTopologySpread pre-filter state missing");
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(
                c.selector
                    .as_ref()
                    .is_some_and(|sel| sel.matches(&pod.labels)),
            );
            let count = s.counts[i].get(value).copied().unwrap_or(0);
            let skew = count + self_match - s.min_count(i);
            if skew > c.max_skew {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

/// What Score needs, computed once per pod.
#[derive(Debug)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain of the feasible nodes
    /// (empty for the hostname key, counted per node when scoring).
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: `ln(number of domains + 2)`.
    weights: Vec<f64>,
    /// Feasible nodes lacking a topology label: they score 0.
    ignored: HashSet<String>,
}

impl ScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        cluster: &ClusterView<'_>,
    ) -> Status {
        let constraints = match constraints(pod, "ScheduleAnyway") {
            Ok(c) if c.is_empty() => return Status::skip(),
            Ok(c) => c,
            Err(e) => {
                return Status::error(format!(
                    "obtaining pod's soft topology spread constraints: {e}"
                ))
            }
        };
        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in feasible {
            if !has_all_keys(node, &constraints) {
                ignored.insert(node.name.clone());
                continue;
            }
            for (c, counts) in constraints.iter().zip(counts.iter_mut()) {
                if c.topology_key != LABEL_HOSTNAME {
                    counts
                        .entry(node.labels[&c.topology_key].clone())
                        .or_insert(0);
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, counts)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    feasible.len() - ignored.len()
                } else {
                    counts.len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let required = RequiredNodeAffinity::of(pod);
        for node in cluster.nodes() {
            if !has_all_keys(node, &constraints) {
                continue;
            }
            for (c, counts) in constraints.iter().zip(counts.iter_mut()) {
                if !c.includes(pod, node, &required) {
                    continue;
                }
                // Only domains of feasible nodes matter.
                if let Some(count) = counts.get_mut(&node.labels[&c.topology_key]) {
                    *count += c.count_on(node, &pod.namespace);
                }
            }
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints,
                counts,
                weights,
                ignored,
            },
        );
        Status::success()
    }

    /// The matching pods in the node's domains, weighted, plus `maxSkew - 1`
    /// per constraint.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let s = state
            .read::<PreScoreState>(PRE_SCORE_KEY)
            .ok_or_else(|| Status::error("PodTopologySpread pre-score state missing"))?;
        if s.ignored.contains(&node.name) {
            return Ok(0);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                c.count_on(node, &pod.namespace)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    /// Fewer is better: `100 * (max + min - score) / max`; ignored nodes 0.
    fn normalize_score(&self, state: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return;
        };
        let counted = || scores.iter().filter(|n| !s.ignored.contains(n.name));
        let min = counted().map(|n| n.score).min().unwrap_or(i64::MAX);
        let max = counted().map(|n| n.score).max().unwrap_or(0);
        for n in scores.iter_mut() {
            n.score = if s.ignored.contains(n.name) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - n.score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{cache, node, pod, pre_filtered, scores};
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn zoned(name: &str, zone: Option<&str>) -> k8s_openapi::api::core::v1::Node {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(zone) = zone {
            labels["zone"] = json!(zone);
        }
        node(name, json!({"metadata": {"labels": labels}}))
    }

    fn web(name: &str) -> Arc<PodInfo> {
        pod(name, json!({"metadata": {"labels": {"app": "web"}}}))
    }

    fn spread(name: &str, when: &str, extra: Value) -> Arc<PodInfo> {
        let mut constraint = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}});
        if let (Some(c), Value::Object(extra)) = (constraint.as_object_mut(), extra) {
            c.extend(extra);
        }
        pod(
            name,
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [constraint]}}),
        )
    }

    fn fitting(p: &PodInfo, nodes: &crate::cache::Cache) -> Vec<(String, Status)> {
        let (state, pre) = pre_filtered(&PodTopologySpread, p, nodes);
        assert!(pre.is_success(), "{pre:?}");
        nodes
            .nodes()
            .iter()
            .map(|n| (n.name.clone(), PodTopologySpread.filter(&state, p, n)))
            .collect()
    }

    fn passing(p: &PodInfo, nodes: &crate::cache::Cache) -> Vec<String> {
        let mut names: Vec<String> = fitting(p, nodes)
            .into_iter()
            .filter(|(_, s)| s.is_success())
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_within_max_skew() {
        let nodes = cache(
            vec![
                zoned("a1", Some("a")),
                zoned("a2", Some("a")),
                zoned("b1", Some("b")),
            ],
            &[(web("w1"), "a1")],
        );
        let p = spread("p", "DoNotSchedule", json!({}));
        // Zone a has 1, zone b 0: another pod in a would make the skew 2.
        assert_eq!(passing(&p, &nodes), ["b1"]);
        let statuses = fitting(&p, &nodes);
        assert_eq!(statuses[0].1.code(), Code::Unschedulable);
        assert_eq!(statuses[0].1.message(), ERR_REASON_CONSTRAINTS_NOT_MATCH);
    }

    #[test]
    fn nodes_without_the_topology_label_are_rejected_for_good() {
        let nodes = cache(vec![zoned("a1", Some("a")), zoned("x", None)], &[]);
        let statuses = fitting(&spread("p", "DoNotSchedule", json!({})), &nodes);
        assert!(statuses[0].1.is_success());
        assert_eq!(statuses[1].1.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(statuses[1].1.message(), ERR_REASON_NODE_LABEL_NOT_MATCH);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let nodes = cache(
            vec![zoned("a1", Some("a")), zoned("b1", Some("b"))],
            &[(web("w1"), "a1"), (web("w2"), "b1")],
        );
        // Two domains with one pod each: both fit with maxSkew 1 ...
        assert_eq!(
            passing(&spread("p", "DoNotSchedule", json!({})), &nodes),
            ["a1", "b1"]
        );
        // ... but with minDomains 3 the global minimum is 0.
        assert!(passing(
            &spread("q", "DoNotSchedule", json!({"minDomains": 3})),
            &nodes
        )
        .is_empty());
    }

    #[test]
    fn domains_outside_the_pods_node_affinity_do_not_count() {
        let nodes = cache(
            vec![zoned("a1", Some("a")), zoned("b1", Some("b"))],
            &[(web("w1"), "a1")],
        );
        let mut p = (*spread("p", "DoNotSchedule", json!({})).pod).clone();
        p.spec.as_mut().unwrap().node_selector =
            Some([("zone".to_string(), "a".to_string())].into());
        let p = PodInfo::new(p);
        // Only zone a counts, so its single pod is also the minimum.
        assert_eq!(passing(&p, &nodes), ["a1", "b1"]);
    }

    #[test]
    fn match_label_keys_only_count_pods_of_the_same_revision() {
        let old = pod(
            "old",
            json!({"metadata": {"labels": {"app": "web", "rev": "1"}}}),
        );
        let nodes = cache(
            vec![zoned("a1", Some("a")), zoned("b1", Some("b"))],
            &[(old, "a1")],
        );
        let mut p = (*spread("p", "DoNotSchedule", json!({"matchLabelKeys": ["rev"]})).pod).clone();
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("rev".into(), "2".into());
        assert_eq!(passing(&PodInfo::new(p), &nodes), ["a1", "b1"]);
    }

    #[test]
    fn pods_without_hard_constraints_skip_the_filter() {
        let nodes = cache(vec![zoned("a1", Some("a"))], &[]);
        let (_, status) = pre_filtered(
            &PodTopologySpread,
            &spread("p", "ScheduleAnyway", json!({})),
            &nodes,
        );
        assert_eq!(status.code(), Code::Skip);
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains_and_ignores_unlabelled_nodes() {
        let nodes = cache(
            vec![
                zoned("a1", Some("a")),
                zoned("b1", Some("b")),
                zoned("c1", Some("c")),
                zoned("x", None),
            ],
            &[(web("w1"), "a1"), (web("w2"), "a1"), (web("w3"), "b1")],
        );
        let p = spread("p", "ScheduleAnyway", json!({}));
        let (raw, normalized) = scores(&PodTopologySpread, &p, &nodes);
        // Three domains: weight ln(5) ≈ 1.609; raw a 3, b 2, c 0.
        assert_eq!(raw, [3, 2, 0, 0]);
        assert_eq!(normalized, [0, 33, 100, 0]);
    }
}
