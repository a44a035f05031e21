//! The custom-resource benchmark: what a CRD's schema and CEL rules cost per
//! create, LIST and watch event, against a ConfigMap carrying the same bytes.
//!
//! It starts an already-built `kaji up` as `api` does and defines three CRDs
//! in one group: one whose `spec` is not validated at all
//! (`x-kubernetes-preserve-unknown-fields`), one with a structural schema
//! (a pattern, an enum, minimum/maximum, a map of strings with `maxLength`, a
//! default), and one with the same schema plus two CEL
//! `x-kubernetes-validations` rules. It waits for each to be Established and
//! served, checks that the server really prunes, defaults and rejects, then
//! runs the same workloads on all four kinds with the same payload, several
//! runs each, the kinds taking turns so drift in the machine's load spreads
//! over all of them. Requests are raw JSON over kube-rs's `Client::send`, as
//! in `api`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::api::{ensure_namespace, print_summary, Http};
use crate::measure::{self, drive, ms, quantile, Summary, HEADER};
use crate::process;
use crate::report::{Plot, PlotKind, Section, Series, Table};

/// Sizes of the custom-resource workloads.
#[derive(Debug, Clone)]
pub struct CrdParams {
    /// Objects per create workload, per kind and run.
    pub creates: usize,
    /// The concurrent create workload's clients.
    pub clients: usize,
    /// Runs per kind; the tables give the median run.
    pub runs: usize,
    /// Watchers in each watch fan-out.
    pub watchers: usize,
    /// Objects created while they watch.
    pub changes: usize,
    /// String entries in each object's map.
    pub entries: usize,
    /// Bytes of each entry's value.
    pub value_bytes: usize,
    /// Upper bound on any one workload's duration.
    pub budget: Duration,
}

const GROUP: &str = "bench.kaji.dev";
/// Where the create workloads write (and the LISTs read).
const NS: &str = "kaji-bench-crd";
/// Where the watch fan-outs write.
const WATCH_NS: &str = "kaji-bench-crd-watch";
/// Where the validation checks write, so they count in no LIST.
const CHECK_NS: &str = "kaji-bench-crd-checks";
/// Longest a CRD may take to be Established and served.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Sequential LISTs per kind.
const LISTS: usize = 5;
const IMAGE: &str = "registry.example.com/bench/app:1.27.3";
/// The CEL rules of the last CRD: one comparing two fields, one visiting
/// every entry of the map.
const RULES: [(&str, &str); 2] = [
    (
        "self.replicas <= self.maxReplicas",
        "replicas must not exceed maxReplicas",
    ),
    (
        "self.data.all(k, k.startsWith('key-') && self.data[k].size() > 0)",
        "data keys start with key- and no value is empty",
    ),
];

/// The kinds compared, in the order of the tables' columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Open,
    Schema,
    Rules,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::ConfigMap, Kind::Open, Kind::Schema, Kind::Rules];

    fn label(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Open => "CR, no schema",
            Kind::Schema => "CR, schema",
            Kind::Rules => "CR, schema + CEL",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Open => "OpenWidget",
            Kind::Schema => "SchemaWidget",
            Kind::Rules => "RuleWidget",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmaps",
            Kind::Open => "openwidgets",
            Kind::Schema => "schemawidgets",
            Kind::Rules => "rulewidgets",
        }
    }

    fn collection(self, ns: &str) -> String {
        match self {
            Kind::ConfigMap => format!("/api/v1/namespaces/{ns}/configmaps"),
            _ => format!("/apis/{GROUP}/v1/namespaces/{ns}/{}", self.plural()),
        }
    }

    /// The kinds in turn `run`: each run starts with the next one.
    fn rotated(run: usize) -> [Kind; 4] {
        let mut kinds = Kind::ALL;
        kinds.rotate_left(run % Kind::ALL.len());
        kinds
    }
}

/// The bytes every object carries: an image, a mode, a replica count and
/// `entries` strings. A ConfigMap holds them all in `data` (the count as a
/// string); a custom resource in `spec`, the strings in `spec.data`.
#[derive(Clone)]
struct Payload {
    /// `"key-000":"vvv…",…`, shared by both shapes.
    entries: Arc<str>,
}

