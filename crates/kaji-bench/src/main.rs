//! `kaji-bench`: benchmarks of kaji as users meet it, printed as markdown tables.
//!
//! `api` starts an already-built `kaji up` (it builds nothing itself) on a
//! temporary data dir and a free loopback port, measures it over HTTPS with the
//! admin client certificate (creates, GETs, a LIST of 10,000 pods with the
//! server's RSS, a watch fan-out), and stops it by PID. `etcd` compares kaji's
//! embedded store with a real etcd started the same way, in the same run.
//! `crd` compares custom resources with ConfigMaps of the same size on a
//! fresh `kaji up`, to show what schema validation and CEL rules cost.
//! Every loop is bounded in count and in time. It owns no product code and
//! nothing depends on it; results are copied into `docs/benchmarks.md` by hand.

mod api;
mod crd;
mod measure;
mod process;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kaji-bench",
    about = "Benchmarks of a running kaji and of its store against etcd"
)]
struct Cli {
    #[command(subcommand)]
    command: Which,
    /// The `kaji` binary (default: `$KAJI_BIN`, else `kaji` next to this executable).
    #[arg(long, global = true)]
    kaji: Option<PathBuf>,
    /// Where temporary data dirs go (default: the system temp dir). Keep it on a real disk: fsync matters.
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    /// Concurrency of the "many clients" workloads.
    #[arg(long, global = true, default_value_t = 64)]
    clients: usize,
    /// Upper bound in seconds on any one workload.
    #[arg(long, global = true, default_value_t = 120)]
    budget_secs: u64,
    /// Objects per API create workload.
    #[arg(long, global = true, default_value_t = 2000)]
    creates: usize,
    /// Watchers in the API watch fan-out.
    #[arg(long, global = true, default_value_t = 500)]
    watchers: usize,
    /// Changes written during the watch fan-out.
    #[arg(long, global = true, default_value_t = 200)]
    changes: usize,
    /// Pods present for the LIST workloads.
    #[arg(long, global = true, default_value_t = 10_000)]
    list_pods: usize,
    /// The store `kaji up` runs on in `api`: `embedded`, or `etcd` (a fresh
    /// etcd started by the benchmark; needs `--features etcd`).
    #[arg(long, global = true, default_value = "embedded")]
    store: String,
    /// Runs per engine in the store comparison, and per kind in `crd`.
    #[arg(long, global = true, default_value_t = 3)]
    runs: usize,
    /// String entries in each object of `crd` (ConfigMap data, custom resource spec.data).
    #[arg(long, global = true, default_value_t = 16)]
    entries: usize,
    /// Bytes of each of those entries.
    #[arg(long, global = true, default_value_t = 64)]
    value_bytes: usize,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// The API server over HTTPS.
    Api,
    /// kaji's embedded store against etcd (etcd needs the `etcd` feature).
    Etcd,
    /// Custom resources (no schema, schema, schema + CEL) against ConfigMaps of the same size.
    Crd,
    /// All of them.
    All,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let work_dir = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let budget = Duration::from_secs(cli.budget_secs);
    println!(
        "kaji-bench on {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if matches!(cli.command, Which::Api | Which::All) {
        let bin = process::kaji_binary(cli.kaji.clone())?;
        let params = api::ApiParams {
            creates: cli.creates,
            gets: cli.creates * 2,
            list_pods: cli.list_pods,
            concurrent_lists: 16,
            watchers: cli.watchers,
            changes: cli.changes,
            clients: cli.clients,
            budget,
            store: cli.store.clone(),
        };
        api::run(&bin, &work_dir, &params).await?;
    }
    if matches!(cli.command, Which::Etcd | Which::All) {
        let params = store::StoreParams {
            sequential: 1000,
            concurrent: 6400,
            clients: cli.clients,
            runs: cli.runs.max(1),
            budget,
        };
        store::run(&work_dir, &params).await?;
    }
    if matches!(cli.command, Which::Crd | Which::All) {
        let bin = process::kaji_binary(cli.kaji.clone())?;
        let params = crd::CrdParams {
            creates: cli.creates,
            clients: cli.clients,
            runs: cli.runs.max(1),
            watchers: cli.watchers,
            changes: cli.changes,
            entries: cli.entries,
            value_bytes: cli.value_bytes,
            budget,
        };
        crd::run(&bin, &work_dir, &params).await?;
    }
    Ok(())
}
