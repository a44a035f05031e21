//! The Deployment controller, with the ReplicaSet controller, against a
//! real in-process API server. A helper task plays the node: it marks every
//! pod Ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kaji_testenv::eventually as wait_for;
use kaji_testenv::TestEnv;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const NS: &str = "default";
const REVISION: &str = "deployment.kubernetes.io/revision";

struct Harness {
    env: TestEnv,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn start() -> Harness {
        let env = TestEnv::start().await;
        let rs = kaji_controllers::replicaset::run(env.client());
        let deploy = kaji_controllers::deployment::run(env.client());
        let node = mark_pods_ready(Api::namespaced(env.client(), NS));
        let tasks = vec![
            tokio::spawn(async move {
                let _ = rs.await;
            }),
            tokio::spawn(async move {
                let _ = deploy.await;
            }),
            tokio::spawn(node),
        ];
        Harness { env, tasks }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.env.client(), NS)
    }

    fn replicasets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.env.client(), NS)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.env.client(), NS)
    }

    async fn create(&self, d: &Deployment) {
        self.deployments()
            .create(&PostParams::default(), d)
            .await
            .unwrap();
    }

    async fn patch(&self, name: &str, patch: serde_json::Value) {
        self.deployments()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn set_image(&self, name: &str, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
        self.patch(name, patch).await;
    }

    /// The ReplicaSets a Deployment controls.
    async fn owned(&self, name: &str) -> Vec<ReplicaSet> {
        let d = self.deployments().get(name).await.unwrap();
        let uid = d.uid().unwrap();
        let mut list: Vec<ReplicaSet> = self
            .replicasets()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|rs| {
                rs.owner_references()
                    .iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect();
        list.sort_by_key(|rs| rs.annotations().get(REVISION).cloned().unwrap_or_default());
        list
    }

    /// Waits until the Deployment's rollout is complete with `n` available
    /// replicas, as `kubectl rollout status` would decide.
    async fn wait_complete(&self, name: &str, n: i32) -> Deployment {
        wait_for(&format!("{name} complete with {n} replicas"), || async {
            let d = self.deployments().get(name).await.unwrap();
            let s = d.status.clone().unwrap_or_default();
            let done = s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(n)
                && s.replicas == Some(n)
                && s.available_replicas == Some(n)
                && progressing_reason(&s).as_deref() == Some("NewReplicaSetAvailable");
            done.then_some(d)
        })
        .await
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Plays the node: marks every pod Ready, forever.
async fn mark_pods_ready(pods: Api<Pod>) {
    let patch = Patch::Merge(json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}],
    }}));
    loop {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if !ready && pod.metadata.deletion_timestamp.is_none() {
                    let _ = pods
                        .patch_status(&pod.name_any(), &PatchParams::default(), &patch)
                        .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn progressing_reason(s: &DeploymentStatus) -> Option<String> {
    condition(s, "Progressing").and_then(|c| c.1)
}

fn condition(s: &DeploymentStatus, type_: &str) -> Option<(String, Option<String>)> {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_string(), app.to_string())].into()
}

fn deployment(name: &str, replicas: i32, strategy: DeploymentStrategy) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                match_expressions: None,
            },
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("nginx:1".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn rolling(surge: i32, unavailable: i32) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(surge)),
            max_unavailable: Some(IntOrString::Int(unavailable)),
        }),
    }
}

fn recreate() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    }
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

#[tokio::test]
async fn deployment_new_converges_to_one_replicaset_with_ready_pods() {
    let h = Harness::start().await;
    h.create(&deployment("web", 3, rolling(1, 0))).await;
    let d = h.wait_complete("web", 3).await;
    let s = d.status.unwrap();
    assert_eq!(s.ready_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, Some(0));
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        condition(&s, "Available"),
        Some(("True".into(), Some("MinimumReplicasAvailable".into())))
    );
    assert_eq!(condition(&s, "Progressing").unwrap().0, "True");
    assert_eq!(
        d.metadata
            .annotations
            .unwrap()
            .get(REVISION)
            .map(String::as_str),
        Some("1")
    );

    let owned = h.owned("web").await;
    assert_eq!(owned.len(), 1, "one ReplicaSet");
    let rs = &owned[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .cloned()
        .expect("hash label");
    assert!(
        hash.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{hash}"
    );
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector
            .match_labels
            .as_ref()
            .unwrap()
            .get("pod-template-hash"),
        Some(&hash)
    );
    let annotations = rs.annotations();
    assert_eq!(annotations.get(REVISION).map(String::as_str), Some("1"));
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/desired-replicas")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/max-replicas")
            .map(String::as_str),
        Some("4")
    );
    let pods = h.pods().list(&ListParams::default()).await.unwrap().items;
    assert_eq!(pods.len(), 3);
    assert!(pods
        .iter()
        .all(|p| p.labels().get("pod-template-hash") == Some(&hash)));
    h.stop();
}

