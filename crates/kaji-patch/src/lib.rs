//! The patch types the API server applies, as pure functions on JSON values.
//!
//! Owns the four `PATCH` content types ([`PatchType`]), RFC 6902 JSON patch
//! ([`apply_json_patch`]), RFC 7386 JSON merge patch ([`apply_merge_patch`]),
//! and Kubernetes strategic merge patch for the built-in kinds
//! ([`apply_strategic_merge_patch`], and its two-way diff
//! [`create_strategic_merge_patch`]), together with the table of merge keys
//! transcribed from the Kubernetes Go types.
//!
//! It must not touch the store, the network, the clock or HTTP: it does not
//! read objects, check `resourceVersion`, validate the result, apply
//! server-side apply (`application/apply-patch+yaml` is only recognised
//! here), nor turn errors into `Status` — the API server does all of that,
//! mapping each [`PatchError`] to a `Status` in one place.
//!
//! ```
//! use kaji_patch::{apply_strategic_merge_patch, create_strategic_merge_patch};
//! use serde_json::json;
//!
//! let live = json!({"spec": {"template": {"spec": {"containers": [
//!     {"name": "web", "image": "nginx:1.25"},
//!     {"name": "log", "image": "fluent-bit:3"},
//! ]}}}});
//! let patch = json!({"spec": {"template": {"spec": {"containers": [
//!     {"name": "web", "image": "nginx:1.27"},
//! ]}}}});
//! let out = apply_strategic_merge_patch(&live, &patch, "apps/v1", "Deployment")?;
//! assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
//! assert_eq!(out["spec"]["template"]["spec"]["containers"][1]["name"], "log");
//!
//! let back = create_strategic_merge_patch(&out, &live, "apps/v1", "Deployment")?;
//! assert_eq!(apply_strategic_merge_patch(&out, &back, "apps/v1", "Deployment")?, live);
//! # Ok::<(), kaji_patch::PatchError>(())
//! ```

#![warn(missing_docs)]

mod diff;
mod error;
mod json;
mod list;
mod schema;
mod strategic;

pub use diff::create_strategic_merge_patch;
pub use error::PatchError;
pub use json::{
    apply_json_patch, apply_merge_patch, MAX_JSON_PATCH_COPY_BYTES, MAX_JSON_PATCH_DEPTH,
    MAX_JSON_PATCH_OPERATIONS,
};
pub use schema::supports_strategic_merge;
pub use strategic::apply_strategic_merge_patch;

/// The body formats of a `PATCH` request, named by their content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// RFC 6902 JSON patch, `application/json-patch+json`.
    Json,
    /// RFC 7386 JSON merge patch, `application/merge-patch+json`.
    Merge,
    /// Kubernetes strategic merge patch, `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// Server-side apply, `application/apply-patch+yaml` (applied elsewhere).
    Apply,
}

impl PatchType {
    /// Every patch type, in the order Kubernetes lists them in discovery.
    pub const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ];

    /// The patch type of a `Content-Type` header value, ignoring parameters
    /// such as `; charset=utf-8`, surrounding spaces and letter case.
    ///
    /// Returns `None` for any other media type; Kubernetes answers those
    /// with 415 Unsupported Media Type.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        PatchType::ALL
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(essence))
    }

    /// The media type of this patch type, without parameters.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_content_type_is_recognised() {
        for t in PatchType::ALL {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn content_type_parameters_case_and_spaces_are_ignored() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type(" Application/Strategic-Merge-Patch+JSON ;charset=UTF-8"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml;charset=utf-8"),
            Some(PatchType::Apply)
        );
    }

    #[test]
    fn other_media_types_are_not_patch_types() {
        for ct in [
            "application/json",
            "application/yaml",
            "",
            "text/plain",
            "application/json-patch",
        ] {
            assert_eq!(PatchType::from_content_type(ct), None, "{ct}");
        }
    }
}
