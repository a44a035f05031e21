//! One reconcile of one object uid: collect it if its owners are gone, or
//! carry out its own foreground or orphan deletion.
//!
//! Decisions start from the cached graph but every destructive step is
//! confirmed with a live read: an owner counts as absent only when a GET by
//! name is 404 or returns a different uid.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::ApiResource;
use serde_json::json;

use super::graph::{Node, FOREGROUND, ORPHAN};
use super::Ctx;
use crate::Error;

/// How soon an owner waiting for its dependents is looked at again, in case
/// an event was missed.
const WAITING_RECHECK: Duration = Duration::from_secs(5);

/// What a live read says about one owner.
enum OwnerState {
    /// Not found, or found with another uid.
    Absent,
    /// Present and being deleted in the foreground.
    Waiting,
    /// Present and not in foreground deletion.
    Solid,
}

/// Reconciles the object with `uid`; `Ok(Some(d))` asks to look again after `d`.
///
/// # Errors
/// API failures and owner kinds that discovery does not know; the caller
/// retries with backoff.
pub(super) async fn reconcile(ctx: &Ctx, uid: &str) -> Result<Option<Duration>, Error> {
    let Some(node) = ctx.graph().get(uid).cloned() else {
        return Ok(None);
    };
    if node.deleting {
        if node.has_finalizer(ORPHAN) {
            orphan_dependents(ctx, &node).await?;
            return Ok(None);
        }
        if node.has_finalizer(FOREGROUND) {
            return delete_dependents(ctx, &node).await;
        }
        return Ok(None);
    }
    if node.owners.is_empty() || !worth_a_live_look(ctx, &node) {
        return Ok(None);
    }
    collect_if_dangling(ctx, &node).await?;
    Ok(None)
}

/// False when the cache shows every owner present and not in foreground
/// deletion: nothing to do, and no API call needed. A stale cache is caught
/// later: the owner's removal from the graph queues this object again.
fn worth_a_live_look(ctx: &Ctx, node: &Node) -> bool {
    let graph = ctx.graph();
    node.owners.iter().any(|o| {
        graph
            .get(&o.uid)
            .is_none_or(|owner| owner.foreground_deleting())
    })
}

/// Deletes `node` if no owner is solid; otherwise strips the references to
/// absent and foreground-deleting owners.
async fn collect_if_dangling(ctx: &Ctx, node: &Node) -> Result<(), Error> {
    let mut solid = false;
    let mut waiting = false;
    let mut stale: Vec<String> = Vec::new();
    for owner in &node.owners {
        match owner_state(ctx, node, owner).await? {
            OwnerState::Solid => solid = true,
            OwnerState::Waiting => {
                waiting = true;
                stale.push(owner.uid.clone());
            }
            OwnerState::Absent => stale.push(owner.uid.clone()),
        }
    }
    if solid {
        if !stale.is_empty() {
            strip_owner_refs(ctx, node, &stale).await?;
        }
        return Ok(());
    }
    let policy = if waiting {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    tracing::info!(
        kind = %node.resource.kind, namespace = ?node.namespace, name = %node.name,
        ?policy, "garbage collector deleting an object whose owners are gone"
    );
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(node.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api_for(ctx, &node.resource, node.namespace.as_deref())
        .delete(&node.name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads one owner live.
async fn owner_state(ctx: &Ctx, node: &Node, owner: &OwnerReference) -> Result<OwnerState, Error> {
    let served = ctx
        .resolve(&owner.api_version, &owner.kind)
        .ok_or_else(|| {
            Error::Discovery(format!(
                "owner kind {}/{} is not served",
                owner.api_version, owner.kind
            ))
        })?;
    let namespace = if served.namespaced {
        match node.namespace.as_deref() {
            Some(ns) => Some(ns),
            // A cluster-scoped dependent cannot have a namespaced owner.
            None => return Ok(OwnerState::Absent),
        }
    } else {
        None
    };
    let found = api_for(ctx, &served.resource, namespace)
        .get_opt(&owner.name)
        .await?;
    Ok(match found {
        Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
            let deleting = o.metadata.deletion_timestamp.is_some();
            let foreground = o
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == FOREGROUND);
            if deleting && foreground {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            }
        }
        _ => OwnerState::Absent,
    })
}

/// Foreground deletion: queue the dependents (whose reconcile deletes them
/// or drops their reference), and once none is left remove the finalizer.
async fn delete_dependents(ctx: &Ctx, owner: &Node) -> Result<Option<Duration>, Error> {
    let dependents = ctx.graph().dependents(&owner.uid);
    if dependents.is_empty() {
        remove_finalizer(ctx, owner, FOREGROUND).await?;
        return Ok(None);
    }
    ctx.enqueue(dependents.into_iter().map(|d| d.uid).collect());
    Ok(Some(WAITING_RECHECK))
}

/// Orphan deletion: drop the reference to `owner` from every dependent,
/// then remove the finalizer.
async fn orphan_dependents(ctx: &Ctx, owner: &Node) -> Result<(), Error> {
    let dependents = ctx.graph().dependents(&owner.uid);
    for dependent in dependents {
        strip_owner_refs(ctx, &dependent, std::slice::from_ref(&owner.uid)).await?;
    }
    remove_finalizer(ctx, owner, ORPHAN).await
}

/// Removes the ownerReferences with the given uids from the live object,
/// pinned to the resourceVersion read (a race is a 409 and a retry).
async fn strip_owner_refs(ctx: &Ctx, node: &Node, owner_uids: &[String]) -> Result<(), Error> {
    let api = api_for(ctx, &node.resource, node.namespace.as_deref());
    let Some(live) = api.get_opt(&node.name).await? else {
        return Ok(());
    };
    if live.metadata.uid.as_deref() != Some(node.uid.as_str()) {
        return Ok(());
    }
    let refs = live.metadata.owner_references.unwrap_or_default();
    let kept: Vec<&OwnerReference> = refs
        .iter()
        .filter(|r| !owner_uids.contains(&r.uid))
        .collect();
    if kept.len() == refs.len() {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "resourceVersion": live.metadata.resource_version,
        "ownerReferences": kept,
    }});
    api.patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Removes `finalizer` from the live object, pinned to the resourceVersion read.
async fn remove_finalizer(ctx: &Ctx, node: &Node, finalizer: &str) -> Result<(), Error> {
    let api = api_for(ctx, &node.resource, node.namespace.as_deref());
    let Some(live) = api.get_opt(&node.name).await? else {
        return Ok(());
    };
    if live.metadata.uid.as_deref() != Some(node.uid.as_str()) {
        return Ok(());
    }
    let finalizers = live.metadata.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {
        "resourceVersion": live.metadata.resource_version,
        "finalizers": kept,
    }});
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn api_for(ctx: &Ctx, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, resource),
        None => Api::all_with(ctx.client.clone(), resource),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}