impl Payload {
    fn new(entries: usize, value_bytes: usize) -> Self {
        let value = "v".repeat(value_bytes.max(1));
        let entries = (0..entries)
            .map(|i| format!(r#""key-{i:03}":"{value}""#))
            .collect::<Vec<_>>()
            .join(",");
        Payload {
            entries: entries.into(),
        }
    }

    fn body(&self, kind: Kind, name: &str) -> Bytes {
        let meta = format!(r#""metadata":{{"name":"{name}","labels":{{"app":"bench"}}}}"#);
        let entries = &self.entries;
        let sep = if entries.is_empty() { "" } else { "," };
        Bytes::from(match kind {
            Kind::ConfigMap => format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap",{meta},"data":{{"image":"{IMAGE}","mode":"Fast","replicas":"3"{sep}{entries}}}}}"#
            ),
            _ => format!(
                r#"{{"apiVersion":"{GROUP}/v1","kind":"{}",{meta},"spec":{{"image":"{IMAGE}","mode":"Fast","replicas":3,"data":{{{entries}}}}}}}"#,
                kind.kind()
            ),
        })
    }
}

/// The CRD defining `kind` (not called for ConfigMaps).
fn definition(kind: Kind, value_bytes: usize) -> Value {
    let spec = match kind {
        Kind::ConfigMap | Kind::Open => {
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        }
        Kind::Schema | Kind::Rules => {
            let mut spec = json!({
                "type": "object",
                "required": ["image", "mode", "replicas", "data"],
                "properties": {
                    "image": {"type": "string", "maxLength": 256,
                              "pattern": r"^[a-z0-9.-]+(/[a-z0-9._-]+)*:[A-Za-z0-9._-]+$"},
                    "mode": {"type": "string", "enum": ["Fast", "Safe", "Off"]},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 100},
                    "maxReplicas": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    "data": {"type": "object", "maxProperties": 4096,
                             "additionalProperties": {"type": "string",
                                                      "maxLength": value_bytes.max(4096)}},
                },
            });
            if kind == Kind::Rules {
                spec["x-kubernetes-validations"] = RULES
                    .iter()
                    .map(|(rule, message)| json!({"rule": rule, "message": message}))
                    .collect();
            }
            spec
        }
    };
    let singular = kind.kind().to_lowercase();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{GROUP}", kind.plural())},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": kind.plural(), "singular": singular,
                      "kind": kind.kind(), "listKind": format!("{}List", kind.kind())},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
            }],
        },
    })
}

