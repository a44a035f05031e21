//! Beyond one machine: API servers on a real etcd (Debian's etcd-server,
//! started on loopback by the test). Several API servers serve one etcd
//! consistently; a 3-member etcd survives losing a member; behind a TCP
//! load balancer, the cluster carries on when an API server and the leading
//! controller manager die mid-rollout.

mod common;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, component, eventually, start_apiserver_with, Process};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kaji_store_etcd::testing::EtcdCluster;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

/// The scheduler's Lease in kube-system.
const SCHEDULER_LEASE: &str = kaji_scheduler::LEASE_NAME;

fn start_etcd(members: usize) -> EtcdCluster {
    EtcdCluster::start(members)
}

/// An API server on `etcd`, its data (kubeconfig) in `dir`.
fn apiserver(dir: &Path, etcd: &EtcdCluster) -> Process {
    std::fs::create_dir_all(dir).unwrap();
    start_apiserver_with(dir, &["--store", &etcd.store_url()])
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"v": value},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_servers_on_one_etcd_serve_the_same_data() {
    let etcd = start_etcd(1);
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let _a = apiserver(&dir_a, &etcd);
    let _b = apiserver(&dir_b, &etcd);
    let a = client(&dir_a.join("kubeconfig")).await;
    let b = client(&dir_b.join("kubeconfig")).await;
    let via_a: Api<ConfigMap> = Api::namespaced(a.clone(), "default");
    let via_b: Api<ConfigMap> = Api::namespaced(b.clone(), "default");

    // A watch through B sees a write through A, at A's resourceVersion.
    let start = via_b.list(&ListParams::default()).await.unwrap();
    let rv = start.metadata.resource_version.unwrap();
    let mut events = via_b
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let written = via_a
        .create(&PostParams::default(), &cm("shared", "1"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("B's watch delivers A's write")
        .unwrap()
        .unwrap();
    match seen {
        WatchEvent::Added(obj) => assert_eq!(
            obj.metadata.resource_version,
            written.metadata.resource_version
        ),
        other => panic!("expected ADDED, got {other:?}"),
    }
    // Reads through B right after a write through A see it (consistent reads).
    let mut fresh = via_b.get("shared").await.unwrap();
    fresh.data = Some([("v".to_string(), "2".to_string())].into());
    via_b
        .replace("shared", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(via_a.get("shared").await.unwrap().data.unwrap()["v"], "2");
    // A stale write through A conflicts with B's.
    let stale = via_a
        .replace("shared", &PostParams::default(), &written)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409),
        "{stale:?}"
    );

    // A CRD created through A is served by B too.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(a.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "notes.ha.example.com"},
            "spec": {"group": "ha.example.com", "scope": "Namespaced",
                "names": {"plural": "notes", "kind": "Note"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "text": {"type": "string"}}}}}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let resource = kube::discovery::ApiResource {
        group: "ha.example.com".into(),
        version: "v1".into(),
        api_version: "ha.example.com/v1".into(),
        kind: "Note".into(),
        plural: "notes".into(),
    };
    let notes_b: Api<kube::api::DynamicObject> =
        Api::namespaced_with(b.clone(), "default", &resource);
    let note: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ha.example.com/v1", "kind": "Note",
        "metadata": {"name": "n"}, "text": "hello"}))
    .unwrap();
    eventually("B serves the CRD created through A", || {
        let notes_b = notes_b.clone();
        let note = note.clone();
        async move { notes_b.create(&PostParams::default(), &note).await.ok() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_etcd_keeps_serving_without_one_member() {
    let mut etcd = start_etcd(3);
    let tmp = tempfile::tempdir().unwrap();
    let _server = apiserver(tmp.path(), &etcd);
    let c = client(&tmp.path().join("kubeconfig")).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &cm("before", "1"))
        .await
        .unwrap();
    etcd.members[0].kill();
    // The client balances over the survivors; a request on the dead
    // member's connection may fail once while it is taken out.
    eventually("a write after losing a member", || {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm("after", "2"))
                .await
                .ok()
        }
    })
    .await;
    let names: Vec<String> = eventually("both objects listed", || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            Some(
                list.items
                    .into_iter()
                    .filter_map(|c| c.metadata.name)
                    .collect(),
            )
        }
    })
    .await;
    assert_eq!(names, ["after", "before"]);
}

/// A TCP load balancer on loopback: each connection goes to the next
/// backend that accepts it.
struct Balancer {
    port: u16,
}

impl Balancer {
    fn start(backends: Vec<String>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let next = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let start = next.fetch_add(1, Ordering::Relaxed);
                let upstream = (0..backends.len())
                    .map(|i| &backends[(start + i) % backends.len()])
                    .find_map(|b| TcpStream::connect(b).ok());
                let Some(upstream) = upstream else { continue };
                splice(client, upstream);
            }
        });
        Balancer { port }
    }
}

