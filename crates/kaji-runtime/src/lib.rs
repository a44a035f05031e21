//! The pod runtime seam: what a node agent asks of whatever runs containers.
//!
//! The shape follows Kubernetes' CRI `RuntimeService`: a pod is a *sandbox*
//! (its network and shared context) holding *containers* that are created,
//! started, stopped and removed one by one, and whose state the agent polls.
//! Logs are files in CRI's log format (see [`logs`]) under the sandbox's log
//! directory; exec is a child process with piped streams.
//!
//! This crate owns the trait, its types, the simulated runtime (pods that run
//! without processes, for scale) and the conformance suite every runtime must
//! pass. It must not talk to the API server: the agent translates Pod objects
//! into these requests, resolving env and volume contents before it calls in.

pub mod conformance;
pub mod logs;
mod simulated;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

pub use simulated::SimulatedRuntime;

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No sandbox or container has that id.
    #[error("{kind} {id} not found")]
    NotFound {
        /// "sandbox" or "container".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request is invalid for the object's state (e.g. starting a
    /// container twice, creating a container in a stopped sandbox).
    #[error("{0}")]
    InvalidState(String),
    /// The container's command could not be started (missing binary,
    /// bad working directory); reported to users as the waiting reason
    /// `RunContainerError` or `CreateContainerError`.
    #[error("failed to start {what}: {source}")]
    Start {
        /// What was being started.
        what: String,
        /// The underlying cause.
        #[source]
        source: std::io::Error,
    },
    /// Setting up or tearing down the pod's network failed.
    #[error("pod network: {0}")]
    Network(String),
    /// Any other host-level failure (files, cgroups, namespaces).
    #[error("{context}: {source}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// The underlying cause.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// An [`RuntimeError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result of a runtime call.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Identifies the pod a sandbox belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSandboxMetadata {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's uid.
    pub uid: String,
    /// How many sandboxes were made for this pod before (0 for the first).
    pub attempt: u32,
}

/// A port a pod asks the node to expose (`hostPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// "TCP", "UDP" or "SCTP".
    pub protocol: String,
    /// The port inside the pod.
    pub container_port: u16,
    /// The port on the node.
    pub host_port: u16,
    /// The node address to bind, empty for all.
    pub host_ip: String,
}

/// Everything a runtime needs to create a pod's sandbox.
#[derive(Debug, Clone, Default)]
pub struct PodSandboxConfig {
    /// Which pod this is.
    pub metadata: PodSandboxMetadata,
    /// The pod's hostname (`spec.hostname` or its name).
    pub hostname: String,
    /// Directory the sandbox's container logs go under.
    pub log_directory: PathBuf,
    /// Share the node's network instead of getting a namespace and an IP.
    pub host_network: bool,
    /// hostPort mappings.
    pub port_mappings: Vec<PortMapping>,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Whether a sandbox can hold running containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Set up and usable.
    Ready,
    /// Stopped (or half set up); only removal is left.
    NotReady,
}

/// A sandbox as the runtime sees it now.
#[derive(Debug, Clone)]
pub struct PodSandboxStatus {
    /// The runtime's id for the sandbox.
    pub id: String,
    /// Which pod it belongs to.
    pub metadata: PodSandboxMetadata,
    /// Ready or not.
    pub state: SandboxState,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The pod's IP, when it has its own network; `None` on the host network.
    pub ip: Option<IpAddr>,
    /// Labels it was created with.
    pub labels: BTreeMap<String, String>,
}

/// Identifies a container within its sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMetadata {
    /// The container's name in the pod spec.
    pub name: String,
    /// How many times this container was created before in this sandbox
    /// (the pod status' restartCount).
    pub attempt: u32,
}

/// A host directory or file made visible to a container at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where the container sees it.
    pub container_path: PathBuf,
    /// What it is on the host (the agent materialises volumes as directories).
    pub host_path: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Resource limits a runtime enforces where it can (cgroups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxResources {
    /// Relative CPU weight (from the cpu request, 2..262144 as CRI).
    pub cpu_shares: Option<u64>,
    /// CPU quota in microseconds per period (from the cpu limit).
    pub cpu_quota: Option<i64>,
    /// CPU period in microseconds (100000 as Kubernetes).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; exceeding it kills the container (`OOMKilled`).
    pub memory_limit_bytes: Option<u64>,
}

/// Everything a runtime needs to create a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// Which container this is.
    pub metadata: ContainerMetadata,
    /// The image reference, recorded (runtimes may ignore it).
    pub image: String,
    /// The entrypoint (`command`); runtimes without images need it non-empty
    /// unless `args` is.
    pub command: Vec<String>,
    /// Arguments (`args`), after `$(VAR)` expansion by the agent.
    pub args: Vec<String>,
    /// Working directory, empty for the runtime's default.
    pub working_dir: String,
    /// Environment, fully resolved, in order.
    pub envs: Vec<(String, String)>,
    /// Volumes.
    pub mounts: Vec<Mount>,
    /// Log file path relative to the sandbox's `log_directory`.
    pub log_path: PathBuf,
    /// Keep stdin open.
    pub stdin: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// Limits.
    pub resources: LinuxResources,
    /// Labels for the runtime's bookkeeping.
    pub labels: BTreeMap<String, String>,
}

/// A container's lifecycle state, as CRI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process is running.
    Running,
    /// Its process ended (or never could start).
    Exited,
    /// The runtime lost track of it.
    Unknown,
}

