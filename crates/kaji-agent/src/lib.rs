//! The node agent, kaji's kubelet: owns one node's registration, heartbeat
//! and the pods bound to it, and runs them through a [`PodRuntime`].
//!
//! For each node it runs it registers the Node (labels, capacity, addresses,
//! node info, the agent's port), renews the node's Lease in
//! `kube-node-lease`, reports node conditions, and syncs every pod whose
//! `spec.nodeName` names it: volumes, sandbox, init containers, containers,
//! restarts with CrashLoopBackOff, probes, status, and graceful deletion.
//! It serves `/containerLogs` and `/exec` over HTTPS for the API server to
//! relay. One process may run many simulated nodes ([`start_simulated`]),
//! sharing one pod watch, one node watch, batched lease renewals and one
//! server.
//!
//! It talks to the API only through kube-rs, like a kubelet; it must not
//! touch the store, and it never acts on another node's pods or Node.

mod backoff;
mod context;
pub mod downward;
mod env;
mod lease;
pub mod machine;
mod node;
mod objects;
mod pods;
mod server;
mod tls;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kaji_controllers::events::EventRecorder;
use kaji_runtime::{PodRuntime, SimulatedRuntime};
use tokio::task::JoinHandle;

pub use backoff::BackoffPolicy;
pub use context::Timings;
pub use lease::LEASE_NAMESPACE;
pub use machine::MachineInfo;
pub use node::{KUBELET_VERSION, POD_NETWORK_ANNOTATION};

use context::NodeContext;
use objects::ObjectCache;

/// The port kubelet serves on by default.
pub const DEFAULT_PORT: u16 = 10250;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The serving certificate could not be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Registering a Node failed.
    #[error("registering node: {0}")]
    Register(#[source] kube::Error),
}

/// How to run one real node.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name.
    pub node_name: String,
    /// Where pod directories and logs go (`pods/`, `log/pods/`, `pki/`).
    pub data_dir: PathBuf,
    /// The node's InternalIP; default: the host's primary IPv4 address, else
    /// 127.0.0.1.
    pub internal_ip: Option<IpAddr>,
    /// Address the HTTPS endpoint binds; default: the InternalIP.
    pub bind_address: Option<IpAddr>,
    /// The HTTPS port (0: any free port; the Node advertises the real one).
    pub port: u16,
    /// Labels added to the well-known ones.
    pub labels: BTreeMap<String, String>,
    /// Periods and back-off.
    pub timings: Timings,
}

impl AgentConfig {
    /// A configuration with defaults for everything but the name and directory.
    pub fn new(node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            internal_ip: None,
            bind_address: None,
            port: DEFAULT_PORT,
            labels: BTreeMap::new(),
            timings: Timings::default(),
        }
    }
}

/// How to run many simulated nodes in one process.
#[derive(Debug, Clone)]
pub struct SimulatedConfig {
    /// How many nodes.
    pub count: usize,
    /// Node names are `<prefix><index>`.
    pub prefix: String,
    /// Where the nodes' directories go (`nodes/<name>/`).
    pub data_dir: PathBuf,
    /// Every node's InternalIP (they share one endpoint); default 127.0.0.1.
    pub internal_ip: Option<IpAddr>,
    /// The shared HTTPS port (0: any free port).
    pub port: u16,
    /// CPUs each node reports.
    pub cpus: u32,
    /// Memory each node reports, in bytes.
    pub memory_bytes: u64,
    /// Pods each node accepts.
    pub max_pods: u32,
    /// Labels added to the well-known ones.
    pub labels: BTreeMap<String, String>,
    /// Periods and back-off.
    pub timings: Timings,
    /// Create (empty) container log files; off, pods touch no disk.
    pub write_logs: bool,
}

