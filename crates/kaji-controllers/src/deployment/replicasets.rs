//! The writes the Deployment controller makes to ReplicaSets: claiming
//! (adopt matching orphans, release ones that stopped matching), building
//! and creating the new ReplicaSet, scaling with the replica annotations,
//! syncing revisions, and pruning history.
//!
//! Every update of an existing ReplicaSet is a JSON patch that first tests
//! its uid and resourceVersion, so a decision taken on a stale cache fails
//! ([`is_stale`]) instead of landing.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::core::{Selector, SelectorExt};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use super::hash::{self, POD_TEMPLATE_HASH};
use super::rollout::{self, DESIRED_REPLICAS, MAX_REPLICAS, REVISION, REVISION_HISTORY};
use super::{Context, ReconcileError};
use crate::replicaset::pods::controller_ref;

/// Deployment annotations that are not copied onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Whether an API error means the object changed or vanished since the
/// cache saw it: the watch event that follows triggers a fresh pass.
pub fn is_stale(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if matches!(status.code, 404 | 409 | 422))
}

fn api(ctx: &Context, namespace: &str) -> Api<ReplicaSet> {
    Api::namespaced(ctx.client.clone(), namespace)
}

/// The controller reference a Deployment puts on its ReplicaSets.
fn owner_reference(d: &Deployment) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: Deployment::api_version(&()).into_owned(),
        kind: Deployment::kind(&()).into_owned(),
        name: d.metadata.name.clone()?,
        uid: d.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Applies JSON patch `ops` to `rs` if it is still the version the cache holds.
async fn patch_tested(
    ctx: &Context,
    rs: &ReplicaSet,
    mut ops: Vec<Value>,
) -> Result<(), ReconcileError> {
    let mut all = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": rs.uid()}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": rs.resource_version()}),
    ];
    all.append(&mut ops);
    let patch = Patch::Json::<()>(
        serde_json::from_value(Value::Array(all)).map_err(ReconcileError::Encode)?,
    );
    api(ctx, &rs.namespace().unwrap_or_default())
        .patch(&rs.name_any(), &PatchParams::default(), &patch)
        .await?;
    Ok(())
}

/// The ReplicaSets of the Deployment's namespace that it controls and that
/// still match its selector, after adopting matching orphans and releasing
/// owned ones that stopped matching (`ClaimReplicaSets`).
///
/// # Errors
/// A failed adoption or release (stale ones are skipped, not errors).
pub async fn claim(
    d: &Deployment,
    ctx: &Context,
    uid: &str,
    selector: &Selector,
) -> Result<Vec<Arc<ReplicaSet>>, ReconcileError> {
    let namespace = d.namespace().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    let mut orphans = Vec::new();
    for rs in ctx
        .replicasets
        .state_filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
    {
        let matches = selector.matches(rs.labels());
        match controller_ref(&rs.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    owned.push(rs);
                } else if !deleting {
                    let refs: Vec<OwnerReference> = rs
                        .owner_references()
                        .iter()
                        .filter(|r| r.uid != uid)
                        .cloned()
                        .collect();
                    let result = patch_tested(ctx, &rs, vec![owner_refs_op(&refs)]).await;
                    ignore_stale(result)?;
                }
            }
            Some(_) => {}
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                orphans.push(rs)
            }
            None => {}
        }
    }
    if orphans.is_empty() {
        return Ok(owned);
    }
    // Adopt only if a fresh read shows this very Deployment, not being deleted.
    let fresh = Api::<Deployment>::namespaced(ctx.client.clone(), &namespace)
        .get(&d.name_any())
        .await?;
    if fresh.uid().as_deref() != Some(uid) || fresh.metadata.deletion_timestamp.is_some() {
        return Ok(owned);
    }
    let owner = owner_reference(d).ok_or(ReconcileError::MissingField("metadata.uid"))?;
    for rs in orphans {
        let mut refs = rs.owner_references().to_vec();
        refs.push(owner.clone());
        match patch_tested(ctx, &rs, vec![owner_refs_op(&refs)]).await {
            Ok(()) => {
                tracing::debug!(replicaset = %rs.name_any(), "adopted");
                owned.push(rs);
            }
            Err(ReconcileError::Kube(e)) if is_stale(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(owned)
}

fn owner_refs_op(refs: &[OwnerReference]) -> Value {
    if refs.is_empty() {
        json!({"op": "remove", "path": "/metadata/ownerReferences"})
    } else {
        json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs})
    }
}

fn ignore_stale(result: Result<(), ReconcileError>) -> Result<(), ReconcileError> {
    match result {
        Err(ReconcileError::Kube(e)) if is_stale(&e) => Ok(()),
        other => other,
    }
}

/// The Deployment's annotations that its ReplicaSets carry too.
fn copied_annotations(d: &Deployment) -> impl Iterator<Item = (&String, &String)> {
    d.annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
}

fn replica_annotations(d: &Deployment) -> Result<[(String, String); 2], ReconcileError> {
    let (surge, _) = rollout::fenceposts(d)?;
    let desired = rollout::desired(d);
    Ok([
        (DESIRED_REPLICAS.to_string(), desired.to_string()),
        (MAX_REPLICAS.to_string(), (desired + surge).to_string()),
    ])
}

/// The revision the new ReplicaSet must carry: one past every old one.
pub fn next_revision(old: &[&ReplicaSet]) -> i64 {
    old.iter()
        .map(|rs| rollout::revision(rs))
        .max()
        .unwrap_or(0)
        + 1
}

