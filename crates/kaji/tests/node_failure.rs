//! A node dies: a cluster of separate processes — API server, controller
//! manager, scheduler and two node agents — loses one agent to SIGKILL. Its
//! Node goes Unknown and is tainted unreachable, its pods are evicted once
//! their toleration runs out, and the ReplicaSet's replacements are
//! scheduled onto the surviving node. The timeline is printed.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{client, component, eventually, start_apiserver, Process};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};

fn start_agent(kubeconfig: &Path, dir: &Path, node: &str) -> Process {
    let data = dir.join(node);
    component(
        kubeconfig,
        &[
            "agent",
            "--runtime",
            "simulated",
            "--node-name",
            node,
            "--agent-listen",
            "127.0.0.1:0",
            "--node-lease-renew-interval",
            "1s",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
}

/// Running, not terminating pods of the Deployment, by node.
async fn running_pods(pods: &Api<Pod>) -> Vec<(String, String)> {
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            )
        })
        .collect()
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_node_are_evicted_and_replaced_on_the_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let _apiserver = start_apiserver(dir.path());
    let kubeconfig = dir.path().join("kubeconfig");
    let _controllers = component(
        &kubeconfig,
        &[
            "controller-manager",
            "--node-monitor-grace-period=4s",
            "--node-monitor-period=500ms",
        ],
    );
    let _scheduler = component(&kubeconfig, &["scheduler"]);
    let mut agents = vec![
        ("alpha", start_agent(&kubeconfig, dir.path(), "alpha")),
        ("beta", start_agent(&kubeconfig, dir.path(), "beta")),
    ];
    let client = client(&kubeconfig).await;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("both nodes Ready", || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|n| ready_status(n).as_deref() == Some("True"))
            .count();
        (ready == 2).then_some(())
    })
    .await;

    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    // Prefer spreading (a hard constraint would, as on
                    // Kubernetes, keep replacements off the survivor while
                    // the dead node still counts as a domain).
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app": "web"}},
                    }],
                    "tolerations": [
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
                    ],
                    "containers": [{"name": "app", "image": "example.com/app", "command": ["sleep", "3600"]}],
                },
            },
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let placed = eventually("4 pods Running on both nodes", || async {
        let running = running_pods(&pods).await;
        let on_beta = running.iter().filter(|(_, n)| n == "beta").count();
        (running.len() == 4 && (1..4).contains(&on_beta)).then_some(running)
    })
    .await;

    let killed_at = Instant::now();
    let mut beta = agents.pop().unwrap().1;
    beta.kill();
    let unknown = eventually("the dead node to go Unknown and be tainted", || async {
        let node = nodes.get("beta").await.ok()?;
        let tainted = node
            .spec
            .as_ref()?
            .taints
            .as_ref()?
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute");
        (ready_status(&node).as_deref() == Some("Unknown") && tainted).then(|| killed_at.elapsed())
    })
    .await;
    let doomed: Vec<String> = placed
        .iter()
        .filter(|(_, n)| n == "beta")
        .map(|(p, _)| p.clone())
        .collect();
    let evicted = eventually("the dead node's pods to be evicted", || async {
        for name in &doomed {
            let gone_or_terminating = match pods.get_opt(name).await.ok()? {
                None => true,
                Some(p) => p.metadata.deletion_timestamp.is_some(),
            };
            if !gone_or_terminating {
                return None;
            }
        }
        Some(killed_at.elapsed())
    })
    .await;
    let replaced = eventually("replacements Running on the survivor", || async {
        let running = running_pods(&pods).await;
        (running.len() == 4 && running.iter().all(|(_, n)| n == "alpha"))
            .then(|| killed_at.elapsed())
    })
    .await;
    // The survivor kept renewing throughout, so it never went NotReady.
    let alpha = nodes.get("alpha").await.unwrap();
    assert_eq!(ready_status(&alpha).as_deref(), Some("True"));
    assert!(unknown <= evicted && evicted <= replaced);
    eprintln!(
        "node failure timeline (grace 4s, tolerationSeconds 2): Unknown+tainted after {:.1}s, \
         pods evicted after {:.1}s, replacements Running after {:.1}s",
        unknown.as_secs_f64(),
        evicted.as_secs_f64(),
        replaced.as_secs_f64()
    );
    drop(agents);
}
