//! One level-triggered sync of a running pod, as kubelet's `SyncPod`:
//! volumes, then the sandbox, then init containers one at a time to
//! completion, then every app container — each (re)started as the restart
//! policy and CrashLoopBackOff allow, or killed when its liveness probe
//! failed — then probes and status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kaji_controllers::events::EventType;
use kaji_runtime::{ContainerState, ContainerStatus, PodSandboxConfig, RuntimeError};

use super::probes::Target;
use super::runtime_state::{container_config, sandbox_config, PodRuntimeState};
use super::status::{compute, is_sidecar, StatusInput};
use super::worker::{describe, PodWorker};
use crate::backoff::{go_duration, Verdict};
use crate::context::container_field_path;
use crate::downward::PodContext;

/// What the sandbox the containers go into needs for creating them.
struct SandboxInfo {
    id: String,
    config: PodSandboxConfig,
    pod_ips: Vec<String>,
    probe_target: Target,
}

/// The outcome of trying to (re)start a container.
enum Step {
    /// Something was started or is in progress: sync again on the next change.
    Progress,
    /// Waiting for back-off or a retry, this long.
    Wait(Duration),
}

impl PodWorker {
    /// The pod's addresses: the sandbox's IP, or the node's when the pod
    /// shares the host network. Empty before it has a sandbox.
    fn pod_ips(&self, state: &PodRuntimeState) -> Vec<String> {
        let Some(sandbox) = state.sandboxes.first() else {
            return Vec::new();
        };
        match sandbox.ip {
            Some(ip) => vec![ip.to_string()],
            None => self.ctx.host_ips.iter().take(1).cloned().collect(),
        }
    }

    pub(super) fn compute_status(
        &self,
        pod: &Pod,
        state: &PodRuntimeState,
        terminating: bool,
    ) -> PodStatus {
        let pod_ips = self.pod_ips(state);
        let probes = |id: &str| self.prober.view(id);
        compute(&StatusInput {
            pod,
            state,
            waiting: &self.waiting,
            probes: &probes,
            host_ips: &self.ctx.host_ips,
            pod_ips: &pod_ips,
            runtime_name: &self.ctx.runtime_name,
            terminating,
            now: Timestamp::now(),
        })
    }

