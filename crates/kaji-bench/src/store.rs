//! The store benchmark: kaji's embedded store (`SqliteStore`) against a real
//! etcd 3.4, in the same run, through kaji's `Store` trait on both
//! (`EtcdStore` for etcd) and through a plain etcd client, so the adapter's
//! own cost shows.
//!
//! Workloads (etcd's op-guide shape: 256-byte values under fresh keys):
//! sequential and 64-way concurrent creates, point reads from 1 and 64
//! tasks, reads of a whole 10,000-key range, and watch delivery (one watch
//! on a prefix while 64 tasks write into it). Both sides fsync before
//! acknowledging a write: etcd with its defaults (every raft commit fsyncs
//! its WAL), kaji's store with WAL and `synchronous=FULL`, each batching
//! concurrent writes into one fsync.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt;
use kaji_store::Store;
use kaji_store_sqlite::SqliteStore;

use crate::measure::{drive, ms, quantile, Summary};
use crate::report::{fig, ratio, Plot, PlotKind, Section, Series, Table};

/// Sizes of the store workloads.
#[derive(Debug, Clone)]
pub struct StoreParams {
    /// Writes in the sequential workload.
    pub sequential: usize,
    /// Writes in the concurrent workload.
    pub concurrent: usize,
    /// Tasks in the concurrent workloads.
    pub clients: usize,
    /// Point reads per read workload.
    pub reads: usize,
    /// Keys in the range read.
    pub range_keys: usize,
    /// Reads of the whole range, one after another.
    pub ranges: usize,
    /// Writes while a watch is open.
    pub watch_writes: usize,
    /// Runs; the median run (by ops/s) is reported.
    pub runs: usize,
    /// Upper bound on any one workload's duration.
    pub budget: Duration,
}

/// What is measured; the order of the tables' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    SeqCreate,
    ConcCreate,
    SeqGet,
    ConcGet,
    Range,
    Watch,
}

impl Workload {
    const ALL: [Workload; 6] = [
        Workload::SeqCreate,
        Workload::ConcCreate,
        Workload::SeqGet,
        Workload::ConcGet,
        Workload::Range,
        Workload::Watch,
    ];

    fn label(self, p: &StoreParams) -> String {
        match self {
            Workload::SeqCreate => format!("create, sequential ({})", p.sequential),
            Workload::ConcCreate => {
                format!("create, {}-way concurrent ({})", p.clients, p.concurrent)
            }
            Workload::SeqGet => format!("point get, sequential ({})", p.reads),
            Workload::ConcGet => format!("point get, {}-way concurrent ({})", p.clients, p.reads),
            Workload::Range => format!("range read of {} keys (×{})", p.range_keys, p.ranges),
            Workload::Watch => format!(
                "watch delivery, {} creates from {} tasks",
                p.watch_writes, p.clients
            ),
        }
    }

    fn short(self) -> &'static str {
        match self {
            Workload::SeqCreate => "create, 1 client",
            Workload::ConcCreate => "create, 64 clients",
            Workload::SeqGet => "get, 1 client",
            Workload::ConcGet => "get, 64 clients",
            Workload::Range => "range of 10k keys",
            Workload::Watch => "watch events",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Range => "ranges/s",
            Workload::Watch => "events/s",
            _ => "ops/s",
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Workload::SeqCreate | Workload::ConcCreate)
    }
}

/// Who serves the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    Kaji,
    EtcdStore,
    EtcdClient,
    EtcdPut,
}

impl Engine {
    fn label(self, w: Workload) -> &'static str {
        match (self, w.is_write()) {
            (Engine::Kaji, _) => "kaji embedded (Store trait)",
            (Engine::EtcdStore, _) => "etcd 3.4 via Store trait (EtcdStore)",
            (Engine::EtcdClient, true) => "etcd 3.4, plain client: txn create",
            (Engine::EtcdClient, false) => "etcd 3.4, plain client",
            (Engine::EtcdPut, _) => "etcd 3.4, plain client: put",
        }
    }
}

