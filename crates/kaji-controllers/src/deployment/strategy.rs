//! One level-triggered pass over a Deployment (Kubernetes' `syncDeployment`):
//! claim its ReplicaSets, then either only scale (paused, or a scaling
//! event) or take the next step of the RollingUpdate or Recreate rollout,
//! and write the status. Each pass makes at most one kind of change and
//! returns; the watch events it causes trigger the next pass.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use super::replicasets::{self, Creation};
use super::rollout::{self, desired, replicas, REVISION};
use super::status::{self, PROGRESSING};
use super::{selector_of, write_status, Context, ReconcileError};
use crate::replicaset::pods::controller_ref;

/// The ReplicaSets of one Deployment: the one for its current template (if
/// any) and the others, oldest first.
struct Split<'a> {
    new: Option<&'a ReplicaSet>,
    old: Vec<&'a ReplicaSet>,
}

impl<'a> Split<'a> {
    fn of(d: &Deployment, owned: &'a [std::sync::Arc<ReplicaSet>]) -> Self {
        let mut all: Vec<&ReplicaSet> = owned.iter().map(AsRef::as_ref).collect();
        all.sort_by(|a, b| rollout::by_creation(a, b));
        let template = d.spec.as_ref().map(|s| &s.template);
        let new = all.iter().copied().find(|rs| {
            match (rs.spec.as_ref().and_then(|s| s.template.as_ref()), template) {
                (Some(a), Some(b)) => super::hash::equal_ignoring_hash(a, b),
                _ => false,
            }
        });
        let old = all
            .into_iter()
            .filter(|rs| new.is_none_or(|n| n.uid() != rs.uid()))
            .collect();
        Split { new, old }
    }

    fn all(&self) -> Vec<&'a ReplicaSet> {
        let mut all = self.old.clone();
        all.extend(self.new);
        all
    }
}

/// One pass over `d`.
///
/// # Errors
/// A failed API call or a malformed spec.
pub async fn sync(d: &Deployment, ctx: &Context) -> Result<Action, ReconcileError> {
    let uid = d
        .uid()
        .ok_or(ReconcileError::MissingField("metadata.uid"))?;
    let Some(selector) = selector_of(d)? else {
        tracing::warn!(deployment = %d.name_any(), "empty selector selects nothing; skipping");
        return Ok(Action::await_change());
    };
    let owned = replicasets::claim(d, ctx, &uid, &selector).await?;
    let split = Split::of(d, &owned);
    let now = Timestamp::now();

    if d.metadata.deletion_timestamp.is_some() {
        let status = status::calculate(d, &split.all(), split.new, now)?;
        write_status(ctx, d, &status).await?;
        return Ok(Action::await_change());
    }
    if let Some(cond) = status::paused_condition(d, now) {
        let mut status = d.status.clone().unwrap_or_default();
        status::set(&mut status, cond);
        write_status(ctx, d, &status).await?;
        return Ok(Action::await_change());
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused || rollout::is_scaling_event(d, &split.all()) {
        return scale_only(d, ctx, &split, paused, now).await;
    }
    if rollout::is_recreate(d) {
        recreate(d, ctx, &split, now).await
    } else {
        rolling(d, ctx, &split, now).await
    }
}

/// Writes the status after a rollout step, and comes back for the
/// progress deadline if the rollout is still under way.
async fn finish(
    d: &Deployment,
    ctx: &Context,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    let (status, recheck) = status::rollout(d, all, new, now)?;
    write_status(ctx, d, &status).await?;
    Ok(recheck.map_or_else(Action::await_change, |left| {
        Action::requeue(left + Duration::from_millis(100))
    }))
}

/// Syncs an existing new ReplicaSet's revision and the Deployment's
/// revision annotation (`getNewReplicaSet` for an existing one). Returns
/// whether it wrote anything.
async fn sync_revision(
    d: &Deployment,
    ctx: &Context,
    split: &Split<'_>,
    now: Timestamp,
) -> Result<bool, ReconcileError> {
    let Some(new) = split.new else {
        return Ok(false);
    };
    let revision = replicasets::next_revision(&split.old);
    if replicasets::sync_revision(ctx, d, new, revision).await? {
        return Ok(true);
    }
    let mut wrote = set_deployment_revision(d, ctx, &rollout::revision(new).to_string()).await?;
    let mut status = d.status.clone().unwrap_or_default();
    let has_deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some();
    if has_deadline && status::get(&status, PROGRESSING).is_none() {
        let msg = format!("Found new replica set \"{}\"", new.name_any());
        status::set(
            &mut status,
            status::condition(PROGRESSING, "True", status::FOUND_NEW_RS, msg, now),
        );
        write_status(ctx, d, &status).await?;
        wrote = true;
    }
    Ok(wrote)
}

async fn set_deployment_revision(
    d: &Deployment,
    ctx: &Context,
    revision: &str,
) -> Result<bool, ReconcileError> {
    if d.annotations().get(REVISION).map(String::as_str) == Some(revision) {
        return Ok(false);
    }
    let patch = json!({"metadata": {
        "resourceVersion": d.resource_version(),
        "annotations": {REVISION: revision},
    }});
    Api::<Deployment>::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default())
        .patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(true)
}

