//! Each filter plugin decides where pods may go, against a real API server.
//! Where scoring alone would pick another node, the test arranges for it
//! to prefer a node the filter must rule out.

mod common;

use common::{all, app, Harness};
use serde_json::json;

#[tokio::test]
async fn a_pod_lands_on_the_only_node_with_enough_cpu() {
    let h = Harness::start().await;
    h.node("small-1", "1", "32Gi", json!({})).await;
    h.node("small-2", "1", "32Gi", json!({})).await;
    // Scoring alone would avoid the big node for its taint.
    h.node(
        "big",
        "4",
        "32Gi",
        json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}}),
    )
    .await;
    for i in 0..3 {
        let name = format!("heavy-{i}");
        h.pod_requesting(&name, json!({"cpu": "1100m"}), json!({}))
            .await;
        assert_eq!(h.scheduled(&name).await, "big");
    }
    h.stop();
}

#[tokio::test]
async fn a_node_selector_picks_the_labelled_node() {
    let h = Harness::start().await;
    h.node(
        "hdd-1",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"disk": "hdd"}}}),
    )
    .await;
    h.node(
        "hdd-2",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"disk": "hdd"}}}),
    )
    .await;
    h.node(
        "ssd",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"disk": "ssd"}}}),
    )
    .await;
    // The ssd node is the busiest: scoring alone would avoid it.
    h.bound_pod("load", "ssd", json!({"cpu": "3"}), json!({}))
        .await;
    for i in 0..3 {
        let name = format!("db-{i}");
        h.pod(&name, json!({"spec": {"nodeSelector": {"disk": "ssd"}}}))
            .await;
        assert_eq!(h.scheduled(&name).await, "ssd");
    }
    h.stop();
}

#[tokio::test]
async fn required_node_affinity_operators_pick_the_matching_node() {
    let h = Harness::start().await;
    h.node(
        "gen3",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"gen": "3", "zone": "a"}}}),
    )
    .await;
    h.node(
        "gen5",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"gen": "5", "zone": "a"}}}),
    )
    .await;
    h.node(
        "gen7",
        "4",
        "32Gi",
        json!({"metadata": {"labels": {"gen": "7", "zone": "b"}}}),
    )
    .await;
    h.node("plain", "4", "32Gi", json!({})).await;
    let required = |terms: serde_json::Value| {
        json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})
    };
    h.pod(
        "newer-not-b",
        required(json!([{"matchExpressions": [
            {"key": "gen", "operator": "Gt", "values": ["4"]},
            {"key": "zone", "operator": "NotIn", "values": ["b"]},
        ]}])),
    )
    .await;
    h.pod(
        "by-name",
        required(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gen7"]}]}])),
    )
    .await;
    h.pod(
        "older-or-unlabelled",
        required(json!([
            {"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]},
            {"matchExpressions": [{"key": "gen", "operator": "DoesNotExist"}, {"key": "zone", "operator": "DoesNotExist"}]},
        ])),
    )
    .await;
    assert_eq!(h.scheduled("newer-not-b").await, "gen5");
    assert_eq!(h.scheduled("by-name").await, "gen7");
    let older = h.scheduled("older-or-unlabelled").await;
    assert!(older == "gen3" || older == "plain", "{older}");
    h.stop();
}

#[tokio::test]
async fn untolerated_taints_repel_pods_and_tolerations_let_them_in() {
    let h = Harness::start().await;
    h.node(
        "gpu",
        "4",
        "32Gi",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    h.node(
        "evicting",
        "4",
        "32Gi",
        json!({"spec": {"taints": [{"key": "broken", "effect": "NoExecute"}]}}),
    )
    .await;
    h.node("plain", "4", "32Gi", json!({})).await;
    h.bound_pod("load", "plain", json!({"cpu": "2"}), json!({}))
        .await;
    for i in 0..2 {
        let name = format!("intolerant-{i}");
        h.pod_requesting(&name, json!({"cpu": "500m"}), json!({}))
            .await;
        assert_eq!(h.scheduled(&name).await, "plain");
    }
    // The plain node is full now for a 2-cpu pod; only the toleration helps.
    h.pod_requesting(
        "tolerant",
        json!({"cpu": "2"}),
        json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    assert_eq!(h.scheduled("tolerant").await, "gpu");
    h.stop();
}

#[tokio::test]
async fn a_cordoned_node_only_takes_pods_tolerating_the_cordon() {
    let h = Harness::start().await;
    h.node(
        "cordoned",
        "4",
        "32Gi",
        json!({"spec": {"unschedulable": true}}),
    )
    .await;
    h.node("open", "4", "32Gi", json!({})).await;
    h.bound_pod("load", "open", json!({"cpu": "2"}), json!({}))
        .await;
    for i in 0..2 {
        let name = format!("regular-{i}");
        h.pod_requesting(&name, json!({"cpu": "500m"}), json!({}))
            .await;
        assert_eq!(h.scheduled(&name).await, "open");
    }
    h.pod_requesting(
        "daemon",
        json!({"cpu": "2"}),
        json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
    )
    .await;
    assert_eq!(h.scheduled("daemon").await, "cordoned");
    h.stop();
}

#[tokio::test]
async fn pods_wanting_the_same_host_port_go_to_different_nodes() {
    let h = Harness::start().await;
    h.node("n1", "4", "32Gi", json!({})).await;
    h.node("n2", "4", "32Gi", json!({})).await;
    let host_port = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27",
        "ports": [{"containerPort": 80, "hostPort": 8080}]}]}});
    h.pod("web-1", host_port.clone()).await;
    let first = h.scheduled("web-1").await;
    h.pod("web-2", host_port.clone()).await;
    let second = h.scheduled("web-2").await;
    assert_ne!(first, second);
    h.pod("web-3", host_port).await;
    let condition = h.unschedulable("web-3").await;
    assert_eq!(
        condition.message.as_deref(),
        Some(
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports. \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        )
    );
    h.stop();
}

