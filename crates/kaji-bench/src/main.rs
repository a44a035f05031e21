//! `kaji-bench`: benchmarks of kaji as users meet it, as a markdown report
//! with PNG plots.
//!
//! `store` compares kaji's embedded store with a real etcd 3.4 started by the
//! benchmark on loopback, in the same run, through the `Store` trait and a
//! plain etcd client. `api` starts `kaji up` on a temporary data dir and a
//! free loopback port (on the embedded store and on a fresh etcd), measures
//! it over HTTPS with the admin client certificate (creates, GETs, a LIST of
//! 10,000 pods with the server's RSS, a watch fan-out), and stops it by PID.
//! `crd` compares custom resources with ConfigMaps of the same size, to show
//! what schema validation and CEL rules cost. `all` runs every subcommand in
//! the order they are declared and, with `--write docs/benchmarks.md`,
//! rewrites the part of that file between its `kaji-bench` markers and the
//! plots in `docs/benchmarks/`. Every loop is bounded in count and in time; a
//! workload that fails is reported, not fatal. Run through `cargo run`, it
//! first builds the `kaji` binary it measures (see `process::kaji_binary`).
//! It owns no product code and nothing depends on it.

mod api;
mod crd;
mod e2e;
mod measure;
mod process;
mod report;
mod scheduler;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use report::Section;

#[cfg(feature = "etcd")]
const DEFAULT_STORES: &str = "embedded,etcd";
#[cfg(not(feature = "etcd"))]
const DEFAULT_STORES: &str = "embedded";

#[derive(Parser, Clone)]
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
    #[arg(long, global = true, default_value_t = 1000)]
    watchers: usize,
    /// Watchers in each of `crd`'s watch fan-outs (one per kind and run).
    #[arg(long, global = true, default_value_t = 200)]
    crd_watchers: usize,
    /// Changes written during the watch fan-out.
    #[arg(long, global = true, default_value_t = 200)]
    changes: usize,
    /// Pods present for the LIST workloads.
    #[arg(long, global = true, default_value_t = 10_000)]
    list_pods: usize,
    /// The stores `kaji up` runs on in `api`, comma-separated: `embedded`,
    /// `etcd` (a fresh etcd started by the benchmark; needs the `etcd` feature).
    #[arg(long, global = true, default_value = DEFAULT_STORES)]
    store: String,
    /// Rewrite the generated part of this markdown file (between its
    /// `kaji-bench` markers) and draw the plots into `benchmarks/` beside it,
    /// e.g. `--write docs/benchmarks.md`. Without it, the report goes to stdout.
    #[arg(long, global = true)]
    write: Option<PathBuf>,
    /// Where to draw the plots (default: `benchmarks/` beside `--write`'s file;
    /// without either, no plots are drawn).
    #[arg(long, global = true)]
    plots_dir: Option<PathBuf>,
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

/// The benchmarks. `all` runs every other one, in the order declared here.
#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// kaji's embedded store against etcd 3.4 (etcd needs the `etcd` feature, on by default).
    #[command(alias = "etcd")]
    Store,
    /// The API server over HTTPS, on the embedded store and on etcd.
    Api,
    /// Custom resources (no schema, schema, schema + CEL) against ConfigMaps of the same size.
    Crd,
    /// End to end: one Deployment on `kaji up --simulate-nodes`, until every pod is Running.
    E2e {
        /// Simulated nodes.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Replicas of the Deployment.
        #[arg(long, default_value_t = 10_000)]
        replicas: usize,
    },
    /// The scheduler through the API (scheduler_perf SchedulingBasic shape).
    Scheduler {
        /// Nodes created through the API.
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        /// Pods created already bound before measuring.
        #[arg(long, default_value_t = 1000)]
        init_pods: usize,
        /// Pending pods created (by `--clients` clients) and measured.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
    },
    /// All of them, in the order above.
    All,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

/// The arguments as given, without the program name.
fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}

/// `args` as a shell command line: `cargo run …` when run by cargo.
fn command_line(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect();
    let program = if std::env::var_os("CARGO").is_some() {
        let mut p = "cargo run -p kaji-bench".to_string();
        if !cfg!(debug_assertions) {
            p += " --release";
        }
        if !cfg!(feature = "etcd") {
            p += " --no-default-features";
        }
        p + " --"
    } else {
        std::env::args()
            .next()
            .unwrap_or_else(|| "kaji-bench".into())
    };
    format!("{program} {}", quoted.join(" "))
}

/// The command that reproduces one subcommand alone: the same options, without
/// `all` and the output options.
fn section_command(args: &[String], sub: &str) -> String {
    let mut rest = Vec::new();
    let mut skip = false;
    let mut replaced = false;
    for a in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a == "--write" || a == "--plots-dir" {
            skip = true;
            continue;
        }
        if a.starts_with("--write=") || a.starts_with("--plots-dir=") {
            continue;
        }
        if !replaced && (a == "all" || a == sub) {
            replaced = true;
            continue;
        }
        rest.push(a.clone());
    }
    let mut line = vec![sub.to_string()];
    line.extend(rest);
    command_line(&line)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let args = args();
    let mut info = report::RunInfo::start(command_line(&args));
    let started = std::time::Instant::now();
    eprintln!(
        "kaji-bench on {}, load average {}",
        info.machine, info.load_start
    );
    let sections = if cli.command == Which::All {
        run_all(&args).await
    } else {
        let name = Cli::command()
            .try_get_matches_from(std::env::args_os())?
            .subcommand_name()
            .unwrap_or_default()
            .to_string();
        run_one(cli.clone(), &name, &args).await?
    };
    info.load_end = report::load_average();
    info.elapsed = started.elapsed();
    output(&cli, &info, &sections)
}

