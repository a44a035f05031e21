//! The ReplicaSet controller against a real in-process API server.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kaji_testenv::eventually as wait_for;
use kaji_testenv::TestEnv;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const NS: &str = "default";

struct Harness {
    env: TestEnv,
    controller: tokio::task::JoinHandle<Result<(), kaji_controllers::Error>>,
}

impl Harness {
    async fn start() -> Harness {
        let env = TestEnv::start().await;
        let controller = tokio::spawn(kaji_controllers::replicaset::run(env.client()));
        Harness { env, controller }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.env.client(), NS)
    }

    fn replicasets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.env.client(), NS)
    }

    async fn create_rs(&self, name: &str, replicas: i32) -> ReplicaSet {
        self.replicasets()
            .create(&PostParams::default(), &replica_set(name, replicas))
            .await
            .unwrap()
    }

    async fn scale(&self, name: &str, replicas: i32) {
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        self.replicasets()
            .patch(name, &PatchParams::default(), &patch)
            .await
            .unwrap();
    }

    /// Active pods (not terminating) whose controller is `rs`.
    async fn owned(&self, rs: &ReplicaSet) -> Vec<Pod> {
        let uid = rs.uid().unwrap();
        self.active_pods()
            .await
            .into_iter()
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect()
    }

    async fn active_pods(&self) -> Vec<Pod> {
        let list = self.pods().list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    async fn wait_owned(&self, rs: &ReplicaSet, n: usize) -> Vec<Pod> {
        wait_for(&format!("{n} pods owned by {}", rs.name_any()), || async {
            let owned = self.owned(rs).await;
            (owned.len() == n).then_some(owned)
        })
        .await
    }

    async fn mark_ready(&self, pod: &str) {
        let patch = Patch::Merge(json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}],
        }}));
        self.pods()
            .patch_status(pod, &PatchParams::default(), &patch)
            .await
            .unwrap();
    }

    fn stop(self) {
        self.controller.abort();
    }
}

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_string(), app.to_string())].into()
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec()),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("nginx".into()),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

fn names(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn replicaset_gets_exactly_its_replicas_and_never_more() {
    let h = Harness::start().await;
    let rs = h.create_rs("web", 3).await;
    let owned = h.wait_owned(&rs, 3).await;
    for pod in &owned {
        assert!(pod.name_any().starts_with("web-"), "{}", pod.name_any());
        assert_eq!(pod.labels(), &labels("web"));
        let refs = pod.owner_references();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].api_version, "apps/v1");
        assert_eq!(refs[0].kind, "ReplicaSet");
        assert_eq!(refs[0].name, "web");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].block_owner_deletion, Some(true));
    }
    // No double creation while the cache catches up and afterwards.
    for _ in 0..30 {
        assert_eq!(h.active_pods().await.len(), 3);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = wait_for("status.replicas = 3", || async {
        let rs = h.replicasets().get("web").await.unwrap();
        rs.status.filter(|s| s.replicas == 3)
    })
    .await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.fully_labeled_replicas, Some(3));
    h.stop();
}

#[tokio::test]
async fn replicaset_scaled_up_then_down_converges_deleting_pending_pods_first() {
    let h = Harness::start().await;
    let rs = h.create_rs("scale", 2).await;
    let first = h.wait_owned(&rs, 2).await;
    let keeper = first[0].name_any();
    h.mark_ready(&keeper).await;

    h.scale("scale", 5).await;
    h.wait_owned(&rs, 5).await;

    h.scale("scale", 1).await;
    let left = h.wait_owned(&rs, 1).await;
    assert_eq!(
        left[0].name_any(),
        keeper,
        "the Running, Ready pod survives; Pending ones go first"
    );
    for _ in 0..10 {
        assert_eq!(names(&h.active_pods().await), vec![keeper.clone()]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop();
}

#[tokio::test]
async fn replicaset_adopts_a_matching_orphan() {
    let h = Harness::start().await;
    let orphan = Pod {
        metadata: ObjectMeta {
            name: Some("orphan".into()),
            labels: Some(labels("adopt")),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec()),
        status: None,
    };
    h.pods()
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    let rs = h.create_rs("adopt", 3).await;
    let owned = h.wait_owned(&rs, 3).await;
    assert!(
        names(&owned).contains(&"orphan".to_string()),
        "{:?}",
        names(&owned)
    );
    let adopted = owned.iter().find(|p| p.name_any() == "orphan").unwrap();
    assert_eq!(
        adopted.owner_references()[0].block_owner_deletion,
        Some(true)
    );
    for _ in 0..10 {
        assert_eq!(h.active_pods().await.len(), 3, "only two new pods are made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop();
}

#[tokio::test]
async fn replicaset_releases_and_replaces_a_relabeled_pod() {
    let h = Harness::start().await;
    let rs = h.create_rs("release", 2).await;
    let owned = h.wait_owned(&rs, 2).await;
    let moved = owned[0].name_any();
    let patch = Patch::Merge(json!({"metadata": {"labels": {"app": "elsewhere"}}}));
    h.pods()
        .patch(&moved, &PatchParams::default(), &patch)
        .await
        .unwrap();

    wait_for("the relabeled pod to lose its owner", || async {
        let pod = h.pods().get(&moved).await.unwrap();
        pod.owner_references().is_empty().then_some(())
    })
    .await;
    let owned = h.wait_owned(&rs, 2).await;
    assert!(!names(&owned).contains(&moved));
    assert_eq!(
        h.active_pods().await.len(),
        3,
        "the released pod lives on, unowned"
    );
    h.stop();
}

#[tokio::test]
async fn replicaset_status_counts_pods_marked_ready() {
    let h = Harness::start().await;
    let rs = h.create_rs("ready", 3).await;
    let owned = h.wait_owned(&rs, 3).await;
    h.mark_ready(&owned[0].name_any()).await;
    h.mark_ready(&owned[1].name_any()).await;
    let status = wait_for("readyReplicas = 2", || async {
        let rs = h.replicasets().get("ready").await.unwrap();
        rs.status.filter(|s| s.ready_replicas == Some(2))
    })
    .await;
    assert_eq!(status.replicas, 3);
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.fully_labeled_replicas, Some(3));
    h.stop();
}

#[tokio::test]
async fn replicaset_replaces_a_pod_deleted_by_hand() {
    let h = Harness::start().await;
    let rs = h.create_rs("heal", 2).await;
    let owned = h.wait_owned(&rs, 2).await;
    let victim = owned[0].name_any();
    h.pods()
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let healed = wait_for("a replacement pod", || async {
        let owned = h.owned(&rs).await;
        (owned.len() == 2 && !names(&owned).contains(&victim)).then_some(owned)
    })
    .await;
    assert_eq!(healed.len(), 2);
    h.stop();
}
