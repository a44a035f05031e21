//! The ReplicaSet controller: keeps `spec.replicas` active pods matching
//! each ReplicaSet's selector, adopting matching orphans, releasing pods
//! that stopped matching, and reporting counts in `status`.
//!
//! It owns pods it created or adopted (through a controller owner
//! reference) and the ReplicaSet's `/status`; it never touches the spec or
//! pods another controller owns. Like Kubernetes' replicaset controller,
//! it records the creations and deletions it has in flight
//! ([`expectations`]) and waits for the watch to observe them before
//! acting again, so a lagging cache never makes it act twice.
//!
//! Wiring: one reflector per kind (ReplicaSets, pods) feeds both the
//! stores the reconciler reads and the trigger queue of kube-rs'
//! [`applier`] — the engine behind `Controller` — which guarantees one
//! reconcile per ReplicaSet at a time. The pod stream also updates the
//! expectations *before* the store applies each event, so it can tell a
//! new pod from an updated one. (`Controller::new(..).owns(..)` cannot share
//! its pod watch with a store without kube's unstable stream features.)

pub mod expectations;
pub mod pods;
mod status;

use crate::backoff::key_of;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{applier, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;

use self::expectations::Expectations;
use self::pods::{controller_ref, is_active, BURST_REPLICAS};

/// Why one reconcile of a ReplicaSet failed; the error policy retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The ReplicaSet lacks a field the controller needs.
    #[error("object is missing {0}")]
    MissingField(&'static str),
    /// `spec.selector` does not parse.
    #[error("invalid selector: {0}")]
    InvalidSelector(#[source] kube::core::ParseExpressionError),
    /// A patch could not be built (a bug).
    #[error("could not encode a patch: {0}")]
    Encode(#[source] serde_json::Error),
    /// The pod reflector stopped, so the pod cache will never be ready.
    #[error("pod cache writer dropped")]
    CacheGone(#[source] reflector::store::WriterDropped),
}

/// Shared state of the controller.
struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
    backoff: crate::backoff::RetryBackoff,
    events: crate::events::EventRecorder,
}

impl Context {
    /// Records a Kubernetes Event (`SuccessfulCreate`, `FailedDelete`, ...)
    /// about `rs`. Recording runs on its own bounded task so that reconciling
    /// never waits for it.
    fn record_event(&self, rs: &ReplicaSet, warning: bool, reason: &str, message: &str) {
        let key = key_of(rs);
        if warning {
            tracing::warn!(replicaset = %key, reason, "{message}");
        } else {
            tracing::debug!(replicaset = %key, reason, "{message}");
        }
        let recorder = self.events.clone();
        let regarding = crate::events::object_reference(rs, &());
        let type_ = if warning {
            crate::events::EventType::Warning
        } else {
            crate::events::EventType::Normal
        };
        let (reason, message) = (reason.to_string(), message.to_string());
        tokio::spawn(async move { recorder.record(&regarding, type_, &reason, &message).await });
    }
}

/// The ReplicaSet (`namespace/name`, uid) that controls a pod, if any.
fn rs_owner(pod: &Pod) -> Option<(String, String)> {
    let owner = controller_ref(&pod.metadata)?;
    (owner.kind == "ReplicaSet" && owner.api_version == "apps/v1").then(|| {
        (
            format!("{}/{}", pod.namespace().unwrap_or_default(), owner.name),
            owner.uid.clone(),
        )
    })
}

/// Runs the controller until its watches end (they retry forever).
///
/// # Errors
/// None in practice; failed reconciles are retried with backoff.
pub async fn run(client: kube::Client) -> Result<(), crate::Error> {
    let (rs_store, rs_writer) = reflector::store::<ReplicaSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods: pod_store.clone(),
        expectations: Expectations::default(),
        backoff: crate::backoff::RetryBackoff::default(),
        events: crate::events::EventRecorder::new(client.clone(), "replicaset-controller"),
    });

    let forget_ctx = ctx.clone();
    let rs_triggers = watcher(Api::<ReplicaSet>::all(client.clone()))
        .map_ok(move |event| {
            if let Event::Delete(rs) = &event {
                forget_ctx.expectations.forget(&key_of(rs));
            }
            event
        })
        .reflect(rs_writer)
        .applied_objects()
        .map_ok(|rs| ObjectRef::from_obj(&rs));

    let observe_ctx = ctx.clone();
    let observe_store = pod_store.clone();
    let owners_store = rs_store.clone();
    let pod_triggers = watcher(Api::<Pod>::all(client))
        .map_ok(move |event| {
            observe_pod_event(&event, &observe_store, &observe_ctx.expectations);
            event
        })
        .reflect(pod_writer)
        .touched_objects()
        .map_ok(move |pod| {
            futures::stream::iter(replicasets_for_pod(&pod, &owners_store).into_iter().map(Ok))
        })
        .try_flatten();

    let triggers = futures::stream::select(rs_triggers, pod_triggers);
    applier(
        |rs, ctx| Box::pin(reconcile(rs, ctx)),
        error_policy,
        ctx,
        rs_store,
        triggers,
        ControllerConfig::default(),
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "replicaset controller");
        }
    })
    .await;
    Ok(())
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