/// A container as the runtime sees it now.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    /// The runtime's id for the container.
    pub id: String,
    /// The sandbox it lives in.
    pub sandbox_id: String,
    /// Which container it is.
    pub metadata: ContainerMetadata,
    /// Its state.
    pub state: ContainerState,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its process started, once it has.
    pub started_at: Option<DateTime<Utc>>,
    /// When its process ended, once it has.
    pub finished_at: Option<DateTime<Utc>>,
    /// Exit code once exited (128+signal when killed by a signal).
    pub exit_code: Option<i32>,
    /// Kubernetes' terminated reason: `Completed`, `Error`, `OOMKilled`,
    /// `ContainerCannotRun`; empty while not exited.
    pub reason: String,
    /// Human-readable detail, e.g. why it could not run.
    pub message: String,
    /// The image it was created with.
    pub image: String,
    /// Absolute path of its log file.
    pub log_path: PathBuf,
}

/// How a container's processes are isolated on this node, reported in the
/// Node's status so users can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// Runtime name, e.g. "kaji-process" (node status' containerRuntimeVersion
    /// is `name://version`).
    pub name: String,
    /// Runtime version.
    pub version: String,
    /// Whether the runtime can start pods now.
    pub runtime_ready: bool,
    /// Whether pods get their own network namespace and IP.
    pub network_ready: bool,
    /// Why not, when something is not ready or isolation is reduced.
    pub message: String,
}

/// A running exec session's streams and its exit code.
pub struct ExecSession {
    /// The process' stdin, when requested.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Its stdout (and stderr too, with a tty).
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its stderr (empty with a tty).
    pub stderr: Pin<Box<dyn AsyncRead + Send>>,
    /// Resolves to the exit code once the process ends.
    pub exit_code: BoxFuture<'static, Result<i32>>,
}

/// The output of a command run to completion in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// What it wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Its exit code.
    pub exit_code: i32,
}

/// What runs pods on a node: the seam between the node agent and processes.
///
/// # Guarantees
/// Every call is idempotent where CRI's is: stopping a stopped sandbox or
/// container and removing a removed one succeed. Status calls never block on
/// the container's process.
#[async_trait]
pub trait PodRuntime: Send + Sync {
    /// Name, version and readiness.
    async fn status(&self) -> RuntimeStatus;

    /// Tells the runtime the node's pod CIDR once it is known (CRI's
    /// `UpdateRuntimeConfig`), so sandboxes can get addresses from it.
    ///
    /// # Errors
    /// The CIDR does not parse, or the network cannot be configured for it.
    async fn update_pod_cidr(&self, cidr: &str) -> Result<()>;

    /// Creates and starts a sandbox; returns its id.
    ///
    /// # Errors
    /// The network or the log directory cannot be set up.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;

    /// Stops every container in the sandbox (killing them) and tears its
    /// network down; the sandbox stays listed as NotReady.
    ///
    /// # Errors
    /// Teardown failed; calling again retries.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;

    /// Removes a sandbox and its containers (stopping them first).
    ///
    /// # Errors
    /// Cleanup failed; calling again retries.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;

    /// The sandbox's current status.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`].
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus>;

    /// Every sandbox the runtime knows.
    ///
    /// # Errors
    /// The runtime cannot be queried.
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>>;

    /// Creates (but does not start) a container in a ready sandbox.
    ///
    /// # Errors
    /// Unknown or stopped sandbox; invalid config.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String>;

    /// Starts a created container's process.
    ///
    /// # Errors
    /// [`RuntimeError::Start`] when the process cannot be started (the
    /// container is then Exited with reason `ContainerCannotRun`).
    async fn start_container(&self, id: &str) -> Result<()>;

    /// Stops a container: SIGTERM, then SIGKILL after `grace`.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`].
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes a container (killing it if it still runs).
    ///
    /// # Errors
    /// Cleanup failed.
    async fn remove_container(&self, id: &str) -> Result<()>;

    /// The container's current status.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`].
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;

    /// Containers, of one sandbox or of all.
    ///
    /// # Errors
    /// The runtime cannot be queried.
    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>>;

    /// Whether pod addresses are made up (nothing listens there), so that
    /// network probes against a pod's own address cannot be made and pass,
    /// as on kwok's pods.
    fn addresses_are_simulated(&self) -> bool {
        false
    }

    /// Runs a command in a running container to completion, killing it after
    /// `timeout` (exec probes).
    ///
    /// # Errors
    /// The container is not running, or the command cannot start.
    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput>;

    /// Starts a command in a running container with streamed stdio
    /// (`kubectl exec`).
    ///
    /// # Errors
    /// The container is not running, or the command cannot start.
    async fn exec(&self, id: &str, cmd: &[String], stdin: bool, tty: bool) -> Result<ExecSession>;
}

/// Gives a sandbox's network namespace an interface and an address, and
/// takes them away again: the seam between a runtime and pod networking
/// (what CNI plugins are to containerd).
#[async_trait]
pub trait PodNetwork: Send + Sync {
    /// Sets the range pod addresses come from (the node's pod CIDR).
    ///
    /// # Errors
    /// The CIDR does not parse or the node's bridge cannot be configured.
    async fn set_pod_cidr(&self, cidr: &str) -> Result<()>;

    /// Whether a pod CIDR is set and pods can be attached.
    fn ready(&self) -> bool;

    /// Attaches the network namespace at `netns` (a path such as
    /// `/run/netns/kaji-<sandbox>`) for sandbox `sandbox_id`; returns the
    /// pod's IP. Calling it again for the same sandbox returns the same IP.
    ///
    /// # Errors
    /// [`RuntimeError::Network`].
    async fn attach(
        &self,
        sandbox_id: &str,
        pod: &PodSandboxMetadata,
        netns: &std::path::Path,
    ) -> Result<IpAddr>;

    /// Releases the sandbox's address and interface; succeeds if already done.
    ///
    /// # Errors
    /// [`RuntimeError::Network`].
    async fn detach(&self, sandbox_id: &str, netns: &std::path::Path) -> Result<()>;
}
