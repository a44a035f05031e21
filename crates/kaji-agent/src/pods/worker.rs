//! One task per pod: it alone syncs the pod, so two syncs of one pod never
//! overlap. It wakes on a new version of the pod, on a runtime or probe
//! change, or on a timer; terminates the pod gracefully once it has a
//! deletion timestamp and then deletes it from the API (as kubelet's status
//! manager does); and tears everything down when the pod is gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kaji_controllers::events::EventType;
use kaji_runtime::ContainerState;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::{watch, Notify};

use super::probes::Prober;
use super::runtime_state::PodRuntimeState;
use crate::backoff::CrashBackoff;
use crate::context::{container_field_path, NodeContext, WorkerHandle};
use crate::volumes::PodVolumes;

/// How long a worker with nothing to do sleeps between checks.
const IDLE: Duration = Duration::from_secs(3600);

/// Starts the worker of pod `uid`.
pub(crate) fn spawn(ctx: Arc<NodeContext>, uid: String, pod: Arc<Pod>) -> WorkerHandle {
    let (tx, rx) = watch::channel(Some(pod));
    let wake = Arc::new(Notify::new());
    let worker = PodWorker::new(ctx, uid, wake.clone());
    tokio::spawn(worker.run(rx));
    WorkerHandle { pod: tx, wake }
}

/// A pod worker's state between syncs.
pub(crate) struct PodWorker {
    pub(super) ctx: Arc<NodeContext>,
    pub(super) uid: String,
    pub(super) wake: Arc<Notify>,
    pub(super) backoff: CrashBackoff,
    /// Waiting reasons set by the last sync, by container name.
    pub(super) waiting: HashMap<String, (String, String)>,
    pub(super) volumes: PodVolumes,
    pub(super) prober: Prober,
    /// Containers killed by a failed liveness or startup probe: restarted
    /// whatever their exit code.
    pub(super) force_restart: HashSet<String>,
    /// The status last written, as JSON.
    last_written: Option<serde_json::Value>,
    /// The pod reached Succeeded or Failed: nothing restarts any more.
    pub(super) terminal: bool,
    /// Terminated and deleted from the API; waiting to be forgotten.
    finished: bool,
    /// The API already showed the pod finished when this worker started:
    /// its status is kept as it is.
    pub(super) finished_before_start: bool,
    /// Consecutive failed syncs, for retry back-off.
    pub(super) failures: u32,
}

impl PodWorker {
    fn new(ctx: Arc<NodeContext>, uid: String, wake: Arc<Notify>) -> Self {
        let backoff = CrashBackoff::new(ctx.timings.backoff);
        PodWorker {
            ctx,
            uid,
            wake: wake.clone(),
            backoff,
            waiting: HashMap::new(),
            volumes: PodVolumes::default(),
            prober: Prober::new(wake),
            force_restart: HashSet::new(),
            last_written: None,
            terminal: false,
            finished: false,
            finished_before_start: false,
            failures: 0,
        }
    }

    async fn run(mut self, mut rx: watch::Receiver<Option<Arc<Pod>>>) {
        let mut last: Option<Arc<Pod>> = None;
        loop {
            let pod = rx.borrow_and_update().clone();
            let next = match pod {
                Some(pod) => {
                    let next = self.sync(&pod).await;
                    last = Some(pod);
                    next
                }
                None => {
                    self.teardown(last.as_deref()).await;
                    let mut workers = self.ctx.workers.lock().unwrap_or_else(|p| p.into_inner());
                    workers.remove(&self.uid);
                    return;
                }
            };
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    // The node stopped: leave the pod as it is.
                    return;
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    /// Brings the pod one step closer to its spec; returns when to sync next.
    async fn sync(&mut self, pod: &Arc<Pod>) -> Duration {
        if self.finished {
            return IDLE;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return match self.terminate(pod).await {
                Ok(()) => {
                    self.finished = true;
                    IDLE
                }
                Err(e) => {
                    tracing::warn!(node = %self.ctx.name, pod = %describe(pod), error = %e, "terminating pod failed");
                    self.retry_delay()
                }
            };
        }
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(api_phase, Some("Succeeded" | "Failed")) && !self.terminal {
            // Finished before this worker started (the agent restarted): keep
            // its status, just make sure nothing of it still runs.
            self.terminal = true;
            self.finished_before_start = true;
        }
        match self.sync_pod(pod).await {
            Ok(next) => {
                self.failures = 0;
                next
            }
            Err(e) => {
                tracing::warn!(node = %self.ctx.name, pod = %describe(pod), error = %e, "pod sync failed");
                self.retry_delay()
            }
        }
    }

    /// 1s, 2s, 4s, ... up to 30s after consecutive failures.
    pub(super) fn retry_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Duration::from_secs(1u64 << self.failures.min(5).saturating_sub(1))
            .min(Duration::from_secs(30))
    }

    /// The resync period, spread by pod so that many pods do not resync together.
    pub(super) fn resync(&self) -> Duration {
        let spread = self
            .uid
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let period = self.ctx.timings.resync;
        period + Duration::from_millis(spread % (period.as_millis() as u64 / 4 + 1))
    }

    /// Writes `status` unless the API already has it; `false` when the
    /// write failed and should be retried soon.
    pub(super) async fn write_status(&mut self, pod: &Pod, status: &PodStatus) -> bool {
        let Ok(value) = serde_json::to_value(status) else {
            return true;
        };
        let current = pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        if self.last_written.as_ref() == Some(&value) || current.as_ref() == Some(&value) {
            return true;
        }
        let ops = json!([
            {"op": "test", "path": "/metadata/uid", "value": self.uid},
            {"op": "add", "path": "/status", "value": value},
        ]);
        let patch: Patch<()> = match serde_json::from_value(ops) {
            Ok(p) => Patch::Json(p),
            Err(_) => return true,
        };
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api
            .patch_status(&name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                self.last_written = Some(value);
                true
            }
            // Gone, or replaced by a pod of the same name: not ours any more.
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => true,
            Err(e) => {
                tracing::warn!(node = %self.ctx.name, pod = %describe(pod), error = %e, "writing pod status failed");
                false
            }
        }
    }