/// Every subcommand but `all`, in declaration order, each with the options
/// `all` was given; one that fails becomes a section saying so.
async fn run_all(args: &[String]) -> Vec<Section> {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != "all" && n != "help")
        .collect();
    let mut sections = Vec::new();
    for name in names {
        let command = section_command(args, &name);
        eprintln!("\n=== {name}: {command}");
        let start = std::time::Instant::now();
        let argv = std::iter::once("kaji-bench".to_string()).chain(args.iter().map(|a| {
            if a == "all" {
                name.clone()
            } else {
                a.clone()
            }
        }));
        let result = match Cli::try_parse_from(argv) {
            Ok(cli) => {
                let (args, name) = (args.to_vec(), name.clone());
                // A panic in one benchmark is reported like an error; the
                // processes it started are stopped when their handles drop.
                match tokio::spawn(async move { run_one(cli, &name, &args).await }).await {
                    Ok(r) => r,
                    Err(e) => Err(anyhow::anyhow!("the benchmark panicked: {e}")),
                }
            }
            Err(e) => Err(anyhow::anyhow!("parsing its options: {e}")),
        };
        eprintln!("=== {name}: done in {:.0} s", start.elapsed().as_secs_f64());
        match result {
            Ok(s) => sections.extend(s),
            Err(e) => {
                eprintln!("{name} failed: {e:#}");
                sections.push(Section::failed(&name, &command, &e));
            }
        }
    }
    sections
}

/// Prints the report, or writes it into `--write`'s file with the plots.
fn output(cli: &Cli, info: &report::RunInfo, sections: &[Section]) -> anyhow::Result<()> {
    let plots_dir = cli.plots_dir.clone().or_else(|| {
        cli.write.as_ref().map(|f| {
            f.parent()
                .unwrap_or(std::path::Path::new("."))
                .join("benchmarks")
        })
    });
    let drawn = match &plots_dir {
        Some(dir) => report::write_plots(sections, dir),
        None => Default::default(),
    };
    let generated = format!(
        "{}\n{}",
        info.markdown(),
        report::markdown(sections, &drawn)
    );
    match &cli.write {
        Some(file) => {
            let doc = std::fs::read_to_string(file).unwrap_or_default();
            std::fs::write(file, report::splice(&doc, &generated))
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
            eprintln!(
                "wrote {} ({} plots in {})",
                file.display(),
                drawn.len(),
                plots_dir.unwrap_or_default().display()
            );
        }
        None => println!("{generated}"),
    }
    Ok(())
}

/// One subcommand (not `all`): its sections.
async fn run_one(cli: Cli, name: &str, args: &[String]) -> anyhow::Result<Vec<Section>> {
    let work_dir = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let budget = Duration::from_secs(cli.budget_secs);
    let mut sections = Vec::new();
    let command = section_command(args, name);
    if matches!(cli.command, Which::Store) {
        let params = store::StoreParams {
            sequential: 1000,
            concurrent: 6400,
            clients: cli.clients,
            reads: 5000,
            range_keys: 10_000,
            ranges: 10,
            watch_writes: 5000,
            runs: cli.runs.max(1),
            budget,
        };
        sections.push(store::run(&work_dir, &params, &command).await?);
    }
    if matches!(cli.command, Which::Api) {
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
        sections.push(api::run(&bin, &work_dir, &params, &command).await?);
    }
    if matches!(cli.command, Which::Crd) {
        let bin = process::kaji_binary(cli.kaji.clone())?;
        let params = crd::CrdParams {
            creates: cli.creates,
            clients: cli.clients,
            runs: cli.runs.max(1),
            watchers: cli.crd_watchers,
            changes: cli.changes,
            entries: cli.entries,
            value_bytes: cli.value_bytes,
            budget,
        };
        sections.push(crd::run(&bin, &work_dir, &params, &command).await?);
    }
    if let Which::E2e { nodes, replicas } = cli.command {
        let bin = process::kaji_binary(cli.kaji.clone())?;
        let params = e2e::E2eParams {
            nodes,
            replicas,
            ..Default::default()
        };
        sections.push(e2e::run(&bin, &work_dir, &params).await?);
    }
    if let Which::Scheduler {
        nodes,
        init_pods,
        pods,
    } = cli.command
    {
        let bin = process::kaji_binary(cli.kaji.clone())?;
        let params = scheduler::SchedulerParams {
            nodes,
            init_pods,
            pods,
            clients: cli.clients,
            ..Default::default()
        };
        sections.push(scheduler::run(&bin, &work_dir, &params).await?);
    }
    Ok(sections)
}
