//! NodeAffinity: `spec.nodeSelector` and required node affinity decide
//! which nodes a pod may run on (filter); preferred node affinity adds each
//! matching term's weight (score).
//!
//! Node selector terms are ORed, the requirements within one ANDed; a term
//! without requirements matches nothing. Operators: In, NotIn, Exists,
//! DoesNotExist, Gt and Lt (integer label values) on labels; In and NotIn on
//! the field `metadata.name`. A malformed requirement matches nothing, as in
//! Kubernetes. Terms naming nodes by `metadata.name` narrow filtering to
//! those nodes at pre-filter time.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::cache::NodeInfo;
use crate::framework::{
    default_normalize_score, ClusterView, CycleState, FilterPlugin, NodeScore, Plugin,
    PreFilterPlugin, PreFilterResult, ScorePlugin, Status,
};
use crate::pod_info::PodInfo;

use super::names;

/// Kubernetes' reason when a node does not match.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// Kubernetes' reason when required terms name disjoint sets of nodes.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

/// The NodeAffinity pre-filter, filter and scorer.
#[derive(Debug, Default)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        names::NODE_AFFINITY
    }
}

/// A pod's hard node constraints: `spec.nodeSelector` and required node
/// affinity together.
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    node_selector: BTreeMap<String, String>,
    terms: Option<Vec<NodeSelectorTerm>>,
}

impl RequiredNodeAffinity {
    /// The constraints of `pod`.
    pub fn of(pod: &PodInfo) -> RequiredNodeAffinity {
        let spec = pod.spec();
        RequiredNodeAffinity {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            terms: spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|s| s.node_selector_terms.clone()),
        }
    }

    /// Whether `node` satisfies them.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
            && self
                .terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| term_matches(t, node)))
    }
}

/// Whether one node selector term matches `node`.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| label_requirement_matches(r, node.labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| field_requirement_matches(r, &node.name))
}

fn label_requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => !values.is_empty() && value.is_some_and(|v| values.contains(v)),
        "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(v)),
        "Exists" => values.is_empty() && value.is_some(),
        "DoesNotExist" => values.is_empty() && value.is_none(),
        op @ ("Gt" | "Lt") => {
            let ([bound], Some(actual)) = (values, value) else {
                return false;
            };
            match (actual.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(actual), Ok(bound)) if op == "Gt" => actual > bound,
                (Ok(actual), Ok(bound)) => actual < bound,
                _ => false,
            }
        }
        _ => false,
    }
}

fn field_requirement_matches(r: &NodeSelectorRequirement, node_name: &str) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match (r.key.as_str(), r.operator.as_str(), values) {
        ("metadata.name", "In", [name]) => name == node_name,
        ("metadata.name", "NotIn", [name]) => name != node_name,
        _ => false,
    }
}

/// The only nodes required terms can match when every term names nodes by
/// `metadata.name In`: the union over terms of the intersection within a
/// term. `None` when some term does not restrict by name.
fn named_nodes(terms: &[NodeSelectorTerm]) -> Option<BTreeSet<String>> {
    let mut union = BTreeSet::new();
    for term in terms {
        let mut within: Option<BTreeSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let names: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                within = Some(match within {
                    None => names,
                    Some(w) => w.intersection(&names).cloned().collect(),
                });
            }
        }
        union.extend(within?);
    }
    Some(union)
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &ClusterView<'_>,
    ) -> PreFilterResult {
        let required = RequiredNodeAffinity::of(pod);
        if required.terms.is_none() && pod.spec().node_selector.is_none() {
            return Status::skip().into();
        }
        let named = required.terms.as_deref().and_then(named_nodes);
        state.write(names::NODE_AFFINITY, required);
        match named {
            Some(n) if n.is_empty() => Status::unresolvable(ERR_REASON_CONFLICT).into(),
            node_names => PreFilterResult {
                status: Status::success(),
                node_names,
            },
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let matches = match state.read::<RequiredNodeAffinity>(names::NODE_AFFINITY) {
            Some(required) => required.matches(node),
            None => RequiredNodeAffinity::of(pod).matches(node),
        };
        if matches {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[&NodeInfo],
        _: &ClusterView<'_>,
    ) -> Status {
        let has_preferred = preferred_terms(pod).is_some_and(|t| !t.is_empty());
        if has_preferred {
            Status::success()
        } else {
            Status::skip()
        }
    }

    /// The sum of the weights of the preferred terms `node` matches.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        Ok(preferred_terms(pod)
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0 && term_matches(&t.preference, node))
            .map(|t| i64::from(t.weight))
            .sum())
    }

    fn normalize_score(&self, _: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) {
        default_normalize_score(false, scores);
    }
}

