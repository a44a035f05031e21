//! RFC 6902 JSON patch and RFC 7386 JSON merge patch.

use serde_json::Value;

use crate::error::{describe, PatchError};

/// The most operations a JSON patch may have, as in Kubernetes
/// (`maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 JSON patch (a list of `add`, `remove`, `replace`,
/// `move`, `copy` and `test` operations) to `original`.
///
/// The operations apply in order to a copy; `original` is left untouched and
/// nothing is returned unless every operation succeeds.
///
/// # Errors
///
/// [`PatchError::InvalidJsonPatch`] when `patch` is not a list of operations,
/// [`PatchError::TooManyOperations`] past [`MAX_JSON_PATCH_OPERATIONS`], and
/// [`PatchError::JsonPatchFailed`] when an operation fails (missing path,
/// failed `test`).
pub fn apply_json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if let Value::Array(ops) = patch {
        if ops.len() > MAX_JSON_PATCH_OPERATIONS {
            return Err(PatchError::TooManyOperations {
                count: ops.len(),
                max: MAX_JSON_PATCH_OPERATIONS,
            });
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|source| PatchError::InvalidJsonPatch { source })?;
    // One operation at a time on a copy (nothing is returned on failure),
    // so that what `copy` duplicates can be bounded before it is copied.
    let mut doc = original.clone();
    let mut copied = 0usize;
    for (operation, op) in ops.iter().enumerate() {
        if written_depth(&doc, op) > MAX_JSON_PATCH_DEPTH {
            return Err(PatchError::TooDeep {
                operation,
                max: MAX_JSON_PATCH_DEPTH,
            });
        }
        if let json_patch::PatchOperation::Copy(copy) = op {
            if let Some(source) = doc.pointer(copy.from.as_str()) {
                copied = copied.saturating_add(json_size(source, MAX_JSON_PATCH_COPY_BYTES));
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(PatchError::CopyTooLarge {
                        operation,
                        max: MAX_JSON_PATCH_COPY_BYTES,
                    });
                }
            }
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|mut source| {
            source.operation = operation;
            PatchError::JsonPatchFailed { source }
        })?;
    }
    Ok(doc)
}

/// The most bytes (as JSON) the `copy` operations of one JSON patch may
/// duplicate in total, the API server's request size limit: each copy of
/// the whole object into itself doubles it, so a few dozen operations would
/// otherwise exhaust memory.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// The deepest nesting of lists and objects a JSON patch may write: what the
/// body decoder accepts, so that a patch cannot build an object no request
/// could send, and whose recursive handling (validation, encoding, even
/// dropping it) would overflow the stack.
pub const MAX_JSON_PATCH_DEPTH: usize = 128;

/// How deeply nested the value `op` writes ends up: the lists and objects
/// above its target plus those of the value itself. 0 for operations that
/// write nothing.
fn written_depth(doc: &Value, op: &json_patch::PatchOperation) -> usize {
    use json_patch::PatchOperation as Op;
    let (path, value) = match op {
        Op::Add(o) => (&o.path, Some(&o.value)),
        Op::Replace(o) => (&o.path, Some(&o.value)),
        Op::Copy(o) => (&o.path, doc.pointer(o.from.as_str())),
        Op::Move(o) => (&o.path, doc.pointer(o.from.as_str())),
        Op::Remove(_) | Op::Test(_) => return 0,
    };
    path.tokens().count() + value.map_or(0, depth)
}

