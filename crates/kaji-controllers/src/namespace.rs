//! The namespace lifecycle controller: empties a terminating namespace, then finalizes it.
//!
//! When a Namespace is deleted the API server only marks it (`deletionTimestamp`,
//! `status.phase: Terminating`) while `spec.finalizers` holds [`FINALIZER`]. This
//! controller, like Kubernetes' namespace controller, discovers every namespaced
//! resource that supports `list` and `deletecollection` (custom resources
//! included, since they come from discovery), deletes all their objects in the
//! namespace, and reports what is left in the namespace's status conditions
//! (`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`, ...). Once nothing
//! is left it removes [`FINALIZER`] through the `finalize` subresource, and the API
//! server deletes the namespace.
//!
//! It owns only that finalizer and those conditions; it never touches other
//! finalizers, neither the namespace's nor those of its content.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::discovery::{verbs, ApiCapabilities, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

use crate::Error;

/// The `spec.finalizers` entry this controller owns and removes once the
/// namespace is empty.
pub const FINALIZER: &str = "kubernetes";

/// How long to wait before checking a terminating namespace again while some of
/// its content lingers (objects held by finalizers, pods shutting down).
pub const RECHECK_AFTER: Duration = Duration::from_secs(3);

/// The delay after a namespace's first failed reconcile; it doubles with every
/// consecutive failure of the same namespace.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The largest delay after a failed reconcile.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Runs the namespace controller until its watch stream ends.
///
/// # Errors
/// None today: failed reconciles are retried with backoff and logged, never
/// fatal. The signature leaves room for fatal startup errors.
pub async fn run(client: Client) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Context {
        client,
        failures: Mutex::new(HashMap::new()),
    });
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                Ok((obj, action)) => tracing::debug!(namespace = %obj.name, ?action, "reconciled"),
                // A namespace that is gone by the time its turn comes is the goal, not a failure.
                Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                    tracing::debug!(namespace = %obj.name, "namespace already gone")
                }
                Err(e) => tracing::warn!(error = %e, "namespace reconcile failed"),
            }
        })
        .await;
    Ok(())
}

/// What every reconcile shares.
struct Context {
    client: Client,
    /// Consecutive failures per namespace name, for the error policy's backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A poisoned map only loses backoff counts; keep going.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reconciles one namespace, keyed by name; resets its backoff on success.
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let action = reconcile_namespace(&name, &ctx.client).await?;
    ctx.failures().remove(&name);
    Ok(action)
}

/// Requeues a failed namespace after an exponential backoff.
fn error_policy(ns: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let mut failures = ctx.failures();
    let count = failures.entry(name.clone()).or_insert(0);
    let delay = backoff(*count);
    *count = count.saturating_add(1);
    tracing::warn!(namespace = %name, %error, ?delay, "namespace deletion failed; retrying");
    Action::requeue(delay)
}

/// The delay after `failures` earlier consecutive failures.
fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(BACKOFF_MAX)
}

/// The level-triggered body: reads the namespace afresh, so running it twice,
/// or on a stale cache entry, is harmless.
async fn reconcile_namespace(name: &str, client: &Client) -> Result<Action, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Some(ns) = namespaces.get_opt(name).await? else {
        return Ok(Action::await_change());
    };
    if ns.metadata.deletion_timestamp.is_none() || !has_finalizer(&ns) {
        return Ok(Action::await_change());
    }

    let resources = match discover_deletable(client).await {
        Ok(resources) => resources,
        Err(e) => {
            let report = Report {
                discovery_failure: Some(e.to_string()),
                ..Report::default()
            };
            update_conditions(&namespaces, &ns, &report).await?;
            return Err(e);
        }
    };
    let (report, first_error) = delete_content(client, name, &resources).await;
    let ns = update_conditions(&namespaces, &ns, &report).await?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if !report.is_empty() {
        tracing::info!(
            namespace = name,
            remaining = report.content.values().sum::<usize>(),
            "namespace content remains; checking again later"
        );
        return Ok(Action::requeue(RECHECK_AFTER));
    }
    finalize(&namespaces, &ns).await?;
    Ok(Action::await_change())
}