fn preferred_terms(
    pod: &PodInfo,
) -> Option<&[k8s_openapi::api::core::v1::PreferredSchedulingTerm]> {
    pod.spec()
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .preferred_during_scheduling_ignored_during_execution
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{cache, node, node_info, pod, pre_filtered};
    use serde_json::{json, Value};

    fn required(terms: Value) -> std::sync::Arc<PodInfo> {
        pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}),
        )
    }

    fn fits(p: &PodInfo, labels: Value) -> bool {
        let n = node_info("n1", json!({"metadata": {"labels": labels}}));
        let nodes = cache(vec![node("n1", json!({}))], &[]);
        let (state, status) = pre_filtered(&NodeAffinity, p, &nodes);
        if status.code() == Code::Skip {
            return true;
        }
        NodeAffinity.filter(&state, p, &n).is_success()
    }

    #[test]
    fn node_selectors_need_every_label() {
        let p = pod(
            "p",
            json!({"spec": {"nodeSelector": {"disk": "ssd", "zone": "a"}}}),
        );
        assert!(fits(&p, json!({"disk": "ssd", "zone": "a", "x": "y"})));
        assert!(!fits(&p, json!({"disk": "ssd"})));
        let status = NodeAffinity.filter(&CycleState::default(), &p, &node_info("n", json!({})));
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(status.message(), ERR_REASON_POD);
    }

    #[test]
    fn every_operator_matches_as_in_kubernetes() {
        let expr = |op: &str, values: Value| {
            required(
                json!([{"matchExpressions": [{"key": "k", "operator": op, "values": values}]}]),
            )
        };
        assert!(fits(&expr("In", json!(["a", "b"])), json!({"k": "b"})));
        assert!(!fits(&expr("In", json!(["a"])), json!({})));
        assert!(fits(&expr("NotIn", json!(["a"])), json!({})));
        assert!(!fits(&expr("NotIn", json!(["a"])), json!({"k": "a"})));
        assert!(fits(&expr("Exists", json!(null)), json!({"k": ""})));
        assert!(!fits(&expr("Exists", json!(null)), json!({})));
        assert!(fits(&expr("DoesNotExist", json!(null)), json!({})));
        assert!(fits(&expr("Gt", json!(["5"])), json!({"k": "6"})));
        assert!(!fits(&expr("Gt", json!(["5"])), json!({"k": "5"})));
        assert!(fits(&expr("Lt", json!(["5"])), json!({"k": "-1"})));
        assert!(!fits(&expr("Lt", json!(["5"])), json!({"k": "x"})));
        assert!(
            !fits(&expr("In", json!([])), json!({"k": "a"})),
            "In without values is malformed"
        );
    }

    #[test]
    fn terms_are_ored_and_an_empty_term_matches_nothing() {
        let p = required(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        ]));
        assert!(fits(&p, json!({"zone": "b"})));
        assert!(!fits(&p, json!({"zone": "c"})));
        assert!(!fits(&required(json!([{}])), json!({"zone": "c"})));
    }

    #[test]
    fn match_fields_on_the_node_name_narrow_filtering_to_the_named_nodes() {
        let p = required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
        ]));
        assert!(fits(&p, json!({})));
        let n2 = node_info("n2", json!({}));
        assert!(!NodeAffinity
            .filter(&CycleState::default(), &p, &n2)
            .is_success());
        let nodes = cache(vec![node("n1", json!({}))], &[]);
        let namespaces = crate::testing::no_namespaces();
        let cluster = ClusterView {
            cache: &nodes,
            namespaces: &namespaces,
        };
        let result = NodeAffinity.pre_filter(&mut CycleState::default(), &p, &cluster);
        assert_eq!(result.node_names, Some(BTreeSet::from(["n1".to_string()])));
    }

    #[test]
    fn terms_naming_disjoint_nodes_conflict() {
        let p = required(json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]},
            {"key": "metadata.name", "operator": "In", "values": ["n2"]},
        ]}]));
        let nodes = cache(vec![node("n1", json!({}))], &[]);
        let (_, status) = pre_filtered(&NodeAffinity, &p, &nodes);
        assert_eq!(status.message(), ERR_REASON_CONFLICT);
    }

    #[test]
    fn preferred_terms_add_their_weights() {
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
            ]}}}}),
        );
        let score = |labels: Value| {
            NodeAffinity
                .score(
                    &CycleState::default(),
                    &p,
                    &node_info("n", json!({"metadata": {"labels": labels}})),
                )
                .unwrap()
        };
        assert_eq!(score(json!({"zone": "a", "disk": "ssd"})), 15);
        assert_eq!(score(json!({"zone": "b", "disk": "ssd"})), 5);
        assert_eq!(score(json!({})), 0);
    }
}