/// Lowers expectations from a pod watch event, looking at the store before
/// it applies the event: a pod the store lacks is a creation; a pod that
/// gains a deletion timestamp, or is deleted, is a deletion.
fn observe_pod_event(event: &Event<Pod>, store: &Store<Pod>, expectations: &Expectations) {
    match event {
        Event::Apply(pod) | Event::InitApply(pod) => {
            let Some((key, owner_uid)) = rs_owner(pod) else {
                return;
            };
            let uid = pod.uid().unwrap_or_default();
            let previous = store
                .get(&ObjectRef::from_obj(pod))
                .filter(|p| p.uid().as_deref() == Some(&uid));
            let was_terminating = match previous {
                None => {
                    expectations.creation_observed(&key, &owner_uid);
                    false
                }
                Some(prev) => prev.metadata.deletion_timestamp.is_some(),
            };
            if pod.metadata.deletion_timestamp.is_some() && !was_terminating {
                expectations.deletion_observed(&key, &owner_uid, &uid);
            }
        }
        Event::Delete(pod) => {
            if let Some((key, owner_uid)) = rs_owner(pod) {
                expectations.deletion_observed(&key, &owner_uid, &pod.uid().unwrap_or_default());
            }
        }
        Event::Init | Event::InitDone => {}
    }
}

/// The ReplicaSets a pod event concerns: its controller, or, for an
/// orphan, every live ReplicaSet in its namespace whose selector matches.
fn replicasets_for_pod(pod: &Pod, replicasets: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_ref(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = pod.labels();
    replicasets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .filter(|rs| {
            selector_of(rs)
                .ok()
                .flatten()
                .is_some_and(|s| s.matches(labels))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// The parsed selector; `None` for an empty selector, which selects nothing
/// here (Kubernetes rejects it for apps/v1).
fn selector_of(rs: &ReplicaSet) -> Result<Option<Selector>, ReconcileError> {
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(None);
    };
    crate::backoff::label_selector(&spec.selector).map_err(ReconcileError::InvalidSelector)
}

fn error_policy(rs: Arc<ReplicaSet>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = key_of(rs.as_ref());
    let delay = ctx.backoff.failed(&key);
    tracing::warn!(replicaset = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(ReconcileError::CacheGone)?;
    let key = key_of(rs.as_ref());
    let result = sync(&rs, &ctx, &key).await;
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    result
}

/// One level-triggered pass: claim pods, create or delete the difference
/// (when expectations allow), then write the status.
async fn sync(rs: &ReplicaSet, ctx: &Context, key: &str) -> Result<Action, ReconcileError> {
    let namespace = rs
        .namespace()
        .ok_or(ReconcileError::MissingField("metadata.namespace"))?;
    let uid = rs
        .uid()
        .ok_or(ReconcileError::MissingField("metadata.uid"))?;
    let selector = selector_of(rs)?;
    let deleting = rs.metadata.deletion_timestamp.is_some();

    let in_namespace = ctx
        .pods
        .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()));
    ctx.expectations
        .observe_deletions_by_state(key, &uid, |pod_uid| {
            in_namespace.iter().any(|p| {
                p.uid().as_deref() == Some(pod_uid) && p.metadata.deletion_timestamp.is_none()
            })
        });
    let active: Vec<Arc<Pod>> = in_namespace.into_iter().filter(|p| is_active(p)).collect();
    let owned = claim_pods(rs, ctx, &uid, selector.as_ref(), deleting, active).await?;

    let mut manage_result = Ok(());
    let mut recheck = None;
    if !deleting {
        match ctx.expectations.time_left(key, &uid) {
            None => manage_result = manage_replicas(rs, ctx, key, &uid, owned.clone()).await,
            Some(left) => recheck = Some(left),
        }
    }

    let computed = status::compute(rs, &owned, k8s_openapi::jiff::Timestamp::now());
    if let Some(patch) = status::patch_if_changed(rs, &computed.status) {
        Api::<ReplicaSet>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
    }
    manage_result?;

    let next = [recheck, computed.next_available]
        .into_iter()
        .flatten()
        .min();
    Ok(next.map_or_else(Action::await_change, |d| {
        Action::requeue(d + Duration::from_millis(100))
    }))
}

/// Sorts the namespace's active pods: keeps the ones this ReplicaSet
/// controls and that still match, adopts matching orphans, releases the
/// ones that no longer match. Returns the pods it owns.
async fn claim_pods(
    rs: &ReplicaSet,
    ctx: &Context,
    uid: &str,
    selector: Option<&Selector>,
    deleting: bool,
    active: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>, ReconcileError> {
    let matches = |pod: &Pod| selector.is_some_and(|s| s.matches(pod.labels()));
    let mut owned = Vec::new();
    let mut orphans = Vec::new();
    for pod in active {
        match controller_ref(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches(&pod) {
                    owned.push(pod);
                } else if !deleting {
                    release(ctx, &pod, uid).await?;
                }
            }
            Some(_) => {}
            None if matches(&pod) && !deleting => orphans.push(pod),
            None => {}
        }
    }
    if orphans.is_empty() {
        return Ok(owned);
    }
    // As Kubernetes' `RecheckDeletionTimestamp`: adopt only if a fresh read
    // shows this very ReplicaSet, not being deleted.
    let api =
        Api::<ReplicaSet>::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let fresh = api.get(&rs.name_any()).await?;
    if fresh.uid().as_deref() != Some(uid) || fresh.metadata.deletion_timestamp.is_some() {
        return Ok(owned);
    }
    let owner = pods::owner_reference(rs).ok_or(ReconcileError::MissingField("metadata.uid"))?;
    for pod in orphans {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(owner.clone());
        if rewrite_owner_references(ctx, &pod, &refs).await? {
            owned.push(pod);
        }
    }
    Ok(owned)
}

async fn release(ctx: &Context, pod: &Pod, uid: &str) -> Result<(), ReconcileError> {
    let refs: Vec<_> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    rewrite_owner_references(ctx, pod, &refs).await.map(|_| ())
}

/// Replaces a pod's ownerReferences if the pod is still the version the
/// cache holds (JSON patch `test` on uid and resourceVersion). Returns
/// `false` when the pod changed or vanished meanwhile: its newer watch event
/// triggers another reconcile.
async fn rewrite_owner_references(
    ctx: &Context,
    pod: &Pod,
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Result<bool, ReconcileError> {
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": pod.uid()}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": pod.resource_version()}),
    ];
    if refs.is_empty() {
        ops.push(json!({"op": "remove", "path": "/metadata/ownerReferences"}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs}));
    }
    let patch = Patch::Json::<()>(
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(ReconcileError::Encode)?,
    );
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    match api
        .patch(&pod.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409 | 422) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates or deletes the difference between `spec.replicas` and the pods
