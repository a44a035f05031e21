//! The controllers under store faults and API server restarts: a
//! RollingUpdate rolls out over a store that delays every call and fails
//! writes (backend errors, compare-and-swap conflicts), while the API server
//! is killed and restarted twice mid-rollout. Watches on pods and
//! ReplicaSets, started before the Deployment exists, check the rollout's
//! bounds at every revision; the rollout must still converge in bounded time.
//!
//! The bounds are Kubernetes' own. maxSurge bounds the pods the
//! Deployment's ReplicaSets *ask for* (the sum of their `spec.replicas`,
//! which is what `NewRSNewReplicas` counts), and no ReplicaSet ever creates
//! a pod beyond its `spec.replicas`. The raw pod count may still exceed
//! `replicas + maxSurge` for a moment, as in Kubernetes: when an old
//! ReplicaSet is scaled down and the new one up in the same step, the two
//! ReplicaSet reconciles race, and a new pod may land before the old one is
//! deleted. maxUnavailable bounds the pods not Ready once the new template
//! appears.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kaji_testenv::kaji_store::faults::{FaultConfig, FaultyStore};
use kaji_testenv::kaji_store::{MemoryStore, Store};
use kaji_testenv::TestEnv;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;

const NS: &str = "default";
const NAME: &str = "web";
const REPLICAS: usize = 6;
const MAX_SURGE: usize = 2;
const MAX_UNAVAILABLE: usize = 1;
const HASH: &str = "pod-template-hash";
/// The whole rollout, restarts included, must converge within this.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(60);

/// The Deployment's pods as one watch saw them after one event.
#[derive(Debug, Clone)]
struct PodSample {
    /// The resourceVersion of the event (or of the relist).
    rv: String,
    /// What happened, for the report of a violation.
    what: String,
    /// The `pod-template-hash` of the pod this event created, if it did.
    created: Option<String>,
    /// Per `pod-template-hash`: (pods not terminating, of which Ready).
    by_hash: BTreeMap<String, (usize, usize)>,
}

impl PodSample {
    fn active(&self) -> usize {
        self.by_hash.values().map(|(n, _)| n).sum()
    }

    fn ready(&self) -> usize {
        self.by_hash.values().map(|(_, r)| r).sum()
    }
}

/// The Deployment's ReplicaSets as one watch saw them after one event:
/// the sum of their `spec.replicas`, what maxSurge bounds.
#[derive(Debug, Clone)]
struct RsSample {
    rv: String,
    what: String,
    spec_total: i32,
    /// Per `pod-template-hash`: (`spec.replicas`, `status.replicas`).
    by_hash: BTreeMap<String, (i32, i32)>,
}

#[derive(Default)]
struct Observed {
    pods: Vec<PodSample>,
    replicasets: Vec<RsSample>,
}

