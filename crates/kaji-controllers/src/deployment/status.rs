//! The Deployment status the controller reports: counts summed over its
//! ReplicaSets, the `Available` condition, and the `Progressing` condition
//! that tells `kubectl rollout status` when a rollout finished or stalled
//! (Kubernetes' `calculateStatus` and `syncRolloutStatus`). Nothing here does IO.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::rollout::{self, desired, InvalidIntOrPercent};

/// The `Available` condition type.
pub const AVAILABLE: &str = "Available";
/// The `Progressing` condition type.
pub const PROGRESSING: &str = "Progressing";
/// Progressing: a new ReplicaSet was created for the template.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Progressing: an existing ReplicaSet matches the template.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Progressing: the rollout moved forward.
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
/// Progressing: the rollout finished.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing false: no progress within `progressDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
/// Progressing unknown: `spec.paused` is set.
pub const PAUSED: &str = "DeploymentPaused";
/// Progressing unknown: `spec.paused` was cleared.
pub const RESUMED: &str = "DeploymentResumed";

/// A condition stamped `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`, if present.
pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Sets a condition as `SetDeploymentCondition`: a condition with the same
/// status and reason is left alone; the same status keeps its transition time.
pub fn set(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != cond.type_);
    conditions.push(cond);
}

fn sum(all: &[&ReplicaSet], f: impl Fn(&ReplicaSet) -> i32) -> i32 {
    all.iter().map(|rs| f(rs)).sum()
}

/// Counts over the ReplicaSets and the `Available` condition; other
/// conditions and `collisionCount` carry over from the stored status.
///
/// # Errors
/// A malformed `maxUnavailable`.
pub fn calculate(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> Result<DeploymentStatus, InvalidIntOrPercent> {
    let current = d.status.clone().unwrap_or_default();
    let status_of = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let available = sum(all, rollout::available);
    let total = sum(all, rollout::replicas);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(all, |rs| status_of(rs).replicas)),
        updated_replicas: Some(new.map_or(0, |rs| status_of(rs).replicas)),
        ready_replicas: Some(sum(all, |rs| status_of(rs).ready_replicas.unwrap_or(0))),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions,
        terminating_replicas: None,
    };
    let cond = if available >= desired(d) - rollout::max_unavailable(d)? {
        condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set(&mut status, cond);
    Ok(status)
}

/// Whether every replica is updated and available for the current generation.
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let n = desired(d);
    status.updated_replicas == Some(n)
        && status.replicas == Some(n)
        && status.available_replicas == Some(n)
        && status.observed_generation >= d.metadata.generation
}

fn progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let v = |x: Option<i32>| x.unwrap_or(0);
    let old_pods = |s: &DeploymentStatus| v(s.replicas) - v(s.updated_replicas);
    v(new.updated_replicas) > v(old.updated_replicas)
        || old_pods(new) < old_pods(old)
        || v(new.ready_replicas) > v(old.ready_replicas)
        || v(new.available_replicas) > v(old.available_replicas)
}

fn deadline(d: &Deployment) -> Option<Duration> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
}

/// How long until a stalled rollout's deadline passes: `None` without a
/// deadline or once it finished, failed, or is paused.
fn deadline_left(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let deadline = deadline(d)?;
    let cond = get(status, PROGRESSING)?;
    if cond.status != "True" || cond.reason.as_deref() == Some(NEW_RS_AVAILABLE) {
        return None;
    }
    let since = cond.last_update_time.as_ref()?.0;
    let elapsed = u64::try_from(now.as_millisecond() - since.as_millisecond()).unwrap_or(0);
    Some(deadline.saturating_sub(Duration::from_millis(elapsed)))
}

