//! Binding: assumed pods count at once, bound pods are announced, other
//! schedulers' pods are left alone, and only the leader schedules.

mod common;

use std::collections::BTreeMap;

use common::{scheduled_condition, Harness};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

#[tokio::test]
async fn ten_one_cpu_pods_fill_two_five_cpu_nodes_exactly() {
    let h = Harness::start().await;
    h.node("n1", "5", "32Gi", json!({})).await;
    h.node("n2", "5", "32Gi", json!({})).await;
    // Created all at once, so the scheduler places them faster than the
    // watch reports the bindings: only assumed pods keep it from
    // over-committing a node.
    let creations = (0..10).map(|i| {
        let h = &h;
        async move {
            h.pod_requesting(&format!("p{i}"), json!({"cpu": "1"}), json!({}))
                .await
        }
    });
    futures::future::join_all(creations).await;
    let mut per_node = BTreeMap::<String, usize>::new();
    for i in 0..10 {
        *per_node
            .entry(h.scheduled(&format!("p{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(
        per_node,
        [("n1".to_string(), 5), ("n2".to_string(), 5)].into()
    );
    h.pod_requesting("p10", json!({"cpu": "1"}), json!({}))
        .await;
    let condition = h.unschedulable("p10").await;
    assert_eq!(
        condition.message.as_deref(),
        Some(
            "0/2 nodes are available: 2 Insufficient cpu. \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        )
    );
    h.stop();
}

#[tokio::test]
async fn a_bound_pod_is_announced_with_a_scheduled_event_and_condition() {
    let h = Harness::start().await;
    h.node("n1", "4", "32Gi", json!({})).await;
    h.pod("p", json!({})).await;
    assert_eq!(h.scheduled("p").await, "n1");
    let event = h.event("p", "Scheduled").await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(
        event.message.as_deref(),
        Some("Successfully assigned default/p to n1")
    );
    assert_eq!(
        event.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    let pod = h.pods().get("p").await.unwrap();
    assert_eq!(scheduled_condition(&pod).unwrap().status, "True");
    h.stop();
}

#[tokio::test]
async fn pods_for_another_scheduler_are_left_alone() {
    let h = Harness::start().await;
    h.node("n1", "4", "32Gi", json!({})).await;
    h.pod(
        "theirs",
        json!({"spec": {"schedulerName": "other-scheduler"}}),
    )
    .await;
    h.pod("ours", json!({})).await;
    assert_eq!(h.scheduled("ours").await, "n1");
    h.stays_pending("theirs").await;
    let pod = h.pods().get("theirs").await.unwrap();
    assert!(scheduled_condition(&pod).is_none());
    assert!(h.events_about("theirs").await.is_empty());
    h.stop();
}

#[tokio::test]
async fn a_gated_pod_is_scheduled_only_once_its_gates_are_removed() {
    let h = Harness::start().await;
    h.node("n1", "4", "32Gi", json!({})).await;
    h.pod(
        "gated",
        json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}]}}),
    )
    .await;
    h.pod("free", json!({})).await;
    assert_eq!(h.scheduled("free").await, "n1");
    h.stays_pending("gated").await;
    assert!(h.events_about("gated").await.is_empty());
    // Removing the last gate releases the pod to the scheduler.
    h.pods()
        .patch(
            "gated",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"schedulingGates": null}})),
        )
        .await
        .expect("removing a scheduling gate is allowed");
    assert_eq!(h.scheduled("gated").await, "n1");
    // Adding one back is not.
    let err = h
        .pods()
        .patch(
            "free",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"schedulingGates": [{"name": "late"}]}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));
    h.stop();
}

#[tokio::test]
async fn only_the_holder_of_the_kube_scheduler_lease_schedules() {
    let env = kaji_testenv::TestEnv::start().await;
    let client = env.client();
    let config = kaji_controllers::leader::LeaderElectionConfig {
        identity: "scheduler-a".into(),
        ..kaji_scheduler::leader_election_config()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(kaji_scheduler::run_with_leader_election(
        client.clone(),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = kaji_testenv::eventually("the kube-scheduler lease to be held", || async {
        leases
            .get("kube-scheduler")
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty())
    })
    .await;
    assert_eq!(holder, "scheduler-a");

    let h = HarnessView(&env);
    h.node("n1").await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    kaji_testenv::eventually("the pod to be scheduled", || async {
        pods.get("p").await.ok()?.spec?.node_name
    })
    .await;

    let _ = stop.send(());
    scheduler.await.unwrap().unwrap();
    let lease = leases.get("kube-scheduler").await.unwrap();
    assert_eq!(
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default(),
        "",
        "the lease is released on shutdown"
    );
}

/// Node creation for tests that run their own scheduler.
struct HarnessView<'a>(&'a kaji_testenv::TestEnv);

impl HarnessView<'_> {
    async fn node(&self, name: &str) {
        let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
        let node = serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"capacity": resources, "allocatable": resources}}))
        .unwrap();
        Api::<k8s_openapi::api::core::v1::Node>::all(self.0.client())
            .create(&kube::api::PostParams::default(), &node)
            .await
            .unwrap();
    }
}
