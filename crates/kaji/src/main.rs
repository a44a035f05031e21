//! The `kaji` binary: thin command-line wiring of the components.
//!
//! `kaji up` runs the whole cluster in one process; `kaji apiserver` runs the
//! API server alone. Everything substantial lives in the library crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kaji",
    version,
    about = "A Kubernetes-compatible control plane in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole cluster in the foreground and write an admin kubeconfig.
    Up(ServerArgs),
    /// Run only the API server.
    Apiserver(ServerArgs),
    /// Run only the controllers, against any API server.
    ControllerManager(ClientArgs),
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
        Command::Up(a) | Command::Apiserver(a) => a.log.clone(),
        Command::ControllerManager(a) => a.log.clone(),
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
        Command::Up(args) => runtime.block_on(run_apiserver(args, true)),
        Command::Apiserver(args) => runtime.block_on(run_apiserver(args, false)),
        Command::ControllerManager(args) => runtime.block_on(run_controller_manager(args)),
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

async fn run_controller_manager(args: ClientArgs) -> anyhow::Result<()> {
    let client = client_from(&args.kubeconfig).await?;
    let config = kaji_controllers::leader::LeaderElectionConfig::default();
    tracing::info!(identity = %config.identity, "campaigning for the controller manager lease");
    kaji_controllers::run_with_leader_election(client, config, shutdown_signal())
        .await
        .context("a controller stopped")
}

async fn run_apiserver(args: ServerArgs, whole_cluster: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let store_path = data_dir.join("kaji.db");
    let durable: Arc<dyn kaji_store::Store> = Arc::new(
        kaji_store_sqlite::SqliteStore::open(&store_path)
            .with_context(|| format!("opening the store at {}", store_path.display()))?,
    );
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
    if whole_cluster {
        // The controllers use the API over loopback with the admin
        // credentials, exactly as they would from their own process.
        let client = client_from(&kubeconfig).await?;
        // A stable identity lets a restarted `up` take its own Lease back at
        // once instead of waiting for it to expire.
        let config = kaji_controllers::leader::LeaderElectionConfig {
            identity: "kaji-up".to_string(),
            ..Default::default()
        };
        tokio::spawn(async move {
            let run =
                kaji_controllers::run_with_leader_election(client, config, std::future::pending());
            if let Err(e) = run.await {
                tracing::error!(error = %e, "controllers stopped");
            }
        });
    }
    kaji_apiserver::serve(server, listener, shutdown_signal()).await?;
    tracing::info!("shut down cleanly");
    Ok(())
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
