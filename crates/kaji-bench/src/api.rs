//! The API-server benchmark: a real `kaji up` over HTTPS with the admin client certificate.
//!
//! Requests go through kube-rs's `Client::send` with pre-built JSON bodies and
//! responses are read as bytes, never deserialised into typed objects, so the
//! client spends its CPU on TLS and HTTP only (client and server share the
//! same cores).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;

use crate::measure::{self, drive, ms, quantile, Summary};
use crate::process::{self, rss_kib};
use crate::report::{fig, ratio, Plot, PlotKind, Section, Series, Table};

/// Sizes of the API workloads.
#[derive(Debug, Clone)]
pub struct ApiParams {
    /// Objects created per create workload.
    pub creates: usize,
    /// GETs per read workload.
    pub gets: usize,
    /// Pods present for the LIST workloads.
    pub list_pods: usize,
    /// Concurrent full LISTs.
    pub concurrent_lists: usize,
    /// Watchers in the fan-out.
    pub watchers: usize,
    /// Changes written while they watch.
    pub changes: usize,
    /// The "many clients" concurrency.
    pub clients: usize,
    /// Upper bound on any one workload's duration.
    pub budget: Duration,
    /// The store `kaji up` runs on: `embedded`, or `etcd` for a fresh etcd
    /// started by the benchmark (needs the `etcd` feature).
    pub store: String,
}

const NS: &str = "kaji-bench";
const FAN_NS: &str = "kaji-bench-fan";

/// A thin raw-HTTP handle on the API server.
#[derive(Clone)]
pub(crate) struct Http(pub(crate) kube::Client);

impl Http {
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("accept", "application/json");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(kube::client::Body::from(body.unwrap_or_default()))?;
        let resp = self.0.send(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    pub(crate) async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.call(method.clone(), path, body).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            bail!("{method} {path}: {status}: {text}");
        }
        Ok(bytes)
    }
}

fn value_256() -> String {
    "v".repeat(256)
}

fn configmap(name: &str) -> Bytes {
    let v = value_256();
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"data":{{"value":"{v}"}}}}"#
    ))
}

fn pod(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"web","image":"nginx:1.27","ports":[{{"containerPort":80}}],"resources":{{"requests":{{"cpu":"10m","memory":"16Mi"}}}}}}]}}}}"#
    ))
}

