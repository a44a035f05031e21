//! InterPodAffinity: where a pod may go relative to pods already placed,
//! by topology domain (the nodes sharing a value of the term's
//! `topologyKey`).
//!
//! Filter, from counts precomputed once per pod:
//! - required affinity: each term must find a matching pod in the node's
//!   domain — except for the first pod of a group that matches its own
//!   terms while nothing else does anywhere;
//! - required anti-affinity: no term may find a matching pod in the
//!   node's domain;
//! - existing pods' required anti-affinity: no pod already placed may have
//!   a term matching this pod in the node's domain (symmetry).
//!
//! Score: per domain, the weights of the pod's preferred terms matched by
//! pods there (anti-affinity subtracts), plus existing pods' preferred
//! terms matching this pod and their required affinity terms (weight 1,
//! `hardPodAffinityWeight`); normalized to 0..=100 between the lowest and
//! highest node.

use std::collections::{BTreeMap, HashMap};

use crate::cache::NodeInfo;
use crate::framework::{
    ClusterView, CycleState, FilterPlugin, NodeScore, Plugin, PreFilterPlugin, PreFilterResult,
    ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::pod_info::{AffinityTerm, PodInfo, WeightedAffinityTerm};

use super::names;

/// Kubernetes' reason when required affinity finds no matching pod.
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Kubernetes' reason when required anti-affinity finds a matching pod.
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Kubernetes' reason when an existing pod's anti-affinity matches the pod.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The `hardPodAffinityWeight` default: how much an existing pod's
/// required affinity to this pod counts when scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

/// The InterPodAffinity pre-filter, filter and scorer.
#[derive(Debug, Default)]
pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        names::INTER_POD_AFFINITY
    }
}

/// Counts per topology domain: topology key → label value → count.
#[derive(Debug, Default)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Adds `delta` to the domain of `node` for `key`, if the node has that label.
    fn add(&mut self, node: &NodeInfo, key: &str, delta: i64) {
        if let Some(value) = node.labels.get(key) {
            *self
                .0
                .entry(key.to_string())
                .or_default()
                .entry(value.clone())
                .or_default() += delta;
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0
            .values()
            .all(|values| values.values().all(|&c| c == 0))
    }

    /// Whether any domain `node` belongs to has a positive count.
    fn any_positive_on(&self, node: &NodeInfo) -> bool {
        self.0.iter().any(|(key, values)| {
            node.labels
                .get(key)
                .is_some_and(|v| values.get(v).is_some_and(|&c| c > 0))
        })
    }

    /// The sum over keys of the count of `node`'s domain.
    fn sum_on(&self, node: &NodeInfo) -> i64 {
        self.0
            .iter()
            .filter_map(|(key, values)| node.labels.get(key).and_then(|v| values.get(v)))
            .sum()
    }
}

