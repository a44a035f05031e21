//! Builders for the unit tests of the plugins and the framework.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::cache::{Cache, NodeInfo};
use crate::framework::{ClusterView, CycleState, NodeScore, PreFilterPlugin, ScorePlugin, Status};
use crate::pod_info::PodInfo;

/// A node named `name` with allocatable `cpu`, 32Gi memory and 110 pods,
/// merged with `extra` (labels, spec, ...).
pub fn node(name: &str, extra: Value) -> k8s_openapi::api::core::v1::Node {
    let mut node = json!({
        "metadata": {"name": name},
        "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}},
    });
    merge(&mut node, extra);
    serde_json::from_value(node).expect("a valid node")
}

/// A pod named `name` in namespace `default`, with one container, merged
/// with `extra`.
pub fn pod(name: &str, extra: Value) -> Arc<PodInfo> {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c"}]},
    });
    merge(&mut pod, extra);
    Arc::new(PodInfo::new(
        serde_json::from_value(pod).expect("a valid pod"),
    ))
}

/// A pod with `requests` on its one container.
pub fn pod_requesting(name: &str, requests: Value) -> Arc<PodInfo> {
    pod(
        name,
        json!({"spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]}}),
    )
}

/// A node's info without pods.
pub fn node_info(name: &str, extra: Value) -> NodeInfo {
    NodeInfo::new(&node(name, extra))
}

/// A cache of `nodes`, with each `(pod, node)` bound.
pub fn cache(nodes: Vec<k8s_openapi::api::core::v1::Node>, pods: &[(Arc<PodInfo>, &str)]) -> Cache {
    let mut cache = Cache::default();
    for n in &nodes {
        cache.upsert_node(n);
    }
    for (p, n) in pods {
        cache.assume(p.clone(), n);
    }
    cache
}

/// No namespaces with labels.
pub fn no_namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::new()
}

/// Runs a pre-filter over `cache` into a fresh cycle state.
pub fn pre_filtered(
    plugin: &dyn PreFilterPlugin,
    pod: &PodInfo,
    cache: &Cache,
) -> (CycleState, Status) {
    let namespaces = no_namespaces();
    let cluster = ClusterView {
        cache,
        namespaces: &namespaces,
    };
    let mut state = CycleState::default();
    let result = plugin.pre_filter(&mut state, pod, &cluster);
    (state, result.status)
}

/// Pre-scores, scores and normalizes every node of `cache` (all feasible);
/// returns the raw and the normalized scores, in node order.
pub fn scores(plugin: &dyn ScorePlugin, pod: &PodInfo, cache: &Cache) -> (Vec<i64>, Vec<i64>) {
    let namespaces = no_namespaces();
    let cluster = ClusterView {
        cache,
        namespaces: &namespaces,
    };
    let feasible: Vec<&NodeInfo> = cache.nodes().iter().collect();
    let mut state = CycleState::default();
    assert!(plugin
        .pre_score(&mut state, pod, &feasible, &cluster)
        .is_success());
    let mut scores: Vec<NodeScore<'_>> = feasible
        .iter()
        .map(|n| NodeScore {
            name: &n.name,
            score: plugin.score(&state, pod, n).unwrap(),
        })
        .collect();
    let raw = scores.iter().map(|s| s.score).collect();
    plugin.normalize_score(&state, pod, &mut scores);
    (raw, scores.iter().map(|s| s.score).collect())
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, extra) => *base = extra,
    }
}
