//! A pod's status computed from what the runtime holds, as kubelet's status
//! manager computes it: phase, conditions, container statuses (state, last
//! state, restarts, readiness), addresses, start time and QoS class.
//! Pure: the worker decides when to write it.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kaji_runtime::{ContainerState, ContainerStatus};

use super::runtime_state::PodRuntimeState;
use crate::downward::parse_quantity;

/// What probes say about one running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeView {
    /// Readiness probe verdict; `None` without a readiness probe.
    pub ready: Option<bool>,
    /// Startup probe verdict; `None` without a startup probe.
    pub started: Option<bool>,
}

/// Everything a pod's status is computed from.
pub struct StatusInput<'a> {
    /// The pod as last seen.
    pub pod: &'a Pod,
    /// What the runtime holds for it.
    pub state: &'a PodRuntimeState,
    /// Waiting reasons and messages the worker set for containers without
    /// a running instance (`CrashLoopBackOff`, `CreateContainerConfigError`).
    pub waiting: &'a HashMap<String, (String, String)>,
    /// Probe verdicts by runtime container id.
    pub probes: &'a dyn Fn(&str) -> ProbeView,
    /// The node's addresses.
    pub host_ips: &'a [String],
    /// The pod's addresses (empty before its sandbox runs).
    pub pod_ips: &'a [String],
    /// The runtime's name, the scheme of container IDs.
    pub runtime_name: &'a str,
    /// The pod is being deleted: stopped containers are final.
    pub terminating: bool,
    /// Now.
    pub now: Timestamp,
}

fn time(t: chrono::DateTime<chrono::Utc>) -> Time {
    Time(Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn terminated(c: &ContainerStatus, id: String) -> ContainerStateTerminated {
    let exit_code = c.exit_code.unwrap_or(0);
    let reason = if c.reason.is_empty() {
        if exit_code == 0 {
            "Completed".to_string()
        } else {
            "Error".to_string()
        }
    } else {
        c.reason.clone()
    };
    ContainerStateTerminated {
        container_id: Some(id),
        exit_code,
        reason: Some(reason),
        message: Some(c.message.clone()).filter(|m| !m.is_empty()),
        started_at: c.started_at.map(time),
        finished_at: c.finished_at.map(time),
        signal: None,
    }
}

fn waiting(reason: &str, message: &str) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..ApiState::default()
    }
}

/// The status of one spec container.
fn container_status(
    input: &StatusInput<'_>,
    spec: &Container,
    default_waiting: &str,
    init: bool,
) -> ApiContainerStatus {
    let instances = input.state.instances(&spec.name);
    let id = |c: &ContainerStatus| format!("{}://{}", input.runtime_name, c.id);
    let override_ = input.waiting.get(&spec.name);
    let last_of = |c: Option<&&ContainerStatus>| {
        c.map(|c| ApiState {
            terminated: Some(terminated(c, id(c))),
            ..ApiState::default()
        })
    };
    let mut status = ApiContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: spec.image.clone().unwrap_or_default(),
        ..ApiContainerStatus::default()
    };
    let Some(cur) = instances.first() else {
        let (reason, message) = override_
            .map(|(r, m)| (r.as_str(), m.as_str()))
            .unwrap_or((default_waiting, ""));
        status.state = Some(waiting(reason, message));
        status.started = Some(false);
        return status;
    };
    status.container_id = Some(id(cur));
    status.restart_count = i32::try_from(cur.metadata.attempt).unwrap_or(i32::MAX);
    match cur.state {
        ContainerState::Running => {
            let probes = (input.probes)(&cur.id);
            // Until its probes report, a probed container is neither started
            // nor ready.
            let started = probes.started.unwrap_or(spec.startup_probe.is_none());
            status.state = Some(ApiState {
                running: Some(ContainerStateRunning {
                    started_at: cur.started_at.map(time),
                }),
                ..ApiState::default()
            });
            status.last_state = last_of(instances.get(1));
            status.started = Some(started);
            status.ready =
                started && (init || probes.ready.unwrap_or(spec.readiness_probe.is_none()));
        }
        ContainerState::Created => {
            status.state = Some(waiting("ContainerCreating", ""));
            status.last_state = last_of(instances.get(1));
            status.started = Some(false);
        }
        ContainerState::Exited | ContainerState::Unknown => {
            status.started = Some(false);
            match override_ {
                Some((reason, message)) => {
                    status.state = Some(waiting(reason, message));
                    status.last_state = last_of(instances.first());
                }
                None => {
                    let t = terminated(cur, id(cur));
                    // A completed init container counts as ready, as kubelet's.
                    status.ready = init && t.exit_code == 0;
                    status.state = Some(ApiState {
                        terminated: Some(t),
                        ..ApiState::default()
                    });
                    status.last_state = last_of(instances.get(1));
                }
            }
        }
    }
    status
}