    /// Syncs a pod that is not being deleted; returns when to sync next.
    pub(super) async fn sync_pod(&mut self, pod: &Arc<Pod>) -> Result<Duration, RuntimeError> {
        let runtime = self.ctx.runtime.clone();
        let mut state = PodRuntimeState::observe(runtime.as_ref(), &self.uid).await?;
        if self.terminal {
            return self.keep_stopped(pod, state).await;
        }

        // Volumes first: containers cannot start without them.
        let pod_ips = self.pod_ips(&state);
        let dctx = PodContext {
            pod,
            host_ips: &self.ctx.host_ips,
            pod_ips: &pod_ips,
            allocatable: &self.ctx.allocatable,
        };
        let pod_dir = self.ctx.pod_dir(&self.uid);
        if let Err((volume, e)) = self
            .volumes
            .set_up(&dctx, &pod_dir, &self.ctx.objects)
            .await
        {
            self.ctx.event(
                pod,
                None,
                EventType::Warning,
                "FailedMount",
                format!("MountVolume.SetUp failed for volume \"{volume}\" : {e}"),
            );
            let status = self.compute_status(pod, &state, false);
            self.write_status(pod, &status).await;
            return Ok(self.retry_delay());
        }

        if state.ready_sandbox().is_none() {
            if let Err(e) = self.create_sandbox(pod, &state).await {
                self.ctx.event(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                let status = self.compute_status(pod, &state, false);
                self.write_status(pod, &status).await;
                return Ok(self.retry_delay());
            }
            state = PodRuntimeState::observe(runtime.as_ref(), &self.uid).await?;
        }
        let Some(sandbox) = state.ready_sandbox() else {
            return Ok(self.retry_delay());
        };
        let pod_ips = self.pod_ips(&state);
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let info = SandboxInfo {
            id: sandbox.id.clone(),
            config: sandbox_config(&self.ctx, pod, sandbox.metadata.attempt),
            probe_target: Target {
                host: match sandbox.ip {
                    Some(ip) if !host_network => ip,
                    _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                },
            },
            pod_ips,
        };

        let mut next = self.resync();
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .as_deref()
            .unwrap_or("Always")
            .to_string();

        // Init containers, in order; each must finish before the next starts
        // (sidecars only need to be running).
        let mut initialized = true;
        for c in spec.init_containers.iter().flatten() {
            let cur = latest_in(&state, &info.id, &c.name).cloned();
            let step = match cur {
                None => Some(self.start(pod, c, &state, &info).await),
                Some(cur) => match cur.state {
                    ContainerState::Created => Some(self.start_created(pod, c, &cur).await),
                    ContainerState::Running => {
                        let started = self.prober.view(&cur.id).started.unwrap_or(true);
                        if is_sidecar(c) && started {
                            continue;
                        }
                        if is_sidecar(c) {
                            self.probe(pod, c, &cur, &info);
                        }
                        Some(Step::Progress)
                    }
                    ContainerState::Exited | ContainerState::Unknown => {
                        self.kill_unknown(pod, &cur).await;
                        let code = cur.exit_code.unwrap_or(0);
                        if code == 0 && !is_sidecar(c) {
                            continue;
                        }
                        if policy == "Never" && !is_sidecar(c) {
                            // The pod has failed; the status says so.
                            self.waiting.remove(&c.name);
                            Some(Step::Progress)
                        } else {
                            Some(self.restart(pod, c, &cur, &state, &info).await)
                        }
                    }
                },
            };
            if let Some(Step::Wait(d)) = step {
                next = next.min(d);
            }
            initialized = false;
            break;
        }

        if initialized {
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| is_sidecar(c));
            for c in sidecars.chain(spec.containers.iter()) {
                let restarts = is_sidecar(c) || policy != "Never";
                let cur = latest_in(&state, &info.id, &c.name).cloned();
                let step = match cur {
                    None => self.start(pod, c, &state, &info).await,
                    Some(cur) => match cur.state {
                        ContainerState::Created => self.start_created(pod, c, &cur).await,
                        ContainerState::Running => {
                            let changed = c.image.as_deref().is_some_and(|i| i != cur.image);
                            let reason = match self.prober.failed(&cur.id) {
                                Some(which) => Some(format!("failed {which} probe")),
                                None => changed.then(|| "definition changed".to_string()),
                            };
                            match reason {
                                Some(why) => self.kill_for_restart(pod, c, &cur, &why).await,
                                None => self.probe(pod, c, &cur, &info),
                            }
                            Step::Progress
                        }
                        ContainerState::Exited | ContainerState::Unknown => {
                            self.kill_unknown(pod, &cur).await;
                            let failed = cur.exit_code.unwrap_or(0) != 0;
                            let restart = self.force_restart.contains(&c.name) && restarts
                                || is_sidecar(c)
                                || policy == "Always"
                                || (policy == "OnFailure" && failed);
                            if restart {
                                self.restart(pod, c, &cur, &state, &info).await
                            } else {
                                self.waiting.remove(&c.name);
                                Step::Progress
                            }
                        }
                    },
                };
                if let Step::Wait(d) = step {
                    next = next.min(d);
                }
            }
        }

        state = PodRuntimeState::observe(runtime.as_ref(), &self.uid).await?;
        // Probe what runs now, including what this sync just started.
        let probed = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| is_sidecar(c))
            .chain(spec.containers.iter());
        for c in probed {
            if let Some(cur) = latest_in(&state, &info.id, &c.name) {
                if cur.state == ContainerState::Running {
                    let cur = cur.clone();
                    self.probe(pod, c, &cur, &info);
                }
            }
        }
        let live: Vec<&str> = state.running().map(|c| c.id.as_str()).collect();
        self.prober.retain(&live);
        self.remove_dead_instances(&state).await;

