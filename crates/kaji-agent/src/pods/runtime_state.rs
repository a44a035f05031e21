//! Translation between Pod objects and the runtime: what the runtime holds
//! for one pod (its sandboxes and every container instance), and the
//! sandbox and container configurations the agent asks it to create.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};
use kaji_runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, LinuxResources,
    PodRuntime, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus, PortMapping, SandboxState,
};

use crate::context::NodeContext;
use crate::downward::{parse_quantity, NANO};

/// Everything the runtime holds for one pod.
#[derive(Debug, Clone, Default)]
pub struct PodRuntimeState {
    /// The pod's sandboxes, newest first.
    pub sandboxes: Vec<PodSandboxStatus>,
    /// Every container instance in them.
    pub containers: Vec<ContainerStatus>,
}

impl PodRuntimeState {
    /// Reads the runtime's view of pod `uid`.
    ///
    /// # Errors
    /// The runtime cannot be listed.
    pub async fn observe(runtime: &dyn PodRuntime, uid: &str) -> kaji_runtime::Result<Self> {
        let mut sandboxes: Vec<PodSandboxStatus> = runtime
            .list_pod_sandboxes()
            .await?
            .into_iter()
            .filter(|s| s.metadata.uid == uid)
            .collect();
        sandboxes.sort_by(|a, b| {
            (b.metadata.attempt, b.created_at).cmp(&(a.metadata.attempt, a.created_at))
        });
        let mut containers = Vec::new();
        for sandbox in &sandboxes {
            match runtime.list_containers(Some(&sandbox.id)).await {
                Ok(list) => containers.extend(list),
                // Removed between the two calls.
                Err(kaji_runtime::RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(PodRuntimeState {
            sandboxes,
            containers,
        })
    }

    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&PodSandboxStatus> {
        self.sandboxes
            .first()
            .filter(|s| s.state == SandboxState::Ready)
    }

    /// Instances of container `name`, newest first.
    pub fn instances(&self, name: &str) -> Vec<&ContainerStatus> {
        let mut found: Vec<&ContainerStatus> = self
            .containers
            .iter()
            .filter(|c| c.metadata.name == name)
            .collect();
        found.sort_by(|a, b| {
            (b.metadata.attempt, b.created_at).cmp(&(a.metadata.attempt, a.created_at))
        });
        found
    }

    /// The newest instance of container `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.instances(name).into_iter().next()
    }

    /// The attempt number the next instance of `name` gets.
    pub fn next_attempt(&self, name: &str) -> u32 {
        self.latest(name).map_or(0, |c| c.metadata.attempt + 1)
    }

    /// Containers whose process runs.
    pub fn running(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
    }
}

/// The sandbox configuration for `pod`.
pub fn sandbox_config(ctx: &NodeContext, pod: &Pod, attempt: u32) -> PodSandboxConfig {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| name.chars().take(63).collect());
    let port_mappings = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p != 0)?;
            Some(PortMapping {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                container_port: u16::try_from(p.container_port).ok()?,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.clone(),
            namespace: namespace.clone(),
            uid: uid.clone(),
            attempt,
        },
        hostname,
        log_directory: if ctx.write_logs {
            ctx.log_dir(&namespace, &name, &uid)
        } else {
            PathBuf::new()
        },
        host_network: spec.and_then(|s| s.host_network) == Some(true),
        port_mappings,
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
    }
}

/// The runtime configuration of one container instance; env, mounts and
/// the expanded command come from the caller.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    envs: Vec<(String, String)>,
    mounts: Vec<kaji_runtime::Mount>,
    expand: impl Fn(&str) -> String,
) -> ContainerConfig {
    let labels = BTreeMap::from([
        (
            "io.kubernetes.container.name".to_string(),
            container.name.clone(),
        ),
        (
            "io.kubernetes.pod.name".to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.namespace".to_string(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.uid".to_string(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
    ]);
    ContainerConfig {
        metadata: ContainerMetadata {
            name: container.name.clone(),
            attempt,
        },
        image: container.image.clone().unwrap_or_default(),
        command: container
            .command
            .iter()
            .flatten()
            .map(|s| expand(s))
            .collect(),
        args: container.args.iter().flatten().map(|s| expand(s)).collect(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        log_path: PathBuf::from(&container.name).join(format!("{attempt}.log")),
        stdin: container.stdin == Some(true),
        tty: container.tty == Some(true),
        resources: linux_resources(container),
        labels,
    }
}

/// cgroup settings from requests and limits, as kubelet computes them.
pub fn linux_resources(container: &Container) -> LinuxResources {
    let resources = container.resources.as_ref();
    let get = |map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               key: &str| {
        map.and_then(|m| m.get(key))
            .and_then(|q| parse_quantity(&q.0).ok())
    };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let cpu_limit_milli = get(limits, "cpu").map(|n| (n + NANO / 1000 - 1) / (NANO / 1000));
    let cpu_request_milli = get(requests, "cpu")
        .map(|n| (n + NANO / 1000 - 1) / (NANO / 1000))
        .or(cpu_limit_milli);
    // kubelet: shares = request * 1024 / 1000, at least 2.
    let cpu_shares = cpu_request_milli
        .map(|m| u64::try_from(m * 1024 / 1000).unwrap_or(u64::MAX).max(2))
        .or(Some(2));
    let cpu_period = 100_000i128;
    let cpu_quota = cpu_limit_milli
        .map(|m| i64::try_from((m * cpu_period / 1000).max(1000)).unwrap_or(i64::MAX));
    LinuxResources {
        cpu_shares,
        cpu_quota,
        cpu_period: cpu_quota.map(|_| 100_000),
        memory_limit_bytes: get(limits, "memory")
            .map(|n| u64::try_from(n / NANO).unwrap_or(u64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn limits_and_requests_become_cgroup_settings() {
        let container = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some(
                    [
                        ("cpu".to_string(), Quantity("500m".into())),
                        ("memory".to_string(), Quantity("64Mi".into())),
                    ]
                    .into(),
                ),
                requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        let r = linux_resources(&container);
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit_bytes, Some(64 * 1024 * 1024));
        let none = linux_resources(&Container::default());
        assert_eq!(none.cpu_shares, Some(2));
        assert_eq!(none.cpu_quota, None);
    }
}
