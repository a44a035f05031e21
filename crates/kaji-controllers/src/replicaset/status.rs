//! The ReplicaSet status the controller reports, computed from the pods it
//! owns, and the merge patch that writes it only when it changed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::pods::{available_in, fully_labeled, is_ready};

/// The counts, plus when a ready pod next becomes available.
pub struct Computed {
    /// The counts to report (conditions are left as they are).
    pub status: ReplicaSetStatus,
    /// When the earliest ready-but-not-yet-available pod crosses `minReadySeconds`.
    pub next_available: Option<Duration>,
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Counts the owned active pods: all, fully labeled, ready, and available
/// (ready for at least `minReadySeconds` by the Ready condition's
/// `lastTransitionTime`).
pub fn compute(rs: &ReplicaSet, owned: &[Arc<Pod>], now: Timestamp) -> Computed {
    let spec = rs.spec.as_ref();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = Duration::from_secs(
        spec.and_then(|s| s.min_ready_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
    );
    let mut ready = 0;
    let mut available = 0;
    let mut next_available: Option<Duration> = None;
    for pod in owned {
        if !is_ready(pod) {
            continue;
        }
        ready += 1;
        match available_in(pod, min_ready, now) {
            Some(d) if d.is_zero() => available += 1,
            Some(d) => next_available = Some(next_available.map_or(d, |n| n.min(d))),
            None => {}
        }
    }
    Computed {
        status: ReplicaSetStatus {
            replicas: count(owned.len()),
            fully_labeled_replicas: Some(count(
                owned
                    .iter()
                    .filter(|p| fully_labeled(p, &template_labels))
                    .count(),
            )),
            ready_replicas: Some(count(ready)),
            available_replicas: Some(count(available)),
            observed_generation: rs.metadata.generation,
            ..ReplicaSetStatus::default()
        },
        next_available,
    }
}

/// The merge patch writing `computed`'s counts, or `None` when the stored
/// status already says the same (absent counts read as zero).
pub fn patch_if_changed(rs: &ReplicaSet, computed: &ReplicaSetStatus) -> Option<Value> {
    let current = rs.status.clone().unwrap_or_default();
    let same = current.replicas == computed.replicas
        && current.fully_labeled_replicas.unwrap_or(0)
            == computed.fully_labeled_replicas.unwrap_or(0)
        && current.ready_replicas.unwrap_or(0) == computed.ready_replicas.unwrap_or(0)
        && current.available_replicas.unwrap_or(0) == computed.available_replicas.unwrap_or(0)
        && current.observed_generation == computed.observed_generation;
    (!same).then(|| {
        json!({"status": {
            "replicas": computed.replicas,
            "fullyLabeledReplicas": computed.fully_labeled_replicas,
            "readyReplicas": computed.ready_replicas,
            "availableReplicas": computed.available_replicas,
            "observedGeneration": computed.observed_generation,
        }})
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn rs(min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [
                                ("app".to_string(), "web".to_string()),
                                ("tier".to_string(), "fe".to_string()),
                            ]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                }),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(labels: &[(&str, &str)], ready_at: Option<i64>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: ready_at.map(|at| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(at))),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn counts_respect_labels_readiness_and_min_ready_seconds() {
        let full = [("app", "web"), ("tier", "fe")];
        let owned = vec![
            pod(&full, Some(100)),
            pod(&full, Some(195)),
            pod(&[("app", "web")], None),
            pod(&full, Some(50)),
        ];
        let c = compute(&rs(10), &owned, ts(200));
        assert_eq!(c.status.replicas, 4);
        assert_eq!(c.status.fully_labeled_replicas, Some(3));
        assert_eq!(c.status.ready_replicas, Some(3));
        assert_eq!(c.status.available_replicas, Some(2));
        assert_eq!(c.status.observed_generation, Some(3));
        assert_eq!(c.next_available, Some(Duration::from_secs(5)));
    }

    #[test]
    fn an_unchanged_status_is_not_written() {
        let mut set = rs(0);
        let c = compute(&set, &[], ts(0));
        assert!(
            patch_if_changed(&set, &c.status).is_some(),
            "observedGeneration is new"
        );
        set.status = Some(ReplicaSetStatus {
            observed_generation: Some(3),
            ..ReplicaSetStatus::default()
        });
        assert!(patch_if_changed(&set, &c.status).is_none());
    }
}