/// Creates the ReplicaSet for the current template with `size` replicas
/// and records it in the Deployment (`getNewReplicaSet` creating one).
async fn create_new(
    d: &Deployment,
    ctx: &Context,
    split: &Split<'_>,
    size: i32,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    let revision = replicasets::next_revision(&split.old);
    let rs = replicasets::build_new(d, size, revision)?;
    match replicasets::create(ctx, d, &rs).await? {
        Creation::Created(created) => {
            tracing::debug!(deployment = %d.name_any(), replicaset = %created.name_any(), size, "created new replica set");
            let mut status = d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{}\"", created.name_any());
            status::set(
                &mut status,
                status::condition(PROGRESSING, "True", status::NEW_RS_CREATED, msg, now),
            );
            write_status(ctx, d, &status).await?;
            Ok(Action::await_change())
        }
        Creation::AlreadyOurs => Ok(Action::requeue(super::STALE_RETRY)),
        Creation::Collision => {
            let mut status = d.status.clone().unwrap_or_default();
            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
            write_status(ctx, d, &status).await?;
            Err(ReconcileError::HashCollision(rs.name_any()))
        }
    }
}

/// A RollingUpdate step (`rolloutRolling`): grow the new ReplicaSet within
/// the surge, else shrink old ones within the unavailability budget, else
/// prune history once complete.
async fn rolling(
    d: &Deployment,
    ctx: &Context,
    split: &Split<'_>,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    let Some(new) = split.new else {
        let size = rollout::new_rs_replicas(d, &split.old, None)?;
        return create_new(d, ctx, split, size, now).await;
    };
    if sync_revision(d, ctx, split, now).await? {
        return Ok(Action::await_change());
    }
    let all = split.all();
    let target = if replicas(new) >= desired(d) {
        desired(d)
    } else {
        rollout::new_rs_replicas(d, &all, Some(new))?
    };
    if target != replicas(new) {
        replicasets::scale(ctx, d, new, target).await?;
        return finish(d, ctx, &all, Some(new), now).await;
    }
    let plan = rollout::old_scale_down(d, Some(new), &split.old)?;
    if apply(d, ctx, &split.old, &plan).await? {
        return finish(d, ctx, &all, Some(new), now).await;
    }
    if status::is_complete(d, &d.status.clone().unwrap_or_default()) {
        replicasets::prune(ctx, d, &split.old).await?;
    }
    finish(d, ctx, &all, Some(new), now).await
}

/// A Recreate step (`rolloutRecreate`): scale every old ReplicaSet to 0,
/// wait until none of their pods runs, then bring the new one up.
async fn recreate(
    d: &Deployment,
    ctx: &Context,
    split: &Split<'_>,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    if sync_revision(d, ctx, split, now).await? {
        return Ok(Action::await_change());
    }
    let all = split.all();
    let plan: rollout::Plan = split
        .old
        .iter()
        .filter(|rs| replicas(rs) > 0)
        .map(|rs| (rs.name_any(), 0))
        .collect();
    if apply(d, ctx, &split.old, &plan).await? || old_pods_running(ctx, &split.old) {
        return finish(d, ctx, &all, split.new, now).await;
    }
    let Some(new) = split.new else {
        return create_new(d, ctx, split, desired(d), now).await;
    };
    if replicasets::scale(ctx, d, new, desired(d)).await? {
        return finish(d, ctx, &all, Some(new), now).await;
    }
    if status::is_complete(d, &d.status.clone().unwrap_or_default()) {
        replicasets::prune(ctx, d, &split.old).await?;
    }
    finish(d, ctx, &all, Some(new), now).await
}

/// Whether any pod of an old ReplicaSet may still run (`oldPodsRunning`):
/// their status still counts replicas, or a pod they control has not
/// finished. Terminating pods count: they may still be running.
fn old_pods_running(ctx: &Context, old: &[&ReplicaSet]) -> bool {
    if old
        .iter()
        .any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0))
    {
        return true;
    }
    let uids: Vec<String> = old.iter().filter_map(|rs| rs.uid()).collect();
    ctx.pods.state().iter().any(|pod| {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Succeeded" | "Failed"))
            && controller_ref(&pod.metadata).is_some_and(|r| uids.contains(&r.uid))
    })
}

/// Applies a scale plan to the named ReplicaSets; returns whether any changed.
async fn apply(
    d: &Deployment,
    ctx: &Context,
    rss: &[&ReplicaSet],
    plan: &rollout::Plan,
) -> Result<bool, ReconcileError> {
    let mut changed = false;
    for (name, size) in plan {
        if let Some(rs) = rss.iter().find(|rs| &rs.name_any() == name) {
            changed |= replicasets::scale(ctx, d, rs, *size).await?;
        }
    }
    Ok(changed)
}

/// Scaling without rolling out (`sync`): paused, or `spec.replicas`
/// changed. One active ReplicaSet takes all replicas; a saturated new one
/// leaves the old at 0; otherwise the change is spread in proportion.
async fn scale_only(
    d: &Deployment,
    ctx: &Context,
    split: &Split<'_>,
    paused: bool,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    if split.new.is_some() && sync_revision(d, ctx, split, now).await? {
        return Ok(Action::await_change());
    }
    let all = split.all();
    let changed = if let Some(rs) = rollout::active_or_latest(split.new, &split.old) {
        replicasets::scale(ctx, d, rs, desired(d)).await?
    } else if rollout::is_saturated(d, split.new) {
        let plan: rollout::Plan = split
            .old
            .iter()
            .filter(|rs| replicas(rs) > 0)
            .map(|rs| (rs.name_any(), 0))
            .collect();
        apply(d, ctx, &split.old, &plan).await?
    } else if rollout::is_recreate(d) {
        false
    } else {
        let active: Vec<&ReplicaSet> = all.iter().copied().filter(|rs| replicas(rs) > 0).collect();
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let plan = rollout::proportional(d, &active, status_replicas)?;
        apply(d, ctx, &active, &plan).await?
    };
    if !changed && paused {
        replicasets::prune(ctx, d, &split.old).await?;
    }
    let status = status::calculate(d, &all, split.new, now)?;
    write_status(ctx, d, &status).await?;
    Ok(Action::await_change())
}
