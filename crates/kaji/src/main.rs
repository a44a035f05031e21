//! The `kaji` binary: thin command-line wiring of the components.
//!
//! `kaji up` runs the whole cluster in one process; `kaji apiserver` runs the
//! API server alone. Everything substantial lives in the library crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kaji_controllers::leader::LeaderElectionConfig;

mod agent;

#[derive(Parser)]
#[command(
    name = "kaji",
    version,
    about = "A Kubernetes-compatible control plane in one binary",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole cluster in the foreground (API server, controllers,
    /// scheduler and a node agent) and write an admin kubeconfig.
    Up(UpArgs),
    /// Run only the API server.
    Apiserver(ServerArgs),
    /// Run only the controllers, against any API server.
    ControllerManager(ControllerManagerArgs),
    /// Run only the scheduler, against any API server.
    Scheduler(SchedulerArgs),
    /// Run a node agent: register a Node and run the pods bound to it.
    Agent(agent::AgentArgs),
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// Kubeconfig of the cluster to manage.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Log filter, e.g. `info` or `kaji=debug`.
    #[arg(long, env = "KAJI_LOG", default_value = "info")]
    log: String,
}

#[derive(Args, Clone)]
struct LeaderArgs {
    /// This replica's identity in leader election (default: hostname plus
    /// random digits).
    #[arg(long)]
    identity: Option<String>,
    /// How long a leader's Lease lasts without renewal, e.g. `15s`.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long a leader keeps trying to renew before it steps down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire or renew.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
}

impl LeaderArgs {
    fn apply(&self, mut config: LeaderElectionConfig) -> anyhow::Result<LeaderElectionConfig> {
        if let Some(id) = &self.identity {
            config.identity = id.clone();
        }
        config.lease_duration = self.leader_elect_lease_duration;
        config.renew_deadline = self.leader_elect_renew_deadline;
        config.retry_period = self.leader_elect_retry_period;
        config
            .validate()
            .context("invalid leader election settings")?;
        Ok(config)
    }
}

#[derive(Args, Clone)]
struct ControllerArgs {
    /// The range node pod CIDRs are allocated from.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The size of each node's pod CIDR (IPv4).
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// How long a node may go without a heartbeat before it is NotReady.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How often node heartbeats are checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
}

impl ControllerArgs {
    fn options(&self) -> anyhow::Result<kaji_controllers::Options> {
        let mut options = kaji_controllers::Options {
            node_ipam: kaji_controllers::nodeipam::Config::new(
                &self.cluster_cidr,
                self.node_cidr_mask_size,
                64,
            )
            .context("invalid --cluster-cidr")?,
            ..Default::default()
        };
        options.node_lifecycle.grace_period = self.node_monitor_grace_period;
        options.node_lifecycle.monitor_period = self.node_monitor_period;
        Ok(options)
    }
}

#[derive(Args, Clone)]
struct ControllerManagerArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    leader: LeaderArgs,
    #[command(flatten)]
    controllers: ControllerArgs,
}

#[derive(Args, Clone)]
struct SchedulerArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    leader: LeaderArgs,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Where the store, certificates and kubeconfig live.
    #[arg(long, env = "KAJI_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve the API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Serve plain HTTP without authentication (local experiments only).
    #[arg(long)]
    insecure_http: bool,
    /// Log filter, e.g. `info` or `kaji=debug`.
    #[arg(long, env = "KAJI_LOG", default_value = "info")]
    log: String,
    /// The store: `embedded` (SQLite in the data dir) or etcd, as
    /// `etcd://host:port[,host:port…]` (`etcds://…` for TLS).
    #[arg(long, env = "KAJI_STORE", default_value = "embedded")]
    store: String,
    /// The CA that signed etcd's server certificates (PEM), for `etcds://`.
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// The client certificate to present to etcd (PEM).
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
}

