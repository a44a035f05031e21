//! Taint eviction, as Kubernetes' taint-eviction controller: deletes pods
//! bound to nodes whose `NoExecute` taints they do not tolerate.
//!
//! For each pod on a node with `NoExecute` taints, every taint is matched
//! against the pod's tolerations (the first tolerating one counts, as in
//! `GetMatchingTolerations`):
//!
//! - a taint nothing tolerates evicts the pod at once;
//! - a toleration with `tolerationSeconds` evicts it that many seconds after
//!   the taint's `timeAdded` (or after this controller first saw the taint,
//!   if it has none). Measuring from `timeAdded` rather than from when this
//!   process noticed means a new leader keeps the schedule of the old one;
//! - a toleration without `tolerationSeconds` lets the pod stay.
//!
//! Evicting records a `TaintManagerEviction` Event ("Marking for deletion Pod
//! ns/name"), adds the `DisruptionTarget` condition to the pod, then deletes it
//! (with its uid as precondition, so a successor of the same name is never
//! hit). A scheduled eviction whose taint goes away is cancelled with another
//! Event. This module owns those deletions and that condition only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::ResourceExt;
use serde_json::json;

use super::taints::NO_EXECUTE;
use super::Shared;
use crate::events::EventType;

/// The longest the loop sleeps without a change or a due eviction.
const RESYNC: Duration = Duration::from_secs(30);
/// How soon a failed eviction is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How many evictions run at once.
const CONCURRENCY: usize = 8;

/// Whether `toleration` tolerates `taint` (Kubernetes' `ToleratesTaint`): the
/// effect and key match or are left empty, and the value matches under the
/// operator (`Equal` when empty).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// When a pod must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Now: some taint is not tolerated, or only for zero seconds.
    Now,
    /// At this time.
    At(Timestamp),
    /// Never: every taint is tolerated forever.
    Never,
}

/// The verdict for a pod with `tolerations` on a node with the `NoExecute`
/// taints `taints`, each paired with the time it was added.
pub fn verdict(taints: &[(Taint, Timestamp)], tolerations: &[Toleration]) -> Verdict {
    let mut earliest: Option<Timestamp> = None;
    for (taint, added) in taints {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Verdict::Now;
        };
        let Some(seconds) = toleration.toleration_seconds else {
            continue;
        };
        if seconds <= 0 {
            return Verdict::Now;
        }
        let due = added
            .checked_add(SignedDuration::from_secs(seconds))
            .unwrap_or(Timestamp::MAX);
        earliest = Some(earliest.map_or(due, |e| e.min(due)));
    }
    earliest.map_or(Verdict::Never, Verdict::At)
}

/// Identifies one taint on one node, for taints without `timeAdded`.
type TaintId = (String, String, Option<String>);

/// What the eviction loop remembers between passes.
#[derive(Default)]
struct Evictor {
    /// When this controller first saw each taint lacking `timeAdded`.
    first_seen: HashMap<TaintId, Timestamp>,
    /// Pods (by uid) whose deletion was requested.
    requested: HashSet<String>,
    /// Pods (by uid) with an eviction in the future, and their `ns/name`.
    scheduled: HashMap<String, String>,
}

