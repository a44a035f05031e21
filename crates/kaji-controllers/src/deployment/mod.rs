//! The Deployment controller: rolls each Deployment's pod template out
//! through ReplicaSets — one per template, named and labelled by the
//! template's hash — with the RollingUpdate or Recreate strategy, scales
//! them when the Deployment is scaled, prunes old revisions beyond
//! `revisionHistoryLimit`, and reports progress in `status`.
//!
//! It owns the ReplicaSets it created or adopted (through a controller
//! owner reference) and the Deployment's `/status` (plus its revision
//! annotation); it never touches pods, which belong to the ReplicaSet
//! controller, nor the Deployment's spec. Rollback needs nothing here:
//! `kubectl rollout undo` copies an old ReplicaSet's template into the spec.
//!
//! Wiring, as the ReplicaSet controller's: reflectors for Deployments,
//! ReplicaSets and pods feed the stores the reconciler reads and the
//! trigger queue of kube-rs' [`applier`], which runs one reconcile per
//! Deployment at a time. A ReplicaSet event triggers its controlling
//! Deployment (or, for an orphan, every Deployment that selects it); a pod
//! deletion triggers the Deployment above its ReplicaSet, which is what a
//! Recreate rollout waits for.

pub mod hash;
mod replicasets;
pub mod rollout;
pub mod status;
mod strategy;

use crate::backoff::key_of;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{applier, WatchStreamExt};
use kube::{Resource, ResourceExt};

use crate::replicaset::pods::controller_ref;

/// How soon to look again after a write that lost a race with another
/// writer or a lagging cache (the watch usually triggers sooner).
const STALE_RETRY: Duration = Duration::from_millis(250);

/// Why one reconcile of a Deployment failed; the error policy retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The Deployment lacks a field the controller needs.
    #[error("object is missing {0}")]
    MissingField(&'static str),
    /// `spec.selector` does not parse.
    #[error("invalid selector: {0}")]
    InvalidSelector(#[source] kube::core::ParseExpressionError),
    /// `maxSurge` or `maxUnavailable` is malformed.
    #[error("invalid rolling update parameters: {0}")]
    InvalidStrategy(#[from] rollout::InvalidIntOrPercent),
    /// A patch could not be built (a bug).
    #[error("could not encode a patch: {0}")]
    Encode(#[source] serde_json::Error),
    /// A reflector stopped, so its cache will never be ready.
    #[error("cache writer dropped")]
    CacheGone(#[source] reflector::store::WriterDropped),
    /// The new ReplicaSet's name is taken by another template; the
    /// collision count was bumped and the next pass picks a new name.
    #[error("pod-template-hash collision on {0}")]
    HashCollision(String),
}

/// Shared state of the controller.
struct Context {
    client: kube::Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    backoff: crate::backoff::RetryBackoff,
    events: crate::events::EventRecorder,
}

/// Runs the controller until its watches end (they retry forever).
///
/// # Errors
/// None in practice; failed reconciles are retried with backoff.
pub async fn run(client: kube::Client) -> Result<(), crate::Error> {
    let (deploy_store, deploy_writer) = reflector::store::<Deployment>();
    let (rs_store, rs_writer) = reflector::store::<ReplicaSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        replicasets: rs_store.clone(),
        pods: pod_store,
        backoff: crate::backoff::RetryBackoff::default(),
        events: crate::events::EventRecorder::new(client.clone(), "deployment-controller"),
    });

    let deploy_triggers = watch(Api::<Deployment>::all(client.clone()))
        .reflect(deploy_writer)
        .applied_objects()
        .map_ok(|d| ObjectRef::from_obj(&d));

    let selectors = deploy_store.clone();
    let rs_triggers = watch(Api::<ReplicaSet>::all(client.clone()))
        .reflect(rs_writer)
        .touched_objects()
        .map_ok(move |rs| {
            futures::stream::iter(deployments_for_rs(&rs, &selectors).into_iter().map(Ok))
        })
        .try_flatten();

    let owners = rs_store;
    let pod_triggers = watch(Api::<Pod>::all(client))
        .reflect(pod_writer)
        .try_filter_map(move |event| {
            let target = match event {
                Event::Delete(pod) => deployment_for_pod(&pod, &owners),
                _ => None,
            };
            futures::future::ready(Ok(target))
        });

    let triggers = futures::stream::select(
        futures::stream::select(deploy_triggers, rs_triggers),
        pod_triggers,
    );
    applier(
        |d, ctx| Box::pin(reconcile(d, ctx)),
        error_policy,
        ctx,
        deploy_store,
        triggers,
        ControllerConfig::default(),
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "deployment controller");
        }
    })
    .await;
    Ok(())
}

fn watch<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

/// The Deployments a ReplicaSet event concerns: its controller, or, for an
/// orphan, every live Deployment in its namespace whose selector matches.
fn deployments_for_rs(
    rs: &ReplicaSet,
    deployments: &Store<Deployment>,
) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_ref(&rs.metadata) {
        if owner.kind == "Deployment" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .filter(|d| {
            selector_of(d)
                .ok()
                .flatten()
                .is_some_and(|s| s.matches(rs.labels()))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The Deployment above a deleted pod's ReplicaSet, if any.
fn deployment_for_pod(pod: &Pod, replicasets: &Store<ReplicaSet>) -> Option<ObjectRef<Deployment>> {
    let namespace = pod.namespace().unwrap_or_default();
    let owner = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    let deployment = controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    Some(ObjectRef::new(&deployment.name).within(&namespace))
}

/// The parsed selector; `None` for an empty one, which would select every
/// pod and is refused, as Kubernetes does.
fn selector_of(d: &Deployment) -> Result<Option<Selector>, ReconcileError> {
    let Some(spec) = d.spec.as_ref() else {
        return Ok(None);
    };
    crate::backoff::label_selector(&spec.selector).map_err(ReconcileError::InvalidSelector)
}

fn error_policy(d: Arc<Deployment>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = key_of(d.as_ref());
    let delay = ctx.backoff.failed(&key);
    tracing::warn!(deployment = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.replicasets
        .wait_until_ready()
        .await
        .map_err(ReconcileError::CacheGone)?;
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(ReconcileError::CacheGone)?;
    let key = key_of(d.as_ref());
    let result = match strategy::sync(&d, &ctx).await {
        Err(ReconcileError::Kube(e)) if replicasets::is_stale(&e) => {
            tracing::debug!(deployment = %key, error = %e, "stale cache; retrying");
            Ok(Action::requeue(STALE_RETRY))
        }
        other => other,
    };
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    result
}

/// Writes `status` through `/status` when it differs from the stored one.
async fn write_status(
    ctx: &Context,
    d: &Deployment,
    status: &DeploymentStatus,
) -> Result<(), ReconcileError> {
    let Some(patch) = status::patch_if_changed(d, status) else {
        return Ok(());
    };
    Api::<Deployment>::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default())
        .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}
