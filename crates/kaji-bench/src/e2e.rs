//! End to end: a release `kaji up --simulate-nodes N` (API server,
//! controllers, scheduler and N simulated nodes in one process), one
//! Deployment of many replicas, timed from a client-side watch until every
//! pod is Running; with the server's start-up time, RSS and CPU time.
//!
//! Also the shared pieces of the cluster-scale benchmarks (`scheduler`
//! uses them): a reconnecting watch that timestamps every event on
//! arrival, a sampler of RSS and CPU time by PID, and the server's request
//! latency histograms read from `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::api::{ensure_namespace, Http};
use crate::measure::{ms, quantile};
use crate::process::{self, cpu_time, rss_kib};
use crate::report::{load_average as loadavg, Plot, PlotKind, Section, Series, Table};

/// Sizes and limits of the end-to-end run.
#[derive(Debug, Clone)]
pub struct E2eParams {
    /// Simulated nodes `kaji up` runs.
    pub nodes: usize,
    /// Replicas of the one Deployment.
    pub replicas: usize,
    /// How long the rollout may take before the run reports what it reached.
    pub rollout_budget: Duration,
    /// Quiet time before each footprint reading (idle, and with all pods).
    pub settle: Duration,
}

impl Default for E2eParams {
    fn default() -> Self {
        E2eParams {
            nodes: 1000,
            replicas: 10_000,
            rollout_budget: Duration::from_secs(180),
            settle: Duration::from_secs(10),
        }
    }
}

const NS: &str = "kaji-bench-e2e";
/// How long the cluster may take from spawn until every node is Ready.
const NODES_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A client for the kubeconfig `kaji` wrote.
pub(crate) async fn http_for(kubeconfig: &Path) -> anyhow::Result<Http> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(Http(kube::Client::try_from(config)?))
}

/// Calls `on_event(type, object, arrival)` for every event of a watch on
/// `collection` from `rv`, reconnecting from the last resourceVersion seen
/// when the server ends the stream, until `on_event` returns true or
/// `deadline` passes. Each event is stamped when its bytes arrived.
pub(crate) async fn watch_events<F>(
    http: &Http,
    collection: &str,
    mut rv: String,
    deadline: Instant,
    mut on_event: F,
) -> anyhow::Result<()>
where
    F: FnMut(&str, &Value, Instant) -> bool,
{
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let path = format!(
            "{collection}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=600"
        );
        let req = Request::get(path)
            .header("accept", "application/json")
            .body(kube::client::Body::from(Vec::new()))?;
        let resp = match tokio::time::timeout(left, http.0.send(req)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        ensure!(resp.status().is_success(), "watch: {}", resp.status());
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(left, body.frame()).await {
                Ok(Some(f)) => f?,
                Ok(None) => break,
                Err(_) => return Ok(()),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let now = Instant::now();
            buf.extend_from_slice(&data);
            let mut start = 0;
            while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
                let line = &buf[start..start + nl];
                start += nl + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: Value = serde_json::from_slice(line).context("a watch event")?;
                let ty = event["type"].as_str().unwrap_or_default();
                if ty == "ERROR" {
                    bail!("watch ended with an error: {}", event["object"]);
                }
                if let Some(v) = event["object"]["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
                if ty != "BOOKMARK" && on_event(ty, &event["object"], now) {
                    return Ok(());
                }
            }
            buf.drain(..start);
        }
    }
}

/// The resourceVersion of a list of `collection`, to watch from.
pub(crate) async fn list_rv(http: &Http, collection: &str) -> anyhow::Result<String> {
    let list: Value = serde_json::from_slice(
        &http
            .ok(Method::GET, &format!("{collection}?limit=1"), None)
            .await?,
    )?;
    Ok(list["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?
        .to_string())
}

/// One reading of the sampler.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Seconds since the sampler's origin.
    pub t: f64,
    /// (RSS KiB, CPU time) of each sampled PID, in order.
    pub procs: Vec<(u64, Duration)>,
    /// Each counter's value, in order.
    pub counts: Vec<usize>,
}