fn value() -> Vec<u8> {
    vec![b'v'; 256]
}

/// One side under test.
#[derive(Clone)]
enum Target {
    Store(Arc<dyn Store>),
    #[cfg(feature = "etcd")]
    Client {
        client: etcd_client::Client,
        /// Plain `Put` rather than the create transaction.
        put: bool,
    },
}

type Keys = BoxStream<'static, anyhow::Result<String>>;

impl Target {
    async fn create(&self, key: String) -> anyhow::Result<()> {
        match self {
            Target::Store(s) => {
                s.create(&key, value()).await?;
            }
            #[cfg(feature = "etcd")]
            Target::Client { client, put } => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let mut kv = client.kv_client();
                if *put {
                    kv.put(key, value(), None).await?;
                } else {
                    let t = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, value(), None)]);
                    anyhow::ensure!(kv.txn(t).await?.succeeded(), "the key was present");
                }
            }
        }
        Ok(())
    }

    async fn get(&self, key: String) -> anyhow::Result<()> {
        let found = match self {
            Target::Store(s) => s.get(&key, None).await?.0.is_some(),
            #[cfg(feature = "etcd")]
            Target::Client { client, .. } => {
                !client.kv_client().get(key, None).await?.kvs().is_empty()
            }
        };
        anyhow::ensure!(found, "key not found");
        Ok(())
    }

    async fn range(&self, prefix: String, expect: usize) -> anyhow::Result<()> {
        let n = match self {
            Target::Store(s) => s.list(&prefix, Default::default()).await?.kvs.len(),
            #[cfg(feature = "etcd")]
            Target::Client { client, .. } => {
                let opts = etcd_client::GetOptions::new().with_prefix();
                client
                    .kv_client()
                    .get(prefix, Some(opts))
                    .await?
                    .kvs()
                    .len()
            }
        };
        anyhow::ensure!(n == expect, "range returned {n} keys, not {expect}");
        Ok(())
    }

    /// The keys of the creates under `prefix` from now on.
    async fn watch(&self, prefix: &str) -> anyhow::Result<Keys> {
        match self {
            Target::Store(s) => Ok(s.watch(prefix, 0).await?.map(|e| Ok(e?.kv.key)).boxed()),
            #[cfg(feature = "etcd")]
            Target::Client { client, .. } => {
                // From the next revision, so that no write made while the
                // watch is being created is missed.
                let rev = client
                    .kv_client()
                    .get("\0", Some(etcd_client::GetOptions::new().with_count_only()))
                    .await?
                    .header()
                    .map_or(0, |h| h.revision());
                let opts = etcd_client::WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1);
                let stream = client.watch_client().watch(prefix, Some(opts)).await?;
                Ok(futures::stream::unfold(Some(stream), |state| async move {
                    let mut stream = state?;
                    loop {
                        return match stream.message().await {
                            Ok(Some(resp)) if resp.events().is_empty() => continue,
                            Ok(Some(resp)) => {
                                let keys: Vec<anyhow::Result<String>> = resp
                                    .events()
                                    .iter()
                                    .filter_map(|e| e.kv())
                                    .map(|kv| Ok(String::from_utf8_lossy(kv.key()).into_owned()))
                                    .collect();
                                Some((keys, Some(stream)))
                            }
                            Ok(None) => None,
                            Err(e) => Some((vec![Err(e.into())], None)),
                        };
                    }
                })
                .flat_map(futures::stream::iter)
                .boxed())
            }
        }
    }
}

async fn creates(
    t: &Target,
    prefix: String,
    n: usize,
    clients: usize,
    budget: Duration,
) -> Summary {
    let t = t.clone();
    drive(n, clients, budget, move |i| {
        let (t, key) = (t.clone(), format!("{prefix}/{i:08}"));
        async move { t.create(key).await }
    })
    .await
}

