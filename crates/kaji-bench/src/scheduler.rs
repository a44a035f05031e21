//! The scheduler through the real API, in the shape of kube-scheduler's
//! scheduler_perf `SchedulingBasic/5000Nodes_10000Pods`: a `kaji apiserver`
//! and a `kaji scheduler` as two processes, 5,000 Nodes created through the
//! API, 1,000 pods already bound, then 10,000 pending pods created by many
//! clients; scheduled pods per second from a watch.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use crate::api::ensure_namespace;
use crate::e2e::{
    bucket_quantile, cpu_share, fmt_le, histogram_delta, histogram_sum, http_for, list_rv, mib,
    request_histograms, spawn_sampler, watch_events, Sample,
};
use crate::measure::{drive, ms, quantile};
use crate::process::{self, cpu_time};
use crate::report::{load_average as loadavg, Plot, PlotKind, Section, Series, Table};

/// Sizes and limits of the scheduler run.
#[derive(Debug, Clone)]
pub struct SchedulerParams {
    /// Nodes created through the API.
    pub nodes: usize,
    /// Pods created already bound (`spec.nodeName` set) before measuring.
    pub init_pods: usize,
    /// Pending pods created and measured.
    pub pods: usize,
    /// Concurrent clients creating them.
    pub clients: usize,
    /// Upper bound on the measured phase.
    pub budget: Duration,
}

impl Default for SchedulerParams {
    fn default() -> Self {
        SchedulerParams {
            nodes: 5000,
            init_pods: 1000,
            pods: 10_000,
            clients: 64,
            budget: Duration::from_secs(120),
        }
    }
}

const NS: &str = "kaji-bench-sched";
/// kube-scheduler's CI floor for `SchedulingBasic/5000Nodes_10000Pods`.
const K8S_FLOOR: f64 = 680.0;

/// A node as scheduler_perf's `node-default.yaml`: 4 CPUs, 32Gi, 110 pods, Ready.
fn node(i: usize) -> Bytes {
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    Bytes::from(
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": format!("sched-node-{i}"), "labels": {
                "kubernetes.io/hostname": format!("sched-node-{i}"),
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
            }},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        })
        .to_string(),
    )
}

/// A pod as scheduler_perf's `pod-default.yaml` (pause, 100m / 500Mi).
fn pod(name: &str, node: Option<String>) -> Bytes {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "sched-bench"}},
        "spec": {"containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "ports": [{"containerPort": 80}],
            "resources": {
                "requests": {"cpu": "100m", "memory": "500Mi"},
                "limits": {"cpu": "100m", "memory": "500Mi"},
            },
        }]},
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = Value::String(n);
    }
    Bytes::from(p.to_string())
}

/// Runs the scheduler benchmark; see the module docs.
pub async fn run(kaji_bin: &Path, work_dir: &Path, p: &SchedulerParams) -> anyhow::Result<Section> {
    let dir = tempfile::Builder::new()
        .prefix("kaji-bench-sched-")
        .tempdir_in(work_dir)?;
    let (server, kubeconfig) = process::start_kaji_args(kaji_bin, dir.path(), "apiserver", &[])?;
    let scheduler = process::spawn_logged(
        "kaji scheduler",
        kaji_bin,
        &[
            OsStr::new("scheduler"),
            OsStr::new("--kubeconfig"),
            kubeconfig.as_os_str(),
        ],
        &dir.path().join("scheduler.log"),
    );
    let result = match scheduler {
        Ok(scheduler) => {
            let r = run_against(server.pid(), scheduler.pid(), &kubeconfig, p).await;
            scheduler.stop()?;
            r
        }
        Err(e) => Err(e),
    };
    server.stop()?;
    drop(dir);
    result
}

