//! The errors of server-side apply.

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The applied configuration changes fields other managers own, and
    /// `force` was not set. The API server answers 409 Conflict with one
    /// `FieldManagerConflict` cause per entry of `causes`.
    #[error("{message}")]
    Conflict {
        /// Kubernetes' message, e.g. `Apply failed with 1 conflict: conflict
        /// with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
        message: String,
        /// Each conflicting field path (`.spec.replicas`) with the name of
        /// the manager that owns it.
        causes: Vec<(String, String)>,
    },
    /// The applied configuration or the stored managedFields cannot be used:
    /// not an object, missing `apiVersion`/`kind`/`metadata.name`, another
    /// kind than the endpoint's, managedFields set, an associative list
    /// element without its key or listed twice. The API server answers 400
    /// (422 is also defensible for the list errors).
    #[error("{0}")]
    Invalid(String),
}