/// Whether the namespace still carries [`FINALIZER`] in `spec.finalizers`.
fn has_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// Every namespaced resource (at its group's preferred version) whose objects
/// can be listed and deleted as a collection.
///
/// # Errors
/// [`Error::Discovery`] when neither aggregated nor per-group discovery answers.
async fn discover_deletable(client: &Client) -> Result<Vec<ApiResource>, Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(aggregated) => {
            tracing::debug!(error = %aggregated, "aggregated discovery failed; trying per group");
            Discovery::new(client.clone())
                .run()
                .await
                .map_err(|e| Error::Discovery(e.to_string()))?
        }
    };
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| is_deletable(caps))
        .map(|(ar, _)| ar)
        .collect())
}

/// Whether the namespace controller can empty this resource in a namespace.
fn is_deletable(caps: &ApiCapabilities) -> bool {
    caps.scope == Scope::Namespaced
        && caps.supports_operation(verbs::LIST)
        && caps.supports_operation(verbs::DELETE_COLLECTION)
}

/// Deletes every object of `resources` in namespace `ns`, then tallies what is
/// left. Failures do not stop the sweep; the first one is returned alongside.
async fn delete_content(
    client: &Client,
    ns: &str,
    resources: &[ApiResource],
) -> (Report, Option<Error>) {
    let mut report = Report::default();
    let mut first_error = None;
    for ar in resources {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
        let swept = async {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await?;
            api.list_metadata(&ListParams::default()).await
        };
        match swept.await {
            Ok(left) => {
                for obj in &left.items {
                    report.count(ar, &obj.metadata);
                }
            }
            // The resource went away since discovery (a deleted CRD) or does
            // not, after all, allow this verb: nothing of it to delete here.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {}
            Err(e) => {
                report
                    .deletion_failures
                    .push(format!("{}: {e}", resource_key(ar)));
                first_error.get_or_insert(Error::Kube(e));
            }
        }
    }
    (report, first_error)
}

/// `plural.group`, spelled as Kubernetes spells it in namespace conditions
/// (the core group leaves a trailing dot: `configmaps.`).
fn resource_key(ar: &ApiResource) -> String {
    format!("{}.{}", ar.plural, ar.group)
}

/// What one deletion pass found: the input of the status conditions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Report {
    /// Why discovery failed, if it did.
    discovery_failure: Option<String>,
    /// One line per resource whose deletion or listing failed.
    deletion_failures: Vec<String>,
    /// Objects still present, per `plural.group`.
    content: BTreeMap<String, usize>,
    /// Objects still present, per finalizer they carry.
    finalizers: BTreeMap<String, usize>,
}

impl Report {
    /// Counts one object that survived deletion.
    fn count(&mut self, ar: &ApiResource, meta: &ObjectMeta) {
        *self.content.entry(resource_key(ar)).or_default() += 1;
        for f in meta.finalizers.iter().flatten() {
            *self.finalizers.entry(f.clone()).or_default() += 1;
        }
    }

    /// Whether the namespace is empty and nothing failed.
    fn is_empty(&self) -> bool {
        self.discovery_failure.is_none()
            && self.deletion_failures.is_empty()
            && self.content.is_empty()
    }