    /// The grace period for stopping the pod's containers.
    fn grace(pod: &Pod) -> Duration {
        let seconds = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    }

    /// Stops every running container of the pod within `grace`, running
    /// preStop exec hooks first, then stops its sandboxes.
    pub(super) async fn stop_all(&self, pod: &Pod, grace: Duration, state: &PodRuntimeState) {
        let deadline = tokio::time::Instant::now() + grace;
        let spec = pod.spec.as_ref();
        let stops = state.running().map(|c| {
            let container = spec.and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|sc| sc.name == c.metadata.name)
            });
            let pre_stop = container
                .and_then(|sc| sc.lifecycle.as_ref())
                .and_then(|l| l.pre_stop.as_ref())
                .and_then(|h| h.exec.as_ref())
                .and_then(|e| e.command.clone());
            let runtime = self.ctx.runtime.clone();
            let id = c.id.clone();
            let name = c.metadata.name.clone();
            async move {
                if let Some(cmd) = pre_stop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if let Err(e) = runtime.exec_sync(&id, &cmd, left).await {
                        self.ctx.event(
                            pod,
                            Some(container_field_path(pod, &name)),
                            EventType::Warning,
                            "FailedPreStopHook",
                            format!("PreStopHook failed: {e}"),
                        );
                    }
                }
                self.ctx.event(
                    pod,
                    Some(container_field_path(pod, &name)),
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {name}"),
                );
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Err(e) = runtime.stop_container(&id, left).await {
                    tracing::warn!(container = %id, error = %e, "stopping container failed");
                }
            }
        });
        join_all(stops).await;
        for sandbox in &state.sandboxes {
            if let Err(e) = self.ctx.runtime.stop_pod_sandbox(&sandbox.id).await {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "stopping sandbox failed");
            }
        }
    }

    /// Removes the pod's sandboxes, volumes and logs.
    async fn remove_all(&self, pod: Option<&Pod>, state: &PodRuntimeState) {
        for sandbox in &state.sandboxes {
            if let Err(e) = self.ctx.runtime.remove_pod_sandbox(&sandbox.id).await {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "removing sandbox failed");
            }
        }
        let _ = std::fs::remove_dir_all(self.ctx.pod_dir(&self.uid));
        if let Some(pod) = pod {
            let dir = self.ctx.log_dir(
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
                &self.uid,
            );
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Graceful termination of a pod being deleted: stop, report the final
    /// status, clean up, and delete the pod for good.
    async fn terminate(&mut self, pod: &Arc<Pod>) -> Result<(), kaji_runtime::RuntimeError> {
        let state = PodRuntimeState::observe(self.ctx.runtime.as_ref(), &self.uid).await?;
        self.waiting.clear();
        self.stop_all(pod, Self::grace(pod), &state).await;
        self.prober.retain(&[]);
        let state = PodRuntimeState::observe(self.ctx.runtime.as_ref(), &self.uid).await?;
        if !state.containers.is_empty() && !self.finished_before_start {
            let status = self.compute_status(pod, &state, true);
            self.write_status(pod, &status).await;
        }
        self.remove_all(Some(pod), &state).await;
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => Ok(()),
            Err(e) => {
                tracing::warn!(node = %self.ctx.name, pod = %describe(pod), error = %e, "deleting pod failed");
                Err(kaji_runtime::RuntimeError::InvalidState(format!(
                    "deleting pod: {e}"
                )))
            }
        }
    }

    /// The pod is gone from the API: stop and remove whatever is left.
    async fn teardown(&mut self, pod: Option<&Pod>) {
        self.prober.retain(&[]);
        let Ok(state) = PodRuntimeState::observe(self.ctx.runtime.as_ref(), &self.uid).await else {
            // The orphan collector retries.
            return;
        };
        let grace = pod.map_or(Duration::from_secs(2), Self::grace);
        if state.running().next().is_some()
            || state
                .sandboxes
                .iter()
                .any(|s| s.state == kaji_runtime::SandboxState::Ready)
        {
            match pod {
                Some(pod) => self.stop_all(pod, grace, &state).await,
                None => {
                    for c in state.running() {
                        let _ = self.ctx.runtime.stop_container(&c.id, grace).await;
                    }
                }
            }
        }
        self.remove_all(pod, &state).await;
    }

    /// Whether any container instance in `state` still runs.
    pub(super) fn any_running(state: &PodRuntimeState) -> bool {
        state
            .containers
            .iter()
            .any(|c| c.state == ContainerState::Running)
    }
}

/// `name_namespace(uid)`, as kubelet names pods in messages.
pub(crate) fn describe(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}
