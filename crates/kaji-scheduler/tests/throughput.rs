//! How fast scheduling cycles are, without the API: 10,000 pods onto 5,000
//! nodes, the shape of kube-scheduler's scheduler_perf
//! `SchedulingBasic/5000Nodes_10000Pods` (whose floor is 680 pods/s end to
//! end). Run it optimized:
//!
//! ```sh
//! cargo test -p kaji-scheduler --release --test throughput -- --ignored --nocapture
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use kaji_scheduler::cache::Cache;
use kaji_scheduler::framework::ClusterView;
use kaji_scheduler::plugins::default_profile;
use kaji_scheduler::pod_info::PodInfo;
use rand::SeedableRng;
use serde_json::json;

const NODES: usize = 5000;
const PODS: usize = 10_000;

fn node(i: usize) -> Node {
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
        }},
        "status": {"capacity": resources, "allocatable": resources},
    }))
    .expect("a valid node")
}

fn pod(i: usize) -> PodInfo {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "uid": format!("uid-{i}")},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ]},
    }))
    .expect("a valid pod");
    PodInfo::new(pod)
}

#[test]
#[ignore = "a measurement; run optimized with --ignored --nocapture"]
fn scheduling_cycles_place_ten_thousand_pods_on_five_thousand_nodes() {
    let mut cache = Cache::default();
    for i in 0..NODES {
        cache.upsert_node(&node(i));
    }
    let pods: Vec<Arc<PodInfo>> = (0..PODS).map(|i| Arc::new(pod(i))).collect();
    let profile = default_profile();
    let namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut cursor = 0;
    let started = Instant::now();
    for pod in &pods {
        let cluster = ClusterView {
            cache: &cache,
            namespaces: &namespaces,
        };
        let decision = profile
            .schedule(pod, &cluster, &mut cursor, &mut rng)
            .expect("every pod fits");
        cache.assume(pod.clone(), &decision.node);
    }
    let elapsed = started.elapsed();
    let rate = PODS as f64 / elapsed.as_secs_f64();
    println!("{PODS} pods on {NODES} nodes in {elapsed:?}: {rate:.0} pods/s");
    let most = cache
        .nodes()
        .iter()
        .map(|n| n.pods.len())
        .max()
        .unwrap_or(0);
    assert!(
        most <= 4,
        "least-allocated spreads pods: at most {most} per node"
    );
}

/// End to end against the in-process API server: pods created with 64
/// requests in flight, timed until the last one is bound. Sizes from
/// `KAJI_SCHED_NODES` and `KAJI_SCHED_PODS` (default 1,000 and 2,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run optimized with --ignored --nocapture"]
async fn pods_are_bound_end_to_end_through_the_api() {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{Api, PostParams};
    use kube::runtime::watcher;

    let size = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (nodes, pods) = (
        size("KAJI_SCHED_NODES", 1000),
        size("KAJI_SCHED_PODS", 2000),
    );
    let env = kaji_testenv::TestEnv::start().await;
    let client = env.client();
    let node_api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                api.create(&PostParams::default(), &node(i))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .expect("nodes created");
    let scheduler = tokio::spawn(kaji_scheduler::run(client.clone()));

    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let bound = {
        let pod_api = pod_api.clone();
        tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            let mut stream = watcher::watcher(pod_api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event {
                    if p.spec.and_then(|s| s.node_name).is_some() {
                        seen.insert(p.metadata.name.unwrap_or_default());
                        if seen.len() == pods {
                            return Instant::now();
                        }
                    }
                }
            }
            Instant::now()
        })
    };
    let started = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            let mut p: Pod = (*pod(i).pod).clone();
            p.metadata.uid = None;
            async move { api.create(&PostParams::default(), &p).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .expect("pods created");
    let created = started.elapsed();
    let done = tokio::time::timeout(std::time::Duration::from_secs(600), bound)
        .await
        .expect("all pods bound in time")
        .expect("watch task");
    let elapsed = done - started;
    println!(
        "{pods} pods on {nodes} nodes: created in {created:?}, all bound after {elapsed:?}: {:.0} pods/s",
        pods as f64 / elapsed.as_secs_f64()
    );
    scheduler.abort();
}