/// Samples RSS and CPU time of `pids` and the `counters` every `every`
/// until `stop` is set (bounded by `limit`).
pub(crate) fn spawn_sampler(
    pids: Vec<u32>,
    counters: Vec<Arc<AtomicUsize>>,
    origin: Instant,
    every: Duration,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(every);
        while !stop.load(Ordering::SeqCst) && origin.elapsed() < limit {
            tick.tick().await;
            let procs = pids
                .iter()
                .map(|&pid| {
                    (
                        rss_kib(pid).map(|r| r.0).unwrap_or(0),
                        cpu_time(pid).unwrap_or_default(),
                    )
                })
                .collect();
            out.push(Sample {
                t: origin.elapsed().as_secs_f64(),
                procs,
                counts: counters.iter().map(|c| c.load(Ordering::SeqCst)).collect(),
            });
        }
        out
    })
}

/// CPU used by `pid` over `window`, as a share of one core, and its RSS
/// (KiB) at the end.
pub(crate) async fn cpu_share(pid: u32, window: Duration) -> anyhow::Result<(f64, u64)> {
    let (c0, t0) = (cpu_time(pid)?, Instant::now());
    tokio::time::sleep(window).await;
    let (c1, t1) = (cpu_time(pid)?, Instant::now());
    let share = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64();
    Ok((share, rss_kib(pid)?.0))
}

/// Cumulative request-latency buckets `(le, count)` by (verb, resource),
/// from the server's `apiserver_request_duration_seconds` histogram.
pub(crate) type Histograms = BTreeMap<(String, String), Vec<(f64, u64)>>;

/// Reads `/metrics` into [`Histograms`].
pub(crate) async fn request_histograms(http: &Http) -> anyhow::Result<Histograms> {
    let text = http.ok(Method::GET, "/metrics", None).await?;
    Ok(parse_histograms(&String::from_utf8_lossy(&text)))
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = line.find(&key)? + key.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

pub(crate) fn parse_histograms(text: &str) -> Histograms {
    let mut out: Histograms = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_bucket{") else {
            continue;
        };
        let (Some(verb), Some(resource), Some(le)) = (
            label(rest, "verb"),
            label(rest, "resource"),
            label(rest, "le"),
        ) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let count = line
            .rsplit(' ')
            .next()
            .and_then(|c| c.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        out.entry((verb.to_string(), resource.to_string()))
            .or_default()
            .push((le, count));
    }
    out
}

/// `after − before`, bucket by bucket.
pub(crate) fn histogram_delta(after: &Histograms, before: &Histograms) -> Histograms {
    after
        .iter()
        .map(|(k, buckets)| {
            let old = before.get(k);
            let d = buckets
                .iter()
                .map(|&(le, n)| {
                    let was = old
                        .and_then(|o| o.iter().find(|(l, _)| *l == le))
                        .map_or(0, |x| x.1);
                    (le, n.saturating_sub(was))
                })
                .collect();
            (k.clone(), d)
        })
        .collect()
}

/// Sums the buckets of every (verb, resource) `keep` accepts.
pub(crate) fn histogram_sum(h: &Histograms, keep: impl Fn(&str, &str) -> bool) -> Vec<(f64, u64)> {
    let mut sum: Vec<(f64, u64)> = Vec::new();
    for ((verb, resource), buckets) in h {
        if !keep(verb, resource) {
            continue;
        }
        for &(le, n) in buckets {
            match sum.iter_mut().find(|(l, _)| *l == le) {
                Some(s) => s.1 += n,
                None => sum.push((le, n)),
            }
        }
    }
    sum.sort_by(|a, b| a.0.total_cmp(&b.0));
    sum
}

/// The upper bound of the bucket holding the `q` quantile, and the count.
pub(crate) fn bucket_quantile(buckets: &[(f64, u64)], q: f64) -> (f64, u64) {
    let total = buckets
        .iter()
        .find(|(le, _)| le.is_infinite())
        .map_or(0, |b| b.1);
    let want = (total as f64 * q).ceil() as u64;
    let le = buckets
        .iter()
        .find(|(_, n)| *n >= want.max(1))
        .map_or(f64::INFINITY, |b| b.0);
    (le, total)
}

pub(crate) fn fmt_le(le: f64) -> String {
    if le.is_infinite() {
        "> 60 s".to_string()
    } else if le < 1.0 {
        format!("≤ {:.0} ms", le * 1000.0)
    } else {
        format!("≤ {le} s")
    }
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Network namespaces on this host (`ip netns` names them in /run/netns).
fn netns_count() -> usize {
    std::fs::read_dir("/run/netns").map_or(0, |d| d.count())
}

/// Child processes of `pid` (all threads).
fn children(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .map(|c| c.split_whitespace().count())
        .sum()
}

fn deployment(replicas: usize) -> Bytes {
    let d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "frontend"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80}],
                        "env": [
                            {"name": "MODE", "value": "bench"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                        ],
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"memory": "128Mi"}
                        }
                    }],
                    "terminationGracePeriodSeconds": 30
                }
            }
        }
    });
    Bytes::from(d.to_string())
}

