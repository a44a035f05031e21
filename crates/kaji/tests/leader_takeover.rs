//! Two controller-manager processes against one API server: when the leader
//! is killed, the other takes the Lease over and carries on with the work.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{client, eventually, start_apiserver, Process};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

/// Starts `kaji controller-manager` with identity `<host>_1` and a short
/// lease, so a takeover needs seconds, not the default 15.
fn start_controller_manager(kubeconfig: &Path, host: &str) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["controller-manager", "--log", "warn", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["--identity", &format!("{host}_1")])
        .args([
            "--leader-elect-lease-duration=4s",
            "--leader-elect-renew-deadline=3s",
            "--leader-elect-retry-period=500ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kaji controller-manager");
    Process(Some(child))
}

/// The controller manager Lease's holder, if held.
async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get_opt("kaji-controller-manager")
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// The ReplicaSets in `default`, and the pods (not terminating) each controls.
async fn replicasets_and_pods(client: &Client) -> Vec<(String, usize)> {
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (Ok(rss), Ok(pods)) = (
        rss.list(&ListParams::default()).await,
        pods.list(&ListParams::default()).await,
    ) else {
        return Vec::new();
    };
    rss.items
        .iter()
        .map(|rs| {
            let uid = rs.metadata.uid.clone();
            let owned = pods
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
                })
                .count();
            (rs.metadata.name.clone().unwrap_or_default(), owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_controller_manager_takes_over_when_the_leader_is_killed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let _apiserver = start_apiserver(tmp.path());
    let kubeconfig = tmp.path().join("kubeconfig");
    let client = client(&kubeconfig).await;

    let mut candidates = [
        (
            "kaji-cm-a",
            start_controller_manager(&kubeconfig, "kaji-cm-a"),
        ),
        (
            "kaji-cm-b",
            start_controller_manager(&kubeconfig, "kaji-cm-b"),
        ),
    ];
    let first = eventually("a controller manager to hold the lease", || holder(&client)).await;
    let leader = candidates
        .iter()
        .position(|(host, _)| first.starts_with(&format!("{host}_")))
        .unwrap_or_else(|| panic!("the lease is held by {first}, not by a candidate"));
    let survivor_host = candidates[1 - leader].0;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment = json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    });
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment).expect("valid deployment"),
        )
        .await
        .expect("deployment created");
    eventually("the leader to run 3 pods", || async {
        let rs = replicasets_and_pods(&client).await;
        (rs.len() == 1 && rs[0].1 == 3).then_some(())
    })
    .await;

    let leader_pid = candidates[leader].1.pid();
    candidates[leader].1.kill();
    eprintln!("killed the leader {first} (pid {leader_pid})");
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("deployment scaled");

    let successor = eventually("the standby to take the lease over", || async {
        holder(&client)
            .await
            .filter(|h| h.starts_with(&format!("{survivor_host}_")))
    })
    .await;
    assert_ne!(successor, first);
    eventually(
        "the new leader to scale the ReplicaSet to 5 pods",
        || async {
            let rs = replicasets_and_pods(&client).await;
            (rs.len() == 1 && rs[0].1 == 5).then_some(())
        },
    )
    .await;
    // Settled, not passing through: still one ReplicaSet with exactly 5 pods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rs = replicasets_and_pods(&client).await;
    assert_eq!(rs.len(), 1, "exactly one ReplicaSet: {rs:?}");
    assert_eq!(rs[0].1, 5, "exactly 5 pods: {rs:?}");
    assert_eq!(holder(&client).await.as_deref(), Some(successor.as_str()));
}