/// What Filter needs, computed once per pod.
#[derive(Debug)]
struct PreFilterState {
    affinity_terms: Vec<AffinityTerm>,
    anti_affinity_terms: Vec<AffinityTerm>,
    /// Pods matching all affinity terms, per domain.
    affinity_counts: TopologyCounts,
    /// Pods matching some anti-affinity term, per domain.
    anti_affinity_counts: TopologyCounts,
    /// Existing pods whose anti-affinity matches this pod, per domain.
    existing_anti_affinity_counts: TopologyCounts,
    /// Whether the pod matches all of its own affinity terms.
    matches_own_affinity: bool,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

fn resolve(terms: &[AffinityTerm], cluster: &ClusterView<'_>) -> Vec<AffinityTerm> {
    terms
        .iter()
        .map(|t| t.with_namespaces_resolved(cluster.namespaces))
        .collect()
}

fn resolve_weighted(
    terms: &[WeightedAffinityTerm],
    cluster: &ClusterView<'_>,
) -> Vec<WeightedAffinityTerm> {
    terms
        .iter()
        .map(|w| WeightedAffinityTerm {
            term: w.term.with_namespaces_resolved(cluster.namespaces),
            weight: w.weight,
        })
        .collect()
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, &NO_LABELS))
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &ClusterView<'_>,
    ) -> PreFilterResult {
        if let Some(error) = &pod.parse_error {
            return Status::error(format!("parsing pod: {error}")).into();
        }
        let namespace_labels = cluster.namespaces.labels(&pod.namespace);
        let mut existing_anti_affinity_counts = TopologyCounts::default();
        for node in cluster
            .nodes()
            .iter()
            .filter(|n| n.pods_with_required_anti_affinity > 0)
        {
            for existing in &node.pods {
                for term in &existing.required_anti_affinity {
                    if term.matches(pod, &namespace_labels) {
                        existing_anti_affinity_counts.add(node, &term.topology_key, 1);
                    }
                }
            }
        }
        let affinity_terms = resolve(&pod.required_affinity, cluster);
        let anti_affinity_terms = resolve(&pod.required_anti_affinity, cluster);
        if affinity_terms.is_empty()
            && anti_affinity_terms.is_empty()
            && existing_anti_affinity_counts.is_empty()
        {
            return Status::skip().into();
        }
        let mut affinity_counts = TopologyCounts::default();
        let mut anti_affinity_counts = TopologyCounts::default();
        if !(affinity_terms.is_empty() && anti_affinity_terms.is_empty()) {
            for node in cluster.nodes() {
                for existing in &node.pods {
                    if matches_all(&affinity_terms, existing) {
                        for term in &affinity_terms {
                            affinity_counts.add(node, &term.topology_key, 1);
                        }
                    }
                    for term in &anti_affinity_terms {
                        if term.matches(existing, &NO_LABELS) {
                            anti_affinity_counts.add(node, &term.topology_key, 1);
                        }
                    }
                }
            }
        }
        let matches_own_affinity = matches_all(&affinity_terms, pod);
        state.write(
            names::INTER_POD_AFFINITY,
            PreFilterState {
                affinity_terms,
                anti_affinity_terms,
                affinity_counts,
                anti_affinity_counts,
                existing_anti_affinity_counts,
                matches_own_affinity,
            },
        );
        Status::success().into()
    }
}

impl PreFilterState {
    fn satisfies_affinity(&self, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for term in &self.affinity_terms {
            match node.labels.get(&term.topology_key) {
                // All topology labels must exist on the node.
                None => return false,
                Some(value) => {
                    if self.affinity_counts.get(&term.topology_key, value) <= 0 {
                        pods_exist = false;
                    }
                }
            }
        }
        // The first pod of a group with affinity to itself may go anywhere,
        // provided nothing else matches the terms anywhere yet.
        pods_exist || (self.affinity_counts.is_empty() && self.matches_own_affinity)
    }