/// How far a pod's init containers got.
struct InitProgress {
    /// Names of init containers not yet done (completed, or started for sidecars).
    pending: Vec<String>,
    /// An init container failed and will not be retried.
    failed: bool,
}

fn init_progress(input: &StatusInput<'_>, statuses: &[ApiContainerStatus]) -> InitProgress {
    let spec = input.pod.spec.as_ref();
    let never = spec.and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    let mut pending = Vec::new();
    let mut failed = false;
    for c in spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
    {
        let s = statuses.iter().find(|s| s.name == c.name);
        let state = s.and_then(|s| s.state.as_ref());
        let done = if is_sidecar(c) {
            state.is_some_and(|st| st.running.is_some()) && s.and_then(|s| s.started) == Some(true)
        } else {
            state
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        };
        if !done {
            pending.push(c.name.clone());
            let exit = state
                .and_then(|st| st.terminated.as_ref())
                .map(|t| t.exit_code);
            if (never || input.terminating) && exit.is_some_and(|code| code != 0) {
                failed = true;
            }
        }
    }
    InitProgress { pending, failed }
}

/// The pod phase, as kubelet's `getPhase`.
fn phase(input: &StatusInput<'_>, statuses: &[ApiContainerStatus], init: &InitProgress) -> String {
    let spec = input.pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if init.failed {
        return "Failed".into();
    }
    let (mut running, mut waiting_, mut stopped, mut succeeded, mut unknown) = (0, 0, 0, 0, 0);
    for c in spec.into_iter().flat_map(|s| s.containers.iter()) {
        let Some(state) = statuses
            .iter()
            .find(|s| s.name == c.name)
            .and_then(|s| Some((s.state.as_ref()?, s.last_state.as_ref())))
        else {
            unknown += 1;
            continue;
        };
        if state.0.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.0.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.0.waiting.is_some() {
            if state.1.and_then(|l| l.terminated.as_ref()).is_some() {
                stopped += 1;
            } else {
                waiting_ += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if !init.pending.is_empty() && !input.terminating {
        return "Pending".into();
    }
    if waiting_ > 0 && !input.terminating {
        return "Pending".into();
    }
    if running > 0 && unknown == 0 {
        return "Running".into();
    }
    if running == 0 && (stopped > 0 || input.terminating) && unknown == 0 {
        if input.terminating {
            return if stopped == succeeded {
                "Succeeded".into()
            } else {
                "Failed".into()
            };
        }
        if policy == "Always" {
            return "Running".into();
        }
        if stopped == succeeded {
            return "Succeeded".into();
        }
        if policy == "OnFailure" {
            return "Running".into();
        }
        return "Failed".into();
    }
    "Pending".into()
}

/// The pod's QoS class, as the API server assigns it.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = match pod.spec.as_ref() {
        Some(s) => s,
        None => return "BestEffort",
    };
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let amount =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| {
            m.and_then(|m| m.get(k))
                .and_then(|q| parse_quantity(&q.0).ok())
                .filter(|v| *v != 0)
        };
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let r = c.resources.as_ref();
        let limits = r.and_then(|r| r.limits.as_ref());
        let requests = r.and_then(|r| r.requests.as_ref());
        for k in ["cpu", "memory"] {
            let limit = amount(limits, k);
            let request = amount(requests, k).or(limit);
            any |= limit.is_some() || request.is_some();
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// A condition keeping its transition time while its status is unchanged.
fn condition(
    old: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .or(Some(Time(
            Timestamp::from_second(now.as_second()).unwrap_or(now),
        )));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time,
        ..PodCondition::default()
    }
}

/// The conditions this agent owns, in kubelet's order.
const OWNED_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// Computes the pod's status: the API's current status with every field
/// the agent owns replaced.
pub fn compute(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let spec = pod.spec.as_ref();
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let init_specs: Vec<&Container> = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .collect();
    let init_statuses: Vec<ApiContainerStatus> = init_specs
        .iter()
        .map(|c| container_status(input, c, "PodInitializing", true))
        .collect();
    let init = init_progress(input, &init_statuses);
    let app_waiting = if init.pending.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let statuses: Vec<ApiContainerStatus> = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| container_status(input, c, app_waiting, false))
        .collect();
    let phase = phase(input, &statuses, &init);
    let completed = phase == "Succeeded";
    let now = input.now;

    let sandbox_ready = input.state.ready_sandbox().is_some();
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let gates_ok = spec
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .all(|g| {
            old_conditions
                .iter()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        });
    let containers_ready = unready.is_empty();
    let not_ready_reason = if completed {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let unready_message = (!containers_ready && !completed)
        .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    let mut conditions = vec![
        condition(
            &old_conditions,
            OWNED_CONDITIONS[0],
            sandbox_ready,
            None,
            None,
            now,
        ),
        if init.pending.is_empty() {
            condition(
                &old_conditions,
                OWNED_CONDITIONS[1],
                true,
                completed.then_some("PodCompleted"),
                None,
                now,
            )
        } else {
            condition(
                &old_conditions,
                OWNED_CONDITIONS[1],
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    init.pending.join(" ")
                )),
                now,
            )
        },
        if containers_ready && !gates_ok {
            condition(
                &old_conditions,
                OWNED_CONDITIONS[2],
                false,
                Some("ReadinessGatesNotReady"),
                Some("corresponding condition of pod readiness gate is not ready".into()),
                now,
            )
        } else {
            condition(
                &old_conditions,
                OWNED_CONDITIONS[2],
                containers_ready,
                (!containers_ready).then_some(not_ready_reason),
                unready_message.clone(),
                now,
            )
        },
        condition(
            &old_conditions,
            OWNED_CONDITIONS[3],
            containers_ready,
            (!containers_ready).then_some(not_ready_reason),
            unready_message,
            now,
        ),
    ];
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| !OWNED_CONDITIONS.contains(&c.type_.as_str()))
            .cloned(),
    );

    let mut status = old;
    status.phase = Some(phase);
    status.conditions = Some(conditions);
    status.host_ip = input.host_ips.first().cloned();
    status.host_ips = Some(
        input
            .host_ips
            .iter()
            .map(|ip| HostIP { ip: ip.clone() })
            .collect(),
    );
    if !input.pod_ips.is_empty() {
        status.pod_ip = input.pod_ips.first().cloned();
        status.pod_ips = Some(
            input
                .pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.clone() })
                .collect(),
        );
    }
    if status.start_time.is_none() {
        status.start_time = Some(Time(Timestamp::from_second(now.as_second()).unwrap_or(now)));
    }
    status.container_statuses = Some(statuses);
    status.init_container_statuses = (!init_statuses.is_empty()).then_some(init_statuses);
    status.qos_class = Some(qos_class(pod).to_string());
    status
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