/// The nesting depth of `value` (0 for a scalar, 1 for `[]`), walked
/// without recursion so that any depth can be measured.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// The size of `value` as compact JSON, counting no further than just past
/// `limit`.
fn json_size(value: &Value, limit: usize) -> usize {
    struct Counter {
        bytes: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes += buf.len();
            if self.bytes > self.limit {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { bytes: 0, limit };
    let _ = serde_json::to_writer(&mut counter, value);
    counter.bytes
}

/// Applies an RFC 7386 JSON merge patch to `original`: objects merge key by
/// key, `null` deletes a key, and every other value (lists included)
/// replaces what was there.
///
/// # Errors
///
/// [`PatchError::PatchNotAnObject`] when `patch` is not a JSON object, as
/// Kubernetes requires for patching objects.
pub fn apply_merge_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::PatchNotAnObject {
            patch_type: "JSON merge patch",
            found: describe(patch),
        });
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
        })
    }

    #[test]
    fn json_patch_add_inserts_into_objects_and_lists() {
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/env", "value": "prod"},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "sidecar"}},
        ]);
        let out = apply_json_patch(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"]["env"], "prod");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["name"],
            "sidecar"
        );
    }

    #[test]
    fn json_patch_remove_and_replace_change_existing_values() {
        let patch = json!([
            {"op": "remove", "path": "/metadata/labels/tier"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
        ]);
        let out = apply_json_patch(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn json_patch_move_and_copy_relocate_values() {
        let patch = json!([
            {"op": "copy", "from": "/metadata/labels", "path": "/spec/selector"},
            {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/tier"},
        ]);
        let out = apply_json_patch(&deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["selector"],
            json!({"app": "web", "tier": "front"})
        );
        assert_eq!(out["metadata"]["tier"], "front");
        assert!(out["metadata"]["labels"].get("tier").is_none());
    }

    #[test]
    fn json_patch_test_that_matches_lets_the_patch_apply() {
        let patch = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 2},
        ]);
        assert_eq!(
            apply_json_patch(&deployment(), &patch).unwrap()["spec"]["replicas"],
            2
        );
    }

    #[test]
    fn json_patch_test_failure_is_an_error_and_applies_nothing() {
        let original = deployment();
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 2},
            {"op": "test", "path": "/metadata/name", "value": "other"},
        ]);
        let err = apply_json_patch(&original, &patch).unwrap_err();
        assert!(matches!(err, PatchError::JsonPatchFailed { .. }), "{err:?}");
        assert!(err.to_string().contains("/metadata/name"), "{err}");
        assert_eq!(original["spec"]["replicas"], 1);
    }

    #[test]
    fn json_patch_copies_past_the_size_limit_are_an_error() {
        // Each copy of the whole object into a new key doubles it.
        let ops: Vec<Value> = (0..64)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/k{i}")}))
            .collect();
        let err = apply_json_patch(&deployment(), &Value::Array(ops)).unwrap_err();
        assert!(matches!(err, PatchError::CopyTooLarge { .. }), "{err:?}");
    }

    #[test]
    fn json_patch_may_not_nest_deeper_than_a_body_may() {
        let nested = |n: usize| -> Value {
            serde_json::from_str(&format!("{}{}", "[".repeat(n), "]".repeat(n))).unwrap()
        };
        let ok = json!([{"op": "add", "path": "/a", "value": nested(127)}]);
        assert!(apply_json_patch(&json!({}), &ok).is_ok());
        let deep = json!([
            {"op": "add", "path": "/a", "value": nested(100)},
            {"op": "add", "path": format!("/a{}/-", "/0".repeat(99)), "value": nested(100)},
        ]);
        let err = apply_json_patch(&json!({}), &deep).unwrap_err();
        assert!(
            matches!(err, PatchError::TooDeep { operation: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn json_patch_errors_name_the_failing_operation() {
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/env", "value": "prod"},
            {"op": "remove", "path": "/spec/paused"},
        ]);
        let err = apply_json_patch(&deployment(), &patch).unwrap_err();
        match err {
            PatchError::JsonPatchFailed { source } => assert_eq!(source.operation, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_patch_on_a_missing_path_is_an_error() {
        let patch = json!([{"op": "remove", "path": "/spec/paused"}]);
        let err = apply_json_patch(&deployment(), &patch).unwrap_err();
        assert!(matches!(err, PatchError::JsonPatchFailed { .. }), "{err:?}");
    }

    #[test]
    fn json_patch_that_is_not_a_list_of_operations_is_invalid() {
        for patch in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
        ] {
            let err = apply_json_patch(&deployment(), &patch).unwrap_err();
            assert!(
                matches!(err, PatchError::InvalidJsonPatch { .. }),
                "{patch}: {err:?}"
            );
        }
    }

    #[test]
    fn json_patch_with_too_many_operations_is_refused() {
        let ops = vec![
            json!({"op": "test", "path": "/spec/replicas", "value": 1});
            MAX_JSON_PATCH_OPERATIONS + 1
        ];
        let err = apply_json_patch(&deployment(), &Value::Array(ops)).unwrap_err();
        assert!(
            matches!(err, PatchError::TooManyOperations { count: 10_001, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn merge_patch_null_deletes_and_objects_merge() {
        let patch = json!({"metadata": {"labels": {"tier": null, "env": "prod"}}});
        let out = apply_merge_patch(&deployment(), &patch).unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "env": "prod"})
        );
        assert_eq!(out["metadata"]["name"], "web");
    }

    #[test]
    fn merge_patch_replaces_lists_whole() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "other"}]}}}});
        let out = apply_merge_patch(&deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "other"}])
        );
    }

    #[test]
    fn merge_patch_drops_nulls_inside_new_objects() {
        let patch = json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}});
        let out = apply_merge_patch(&deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn merge_patch_must_be_an_object() {
        let err = apply_merge_patch(&deployment(), &json!([1])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a JSON merge patch must be a JSON object, but the request body is a list"
        );
    }
}
