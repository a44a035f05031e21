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

use crate::measure::{self, drive, ms, quantile, Summary, HEADER};
use crate::process::{self, rss_kib};

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

pub(crate) fn print_summary(name: &str, clients: usize, s: &Summary) {
    println!("{}", s.row(name, clients));
    if let Some(e) = &s.first_error {
        eprintln!("  {name}: {} errors, first: {e}", s.errors);
    }
}

/// Runs every API workload against a fresh `kaji up` and prints markdown tables.
pub async fn run(kaji_bin: &Path, work_dir: &Path, p: &ApiParams) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("kaji-bench-api-")
        .tempdir_in(work_dir)?;
    let etcd = start_store(&p.store, dir.path())?;
    let url = etcd
        .as_ref()
        .map_or("embedded".to_string(), |(_, url)| url.clone());
    let (server, kubeconfig) = process::start_kaji_on(kaji_bin, dir.path(), &url)?;
    println!("\nkaji up on the {} store", p.store);
    let pid = server.pid();
    let result = run_against(pid, &kubeconfig, p).await;
    server.stop()?;
    if let Some((etcd, _)) = etcd {
        etcd.stop()?;
    }
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
            "unknown --store {other:?}: embedded, or etcd (built with --features etcd)"
        ),
    }
}

async fn run_against(pid: u32, kubeconfig: &Path, p: &ApiParams) -> anyhow::Result<()> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let http = Http(kube::Client::try_from(config)?);
    ensure_namespace(&http, NS).await?;
    ensure_namespace(&http, FAN_NS).await?;
    let (rss0, _) = rss_kib(pid)?;

    println!("\n### API server: writes and reads (HTTPS, admin client certificate)\n");
    println!("{HEADER}");
    let c = p.clients;
    let mut pods_made = 0;
    for (resource, kind, short) in [("configmaps", "ConfigMap", "cm"), ("pods", "Pod", "pod")] {
        for clients in [1, c] {
            let prefix = format!("{short}-{clients}");
            let s = creates(&http, resource, &prefix, p.creates, clients, p.budget).await;
            print_summary(&format!("create {kind}"), clients, &s);
            if resource == "pods" {
                pods_made += s.ok;
            }
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
    }

    // LIST: fill up to `list_pods` pods, then read them all at once.
    let fill = p.list_pods.saturating_sub(pods_made);
    let s = creates(&http, "pods", "fill", fill, c, p.budget * 4).await;
    print_summary("create Pod (fill for LIST)", c, &s);
    let list_path = format!("/api/v1/namespaces/{NS}/pods");
    let body = http.ok(Method::GET, &list_path, None).await?;
    let items = serde_json::from_slice::<serde_json::Value>(&body)?["items"]
        .as_array()
        .map_or(0, Vec::len);
    let (rss_before, _) = rss_kib(pid)?;
    let mut lat = Vec::new();
    let mut bytes = 0;
    let list_start = Instant::now();
    for _ in 0..5 {
        if list_start.elapsed() > p.budget {
            break;
        }
        let t = Instant::now();
        bytes = http.ok(Method::GET, &list_path, None).await?.len();
        lat.push(t.elapsed());
    }
    lat.sort_unstable();
    let (rss_after, hwm_after) = rss_kib(pid)?;
    let http2 = http.clone();
    let path2 = list_path.clone();
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
    let (rss_conc, hwm_conc) = rss_kib(pid)?;

    println!(
        "\n### API server: LIST of {items} pods ({:.1} MB JSON per response)\n",
        bytes as f64 / 1e6
    );
    println!("| measure | value |\n| --- | ---: |");
    println!(
        "| server RSS at start (MiB) | {:.0} |",
        rss0 as f64 / 1024.0
    );
    println!(
        "| server RSS before LISTs (MiB) | {:.0} |",
        rss_before as f64 / 1024.0
    );
    println!(
        "| full LIST, sequential, median of {} (ms) | {:.0} |",
        lat.len(),
        ms(quantile(&lat, 0.5))
    );
    println!(
        "| full LIST, sequential, max (ms) | {:.0} |",
        ms(lat.last().copied().unwrap_or_default())
    );
    println!(
        "| server RSS after sequential LISTs / peak (MiB) | {:.0} / {:.0} |",
        rss_after as f64 / 1024.0,
        hwm_after as f64 / 1024.0
    );
    println!(
        "| {} concurrent full LISTs: wall time (s) | {:.2} ({} ok, {} errors) |",
        p.concurrent_lists,
        conc.elapsed.as_secs_f64(),
        conc.ok,
        conc.errors
    );
    println!(
        "| {} concurrent full LISTs: p50 / p99 per LIST (ms) | {:.0} / {:.0} |",
        p.concurrent_lists,
        ms(conc.p50),
        ms(conc.p99)
    );
    println!(
        "| server RSS after concurrent LISTs / peak (MiB) | {:.0} / {:.0} |",
        rss_conc as f64 / 1024.0,
        hwm_conc as f64 / 1024.0
    );
    if let Some(e) = &conc.first_error {
        eprintln!("  concurrent LIST: first error: {e}");
    }

    watch_fanout(&http, p).await
}