impl SimulatedConfig {
    /// `count` nodes named `node-0..` with 8 CPUs, 32Gi and 110 pods each.
    pub fn new(count: usize, data_dir: impl Into<PathBuf>) -> Self {
        SimulatedConfig {
            count,
            prefix: "node-".into(),
            data_dir: data_dir.into(),
            internal_ip: None,
            port: DEFAULT_PORT,
            cpus: 8,
            memory_bytes: 32 << 30,
            max_pods: machine::DEFAULT_MAX_PODS,
            labels: BTreeMap::new(),
            timings: Timings::default(),
            write_logs: false,
        }
    }
}

/// A running agent; dropping it stops the agent (pods keep running, as they
/// do when a kubelet stops).
pub struct Agent {
    nodes: Vec<Arc<NodeContext>>,
    simulated: HashMap<String, Arc<SimulatedRuntime>>,
    port: u16,
    cert_pem: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    /// The HTTPS port the agent serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The agent's self-signed serving certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The names of the nodes this agent runs.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The runtime of a simulated node (to make its containers exit).
    pub fn simulated_runtime(&self, node: &str) -> Option<Arc<SimulatedRuntime>> {
        self.simulated.get(node).cloned()
    }

    /// How many pods the agent's nodes run now.
    pub fn pod_count(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.workers.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Stops the agent: heartbeats, watches and pod workers end; pods keep
    /// running in their runtime.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        for node in &self.nodes {
            node.workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What every node of a process needs to be built.
struct NodeSetup {
    name: String,
    root: PathBuf,
    runtime: Arc<dyn PodRuntime>,
    machine: MachineInfo,
}

async fn node_context(
    client: &kube::Client,
    setup: NodeSetup,
    host_ip: IpAddr,
    timings: Timings,
    objects: ObjectCache,
) -> Arc<NodeContext> {
    let rt = setup.runtime.status().await;
    Arc::new(NodeContext {
        recorder: EventRecorder::new(client.clone(), "kubelet").with_host(setup.name.clone()),
        name: setup.name,
        client: client.clone(),
        runtime: setup.runtime,
        runtime_name: rt.name,
        root: setup.root,
        host_ips: vec![host_ip.to_string()],
        allocatable: setup.machine.allocatable(),
        machine: setup.machine,
        timings,
        objects,
        workers: Mutex::new(HashMap::new()),
        pods_synced: std::sync::atomic::AtomicBool::new(false),
        pod_cidr: Mutex::new(None),
        node_uid: Mutex::new(None),
        write_logs: true,
    })
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Io {
            context: format!("binding {addr}"),
            source,
        })
}

/// Registers the nodes and starts every loop.
async fn launch(
    client: kube::Client,
    nodes: Vec<Arc<NodeContext>>,
    listener: tokio::net::TcpListener,
    cert: tls::ServingCert,
    labels: &BTreeMap<String, String>,
) -> Result<(u16, String, Vec<JoinHandle<()>>), Error> {
    let port = listener
        .local_addr()
        .map_err(|source| Error::Io {
            context: "reading the bound address".into(),
            source,
        })?
        .port();
    node::register_all(&nodes, port, labels)
        .await
        .map_err(Error::Register)?;
    let mut tasks = Vec::new();
    let (store, node_watch) = node::watch(client.clone(), &nodes);
    tasks.push(tokio::spawn(node_watch));
    tasks.push(tokio::spawn(node::report(
        nodes.clone(),
        store,
        port,
        labels.clone(),
    )));
    tasks.push(tokio::spawn(lease::run(nodes.clone())));
    tasks.push(tokio::spawn(pods::PodRouter::new(&nodes).run(client)));
    for node in &nodes {
        tasks.push(tokio::spawn(pods::relist(node.clone())));
    }
    let state = Arc::new(server::ServerState {
        nodes: nodes.clone(),
    });
    tasks.push(tokio::spawn(server::serve(
        listener,
        cert.config,
        state,
        std::future::pending(),
    )));
    Ok((port, cert.cert_pem, tasks))
}

/// Starts an agent for one real node.
///
/// # Errors
/// The data directory, the port or the certificate cannot be set up, or
/// the Node cannot be registered.
pub async fn start(
    client: kube::Client,
    config: AgentConfig,
    runtime: Arc<dyn PodRuntime>,
) -> Result<Agent, Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
        context: format!("creating {}", config.data_dir.display()),
        source,
    })?;
    let internal_ip = config.internal_ip.unwrap_or_else(machine::primary_ipv4);
    let listener = bind(SocketAddr::new(
        config.bind_address.unwrap_or(internal_ip),
        config.port,
    ))
    .await?;
    let machine = MachineInfo::detect(&config.data_dir);
    let mut names = vec![
        config.node_name.clone(),
        machine.hostname.clone(),
        "localhost".into(),
        internal_ip.to_string(),
    ];
    if internal_ip != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        names.push("127.0.0.1".into());
    }
    names.dedup();
    let cert = tls::self_signed(names, &config.data_dir.join("pki"))?;
    let objects = ObjectCache::new(client.clone(), config.timings.object_ttl);
    let setup = NodeSetup {
        name: config.node_name.clone(),
        root: config.data_dir.clone(),
        runtime,
        machine,
    };
    let node = node_context(&client, setup, internal_ip, config.timings, objects).await;
    let (port, cert_pem, tasks) =
        launch(client, vec![node.clone()], listener, cert, &config.labels).await?;
    Ok(Agent {
        nodes: vec![node],
        simulated: HashMap::new(),
        port,
        cert_pem,
        tasks,
    })
}