    fn satisfies_anti_affinity(&self, node: &NodeInfo) -> bool {
        self.anti_affinity_terms.iter().all(|term| {
            node.labels
                .get(&term.topology_key)
                .is_none_or(|value| self.anti_affinity_counts.get(&term.topology_key, value) <= 0)
        })
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(names::INTER_POD_AFFINITY) else {
            return Status::error("InterPodAffinity pre-filter state missing");
        };
        if !s.satisfies_affinity(node) {
            return Status::unresolvable(ERR_REASON_AFFINITY);
        }
        if !s.satisfies_anti_affinity(node) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY);
        }
        if s.existing_anti_affinity_counts.any_positive_on(node) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[&NodeInfo],
        cluster: &ClusterView<'_>,
    ) -> Status {
        let has_preferences =
            !(pod.preferred_affinity.is_empty() && pod.preferred_anti_affinity.is_empty());
        let preferred_affinity = resolve_weighted(&pod.preferred_affinity, cluster);
        let preferred_anti_affinity = resolve_weighted(&pod.preferred_anti_affinity, cluster);
        let namespace_labels = cluster.namespaces.labels(&pod.namespace);
        let mut scores = TopologyCounts::default();
        for node in cluster.nodes() {
            // Without preferences of its own, only pods with affinity matter.
            if (!has_preferences && node.pods_with_affinity == 0) || node.labels.is_empty() {
                continue;
            }
            for existing in &node.pods {
                if !has_preferences && !existing.has_affinity() {
                    continue;
                }
                for w in &preferred_affinity {
                    if w.term.matches(existing, &NO_LABELS) {
                        scores.add(node, &w.term.topology_key, w.weight);
                    }
                }
                for w in &preferred_anti_affinity {
                    if w.term.matches(existing, &NO_LABELS) {
                        scores.add(node, &w.term.topology_key, -w.weight);
                    }
                }
                for term in &existing.required_affinity {
                    if term.matches(pod, &namespace_labels) {
                        scores.add(node, &term.topology_key, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for w in &existing.preferred_affinity {
                    if w.term.matches(pod, &namespace_labels) {
                        scores.add(node, &w.term.topology_key, w.weight);
                    }
                }
                for w in &existing.preferred_anti_affinity {
                    if w.term.matches(pod, &namespace_labels) {
                        scores.add(node, &w.term.topology_key, -w.weight);
                    }
                }
            }
        }
        if scores.0.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, scores);
        Status::success()
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let scores = state
            .read::<TopologyCounts>(PRE_SCORE_KEY)
            .ok_or_else(|| Status::error("InterPodAffinity pre-score state missing"))?;
        Ok(scores.sum_on(node))
    }

    /// Scales linearly so the lowest node gets 0 and the highest 100 (all
    /// 0 when they are equal).
    fn normalize_score(&self, _: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) {
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let spread = max - min;
        for s in scores.iter_mut() {
            s.score = if spread > 0 {
                (MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / spread as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{cache, no_namespaces, node, pod, pre_filtered};
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn zoned(name: &str, zone: &str) -> k8s_openapi::api::core::v1::Node {
        node(
            name,
            json!({"metadata": {"labels": {"zone": zone, "kubernetes.io/hostname": name}}}),
        )
    }

    fn labelled(name: &str, app: &str, spec: Value) -> Arc<PodInfo> {
        pod(
            name,
            json!({"metadata": {"labels": {"app": app}}, "spec": spec}),
        )
    }

    fn term(app: &str, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn required(kind: &str, terms: Value) -> Value {
        json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}}})
    }

    /// The status of filtering `p` on each node of `nodes`, by node name.
    fn filter_all(p: &PodInfo, nodes: &crate::cache::Cache) -> Vec<(String, Status)> {
        let (state, pre) = pre_filtered(&InterPodAffinity, p, nodes);
        nodes
            .nodes()
            .iter()
            .map(|n| {
                let status = if pre.code() == Code::Skip {
                    Status::success()
                } else {
                    InterPodAffinity.filter(&state, p, n)
                };
                (n.name.clone(), status)
            })
            .collect()
    }

    fn fitting(p: &PodInfo, nodes: &crate::cache::Cache) -> Vec<String> {
        let mut names: Vec<String> = filter_all(p, nodes)
            .into_iter()
            .filter(|(_, s)| s.is_success())
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn required_affinity_follows_matching_pods_within_the_topology() {
        let nodes = cache(
            vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
            &[(labelled("db", "db", json!({"containers": []})), "a1")],
        );
        let p = labelled(
            "web",
            "web",
            required("podAffinity", json!([term("db", "zone")])),
        );
        assert_eq!(fitting(&p, &nodes), ["a1", "a2"]);
        let statuses = filter_all(&p, &nodes);
        let b1 = &statuses.iter().find(|(n, _)| n == "b1").unwrap().1;
        assert_eq!(b1.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(b1.message(), ERR_REASON_AFFINITY);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let nodes = cache(vec![zoned("a1", "a"), zoned("b1", "b")], &[]);
        let p = labelled(
            "web",
            "web",
            required("podAffinity", json!([term("web", "zone")])),
        );
        assert_eq!(fitting(&p, &nodes), ["a1", "b1"]);
        let other = labelled(
            "x",
            "x",
            required("podAffinity", json!([term("web", "zone")])),
        );
        assert!(fitting(&other, &nodes).is_empty());
    }

    #[test]
    fn required_anti_affinity_avoids_domains_with_matching_pods() {
        let nodes = cache(
            vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
            &[(labelled("web-1", "web", json!({"containers": []})), "a1")],
        );
        let p = labelled(
            "web-2",
            "web",
            required(
                "podAntiAffinity",
                json!([term("web", "kubernetes.io/hostname")]),
            ),
        );
        assert_eq!(fitting(&p, &nodes), ["a2", "b1"]);
        let zone = labelled(
            "web-3",
            "web",
            required("podAntiAffinity", json!([term("web", "zone")])),
        );
        assert_eq!(fitting(&zone, &nodes), ["b1"]);
        let statuses = filter_all(&zone, &nodes);
        assert_eq!(statuses[0].1.code(), Code::Unschedulable);
        assert_eq!(statuses[0].1.message(), ERR_REASON_ANTI_AFFINITY);
    }

    #[test]
    fn an_existing_pods_anti_affinity_keeps_matching_pods_out_of_its_domain() {
        let loner = labelled(
            "loner",
            "loner",
            required("podAntiAffinity", json!([term("web", "zone")])),
        );
        let nodes = cache(
            vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
            &[(loner, "a1")],
        );
        let p = labelled("web", "web", json!({"containers": []}));
        assert_eq!(fitting(&p, &nodes), ["b1"]);
        let statuses = filter_all(&p, &nodes);
        assert_eq!(statuses[1].1.message(), ERR_REASON_EXISTING_ANTI_AFFINITY);
        let unrelated = labelled("db", "db", json!({"containers": []}));
        assert_eq!(fitting(&unrelated, &nodes), ["a1", "a2", "b1"]);
    }

    #[test]
    fn pods_without_any_affinity_skip_the_filter() {
        let nodes = cache(vec![zoned("a1", "a")], &[]);
        let (_, status) = pre_filtered(&InterPodAffinity, &pod("p", json!({})), &nodes);
        assert_eq!(status.code(), Code::Skip);
    }

    fn normalized(p: &PodInfo, nodes: &crate::cache::Cache) -> Vec<(String, i64)> {
        let namespaces = no_namespaces();
        let cluster = ClusterView {
            cache: nodes,
            namespaces: &namespaces,
        };
        let feasible: Vec<&NodeInfo> = nodes.nodes().iter().collect();
        let mut state = CycleState::default();
        let status = InterPodAffinity.pre_score(&mut state, p, &feasible, &cluster);
        if status.code() == Code::Skip {
            return Vec::new();
        }
        let mut scores: Vec<NodeScore<'_>> = feasible
            .iter()
            .map(|n| NodeScore {
                name: &n.name,
                score: InterPodAffinity.score(&state, p, n).unwrap(),
            })
            .collect();
        InterPodAffinity.normalize_score(&state, p, &mut scores);
        scores
            .iter()
            .map(|s| (s.name.to_string(), s.score))
            .collect()
    }

    #[test]
    fn preferred_affinity_and_anti_affinity_score_by_domain() {
        let nodes = cache(
            vec![zoned("a1", "a"), zoned("b1", "b"), zoned("c1", "c")],
            &[
                (labelled("db", "db", json!({"containers": []})), "a1"),
                (labelled("cache", "cache", json!({"containers": []})), "c1"),
            ],
        );
        let p = labelled(
            "web",
            "web",
            json!({"affinity": {
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": term("db", "zone")}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm": term("cache", "zone")}]},
            }}),
        );
        // Raw: a1 10, b1 0, c1 -5.
        assert_eq!(
            normalized(&p, &nodes),
            [("a1".into(), 100), ("b1".into(), 33), ("c1".into(), 0)]
        );
    }

    #[test]
    fn existing_pods_required_affinity_draws_matching_pods() {
        let follower = labelled(
            "follower",
            "f",
            required("podAffinity", json!([term("leader", "zone")])),
        );
        let nodes = cache(
            vec![zoned("a1", "a"), zoned("b1", "b")],
            &[(follower, "b1")],
        );
        let leader = labelled("leader", "leader", json!({"containers": []}));
        assert_eq!(
            normalized(&leader, &nodes),
            [("a1".into(), 0), ("b1".into(), 100)]
        );
        let stranger = labelled("s", "s", json!({"containers": []}));
        assert!(
            normalized(&stranger, &nodes).is_empty(),
            "nothing to score: skipped"
        );
    }
}