/// What the watch saw of each pod.
#[derive(Default)]
struct PodTimes {
    added: Option<Instant>,
    bound: Option<Instant>,
    running: Option<Instant>,
    created_ts: Option<String>,
}

/// Per-pod times from the watch, with counters the sampler reads.
struct Seen {
    pods: HashMap<String, PodTimes>,
    events: usize,
}

/// Runs the end-to-end benchmark; see the module docs.
pub async fn run(kaji_bin: &Path, work_dir: &Path, p: &E2eParams) -> anyhow::Result<Section> {
    let dir = tempfile::Builder::new()
        .prefix("kaji-bench-e2e-")
        .tempdir_in(work_dir)?;
    let netns_before = netns_count();
    let load_start = loadavg();
    let spawned = Instant::now();
    let nodes = p.nodes.to_string();
    let (server, kubeconfig) = process::start_kaji_args(
        kaji_bin,
        dir.path(),
        "up",
        &["--simulate-nodes", &nodes, "--agent-listen", "127.0.0.1:0"],
    )?;
    let ready_line = spawned.elapsed();
    let pid = server.pid();
    let result = run_against(
        pid,
        &kubeconfig,
        p,
        spawned,
        ready_line,
        netns_before,
        load_start,
    )
    .await;
    server.stop()?;
    drop(dir);
    result
}

