//! The simulated runtime: pods that run without processes, for scale (what
//! kwok is to Kubernetes).
//!
//! Sandboxes and containers are bookkeeping in one map behind a mutex: a
//! container goes Running when started and stays so until stopped; nothing
//! is executed, so exec is refused. Sandboxes get an IP from the pod CIDR set
//! with [`update_pod_cidr`](crate::PodRuntime::update_pod_cidr), or none
//! while it is unset (then the runtime reports `network_ready = false`).
//!
//! What a stopped container reports, chosen to look like a well-behaved
//! process under the kubelet: stopped with a grace period it "handles
//! SIGTERM and exits cleanly" (exit code 0, reason `Completed`); stopped with
//! no grace, or still running when its sandbox stops, it is SIGKILLed (exit
//! code 137, reason `Error`). [`SimulatedRuntime::simulate_exit`] makes a
//! running container exit on its own, for restart-policy tests.
//!
//! # Caveats
//! A container's log file is created empty when its sandbox has a log
//! directory, so `kubectl logs` answers; pass an empty `log_directory` to
//! skip the file entirely (10,000 pods then touch no disk at all).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use crate::{
    ContainerConfig, ContainerState, ContainerStatus, ExecOutput, ExecSession, PodRuntime,
    PodSandboxConfig, PodSandboxStatus, Result, RuntimeError, RuntimeStatus, SandboxState,
};

/// Exit code of a container killed with SIGKILL (128 + 9).
const SIGKILL_EXIT: i32 = 137;

/// Pods that go Running without processes.
///
/// # Guarantees
/// No call blocks or touches the disk beyond creating log directories and
/// empty log files; memory is a few hundred bytes per container.
#[derive(Debug, Default)]
pub struct SimulatedRuntime {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cidr: Option<Cidr>,
    /// Addresses held by ready sandboxes.
    used_ips: HashSet<IpAddr>,
    /// Where the next address search starts, so allocation stays O(1) on average.
    next_offset: u128,
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, ContainerStatus>,
}

#[derive(Debug)]
struct Sandbox {
    status: PodSandboxStatus,
    log_directory: PathBuf,
    containers: BTreeSet<String>,
}

