//! Each score plugin tips the balance between nodes, against a real API
//! server. Every scenario is built so that without the plugin under test
//! the other plugins would choose the other node (default weights:
//! TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
//! InterPodAffinity 2, NodeResourcesFit 1, BalancedAllocation 1).

mod common;

use common::{all, app, Harness};
use serde_json::json;

#[tokio::test]
async fn least_allocated_prefers_the_emptier_node() {
    let h = Harness::start().await;
    h.node("busy", "4", "32Gi", json!({})).await;
    h.node("idle", "4", "32Gi", json!({})).await;
    // LeastAllocated: busy 25, idle 71. BalancedAllocation: busy 100
    // (evenly used), idle 96 — it alone would pick the busy node.
    h.bound_pod(
        "load",
        "busy",
        json!({"cpu": "2", "memory": "16Gi"}),
        json!({}),
    )
    .await;
    h.bound_pod(
        "skew",
        "idle",
        json!({"cpu": "0", "memory": "2Gi"}),
        json!({}),
    )
    .await;
    h.pod_requesting("p", json!({"cpu": "1", "memory": "8Gi"}), json!({}))
        .await;
    assert_eq!(h.scheduled("p").await, "idle");
    h.stop();
}

#[tokio::test]
async fn balanced_allocation_prefers_the_node_left_evenly_used() {
    let h = Harness::start().await;
    h.node("even", "4", "4Gi", json!({})).await;
    h.node("lopsided", "4", "4Gi", json!({})).await;
    // LeastAllocated: even 50, lopsided 51. BalancedAllocation: even 100,
    // lopsided 76.
    h.bound_pod(
        "load-even",
        "even",
        json!({"cpu": "1", "memory": "1Gi"}),
        json!({}),
    )
    .await;
    h.bound_pod(
        "load-cpu",
        "lopsided",
        json!({"cpu": "1900m", "memory": "0"}),
        json!({}),
    )
    .await;
    h.pod_requesting("p", json!({"cpu": "1", "memory": "1Gi"}), json!({}))
        .await;
    assert_eq!(h.scheduled("p").await, "even");
    h.stop();
}

#[tokio::test]
async fn preferred_node_affinity_draws_the_pod_to_the_preferred_node() {
    let h = Harness::start().await;
    h.node(
        "zone-a",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    h.node(
        "zone-b",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "b"}}}),
    )
    .await;
    h.bound_pod(
        "load",
        "zone-b",
        json!({"cpu": "500m", "memory": "1Gi"}),
        json!({}),
    )
    .await;
    h.pod(
        "p",
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}},
        ]}}}}),
    )
    .await;
    assert_eq!(h.scheduled("p").await, "zone-b");
    h.stop();
}

#[tokio::test]
async fn preferred_pod_affinity_draws_the_pod_to_its_peer() {
    let h = Harness::start().await;
    h.node(
        "a1",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    h.node(
        "b1",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "b"}}}),
    )
    .await;
    h.bound_pod(
        "db",
        "b1",
        json!({"cpu": "500m", "memory": "1Gi"}),
        app("db"),
    )
    .await;
    h.pod(
        "p",
        json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}},
        ]}}}}),
    )
    .await;
    assert_eq!(h.scheduled("p").await, "b1");
    h.pod(
        "q",
        json!({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}},
        ]}}}}),
    )
    .await;
    assert_eq!(h.scheduled("q").await, "a1");
    h.stop();
}

#[tokio::test]
async fn prefer_no_schedule_taints_push_pods_elsewhere() {
    let h = Harness::start().await;
    h.node(
        "tainted",
        "4",
        "32Gi",
        json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}}),
    )
    .await;
    h.node("clean", "4", "32Gi", json!({})).await;
    h.bound_pod(
        "load",
        "clean",
        json!({"cpu": "500m", "memory": "1Gi"}),
        json!({}),
    )
    .await;
    h.pod("p", json!({})).await;
    assert_eq!(h.scheduled("p").await, "clean");
    // Tolerating the taint removes the penalty: the emptier node wins again.
    h.pod(
        "q",
        json!({"spec": {"tolerations": [{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
    )
    .await;
    assert_eq!(h.scheduled("q").await, "tainted");
    h.stop();
}

#[tokio::test]
async fn schedule_anyway_spread_prefers_the_emptier_zone() {
    let h = Harness::start().await;
    h.node(
        "a1",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    h.node(
        "b1",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "b"}}}),
    )
    .await;
    let zero = json!({"cpu": "0", "memory": "0"});
    h.bound_pod("web-0", "a1", zero.clone(), app("web")).await;
    h.bound_pod("web-1", "a1", zero, app("web")).await;
    h.bound_pod(
        "load",
        "b1",
        json!({"cpu": "1", "memory": "4Gi"}),
        json!({}),
    )
    .await;
    h.pod(
        "web-2",
        all([
            app("web"),
            json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
        ]),
    )
    .await;
    assert_eq!(h.scheduled("web-2").await, "b1");
    h.stop();
}
