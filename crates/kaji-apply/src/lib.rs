//! Server-side apply and `metadata.managedFields`, as pure functions on
//! JSON values, following Kubernetes' structured-merge-diff.
//!
//! Owns the field-ownership model: which manager owns which field
//! (`FieldsV1` sets), the merge of an applied configuration into a live
//! object, conflict detection with Kubernetes' messages, the pruning of
//! fields a manager stops applying, and the bookkeeping of non-apply writes
//! ([`track_update`]). It carries its own compact table of the built-in
//! kinds' list types (`x-kubernetes-list-type` map / set / atomic), and
//! reads those of custom resources from their OpenAPI schema ([`Schema`]).
//!
//! It must not touch the store, the network, the clock or HTTP: callers
//! pass the live object and the current time, check preconditions
//! (`resourceVersion`), run admission, defaulting and validation on the
//! result, and map [`ApplyError`] to a `Status` (409 for conflicts).
//!
//! ```
//! use kaji_apply::apply;
//! use serde_json::json;
//!
//! let intent = json!({"apiVersion": "v1", "kind": "ConfigMap",
//!     "metadata": {"name": "cfg"}, "data": {"a": "1"}});
//! let now = "2024-01-01T00:00:00Z";
//! let created = apply(None, &intent, "kubectl", false, "v1", "ConfigMap", now)?;
//! let entry = &created["metadata"]["managedFields"][0];
//! assert_eq!(entry["operation"], "Apply");
//! assert_eq!(entry["fieldsV1"], json!({"f:data": {"f:a": {}}}));
//!
//! // Applying the same intent again changes nothing.
//! let later = "2024-01-02T00:00:00Z";
//! let again = apply(Some(&created), &intent, "kubectl", false, "v1", "ConfigMap", later)?;
//! assert_eq!(again, created);
//! # Ok::<(), kaji_apply::ApplyError>(())
//! ```

#![warn(missing_docs)]

mod apply;
mod error;
#[cfg(test)]
mod fixtures;
mod managed;
mod ownership;
mod path;
mod schema;
mod set;
mod typed;
mod update;

pub use error::ApplyError;
pub use managed::{ANCIENT_CHANGES_MANAGER, BEFORE_FIRST_APPLY_MANAGER, MAX_UPDATE_MANAGERS};
pub use schema::Schema;

use serde_json::Value;

/// The result of an apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOutcome {
    /// The merged object, with `metadata.managedFields` updated.
    pub object: Value,
    /// Whether `object` differs from the live object (managedFields
    /// included). `false` means the apply was a no-op and need not be stored.
    pub changed: bool,
}

/// One writer of one request: who writes, through which endpoint, when.
///
/// The free functions [`apply`] and [`track_update`] are shorthands for the
/// main resource with no ignored fields.
#[derive(Debug, Clone, Copy)]
pub struct FieldManager<'a> {
    /// The `fieldManager` of the request.
    pub manager: &'a str,
    /// The API version the request is made in, recorded in the entry.
    pub api_version: &'a str,
    /// The kind of the object, which selects the list types of built-in
    /// kinds.
    pub kind: &'a str,
    /// The list types of a custom resource; `None` uses the built-in table
    /// (and, for kinds it does not know, atomic lists).
    pub schema: Option<&'a Schema>,
    /// `Some("status")` (or `"scale"`) for a subresource write; recorded
    /// as the entry's `subresource`.
    pub subresource: Option<&'a str>,
    /// Dotted field paths (`"status"`, `"spec"`,
    /// `"metadata.deletionTimestamp"`) the endpoint resets: never owned by
    /// this write, never a conflict — Kubernetes' per-strategy reset fields.
    pub ignored_fields: &'a [&'a str],
    /// The current time, RFC 3339 (`2024-01-01T00:00:00Z`).
    pub now: &'a str,
}

impl<'a> FieldManager<'a> {
    /// A manager writing the main resource, ignoring no field.
    pub fn new(manager: &'a str, api_version: &'a str, kind: &'a str, now: &'a str) -> Self {
        FieldManager {
            manager,
            api_version,
            kind,
            schema: None,
            subresource: None,
            ignored_fields: &[],
            now,
        }
    }

    /// The same manager writing through `subresource`.
    pub fn subresource(self, subresource: &'a str) -> Self {
        FieldManager {
            subresource: Some(subresource),
            ..self
        }
    }

    /// The same manager, for a custom resource of this schema.
    pub fn with_schema(self, schema: &'a Schema) -> Self {
        FieldManager {
            schema: Some(schema),
            ..self
        }
    }

    /// The same manager, with fields the endpoint resets.
    pub fn ignoring(self, ignored_fields: &'a [&'a str]) -> Self {
        FieldManager {
            ignored_fields,
            ..self
        }
    }
}

/// Server-side apply of `applied` (the user's partial intent) by `manager`
/// onto `live` (`None` = create).
///
/// Returns the merged object with `metadata.managedFields` updated: the
/// manager's `Apply` entry owns exactly the fields in `applied`; fields
/// another manager owns and `applied` sets to a different value are
/// conflicts unless `force` (then ownership moves to `manager`); fields
/// this manager applied before but no longer applies are removed from the
/// object unless another manager owns them.
///
/// # Errors
/// [`ApplyError::Conflict`] and [`ApplyError::Invalid`]; see
/// [`FieldManager::apply`].
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    kind: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    FieldManager::new(manager, api_version, kind, now)
        .apply(live, applied, force)
        .map(|o| o.object)
}

/// For non-apply writes (create, update, patch): records `manager`
/// (operation `Update`) as owner of every field it changed between `old`
/// (`None` on create) and `new`, removes those fields from other managers'
/// sets, and returns `new` with managedFields set. Managers whose sets
/// become empty are dropped. See [`FieldManager::update`].
pub fn track_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    api_version: &str,
    kind: &str,
    now: &str,
) -> Value {
    FieldManager::new(manager, api_version, kind, now).update(old, new)
}