async fn gets(
    t: &Target,
    prefix: String,
    keys: usize,
    n: usize,
    clients: usize,
    budget: Duration,
) -> Summary {
    let t = t.clone();
    let keys = keys.max(1);
    drive(n, clients, budget, move |i| {
        let (t, key) = (t.clone(), format!("{prefix}/{:08}", (i * 7919) % keys));
        async move { t.get(key).await }
    })
    .await
}

/// A failed workload, as a summary with one error.
fn failed(e: anyhow::Error) -> Summary {
    Summary {
        ok: 0,
        errors: 1,
        first_error: Some(format!("{e:#}")),
        elapsed: Duration::ZERO,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
    }
}

async fn ranges(t: &Target, prefix: String, p: &StoreParams) -> Summary {
    let fill = creates(t, prefix.clone(), p.range_keys, p.clients, p.budget).await;
    if fill.ok != p.range_keys {
        return failed(anyhow::anyhow!(
            "filling the range: {} of {} created; first error: {}",
            fill.ok,
            p.range_keys,
            fill.first_error.unwrap_or_default()
        ));
    }
    let (t, expect) = (t.clone(), p.range_keys);
    drive(p.ranges, 1, p.budget, move |_| {
        let (t, prefix) = (t.clone(), format!("{prefix}/"));
        async move { t.range(prefix, expect).await }
    })
    .await
}

/// One watch on `prefix` while `clients` tasks create `n` keys under it.
/// ops = events delivered, errors = events missing, elapsed = first write to
/// last event, p50/p99 = delay from a write's acknowledgement to its event
/// (0 when the event came first).
async fn watch(t: &Target, prefix: String, p: &StoreParams) -> Summary {
    let n = p.watch_writes;
    let mut stream = match t.watch(&format!("{prefix}/")).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let start = Instant::now();
    let since = move || start.elapsed().as_nanos() as u64 + 1;
    let acks: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let deadline = p.budget;
    let received: Arc<std::sync::Mutex<Vec<(usize, u64)>>> =
        Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let got_ref = received.clone();
    let mut receiver = tokio::spawn(async move {
        let mut got: Vec<(usize, u64)> = Vec::with_capacity(n);
        let mut error = None;
        while got.len() < n {
            let left = deadline.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, stream.next()).await {
                Ok(Some(Ok(key))) => {
                    let at = since();
                    if let Some(i) = key.rsplit('/').next().and_then(|s| s.parse().ok()) {
                        got.push((i, at));
                        if let Ok(mut g) = got_ref.lock() {
                            g.push((i, at));
                        }
                    }
                }
                Ok(Some(Err(e))) => {
                    error = Some(format!("{e:#}"));
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    error = Some("timed out waiting for events".to_string());
                    break;
                }
            }
        }
        (got, error)
    });
    let (t2, acks2) = (t.clone(), acks.clone());
    let writes = drive(n, p.clients, p.budget, move |i| {
        let (t, acks, key) = (t2.clone(), acks2.clone(), format!("{prefix}/{i:08}"));
        async move {
            t.create(key).await?;
            acks[i].store(since(), Ordering::Relaxed);
            Ok(())
        }
    })
    .await;
    // Events still missing 10 s after the last write are counted as lost.
    let (got, error) = match tokio::time::timeout(Duration::from_secs(10), &mut receiver).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (Vec::new(), Some(format!("watch task: {e}"))),
        Err(_) => {
            receiver.abort();
            let got = received.lock().map(|g| g.clone()).unwrap_or_default();
            let error = format!("{} of {n} events 10 s after the last write", got.len());
            (got, Some(error))
        }
    };
    let mut delays: Vec<Duration> = got
        .iter()
        .filter_map(|&(i, at)| {
            let ack = acks.get(i)?.load(Ordering::Relaxed);
            (ack > 0).then(|| Duration::from_nanos(at.saturating_sub(ack)))
        })
        .collect();
    delays.sort_unstable();
    let last = got.iter().map(|&(_, at)| at).max().unwrap_or(1);
    Summary {
        ok: got.len(),
        errors: n - got.len().min(n),
        first_error: error.or(writes.first_error),
        elapsed: Duration::from_nanos(last),
        p50: quantile(&delays, 0.5),
        p99: quantile(&delays, 0.99),
    }
}