    /// The conditions Kubernetes' namespace controller maintains, in its order,
    /// each either failing (status `True`) or in its "ok" variant.
    fn conditions(&self) -> Vec<(&'static str, bool, &'static str, String)> {
        let failing = |ok_reason, ok_message: &str, bad: Option<(&'static str, String)>| match bad {
            Some((reason, message)) => (true, reason, message),
            None => (false, ok_reason, ok_message.to_string()),
        };
        let list = |m: &BTreeMap<String, usize>, fmt: fn(&str, usize) -> String| {
            m.iter()
                .map(|(k, n)| fmt(k, *n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rows = [
            (
                "NamespaceDeletionDiscoveryFailure",
                failing(
                    "ResourcesDiscovered",
                    "All resources successfully discovered",
                    self.discovery_failure
                        .clone()
                        .map(|m| ("DiscoveryFailed", m)),
                ),
            ),
            (
                "NamespaceDeletionGroupVersionParsingFailure",
                failing(
                    "ParsedGroupVersions",
                    "All legacy kube types successfully parsed",
                    None,
                ),
            ),
            (
                "NamespaceDeletionContentFailure",
                failing(
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization",
                    (!self.deletion_failures.is_empty()).then(|| {
                        (
                            "ContentDeletionFailed",
                            format!(
                                "Failed to delete all resource types, {} remaining: {}",
                                self.deletion_failures.len(),
                                self.deletion_failures.join(", ")
                            ),
                        )
                    }),
                ),
            ),
            (
                "NamespaceContentRemaining",
                failing(
                    "ContentRemoved",
                    "All content successfully removed",
                    (!self.content.is_empty()).then(|| {
                        (
                            "SomeResourcesRemain",
                            format!(
                                "Some resources are remaining: {}",
                                list(&self.content, |k, n| format!(
                                    "{k} has {n} resource instances"
                                ))
                            ),
                        )
                    }),
                ),
            ),
            (
                "NamespaceFinalizersRemaining",
                failing(
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished",
                    (!self.finalizers.is_empty()).then(|| {
                        (
                            "SomeFinalizersRemain",
                            format!(
                                "Some content in the namespace has finalizers remaining: {}",
                                list(&self.finalizers, |k, n| format!(
                                    "{k} in {n} resource instances"
                                ))
                            ),
                        )
                    }),
                ),
            ),
        ];
        rows.into_iter()
            .map(|(kind, (status, reason, message))| (kind, status, reason, message))
            .collect()
    }
}

/// Merges the report's conditions into `old`: other conditions are kept, a
/// condition's `lastTransitionTime` moves only when its status flips. `None`
/// when nothing would change.
fn merge_conditions(
    old: &[NamespaceCondition],
    report: &Report,
    now: &Time,
) -> Option<Vec<NamespaceCondition>> {
    let mut merged = old.to_vec();
    let mut changed = false;
    for (kind, failing, reason, message) in report.conditions() {
        let status = if failing { "True" } else { "False" };
        match merged.iter_mut().find(|c| c.type_ == kind) {
            Some(c) => {
                if c.status != status
                    || c.reason.as_deref() != Some(reason)
                    || c.message.as_deref() != Some(message.as_str())
                {
                    if c.status != status {
                        c.last_transition_time = Some(now.clone());
                    }
                    c.status = status.to_string();
                    c.reason = Some(reason.to_string());
                    c.message = Some(message);
                    changed = true;
                }
            }
            None => {
                merged.push(NamespaceCondition {
                    type_: kind.to_string(),
                    status: status.to_string(),
                    reason: Some(reason.to_string()),
                    message: Some(message),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(merged)
}

/// Writes the report's conditions to the namespace's status if they changed;
/// returns the namespace as it now is.
async fn update_conditions(
    api: &Api<Namespace>,
    ns: &Namespace,
    report: &Report,
) -> Result<Namespace, Error> {
    let old = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let Some(conditions) = merge_conditions(old, report, &now) else {
        return Ok(ns.clone());
    };
    let name = ns.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({ "status": { "conditions": conditions } });
    Ok(api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}

/// Removes [`FINALIZER`] from `spec.finalizers` through the `finalize`
/// subresource, pinned to the namespace's resourceVersion so a concurrent
/// change to the list is never overwritten (the conflict is retried).
async fn finalize(api: &Api<Namespace>, ns: &Namespace) -> Result<(), Error> {
    let name = ns.metadata.name.as_deref().unwrap_or_default();
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    let body = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            resource_version: ns.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(NamespaceSpec {
            finalizers: Some(finalizers),
        }),
        status: None,
    };
    match api
        .replace_subresource("finalize", name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = name, "namespace emptied and finalized");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::discovery::ApiResource;

    fn configmaps() -> ApiResource {
        ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        }
    }

    fn meta(finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..ObjectMeta::default()
        }
    }

    fn caps(scope: Scope, ops: &[&str]) -> ApiCapabilities {
        ApiCapabilities {
            scope,
            subresources: Vec::new(),
            operations: ops.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn find<'a>(cs: &'a [NamespaceCondition], kind: &str) -> &'a NamespaceCondition {
        cs.iter().find(|c| c.type_ == kind).expect(kind)
    }

    #[test]
    fn only_namespaced_resources_with_list_and_deletecollection_are_swept() {
        let all = [verbs::LIST, verbs::DELETE_COLLECTION];
        assert!(is_deletable(&caps(Scope::Namespaced, &all)));
        assert!(!is_deletable(&caps(Scope::Cluster, &all)));
        assert!(!is_deletable(&caps(Scope::Namespaced, &[verbs::LIST])));
        assert!(!is_deletable(&caps(
            Scope::Namespaced,
            &[verbs::DELETE_COLLECTION]
        )));
    }

    #[test]
    fn remaining_content_and_finalizers_are_reported_like_kubernetes() {
        let mut report = Report::default();
        report.count(&configmaps(), &meta(&["example.com/hold"]));
        report.count(&configmaps(), &meta(&[]));
        assert!(!report.is_empty());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let cs = merge_conditions(&[], &report, &now).unwrap();
        assert_eq!(cs.len(), 5);
        let content = find(&cs, "NamespaceContentRemaining");
        assert_eq!(content.status, "True");
        assert_eq!(content.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            content.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
        let fin = find(&cs, "NamespaceFinalizersRemaining");
        assert_eq!(fin.status, "True");
        assert_eq!(
            fin.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        assert_eq!(find(&cs, "NamespaceDeletionContentFailure").status, "False");
    }

    #[test]
    fn unchanged_conditions_are_not_rewritten_and_transitions_move_the_time() {
        let mut report = Report::default();
        report.count(&configmaps(), &meta(&[]));
        let t0 = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let first = merge_conditions(&[], &report, &t0).unwrap();
        let t1 = Time(k8s_openapi::jiff::Timestamp::now());
        assert_eq!(merge_conditions(&first, &report, &t1), None);

        let emptied = merge_conditions(&first, &Report::default(), &t1).unwrap();
        let content = find(&emptied, "NamespaceContentRemaining");
        assert_eq!(content.status, "False");
        assert_eq!(content.reason.as_deref(), Some("ContentRemoved"));
        assert_eq!(content.last_transition_time, Some(t1.clone()));
        let discovery = find(&emptied, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(discovery.last_transition_time, Some(t0));
    }

    #[test]
    fn other_conditions_are_kept() {
        let foreign = NamespaceCondition {
            type_: "Example".into(),
            status: "True".into(),
            ..NamespaceCondition::default()
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let cs =
            merge_conditions(std::slice::from_ref(&foreign), &Report::default(), &now).unwrap();
        assert_eq!(cs[0], foreign);
        assert_eq!(cs.len(), 6);
    }

    #[test]
    fn failures_are_reported_and_keep_the_namespace() {
        let report = Report {
            deletion_failures: vec!["pods.: boom".into()],
            ..Report::default()
        };
        assert!(!report.is_empty());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let cs = merge_conditions(&[], &report, &now).unwrap();
        let failure = find(&cs, "NamespaceDeletionContentFailure");
        assert_eq!(failure.status, "True");
        assert_eq!(
            failure.message.as_deref(),
            Some("Failed to delete all resource types, 1 remaining: pods.: boom")
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), BACKOFF_BASE);
        assert_eq!(backoff(1), BACKOFF_BASE * 2);
        assert_eq!(backoff(3), BACKOFF_BASE * 8);
        assert_eq!(backoff(100), BACKOFF_MAX);
    }

    #[test]
    fn only_the_kubernetes_finalizer_counts() {
        let with = |f: &[&str]| Namespace {
            spec: Some(NamespaceSpec {
                finalizers: Some(f.iter().map(|s| s.to_string()).collect()),
            }),
            ..Namespace::default()
        };
        assert!(has_finalizer(&with(&["kubernetes"])));
        assert!(!has_finalizer(&with(&["example.com/other"])));
        assert!(!has_finalizer(&Namespace::default()));
    }
}