async fn watch_fanout(http: &Http, p: &ApiParams) -> anyhow::Result<()> {
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
    let deadline = Instant::now() + p.budget * 2;
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
    let established = ready.load(Ordering::SeqCst);
    let setup_time = setup.elapsed();

    // One writer, as fast as the server acknowledges; record each acknowledgement.
    let mut acks: Vec<Option<Instant>> = vec![None; p.changes];
    let mut sent: Vec<Option<Instant>> = vec![None; p.changes];
    let write_start = Instant::now();
    let path = format!("/api/v1/namespaces/{FAN_NS}/configmaps");
    let mut write_errors = 0;
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
            _ => write_errors += 1,
        }
    }
    let write_time = write_start.elapsed();

    let mut delays = Vec::with_capacity(p.watchers * p.changes);
    let mut from_sent = Vec::with_capacity(p.watchers * p.changes);
    let mut delivered = 0usize;
    let mut early = 0usize;
    let mut last_receipt = write_start;
    let mut watcher_errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(got)) => {
                delivered += got.len();
                for (idx, at) in got {
                    last_receipt = last_receipt.max(at);
                    if let Some(Some(s)) = sent.get(idx) {
                        from_sent.push(at.saturating_duration_since(*s));
                    }
                    if let Some(Some(ack)) = acks.get(idx) {
                        match at.checked_duration_since(*ack) {
                            Some(d) => delays.push(d),
                            None => {
                                early += 1;
                                delays.push(Duration::ZERO);
                            }
                        }
                    }
                }
            }
            _ => watcher_errors += 1,
        }
    }
    delays.sort_unstable();
    from_sent.sort_unstable();
    let span = last_receipt.duration_since(write_start);
    println!("\n### API server: watch fan-out\n");
    println!("| measure | value |\n| --- | ---: |");
    println!(
        "| watchers established / asked | {established} / {} (in {:.2} s) |",
        p.watchers,
        setup_time.as_secs_f64()
    );
    println!(
        "| changes written (creates, 1 writer) | {} in {:.2} s ({write_errors} errors) |",
        acks.iter().flatten().count(),
        write_time.as_secs_f64()
    );
    println!(
        "| events delivered / expected | {delivered} / {} |",
        p.watchers * p.changes
    );
    println!(
        "| events/s delivered (first write to last receipt) | {:.0} |",
        delivered as f64 / span.as_secs_f64().max(1e-9)
    );
    println!(
        "| delivery latency from write ack, p50 / p99 / max (ms) | {:.1} / {:.1} / {:.1} |",
        ms(quantile(&delays, 0.5)),
        ms(quantile(&delays, 0.99)),
        ms(delays.last().copied().unwrap_or_default())
    );
    println!("| events received before the writer saw the ack (counted as 0) | {early} |");
    println!(
        "| delivery latency from write request sent, p50 / p99 / max (ms) | {:.1} / {:.1} / {:.1} |",
        ms(quantile(&from_sent, 0.5)),
        ms(quantile(&from_sent, 0.99)),
        ms(from_sent.last().copied().unwrap_or_default())
    );
    if watcher_errors > 0 {
        eprintln!("  {watcher_errors} watchers failed");
    }
    Ok(())
}