/// Copies both ways until either side closes.
fn splice(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
        });
    }
}

/// The address in a kubeconfig's `server:` line.
fn server_address(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("server:"))
        .unwrap();
    line.trim()
        .trim_start_matches("server:")
        .trim()
        .trim_start_matches("http://")
        .to_string()
}

/// A copy of `kubeconfig` pointing at `address`.
fn kubeconfig_via(kubeconfig: &Path, address: &str, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let rewritten = text.replace(&server_address(kubeconfig), address);
    std::fs::write(out, rewritten).unwrap();
    out.to_path_buf()
}

/// A controller manager or scheduler with a short lease, so a takeover
/// takes seconds.
fn elected(kubeconfig: &Path, which: &str, identity: &str) -> Process {
    component(
        kubeconfig,
        &[
            which,
            "--identity",
            identity,
            "--leader-elect-lease-duration=4s",
            "--leader-elect-renew-deadline=3s",
            "--leader-elect-retry-period=500ms",
        ],
    )
}

async fn lease_holder(c: &kube::Client, name: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(c.clone(), "kube-system");
    leases.get(name).await.ok()?.spec?.holder_identity
}

/// Running pods of the Deployment with `image`, not being deleted.
async fn running_with(pods: &Api<Pod>, image: &str) -> usize {
    pods.list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.as_deref())
                == Some(image)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_carries_on_when_an_api_server_and_the_leader_die_mid_rollout() {
    let etcd = start_etcd(1);
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = apiserver(&dir_a, &etcd);
    let _b = apiserver(&dir_b, &etcd);
    let balancer = Balancer::start(vec![
        server_address(&dir_a.join("kubeconfig")),
        server_address(&dir_b.join("kubeconfig")),
    ]);
    let kubeconfig = kubeconfig_via(
        &dir_a.join("kubeconfig"),
        &format!("127.0.0.1:{}", balancer.port),
        &tmp.path().join("kubeconfig"),
    );
    let mut managers = [
        elected(&kubeconfig, "controller-manager", "cm-1"),
        elected(&kubeconfig, "controller-manager", "cm-2"),
    ];
    let mut schedulers = [
        elected(&kubeconfig, "scheduler", "sched-1"),
        elected(&kubeconfig, "scheduler", "sched-2"),
    ];
    let agent_dir = tmp.path().join("node");
    let _agent = component(
        &kubeconfig,
        &[
            "agent",
            "--runtime",
            "simulated",
            "--node-name",
            "n1",
            "--agent-listen",
            "127.0.0.1:0",
            "--data-dir",
            agent_dir.to_str().unwrap(),
        ],
    );
    let c = client(&kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 4,
                    "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "web:1"}]}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    eventually("4 pods of web:1 running", || {
        let pods = pods.clone();
        async move { (running_with(&pods, "web:1").await == 4).then_some(()) }
    })
    .await;

    // One API server dies; the balancer sends everyone to the other.
    a.kill();
    let leader = eventually("a controller manager leads", || {
        let c = c.clone();
        async move { lease_holder(&c, "kaji-controller-manager").await }
    })
    .await;
    let leading_scheduler = eventually("a scheduler leads", || {
        let c = c.clone();
        async move { lease_holder(&c, SCHEDULER_LEASE).await }
    })
    .await;
    // Mid-rollout, the leading controller manager dies too.
    eventually(
        "the rollout starts through the surviving API server",
        || {
            let deployments = deployments.clone();
            async move {
                deployments
                    .patch(
                        "web",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"template": {"spec": {
                        "containers": [{"name": "c", "image": "web:2"}]}}}})),
                    )
                    .await
                    .ok()
            }
        },
    )
    .await;
    // Mid-rollout, the leading controller manager and scheduler die too.
    managers[usize::from(!leader.starts_with("cm-1"))].kill();
    schedulers[usize::from(!leading_scheduler.starts_with("sched-1"))].kill();

    eventually("the rollout completes: 4 pods of web:2 running", || {
        let pods = pods.clone();
        async move { (running_with(&pods, "web:2").await == 4).then_some(()) }
    })
    .await;
    let new_leader = lease_holder(&c, "kaji-controller-manager").await.unwrap();
    assert_ne!(
        new_leader, leader,
        "the standby controller manager took over"
    );
    let new_scheduler = lease_holder(&c, SCHEDULER_LEASE).await.unwrap();
    assert_ne!(
        new_scheduler, leading_scheduler,
        "the standby scheduler took over"
    );
    // Nothing was created twice: one ReplicaSet per template, and never more
    // than replicas + maxSurge pods of the Deployment.
    let replicasets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(c.clone(), "default");
    let sets = replicasets.list(&ListParams::default()).await.unwrap();
    assert_eq!(sets.items.len(), 2, "one ReplicaSet per template");
    let all = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let live = all
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count();
    assert!(live <= 5, "{live} pods exceed replicas + maxSurge");
}