type Results = BTreeMap<(Workload, Engine), Vec<Summary>>;

async fn run_engine(
    t: &Target,
    engine: Engine,
    run: usize,
    p: &StoreParams,
    results: &mut Results,
) {
    let base = format!("/bench/{run}/{engine:?}");
    let mut record = |w: Workload, s: Summary| {
        eprintln!(
            "  store run {}: {:<45} {:<40} {:>8.0} {} ({} errors)",
            run + 1,
            w.label(p),
            engine.label(w),
            s.per_sec(),
            w.unit(),
            s.errors
        );
        results.entry((w, engine)).or_default().push(s);
    };
    let s = creates(t, format!("{base}/seq"), p.sequential, 1, p.budget).await;
    record(Workload::SeqCreate, s);
    let s = creates(t, format!("{base}/conc"), p.concurrent, p.clients, p.budget).await;
    record(Workload::ConcCreate, s);
    if engine == Engine::EtcdPut {
        return;
    }
    let keys = p.concurrent;
    let s = gets(t, format!("{base}/conc"), keys, p.reads, 1, p.budget).await;
    record(Workload::SeqGet, s);
    let s = gets(
        t,
        format!("{base}/conc"),
        keys,
        p.reads,
        p.clients,
        p.budget,
    )
    .await;
    record(Workload::ConcGet, s);
    let s = ranges(t, format!("{base}/range"), p).await;
    record(Workload::Range, s);
    let s = watch(t, format!("{base}/watch"), p).await;
    record(Workload::Watch, s);
}