#[tokio::test]
async fn required_anti_affinity_spreads_three_pods_over_three_nodes() {
    let h = Harness::start().await;
    // Scoring alone would stack every pod on the huge node.
    h.node("huge", "64", "256Gi", json!({})).await;
    h.node("small-1", "2", "8Gi", json!({})).await;
    h.node("small-2", "2", "8Gi", json!({})).await;
    let anti = all([
        app("web"),
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"},
        ]}}}}),
    ]);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        h.pod_requesting(&name, json!({"cpu": "500m", "memory": "1Gi"}), anti.clone())
            .await;
        nodes.push(h.scheduled(&name).await);
    }
    nodes.sort();
    assert_eq!(nodes, ["huge", "small-1", "small-2"]);
    h.pod("web-3", anti).await;
    let condition = h.unschedulable("web-3").await;
    assert_eq!(
        condition.message.as_deref(),
        Some(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        )
    );
    h.stop();
}

#[tokio::test]
async fn required_pod_affinity_follows_its_peer_into_its_zone() {
    let h = Harness::start().await;
    h.node(
        "a1",
        "8",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    h.node(
        "b1",
        "8",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "b"}}}),
    )
    .await;
    h.node(
        "c1",
        "8",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "c"}}}),
    )
    .await;
    h.node(
        "c2",
        "8",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "c"}}}),
    )
    .await;
    h.bound_pod("db", "c1", json!({"cpu": "6"}), app("db"))
        .await;
    h.bound_pod("load", "c2", json!({"cpu": "6"}), json!({}))
        .await;
    let follower = json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"},
    ]}}}});
    for i in 0..3 {
        let name = format!("api-{i}");
        h.pod(&name, follower.clone()).await;
        let node = h.scheduled(&name).await;
        assert!(node == "c1" || node == "c2", "{name} went to {node}");
    }
    h.stop();
}

#[tokio::test]
async fn an_existing_pods_anti_affinity_keeps_matching_pods_away() {
    let h = Harness::start().await;
    h.node("roomy", "16", "64Gi", json!({})).await;
    h.node("tight", "2", "8Gi", json!({})).await;
    let loner = all([
        app("loner"),
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"},
        ]}}}}),
    ]);
    h.bound_pod("loner", "roomy", json!({"cpu": "100m"}), loner)
        .await;
    for i in 0..2 {
        let name = format!("web-{i}");
        h.pod(&name, app("web")).await;
        assert_eq!(h.scheduled(&name).await, "tight");
    }
    // Pods the loner does not mind still prefer the roomy node.
    h.pod("db", app("db")).await;
    assert_eq!(h.scheduled("db").await, "roomy");
    h.stop();
}

#[tokio::test]
async fn topology_spread_do_not_schedule_balances_pods_over_zones() {
    let h = Harness::start().await;
    h.node(
        "a1",
        "8",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    h.node(
        "a2",
        "8",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    h.node(
        "b1",
        "8",
        "32Gi",
        json!({"metadata": {"labels": {"zone": "b"}}}),
    )
    .await;
    // Zone b is busy, so scoring alone would keep choosing zone a.
    h.bound_pod("load", "b1", json!({"cpu": "6"}), json!({}))
        .await;
    let spread = all([
        app("web"),
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
    ]);
    let mut zones = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..4 {
        let name = format!("web-{i}");
        h.pod(&name, spread.clone()).await;
        let node = h.scheduled(&name).await;
        *zones.entry(node[..1].to_string()).or_default() += 1;
    }
    assert_eq!(zones, [("a".to_string(), 2), ("b".to_string(), 2)].into());
    h.stop();
}
