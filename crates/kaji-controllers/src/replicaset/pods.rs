//! Pure pod logic for the ReplicaSet controller: activity, readiness and
//! availability, controller references, the pod built from a template, the
//! order in which surplus pods are deleted, and slow-start batch sizes.
//! Nothing here does IO.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

/// The most pods created or deleted in one reconcile, as Kubernetes' `BurstReplicas`.
pub const BURST_REPLICAS: usize = 500;

/// The annotation whose integer value makes a pod cheaper (lower) or dearer
/// (higher) to delete on scale-down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The controller reference of an object, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether the pod still counts toward replicas: not terminating, not finished.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's `Ready` condition last became true, if it is ready now.
/// A ready pod without a transition time reports `Some(None)`.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's `Ready` condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// How long until a pod becomes available (ready for `min_ready` without
/// interruption): `Some(ZERO)` if it already is, `None` if it is not ready.
pub fn available_in(pod: &Pod, min_ready: Duration, now: Timestamp) -> Option<Duration> {
    let since = ready_since(pod)?;
    if min_ready.is_zero() {
        return Some(Duration::ZERO);
    }
    // Kubernetes treats a ready pod without a transition time as not yet available.
    let since = since?;
    let ready_for = u64::try_from(now.as_millisecond() - since.as_millisecond()).unwrap_or(0);
    let min_ready_ms = u64::try_from(min_ready.as_millis()).unwrap_or(u64::MAX);
    Some(Duration::from_millis(
        min_ready_ms.saturating_sub(ready_for),
    ))
}

/// Whether every label of the template is on the pod with the same value.
pub fn fully_labeled(pod: &Pod, template_labels: &BTreeMap<String, String>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    template_labels
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The controller reference a ReplicaSet puts on the pods it owns.
///
/// `None` when the ReplicaSet has no name or uid (never for a stored object).
pub fn owner_reference(rs: &ReplicaSet) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: ReplicaSet::api_version(&()).into_owned(),
        kind: ReplicaSet::kind(&()).into_owned(),
        name: rs.metadata.name.clone()?,
        uid: rs.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The pod a ReplicaSet creates: `generateName: <rs>-`, the template's
/// labels, annotations, finalizers and spec, and the controller reference.
pub fn pod_from_template(rs: &ReplicaSet, owner: OwnerReference) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name)),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Slow-start batch sizes for `total` creations: 1, 2, 4, ... until the
/// remainder, as Kubernetes' `slowStartBatch` with an initial batch of 1.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut remaining, mut size) = (total, 1);
    while remaining > 0 {
        let batch = size.min(remaining);
        batches.push(batch);
        remaining -= batch;
        size = size.saturating_mul(2);
    }
    batches
}

/// What Kubernetes' `ActivePodsWithRanks` compares, precomputed per pod.
#[derive(Debug)]
struct DeletionKey {
    assigned: bool,
    phase: u8,
    ready: bool,
    cost: i32,
    colocated: usize,
    ready_since: Option<Option<Timestamp>>,
    restarts: i32,
    created: Option<Timestamp>,
}

impl DeletionKey {
    fn of(pod: &Pod, colocated: usize) -> Self {
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Unknown") => 1,
            Some("Running") => 2,
            _ => 0,
        };
        let restarts = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
            .unwrap_or(0);
        let cost = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POD_DELETION_COST))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        DeletionKey {
            assigned: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty()),
            phase,
            ready: is_ready(pod),
            cost,
            colocated,
            ready_since: ready_since(pod),
            restarts,
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    /// `Less` means "delete first".
    fn cmp(&self, other: &Self) -> Ordering {
        self.assigned
            .cmp(&other.assigned)
            .then(self.phase.cmp(&other.phase))
            .then(self.ready.cmp(&other.ready))
            .then(self.cost.cmp(&other.cost))
            .then(other.colocated.cmp(&self.colocated))
            .then_with(|| match (self.ready_since, other.ready_since) {
                // Both ready: the one ready for less time goes first; an
                // unknown transition time counts as "just now".
                (Some(a), Some(b)) => newer_first(a, b),
                _ => Ordering::Equal,
            })
            .then(other.restarts.cmp(&self.restarts))
            .then_with(|| newer_first(self.created, other.created))
    }
}

