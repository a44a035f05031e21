//! Objects and look-ups shared by the tests of several modules.

use serde_json::{json, Value};

use crate::{apply, ApplyError};

pub(crate) const T0: &str = "2024-01-01T00:00:00Z";
pub(crate) const T1: &str = "2024-01-01T00:01:00Z";
pub(crate) const T2: &str = "2024-01-01T00:02:00Z";

/// A Deployment as `kubectl apply` would send it.
pub(crate) fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}
            }
        }
    })
}

/// [`apply`] for apps/v1 Deployments.
pub(crate) fn apply_deploy(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    apply(live, applied, manager, force, "apps/v1", "Deployment", now)
}

/// The managedFields entry of `manager`.
pub(crate) fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == manager)
}

/// The `fieldsV1` of `manager`'s entry; panics when there is none.
pub(crate) fn fields<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    &entry(obj, manager).unwrap_or_else(|| panic!("no entry for {manager}: {obj:#}"))["fieldsV1"]
}