/// it owns, recording expectations first.
async fn manage_replicas(
    rs: &ReplicaSet,
    ctx: &Context,
    key: &str,
    uid: &str,
    mut owned: Vec<Arc<Pod>>,
) -> Result<(), ReconcileError> {
    let wanted =
        usize::try_from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
    let namespace = rs.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
    if owned.len() < wanted {
        let count = (wanted - owned.len()).min(BURST_REPLICAS);
        let owner =
            pods::owner_reference(rs).ok_or(ReconcileError::MissingField("metadata.uid"))?;
        let template = pods::pod_from_template(rs, owner);
        ctx.expectations.expect_creations(key, uid, count);
        tracing::debug!(
            replicaset = key,
            count,
            owned = owned.len(),
            "creating pods"
        );
        let post = PostParams::default();
        let mut unsent = count;
        for batch in pods::slow_start_batches(count) {
            unsent -= batch;
            let results =
                futures::future::join_all((0..batch).map(|_| api.create(&post, &template))).await;
            let mut first_error = None;
            for result in results {
                match result {
                    Ok(pod) => ctx.record_event(
                        rs,
                        false,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", pod.name_any()),
                    ),
                    Err(e) => {
                        ctx.expectations.creation_observed(key, uid);
                        ctx.record_event(rs, true, "FailedCreate", &format!("Error creating: {e}"));
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                // Skip the remaining batches: they would most likely fail too.
                for _ in 0..unsent {
                    ctx.expectations.creation_observed(key, uid);
                }
                return Err(e.into());
            }
        }
    } else if owned.len() > wanted {
        let count = (owned.len() - wanted).min(BURST_REPLICAS);
        pods::sort_for_deletion(&mut owned);
        owned.truncate(count);
        ctx.expectations
            .expect_deletions(key, uid, owned.iter().filter_map(|p| p.uid()));
        let results = futures::future::join_all(owned.iter().map(|pod| {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let api = api.clone();
            async move { (pod, api.delete(&pod.name_any(), &params).await) }
        }))
        .await;
        let mut first_error = None;
        for (pod, result) in results {
            match result {
                Ok(_) => ctx.record_event(
                    rs,
                    false,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", pod.name_any()),
                ),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    ctx.expectations
                        .deletion_observed(key, uid, &pod.uid().unwrap_or_default());
                }
                Err(e) => {
                    ctx.expectations
                        .deletion_observed(key, uid, &pod.uid().unwrap_or_default());
                    ctx.record_event(rs, true, "FailedDelete", &format!("Error deleting: {e}"));
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e.into());
        }
    }
    Ok(())
}
