//! The service account controller: a `default` ServiceAccount in every active
//! namespace, as Kubernetes' `serviceaccount-controller`.
//!
//! Each namespace is reconciled when it changes and when its `default`
//! ServiceAccount changes or is deleted; if the namespace is `Active` and the
//! account is missing, it is created (with no token Secret, as since
//! Kubernetes 1.24). Terminating namespaces are left alone, so the namespace
//! controller can empty them. This module owns only the creation of that one
//! account; it never updates or deletes ServiceAccounts, and it does not
//! publish `kube-root-ca.crt` ConfigMaps.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::backoff::RetryBackoff;
use crate::Error;

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What every reconcile shares.
struct Context {
    client: Client,
    backoff: RetryBackoff,
}

/// Runs the controller until its watches end (they retry forever).
///
/// # Errors
/// None in practice; failed reconciles are retried with backoff.
pub async fn run(client: Client) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let only_default =
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}"));
    let ctx = Arc::new(Context {
        client,
        backoff: RetryBackoff::default(),
    });
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, only_default, |sa: ServiceAccount| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                Ok((ns, _)) => tracing::trace!(namespace = %ns.name, "service accounts reconciled"),
                // A namespace gone by the time its turn comes needs nothing.
                Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(error) => tracing::debug!(%error, "service account controller"),
            }
        })
        .await;
    Ok(())
}

/// Whether the namespace takes new content: `Active` and not being deleted.
fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|phase| phase == "Active")
}

/// Creates the namespace's `default` ServiceAccount if it is missing.
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    if is_active(&ns) {
        ensure_default_account(&ctx.client, &name).await?;
    }
    ctx.backoff.succeeded(&name);
    Ok(Action::await_change())
}

/// Creates `default` in `namespace` unless it exists.
async fn ensure_default_account(client: &Client, namespace: &str) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_some() {
        return Ok(());
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => {
            tracing::info!(%namespace, "created the default service account");
            Ok(())
        }
        // Created meanwhile (409), or the namespace is going away (403, 404).
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Retries a failed namespace with per-namespace exponential backoff.
fn error_policy(ns: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = ns.name_any();
    let delay = ctx.backoff.failed(&name);
    tracing::warn!(namespace = %name, %error, ?delay, "could not ensure the default service account");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ns(v: serde_json::Value) -> Namespace {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_active_namespaces_get_an_account() {
        assert!(is_active(&ns(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}})
        )));
        assert!(is_active(&ns(json!({"metadata": {"name": "a"}}))));
        assert!(!is_active(&ns(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}})
        )));
        assert!(!is_active(&ns(json!({"metadata": {"name": "a",
            "deletionTimestamp": "2024-01-01T00:00:00Z"}}))));
    }
}
