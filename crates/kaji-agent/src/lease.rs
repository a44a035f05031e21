//! Node heartbeats: each node's Lease `kube-node-lease/<node>`, held by the
//! node and owned by its Node object (so it goes when the Node goes), renewed
//! every `lease_renew`. One loop renews the leases of every node of the
//! process, a batch at a time, updating from the copy it last wrote so that
//! a renewal is one request.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::time::MissedTickBehavior;

use crate::context::NodeContext;

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How many renewals are in flight at once.
const CONCURRENCY: usize = 64;

/// Sets the fields a renewal owns on `lease`.
fn renewed(ctx: &NodeContext, mut lease: Lease) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(ctx.name.clone());
    spec.lease_duration_seconds = Some(ctx.timings.lease_duration_seconds);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    let uid = ctx
        .node_uid
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(uid) = uid {
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: ctx.name.clone(),
            uid,
            ..OwnerReference::default()
        };
        let refs = lease.metadata.owner_references.get_or_insert_with(Vec::new);
        if !refs.iter().any(|r| r.kind == "Node" && r.uid == owner.uid) {
            refs.retain(|r| r.kind != "Node");
            refs.push(owner);
        }
    }
    lease
}

/// Renews one node's Lease, creating it if needed; returns the Lease as
/// written, to renew from next time.
async fn renew(ctx: &NodeContext, cached: Option<Lease>) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), LEASE_NAMESPACE);
    let pp = PostParams::default();
    if let Some(lease) = cached {
        match api.replace(&ctx.name, &pp, &renewed(ctx, lease)).await {
            Ok(l) => return Some(l),
            // Someone else wrote it, or it is gone: read it afresh.
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => {}
            Err(error) => {
                tracing::warn!(node = %ctx.name, %error, "renewing the node lease failed");
                return None;
            }
        }
    }
    let result = match api.get_opt(&ctx.name).await {
        Ok(Some(existing)) => api.replace(&ctx.name, &pp, &renewed(ctx, existing)).await,
        Ok(None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(ctx.name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    ..ObjectMeta::default()
                },
                spec: None,
            };
            api.create(&pp, &renewed(ctx, lease)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(l) => Some(l),
        Err(error) => {
            tracing::warn!(node = %ctx.name, %error, "renewing the node lease failed");
            None
        }
    }
}

/// Renews every node's Lease each `lease_renew`, until dropped.
pub(crate) async fn run(nodes: Vec<Arc<NodeContext>>) {
    let Some(first) = nodes.first() else { return };
    let mut ticker = tokio::time::interval(first.timings.lease_renew);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut leases: HashMap<String, Lease> = HashMap::new();
    loop {
        ticker.tick().await;
        let renewals = nodes.iter().map(|ctx| {
            let cached = leases.remove(&ctx.name);
            async move { (ctx.name.clone(), renew(ctx, cached).await) }
        });
        let renewals: Vec<_> = renewals.collect();
        let done: Vec<(String, Option<Lease>)> = futures::stream::iter(renewals)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (name, lease) in done {
            if let Some(lease) = lease {
                leases.insert(name, lease);
            }
        }
    }
}