#[allow(clippy::too_many_lines)]
async fn run_against(
    api_pid: u32,
    sched_pid: u32,
    kubeconfig: &Path,
    p: &SchedulerParams,
) -> anyhow::Result<Section> {
    let http = http_for(kubeconfig).await?;
    ensure_namespace(&http, NS).await?;
    let load_start = loadavg();

    // 5,000 nodes and 1,000 bound pods, as fast as 64 clients go.
    let setup = Instant::now();
    let h = http.clone();
    let nodes = drive(p.nodes, p.clients, p.budget, move |i| {
        let h = h.clone();
        async move {
            h.ok(Method::POST, "/api/v1/nodes", Some(node(i)))
                .await
                .map(drop)
        }
    })
    .await;
    ensure!(
        nodes.ok == p.nodes,
        "created {} of {} nodes: {:?}",
        nodes.ok,
        p.nodes,
        nodes.first_error
    );
    let h = http.clone();
    let n = p.nodes;
    let pods_path = format!("/api/v1/namespaces/{NS}/pods");
    let path = pods_path.clone();
    let init = drive(p.init_pods, p.clients, p.budget, move |i| {
        let (h, path) = (h.clone(), path.clone());
        async move {
            let body = pod(&format!("init-{i}"), Some(format!("sched-node-{}", i % n)));
            h.ok(Method::POST, &path, Some(body)).await.map(drop)
        }
    })
    .await;
    ensure!(
        init.ok == p.init_pods,
        "created {} of {} bound pods: {:?}",
        init.ok,
        p.init_pods,
        init.first_error
    );
    // The scheduler has its caches once it binds a first pod.
    http.ok(Method::POST, &pods_path, Some(pod("warm-up", None)))
        .await?;
    let warm = Instant::now();
    loop {
        let got: Value = serde_json::from_slice(
            &http
                .ok(Method::GET, &format!("{pods_path}/warm-up"), None)
                .await?,
        )?;
        if got["spec"]["nodeName"].as_str().is_some() {
            break;
        }
        ensure!(
            warm.elapsed() < Duration::from_secs(60),
            "the scheduler bound no pod within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup_time = setup.elapsed();
    // Let the node and pod informers drain before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_sched_cpu, idle_sched_rss) = cpu_share(sched_pid, Duration::from_secs(2)).await?;

    // The measured phase.
    let rv = list_rv(&http, &pods_path).await?;
    let created = Arc::new(AtomicUsize::new(0));
    let bound = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + p.budget;
    let watch = {
        let (http, bound, path) = (http.clone(), bound.clone(), pods_path.clone());
        let want = p.pods;
        tokio::spawn(async move {
            let mut seen: HashMap<String, (Option<Instant>, Option<Instant>)> =
                HashMap::with_capacity(want);
            let r = watch_events(&http, &path, rv, deadline, |ty, obj, at| {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                if ty == "DELETED" || !name.starts_with("m-") {
                    return false;
                }
                let e = seen.entry(name.to_string()).or_default();
                if e.0.is_none() {
                    e.0 = Some(at);
                }
                if e.1.is_none() && obj["spec"]["nodeName"].as_str().is_some() {
                    e.1 = Some(at);
                    return bound.fetch_add(1, Ordering::SeqCst) + 1 >= want;
                }
                false
            })
            .await;
            (seen, r)
        })
    };
    let metrics_before = request_histograms(&http).await?;
    let cpu0 = (cpu_time(api_pid)?, cpu_time(sched_pid)?);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(
        vec![api_pid, sched_pid],
        vec![created.clone(), bound.clone()],
        start,
        Duration::from_millis(250),
        p.budget + Duration::from_secs(10),
        stop.clone(),
    );
    let (h, c, path) = (http.clone(), created.clone(), pods_path.clone());
    let creates = drive(p.pods, p.clients, p.budget, move |i| {
        let (h, c, path) = (h.clone(), c.clone(), path.clone());
        async move {
            h.ok(Method::POST, &path, Some(pod(&format!("m-{i}"), None)))
                .await?;
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
    .await;
    let load_created = loadavg();
    let (seen, watch_result) = watch.await?;
    let end = Instant::now();
    let cpu1 = (cpu_time(api_pid)?, cpu_time(sched_pid)?);
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.await?;
    let metrics_after = request_histograms(&http).await?;
    let load_end = loadavg();
    let (api_rss, api_hwm) = process::rss_kib(api_pid)?;
    let (sched_rss, sched_hwm) = process::rss_kib(sched_pid)?;

    // Figures.
    let since = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
    let mut bound_at: Vec<f64> = Vec::with_capacity(p.pods);
    let mut latency = Vec::with_capacity(p.pods);
    for (added, b) in seen.values() {
        if let Some(b) = b {
            bound_at.push(since(*b));
            if let Some(a) = added {
                latency.push(b.saturating_duration_since(*a));
            }
        }
    }
    bound_at.sort_by(f64::total_cmp);
    latency.sort_unstable();
    let n_bound = bound_at.len();
    let last = bound_at.last().copied().unwrap_or(0.0);
    let first = bound_at.first().copied().unwrap_or(0.0);
    let rate = n_bound as f64 / last.max(1e-9);
    // scheduler_perf's SchedulingThroughput: pods bound in each second of
    // the measured phase; its threshold applies to their average.
    let secs = last.ceil().max(1.0) as usize;
    let mut per_sec = vec![0usize; secs];
    for t in &bound_at {
        per_sec[(*t as usize).min(secs - 1)] += 1;
    }
    let mut sorted_per_sec = per_sec.clone();
    sorted_per_sec.sort_unstable();
    let avg_per_sec = n_bound as f64 / secs as f64;
    let pct = |q: f64| {
        let i = ((sorted_per_sec.len() as f64 - 1.0) * q).round() as usize;
        sorted_per_sec[i.min(sorted_per_sec.len() - 1)]
    };
    let steady = if n_bound >= 10 {
        let (lo, hi) = (bound_at[n_bound / 10], bound_at[n_bound * 9 / 10]);
        (n_bound * 8 / 10) as f64 / (hi - lo).max(1e-9)
    } else {
        0.0
    };
    let wall = end.duration_since(start).as_secs_f64();
    let api_cpu = (cpu1.0 - cpu0.0).as_secs_f64();
    let sched_cpu = (cpu1.1 - cpu0.1).as_secs_f64();
    let delta = histogram_delta(&metrics_after, &metrics_before);
    let (create_p99, create_n) = bucket_quantile(
        &histogram_sum(&delta, |v, r| v == "create" && r == "pods"),
        0.99,
    );

    let tables = vec![
        Table {
            caption: format!(
                "Set-up: {} Nodes and {} bound pods created by {} clients, then the scheduler's first binding: {:.1} s. Load average at start {load_start}, after the creates {load_created}, at the end {load_end}.",
                p.nodes, p.init_pods, p.clients, setup_time.as_secs_f64()
            ),
            header: vec!["measure".into(), ">value".into()],
            rows: vec![
                vec![format!("{} pending pods created by {} clients (s)", creates.ok, p.clients), format!("{:.2}", creates.elapsed.as_secs_f64())],
                vec!["create rate (pods/s)".into(), format!("{:.0}", creates.per_sec())],
                vec!["create latency, client, p50 / p99 (ms)".into(), format!("{:.1} / {:.1}", ms(creates.p50), ms(creates.p99))],
                vec![format!("create pods, server p99 over {create_n}"), fmt_le(create_p99)],
                vec!["first pod bound (s after the first create)".into(), format!("{first:.2}")],
                vec![format!("all {n_bound} pods bound (s after the first create)"), format!("{last:.2}")],
                vec!["**scheduled pods/s (first create → last bound)**".into(), format!("**{rate:.0}**")],
                vec!["steady pods/s (10% → 90% bound)".into(), format!("{steady:.0}")],
                vec!["per-second throughput: average / p50 / p90 / p99 (pods/s)".into(), format!("{avg_per_sec:.0} / {} / {} / {}", pct(0.5), pct(0.9), pct(0.99))],
                vec!["ADDED seen → bound seen, p50 / p99 (ms)".into(), format!("{:.0} / {:.0}", ms(quantile(&latency, 0.5)), ms(quantile(&latency, 0.99)))],
                vec!["CPU, API server / scheduler (share of one core)".into(), format!("{:.0}% / {:.0}%", api_cpu / wall * 100.0, sched_cpu / wall * 100.0)],
                vec!["scheduler CPU per pod (ms)".into(), format!("{:.2}", sched_cpu * 1000.0 / n_bound.max(1) as f64)],
                vec!["RSS, API server now / peak (MiB)".into(), format!("{:.0} / {:.0}", mib(api_rss), mib(api_hwm))],
                vec!["RSS, scheduler before / now / peak (MiB)".into(), format!("{:.0} / {:.0} / {:.0}", mib(idle_sched_rss), mib(sched_rss), mib(sched_hwm))],
                vec!["scheduler CPU idle with 5,000 nodes (share of one core)".into(), format!("{:.0}%", idle_sched_cpu * 100.0)],
            ],
        },
        Table {
            caption: "Against kube-scheduler's CI floor.".into(),
            header: vec!["measure".into(), ">kaji".into(), ">kube-scheduler floor".into(), ">ratio".into()],
            rows: vec![
                vec!["SchedulingBasic/5000Nodes_10000Pods, pods/s (average)".into(), format!("{avg_per_sec:.0}"), format!("{K8S_FLOOR:.0}"), format!("{:.2}×", avg_per_sec / K8S_FLOOR)],
                vec!["first create → last bound, pods/s".into(), format!("{rate:.0}"), format!("{K8S_FLOOR:.0}"), format!("{:.2}×", rate / K8S_FLOOR)],
            ],
        },
    ];
    let point = |s: &Sample, i: usize| (format!("{:.2}", s.t), s.counts[i] as f64);
    let plots = vec![Plot {
        file: "scheduler-bound.png".into(),
        title: format!(
            "{} pending pods onto {} nodes: created and bound over time",
            p.pods, p.nodes
        ),
        x_label: "seconds since the first create".into(),
        y_label: "pods".into(),
        kind: PlotKind::Lines,
        series: vec![
            Series {
                name: "kaji: pods created".into(),
                points: samples.iter().map(|s| point(s, 0)).collect(),
            },
            Series {
                name: "kaji: pods bound".into(),
                points: samples.iter().map(|s| point(s, 1)).collect(),
            },
            Series {
                name: format!("kube-scheduler floor ({K8S_FLOOR:.0} pods/s)"),
                points: vec![
                    ("0".into(), 0.0),
                    (format!("{:.2}", p.pods as f64 / K8S_FLOOR), p.pods as f64),
                ],
            },
        ],
    }];
    let mut notes = vec![
        format!(
            "{avg_per_sec:.0} pods/s averaged over the measured seconds ({rate:.0}/s first create to last bound), {:.2}× kube-scheduler's CI floor of {K8S_FLOOR:.0} pods/s for scheduler_perf SchedulingBasic/5000Nodes_10000Pods (kubernetes/kubernetes test/integration/scheduler_perf/misc/performance-config.yaml: initNodes 5000, initPods 1000, measurePods 10000, threshold 680 on the average SchedulingThroughput).",
            avg_per_sec / K8S_FLOOR
        ),
        "Only `kaji apiserver` and `kaji scheduler` run, as in scheduler_perf (an API server and the scheduler; no controller manager, no kubelets): nothing renews the nodes' Leases and no node lifecycle controller runs, so no node is tainted not-ready or unreachable during the run. Under `kaji up --runtime none` the node lifecycle controller would mark these Lease-less nodes NotReady after the 40 s grace period and the taint manager would taint them.".into(),
        format!(
            "Differences from scheduler_perf: there the 1,000 initial pods are scheduled too, and it creates pods from one client with a QPS limit; here they are created already bound (spec.nodeName set) and the 10,000 measured pods come from {} concurrent HTTPS clients on the same 2 cores as the API server and scheduler, so creation itself can bound the rate: pods were created at {:.0}/s.",
            p.clients,
            creates.per_sec()
        ),
        "Scheduling cycles alone (no API, same shape): `cargo test -p kaji-scheduler --release --test throughput -- --ignored --nocapture scheduling_cycles`.".into(),
    ];
    if n_bound < p.pods {
        notes.push(format!(
            "Only {n_bound} of {} pods were bound within the {:.0} s budget.",
            p.pods,
            p.budget.as_secs_f64()
        ));
    }
    if let Some(e) = &creates.first_error {
        notes.push(format!("{} creates failed; first: {e}", creates.errors));
    }
    if let Err(e) = watch_result {
        notes.push(format!("The pod watch failed: {e:#}."));
    }
    Ok(Section {
        title: "Scheduler: SchedulingBasic through the API".into(),
        what: format!(
            "scheduler_perf's SchedulingBasic shape over the real API: a release `kaji apiserver` (embedded store) and a `kaji scheduler` as separate processes on loopback, with HTTPS and the admin client certificate. {} Nodes are created through the API (4 CPU, 32Gi, 110 pods, Ready, three zones), then {} pods already bound by spec.nodeName, then a warm-up pod the scheduler must bind. A pod watch is opened and {} pending pods (pause, requests and limits of 100m CPU and 500Mi, as scheduler_perf's pod-default.yaml) are created by {} concurrent clients; each pod's binding is the first watch event carrying spec.nodeName. Throughput is bound pods over the time from the first create to the last binding seen, and, as scheduler_perf reports it, the average of pods bound per second.",
            p.nodes, p.init_pods, p.pods, p.clients
        ),
        command: format!(
            "cargo build --release -p kaji -p kaji-bench && target/release/kaji-bench scheduler --nodes {} --pods {} --clients {}",
            p.nodes, p.pods, p.clients
        ),
        tables,
        plots,
        notes,
    })
}