/// Creates the CRD of `kind`, waits until it is Established and its
/// collection answers, and returns how long that took.
async fn establish(http: &Http, kind: Kind, value_bytes: usize) -> anyhow::Result<Duration> {
    let crd = definition(kind, value_bytes);
    let name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let start = Instant::now();
    http.ok(
        Method::POST,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(serde_json::to_vec(&crd)?.into()),
    )
    .await?;
    let crd_path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
    let mut established = false;
    while start.elapsed() < ESTABLISH_TIMEOUT {
        if !established {
            let got: Value = serde_json::from_slice(&http.ok(Method::GET, &crd_path, None).await?)?;
            established = got
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                });
        }
        if established {
            let (status, _) = http.call(Method::GET, &kind.collection(NS), None).await?;
            if status.is_success() {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("{name} was not Established and served within {ESTABLISH_TIMEOUT:?}")
}

/// Makes sure the server validates, prunes and defaults what the CRDs say,
/// so the figures measure that work. Returns what was checked.
async fn check_semantics(http: &Http, payload: &Payload) -> anyhow::Result<String> {
    let path = Kind::Rules.collection(CHECK_NS);
    let variant = |name: &str, edit: &(dyn Fn(&mut Value) + Sync)| -> anyhow::Result<Bytes> {
        let mut v: Value = serde_json::from_slice(&payload.body(Kind::Rules, name))?;
        edit(&mut v["spec"]);
        Ok(serde_json::to_vec(&v)?.into())
    };
    let good = variant("check-good", &|s| s["extra"] = json!("pruned"))?;
    let created: Value = serde_json::from_slice(&http.ok(Method::POST, &path, Some(good)).await?)?;
    ensure!(
        created["spec"]["maxReplicas"] == 10,
        "spec.maxReplicas was not defaulted: {}",
        created["spec"]
    );
    ensure!(
        created["spec"].get("extra").is_none(),
        "spec.extra was not pruned"
    );
    let mut rejected = Vec::new();
    for (name, what, expect, edit) in [
        (
            "check-enum",
            "enum",
            "Unsupported value",
            &(|s: &mut Value| s["mode"] = json!("Bogus")) as &(dyn Fn(&mut Value) + Sync),
        ),
        ("check-pattern", "pattern", "should match", &|s| {
            s["image"] = json!("Not An Image")
        }),
        ("check-cel", "CEL rule", RULES[0].1, &|s| {
            s["replicas"] = json!(50)
        }),
    ] {
        let (status, bytes) = http
            .call(Method::POST, &path, Some(variant(name, edit)?))
            .await?;
        let text = String::from_utf8_lossy(&bytes);
        ensure!(
            status == StatusCode::UNPROCESSABLE_ENTITY && text.contains(expect),
            "a CR breaking its {what} got {status}: {text}"
        );
        rejected.push(what);
    }
    Ok(format!(
        "an unknown spec field is pruned, spec.maxReplicas defaulted to 10; \
         breaking the {} is rejected with 422",
        rejected.join(", the ")
    ))
}

/// What one watch fan-out measured.
struct WatchRun {
    established: usize,
    written: usize,
    write_time: Duration,
    delivered: usize,
    expected: usize,
    per_sec: f64,
    /// Delivery latency from the write's acknowledgement.
    p50: Duration,
    p99: Duration,
    /// Delivery latency from the write being sent: includes the create itself.
    sent_p50: Duration,
    sent_p99: Duration,
}

/// One watcher: opens `path` and records when each object whose name
/// starts with `prefix` followed by digits arrives.
pub(crate) async fn watcher(
    http: Http,
    path: String,
    prefix: String,
    expect: usize,
    ready: Arc<AtomicUsize>,
    deadline: Instant,
) -> anyhow::Result<Vec<(usize, Instant)>> {
    let req = Request::get(path)
        .header("accept", "application/json")
        .body(kube::client::Body::from(Vec::new()))?;
    let resp = http.0.send(req).await?;
    ensure!(resp.status().is_success(), "watch: {}", resp.status());
    ready.fetch_add(1, Ordering::SeqCst);
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut got = Vec::with_capacity(expect);
    let pat = format!(r#""name":"{prefix}"#).into_bytes();
    while got.len() < expect {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, body.frame()).await {
            Ok(Some(f)) => f?,
            Ok(None) | Err(_) => break,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Some(pos) = line.windows(pat.len()).position(|w| w == pat) {
                let digits = &line[pos + pat.len()..];
                let end = digits
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .unwrap_or(digits.len());
                if let Ok(idx) = std::str::from_utf8(&digits[..end]).unwrap_or("").parse() {
                    got.push((idx, now));
                }
            }
        }
    }
    Ok(got)
}

/// `p.watchers` watchers on `kind` in [`WATCH_NS`], then one writer creating
/// `p.changes` objects named `{prefix}NNNNN` as fast as they are acknowledged.
async fn watch_run(
    http: &Http,
    payload: &Payload,
    kind: Kind,
    prefix: &str,
    p: &CrdParams,
) -> anyhow::Result<WatchRun> {
    let collection = kind.collection(WATCH_NS);
    let list: Value = serde_json::from_slice(&http.ok(Method::GET, &collection, None).await?)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?
        .to_string();
    let path = format!("{collection}?watch=true&resourceVersion={rv}&timeoutSeconds=300");
    let ready = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + p.budget * 2;
    let setup = Instant::now();
    let tasks: Vec<_> = (0..p.watchers)
        .map(|_| {
            tokio::spawn(watcher(
                http.clone(),
                path.clone(),
                prefix.to_string(),
                p.changes,
                ready.clone(),
                deadline,
            ))
        })
        .collect();
    while ready.load(Ordering::SeqCst) < p.watchers && setup.elapsed() < p.budget {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let established = ready.load(Ordering::SeqCst);

    let mut acks: Vec<Option<Instant>> = vec![None; p.changes];
    let mut sent: Vec<Option<Instant>> = vec![None; p.changes];
    let write_start = Instant::now();
    for (i, (ack, sent_at)) in acks.iter_mut().zip(sent.iter_mut()).enumerate() {
        if Instant::now() > deadline {
            break;
        }
        *sent_at = Some(Instant::now());
        let body = payload.body(kind, &format!("{prefix}{i:05}"));
        let r = tokio::time::timeout(
            measure::OP_TIMEOUT,
            http.ok(Method::POST, &collection, Some(body)),
        )
        .await;
        if let Ok(Ok(_)) = r {
            *ack = Some(Instant::now());
        }
    }
    let write_time = write_start.elapsed();

    // An event that arrives before the writer read its acknowledgement counts as 0.
    let mut delays = Vec::with_capacity(p.watchers * p.changes);
    let mut from_sent = Vec::with_capacity(p.watchers * p.changes);
    let mut delivered = 0;
    let mut last_receipt = write_start;
    for t in tasks {
        if let Ok(Ok(got)) = t.await {
            delivered += got.len();
            for (idx, at) in got {
                last_receipt = last_receipt.max(at);
                if let Some(Some(ack)) = acks.get(idx) {
                    delays.push(at.saturating_duration_since(*ack));
                }
                if let Some(Some(s)) = sent.get(idx) {
                    from_sent.push(at.saturating_duration_since(*s));
                }
            }
        }
    }
    delays.sort_unstable();
    from_sent.sort_unstable();
    let span = last_receipt.duration_since(write_start);
    Ok(WatchRun {
        established,
        written: acks.iter().flatten().count(),
        write_time,
        delivered,
        expected: p.watchers * p.changes,
        per_sec: delivered as f64 / span.as_secs_f64().max(1e-9),
        p50: quantile(&delays, 0.5),
        p99: quantile(&delays, 0.99),
        sent_p50: quantile(&from_sent, 0.5),
        sent_p99: quantile(&from_sent, 0.99),
    })
}

/// Every measurement of one kind.
#[derive(Default)]
struct Results {
    established: Option<Duration>,
    sequential: Vec<Summary>,
    concurrent: Vec<Summary>,
    watches: Vec<WatchRun>,
    lists: Vec<Duration>,
    list_bytes: usize,
    list_items: usize,
}

/// The median of `values` (the upper one of an even count), if any.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// Runs every workload against a fresh `kaji up` and returns the section
/// (progress and each run's figures go to stderr).
pub async fn run(
    kaji_bin: &Path,
    work_dir: &Path,
    p: &CrdParams,
    command: &str,
) -> anyhow::Result<Section> {
    let dir = tempfile::Builder::new()
        .prefix("kaji-bench-crd-")
        .tempdir_in(work_dir)?;
    let (server, kubeconfig) = process::start_kaji(kaji_bin, dir.path())?;
    let result = run_against(&kubeconfig, p, command).await;
    server.stop()?;
    result
}

async fn run_against(kubeconfig: &Path, p: &CrdParams, command: &str) -> anyhow::Result<Section> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let http = Http(kube::Client::try_from(config)?);
    for ns in [NS, WATCH_NS, CHECK_NS] {
        ensure_namespace(&http, ns).await?;
    }
    let payload = Payload::new(p.entries, p.value_bytes);
    let mut results: Vec<Results> = Kind::ALL.iter().map(|_| Results::default()).collect();
    let at = |k: Kind| Kind::ALL.iter().position(|&x| x == k).unwrap_or(0);
    for kind in [Kind::Open, Kind::Schema, Kind::Rules] {
        results[at(kind)].established = Some(establish(&http, kind, p.value_bytes).await?);
    }
    let checks = check_semantics(&http, &payload).await?;

    let what = format!(
        "What a CRD's schema and CEL rules cost, against a ConfigMap carrying the same bytes, \
         on one fresh `kaji up` started and stopped by PID as for the API server. Four kinds \
         in the same run: ConfigMap; a custom resource whose `spec` is not validated \
         (`x-kubernetes-preserve-unknown-fields`); one with a structural schema; one with \
         the same schema plus two CEL rules. Payload: {} strings of {} bytes, an image, a \
         mode and a replica count; request body {} bytes for a ConfigMap, {} for a custom \
         resource. Schema (both schema kinds): image with a pattern and maxLength, mode an \
         enum, replicas with minimum/maximum, maxReplicas with a default, data a map of \
         strings with maxProperties and maxLength. CEL rules (last kind only): {}. Checked \
         before measuring: {checks}. Per run, the kinds taking turns (each run starts with \
         the next kind): {} creates from 1 client and {} from {} clients; after all runs, a \
         watch fan-out per kind and run ({} watchers, one writer creating {} objects); then \
         up to {LISTS} LISTs of every object of each kind. {} runs; each value is the median \
         over runs, each ratio the median over runs of CR ÷ ConfigMap *within the same run*, \
         so load drifting between runs cancels out. ops/s below 1× and latency above 1× \
         mean the custom resource is slower.",
        p.entries,
        p.value_bytes,
        payload.body(Kind::ConfigMap, "x-00000").len(),
        payload.body(Kind::Rules, "x-00000").len(),
        RULES
            .iter()
            .map(|(r, _)| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", "),
        p.creates,
        p.creates,
        p.clients,
        p.watchers,
        p.changes,
        p.runs,
    );

    eprintln!("\ncrd, each run:\n{HEADER}");
    let c = p.clients;
    for run in 0..p.runs {
        for kind in Kind::rotated(run) {
            let r = &mut results[at(kind)];
            for (clients, tag) in [(1, "s"), (c, "c")] {
                let s = creates(&http, &payload, kind, &format!("{tag}{run}-"), p, clients).await;
                print_summary(
                    &format!("create {} (run {})", kind.label(), run + 1),
                    clients,
                    &s,
                );
                if clients == 1 {
                    r.sequential.push(s);
                } else {
                    r.concurrent.push(s);
                }
            }
        }
    }
    eprintln!(
        "\n| kind | run | watchers | events delivered / expected | events/s | writes/s | from sent p50 / p99 ms | from ack p50 / p99 ms |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for run in 0..p.runs {
        for kind in Kind::rotated(run) {
            let w = watch_run(&http, &payload, kind, &format!("w{run}-"), p).await?;
            eprintln!(
                "| {} | {} | {} | {} / {} | {:.0} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} |",
                kind.label(),
                run + 1,
                w.established,
                w.delivered,
                w.expected,
                w.per_sec,
                w.written as f64 / w.write_time.as_secs_f64().max(1e-9),
                ms(w.sent_p50),
                ms(w.sent_p99),
                ms(w.p50),
                ms(w.p99)
            );
            results[at(kind)].watches.push(w);
        }
    }
    let list_start = Instant::now();
    for round in 0..LISTS {
        if list_start.elapsed() > p.budget {
            break;
        }
        for kind in Kind::rotated(round) {
            let t = Instant::now();
            let body = http.ok(Method::GET, &kind.collection(NS), None).await?;
            let r = &mut results[at(kind)];
            r.lists.push(t.elapsed());
            if r.list_bytes == 0 {
                r.list_items = serde_json::from_slice::<Value>(&body)?["items"]
                    .as_array()
                    .map_or(0, Vec::len);
            }
            r.list_bytes = body.len();
        }
    }
    let (table, plot, mut notes) = comparison(&results, p);
    notes.push(
        "For context only: Kubernetes documents no throughput for custom resources; its \
         published API call latency SLO (≤ 1 s p99 for mutating calls on single objects) \
         applies to them as to built-in kinds."
            .into(),
    );
    Ok(Section {
        title: "Custom resources vs ConfigMaps of the same size".into(),
        what,
        command: command.to_string(),
        tables: vec![table],
        plots: vec![plot],
        notes,
    })
}

/// Creates `p.creates` objects of `kind` named `{prefix}{i}` from `clients` tasks.
async fn creates(
    http: &Http,
    payload: &Payload,
    kind: Kind,
    prefix: &str,
    p: &CrdParams,
    clients: usize,
) -> Summary {
    let (http, payload, prefix) = (http.clone(), payload.clone(), prefix.to_string());
    let path = kind.collection(NS);
    drive(p.creates, clients, p.budget, move |i| {
        let (http, path) = (http.clone(), path.clone());
        let body = payload.body(kind, &format!("{prefix}{i}"));
        async move { http.ok(Method::POST, &path, Some(body)).await.map(drop) }
    })
    .await
}

/// A figure with the precision its size deserves.
fn figure(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// The comparison table, a plot of create throughput, and notes. Each value
/// is the median over runs of that measure; each ratio is the median over
/// runs of (CR ÷ ConfigMap) within the same run, so a change in the
/// machine's load between runs cancels out.
fn comparison(results: &[Results], p: &CrdParams) -> (Table, Plot, Vec<String>) {
    let mut header = vec!["measure".to_string()];
    for k in Kind::ALL {
        header.push(format!(">{}", k.label()));
    }
    for k in &Kind::ALL[1..] {
        header.push(format!(">{} ÷ CM", k.label().trim_start_matches("CR, ")));
    }
    let mut table = Table {
        caption: format!(
            "{} runs; values: median over runs; ratios: median over runs of CR ÷ ConfigMap \
             in the same run.",
            p.runs
        ),
        header,
        rows: Vec::new(),
    };
    let mut row = |name: String, per_run: &dyn Fn(&Results) -> Vec<f64>| {
        let values: Vec<Vec<f64>> = results.iter().map(per_run).collect();
        let mut line = vec![name];
        for v in &values {
            line.push(median(v).map_or("—".to_string(), figure));
        }
        for v in &values[1..] {
            let ratios: Vec<f64> = v
                .iter()
                .zip(&values[0])
                .filter(|(_, base)| **base > 0.0)
                .map(|(x, base)| x / base)
                .collect();
            line.push(median(&ratios).map_or("—".to_string(), |r| format!("{r:.2}×")));
        }
        table.rows.push(line);
    };
    let c = p.clients;
    for (clients, pick) in [
        (
            1,
            (|r: &Results| &r.sequential) as fn(&Results) -> &Vec<Summary>,
        ),
        (c, |r: &Results| &r.concurrent),
    ] {
        let who = if clients == 1 {
            "1 client".to_string()
        } else {
            format!("{clients} clients")
        };
        let each = |f: fn(&Summary) -> f64| move |r: &Results| pick(r).iter().map(f).collect();
        row(format!("create, {who}: ops/s"), &each(Summary::per_sec));
        row(format!("create, {who}: p50 ms"), &each(|s| ms(s.p50)));
        row(format!("create, {who}: p99 ms"), &each(|s| ms(s.p99)));
    }
    let items = results.first().map_or(0, |r| r.list_items);
    row(format!("LIST of all ({items} objects): ms"), &|r| {
        r.lists.iter().map(|d| ms(*d)).collect()
    });
    row("LIST response: MB of JSON".into(), &|r| {
        vec![r.list_bytes as f64 / 1e6]
    });
    let watch = |f: fn(&WatchRun) -> f64| move |r: &Results| r.watches.iter().map(f).collect();
    row(
        format!(
            "watch, {} watchers × {} creates: events/s delivered",
            p.watchers, p.changes
        ),
        &watch(|w| w.per_sec),
    );
    row(
        "watch: writes/s during the fan-out".into(),
        &watch(|w| w.written as f64 / w.write_time.as_secs_f64().max(1e-9)),
    );
    row(
        "watch: delivery after write sent, p50 ms".into(),
        &watch(|w| ms(w.sent_p50)),
    );
    row(
        "watch: delivery after write sent, p99 ms".into(),
        &watch(|w| ms(w.sent_p99)),
    );
    row(
        "watch: delivery after write ack, p50 ms".into(),
        &watch(|w| ms(w.p50)),
    );
    row(
        "watch: delivery after write ack, p99 ms".into(),
        &watch(|w| ms(w.p99)),
    );
    row("CRD created → Established and served (ms)".into(), &|r| {
        r.established.map(ms).into_iter().collect()
    });
    let errors: usize = results
        .iter()
        .flat_map(|r| r.sequential.iter().chain(&r.concurrent))
        .map(|s| s.errors)
        .sum();
    let lost: usize = results
        .iter()
        .flat_map(|r| &r.watches)
        .map(|w| w.expected - w.delivered.min(w.expected))
        .sum();
    let mut notes = vec![format!(
        "Create errors: {errors}; watch events not delivered: {lost}."
    )];
    if let Some(e) = results
        .iter()
        .flat_map(|r| r.sequential.iter().chain(&r.concurrent))
        .find_map(|s| s.first_error.clone())
    {
        notes.push(format!("First create error: `{e}`"));
    }
    let plot = Plot {
        file: "crd-creates.png".into(),
        title: "Custom resources vs ConfigMaps: creates/s (median run)".into(),
        x_label: String::new(),
        y_label: "creates/s (higher is better)".into(),
        kind: PlotKind::Bars,
        series: [(1usize, "1 client"), (c, "many clients")]
            .iter()
            .map(|&(clients, name)| Series {
                name: if clients == 1 {
                    name.to_string()
                } else {
                    format!("{clients} clients")
                },
                points: Kind::ALL
                    .iter()
                    .zip(results)
                    .filter_map(|(k, r)| {
                        let runs = if clients == 1 {
                            &r.sequential
                        } else {
                            &r.concurrent
                        };
                        let v: Vec<f64> = runs.iter().map(Summary::per_sec).collect();
                        Some((k.label().to_string(), median(&v)?))
                    })
                    .collect(),
            })
            .collect(),
    };
    (table, plot, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_should_carry_the_same_entries_in_bodies_of_nearly_the_same_size() {
        let payload = Payload::new(16, 64);
        let cm: Value = serde_json::from_slice(&payload.body(Kind::ConfigMap, "a")).unwrap();
        let cr: Value = serde_json::from_slice(&payload.body(Kind::Rules, "a")).unwrap();
        assert_eq!(cm["data"]["key-015"], cr["spec"]["data"]["key-015"]);
        assert_eq!(cm["data"].as_object().unwrap().len(), 16 + 3);
        assert_eq!(cr["spec"]["data"].as_object().unwrap().len(), 16);
        let (a, b) = (
            payload.body(Kind::ConfigMap, "a").len(),
            payload.body(Kind::Schema, "a").len(),
        );
        assert!(a.abs_diff(b) < 64, "{a} vs {b}");
    }

    #[test]
    fn only_the_cel_kind_should_carry_rules_and_only_schema_kinds_a_schema() {
        let spec = |k| {
            definition(k, 64)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                ["spec"]
                .clone()
        };
        assert_eq!(
            spec(Kind::Open)["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert!(spec(Kind::Schema).get("x-kubernetes-validations").is_none());
        assert_eq!(
            spec(Kind::Schema)["properties"],
            spec(Kind::Rules)["properties"]
        );
        assert_eq!(
            spec(Kind::Rules)["x-kubernetes-validations"][1]["rule"],
            RULES[1].0
        );
    }

    #[test]
    fn median_should_take_the_middle_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn each_run_should_start_with_the_next_kind() {
        assert_eq!(Kind::rotated(0), Kind::ALL);
        assert_eq!(Kind::rotated(1)[0], Kind::Open);
        assert_eq!(Kind::rotated(4), Kind::ALL);
    }
}
