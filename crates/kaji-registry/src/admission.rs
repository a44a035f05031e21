//! The admission seam: what may change or refuse a write after defaulting
//! and before it is stored, in the order Kubernetes runs it (mutating, then
//! schema validation, then validating). The registry calls it; webhooks and
//! policies implement it elsewhere.

use kaji_core::{ApiError, ResourceInfo};
use serde_json::Value;

/// The operation being admitted (`AdmissionRequest.operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE` (including patches and server-side apply).
    Update,
    /// `DELETE`.
    Delete,
}

impl Operation {
    /// The name AdmissionReview and webhook rules use.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What is being written, as an `AdmissionRequest` describes it.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// The subresource written ("status"), if any.
    pub subresource: Option<&'a str>,
    /// The operation.
    pub operation: Operation,
    /// The namespace, for namespaced resources.
    pub namespace: Option<&'a str>,
    /// The object's name (empty for a create with generateName).
    pub name: &'a str,
    /// The object before the write (update and delete).
    pub old_object: Option<&'a Value>,
    /// Whether the write is a dry run.
    pub dry_run: bool,
}

/// Admission control for one resource's writes.
#[async_trait::async_trait]
pub trait Admission: Send + Sync + 'static {
    /// Mutating admission: may change `object` (for create and update; never
    /// called for delete). Returns warnings for the client.
    ///
    /// # Errors
    /// The refusal to send to the client (a webhook's denial, or its failure
    /// under `failurePolicy: Fail`).
    async fn mutate(
        &self,
        attrs: &Attributes<'_>,
        object: &mut Value,
    ) -> Result<Vec<String>, ApiError>;

    /// Validating admission: may only refuse. `object` is `None` for delete.
    ///
    /// # Errors
    /// As for [`Admission::mutate`].
    async fn validate(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
    ) -> Result<Vec<String>, ApiError>;
}