pub(crate) async fn ensure_namespace(http: &Http, ns: &str) -> anyhow::Result<()> {
    let body = format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#);
    let (status, bytes) = http
        .call(Method::POST, "/api/v1/namespaces", Some(body.into()))
        .await?;
    ensure!(
        status.is_success() || status == StatusCode::CONFLICT,
        "creating namespace {ns}: {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(())
}

/// Creates `count` objects named `{prefix}-{i}` from `clients` tasks.
async fn creates(
    http: &Http,
    resource: &'static str,
    prefix: &str,
    count: usize,
    clients: usize,
    budget: Duration,
) -> Summary {
    let http = http.clone();
    let prefix = prefix.to_string();
    let path = format!("/api/v1/namespaces/{NS}/{resource}");
    drive(count, clients, budget, move |i| {
        let (http, path) = (http.clone(), path.clone());
        let name = format!("{prefix}-{i}");
        async move {
            let body = if resource == "pods" {
                pod(&name)
            } else {
                configmap(&name)
            };
            http.ok(Method::POST, &path, Some(body)).await.map(drop)
        }
    })
    .await
}

/// Progress on stderr: one workload's outcome.
pub(crate) fn print_summary(name: &str, clients: usize, s: &Summary) {
    eprintln!("  {}", s.row(name, clients));
    if let Some(e) = &s.first_error {
        eprintln!("  {name}: {} errors, first: {e}", s.errors);
    }
}

/// What the LIST workload measured.
#[derive(Debug, Clone, Default)]
struct ListRun {
    items: usize,
    bytes: usize,
    rss_start_mib: f64,
    rss_before_mib: f64,
    sequential: Vec<Duration>,
    rss_after_seq_mib: f64,
    peak_seq_mib: f64,
    concurrent: Option<Summary>,
    rss_after_conc_mib: f64,
    peak_conc_mib: f64,
    /// Whether the peaks are per phase (`clear_refs` worked) or since start.
    peak_reset: bool,
}

/// What the watch fan-out measured.
#[derive(Debug, Clone, Default)]
struct WatchRun {
    established: usize,
    setup: Duration,
    written: usize,
    write_time: Duration,
    write_errors: usize,
    delivered: usize,
    expected: usize,
    per_sec: f64,
    early: usize,
    /// Sorted delays from each write's acknowledgement to each receipt.
    from_ack: Vec<Duration>,
    /// Sorted delays from each write being sent to each receipt.
    from_sent: Vec<Duration>,
    watcher_errors: usize,
}

/// Everything one `kaji up` measured.
#[derive(Default)]
struct StoreRun {
    /// (workload, clients, summary), in order.
    ops: Vec<(String, usize, Summary)>,
    list: Option<Result<ListRun, String>>,
    watch: Option<Result<WatchRun, String>>,
}

/// Runs every API workload against a fresh `kaji up` per store in
/// `p.store` (comma-separated: `embedded`, `etcd`) and returns the section.
pub async fn run(
    kaji_bin: &Path,
    work_dir: &Path,
    p: &ApiParams,
    command: &str,
) -> anyhow::Result<Section> {
    let stores: Vec<String> = p
        .store
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    anyhow::ensure!(!stores.is_empty(), "--store names no store");
    let mut runs = Vec::new();
    for store in &stores {
        eprintln!("api: kaji up on the {store} store");
        let r = run_store(kaji_bin, work_dir, p, store).await;
        if let Err(e) = &r {
            eprintln!("api on {store}: {e:#}");
        }
        runs.push((store.clone(), r.map_err(|e| format!("{e:#}"))));
    }
    Ok(section(&runs, p, command))
}

async fn run_store(
    kaji_bin: &Path,
    work_dir: &Path,
    p: &ApiParams,
    store: &str,
) -> anyhow::Result<StoreRun> {
    let dir = tempfile::Builder::new()
        .prefix("kaji-bench-api-")
        .tempdir_in(work_dir)?;
    let etcd = start_store(store, dir.path())?;
    let url = etcd
        .as_ref()
        .map_or("embedded".to_string(), |(_, url)| url.clone());
    let started = process::start_kaji_on(kaji_bin, dir.path(), &url);
    let (server, kubeconfig) = match started {
        Ok(s) => s,
        Err(e) => {
            if let Some((etcd, _)) = etcd {
                let _ = etcd.stop();
            }
            return Err(e);
        }
    };
    let pid = server.pid();
    let result = run_against(pid, &kubeconfig, p).await;
    let stopped = server.stop();
    if let Some((etcd, _)) = etcd {
        etcd.stop()?;
    }
    stopped?;
    result
}

/// Starts the etcd the API benchmark's `kaji up` runs on, if it runs on one.
#[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
fn start_store(store: &str, dir: &Path) -> anyhow::Result<Option<(process::Proc, String)>> {
    match store {
        "embedded" => Ok(None),
        #[cfg(feature = "etcd")]
        "etcd" => {
            let (etcd, url) = process::start_etcd(dir)?;
            // `kaji up` retries nothing at start: wait until etcd answers.
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err() {
                anyhow::ensure!(Instant::now() < deadline, "etcd did not listen in 30 s");
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(500));
            Ok(Some((etcd, url.replace("http://", "etcd://"))))
        }
        other => anyhow::bail!(
            "unknown --store {other:?}: embedded, or etcd (built with the etcd feature)"
        ),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS (Linux's
/// `clear_refs` with `5`); false when that is not allowed.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

async fn run_against(pid: u32, kubeconfig: &Path, p: &ApiParams) -> anyhow::Result<StoreRun> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let http = Http(kube::Client::try_from(config)?);
    ensure_namespace(&http, NS).await?;
    ensure_namespace(&http, FAN_NS).await?;
    let (rss0, _) = rss_kib(pid)?;
    let mut out = StoreRun::default();

    let c = p.clients;
    let mut pods_made = 0;
    for (resource, kind, short) in [("configmaps", "ConfigMap", "cm"), ("pods", "Pod", "pod")] {
        for clients in [1, c] {
            let prefix = format!("{short}-{clients}");
            let s = creates(&http, resource, &prefix, p.creates, clients, p.budget).await;
            let name = format!("create {kind}");
            print_summary(&name, clients, &s);
            if resource == "pods" {
                pods_made += s.ok;
            }
            out.ops.push((name, clients, s));
        }
    }
    for clients in [1, c] {
        let http = http.clone();
        // Read back configmaps the single-client create made (`cm-1-0..creates`).
        let n = p.creates.max(1);
        let s = drive(p.gets, clients, p.budget, move |i| {
            let http = http.clone();
            let path = format!("/api/v1/namespaces/{NS}/configmaps/cm-1-{}", (i * 7919) % n);
            async move { http.ok(Method::GET, &path, None).await.map(drop) }
        })
        .await;
        print_summary("get ConfigMap", clients, &s);
        out.ops.push(("get ConfigMap".into(), clients, s));
    }

    // LIST: fill up to `list_pods` pods, then read them all at once.
    let fill = p.list_pods.saturating_sub(pods_made);
    let s = creates(&http, "pods", "fill", fill, c, p.budget * 4).await;
    print_summary("create Pod (fill for LIST)", c, &s);
    out.ops.push(("create Pod (fill for LIST)".into(), c, s));
    let list = list_run(&http, pid, p, rss0).await;
    if let Err(e) = &list {
        eprintln!("  LIST: {e:#}");
    }
    out.list = Some(list.map_err(|e| format!("{e:#}")));
    let watch = watch_fanout(&http, p).await;
    if let Err(e) = &watch {
        eprintln!("  watch fan-out: {e:#}");
    }
    out.watch = Some(watch.map_err(|e| format!("{e:#}")));
    Ok(out)
}

async fn list_run(http: &Http, pid: u32, p: &ApiParams, rss0: u64) -> anyhow::Result<ListRun> {
    let list_path = format!("/api/v1/namespaces/{NS}/pods");
    let body = http.ok(Method::GET, &list_path, None).await?;
    let mut r = ListRun {
        items: serde_json::from_slice::<serde_json::Value>(&body)?["items"]
            .as_array()
            .map_or(0, Vec::len),
        bytes: body.len(),
        rss_start_mib: mib(rss0),
        ..ListRun::default()
    };
    drop(body);
    r.rss_before_mib = mib(rss_kib(pid)?.0);
    r.peak_reset = reset_peak(pid);
    let list_start = Instant::now();
    for _ in 0..5 {
        if list_start.elapsed() > p.budget {
            break;
        }
        let t = Instant::now();
        r.bytes = http.ok(Method::GET, &list_path, None).await?.len();
        r.sequential.push(t.elapsed());
        eprintln!("  LIST of {} pods: {:.0} ms", r.items, ms(t.elapsed()));
    }
    r.sequential.sort_unstable();
    let (rss, hwm) = rss_kib(pid)?;
    (r.rss_after_seq_mib, r.peak_seq_mib) = (mib(rss), mib(hwm));
    r.peak_reset &= reset_peak(pid);
    let (http2, path2) = (http.clone(), list_path.clone());
    let conc = drive(
        p.concurrent_lists,
        p.concurrent_lists,
        p.budget,
        move |_| {
            let (http, path) = (http2.clone(), path2.clone());
            async move { http.ok(Method::GET, &path, None).await.map(drop) }
        },
    )
    .await;
    print_summary("concurrent full LIST", p.concurrent_lists, &conc);
    let (rss, hwm) = rss_kib(pid)?;
    (r.rss_after_conc_mib, r.peak_conc_mib) = (mib(rss), mib(hwm));
    r.concurrent = Some(conc);
    Ok(r)
}

async fn watch_fanout(http: &Http, p: &ApiParams) -> anyhow::Result<WatchRun> {
    let list = http
        .ok(
            Method::GET,
            &format!("/api/v1/namespaces/{FAN_NS}/configmaps"),
            None,
        )
        .await?;
    let rv = serde_json::from_slice::<serde_json::Value>(&list)?["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?
        .to_string();
    let ready = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + p.budget;
    let setup = Instant::now();
    let mut tasks = Vec::with_capacity(p.watchers);
    for _ in 0..p.watchers {
        tasks.push(tokio::spawn(crate::crd::watcher(
            http.clone(),
            format!(
                "/api/v1/namespaces/{FAN_NS}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=300"
            ),
            "fan-".to_string(),
            p.changes,
            ready.clone(),
            deadline,
        )));
    }
    while ready.load(Ordering::SeqCst) < p.watchers && setup.elapsed() < p.budget {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut w = WatchRun {
        established: ready.load(Ordering::SeqCst),
        setup: setup.elapsed(),
        expected: p.watchers * p.changes,
        ..WatchRun::default()
    };
    eprintln!(
        "  watch fan-out: {} of {} watchers in {:.2} s",
        w.established,
        p.watchers,
        w.setup.as_secs_f64()
    );

    // One writer, as fast as the server acknowledges; record each acknowledgement.
    let mut acks: Vec<Option<Instant>> = vec![None; p.changes];
    let mut sent: Vec<Option<Instant>> = vec![None; p.changes];
    let write_start = Instant::now();
    let path = format!("/api/v1/namespaces/{FAN_NS}/configmaps");
    for (i, (sent_at, ack)) in sent.iter_mut().zip(acks.iter_mut()).enumerate() {
        if Instant::now() > deadline {
            break;
        }
        *sent_at = Some(Instant::now());
        let r = tokio::time::timeout(
            measure::OP_TIMEOUT,
            http.ok(Method::POST, &path, Some(configmap(&format!("fan-{i:05}")))),
        )
        .await;
        match r {
            Ok(Ok(_)) => *ack = Some(Instant::now()),
            _ => w.write_errors += 1,
        }
    }
    w.write_time = write_start.elapsed();
    w.written = acks.iter().flatten().count();

    let mut last_receipt = write_start;
    for t in tasks {
        match t.await {
            Ok(Ok(got)) => {
                w.delivered += got.len();
                for (idx, at) in got {
                    last_receipt = last_receipt.max(at);
                    if let Some(Some(s)) = sent.get(idx) {
                        w.from_sent.push(at.saturating_duration_since(*s));
                    }
                    if let Some(Some(ack)) = acks.get(idx) {
                        match at.checked_duration_since(*ack) {
                            Some(d) => w.from_ack.push(d),
                            None => {
                                w.early += 1;
                                w.from_ack.push(Duration::ZERO);
                            }
                        }
                    }
                }
            }
            _ => w.watcher_errors += 1,
        }
    }
    w.from_ack.sort_unstable();
    w.from_sent.sort_unstable();
    let span = last_receipt.duration_since(write_start);
    w.per_sec = w.delivered as f64 / span.as_secs_f64().max(1e-9);
    eprintln!(
        "  watch fan-out: {} / {} events, {:.0} events/s",
        w.delivered, w.expected, w.per_sec
    );
    Ok(w)
}

fn store_label(store: &str) -> String {
    match store {
        "embedded" => "kaji (embedded store)".into(),
        "etcd" => "kaji on etcd 3.4".into(),
        other => format!("kaji on {other}"),
    }
}

/// The section: one column group per store, ratios against the first.
fn section(runs: &[(String, Result<StoreRun, String>)], p: &ApiParams, command: &str) -> Section {
    let mut notes = Vec::new();
    let ok: Vec<(&str, &StoreRun)> = runs
        .iter()
        .filter_map(|(s, r)| match r {
            Ok(r) => Some((s.as_str(), r)),
            Err(e) => {
                notes.push(format!("**{} failed:** `{}`", store_label(s), e));
                None
            }
        })
        .collect();
    let labels: Vec<String> = ok.iter().map(|(s, _)| store_label(s)).collect();

    // Requests.
    let mut header: Vec<String> = vec!["workload".into(), ">clients".into()];
    for l in &labels {
        header.push(format!(">{l}: ops/s"));
        header.push(">p50 ms".to_string());
        header.push(">p99 ms".to_string());
    }
    for l in labels.iter().skip(1) {
        header.push(format!(">{l} ÷ {} (ops/s)", labels[0]));
    }
    header.push(">errors".into());
    let mut ops = Table {
        caption: format!(
            "Requests over HTTPS: {} creates per create row, {} GETs per GET row; \
             the fill row creates Pods up to {} for the LIST below.",
            p.creates, p.gets, p.list_pods
        ),
        header,
        rows: Vec::new(),
    };
    let rows = ok.first().map_or(0, |(_, r)| r.ops.len());
    for i in 0..rows {
        let (name, clients, _) = &ok[0].1.ops[i];
        let mut row = vec![name.clone(), clients.to_string()];
        let mut rates = Vec::new();
        let mut errors = 0;
        for (_, r) in &ok {
            match r.ops.get(i) {
                Some((_, _, s)) => {
                    row.extend([fig(s.per_sec()), fig(ms(s.p50)), fig(ms(s.p99))]);
                    rates.push(Some(s.per_sec()));
                    errors += s.errors;
                    if let Some(e) = &s.first_error {
                        notes.push(format!("{name}, {clients} clients: first error: `{e}`"));
                    }
                }
                None => {
                    row.extend(["—".into(), "—".into(), "—".into()]);
                    rates.push(None);
                }
            }
        }
        for r in rates.iter().skip(1) {
            row.push(ratio(*r, rates[0]));
        }
        row.push(errors.to_string());
        ops.push(row);
    }

    // LIST.
    let mut header = vec!["measure".to_string()];
    header.extend(labels.iter().map(|l| format!(">{l}")));
    let lists: Vec<Option<&ListRun>> = ok
        .iter()
        .map(|(_, r)| r.list.as_ref().and_then(|l| l.as_ref().ok()))
        .collect();
    for ((s, r), l) in ok.iter().zip(&lists) {
        if let (Some(Err(e)), None) = (&r.list, l) {
            notes.push(format!("LIST on {}: `{e}`", store_label(s)));
        }
    }
    let first = lists.iter().flatten().next();
    let mut list = Table {
        caption: format!(
            "LIST of all {} Pods of one namespace ({:.1} MB of JSON per response): 5 \
             sequential full LISTs, then {} concurrent ones. Server memory from \
             `/proc/PID/status` (`VmRSS`; peak = `VmHWM`, reset before each phase).",
            first.map_or(0, |l| l.items),
            first.map_or(0.0, |l| l.bytes as f64 / 1e6),
            p.concurrent_lists
        ),
        header: header.clone(),
        rows: Vec::new(),
    };
    let list_row = |name: &str, f: &dyn Fn(&ListRun) -> String| {
        let mut row = vec![name.to_string()];
        row.extend(lists.iter().map(|l| l.map_or("—".into(), f)));
        row
    };
    list.push(list_row("server RSS at start (MiB)", &|l| {
        fig(l.rss_start_mib)
    }));
    list.push(list_row(
        "server RSS with the Pods, before any LIST (MiB)",
        &|l| fig(l.rss_before_mib),
    ));
    list.push(list_row("full LIST, sequential: median / max (ms)", &|l| {
        format!(
            "{} / {}",
            fig(ms(quantile(&l.sequential, 0.5))),
            fig(ms(l.sequential.last().copied().unwrap_or_default()))
        )
    }));
    list.push(list_row(
        "server RSS after the sequential LISTs / peak during them (MiB)",
        &|l| format!("{} / {}", fig(l.rss_after_seq_mib), fig(l.peak_seq_mib)),
    ));
    list.push(list_row(
        &format!(
            "{} concurrent full LISTs: wall time (s)",
            p.concurrent_lists
        ),
        &|l| {
            l.concurrent.as_ref().map_or("—".into(), |c| {
                format!(
                    "{:.2} ({} ok, {} errors)",
                    c.elapsed.as_secs_f64(),
                    c.ok,
                    c.errors
                )
            })
        },
    ));
    list.push(list_row(
        &format!(
            "{} concurrent full LISTs: p50 / p99 per LIST (ms)",
            p.concurrent_lists
        ),
        &|l| {
            l.concurrent.as_ref().map_or("—".into(), |c| {
                format!("{} / {}", fig(ms(c.p50)), fig(ms(c.p99)))
            })
        },
    ));
    list.push(list_row(
        "server RSS after the concurrent LISTs / peak during them (MiB)",
        &|l| format!("{} / {}", fig(l.rss_after_conc_mib), fig(l.peak_conc_mib)),
    ));
    if lists.iter().flatten().any(|l| !l.peak_reset) {
        notes.push(
            "The server's peak RSS could not be reset between phases (`clear_refs`), so a \
             peak is the highest since the server started."
                .into(),
        );
    }

    // Watch.
    let watches: Vec<Option<&WatchRun>> = ok
        .iter()
        .map(|(_, r)| r.watch.as_ref().and_then(|w| w.as_ref().ok()))
        .collect();
    for ((s, r), w) in ok.iter().zip(&watches) {
        if let (Some(Err(e)), None) = (&r.watch, w) {
            notes.push(format!("Watch fan-out on {}: `{e}`", store_label(s)));
        }
    }
    let mut watch = Table {
        caption: format!(
            "Watch fan-out: {} watchers on the ConfigMaps of one namespace (one HTTP \
             connection each, from one resourceVersion), then one writer creating {} \
             ConfigMaps one after another as fast as they are acknowledged.",
            p.watchers, p.changes
        ),
        header,
        rows: Vec::new(),
    };
    let watch_row = |name: &str, f: &dyn Fn(&WatchRun) -> String| {
        let mut row = vec![name.to_string()];
        row.extend(watches.iter().map(|w| w.map_or("—".into(), f)));
        row
    };
    watch.push(watch_row("watchers established (setup time)", &|w| {
        format!("{} ({:.2} s)", w.established, w.setup.as_secs_f64())
    }));
    watch.push(watch_row(
        "changes written by the one writer (writes/s)",
        &|w| {
            format!(
                "{} ({:.0}/s, {} errors)",
                w.written,
                w.written as f64 / w.write_time.as_secs_f64().max(1e-9),
                w.write_errors
            )
        },
    ));
    watch.push(watch_row("events delivered / expected", &|w| {
        format!("{} / {}", w.delivered, w.expected)
    }));
    watch.push(watch_row(
        "events/s delivered (first write to last receipt)",
        &|w| fig(w.per_sec),
    ));
    let pct = |v: &[Duration]| {
        format!(
            "{} / {} / {}",
            fig(ms(quantile(v, 0.5))),
            fig(ms(quantile(v, 0.99))),
            fig(ms(v.last().copied().unwrap_or_default()))
        )
    };
    watch.push(watch_row(
        "delivery after the write's acknowledgement, p50 / p99 / max (ms)",
        &|w| pct(&w.from_ack),
    ));
    watch.push(watch_row(
        "delivery after the write was sent, p50 / p99 / max (ms)",
        &|w| pct(&w.from_sent),
    ));
    watch.push(watch_row(
        "events that arrived before the writer read its acknowledgement (counted as 0)",
        &|w| w.early.to_string(),
    ));
    for (l, w) in labels.iter().zip(&watches) {
        if let Some(w) = w {
            if w.watcher_errors > 0 {
                notes.push(format!("{l}: {} watchers failed", w.watcher_errors));
            }
        }
    }

    // Plots.
    let cat = |name: &str, clients: usize| {
        let short = name.replace(" (fill for LIST)", " (fill)");
        let who = if clients == 1 {
            "1 client".to_string()
        } else {
            format!("{clients} clients")
        };
        format!("{short}, {who}")
    };
    let throughput = Plot {
        file: "api-throughput.png".into(),
        title: "API server: requests/s over HTTPS".into(),
        x_label: String::new(),
        y_label: "requests/s (higher is better)".into(),
        kind: PlotKind::Bars,
        series: ok
            .iter()
            .zip(&labels)
            .map(|((_, r), l)| Series {
                name: l.clone(),
                points: r
                    .ops
                    .iter()
                    .filter(|(n, _, _)| !n.contains("fill"))
                    .map(|(n, c, s)| (cat(n, *c), s.per_sec()))
                    .collect(),
            })
            .collect(),
    };
    let mut latency_series = Vec::new();
    for ((_, r), l) in ok.iter().zip(&labels) {
        for (q, pick) in [
            ("p50", (|s: &Summary| s.p50) as fn(&Summary) -> Duration),
            ("p99", |s: &Summary| s.p99),
        ] {
            latency_series.push(Series {
                name: format!("{l} {q}"),
                points: r
                    .ops
                    .iter()
                    .filter(|(n, _, _)| n.starts_with("create") && !n.contains("fill"))
                    .map(|(n, c, s)| (cat(n, *c), ms(pick(s))))
                    .collect(),
            });
        }
    }
    let latency = Plot {
        file: "api-latency.png".into(),
        title: "API server: create latency, p50 and p99".into(),
        x_label: String::new(),
        y_label: "ms (lower is better)".into(),
        kind: PlotKind::Bars,
        series: latency_series,
    };
    let list_plot = Plot {
        file: "api-list.png".into(),
        title: format!(
            "API server: full LIST of {} Pods",
            first.map_or(p.list_pods, |l| l.items)
        ),
        x_label: String::new(),
        y_label: "ms per LIST (lower is better)".into(),
        kind: PlotKind::Bars,
        series: lists
            .iter()
            .zip(&labels)
            .filter_map(|(l, name)| {
                let l = l.as_ref()?;
                let mut points = vec![(
                    "one at a time (median)".to_string(),
                    ms(quantile(&l.sequential, 0.5)),
                )];
                if let Some(c) = &l.concurrent {
                    points.push((format!("{} at once: p50", p.concurrent_lists), ms(c.p50)));
                    points.push((format!("{} at once: p99", p.concurrent_lists), ms(c.p99)));
                }
                Some(Series {
                    name: name.clone(),
                    points,
                })
            })
            .collect(),
    };
    const PCTS: [f64; 10] = [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0];
    let watch_plot = Plot {
        file: "api-watch.png".into(),
        title: format!(
            "API server: watch delivery to {} watchers, by percentile",
            p.watchers
        ),
        x_label: "percentile of events".into(),
        y_label: "ms from write acknowledgement".into(),
        kind: PlotKind::Lines,
        series: watches
            .iter()
            .zip(&labels)
            .filter_map(|(w, name)| {
                let w = w.as_ref()?;
                Some(Series {
                    name: name.clone(),
                    points: PCTS
                        .iter()
                        .map(|q| (q.to_string(), ms(quantile(&w.from_ack, q / 100.0))))
                        .collect(),
                })
            })
            .collect(),
    };
    let plots: Vec<Plot> = [throughput, latency, list_plot, watch_plot]
        .into_iter()
        .filter(|p| p.series.iter().any(|s| !s.points.is_empty()))
        .collect();

    notes.push(
        "No kube-apiserver runs here, so there is no same-run comparison with it. For \
         context only: Kubernetes' published API call latency SLOs (sig-scalability, \
         `slos/api_call_latency.md`; 99th percentile per cluster-day, measured at the API \
         server) are ≤ 1 s for mutating calls on single objects, ≤ 1 s for reads of a \
         single object, ≤ 5 s for a namespace-scoped LIST and ≤ 30 s for a cluster-scoped \
         one. These figures are measured at the client, including TLS, over seconds on a \
         2-core VM, so they say only how far from those bounds kaji is at this scale."
            .into(),
    );
    Section {
        title: "API server".into(),
        what: format!(
            "A real `kaji up` (controllers, scheduler and a node included), started on a \
             temporary data dir and a free loopback port, and measured over HTTPS with the \
             admin client certificate from the kubeconfig it wrote; stopped by PID at the \
             end. One fresh `kaji up` per store: {}. Requests go through kube-rs's \
             `Client::send` with pre-built JSON bodies and responses are read as bytes, \
             never deserialised, so the client's cost is TLS and HTTP only; client and \
             server share the same cores. Workloads, each capped at {} s: {} creates of \
             ConfigMaps (one 256-byte value) and of Pods (one container), from 1 client and \
             from {} concurrent clients; {} GETs of those ConfigMaps from 1 and {} clients; \
             a LIST of {} Pods with the server's memory; a watch fan-out of {} watchers × {} \
             changes.",
            labels.join(" and "),
            p.budget.as_secs(),
            p.creates,
            p.clients,
            p.gets,
            p.clients,
            p.list_pods,
            p.watchers,
            p.changes
        ),
        command: command.to_string(),
        tables: vec![ops, list, watch],
        plots,
        notes,
    }
}