/// Follows `api` with a kube-rs watcher (which resumes or relists across
/// API server restarts), keeps the Deployment's objects, and records a
/// sample after every event; a relist counts as one event, at its end.
async fn observe<K, S>(
    api: Api<K>,
    observed: Arc<Mutex<Observed>>,
    sample: impl Fn(&BTreeMap<String, K>, String, String, Option<String>) -> S,
    record: impl Fn(&mut Observed, S),
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().labels(&format!("app={NAME}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut state: BTreeMap<String, K> = BTreeMap::new();
    let mut relist: BTreeMap<String, K> = BTreeMap::new();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        let mut created = None;
        let (rv, what) = match event {
            Event::Init => {
                relist.clear();
                continue;
            }
            Event::InitApply(obj) => {
                relist.insert(obj.name_any(), obj);
                continue;
            }
            Event::InitDone => {
                state = std::mem::take(&mut relist);
                let rv = state
                    .values()
                    .filter_map(|o| o.resource_version())
                    .max_by_key(|rv| rv.parse::<i64>().unwrap_or(0))
                    .unwrap_or_default();
                (rv, format!("relist of {} objects", state.len()))
            }
            Event::Apply(obj) => {
                let rv = obj.resource_version().unwrap_or_default();
                let what = if state.insert(obj.name_any(), obj.clone()).is_none() {
                    created = Some(obj.name_any());
                    format!("create {}", obj.name_any())
                } else {
                    format!("update {}", obj.name_any())
                };
                (rv, what)
            }
            Event::Delete(obj) => {
                let what = format!("delete {}", obj.name_any());
                let rv = obj.resource_version().unwrap_or_default();
                state.remove(&obj.name_any());
                (rv, what)
            }
        };
        let s = sample(&state, rv, what, created);
        record(&mut observed.lock().unwrap(), s);
    }
}

fn pod_sample(
    pods: &BTreeMap<String, Pod>,
    rv: String,
    what: String,
    created: Option<String>,
) -> PodSample {
    let mut by_hash: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for pod in pods.values() {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let hash = pod.labels().get(HASH).cloned().unwrap_or_default();
        let entry = by_hash.entry(hash).or_default();
        entry.0 += 1;
        if is_ready(pod) {
            entry.1 += 1;
        }
    }
    let created = created
        .and_then(|name| pods.get(&name))
        .map(|pod| pod.labels().get(HASH).cloned().unwrap_or_default());
    PodSample {
        rv,
        what,
        created,
        by_hash,
    }
}

fn rs_sample(
    rss: &BTreeMap<String, ReplicaSet>,
    rv: String,
    what: String,
    _created: Option<String>,
) -> RsSample {
    let spec_total = rss
        .values()
        .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
        .sum();
    let by_hash = rss
        .values()
        .map(|rs| {
            let hash = rs.labels().get(HASH).cloned().unwrap_or_default();
            let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = rs.status.as_ref().map_or(0, |s| s.replicas);
            (hash, (spec, status))
        })
        .collect();
    RsSample {
        rv,
        what,
        spec_total,
        by_hash,
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the node (TestEnv has no agent), as the Deployment tests do: marks
/// every pod Running and Ready, retrying whatever fails.
async fn mark_pods_ready(pods: Api<Pod>) {
    let patch = Patch::Merge(json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}],
    }}));
    loop {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                if !is_ready(&pod) && pod.metadata.deletion_timestamp.is_none() {
                    let _ = pods
                        .patch_status(&pod.name_any(), &PatchParams::default(), &patch)
                        .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn deployment() -> Deployment {
    let labels: BTreeMap<String, String> = [("app".to_string(), NAME.to_string())].into();
    Deployment {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(REPLICAS as i32),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(MAX_SURGE as i32)),
                    max_unavailable: Some(IntOrString::Int(MAX_UNAVAILABLE as i32)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
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

/// Polls `probe` every 50 ms until it yields `Some`, failing the test at `deadline`.
async fn until<T, F, Fut>(what: &str, deadline: Instant, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the rollout to the template hashed `hash` is complete as
/// `kubectl rollout status` and the ReplicaSets see it: every pod on the
/// new template and Ready, the new ReplicaSet at `REPLICAS`, old ones at 0.
async fn converged(client: &kube::Client, hash: &str) -> Option<()> {
    let d = Api::<Deployment>::namespaced(client.clone(), NS)
        .get(NAME)
        .await
        .ok()?;
    let s = d.status.clone().unwrap_or_default();
    let n = Some(REPLICAS as i32);
    let progressing = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .and_then(|c| c.reason.clone());
    let complete = s.observed_generation >= d.metadata.generation
        && s.updated_replicas == n
        && s.replicas == n
        && s.available_replicas == n
        && progressing.as_deref() == Some("NewReplicaSetAvailable");
    if !complete {
        return None;
    }
    let rss = Api::<ReplicaSet>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("app={NAME}")))
        .await
        .ok()?
        .items;
    let scaled = rss.iter().all(|rs| {
        let want = if rs.labels().get(HASH).map(String::as_str) == Some(hash) {
            n
        } else {
            Some(0)
        };
        rs.spec.as_ref().and_then(|s| s.replicas) == want
    });
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("app={NAME}")))
        .await
        .ok()?
        .items;
    let all_new = pods.len() == REPLICAS
        && pods.iter().all(|p| {
            p.labels().get(HASH).map(String::as_str) == Some(hash)
                && is_ready(p)
                && p.metadata.deletion_timestamp.is_none()
        });
    (scaled && all_new).then_some(())
}

/// Retries an API write that the faulty store (or a restart) may fail.
async fn retried<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    for _ in 0..50 {
        match call().await {
            Ok(value) => return value,
            Err(e) => tracing_free_log(what, &e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} kept failing");
}

fn tracing_free_log(what: &str, e: &kube::Error) {
    eprintln!("{what} failed (retrying): {e}");
}

fn seed() -> u64 {
    std::env::var("KAJI_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(0, |d| d.as_nanos() as u64)
        })
}

fn rv_number(rv: &str) -> i64 {
    rv.parse().unwrap_or(0)
}

/// The ReplicaSets as the watch saw them at revision `rv`.
fn replicasets_at<'a>(samples: &'a [RsSample], rv: &str) -> Option<&'a RsSample> {
    samples
        .iter()
        .take_while(|s| rv_number(&s.rv) <= rv_number(rv))
        .last()
}

