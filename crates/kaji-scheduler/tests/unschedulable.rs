//! Pods that fit nowhere: the PodScheduled condition and FailedScheduling
//! event in Kubernetes' words, and re-queueing when the cluster changes.

mod common;

use common::{scheduled_condition, Harness};
use serde_json::json;

#[tokio::test]
async fn an_unschedulable_pod_is_told_why_and_lands_on_a_node_added_later() {
    let h = Harness::start().await;
    h.node(
        "not-ready",
        "4",
        "32Gi",
        json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}),
    )
    .await;
    h.node("small-1", "1", "32Gi", json!({})).await;
    h.node("small-2", "1", "32Gi", json!({})).await;
    h.pod_requesting("big", json!({"cpu": "2"}), json!({}))
        .await;

    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
                    2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let condition = h.unschedulable("big").await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(expected));
    let event = h.event("big", "FailedScheduling").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.message.as_deref(), Some(expected));
    assert_eq!(
        event.source.and_then(|s| s.component).as_deref(),
        Some("default-scheduler")
    );

    h.node("large", "4", "32Gi", json!({})).await;
    assert_eq!(h.scheduled("big").await, "large");
    let pod = h.pods().get("big").await.unwrap();
    assert_eq!(scheduled_condition(&pod).unwrap().status, "True");
    h.stop();
}

#[tokio::test]
async fn a_pod_waiting_for_room_is_scheduled_when_a_pod_leaves() {
    let h = Harness::start().await;
    h.node("only", "2", "8Gi", json!({})).await;
    h.bound_pod("hog", "only", json!({"cpu": "1500m"}), json!({}))
        .await;
    h.pod_requesting("waiting", json!({"cpu": "1"}), json!({}))
        .await;
    let condition = h.unschedulable("waiting").await;
    assert_eq!(
        condition.message.as_deref(),
        Some(
            "0/1 nodes are available: 1 Insufficient cpu. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        )
    );
    h.delete_pod("hog").await;
    assert_eq!(h.scheduled("waiting").await, "only");
    h.stop();
}

#[tokio::test]
async fn a_cluster_without_nodes_says_so_and_schedules_once_a_node_registers() {
    let h = Harness::start().await;
    h.pod("early", json!({})).await;
    let condition = h.unschedulable("early").await;
    assert_eq!(
        condition.message.as_deref(),
        Some("no nodes available to schedule pods")
    );
    h.node("first", "4", "32Gi", json!({})).await;
    assert_eq!(h.scheduled("early").await, "first");
    h.stop();
}

#[tokio::test]
async fn relabelling_a_node_lets_a_waiting_pod_in() {
    let h = Harness::start().await;
    h.node("n1", "4", "32Gi", json!({})).await;
    h.pod("picky", json!({"spec": {"nodeSelector": {"disk": "ssd"}}}))
        .await;
    let condition = h.unschedulable("picky").await;
    assert_eq!(
        condition.message.as_deref(),
        Some(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        )
    );
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(h.client());
    nodes
        .patch(
            "n1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await
        .unwrap();
    assert_eq!(h.scheduled("picky").await, "n1");
    h.stop();
}

#[tokio::test]
async fn preemption_policy_never_is_reported() {
    let h = Harness::start().await;
    h.node("n1", "1", "8Gi", json!({})).await;
    h.pod_requesting(
        "modest",
        json!({"cpu": "2"}),
        json!({"spec": {"preemptionPolicy": "Never"}}),
    )
    .await;
    let condition = h.unschedulable("modest").await;
    assert_eq!(
        condition.message.as_deref(),
        Some("0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.")
    );
    h.stop();
}
