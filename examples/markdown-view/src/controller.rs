//! The MarkdownView controller: the reconciler, its error policy, and the
//! kube-rs `Controller` that runs them.
//!
//! The reconciler is level-based and written top to bottom: it applies every
//! owned object as it should be (server-side apply, one field manager,
//! `force`) and then writes the status, whatever event woke it up. Applying
//! an unchanged object is a no-op on the server, so reconciling twice changes
//! nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::desired::{self, DesiredError, MANAGED_BY};
use crate::resource::MarkdownView;

/// The field manager of every apply this operator sends.
pub const FIELD_MANAGER: &str = "markdown-view";

/// How often a healthy `MarkdownView` is reconciled with no event at all.
pub const RESYNC: Duration = Duration::from_secs(300);

/// The first retry delay after a failed reconcile; doubled per failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// The longest retry delay after failed reconciles.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why a reconcile or the controller failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The owned objects could not be computed.
    #[error(transparent)]
    Desired(#[from] DesiredError),
    /// Applying an owned object failed.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// The kind applied.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// What the API server said.
        #[source]
        source: kube::Error,
    },
    /// Writing the `MarkdownView`'s status failed.
    #[error("writing the status of MarkdownView {name}: {source}")]
    Status {
        /// The `MarkdownView`'s name.
        name: String,
        /// What the API server said.
        #[source]
        source: kube::Error,
    },
    /// The API server does not serve `markdownviews.view.kaji.dev`.
    #[error("the MarkdownView CRD is not installed (markdown-view crd | kubectl apply -f -): {0}")]
    CrdNotInstalled(#[source] kube::Error),
}

/// What every reconcile shares.
pub struct Context {
    /// The client all requests go through.
    pub client: Client,
    /// Consecutive failures per `namespace/name`, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context over `client`.
    pub fn new(client: Client) -> Arc<Context> {
        Arc::new(Context {
            client,
            failures: Mutex::new(HashMap::new()),
        })
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn key(mv: &MarkdownView) -> String {
    format!("{}/{}", mv.namespace().unwrap_or_default(), mv.name_any())
}

/// Brings `mv`'s ConfigMap, Deployment and Service to what its spec says,
/// then its status to what the Deployment reports.
///
/// # Errors
/// Any apply or the status write failed; the error policy retries.
pub async fn reconcile(mv: Arc<MarkdownView>, ctx: Arc<Context>) -> Result<Action, Error> {
    if mv.meta().deletion_timestamp.is_some() {
        // The garbage collector removes what the view owns.
        return Ok(Action::await_change());
    }
    let owned = desired::owned(&mv)?;
    let namespace = mv.namespace().unwrap_or_default();
    apply(&ctx.client, &namespace, "ConfigMap", &owned.config_map).await?;
    let deployment = apply(&ctx.client, &namespace, "Deployment", &owned.deployment).await?;
    apply(&ctx.client, &namespace, "Service", &owned.service).await?;

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = desired::status(&mv, &deployment, &now);
    if mv.status.as_ref() != Some(&status) {
        let api: Api<MarkdownView> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = serde_json::json!({
            "apiVersion": MarkdownView::api_version(&()),
            "kind": MarkdownView::kind(&()),
            "metadata": {"name": mv.name_any()},
            "status": status,
        });
        api.patch_status(
            &mv.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| Error::Status {
            name: mv.name_any(),
            source,
        })?;
    }
    ctx.failures().remove(&key(&mv));
    Ok(Action::requeue(RESYNC))
}

/// Server-side applies `object` (which carries its name) and returns what
/// the server now holds.
async fn apply<K>(
    client: &Client,
    namespace: &str,
    kind: &'static str,
    object: &K,
) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply { kind, name, source })
}

/// Retries a failed reconcile after [`BACKOFF_BASE`], doubled for each
/// consecutive failure of the same object, at most [`BACKOFF_MAX`].
pub fn error_policy(mv: Arc<MarkdownView>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(key(&mv)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(failures);
    tracing::warn!(view = %key(&mv), %error, failures, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The retry delay after `failures` consecutive failures (1 or more).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Runs the controller until the process is asked to stop (SIGINT/SIGTERM)
/// or the returned future is dropped.
///
/// Watches every `MarkdownView`, and the ConfigMaps, Deployments and
/// Services labelled as managed by this operator: a change to any of them
/// reconciles the `MarkdownView` that controls it.
///
/// # Errors
/// The CRD is not installed.
pub async fn run(client: Client) -> Result<(), Error> {
    let views: Api<MarkdownView> = Api::all(client.clone());
    views
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(Error::CrdNotInstalled)?;
    let managed = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    Controller::new(views, watcher::Config::default())
        .owns(Api::<ConfigMap>::all(client.clone()), managed.clone())
        .owns(Api::<Deployment>::all(client.clone()), managed.clone())
        .owns(Api::<Service>::all(client.clone()), managed)
        .shutdown_on_signal()
        .run(reconcile, error_policy, Context::new(client))
        .for_each(|result| async move {
            match result {
                Ok((view, _)) => tracing::debug!(%view, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_should_double_from_the_base_up_to_the_cap() {
        assert_eq!(backoff(1), BACKOFF_BASE);
        assert_eq!(backoff(2), BACKOFF_BASE * 2);
        assert_eq!(backoff(3), BACKOFF_BASE * 4);
        assert_eq!(backoff(30), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        assert_eq!(backoff(0), BACKOFF_BASE);
    }
}