/// Orders timestamps newest first, a missing one before all.
fn newer_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Sorts pods so that the first ones are the ones to delete on scale-down,
/// ranked as Kubernetes ranks them: unassigned before assigned; Pending
/// before Unknown before Running; not ready before ready; lower
/// deletion cost first; more pods of this set on the same node first;
/// ready for less time first; more container restarts first; newer first.
pub fn sort_for_deletion(pods: &mut [Arc<Pod>]) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in pods.iter() {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let mut keyed: Vec<(DeletionKey, Arc<Pod>)> = pods
        .iter()
        .map(|pod| {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            let colocated = node.and_then(|n| per_node.get(n)).copied().unwrap_or(0);
            (DeletionKey::of(pod, colocated), pod.clone())
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    for (slot, (_, pod)) in pods.iter_mut().zip(keyed) {
        *slot = pod;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn pod(
        name: &str,
        phase: &str,
        ready_at: Option<i64>,
        node: Option<&str>,
        created: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(ts(created))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
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
        }
    }

    fn order(pods: Vec<Pod>) -> Vec<String> {
        let mut pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
        sort_for_deletion(&mut pods);
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn slow_start_doubles_until_the_remainder() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(5), vec![1, 2, 2]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
    }

    #[test]
    fn unassigned_pending_and_unready_pods_are_deleted_first() {
        let got = order(vec![
            pod("running-ready", "Running", Some(10), Some("n1"), 1),
            pod("pending-assigned", "Pending", None, Some("n2"), 1),
            pod("unassigned", "Running", Some(10), None, 1),
            pod("running-unready", "Running", None, Some("n3"), 1),
            pod("unknown", "Unknown", None, Some("n4"), 1),
        ]);
        assert_eq!(
            got,
            [
                "unassigned",
                "pending-assigned",
                "unknown",
                "running-unready",
                "running-ready"
            ]
        );
    }

    #[test]
    fn among_equals_recently_ready_restarting_and_newer_pods_go_first() {
        let mut restarted = pod("restarted", "Running", Some(10), Some("a"), 1);
        restarted.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            restart_count: 3,
            ..ContainerStatus::default()
        }]);
        let got = order(vec![
            pod("old", "Running", Some(10), Some("b"), 1),
            restarted,
            pod("new", "Running", Some(10), Some("c"), 5),
            pod("just-ready", "Running", Some(20), Some("d"), 1),
        ]);
        assert_eq!(got, ["just-ready", "restarted", "new", "old"]);
    }

    #[test]
    fn doubled_up_pods_and_cheap_pods_go_first() {
        let mut cheap = pod("cheap", "Running", Some(10), Some("z"), 1);
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
        let got = order(vec![
            pod("alone", "Running", Some(10), Some("x"), 1),
            pod("shared-1", "Running", Some(10), Some("y"), 1),
            pod("shared-2", "Running", Some(10), Some("y"), 1),
            cheap,
        ]);
        assert_eq!(got[0], "cheap");
        assert_eq!(got[3], "alone");
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", "Running", Some(100), None, 1);
        let min = Duration::from_secs(10);
        assert_eq!(available_in(&p, min, ts(104)), Some(Duration::from_secs(6)));
        assert_eq!(available_in(&p, min, ts(110)), Some(Duration::ZERO));
        assert_eq!(
            available_in(&p, Duration::ZERO, ts(100)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            available_in(&pod("q", "Pending", None, None, 1), min, ts(200)),
            None
        );
    }

    #[test]
    fn finished_and_terminating_pods_are_inactive() {
        assert!(is_active(&pod("p", "Running", None, None, 1)));
        assert!(!is_active(&pod("p", "Succeeded", None, None, 1)));
        assert!(!is_active(&pod("p", "Failed", None, None, 1)));
        let mut gone = pod("p", "Running", None, None, 1);
        gone.metadata.deletion_timestamp = Some(Time(ts(5)));
        assert!(!is_active(&gone));
    }
}