        let status = self.compute_status(pod, &state, false);
        let phase = status.phase.clone().unwrap_or_default();
        if !self.write_status(pod, &status).await {
            next = next.min(Duration::from_secs(2));
        }
        if phase == "Succeeded" || phase == "Failed" {
            self.terminal = true;
            return self.keep_stopped(pod, state).await;
        }
        Ok(next)
    }

    /// A finished pod: stop whatever still runs (sidecars, the sandbox) and
    /// report the final status once more.
    async fn keep_stopped(
        &mut self,
        pod: &Arc<Pod>,
        state: PodRuntimeState,
    ) -> Result<Duration, RuntimeError> {
        let ready = state
            .sandboxes
            .iter()
            .any(|s| s.state == kaji_runtime::SandboxState::Ready);
        if Self::any_running(&state) || ready {
            self.stop_all(pod, grace_of(pod), &state).await;
            self.prober.retain(&[]);
        }
        if !self.finished_before_start {
            let state = PodRuntimeState::observe(self.ctx.runtime.as_ref(), &self.uid).await?;
            let status = self.compute_status(pod, &state, false);
            self.write_status(pod, &status).await;
        }
        Ok(self.resync() * 6)
    }

    async fn create_sandbox(
        &mut self,
        pod: &Pod,
        state: &PodRuntimeState,
    ) -> Result<(), RuntimeError> {
        // Whatever ran in an older sandbox goes with it.
        for old in &state.sandboxes {
            for c in state.containers.iter().filter(|c| c.sandbox_id == old.id) {
                if c.state == ContainerState::Running {
                    self.ctx
                        .runtime
                        .stop_container(&c.id, Duration::ZERO)
                        .await?;
                }
            }
            self.ctx.runtime.stop_pod_sandbox(&old.id).await?;
        }
        let attempt = state
            .sandboxes
            .first()
            .map_or(0, |s| s.metadata.attempt + 1);
        let config = sandbox_config(&self.ctx, pod, attempt);
        self.ctx.runtime.run_pod_sandbox(&config).await?;
        Ok(())
    }

    /// Restarts an exited container now, or reports the back-off left.
    async fn restart(
        &mut self,
        pod: &Pod,
        c: &Container,
        cur: &ContainerStatus,
        state: &PodRuntimeState,
        info: &SandboxInfo,
    ) -> Step {
        let now = chrono::Utc::now();
        let finished = cur.finished_at.unwrap_or(now);
        match self.backoff.check(&c.name, finished, now) {
            Verdict::Wait { delay, left } => {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}",
                    go_duration(delay),
                    c.name,
                    describe(pod)
                );
                let first =
                    self.waiting.get(&c.name).map(|(r, _)| r.as_str()) != Some("CrashLoopBackOff");
                self.waiting
                    .insert(c.name.clone(), ("CrashLoopBackOff".into(), message));
                if first {
                    self.ctx.event(
                        pod,
                        Some(container_field_path(pod, &c.name)),
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            c.name,
                            describe(pod)
                        ),
                    );
                }
                Step::Wait(left + Duration::from_millis(50))
            }
            Verdict::Restart => {
                self.backoff.restarted(&c.name, finished);
                self.force_restart.remove(&c.name);
                self.start(pod, c, state, info).await
            }
        }
    }

    /// Creates and starts a new instance of `c`.
    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        state: &PodRuntimeState,
        info: &SandboxInfo,
    ) -> Step {
        let field_path = Some(container_field_path(pod, &c.name));
        let dctx = PodContext {
            pod,
            host_ips: &self.ctx.host_ips,
            pod_ips: &info.pod_ips,
            allocatable: &self.ctx.allocatable,
        };
        let built = match crate::env::resolve(&dctx, c, &self.ctx.objects).await {
            Ok(env) => match self.volumes.mounts(c, &env) {
                Ok(mounts) => Ok((env, mounts)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let (env, mounts) = match built {
            Ok(b) => b,
            Err(message) => {
                return self.failed(pod, c, "CreateContainerConfigError", message);
            }
        };
        let attempt = state.next_attempt(&c.name);
        let config = container_config(pod, c, attempt, env.clone().into_vars(), mounts, |s| {
            env.expand(s)
        });
        let id = match self
            .ctx
            .runtime
            .create_container(&info.id, &config, &info.config)
            .await
        {
            Ok(id) => id,
            Err(e) => return self.failed(pod, c, "CreateContainerError", e.to_string()),
        };
        self.ctx.event(
            pod,
            field_path.clone(),
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        self.start_id(pod, c, &id).await
    }

    /// Starts an instance that was created but never started.
    async fn start_created(&mut self, pod: &Pod, c: &Container, cur: &ContainerStatus) -> Step {
        self.start_id(pod, c, &cur.id).await
    }

    async fn start_id(&mut self, pod: &Pod, c: &Container, id: &str) -> Step {
        if let Err(e) = self.ctx.runtime.start_container(id).await {
            return self.failed(pod, c, "RunContainerError", e.to_string());
        }
        self.waiting.remove(&c.name);
        self.ctx.event(
            pod,
            Some(container_field_path(pod, &c.name)),
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        Step::Progress
    }

    /// Records why `c` cannot start; it is retried with back-off.
    fn failed(&mut self, pod: &Pod, c: &Container, reason: &str, message: String) -> Step {
        self.ctx.event(
            pod,
            Some(container_field_path(pod, &c.name)),
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        self.waiting
            .insert(c.name.clone(), (reason.to_string(), message));
        Step::Wait(self.retry_delay())
    }

    /// A container in state Unknown (the runtime lost track of its
    /// process, e.g. across an agent restart) may still run: kill it before
    /// it is replaced.
    async fn kill_unknown(&self, pod: &Pod, cur: &ContainerStatus) {
        if cur.state != ContainerState::Unknown {
            return;
        }
        if let Err(e) = self
            .ctx
            .runtime
            .stop_container(&cur.id, grace_of(pod))
            .await
        {
            tracing::warn!(container = %cur.id, error = %e, "stopping a container in unknown state failed");
        }
    }

    /// Kills a container that must be restarted (its liveness or startup
    /// probe failed, or its image changed); the next sync restarts it.
    async fn kill_for_restart(
        &mut self,
        pod: &Pod,
        c: &Container,
        cur: &ContainerStatus,
        why: &str,
    ) {
        self.ctx.event(
            pod,
            Some(container_field_path(pod, &c.name)),
            EventType::Normal,
            "Killing",
            format!("Container {} {why}, will be restarted", c.name),
        );
        if let Err(e) = self
            .ctx
            .runtime
            .stop_container(&cur.id, grace_of(pod))
            .await
        {
            tracing::warn!(container = %cur.id, error = %e, "killing a container for restart failed");
        }
        self.force_restart.insert(c.name.clone());
        self.wake.notify_one();
    }

    fn probe(&mut self, pod: &Pod, c: &Container, cur: &ContainerStatus, info: &SandboxInfo) {
        if c.readiness_probe.is_none() && c.liveness_probe.is_none() && c.startup_probe.is_none()
            || self.prober.probing(&cur.id)
        {
            return;
        }
        let pod = Arc::new(pod.clone());
        self.prober
            .ensure(&self.ctx, &pod, c, &cur.id, &info.probe_target);
    }

    /// Keeps the newest two instances of each container (the current one
    /// and the one `previous` logs read); removes older exited ones.
    async fn remove_dead_instances(&self, state: &PodRuntimeState) {
        let mut names: Vec<&str> = state
            .containers
            .iter()
            .map(|c| c.metadata.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            for old in state.instances(name).into_iter().skip(2) {
                if old.state != ContainerState::Running {
                    if let Err(e) = self.ctx.runtime.remove_container(&old.id).await {
                        tracing::debug!(container = %old.id, error = %e, "removing an old container failed");
                    }
                }
            }
        }
    }
}

/// The newest instance of `name` in sandbox `sandbox`.
fn latest_in<'a>(
    state: &'a PodRuntimeState,
    sandbox: &str,
    name: &str,
) -> Option<&'a ContainerStatus> {
    state
        .instances(name)
        .into_iter()
        .find(|c| c.sandbox_id == sandbox)
}

/// The pod's `terminationGracePeriodSeconds` (30s by default).
fn grace_of(pod: &Pod) -> Duration {
    let seconds = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(30);
    Duration::from_secs(seconds)
}
