//! The EndpointSlice and Endpoints controllers: for every Service with a
//! selector, keep `discovery.k8s.io/v1` EndpointSlices and the legacy
//! `v1/Endpoints` object listing the selected pods' addresses, readiness
//! and resolved ports.
//!
//! It owns the slices labelled `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io` and the Endpoints object named after
//! each selecting Service; it never writes Services or pods, and leaves
//! services without a selector (and their hand-made Endpoints) alone.
//! Slices carry a controller owner reference to their Service, so the
//! garbage collector removes them with it; the Endpoints object has none
//! (as in Kubernetes) and is deleted here when its Service goes.
//!
//! Wiring: reflectors over Services and pods feed the stores and the
//! trigger queue of kube-rs' [`applier`] (one reconcile per Service at a
//! time). A pod event wakes the services whose selector matches the pod
//! now *or before the event* (read from the store before it applies the
//! event), so a pod whose labels stop matching is removed. A watch on the
//! managed slices wakes their service, so slices edited or deleted by
//! someone else are repaired.
//!
//! The logic lives in pure modules: [`desired`] (pods to endpoints and
//! ports), [`slices`] (the slice create/update/delete plan) and [`legacy`]
//! (Endpoints subsets).

pub mod desired;
pub mod legacy;
pub mod slices;

use crate::backoff::key_of;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{applier, WatchStreamExt};
use kube::{Resource, ResourceExt};

use self::slices::{
    CONTROLLER_NAME, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL,
};

/// Why one reconcile of a Service failed; the error policy retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed (a conflict means the cache or listing was stale).
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The Service lacks a field the controller needs.
    #[error("object is missing {0}")]
    MissingField(&'static str),
    /// The pod reflector stopped, so the pod cache will never be ready.
    #[error("pod cache writer dropped")]
    CacheGone(#[source] reflector::store::WriterDropped),
}

/// Shared state of the controller.
struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    backoff: crate::backoff::RetryBackoff,
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config).default_backoff()
}

fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={CONTROLLER_NAME}")
}

/// Runs the controller until its watches end (they retry forever).
///
/// # Errors
/// None in practice; failed reconciles are retried with backoff.
pub async fn run(client: kube::Client) -> Result<(), crate::Error> {
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods: pod_store.clone(),
        backoff: crate::backoff::RetryBackoff::default(),
    });
    let (deleted_tx, deleted_rx) = mpsc::unbounded::<ObjectRef<Service>>();
    let (retrigger_tx, retrigger_rx) = mpsc::unbounded::<ObjectRef<Service>>();

    let svc_triggers = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .reflect(svc_writer)
    .map_ok(move |event| {
        if let Event::Delete(svc) = &event {
            // Only fails once the cleanup task is gone, i.e. on shutdown.
            let _ = deleted_tx.unbounded_send(ObjectRef::from_obj(svc));
        }
        event
    })
    .applied_objects()
    .map_ok(|svc| ObjectRef::from_obj(&svc));

    let services = svc_store.clone();
    let before = pod_store.clone();
    let pod_triggers = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .map_ok(move |event| {
            let wake = services_for_pod_event(&event, &before, &services);
            pod_writer.apply_watcher_event(&event);
            futures::stream::iter(wake.into_iter().map(Ok))
        })
        .try_flatten();

    let slice_triggers = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&managed_selector()),
    )
    .touched_objects()
    .try_filter_map(|slice| async move {
        Ok(slice.labels().get(SERVICE_NAME_LABEL).map(|name| {
            ObjectRef::<Service>::new(name).within(&slice.namespace().unwrap_or_default())
        }))
    });

    let triggers = futures::stream::select_all([
        svc_triggers.boxed(),
        pod_triggers.boxed(),
        slice_triggers.boxed(),
        retrigger_rx.map(Ok).boxed(),
    ]);
    let controller = applier(
        |svc, ctx| Box::pin(reconcile(svc, ctx)),
        error_policy,
        ctx,
        svc_store.clone(),
        triggers,
        ControllerConfig::default(),
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "endpoints controller");
        }
    });
    let cleanup = delete_orphaned_endpoints(client, svc_store, deleted_rx, retrigger_tx);
    futures::future::join(controller, cleanup).await;
    Ok(())
}

/// The services a pod event concerns: in the pod's namespace, those whose
/// selector matches the pod as it is now or as the store held it before
/// the event. After a relist, every service (deletions may have been missed).
fn services_for_pod_event(
    event: &Event<Pod>,
    pods: &Store<Pod>,
    services: &Store<Service>,
) -> Vec<ObjectRef<Service>> {
    let (pod, previous) = match event {
        Event::Apply(pod) | Event::InitApply(pod) => (pod, pods.get(&ObjectRef::from_obj(pod))),
        Event::Delete(pod) => (pod, None),
        Event::InitDone => {
            return services
                .state()
                .iter()
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        }
        Event::Init => return Vec::new(),
    };
    let namespace = pod.metadata.namespace.as_deref();
    services
        .state()
        .iter()
        .filter(|svc| svc.metadata.namespace.as_deref() == namespace)
        .filter(|svc| {
            desired::selector(svc).is_some_and(|sel| {
                desired::selects(sel, pod)
                    || previous
                        .as_deref()
                        .is_some_and(|p| desired::selects(sel, p))
            })
        })
        .map(|svc| ObjectRef::from_obj(svc.as_ref()))
        .collect()
}

