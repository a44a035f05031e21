//! Wiring of the node agent: which runtime and pod network a node gets.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kaji_runtime::{PodNetwork, PodRuntime};

/// What runs a node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Containers' commands run as host processes, isolated with network
    /// and mount namespaces and cgroups when running as root.
    Process,
    /// Pods go Running without processes (like kwok), for scale.
    Simulated,
    /// No node agent at all.
    None,
}

/// The node part of `kaji up` and `kaji agent`.
#[derive(Args, Clone)]
pub struct NodeArgs {
    /// The Node's name (default: this machine's hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// What runs pods.
    #[arg(long, value_enum, default_value = "process")]
    runtime: RuntimeKind,
    /// Where the agent serves logs and exec (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:10250")]
    agent_listen: SocketAddr,
    /// The node's InternalIP (default: the listen address, or the host's
    /// primary IPv4 when listening on all addresses).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The Linux bridge pods are attached to (process runtime, as root).
    #[arg(long, default_value = "kaji0")]
    bridge: String,
    /// Run this many simulated nodes instead of one (implies
    /// `--runtime simulated`); they are named `<node-name>-<i>`.
    #[arg(long)]
    simulate_nodes: Option<usize>,
    /// How often the node renews its Lease (its heartbeat).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    node_lease_renew_interval: std::time::Duration,
}

/// `kaji agent`.
#[derive(Args, Clone)]
pub struct AgentArgs {
    #[command(flatten)]
    pub client: crate::ClientArgs,
    /// Where pod directories, logs and the agent's certificate live.
    #[arg(long, env = "KAJI_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
}

/// Runs `kaji agent` until SIGTERM or Ctrl-C.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let client = crate::client_from(&args.client.kubeconfig).await?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| crate::default_data_dir().join("node"));
    let agent = start_local(client, &args.node, &data_dir).await?;
    if agent.is_none() {
        anyhow::bail!("--runtime none runs no agent");
    }
    crate::shutdown_signal().await;
    drop(agent);
    Ok(())
}

/// Starts the node agent `args` describe; `None` for `--runtime none`.
/// The node `kaji up` runs in its own process.
pub struct LocalNode {
    agent: kaji_agent::Agent,
    /// The runtime of a process node, whose pods go with `kaji up`.
    runtime: Option<Arc<dyn PodRuntime>>,
}

impl LocalNode {
    /// Stops the agent, then removes its pods' sandboxes: their processes
    /// die with `kaji up` anyway (`--pdeathsig`), and removing the
    /// sandboxes also gives back their network namespaces and addresses,
    /// which would otherwise outlive the process.
    pub async fn shut_down(mut self) {
        self.agent.stop();
        let Some(runtime) = self.runtime else {
            return;
        };
        let sandboxes = runtime.list_pod_sandboxes().await.unwrap_or_default();
        for sandbox in sandboxes {
            let _ = runtime.stop_pod_sandbox(&sandbox.id).await;
            if let Err(e) = runtime.remove_pod_sandbox(&sandbox.id).await {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "removing a pod sandbox at shutdown failed");
            }
        }
    }
}

pub async fn start_local(
    client: kube::Client,
    args: &NodeArgs,
    data_dir: &Path,
) -> anyhow::Result<Option<LocalNode>> {
    let name = args.node_name.clone().unwrap_or_else(hostname);
    let internal_ip = args.node_ip.or_else(|| {
        let ip = args.agent_listen.ip();
        (!ip.is_unspecified()).then_some(ip)
    });
    if let Some(count) = args.simulate_nodes {
        let mut config = kaji_agent::SimulatedConfig::new(count, data_dir);
        config.prefix = format!("{name}-");
        config.internal_ip = internal_ip;
        config.port = args.agent_listen.port();
        config.timings.lease_renew = args.node_lease_renew_interval;
        let agent = kaji_agent::start_simulated(client, config).await?;
        return Ok(Some(LocalNode {
            agent,
            runtime: None,
        }));
    }
    let process = args.runtime == RuntimeKind::Process;
    let runtime: Arc<dyn PodRuntime> = match args.runtime {
        RuntimeKind::None => return Ok(None),
        RuntimeKind::Simulated => Arc::new(kaji_runtime::SimulatedRuntime::new()),
        RuntimeKind::Process => {
            let network = pod_network(data_dir, &args.bridge)?;
            let runtime = kaji_runtime_process::ProcessRuntime::new(
                data_dir.join("runtime"),
                network.clone().map(|n| n as Arc<dyn PodNetwork>),
            )
            .context("starting the process runtime")?;
            if let Some(network) = network {
                let removed = network.collect_strays(&runtime.network_namespaces());
                if !removed.is_empty() {
                    tracing::warn!(
                        ?removed,
                        "removed pod namespaces a previous run left on the bridge"
                    );
                }
            }
            Arc::new(runtime)
        }
    };
    let mut config = kaji_agent::AgentConfig::new(name, data_dir);
    config.internal_ip = internal_ip;
    config.bind_address = Some(args.agent_listen.ip());
    config.port = args.agent_listen.port();
    config.timings.lease_renew = args.node_lease_renew_interval;
    let agent = kaji_agent::start(client, config, runtime.clone()).await?;
    Ok(Some(LocalNode {
        agent,
        runtime: process.then_some(runtime),
    }))
}

/// Pods get their own network only as root with the CNI plugins installed;
/// otherwise they share the host's, and the node says so.
fn pod_network(data_dir: &Path, bridge: &str) -> anyhow::Result<Option<Arc<kaji_cni::CniNetwork>>> {
    let mut config = kaji_cni::CniConfig::new(data_dir.join("cni"));
    if !is_root() || !config.bin_dir.join("bridge").exists() {
        tracing::warn!(
            "pods share the host network (needs root and the CNI plugins in /usr/lib/cni)"
        );
        return Ok(None);
    }
    config.bridge = bridge.to_string();
    let network = kaji_cni::CniNetwork::new(config).context("configuring the pod network")?;
    Ok(Some(Arc::new(network)))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kaji-node".to_string())
}