/// Runs the taint eviction loop until dropped: a pass at every node or pod
/// change, when the next eviction is due, and at least every [`RESYNC`].
pub(super) async fn run(shared: Arc<Shared>) {
    if shared.nodes.wait_until_ready().await.is_err()
        || shared.pods.wait_until_ready().await.is_err()
    {
        return;
    }
    let mut evictor = Evictor::default();
    loop {
        let next = evictor.pass(&shared).await;
        let wait = next.map_or(RESYNC, |d| d.min(RESYNC));
        tokio::select! {
            () = shared.eviction_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

impl Evictor {
    /// One pass over every pod on a node with `NoExecute` taints; returns how
    /// long until the next scheduled eviction, if any.
    async fn pass(&mut self, shared: &Shared) -> Option<Duration> {
        let now = Timestamp::now();
        let tainted = self.no_execute_taints(shared, now);
        if tainted.is_empty() && self.scheduled.is_empty() {
            return None;
        }
        let pods = shared.pods.state();
        let live: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
        self.requested.retain(|uid| live.contains(uid));

        let mut next: Option<Timestamp> = None;
        let mut due = Vec::new();
        let mut still_scheduled = HashMap::new();
        for pod in &pods {
            let Some(taints) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| tainted.get(n))
            else {
                continue;
            };
            let uid = pod.uid().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() || self.requested.contains(&uid) {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default();
            match verdict(taints, tolerations) {
                Verdict::Now => due.push(pod.clone()),
                Verdict::At(at) if at <= now => due.push(pod.clone()),
                Verdict::At(at) => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    still_scheduled.insert(uid, pod_key(pod));
                }
                Verdict::Never => {}
            }
        }
        for (uid, key) in &self.scheduled {
            let evicting = due.iter().any(|p| p.uid().as_deref() == Some(uid));
            if !still_scheduled.contains_key(uid) && !evicting && live.contains(uid) {
                super::spawn_event(
                    &shared.eviction_events,
                    pod_ref(key),
                    EventType::Normal,
                    "TaintManagerEviction",
                    format!("Cancelling deletion of Pod {key}"),
                );
            }
        }
        self.scheduled = still_scheduled;

        let evicted: Vec<(String, bool)> = futures::stream::iter(due)
            .map(|pod| async move {
                let ok = evict(shared, &pod).await;
                (pod.uid().unwrap_or_default(), ok)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut wait = next.map(|n| {
            Duration::try_from(n.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
        });
        for (uid, ok) in evicted {
            if ok {
                self.requested.insert(uid);
            } else {
                wait = Some(wait.map_or(RETRY, |w| w.min(RETRY)));
            }
        }
        wait
    }

    /// The `NoExecute` taints of every node that has some, each with the time
    /// it counts as added; forgets first sightings of taints that are gone.
    fn no_execute_taints(
        &mut self,
        shared: &Shared,
        now: Timestamp,
    ) -> HashMap<String, Vec<(Taint, Timestamp)>> {
        let mut tainted = HashMap::new();
        let mut seen = HashSet::new();
        for node in shared.nodes.state() {
            let name = node.name_any();
            let taints: Vec<(Taint, Timestamp)> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .unwrap_or_default()
                .iter()
                .filter(|t| t.effect == NO_EXECUTE)
                .map(|t| {
                    let added = match &t.time_added {
                        Some(Time(at)) => *at,
                        None => {
                            let id = (name.clone(), t.key.clone(), t.value.clone());
                            seen.insert(id.clone());
                            *self.first_seen.entry(id).or_insert(now)
                        }
                    };
                    (t.clone(), added)
                })
                .collect();
            if !taints.is_empty() {
                tainted.insert(name, taints);
            }
        }
        self.first_seen.retain(|id, _| seen.contains(id));
        tainted
    }
}

/// `namespace/name` of a pod.
fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// A reference to the pod `ns/name`, as Kubernetes' taint eviction controller
/// makes it for its Events.
fn pod_ref(key: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// Evicts one pod; returns whether it is gone or going.
async fn evict(shared: &Shared, pod: &Pod) -> bool {
    let key = pod_key(pod);
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    super::spawn_event(
        &shared.eviction_events,
        pod_ref(&key),
        EventType::Normal,
        "TaintManagerEviction",
        format!("Marking for deletion Pod {key}"),
    );
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": Time(Timestamp::now()),
    }]}});
    // The condition is informative: a failure to add it must not keep the pod.
    if let Err(error) = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(&condition),
        )
        .await
    {
        tracing::debug!(pod = %key, %error, "could not add the DisruptionTarget condition");
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(pod = %key, "evicted a pod from a NoExecute-tainted node");
            true
        }
        // Gone, or replaced by a pod of the same name: nothing to evict.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
        Err(error) => {
            tracing::warn!(pod = %key, %error, "failed to evict a pod; retrying");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, value: Option<&str>) -> Taint {
        Taint {
            key: key.to_string(),
            value: value.map(str::to_string),
            effect: NO_EXECUTE.to_string(),
            time_added: None,
        }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn tolerations_match_like_kubernetes() {
        let t = taint("k", Some("v"));
        assert!(tolerates(
            &toleration(json!({"key": "k", "value": "v"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "k", "operator": "Equal", "value": "v"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "k", "value": "w"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "k", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(tolerates(
            &toleration(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "other", "operator": "Exists"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "k", "operator": "Lt", "value": "v"})),
            &t
        ));
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once() {
        let taints = [(taint("a", None), at("2024-01-01T00:00:00Z"))];
        assert_eq!(verdict(&taints, &[]), Verdict::Now);
        let other = toleration(json!({"key": "b", "operator": "Exists"}));
        assert_eq!(verdict(&taints, &[other]), Verdict::Now);
        let zero = toleration(json!({"key": "a", "operator": "Exists", "tolerationSeconds": 0}));
        assert_eq!(verdict(&taints, &[zero]), Verdict::Now);
    }

    #[test]
    fn toleration_seconds_count_from_when_each_taint_was_added() {
        let taints = [
            (taint("a", None), at("2024-01-01T00:00:00Z")),
            (taint("b", None), at("2024-01-01T00:00:10Z")),
        ];
        let tolerations = [
            toleration(json!({"key": "a", "operator": "Exists", "tolerationSeconds": 30})),
            toleration(json!({"key": "b", "operator": "Exists", "tolerationSeconds": 5})),
        ];
        assert_eq!(
            verdict(&taints, &tolerations),
            Verdict::At(at("2024-01-01T00:00:15Z"))
        );
    }

    #[test]
    fn tolerating_without_seconds_keeps_the_pod_forever() {
        let taints = [(taint("a", None), at("2024-01-01T00:00:00Z"))];
        let forever = toleration(json!({"key": "a", "operator": "Exists"}));
        assert_eq!(
            verdict(&taints, std::slice::from_ref(&forever)),
            Verdict::Never
        );
        // The first matching toleration decides, as in Kubernetes.
        let later = toleration(json!({"operator": "Exists", "tolerationSeconds": 1}));
        assert_eq!(verdict(&taints, &[forever, later]), Verdict::Never);
        assert_eq!(verdict(&[], &[]), Verdict::Never);
    }
}