/// Deletes the Endpoints object of each deleted Service (Endpoints carry
/// no owner reference), unless a Service of that name exists again; if one
/// reappeared meanwhile, wakes it so it rebuilds its Endpoints.
async fn delete_orphaned_endpoints(
    client: kube::Client,
    services: Store<Service>,
    mut deleted: mpsc::UnboundedReceiver<ObjectRef<Service>>,
    retrigger: mpsc::UnboundedSender<ObjectRef<Service>>,
) {
    while let Some(svc) = deleted.next().await {
        if services.get(&svc).is_some() {
            continue;
        }
        let api = Api::<Endpoints>::namespaced(
            client.clone(),
            svc.namespace.as_deref().unwrap_or_default(),
        );
        match api.delete(&svc.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => tracing::warn!(service = %svc, %error, "deleting Endpoints failed"),
        }
        if services.get(&svc).is_some() {
            let _ = retrigger.unbounded_send(svc);
        }
    }
}

fn error_policy(svc: Arc<Service>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = key_of(svc.as_ref());
    let delay = ctx.backoff.failed(&key);
    tracing::warn!(service = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(ReconcileError::CacheGone)?;
    let key = key_of(svc.as_ref());
    let result = sync(&svc, &ctx).await;
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    result.map(|()| Action::await_change())
}

/// One level-triggered pass over a Service: its slices, then its Endpoints.
async fn sync(svc: &Service, ctx: &Context) -> Result<(), ReconcileError> {
    if desired::selector(svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let namespace = svc
        .namespace()
        .ok_or(ReconcileError::MissingField("metadata.namespace"))?;
    let pods = ctx
        .pods
        .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()));
    let slices_result = sync_slices(svc, ctx, &namespace, &pods).await;
    let endpoints_result = sync_endpoints(svc, ctx, &namespace, &pods).await;
    slices_result.and(endpoints_result)
}

/// Lists the service's managed slices from the API (never a cache, so a
/// slice created by the previous pass is always seen) and applies the plan:
/// creates, then in-place updates, then deletions.
async fn sync_slices(
    svc: &Service,
    ctx: &Context,
    namespace: &str,
    pods: &[Arc<Pod>],
) -> Result<(), ReconcileError> {
    let owner = slices::owner_reference(svc).ok_or(ReconcileError::MissingField("metadata.uid"))?;
    let api = Api::<EndpointSlice>::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{SERVICE_NAME_LABEL}={},{}", owner.name, managed_selector());
    let existing = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let plan = slices::plan(
        svc,
        &owner,
        existing,
        desired::slice_groups(svc, pods),
        MAX_ENDPOINTS_PER_SLICE,
    );
    if plan.is_empty() {
        return Ok(());
    }
    let key = key_of(svc);
    tracing::debug!(
        service = %key,
        create = plan.create.len(),
        update = plan.update.len(),
        delete = plan.delete.len(),
        "writing EndpointSlices"
    );
    let post = PostParams::default();
    for slice in &plan.create {
        api.create(&post, slice).await?;
    }
    for slice in &plan.update {
        api.replace(&slice.name_any(), &post, slice).await?;
    }
    for slice in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&slice.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates or rewrites the Endpoints object named after the service when
/// its subsets or labels differ from the desired ones.
async fn sync_endpoints(
    svc: &Service,
    ctx: &Context,
    namespace: &str,
    pods: &[Arc<Pod>],
) -> Result<(), ReconcileError> {
    let name = svc.name_any();
    let api = Api::<Endpoints>::namespaced(ctx.client.clone(), namespace);
    let subsets = legacy::subsets(svc, pods);
    let current = api.get_opt(&name).await?;
    if current
        .as_ref()
        .is_some_and(|c| legacy::up_to_date(c, svc, &subsets))
    {
        return Ok(());
    }
    let labels = Some(legacy::endpoints_labels(svc));
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let post = PostParams::default();
    match current {
        None => {
            let endpoints = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(namespace.to_string()),
                    labels,
                    ..ObjectMeta::default()
                },
                subsets,
            };
            // A concurrent creation fails with a conflict; the retry updates it.
            api.create(&post, &endpoints).await?;
        }
        Some(mut endpoints) => {
            endpoints.metadata.labels = labels;
            endpoints.subsets = subsets;
            api.replace(&name, &post, &endpoints).await?;
        }
    }
    Ok(())
}