/// `spec.replicas` of the ReplicaSet for `hash` at revision `rv`.
fn spec_at(samples: &[RsSample], rv: &str, hash: &str) -> i32 {
    replicasets_at(samples, rv)
        .and_then(|s| s.by_hash.get(hash))
        .map_or(0, |(spec, _)| *spec)
}

/// The sum of the ReplicaSets' `spec.replicas` at revision `rv`.
fn spec_total_at(samples: &[RsSample], rv: &str) -> i32 {
    replicasets_at(samples, rv).map_or(0, |s| s.spec_total)
}

/// The pod and ReplicaSet samples of both watches, merged in revision
/// order, from a little before `rv` to a little after.
fn history(observed: &Observed, rv: &str) -> String {
    let num = rv_number;
    let mut lines: Vec<(i64, String)> = observed
        .pods
        .iter()
        .map(|s| {
            let line = format!(
                "{:>6} pods {} {:?} ({})",
                s.rv,
                s.active(),
                s.by_hash,
                s.what
            );
            (num(&s.rv), line)
        })
        .chain(observed.replicasets.iter().map(|s| {
            let line = format!(
                "{:>6} replicasets want {} {:?} ({})",
                s.rv, s.spec_total, s.by_hash, s.what
            );
            (num(&s.rv), line)
        }))
        .collect();
    lines.sort_by_key(|(rv, _)| *rv);
    let at = num(rv);
    lines
        .into_iter()
        .filter(|(rv, _)| (at - 60..=at + 20).contains(rv))
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_max_surge_and_converges_under_store_faults_and_restarts() {
    let seed = seed();
    eprintln!("fault seed {seed} (set KAJI_FAULT_SEED to replay the faults)");
    let faults = Arc::new(FaultyStore::new(
        Arc::new(MemoryStore::new()),
        FaultConfig {
            latency: Duration::ZERO..Duration::from_millis(20),
            error_rate: 0.15,
            conflict_rate: 0.1,
            seed,
        },
    ));
    faults.set_enabled(false);
    let store: Arc<dyn Store> = faults.clone();
    let env = TestEnv::start_on(store).await;
    let client = env.client();

    let observed = Arc::new(Mutex::new(Observed::default()));
    let pod_watch = tokio::spawn(observe(
        Api::<Pod>::namespaced(client.clone(), NS),
        observed.clone(),
        pod_sample,
        |o, s| o.pods.push(s),
    ));
    let rs_watch = tokio::spawn(observe(
        Api::<ReplicaSet>::namespaced(client.clone(), NS),
        observed.clone(),
        rs_sample,
        |o, s| o.replicasets.push(s),
    ));
    let controllers = tokio::spawn(kaji_controllers::run(env.client()));
    let node = tokio::spawn(mark_pods_ready(Api::namespaced(env.client(), NS)));

    // Calm setup: the first template, complete, with no faults.
    let deployments = Api::<Deployment>::namespaced(client.clone(), NS);
    deployments
        .create(&PostParams::default(), &deployment())
        .await
        .unwrap();
    let setup_deadline = Instant::now() + Duration::from_secs(30);
    let old_hash = until(
        "the first template's ReplicaSet",
        setup_deadline,
        || async {
            let rss = Api::<ReplicaSet>::namespaced(client.clone(), NS)
                .list(&ListParams::default().labels(&format!("app={NAME}")))
                .await
                .ok()?;
            rss.items.first()?.labels().get(HASH).cloned()
        },
    )
    .await;
    until("the first rollout", setup_deadline, || {
        converged(&client, &old_hash)
    })
    .await;

    // The rollout, under faults, with the API server killed twice.
    faults.set_enabled(true);
    let started = Instant::now();
    let deadline = started + CONVERGENCE_LIMIT;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(image));
    retried("the template change", || {
        deployments.patch(NAME, &params, &patch)
    })
    .await;
    let new_pods = |at_least: usize, ready: bool| {
        let observed = observed.clone();
        let old_hash = old_hash.clone();
        move || {
            let last = observed.lock().unwrap().pods.last().cloned();
            let n = last.map_or(0, |s| {
                s.by_hash
                    .iter()
                    .filter(|(h, _)| **h != old_hash)
                    .map(|(_, (n, r))| if ready { *r } else { *n })
                    .sum::<usize>()
            });
            futures::future::ready((n >= at_least).then_some(()))
        }
    };
    until("the first new pod", deadline, new_pods(1, false)).await;
    env.restart().await;
    eprintln!("restarted the API server after {:?}", started.elapsed());
    until("three new pods Ready", deadline, new_pods(3, true)).await;
    env.restart_after(Duration::from_millis(300)).await;
    eprintln!("restarted the API server after {:?}", started.elapsed());

    let new_hash = until("the new template's ReplicaSet", deadline, || async {
        let rss = Api::<ReplicaSet>::namespaced(client.clone(), NS)
            .list(&ListParams::default().labels(&format!("app={NAME}")))
            .await
            .ok()?;
        rss.items
            .iter()
            .filter_map(|rs| rs.labels().get(HASH))
            .find(|h| **h != old_hash)
            .cloned()
    })
    .await;
    until("the rollout to converge", deadline, || {
        converged(&client, &new_hash)
    })
    .await;
    let took = started.elapsed();
    let injected = faults.injected();
    faults.set_enabled(false);
    // Let both watches catch up with the converged state before judging.
    until(
        "the watches to see the converged state",
        Instant::now() + Duration::from_secs(10),
        || {
            let o = observed.lock().unwrap();
            let pods_done = o.pods.last().is_some_and(|s| {
                s.by_hash.len() == 1 && s.by_hash.get(&new_hash) == Some(&(REPLICAS, REPLICAS))
            });
            let n = REPLICAS as i32;
            let rs_done = o.replicasets.last().is_some_and(|s| {
                s.by_hash.get(&new_hash) == Some(&(n, n))
                    && s.by_hash.get(&old_hash) == Some(&(0, 0))
            });
            futures::future::ready((pods_done && rs_done).then_some(()))
        },
    )
    .await;
    node.abort();
    controllers.abort();
    pod_watch.abort();
    rs_watch.abort();

    let observed = observed.lock().unwrap();
    let max_total = REPLICAS + MAX_SURGE;
    let peak = observed
        .pods
        .iter()
        .map(PodSample::active)
        .max()
        .unwrap_or(0);
    let over = observed
        .pods
        .iter()
        .filter(|s| s.active() > max_total)
        .count();
    eprintln!(
        "converged in {took:?} with {injected:?} injected; at most {peak} pods at once, \
         more than {max_total} at {over} revisions (old pods awaiting their scale-down)"
    );
    // maxSurge bounds the pods the Deployment's ReplicaSets ask for, at
    // every revision (Kubernetes' NewRSNewReplicas counts spec.replicas)…
    if let Some(over) = observed
        .replicasets
        .iter()
        .find(|s| s.spec_total > max_total as i32)
    {
        panic!(
            "ReplicaSets want more than replicas + maxSurge = {max_total} pods (at {}); the history around it:\n{}",
            over.rv,
            history(&observed, &over.rv),
        );
    }
    // …and no ReplicaSet ever creates a pod beyond its spec.replicas at
    // that revision, so pods beyond replicas + maxSurge (terminating ones
    // aside) only ever exist while a scale-down of an old ReplicaSet is
    // still being carried out by its controller, never by a creation.
    for sample in &observed.pods {
        let Some(hash) = &sample.created else {
            continue;
        };
        let spec = spec_at(&observed.replicasets, &sample.rv, hash);
        let pods = sample.by_hash.get(hash).map_or(0, |(n, _)| *n) as i32;
        assert!(
            pods <= spec,
            "a pod of {hash} was created beyond its spec.replicas {spec} (at {}); the history around it:\n{}",
            sample.rv,
            history(&observed, &sample.rv),
        );
        let wanted = spec_total_at(&observed.replicasets, &sample.rv);
        assert!(
            wanted <= max_total as i32,
            "a pod was created while the ReplicaSets want {wanted} (at {})",
            sample.rv
        );
    }
    // maxUnavailable bounds the pods not Ready once the new template
    // appeared (every old pod was Ready before).
    let rollout = observed
        .pods
        .iter()
        .skip_while(|s| s.by_hash.keys().all(|h| *h == old_hash));
    let min_ready = REPLICAS - MAX_UNAVAILABLE;
    if let Some(under) = rollout.clone().find(|s| s.ready() < min_ready) {
        panic!(
            "fewer than replicas - maxUnavailable = {min_ready} Ready pods (at {}); the history around it:\n{}",
            under.rv,
            history(&observed, &under.rv),
        );
    }
    assert!(rollout.count() > 0, "the watch saw the rollout");
    assert!(peak > REPLICAS, "the rollout surged ({peak} pods at most)");
    assert!(
        injected.errors > 0 && injected.conflicts > 0,
        "{injected:?}"
    );
    assert!(took < CONVERGENCE_LIMIT);
}