/// The status after a rollout step, with `Progressing` updated, and when to
/// look again for the progress deadline (`requeueStuckDeployment`).
///
/// # Errors
/// A malformed `maxUnavailable`.
pub fn rollout(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> Result<(DeploymentStatus, Option<Duration>), InvalidIntOrPercent> {
    let mut status = calculate(d, all, new, now)?;
    let old = d.status.clone().unwrap_or_default();
    if deadline(d).is_none() {
        return Ok((status, None));
    }
    let current = get(&old, PROGRESSING).cloned();
    let reason = current.as_ref().and_then(|c| c.reason.clone());
    let new_name = new.map(ResourceExt::name_any).unwrap_or_default();
    if is_complete(d, &status) {
        if reason.as_deref() != Some(NEW_RS_AVAILABLE) {
            let msg = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
            set(
                &mut status,
                condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now),
            );
        }
    } else if progressed(&old, &status) {
        let msg = format!("ReplicaSet \"{new_name}\" is progressing.");
        let mut cond = condition(PROGRESSING, "True", RS_UPDATED, msg, now);
        if let Some(c) = current.as_ref().filter(|c| c.status == "True") {
            cond.last_transition_time = c.last_transition_time.clone();
        }
        if let Some(list) = status.conditions.as_mut() {
            list.retain(|c| c.type_ != PROGRESSING);
        }
        set(&mut status, cond);
    } else if deadline_left(d, &old, now).is_some_and(|left| left.is_zero()) {
        let msg = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
        set(
            &mut status,
            condition(PROGRESSING, "False", DEADLINE_EXCEEDED, msg, now),
        );
    }
    let recheck = if is_complete(d, &status) {
        None
    } else {
        deadline_left(d, &status, now)
    };
    Ok((status, recheck))
}

/// The `Progressing` condition for a paused or resumed Deployment, if it
/// must change (`checkPausedConditions`).
pub fn paused_condition(d: &Deployment, now: Timestamp) -> Option<DeploymentCondition> {
    deadline(d)?;
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let status = d.status.clone().unwrap_or_default();
    let reason = get(&status, PROGRESSING).and_then(|c| c.reason.as_deref());
    if paused && reason != Some(PAUSED) {
        Some(condition(
            PROGRESSING,
            "Unknown",
            PAUSED,
            "Deployment is paused".into(),
            now,
        ))
    } else if !paused && reason == Some(PAUSED) {
        Some(condition(
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed".into(),
            now,
        ))
    } else {
        None
    }
}

/// The merge patch writing `status`, or `None` when the stored one is the same.
pub fn patch_if_changed(d: &Deployment, status: &DeploymentStatus) -> Option<Value> {
    let current = serde_json::to_value(d.status.clone().unwrap_or_default()).ok()?;
    let next = serde_json::to_value(status).ok()?;
    (current != next).then(|| json!({ "status": next }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deploy(replicas: i32, status: Option<DeploymentStatus>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(600),
                ..DeploymentSpec::default()
            }),
            status,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn deployment_status_completes_with_new_rs_available() {
        let d = deploy(3, None);
        let new = rs("web-abc", 3, 3);
        let (status, recheck) = rollout(&d, &[&new], Some(&new), ts(100)).unwrap();
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.updated_replicas, Some(3));
        assert_eq!(status.unavailable_replicas, Some(0));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(get(&status, AVAILABLE).unwrap().status, "True");
        let p = get(&status, PROGRESSING).unwrap();
        assert_eq!(p.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert!(recheck.is_none());
    }

    #[test]
    fn deployment_status_times_out_without_progress() {
        let mut before = DeploymentStatus {
            replicas: Some(1),
            updated_replicas: Some(1),
            ..DeploymentStatus::default()
        };
        set(
            &mut before,
            condition(PROGRESSING, "True", RS_UPDATED, "x".into(), ts(0)),
        );
        let d = deploy(3, Some(before));
        let new = rs("web-abc", 1, 0);
        let (status, recheck) = rollout(&d, &[&new], Some(&new), ts(100)).unwrap();
        assert_eq!(
            get(&status, PROGRESSING).unwrap().reason.as_deref(),
            Some(RS_UPDATED)
        );
        assert_eq!(recheck, Some(Duration::from_secs(500)));
        let d = deploy(3, Some(status));
        let (status, recheck) = rollout(&d, &[&new], Some(&new), ts(700)).unwrap();
        let p = get(&status, PROGRESSING).unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("False", Some(DEADLINE_EXCEEDED))
        );
        assert!(recheck.is_none());
        assert_eq!(get(&status, AVAILABLE).unwrap().status, "False");
    }
}