impl ServerArgs {
    /// The durable store these arguments name.
    async fn open_store(
        &self,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<dyn kaji_store::Store>> {
        if self.store == "embedded" {
            let path = data_dir.join("kaji.db");
            let store = kaji_store_sqlite::SqliteStore::open(&path)
                .with_context(|| format!("opening the store at {}", path.display()))?;
            return Ok(Arc::new(store));
        }
        let mut config = kaji_store_etcd::EtcdConfig::from_url(&self.store)
            .map_err(anyhow::Error::msg)
            .context("--store")?;
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        if let Some(ca) = &self.etcd_cafile {
            config.ca_pem = Some(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.etcd_certfile, &self.etcd_keyfile) {
            config.client_cert_pem = Some((read(cert)?, read(key)?));
        }
        let store = kaji_store_etcd::EtcdStore::connect(&config)
            .await
            .with_context(|| format!("connecting to etcd at {}", config.endpoints.join(",")))?;
        Ok(Arc::new(store))
    }
}

#[derive(Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    controllers: ControllerArgs,
    #[command(flatten)]
    node: agent::NodeArgs,
}

/// Parses `500ms`, `15s`, `2m`, `1h` or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".kaji")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log = match &cli.command {
        Command::Up(a) => a.server.log.clone(),
        Command::Apiserver(a) => a.log.clone(),
        Command::ControllerManager(a) => a.client.log.clone(),
        Command::Scheduler(a) => a.client.log.clone(),
        Command::Agent(a) => a.client.log.clone(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Up(args) => runtime.block_on(run_apiserver(args.server.clone(), Some(args))),
        Command::Apiserver(args) => runtime.block_on(run_apiserver(args, None)),
        Command::ControllerManager(args) => runtime.block_on(run_controller_manager(args)),
        Command::Scheduler(args) => runtime.block_on(run_scheduler(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
    }
}

async fn client_from(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
    kube::Client::try_from(config).context("building the API client")
}

async fn run_controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let client = client_from(&args.client.kubeconfig).await?;
    let config = args.leader.apply(LeaderElectionConfig::default())?;
    let options = args.controllers.options()?;
    tracing::info!(identity = %config.identity, "campaigning for the controller manager lease");
    kaji_controllers::run_with_leader_election(client, config, options, shutdown_signal())
        .await
        .context("a controller stopped")
}

async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let client = client_from(&args.client.kubeconfig).await?;
    let config = args
        .leader
        .apply(kaji_scheduler::leader_election_config())?;
    tracing::info!(identity = %config.identity, "campaigning for the scheduler lease");
    kaji_scheduler::run_with_leader_election(client, config, shutdown_signal())
        .await
        .context("the scheduler stopped")
}

async fn run_apiserver(args: ServerArgs, whole_cluster: Option<UpArgs>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let durable = args.open_store(&data_dir).await?;
    kaji_apiserver::spawn_compactor(durable.clone(), kaji_apiserver::DEFAULT_COMPACTION_INTERVAL);
    // Lists and watches are served from memory; writes go through to disk.
    let cache = kaji_watchcache::WatchCache::new(durable, &["/registry/"]);
    cache.ready().await;
    let store: Arc<dyn kaji_store::Store> = Arc::new(cache);
    let pki = if args.insecure_http {
        None
    } else {
        let sans = vec![args.listen.ip().to_string()];
        Some(Arc::new(
            kaji_pki::Pki::load_or_create(&data_dir, &sans).context("preparing certificates")?,
        ))
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let config = kaji_apiserver::Config {
        listen: addr,
        pki: pki.clone(),
    };
    let server = kaji_apiserver::ApiServer::new(store, &config);
    server
        .bootstrap()
        .await
        .context("creating the system namespaces")?;
    let scheme = if pki.is_some() { "https" } else { "http" };
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("{scheme}://{host}:{}", addr.port());
    let kubeconfig = data_dir.join("kubeconfig");
    match &pki {
        Some(pki) => {
            pki.write_kubeconfig(&kubeconfig, &url)
                .context("writing the kubeconfig")?;
        }
        None => write_insecure_kubeconfig(&kubeconfig, &url)?,
    }
    println!("kubeconfig: {}", kubeconfig.display());
    println!(
        "kaji is ready at {url} in {} ms (export KUBECONFIG={})",
        started.elapsed().as_millis(),
        kubeconfig.display()
    );
    // On SIGTERM the in-process components stop first, releasing their
    // Leases through the still-serving API; then the server stops.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        stop_tx.send_replace(true);
    });
    let (components_done_tx, components_done) = tokio::sync::oneshot::channel::<()>();
    let server_stop = async move {
        let _ = components_done.await;
    };
    let serving = tokio::spawn(kaji_apiserver::serve(server, listener, server_stop));
    // The node must live as long as the server; it is shut down after it.
    let cluster = match whole_cluster {
        Some(up) => Some(start_cluster(&kubeconfig, &data_dir, up, stop_rx.clone()).await?),
        None => None,
    };

    let mut stop = stop_rx;
    let _ = stop.wait_for(|s| *s).await;
    let cluster = match cluster {
        Some(c) => Some(c.stop_components().await),
        None => None,
    };
    let _ = components_done_tx.send(());
    serving.await.context("the API server task failed")??;
    if let Some(cluster) = cluster {
        cluster.shut_down_node().await;
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A tokio runtime on threads of its own for one in-process component, as
/// if it ran in its own process: the kernel then shares the cores between
/// it and the API server. On one shared runtime the server's thousands of
/// connection tasks queue ahead of a component's few busy ones, and under
/// load the component's watches fall seconds behind.
struct Isolated(Option<tokio::runtime::Runtime>);

impl Isolated {
    fn new(name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting the {name} runtime"))?;
        Ok(Isolated(Some(runtime)))
    }

    fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0
            .as_ref()
            .expect("the runtime lives until dropped")
            .spawn(future)
    }

    /// Runs `make()`'s future to completion on this runtime, driven from a
    /// thread of its own, for futures the compiler cannot prove `Send`.
    async fn run<F, Fut>(&self, make: F) -> anyhow::Result<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future,
        Fut::Output: Send + 'static,
    {
        let handle = self
            .0
            .as_ref()
            .expect("the runtime lives until dropped")
            .handle()
            .clone();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .spawn(move || {
                let _ = done_tx.send(handle.block_on(make()));
            })
            .context("starting a thread")?;
        done.await.context("the task's thread panicked")
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Everything `kaji up` runs besides the API server: the controllers, the
/// scheduler and a node agent, each on its own runtime. They use the API
/// over loopback with the admin credentials, exactly as they would from
/// their own processes.
struct Cluster {
    controllers: (Isolated, tokio::task::JoinHandle<()>),
    scheduler: (Isolated, tokio::task::JoinHandle<()>),
    node: (Isolated, Option<agent::LocalNode>),
}

impl Cluster {
    /// Waits (at most 5 s) for the controllers and the scheduler to stop
    /// after `stop` turned true: they release their Leases through the
    /// still-serving API.
    async fn stop_components(mut self) -> Self {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = (&mut self.controllers.1).await;
            let _ = (&mut self.scheduler.1).await;
        })
        .await;
        self
    }

    async fn shut_down_node(self) {
        let (runtime, node) = self.node;
        if let Some(node) = node {
            let _ = runtime.run(move || node.shut_down()).await;
        }
    }
}

