//! The one error type of this crate, with messages written for the API's users.
//!
//! The server maps each variant to a `Status`; the doc of each variant says
//! which HTTP code Kubernetes answers with, so the mapping can follow it.

/// Why a patch could not be applied or computed.
///
/// Every message names the field path it is about (`spec.template.spec.containers`,
/// or `<root>` for the top of the object) so that it can be shown to users as is.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not a JSON object, but the patch type needs one
    /// (JSON merge patch and strategic merge patch). Kubernetes answers 400.
    #[error("a {patch_type} must be a JSON object, but the request body is {found}")]
    PatchNotAnObject {
        /// The patch type, as users know it ("JSON merge patch").
        patch_type: &'static str,
        /// What the body is instead ("a list", "a string", ...).
        found: &'static str,
    },

    /// The object to patch (or, for a diff, one of the two objects) is not a
    /// JSON object. This is a caller bug rather than a user error; Kubernetes
    /// would answer 500.
    #[error("the object to patch must be a JSON object, but it is {found}")]
    ObjectNotAnObject {
        /// What the object is instead.
        found: &'static str,
    },

    /// The JSON patch body is not a list of RFC 6902 operations (unknown `op`,
    /// missing `path` or `value`, malformed pointer). Kubernetes answers 400.
    #[error("the JSON patch is not a valid list of RFC 6902 operations: {source}")]
    InvalidJsonPatch {
        /// Why the body did not decode.
        #[source]
        source: serde_json::Error,
    },

    /// The JSON patch has more operations than the server accepts.
    /// Kubernetes answers 413 (request entity too large).
    #[error("the JSON patch has {count} operations, more than the {max} allowed")]
    TooManyOperations {
        /// Operations in the patch.
        count: usize,
        /// The limit ([`crate::MAX_JSON_PATCH_OPERATIONS`]).
        max: usize,
    },

    /// A JSON patch operation could not be applied: its path does not exist,
    /// a `move` targets its own child, or a `test` did not match.
    /// Kubernetes answers 422.
    #[error("the JSON patch could not be applied: {source}")]
    JsonPatchFailed {
        /// The failing operation (its index and path) and why it failed.
        #[source]
        source: json_patch::PatchError,
    },

    /// The JSON patch's `copy` operations would duplicate more than
    /// [`crate::MAX_JSON_PATCH_COPY_BYTES`] in total. Kubernetes answers 422.
    #[error("the JSON patch operation {operation} would copy more than {max} bytes in total")]
    CopyTooLarge {
        /// Index of the `copy` operation that passed the limit.
        operation: usize,
        /// The limit ([`crate::MAX_JSON_PATCH_COPY_BYTES`]).
        max: usize,
    },

    /// A JSON patch operation would nest lists and objects deeper than
    /// [`crate::MAX_JSON_PATCH_DEPTH`], which no request body may. Kubernetes
    /// answers 422.
    #[error("the JSON patch operation {operation} would nest the object deeper than {max} levels")]
    TooDeep {
        /// Index of the operation.
        operation: usize,
        /// The limit ([`crate::MAX_JSON_PATCH_DEPTH`]).
        max: usize,
    },

    /// There is no strategic merge schema for this kind (custom resources,
    /// aggregated APIs, unknown versions). Kubernetes answers 415
    /// (unsupported media type).
    #[error(
        "strategic merge patch is not supported for {kind} ({api_version}); \
         use a JSON merge patch (application/merge-patch+json) or a JSON patch \
         (application/json-patch+json) instead"
    )]
    StrategicMergeUnsupported {
        /// The `apiVersion` asked for.
        api_version: String,
        /// The `kind` asked for.
        kind: String,
    },

    /// A `$patch` directive has a value other than `replace`, `delete` or
    /// `merge`, or is not a string. Kubernetes answers 422.
    #[error(
        "{path}: unknown $patch directive {value}; expected \"replace\", \"delete\" or \"merge\""
    )]
    UnknownDirective {
        /// Field path of the map or list holding the directive.
        path: String,
        /// The directive's value, as JSON.
        value: String,
    },

    /// A directive's value has the wrong shape, e.g. `$setElementOrder/x`
    /// that is not a list, or `$retainKeys` that is not a list of strings.
    /// Kubernetes answers 422.
    #[error("{path}: {directive} must be {expected}")]
    InvalidDirectiveValue {
        /// Field path of the map holding the directive.
        path: String,
        /// The directive key, e.g. `$setElementOrder/containers`.
        directive: String,
        /// What it must be, e.g. "a list".
        expected: &'static str,
    },

    /// An element of a list merged by key lacks that key (e.g. a container
    /// without `name`). Kubernetes answers 422.
    #[error("{path}: list element {element} does not contain the merge key \"{key}\"")]
    MissingMergeKey {
        /// Field path of the list.
        path: String,
        /// The merge key the schema declares for this list.
        key: &'static str,
        /// The offending element, as JSON.
        element: String,
    },

    /// A list merged by the schema holds objects, but the schema declares no
    /// merge key for it (e.g. objects sent in `metadata.finalizers`).
    /// Kubernetes answers 422.
    #[error("{path}: this list merges as a set of plain values, but it holds objects")]
    ObjectsInPrimitiveList {
        /// Field path of the list.
        path: String,
    },

    /// The elements of a merged list are not all of one type, or are lists
    /// themselves. Kubernetes answers 422.
    #[error("{path}: list elements must all be of one type and must not be lists")]
    MixedListElements {
        /// Field path of the list.
        path: String,
    },

    /// The items of a patch list are not in the relative order that its
    /// `$setElementOrder/<field>` list gives, or are missing from it.
    /// Kubernetes answers 422.
    #[error("{path}: the items of the patch list are not in the order given by $setElementOrder/{field}, or are missing from it")]
    SetElementOrderMismatch {
        /// Field path of the map holding the list.
        path: String,
        /// The list field.
        field: String,
    },

    /// The patch sets a field that its own `$retainKeys` list would clear.
    /// Kubernetes answers 422.
    #[error("{path}: field \"{field}\" is set in the patch but is not listed in $retainKeys")]
    RetainKeysViolation {
        /// Field path of the map holding `$retainKeys`.
        path: String,
        /// The field missing from `$retainKeys`.
        field: String,
    },
}

/// How a JSON value is named in error messages ("a list", "a string", ...).
pub(crate) fn describe(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_kind_message_names_the_kind_and_the_alternatives() {
        let err = PatchError::StrategicMergeUnsupported {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
        };
        let msg = err.to_string();
        assert!(msg.contains("Widget (example.com/v1)"), "{msg}");
        assert!(msg.contains("application/merge-patch+json"), "{msg}");
    }

    #[test]
    fn describe_names_every_json_type() {
        use serde_json::json;
        let names: Vec<_> = [
            json!(null),
            json!(true),
            json!(1),
            json!("x"),
            json!([]),
            json!({}),
        ]
        .iter()
        .map(describe)
        .collect();
        assert_eq!(
            names,
            [
                "null",
                "a boolean",
                "a number",
                "a string",
                "a list",
                "an object"
            ]
        );
    }
}