#[cfg(feature = "etcd")]
async fn start_etcd(dir: &Path) -> anyhow::Result<(crate::process::Proc, Vec<(Engine, Target)>)> {
    let (proc, url) = crate::process::start_etcd(dir)?;
    eprintln!("etcd started at {url} (pid {})", proc.pid());
    let connect = async {
        let start = Instant::now();
        let client = loop {
            let attempt = async {
                let mut c = etcd_client::Client::connect([url.as_str()], None).await?;
                c.status().await?;
                Ok::<_, etcd_client::Error>(c)
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(c)) => break c,
                _ if start.elapsed() > Duration::from_secs(30) => {
                    anyhow::bail!("etcd at {url} not ready after 30 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let config = kaji_store_etcd::EtcdConfig {
            endpoints: vec![url.clone()],
            ..Default::default()
        };
        let store = kaji_store_etcd::EtcdStore::connect(&config).await?;
        Ok(vec![
            (Engine::EtcdStore, Target::Store(Arc::new(store))),
            (
                Engine::EtcdClient,
                Target::Client {
                    client: client.clone(),
                    put: false,
                },
            ),
            (Engine::EtcdPut, Target::Client { client, put: true }),
        ])
    };
    match connect.await {
        Ok(targets) => Ok((proc, targets)),
        Err(e) => {
            let _ = proc.stop();
            Err(e)
        }
    }
}

/// Runs the store workloads and returns the report's section.
pub async fn run(work_dir: &Path, p: &StoreParams, command: &str) -> anyhow::Result<Section> {
    let dir = tempfile::Builder::new()
        .prefix("kaji-bench-store-")
        .tempdir_in(work_dir)?;
    let mut notes = Vec::new();
    #[cfg(feature = "etcd")]
    let (etcd_proc, etcd_targets) = match start_etcd(dir.path()).await {
        Ok((proc, targets)) => (Some(proc), targets),
        Err(e) => {
            notes.push(format!("**etcd not measured:** `{e:#}`"));
            (None, Vec::new())
        }
    };
    #[cfg(not(feature = "etcd"))]
    let etcd_targets: Vec<(Engine, Target)> = {
        notes.push(
            "etcd not measured: this `kaji-bench` was built without the `etcd` feature.".into(),
        );
        Vec::new()
    };
    let mut results: Results = BTreeMap::new();
    for run in 0..p.runs {
        let store = Arc::new(SqliteStore::open(
            dir.path().join(format!("kaji-{run}.db")),
        )?);
        // Engines take turns, each run starting with the next one.
        let mut targets: Vec<(Engine, Target)> = vec![(Engine::Kaji, Target::Store(store))];
        targets.extend(etcd_targets.iter().cloned());
        let len = targets.len();
        targets.rotate_left(run % len);
        for (engine, t) in &targets {
            run_engine(t, *engine, run, p, &mut results).await;
        }
    }
    drop(etcd_targets);
    #[cfg(feature = "etcd")]
    if let Some(proc) = etcd_proc {
        proc.stop()?;
    }
    Ok(section(&results, p, notes, command))
}

fn median(runs: &[Summary]) -> Summary {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    v[v.len() / 2].clone()
}

fn section(results: &Results, p: &StoreParams, mut notes: Vec<String>, command: &str) -> Section {
    let mut detail = Table::new(
        format!(
            "Median run of {} by throughput (ranges: whole-range reads per second and \
             latency per range; watch: events delivered per second from the first write to \
             the last event, and delay from each write's acknowledgement to its event).",
            p.runs
        ),
        &[
            "workload",
            "engine",
            ">ok",
            ">errors",
            ">ops/s",
            ">p50 ms",
            ">p99 ms",
            ">ops/s of each run",
        ],
    );
    let med: BTreeMap<(Workload, Engine), Summary> =
        results.iter().map(|(k, v)| (*k, median(v))).collect();
    for ((w, e), runs) in results {
        let m = &med[&(*w, *e)];
        let each: Vec<String> = runs.iter().map(|s| fig(s.per_sec())).collect();
        detail.push(vec![
            w.label(p),
            e.label(*w).to_string(),
            m.ok.to_string(),
            runs.iter().map(|s| s.errors).sum::<usize>().to_string(),
            fig(m.per_sec()),
            format!("{:.3}", ms(m.p50)),
            format!("{:.3}", ms(m.p99)),
            each.join(", "),
        ]);
        if let Some(err) = runs.iter().find_map(|s| s.first_error.clone()) {
            notes.push(format!(
                "{} on {}: first error: `{}`",
                w.label(p),
                e.label(*w),
                err
            ));
        }
    }
    let rate = |w: Workload, e: Engine| med.get(&(w, e)).map(Summary::per_sec);
    let mut ratios = Table::new(
        "Ratios of throughput (median runs); above 1× means the first is faster. \
         For creates, \"etcd client\" is the create transaction kube-apiserver sends \
         (`If create_revision(key) == 0 Then Put`), the like-for-like one.",
        &[
            "workload",
            ">kaji ÷ etcd via Store trait",
            ">kaji ÷ etcd client",
            ">EtcdStore ÷ etcd client (adapter cost)",
        ],
    );
    for w in Workload::ALL {
        let k = rate(w, Engine::Kaji);
        let s = rate(w, Engine::EtcdStore);
        let c = rate(w, Engine::EtcdClient);
        ratios.push(vec![w.label(p), ratio(k, s), ratio(k, c), ratio(s, c)]);
    }
    let bars = |file: &str, title: &str, y: &str, ws: &[Workload], engines: &[Engine]| Plot {
        file: file.into(),
        title: title.into(),
        x_label: String::new(),
        y_label: y.into(),
        kind: PlotKind::Bars,
        series: engines
            .iter()
            .map(|&e| Series {
                name: e.label(Workload::SeqCreate).to_string(),
                points: ws
                    .iter()
                    .filter_map(|&w| Some((w.short().to_string(), rate(w, e)?)))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect(),
    };
    let mut writes = bars(
        "store-writes.png",
        "Store: durable creates of 256-byte values",
        "creates/s (higher is better)",
        &[Workload::SeqCreate, Workload::ConcCreate],
        &[
            Engine::Kaji,
            Engine::EtcdStore,
            Engine::EtcdClient,
            Engine::EtcdPut,
        ],
    );
    for s in &mut writes.series {
        s.name = s
            .name
            .replace(": txn create", " (txn create)")
            .replace(": put", " (put)");
    }
    let mut reads = bars(
        "store-reads.png",
        "Store: point gets and watch delivery",
        "per second (higher is better)",
        &[Workload::SeqGet, Workload::ConcGet, Workload::Watch],
        &[Engine::Kaji, Engine::EtcdStore, Engine::EtcdClient],
    );
    for s in &mut reads.series {
        s.name = s.name.replace(": txn create", "");
    }
    let ratio_plot = Plot {
        file: "store-ratios.png".into(),
        title: "Store: kaji embedded ÷ etcd 3.4, same run".into(),
        x_label: String::new(),
        y_label: "throughput ratio (1 = same)".into(),
        kind: PlotKind::Bars,
        series: [
            ("kaji ÷ etcd via Store trait", Engine::EtcdStore),
            ("kaji ÷ etcd plain client", Engine::EtcdClient),
        ]
        .iter()
        .map(|&(name, e)| Series {
            name: name.into(),
            points: Workload::ALL
                .iter()
                .filter_map(|&w| {
                    let (k, o) = (rate(w, Engine::Kaji)?, rate(w, e)?);
                    (o > 0.0).then(|| (w.short().to_string(), k / o))
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect(),
    };
    let mut plots = vec![writes, reads];
    if !ratio_plot.series.is_empty() {
        plots.push(ratio_plot);
    }
    notes.push(
        "Published, for scale (etcd v3.4 docs, op-guide \"Performance\": etcd 3.2.0 on a \
         3-member cluster of 8-vCPU/16 GB GCE VMs with 50 GB SSDs, the client on a fourth \
         16-vCPU VM; 8-byte keys, 256-byte values, plain puts): 583 writes/s at 1.6 ms \
         average with 1 client on 1 connection, 44,341/s at 22 ms with 1,000 clients on 100 \
         connections to the leader; linearizable reads of one key 1,353/s at 0.7 ms \
         (1 client) and 141,578/s at 5.5 ms (1,000 clients). That is three members over a \
         network with a dedicated client machine; this run is one member on loopback \
         sharing 2 cores with its client, so only orders of magnitude compare."
            .into(),
    );
    Section {
        title: "Store: kaji embedded vs etcd 3.4".into(),
        what: format!(
            "kaji's embedded store (`SqliteStore`: WAL, `synchronous=FULL`, one fsync per \
             group commit) against a real single-member etcd 3.4 (Debian's `etcd-server`, \
             started by the benchmark on loopback ports in a temporary dir on the same disk, \
             default settings: every raft commit fsyncs its WAL, concurrent proposals share \
             one fsync; stopped by PID). etcd is measured both through kaji's `Store` trait \
             (`EtcdStore`, what `kaji up --store etcd://…` uses) and through a plain \
             `etcd-client` on one gRPC connection, so the adapter's own cost shows. Values \
             are 256 bytes under fresh keys (etcd's own benchmark shape). Per run and engine: \
             {} sequential creates; {} creates from {} tasks; {} point gets of those keys \
             from 1 task and from {}; {} whole reads of a {}-key range (filled first by {} \
             tasks); and one watch on a fresh prefix while {} tasks create {} keys under it. \
             {} runs, engines taking turns (each run starts with the next one), a fresh \
             SQLite file per run, one etcd for all runs; each workload is capped at {} s.",
            p.sequential,
            p.concurrent,
            p.clients,
            p.reads,
            p.clients,
            p.ranges,
            p.range_keys,
            p.clients,
            p.clients,
            p.watch_writes,
            p.runs,
            p.budget.as_secs()
        ),
        command: command.to_string(),
        tables: vec![ratios, detail],
        plots,
        notes,
    }
}