async fn start_cluster(
    kubeconfig: &std::path::Path,
    data_dir: &std::path::Path,
    up: UpArgs,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Cluster> {
    // A stable identity lets a restarted `up` take its own Leases back at
    // once instead of waiting for them to expire.
    let identity = "kaji-up".to_string();
    let election = LeaderElectionConfig {
        identity: identity.clone(),
        ..Default::default()
    };
    let options = up.controllers.options()?;
    let until = stopped(stop.clone());
    let path = kubeconfig.to_path_buf();
    let runtime = Isolated::new("kaji-controllers")?;
    let task = runtime.spawn(async move {
        let run = async {
            let client = client_from(&path).await?;
            kaji_controllers::run_with_leader_election(client, election, options, until)
                .await
                .map_err(anyhow::Error::from)
        };
        if let Err(e) = run.await {
            tracing::error!(error = %e, "controllers stopped");
        }
    });
    let controllers = (runtime, task);

    let election = LeaderElectionConfig {
        identity,
        ..kaji_scheduler::leader_election_config()
    };
    let until = stopped(stop);
    let path = kubeconfig.to_path_buf();
    let runtime = Isolated::new("kaji-scheduler")?;
    let task = runtime.spawn(async move {
        let run = async {
            let client = client_from(&path).await?;
            kaji_scheduler::run_with_leader_election(client, election, until)
                .await
                .map_err(anyhow::Error::from)
        };
        if let Err(e) = run.await {
            tracing::error!(error = %e, "scheduler stopped");
        }
    });
    let scheduler = (runtime, task);

    let runtime = Isolated::new("kaji-agent")?;
    let path = kubeconfig.to_path_buf();
    let dir = data_dir.join("node");
    let node = runtime
        .run(move || async move {
            let client = client_from(&path).await?;
            agent::start_local(client, &up.node, &dir)
                .await
                .context("starting the node agent")
        })
        .await??;
    Ok(Cluster {
        controllers,
        scheduler,
        node: (runtime, node),
    })
}

fn write_insecure_kubeconfig(path: &std::path::Path, url: &str) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kaji\n  cluster:\n    server: {url}\ncontexts:\n- name: kaji\n  context:\n    cluster: kaji\n    user: kaji-admin\n    namespace: default\ncurrent-context: kaji\nusers:\n- name: kaji-admin\n  user: {{}}\n"
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