/// The ReplicaSet for the Deployment's current template, named and
/// labelled by its hash, with `replicas` and the revision annotations.
///
/// # Errors
/// A Deployment without spec or uid, or a malformed surge.
pub fn build_new(
    d: &Deployment,
    replicas: i32,
    revision: i64,
) -> Result<ReplicaSet, ReconcileError> {
    let spec = d
        .spec
        .as_ref()
        .ok_or(ReconcileError::MissingField("spec"))?;
    let collisions = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = hash::compute(&spec.template, collisions);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let labels = meta.labels.clone();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut annotations: BTreeMap<String, String> = copied_annotations(d)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.extend(replica_annotations(d)?);
    Ok(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![
                owner_reference(d).ok_or(ReconcileError::MissingField("metadata.uid"))?
            ]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    })
}

/// What creating the new ReplicaSet came to.
pub enum Creation {
    /// It was created.
    Created(ReplicaSet),
    /// It already exists and is ours: the cache lags.
    AlreadyOurs,
    /// Another template or owner holds the name: bump `collisionCount`.
    Collision,
}

/// Creates the new ReplicaSet, telling a lagging cache from a hash collision.
///
/// # Errors
/// A failed create or read.
pub async fn create(
    ctx: &Context,
    d: &Deployment,
    rs: &ReplicaSet,
) -> Result<Creation, ReconcileError> {
    let api = api(ctx, &d.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), rs).await {
        Ok(created) => Ok(Creation::Created(created)),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get(&rs.name_any()).await?;
            let ours =
                controller_ref(&existing.metadata).map(|r| r.uid.as_str()) == d.uid().as_deref();
            let same = match (
                existing.spec.as_ref().and_then(|s| s.template.as_ref()),
                d.spec.as_ref(),
            ) {
                (Some(t), Some(spec)) => hash::equal_ignoring_hash(t, &spec.template),
                _ => false,
            };
            Ok(if ours && same {
                Creation::AlreadyOurs
            } else {
                Creation::Collision
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets `spec.replicas` and the replica annotations (`scaleReplicaSet`).
/// Returns whether anything had to change.
///
/// # Errors
/// A failed patch, stale ones included.
pub async fn scale(
    ctx: &Context,
    d: &Deployment,
    rs: &ReplicaSet,
    size: i32,
) -> Result<bool, ReconcileError> {
    let mut annotations = rs.annotations().clone();
    let wanted = replica_annotations(d)?;
    let annotations_change = wanted.iter().any(|(k, v)| annotations.get(k) != Some(v));
    if rollout::replicas(rs) == size && !annotations_change {
        return Ok(false);
    }
    annotations.extend(wanted);
    patch_tested(
        ctx,
        rs,
        vec![
            json!({"op": "add", "path": "/metadata/annotations", "value": annotations}),
            json!({"op": "add", "path": "/spec/replicas", "value": size}),
        ],
    )
    .await?;
    let from = rollout::replicas(rs);
    tracing::debug!(replicaset = %rs.name_any(), from, to = size, "scaled");
    if from != size {
        // Kubernetes' ScalingReplicaSet event, recorded on the Deployment.
        let direction = if size > from { "up" } else { "down" };
        let message = format!(
            "Scaled {direction} replica set {} from {from} to {size}",
            rs.name_any()
        );
        let recorder = ctx.events.clone();
        let regarding = crate::events::object_reference(d, &());
        tokio::spawn(async move {
            recorder
                .record(
                    &regarding,
                    crate::events::EventType::Normal,
                    "ScalingReplicaSet",
                    &message,
                )
                .await
        });
    }
    Ok(true)
}

/// Brings an existing new ReplicaSet's revision (bumping a reused one past
/// the old ones, remembering its past revisions), copied annotations and
/// `minReadySeconds` up to date. Returns whether it had to change.
///
/// # Errors
/// A failed patch, stale ones included.
pub async fn sync_revision(
    ctx: &Context,
    d: &Deployment,
    rs: &ReplicaSet,
    revision: i64,
) -> Result<bool, ReconcileError> {
    let mut annotations = rs.annotations().clone();
    for (k, v) in copied_annotations(d) {
        annotations.insert(k.clone(), v.clone());
    }
    let current = rollout::revision(rs);
    if current < revision {
        annotations.insert(REVISION.into(), revision.to_string());
        if current > 0 {
            let history = match rs.annotations().get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{current}"),
                _ => current.to_string(),
            };
            annotations.insert(REVISION_HISTORY.into(), history);
        }
    }
    let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
    let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
    let min_ready_change = min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0);
    if &annotations == rs.annotations() && !min_ready_change {
        return Ok(false);
    }
    let mut ops = vec![json!({"op": "add", "path": "/metadata/annotations", "value": annotations})];
    if min_ready_change {
        ops.push(
            json!({"op": "add", "path": "/spec/minReadySeconds", "value": min_ready.unwrap_or(0)}),
        );
    }
    patch_tested(ctx, rs, ops).await?;
    Ok(true)
}

/// Deletes the ReplicaSets beyond `revisionHistoryLimit`.
///
/// # Errors
/// A failed delete other than not-found.
pub async fn prune(
    ctx: &Context,
    d: &Deployment,
    old: &[&ReplicaSet],
) -> Result<(), ReconcileError> {
    for rs in rollout::history_to_prune(d, old) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: rs.uid(),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api(ctx, &rs.namespace().unwrap_or_default())
            .delete(&rs.name_any(), &params)
            .await
        {
            Ok(_) => tracing::debug!(replicaset = %rs.name_any(), "pruned old revision"),
            Err(e) if is_stale(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
