//! The store benchmark: kaji's embedded store (`SqliteStore`) against a real etcd, same run.
//!
//! Both sides write 256-byte values under fresh keys, one at a time and from
//! many tasks at once. kaji's `Store::create` is compared with etcd's plain
//! `Put` and with the transaction kube-apiserver sends for a create
//! (`If create_revision(key) == 0 Then Put`), which is the like-for-like one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kaji_store::Store;
use kaji_store_sqlite::SqliteStore;

use crate::measure::{drive, ms, Summary};

/// Sizes of the store workloads.
#[derive(Debug, Clone)]
pub struct StoreParams {
    /// Writes in the sequential workload.
    pub sequential: usize,
    /// Writes in the concurrent workload.
    pub concurrent: usize,
    /// Tasks in the concurrent workload.
    pub clients: usize,
    /// Runs per engine; the median run (by ops/s) is reported.
    pub runs: usize,
    /// Upper bound on any one workload's duration.
    pub budget: Duration,
}

const KAJI: &str = "kaji embedded (SqliteStore::create)";
#[cfg(feature = "etcd")]
const ETCD_TXN: &str = "etcd 3.4 (txn create, as kube-apiserver)";
#[cfg(feature = "etcd")]
const ETCD_PUT: &str = "etcd 3.4 (plain put)";

fn value() -> Vec<u8> {
    vec![b'v'; 256]
}

type Results = BTreeMap<(usize, &'static str), Vec<Summary>>;

async fn kaji_workload(
    store: &Arc<SqliteStore>,
    prefix: String,
    n: usize,
    clients: usize,
    budget: Duration,
) -> Summary {
    let store = store.clone();
    drive(n, clients, budget, move |i| {
        let (store, key) = (store.clone(), format!("{prefix}/{i:08}"));
        async move {
            store.create(&key, value()).await?;
            Ok(())
        }
    })
    .await
}

#[cfg(feature = "etcd")]
mod etcd {
    use super::*;
    use etcd_client::{Client, Compare, CompareOp, KvClient, Txn, TxnOp};

    /// Connects to the etcd at `url`, retrying (bounded) until it answers a status call.
    pub async fn connect(url: &str) -> anyhow::Result<KvClient> {
        let start = std::time::Instant::now();
        loop {
            let attempt = async {
                let mut c = Client::connect([url], None).await?;
                c.status().await?;
                Ok::<_, etcd_client::Error>(c.kv_client())
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(kv)) => return Ok(kv),
                Ok(Err(e)) if start.elapsed() > Duration::from_secs(30) => {
                    anyhow::bail!("etcd at {url} not ready after 30 s: {e}")
                }
                Err(_) if start.elapsed() > Duration::from_secs(30) => {
                    anyhow::bail!("etcd at {url} not ready after 30 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub async fn workload(
        kv: &KvClient,
        txn: bool,
        prefix: String,
        n: usize,
        clients: usize,
        budget: Duration,
    ) -> Summary {
        let kv = kv.clone();
        drive(n, clients, budget, move |i| {
            let (mut kv, key) = (kv.clone(), format!("{prefix}/{i:08}"));
            async move {
                if txn {
                    let t = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, value(), None)]);
                    anyhow::ensure!(
                        kv.txn(t).await?.succeeded(),
                        "txn create found the key present"
                    );
                } else {
                    kv.put(key, value(), None).await?;
                }
                Ok(())
            }
        })
        .await
    }
}

/// Runs the store workloads (and etcd's, when built with the `etcd` feature) and prints tables.
pub async fn run(work_dir: &Path, p: &StoreParams) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("kaji-bench-store-")
        .tempdir_in(work_dir)?;
    #[cfg(feature = "etcd")]
    let (etcd_proc, kv) = {
        let (proc, url) = crate::process::start_etcd(dir.path())?;
        eprintln!("etcd started at {url} (pid {})", proc.pid());
        let kv = match etcd::connect(&url).await {
            Ok(kv) => kv,
            Err(e) => {
                proc.stop()?;
                return Err(e);
            }
        };
        (proc, kv)
    };
    let mut results: Results = BTreeMap::new();
    let shapes = [(p.sequential, 1usize), (p.concurrent, p.clients)];
    for run in 0..p.runs {
        let store = Arc::new(SqliteStore::open(
            dir.path().join(format!("kaji-{run}.db")),
        )?);
        for (shape, &(n, clients)) in shapes.iter().enumerate() {
            let s = kaji_workload(
                &store,
                format!("/bench/{run}/{shape}"),
                n,
                clients,
                p.budget,
            )
            .await;
            results.entry((shape, KAJI)).or_default().push(s);
            #[cfg(feature = "etcd")]
            for (txn, name) in [(true, ETCD_TXN), (false, ETCD_PUT)] {
                let prefix = format!("/bench/{run}/{shape}/{txn}");
                let s = etcd::workload(&kv, txn, prefix, n, clients, p.budget).await;
                results.entry((shape, name)).or_default().push(s);
            }
        }
        drop(store);
    }
    #[cfg(feature = "etcd")]
    {
        drop(kv);
        etcd_proc.stop()?;
    }
    print(&results, &shapes, p.runs);
    Ok(())
}

fn median(runs: &[Summary]) -> Summary {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    v[v.len() / 2].clone()
}

fn print(results: &Results, shapes: &[(usize, usize)], runs: usize) {
    println!("\n### Store vs etcd: 256-byte values, median of {runs} runs by ops/s\n");
    println!("| engine | workload | ops | errors | seconds | ops/s | p50 ms | p99 ms | ops/s of each run |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let mut medians = BTreeMap::new();
    for ((shape, engine), summaries) in results {
        let (_, clients) = shapes[*shape];
        let m = median(summaries);
        let each: Vec<String> = summaries
            .iter()
            .map(|s| format!("{:.0}", s.per_sec()))
            .collect();
        let workload = if clients == 1 {
            "sequential".to_string()
        } else {
            format!("{clients}-way concurrent")
        };
        println!(
            "| {engine} | {workload} | {} | {} | {:.3} | {:.0} | {:.3} | {:.3} | {} |",
            m.ok,
            m.errors,
            m.elapsed.as_secs_f64(),
            m.per_sec(),
            ms(m.p50),
            ms(m.p99),
            each.join(", ")
        );
        if let Some(e) = summaries.iter().find_map(|s| s.first_error.clone()) {
            eprintln!("  {engine} {workload}: first error: {e}");
        }
        medians.insert((*shape, *engine), m.per_sec());
    }
    #[cfg(feature = "etcd")]
    {
        println!("\n| workload | kaji ÷ etcd txn create (ops/s) | kaji ÷ etcd plain put (ops/s) |\n| --- | ---: | ---: |");
        for (shape, &(_, clients)) in shapes.iter().enumerate() {
            let k = medians.get(&(shape, KAJI)).copied().unwrap_or(0.0);
            let t = medians.get(&(shape, ETCD_TXN)).copied().unwrap_or(0.0);
            let u = medians.get(&(shape, ETCD_PUT)).copied().unwrap_or(0.0);
            let workload = if clients == 1 {
                "sequential".to_string()
            } else {
                format!("{clients}-way concurrent")
            };
            println!(
                "| {workload} | {:.2}× | {:.2}× |",
                k / t.max(1e-9),
                k / u.max(1e-9)
            );
        }
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = medians;
        println!("\n(etcd not measured: build with `--features etcd`, which needs `protoc`.)");
    }
}