#[tokio::test]
async fn deployment_image_change_rolls_out_within_max_surge() {
    let h = Harness::start().await;
    h.create(&deployment("roll", 3, rolling(1, 0))).await;
    h.wait_complete("roll", 3).await;
    let first = h.owned("roll").await.remove(0);

    let peak = Arc::new(AtomicUsize::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pods, peak, sampling) = (h.pods(), peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let active = list
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .count();
                    peak.fetch_max(active, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    h.set_image("roll", "nginx:2").await;
    let d = h.wait_complete("roll", 3).await;
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();

    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("2"));
    let owned = h.owned("roll").await;
    assert_eq!(owned.len(), 2);
    let old = owned.iter().find(|rs| rs.uid() == first.uid()).unwrap();
    let new = owned.iter().find(|rs| rs.uid() != first.uid()).unwrap();
    assert_eq!(spec_replicas(old), 0);
    assert_eq!(spec_replicas(new), 3);
    assert_eq!(
        new.annotations().get(REVISION).map(String::as_str),
        Some("2")
    );
    assert_ne!(
        new.labels().get("pod-template-hash"),
        first.labels().get("pod-template-hash")
    );
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 4, "at most replicas + maxSurge pods, saw {peak}");
    assert!(peak >= 3, "sampler saw pods ({peak})");
    h.stop();
}

#[tokio::test]
async fn deployment_recreate_scales_old_to_zero_before_new_grows() {
    let h = Harness::start().await;
    h.create(&deployment("rec", 2, recreate())).await;
    h.wait_complete("rec", 2).await;
    let first = h.owned("rec").await.remove(0);
    let old_hash = first.labels().get("pod-template-hash").cloned().unwrap();

    let overlap = Arc::new(AtomicBool::new(false));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pods, overlap, sampling) = (h.pods(), overlap.clone(), sampling.clone());
        let old_hash = old_hash.clone();
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let is_old = |p: &Pod| p.labels().get("pod-template-hash") == Some(&old_hash);
                    let old = list.items.iter().filter(|p| is_old(p)).count();
                    let new = list.items.len() - old;
                    if old > 0 && new > 0 {
                        overlap.store(true, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    h.set_image("rec", "nginx:2").await;
    h.wait_complete("rec", 2).await;
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();

    assert!(
        !overlap.load(Ordering::SeqCst),
        "old and new pods never coexist"
    );
    let owned = h.owned("rec").await;
    assert_eq!(owned.len(), 2);
    let old = owned.iter().find(|rs| rs.uid() == first.uid()).unwrap();
    assert_eq!(spec_replicas(old), 0);
    let pods = h.pods().list(&ListParams::default()).await.unwrap().items;
    assert_eq!(pods.len(), 2);
    assert!(pods
        .iter()
        .all(|p| p.labels().get("pod-template-hash") != Some(&old_hash)));
    h.stop();
}

#[tokio::test]
async fn deployment_scaling_scales_its_replicaset() {
    let h = Harness::start().await;
    h.create(&deployment("scale", 2, rolling(1, 0))).await;
    h.wait_complete("scale", 2).await;
    h.patch("scale", json!({"spec": {"replicas": 5}})).await;
    h.wait_complete("scale", 5).await;
    let owned = h.owned("scale").await;
    assert_eq!(owned.len(), 1, "scaling makes no new ReplicaSet");
    assert_eq!(spec_replicas(&owned[0]), 5);
    assert_eq!(
        owned[0]
            .annotations()
            .get("deployment.kubernetes.io/desired-replicas")
            .map(String::as_str),
        Some("5")
    );
    h.patch("scale", json!({"spec": {"replicas": 1}})).await;
    h.wait_complete("scale", 1).await;
    assert_eq!(spec_replicas(&h.owned("scale").await[0]), 1);
    wait_for("one pod left", || async {
        let n = h
            .pods()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        (n == 1).then_some(())
    })
    .await;
    h.stop();
}

#[tokio::test]
async fn deployment_revision_history_limit_prunes_old_replicasets() {
    let h = Harness::start().await;
    let mut d = deployment("hist", 1, rolling(1, 0));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    h.create(&d).await;
    h.wait_complete("hist", 1).await;
    for (i, image) in ["nginx:2", "nginx:3", "nginx:4"].iter().enumerate() {
        h.set_image("hist", image).await;
        wait_for(&format!("revision {}", i + 2), || async {
            let d = h.deployments().get("hist").await.unwrap();
            let rev = d.annotations().get(REVISION).cloned();
            (rev == Some((i + 2).to_string())).then_some(())
        })
        .await;
        h.wait_complete("hist", 1).await;
    }
    let owned = wait_for("history pruned to one old ReplicaSet", || async {
        let owned = h.owned("hist").await;
        (owned.len() == 2).then_some(owned)
    })
    .await;
    let revisions: Vec<String> = owned
        .iter()
        .map(|rs| rs.annotations().get(REVISION).cloned().unwrap_or_default())
        .collect();
    assert_eq!(revisions, vec!["3", "4"]);
    h.stop();
}

#[tokio::test]
async fn deployment_paused_makes_no_progress_until_resumed() {
    let h = Harness::start().await;
    h.create(&deployment("pause", 2, rolling(1, 0))).await;
    h.wait_complete("pause", 2).await;
    h.patch("pause", json!({"spec": {"paused": true}})).await;
    wait_for("the paused condition", || async {
        let d = h.deployments().get("pause").await.unwrap();
        let reason = progressing_reason(&d.status.unwrap_or_default());
        (reason.as_deref() == Some("DeploymentPaused")).then_some(())
    })
    .await;
    h.set_image("pause", "nginx:2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.owned("pause").await.len(),
        1,
        "no new ReplicaSet while paused"
    );

    h.patch("pause", json!({"spec": {"paused": false}})).await;
    let d = h.wait_complete("pause", 2).await;
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("2"));
    h.stop();
}