impl SimulatedRuntime {
    /// An empty runtime without a pod CIDR.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a running container exit by itself with `exit_code`, as if its
    /// process had ended; `reason` defaults (when empty) to `Completed` for 0
    /// and `Error` otherwise (pass `OOMKilled` to fake an OOM kill).
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`], or [`RuntimeError::InvalidState`] when it
    /// is not running.
    pub fn simulate_exit(&self, id: &str, exit_code: i32, reason: &str) -> Result<()> {
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("container", id))?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::InvalidState(format!(
                "container {id} is not running"
            )));
        }
        exit(c, exit_code, reason);
        Ok(())
    }
}

fn not_found(kind: &'static str, id: &str) -> RuntimeError {
    RuntimeError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

fn exit(c: &mut ContainerStatus, exit_code: i32, reason: &str) {
    c.state = ContainerState::Exited;
    c.finished_at = Some(Utc::now());
    c.exit_code = Some(exit_code);
    c.reason = match (reason, exit_code) {
        ("", 0) => "Completed".to_owned(),
        ("", _) => "Error".to_owned(),
        (r, _) => r.to_owned(),
    };
}

impl State {
    fn allocate_ip(&mut self) -> Result<Option<IpAddr>> {
        let Some(cidr) = self.cidr else {
            return Ok(None);
        };
        let (first, count) = cidr.usable();
        for i in 0..count {
            let offset = first + (self.next_offset + i) % count;
            let ip = cidr.at(offset);
            if self.used_ips.insert(ip) {
                self.next_offset = (self.next_offset + i + 1) % count;
                return Ok(Some(ip));
            }
        }
        Err(RuntimeError::Network(format!(
            "pod CIDR {cidr} has no free address"
        )))
    }

    /// Marks the sandbox NotReady, kills its running containers and frees its IP.
    fn stop_sandbox(&mut self, id: &str) -> Result<()> {
        let sandbox = self
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| not_found("sandbox", id))?;
        sandbox.status.state = SandboxState::NotReady;
        if let Some(ip) = sandbox.status.ip.take() {
            self.used_ips.remove(&ip);
        }
        for cid in &sandbox.containers {
            if let Some(c) = self.containers.get_mut(cid) {
                if c.state == ContainerState::Running {
                    exit(c, SIGKILL_EXIT, "Error");
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PodRuntime for SimulatedRuntime {
    fn addresses_are_simulated(&self) -> bool {
        true
    }

    async fn status(&self) -> RuntimeStatus {
        let network_ready = self.lock().cidr.is_some();
        RuntimeStatus {
            name: "kaji-simulated".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime_ready: true,
            network_ready,
            message: if network_ready {
                String::new()
            } else {
                "no pod CIDR set yet: pods get no IP".to_owned()
            },
        }
    }

    async fn update_pod_cidr(&self, cidr: &str) -> Result<()> {
        let parsed = Cidr::parse(cidr)?;
        let mut state = self.lock();
        if state.cidr != Some(parsed) {
            state.cidr = Some(parsed);
            state.next_offset = 0;
        }
        Ok(())
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        if !config.log_directory.as_os_str().is_empty() {
            std::fs::create_dir_all(&config.log_directory).map_err(|e| {
                RuntimeError::io(
                    format!("creating log directory {}", config.log_directory.display()),
                    e,
                )
            })?;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut state = self.lock();
        let ip = if config.host_network {
            None
        } else {
            state.allocate_ip()?
        };
        let status = PodSandboxStatus {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: SandboxState::Ready,
            created_at: Utc::now(),
            ip,
            labels: config.labels.clone(),
        };
        let sandbox = Sandbox {
            status,
            log_directory: config.log_directory.clone(),
            containers: BTreeSet::new(),
        };
        state.sandboxes.insert(id.clone(), sandbox);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.lock().stop_sandbox(id)
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if !state.sandboxes.contains_key(id) {
            return Ok(());
        }
        state.stop_sandbox(id)?;
        if let Some(sandbox) = state.sandboxes.remove(id) {
            for cid in &sandbox.containers {
                state.containers.remove(cid);
            }
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let state = self.lock();
        let sandbox = state
            .sandboxes
            .get(id)
            .ok_or_else(|| not_found("sandbox", id))?;
        Ok(sandbox.status.clone())
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        let mut list: Vec<_> = self
            .lock()
            .sandboxes
            .values()
            .map(|s| s.status.clone())
            .collect();
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let mut state = self.lock();
        let sandbox = state
            .sandboxes
            .get_mut(sandbox_id)
            .ok_or_else(|| not_found("sandbox", sandbox_id))?;
        if sandbox.status.state != SandboxState::Ready {
            return Err(RuntimeError::InvalidState(format!(
                "sandbox {sandbox_id} is not ready"
            )));
        }
        let log_path = sandbox.log_directory.join(&config.log_path);
        if !sandbox.log_directory.as_os_str().is_empty() {
            crate::logs::LogWriter::create(&log_path).map_err(|e| {
                RuntimeError::io("creating container log", std::io::Error::other(e))
            })?;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        sandbox.containers.insert(id.clone());
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox_id.to_owned(),
            metadata: config.metadata.clone(),
            state: ContainerState::Created,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: String::new(),
            message: String::new(),
            image: config.image.clone(),
            log_path,
        };
        state.containers.insert(id.clone(), status);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        if c.state != ContainerState::Created {
            return Err(RuntimeError::InvalidState(format!(
                "container {id} was already started"
            )));
        }
        let sandbox_ready = state
            .sandboxes
            .get(&c.sandbox_id)
            .is_some_and(|s| s.status.state == SandboxState::Ready);
        if !sandbox_ready {
            return Err(RuntimeError::InvalidState(format!(
                "sandbox {} of container {id} is not ready",
                c.sandbox_id
            )));
        }
        if let Some(c) = state.containers.get_mut(id) {
            c.state = ContainerState::Running;
            c.started_at = Some(Utc::now());
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("container", id))?;
        // Stopping a created or exited container changes nothing, as in containerd.
        if c.state == ContainerState::Running {
            if grace.is_zero() {
                exit(c, SIGKILL_EXIT, "Error");
            } else {
                exit(c, 0, "Completed");
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if let Some(c) = state.containers.remove(id) {
            if let Some(sandbox) = state.sandboxes.get_mut(&c.sandbox_id) {
                sandbox.containers.remove(id);
            }
        }
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let state = self.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        Ok(c.clone())
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        let state = self.lock();
        let mut list: Vec<ContainerStatus> = match sandbox_id {
            Some(sid) => match state.sandboxes.get(sid) {
                Some(s) => s
                    .containers
                    .iter()
                    .filter_map(|cid| state.containers.get(cid).cloned())
                    .collect(),
                None => Vec::new(),
            },
            None => state.containers.values().cloned().collect(),
        };
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    async fn exec_sync(&self, id: &str, _cmd: &[String], _timeout: Duration) -> Result<ExecOutput> {
        Err(self.exec_error(id))
    }

    async fn exec(
        &self,
        id: &str,
        _cmd: &[String],
        _stdin: bool,
        _tty: bool,
    ) -> Result<ExecSession> {
        Err(self.exec_error(id))
    }
}

impl SimulatedRuntime {
    fn exec_error(&self, id: &str) -> RuntimeError {
        if !self.lock().containers.contains_key(id) {
            return not_found("container", id);
        }
        RuntimeError::Start {
            what: format!("exec in container {id}"),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "exec is not supported by the simulated runtime",
            ),
        }
    }
}

/// An IPv4 or IPv6 network, as a base address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    base: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Result<Self> {
        let invalid = || RuntimeError::Network(format!("invalid pod CIDR {s:?}"));
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(invalid)?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(invalid());
        }
        let host_bits = u32::from(bits - prefix);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        let base = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from((u128::from(u32::from(a)) & mask) as u32)),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
        };
        Ok(Cidr { base, prefix })
    }

    /// First usable offset and how many there are: the network address and
    /// the first host (the node's gateway) are skipped, and IPv4's broadcast.
    fn usable(&self) -> (u128, u128) {
        let bits = if self.base.is_ipv4() { 32 } else { 128 };
        let host_bits = u32::from(bits - self.prefix);
        // Far more addresses than any node uses; capping keeps the arithmetic in range.
        let size = 1u128.checked_shl(host_bits.min(64)).unwrap_or(u128::MAX);
        match (self.base, size) {
            (_, 0..=2) => (0, size),
            (IpAddr::V4(_), _) => (2, size - 3),
            (IpAddr::V6(_), _) => (2, size - 2),
        }
    }

    fn at(&self, offset: u128) -> IpAddr {
        match self.base {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(offset as u32))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(offset))),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerMetadata, PodSandboxMetadata};

    fn pod(name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: name.to_owned(),
                namespace: "default".to_owned(),
                uid: format!("uid-{name}"),
                attempt: 0,
            },
            ..PodSandboxConfig::default()
        }
    }

    #[test]
    fn cidrs_parse_and_mask_their_base() {
        let c = Cidr::parse("10.244.1.7/24").unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert_eq!(c.usable(), (2, 253));
        assert_eq!(c.at(2).to_string(), "10.244.1.2");
        let v6 = Cidr::parse("fd00::/120").unwrap();
        assert_eq!(v6.usable(), (2, 254));
        for bad in ["10.0.0.0", "10.0.0.0/33", "nope/8", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn sandboxes_get_no_ip_until_a_pod_cidr_is_set() {
        let rt = SimulatedRuntime::new();
        assert!(!rt.status().await.network_ready);
        let a = rt.run_pod_sandbox(&pod("a")).await.unwrap();
        assert_eq!(rt.pod_sandbox_status(&a).await.unwrap().ip, None);
        rt.update_pod_cidr("10.244.0.0/24").await.unwrap();
        let status = rt.status().await;
        assert!(status.network_ready && status.message.is_empty());
        let b = rt.run_pod_sandbox(&pod("b")).await.unwrap();
        let ip = rt.pod_sandbox_status(&b).await.unwrap().ip;
        assert_eq!(ip, Some("10.244.0.2".parse().unwrap()));
        let host = PodSandboxConfig {
            host_network: true,
            ..pod("h")
        };
        let h = rt.run_pod_sandbox(&host).await.unwrap();
        assert_eq!(rt.pod_sandbox_status(&h).await.unwrap().ip, None);
    }

    #[tokio::test]
    async fn addresses_are_unique_reused_after_stop_and_run_out() {
        let rt = SimulatedRuntime::new();
        rt.update_pod_cidr("10.0.0.0/29").await.unwrap(); // 5 usable
        let mut ids = Vec::new();
        let mut ips = HashSet::new();
        for i in 0..5 {
            let id = rt.run_pod_sandbox(&pod(&format!("p{i}"))).await.unwrap();
            ips.insert(rt.pod_sandbox_status(&id).await.unwrap().ip.unwrap());
            ids.push(id);
        }
        assert_eq!(ips.len(), 5);
        let err = rt.run_pod_sandbox(&pod("full")).await.unwrap_err();
        assert!(matches!(err, RuntimeError::Network(_)), "{err}");
        rt.stop_pod_sandbox(&ids[3]).await.unwrap();
        assert_eq!(rt.pod_sandbox_status(&ids[3]).await.unwrap().ip, None);
        let again = rt.run_pod_sandbox(&pod("again")).await.unwrap();
        assert!(rt.pod_sandbox_status(&again).await.unwrap().ip.is_some());
    }

    #[tokio::test]
    async fn simulate_exit_ends_a_running_container_with_the_given_code() {
        let rt = SimulatedRuntime::new();
        let sb = rt.run_pod_sandbox(&pod("a")).await.unwrap();
        let config = ContainerConfig {
            metadata: ContainerMetadata {
                name: "c".to_owned(),
                attempt: 0,
            },
            ..ContainerConfig::default()
        };
        let c = rt.create_container(&sb, &config, &pod("a")).await.unwrap();
        assert!(rt.simulate_exit(&c, 1, "").is_err(), "not running yet");
        rt.start_container(&c).await.unwrap();
        rt.simulate_exit(&c, 137, "OOMKilled").unwrap();
        let status = rt.container_status(&c).await.unwrap();
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(
            (status.exit_code, status.reason.as_str()),
            (Some(137), "OOMKilled")
        );
    }

    #[tokio::test]
    async fn exec_is_refused_as_unsupported() {
        let rt = SimulatedRuntime::new();
        let sb = rt.run_pod_sandbox(&pod("a")).await.unwrap();
        let config = ContainerConfig::default();
        let c = rt.create_container(&sb, &config, &pod("a")).await.unwrap();
        rt.start_container(&c).await.unwrap();
        let cmd = ["true".to_owned()];
        let err = rt
            .exec_sync(&c, &cmd, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("exec is not supported by the simulated runtime"),
            "{err}"
        );
        match rt.exec(&c, &cmd, false, false).await {
            Err(RuntimeError::Start { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::Unsupported);
            }
            other => panic!("expected an unsupported start error, got {:?}", other.err()),
        }
        let missing = rt.exec_sync("nope", &cmd, Duration::from_secs(1)).await;
        assert!(matches!(missing, Err(RuntimeError::NotFound { .. })));
    }

    #[tokio::test]
    async fn ten_thousand_pods_run_and_are_removed_quickly() {
        let rt = SimulatedRuntime::new();
        rt.update_pod_cidr("10.128.0.0/16").await.unwrap();
        let started = std::time::Instant::now();
        let config = ContainerConfig::default();
        let mut ids = Vec::new();
        for i in 0..10_000 {
            let p = pod(&format!("p{i}"));
            let sb = rt.run_pod_sandbox(&p).await.unwrap();
            let c = rt.create_container(&sb, &config, &p).await.unwrap();
            rt.start_container(&c).await.unwrap();
            ids.push(sb);
        }
        assert_eq!(rt.list_containers(None).await.unwrap().len(), 10_000);
        for id in &ids {
            rt.remove_pod_sandbox(id).await.unwrap();
        }
        assert!(rt.list_pod_sandboxes().await.unwrap().is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