/// Runs one real node until `shutdown` completes.
///
/// # Errors
/// As [`start`].
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    runtime: Arc<dyn PodRuntime>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let agent = start(client, config, runtime).await?;
    tracing::info!(nodes = ?agent.node_names(), port = agent.port(), "node agent running");
    shutdown.await;
    drop(agent);
    Ok(())
}

/// Starts `config.count` simulated nodes over [`SimulatedRuntime`]s.
///
/// # Errors
/// The data directory, the port or the certificate cannot be set up, or a
/// Node cannot be registered.
pub async fn start_simulated(
    client: kube::Client,
    config: SimulatedConfig,
) -> Result<Agent, Error> {
    let internal_ip = config
        .internal_ip
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let listener = bind(SocketAddr::new(internal_ip, config.port)).await?;
    let cert = tls::self_signed(
        vec!["localhost".into(), internal_ip.to_string()],
        &config.data_dir.join("pki"),
    )?;
    let objects = ObjectCache::new(client.clone(), config.timings.object_ttl);
    let mut nodes = Vec::with_capacity(config.count);
    let mut simulated = HashMap::new();
    for i in 0..config.count {
        let name = format!("{}{i}", config.prefix);
        let runtime = Arc::new(SimulatedRuntime::new());
        simulated.insert(name.clone(), runtime.clone());
        let machine =
            MachineInfo::simulated(&name, config.cpus, config.memory_bytes, config.max_pods);
        let setup = NodeSetup {
            root: config.data_dir.join("nodes").join(&name),
            name,
            runtime,
            machine,
        };
        let mut ctx =
            node_context(&client, setup, internal_ip, config.timings, objects.clone()).await;
        if !config.write_logs {
            if let Some(ctx) = Arc::get_mut(&mut ctx) {
                ctx.write_logs = false;
            }
        }
        nodes.push(ctx);
    }
    let (port, cert_pem, tasks) =
        launch(client, nodes.clone(), listener, cert, &config.labels).await?;
    Ok(Agent {
        nodes,
        simulated,
        port,
        cert_pem,
        tasks,
    })
}

/// Runs simulated nodes until `shutdown` completes.
///
/// # Errors
/// As [`start_simulated`].
pub async fn run_simulated(
    client: kube::Client,
    config: SimulatedConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let agent = start_simulated(client, config).await?;
    tracing::info!(
        nodes = agent.nodes.len(),
        port = agent.port(),
        "simulated nodes running"
    );
    shutdown.await;
    drop(agent);
    Ok(())
}