#[allow(clippy::too_many_lines)]
async fn run_against(
    pid: u32,
    kubeconfig: &Path,
    p: &E2eParams,
    spawned: Instant,
    ready_line: Duration,
    netns_before: usize,
    load_start: String,
) -> anyhow::Result<Section> {
    let http = http_for(kubeconfig).await?;
    // /readyz, then every node Ready.
    let readyz = loop {
        if let Ok((s, _)) = http.call(Method::GET, "/readyz", None).await {
            if s.is_success() {
                break spawned.elapsed();
            }
        }
        ensure!(
            spawned.elapsed() < NODES_READY_TIMEOUT,
            "/readyz never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let nodes_ready = loop {
        let list: Value =
            serde_json::from_slice(&http.ok(Method::GET, "/api/v1/nodes", None).await?)?;
        let ready = list["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        });
        if ready >= p.nodes {
            break spawned.elapsed();
        }
        ensure!(
            spawned.elapsed() < NODES_READY_TIMEOUT,
            "only {ready} of {} nodes Ready after {NODES_READY_TIMEOUT:?}",
            p.nodes
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "e2e: {} nodes Ready {:.1} s after spawn",
        p.nodes,
        nodes_ready.as_secs_f64()
    );
    ensure_namespace(&http, NS).await?;
    tokio::time::sleep(p.settle).await;
    let (idle_cpu, idle_rss) = cpu_share(pid, p.settle).await?;
    let load_idle = loadavg();

    // The watch starts before the Deployment exists.
    let pods_path = format!("/api/v1/namespaces/{NS}/pods");
    let rv = list_rv(&http, &pods_path).await?;
    let added = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + p.rollout_budget;
    let watch = {
        let (http, added, running) = (http.clone(), added.clone(), running.clone());
        let replicas = p.replicas;
        tokio::spawn(async move {
            let mut seen = Seen {
                pods: HashMap::with_capacity(replicas),
                events: 0,
            };
            let r = watch_events(&http, &pods_path, rv, deadline, |ty, obj, at| {
                seen.events += 1;
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                if ty == "DELETED" || name.is_empty() {
                    return false;
                }
                let pod = seen.pods.entry(name.to_string()).or_default();
                if pod.added.is_none() {
                    pod.added = Some(at);
                    pod.created_ts = obj["metadata"]["creationTimestamp"]
                        .as_str()
                        .map(str::to_string);
                    added.fetch_add(1, Ordering::SeqCst);
                }
                if pod.bound.is_none() && obj["spec"]["nodeName"].as_str().is_some() {
                    pod.bound = Some(at);
                }
                if pod.running.is_none() && obj["status"]["phase"] == "Running" {
                    pod.running = Some(at);
                    return running.fetch_add(1, Ordering::SeqCst) + 1 >= replicas;
                }
                false
            })
            .await;
            (seen, r)
        })
    };

    let metrics_before = request_histograms(&http).await?;
    let (cpu_before, rollout_start) = (cpu_time(pid)?, Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(
        vec![pid],
        vec![added.clone(), running.clone()],
        rollout_start,
        Duration::from_millis(500),
        p.rollout_budget + Duration::from_secs(30),
        stop.clone(),
    );
    // A light client writing ConfigMaps during the rollout: its own
    // mutating-call latencies, next to the server's histogram.
    let writer = {
        let (http, stop) = (http.clone(), stop.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let path = format!("/api/v1/namespaces/{NS}/configmaps");
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) && i < 100_000 {
                let name = format!("probe-{i}");
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"i": i.to_string()}});
                let t = Instant::now();
                match http
                    .ok(Method::POST, &path, Some(Bytes::from(body.to_string())))
                    .await
                {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
                let update = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"i": i.to_string(), "updated": "yes"}});
                let t = Instant::now();
                match http
                    .ok(
                        Method::PUT,
                        &format!("{path}/{name}"),
                        Some(Bytes::from(update.to_string())),
                    )
                    .await
                {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (lat, errors)
        })
    };

    http.ok(
        Method::POST,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        Some(deployment(p.replicas)),
    )
    .await?;
    let (seen, watch_result) = watch.await?;
    let finished = Instant::now();
    let rollout_cpu = cpu_time(pid)? - cpu_before;
    let load_rollout = loadavg();
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.await?;
    let (mut client_lat, client_errors) = writer.await?;
    client_lat.sort_unstable();
    let metrics_after = request_histograms(&http).await?;
    if let Err(e) = &watch_result {
        eprintln!("e2e: the watch failed: {e:#}");
    }

    // Steady state with every pod.
    tokio::time::sleep(p.settle).await;
    let (full_cpu, full_rss) = cpu_share(pid, p.settle).await?;
    let (_, peak_rss) = rss_kib(pid)?;
    let load_full = loadavg();
    let netns_after = netns_count();
    let kids = children(pid);

    // Per-pod figures.
    let since = |t: Instant| t.saturating_duration_since(rollout_start).as_secs_f64();
    let mut startup = Vec::new();
    let mut to_bound = Vec::new();
    let mut bound_to_running = Vec::new();
    let mut last_added = 0.0f64;
    let mut last_running = 0.0f64;
    let mut first_added = f64::MAX;
    let mut running_times = Vec::new();
    let mut created_secs = std::collections::BTreeSet::new();
    for pod in seen.pods.values() {
        let Some(a) = pod.added else { continue };
        first_added = first_added.min(since(a));
        last_added = last_added.max(since(a));
        if let Some(ts) = &pod.created_ts {
            created_secs.insert(ts.clone());
        }
        if let Some(b) = pod.bound {
            to_bound.push(b.saturating_duration_since(a));
            if let Some(r) = pod.running {
                bound_to_running.push(r.saturating_duration_since(b));
            }
        }
        if let Some(r) = pod.running {
            startup.push(r.saturating_duration_since(a));
            last_running = last_running.max(since(r));
            running_times.push(since(r));
        }
    }
    startup.sort_unstable();
    to_bound.sort_unstable();
    bound_to_running.sort_unstable();
    running_times.sort_by(f64::total_cmp);
    let n_running = startup.len();
    let all_running = n_running >= p.replicas;
    let rate = n_running as f64 / last_running.max(1e-9);
    // The steady rate: between 10% and 90% of the pods Running.
    let steady = if running_times.len() >= 10 {
        let (lo, hi) = (
            running_times[running_times.len() / 10],
            running_times[running_times.len() * 9 / 10],
        );
        (running_times.len() * 8 / 10) as f64 / (hi - lo).max(1e-9)
    } else {
        0.0
    };
    let q = |v: &[Duration], x: f64| ms(quantile(v, x)) / 1000.0;

    let delta = histogram_delta(&metrics_after, &metrics_before);
    let mutating = |v: &str| matches!(v, "create" | "update" | "patch" | "delete");
    let all_mut = histogram_sum(&delta, |v, _| mutating(v));
    let (mut_p99, mut_count) = bucket_quantile(&all_mut, 0.99);
    let (mut_p50, _) = bucket_quantile(&all_mut, 0.50);

    let mut tables = Vec::new();
    tables.push(Table {
        caption: format!(
            "Start-up and footprint of `kaji up --simulate-nodes {}` (one process). Load average at start {load_start}, idle {load_idle}, after the rollout {load_rollout}, with all pods {load_full}.",
            p.nodes
        ),
        header: vec!["measure".into(), ">value".into()],
        rows: vec![
            vec!["spawn → ready line printed (s)".into(), format!("{:.2}", ready_line.as_secs_f64())],
            vec!["spawn → /readyz 200 (s)".into(), format!("{:.2}", readyz.as_secs_f64())],
            vec![format!("spawn → all {} nodes Ready (s)", p.nodes), format!("{:.1}", nodes_ready.as_secs_f64())],
            vec![format!("idle RSS, {} nodes, no pods (MiB)", p.nodes), format!("{:.0}", mib(idle_rss))],
            vec!["idle CPU (share of one core; node heartbeats)".into(), format!("{:.0}%", idle_cpu * 100.0)],
            vec![format!("CPU during the rollout (share of one core, {:.0} s)", since(finished)), format!("{:.0}%", rollout_cpu.as_secs_f64() / since(finished).max(1e-9) * 100.0)],
            vec![format!("RSS with {n_running} pods Running, settled (MiB)"), format!("{:.0}", mib(full_rss))],
            vec!["peak RSS over the run, VmHWM (MiB)".into(), format!("{:.0}", mib(peak_rss))],
            vec![format!("CPU with {n_running} pods, settled (share of one core)"), format!("{:.0}%", full_cpu * 100.0)],
        ],
    });
    tables.push(Table {
        caption: format!(
            "Rollout of one Deployment of {} replicas, timed from a pod watch opened before the create (t = 0 at the create request).",
            p.replicas
        ),
        header: vec!["measure".into(), ">value".into()],
        rows: vec![
            vec!["first pod ADDED seen (s)".into(), format!("{:.2}", if first_added == f64::MAX { 0.0 } else { first_added })],
            vec![format!("all {} pods ADDED seen (s)", seen.pods.len()), format!("{last_added:.1}")],
            vec![format!("{n_running} pods Running seen (s)"), format!("{last_running:.1}")],
            vec!["pods/s (Running ÷ time to the last Running)".into(), format!("{rate:.0}")],
            vec!["steady pods/s (10% → 90% Running)".into(), format!("{steady:.0}")],
            vec!["pod startup p50 / p90 / p99 / max (s)".into(), format!("{:.2} / {:.2} / {:.2} / {:.2}", q(&startup, 0.5), q(&startup, 0.9), q(&startup, 0.99), q(&startup, 1.0))],
            vec!["  of which ADDED → bound, p50 / p99 (s)".into(), format!("{:.2} / {:.2}", q(&to_bound, 0.5), q(&to_bound, 0.99))],
            vec!["  of which bound → Running, p50 / p99 (s)".into(), format!("{:.2} / {:.2}", q(&bound_to_running, 0.5), q(&bound_to_running, 0.99))],
            vec!["watch events received".into(), seen.events.to_string()],
        ],
    });
    let mut rows = vec![
        vec![
            "client: ConfigMap create + update, 1 writer, during the rollout".into(),
            client_lat.len().to_string(),
            format!("{:.1}", ms(quantile(&client_lat, 0.5))),
            format!("{:.1}", ms(quantile(&client_lat, 0.99))),
            format!("{:.1}", ms(client_lat.last().copied().unwrap_or_default())),
        ],
        vec![
            "server: every mutating call (apiserver_request_duration_seconds)".into(),
            mut_count.to_string(),
            fmt_le(mut_p50),
            fmt_le(mut_p99),
            String::new(),
        ],
    ];
    for ((verb, resource), buckets) in &delta {
        if !mutating(verb) {
            continue;
        }
        let (p99, n) = bucket_quantile(buckets, 0.99);
        let (p50, _) = bucket_quantile(buckets, 0.5);
        if n >= 100 {
            rows.push(vec![
                format!("server: {verb} {resource}"),
                n.to_string(),
                fmt_le(p50),
                fmt_le(p99),
                String::new(),
            ]);
        }
    }
    tables.push(Table {
        caption: format!(
            "Mutating API calls during the rollout. The server's histogram has buckets of 5, 10, 25, 50, 100, 250, 500 ms, 1 s…; its quantiles are bucket upper bounds. Client errors: {client_errors}."
        ),
        header: vec![
            "calls".into(),
            ">count".into(),
            ">p50 (ms)".into(),
            ">p99 (ms)".into(),
            ">max (ms)".into(),
        ],
        rows,
    });
    let p99_startup = q(&startup, 0.99);
    tables.push(Table {
        caption: "Against Kubernetes' published figures.".into(),
        header: vec![
            "measure".into(),
            ">kaji".into(),
            ">published".into(),
            ">ratio".into(),
        ],
        rows: vec![
            vec![
                "pod startup p99 (s); SLO ≤ 5 s".into(),
                format!("{p99_startup:.2}"),
                "5".into(),
                format!("{:.2}× of the limit", p99_startup / 5.0),
            ],
            vec![
                "pods/s; 5,000-node CI creates at 50/s".into(),
                format!("{rate:.0}"),
                "50".into(),
                format!("{:.1}×", rate / 50.0),
            ],
            vec![
                "mutating call p99, server (s); SLO ≤ 1 s".into(),
                fmt_le(mut_p99),
                "1".into(),
                if mut_p99.is_finite() {
                    format!("≤ {:.2}× of the limit", mut_p99)
                } else {
                    "over".into()
                },
            ],
            vec![
                "server RSS with all pods (MiB); k3s server ~1,430–1,610 MB".into(),
                format!("{:.0}", mib(full_rss)),
                "1,428–1,606 MB".into(),
                format!("{:.2}×", mib(full_rss) * 1.048_576 / 1596.0),
            ],
        ],
    });

    let point = |s: &Sample, i: usize| (format!("{:.1}", s.t), s.counts[i] as f64);
    let plots = vec![
        Plot {
            file: "e2e-pods-running.png".into(),
            title: format!(
                "{} replicas on {} simulated nodes: pods seen by a watch",
                p.replicas, p.nodes
            ),
            x_label: "seconds since the Deployment was created".into(),
            y_label: "pods".into(),
            kind: PlotKind::Lines,
            series: vec![
                Series {
                    name: "kaji: pods created (ADDED)".into(),
                    points: samples.iter().map(|s| point(s, 0)).collect(),
                },
                Series {
                    name: "kaji: pods Running".into(),
                    points: samples.iter().map(|s| point(s, 1)).collect(),
                },
            ],
        },
        Plot {
            file: "e2e-rss.png".into(),
            title: "kaji up: resident memory during the rollout".into(),
            x_label: "seconds since the Deployment was created".into(),
            y_label: "RSS (MiB)".into(),
            kind: PlotKind::Lines,
            series: vec![Series {
                name: "kaji up (API server, controllers, scheduler, simulated nodes)".into(),
                points: samples
                    .iter()
                    .map(|s| (format!("{:.1}", s.t), mib(s.procs[0].0)))
                    .collect(),
            }],
        },
    ];

    let mut notes = vec![
        format!(
            "Pod startup p99 {p99_startup:.2} s against Kubernetes' SLO of p99 ≤ 5 s (stateless pods, image pulls excluded, measured to Running as seen by a watch): {:.2}× of the limit{}.",
            p99_startup / 5.0,
            if p99_startup <= 5.0 { ", within it" } else { ", over it" }
        ),
        format!(
            "{rate:.0} pods/s to the last Running pod ({steady:.0}/s in the steady middle), {:.1}× the 50 pods/s at which Kubernetes' 5,000-node CI creates pods (a throughput its load test sets, not a ceiling of kube-apiserver).",
            rate / 50.0
        ),
        format!(
            "Mutating calls: the server's p99 over {mut_count} creates/updates/patches/deletes during the rollout is {} (SLO p99 ≤ 1 s per resource and verb); a separate client writing ConfigMaps saw p99 {:.0} ms.",
            fmt_le(mut_p99),
            ms(quantile(&client_lat, 0.99))
        ),
        format!(
            "RSS {:.0} MiB with {n_running} pods on {} nodes in one process (API server, store, controllers, scheduler and every simulated node's agent), against k3s's published minimum RAM of 1,596 MB for a server with a workload and 1,428 MB for a cluster with a single agent (K3s Resource Profiling, docs.k3s.io: K3s v1.26.5, Kine/SQLite, a single node running Traefik, Prometheus + Grafana and an nginx Deployment; 95th percentile at steady state): {:.2}× — different workloads, so a scale, not a like-for-like ratio.",
            mib(full_rss),
            p.nodes,
            mib(full_rss) * 1.048_576 / 1596.0
        ),
        format!(
            "Per-pod times come from the watch, not creationTimestamp: that has 1 s resolution ({} distinct values over {} pods), too coarse for sub-second startup.",
            created_secs.len(),
            seen.pods.len()
        ),
        format!(
            "Simulated nodes run no processes and create no network namespaces: /run/netns held {netns_before} entries before and {netns_after} after, and kaji had {kids} child processes."
        ),
    ];
    if !all_running {
        notes.push(format!(
            "Only {n_running} of {} pods were Running when the {:.0} s budget ran out.",
            p.replicas,
            p.rollout_budget.as_secs_f64()
        ));
    }
    if let Err(e) = watch_result {
        notes.push(format!("The pod watch failed: {e:#}."));
    }
    Ok(Section {
        title: "End to end: a Deployment on simulated nodes".into(),
        what: format!(
            "A release `kaji up --simulate-nodes {nodes}` (API server on the embedded store, controllers, scheduler and {nodes} simulated nodes, which report pods Running without running processes, like kwok) is started on a temporary data dir and a free loopback port; the benchmark times it until `/readyz` answers and every node is Ready, lets it settle, and reads its idle RSS and CPU. It then opens a pod watch and creates one Deployment of {replicas} replicas (nginx container with a port, two env vars, one from the downward API, CPU and memory requests and a memory limit; the server adds the default not-ready/unreachable tolerations). Each pod's creation is the arrival of its ADDED event and its start the first event with phase Running; startup latency is the difference. A client writes a ConfigMap and updates it every 50 ms meanwhile, and the server's request-latency histogram is read before and after. RSS and CPU time of the process are sampled from /proc every 0.5 s. The client runs on the same cores as the server.",
            nodes = p.nodes,
            replicas = p.replicas
        ),
        command: format!(
            "cargo build --release -p kaji -p kaji-bench && target/release/kaji-bench e2e --nodes {} --replicas {}",
            p.nodes, p.replicas
        ),
        tables,
        plots,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_should_parse_subtract_and_give_bucket_quantiles() {
        let before = parse_histograms(
            "apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"0.005\"} 1\n\
             apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"0.01\"} 1\n\
             apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"+Inf\"} 1\n",
        );
        let after = parse_histograms(
            "apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"0.005\"} 90\n\
             apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"0.01\"} 101\n\
             apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"+Inf\"} 101\n\
             apiserver_request_duration_seconds_bucket{verb=\"list\",resource=\"pods\",le=\"+Inf\"} 7\n",
        );
        let d = histogram_delta(&after, &before);
        let sum = histogram_sum(&d, |v, _| v == "create");
        assert_eq!(bucket_quantile(&sum, 0.99), (0.01, 100));
        assert_eq!(bucket_quantile(&sum, 0.5), (0.005, 100));
    }
}
