//! Applying a strategic merge patch, as `k8s.io/apimachinery/pkg/util/strategicpatch` does.
//!
//! Maps merge key by key and `null` deletes a key. Lists tagged
//! `patchStrategy: merge` merge by their merge key (or as ordered sets of
//! plain values); other lists are replaced whole. The directives are
//! `$patch` (`replace`, `delete`, `merge`), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
//!
//! Order of merged lists follows Kubernetes: with `$setElementOrder`, its order
//! wins; without it, items named in the patch keep the patch's order and are
//! interleaved with the server-only items by their original positions, so an
//! item new to the list lands *before* the server-only items that follow it
//! (Kubernetes prepends rather than appends).

use serde_json::{Map, Value};

use crate::error::{describe, PatchError};
use crate::list::{apply_set_element_order, delete_from_primitive_list, merge_list};
use crate::schema::{self, Field, Strategy, Type};

/// The `$patch` directive key.
pub(crate) const DIRECTIVE: &str = "$patch";
/// The `$retainKeys` directive key.
pub(crate) const RETAIN_KEYS: &str = "$retainKeys";
/// Prefix of the `$setElementOrder/<list>` directive keys.
pub(crate) const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
/// Prefix of the `$deleteFromPrimitiveList/<list>` directive keys.
pub(crate) const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a Kubernetes strategic merge patch to an object of a built-in kind.
///
/// `api_version` and `kind` select the merge keys (e.g. containers merge by
/// `name`). The result is a new value; `original` is not changed.
///
/// # Errors
///
/// [`PatchError::StrategicMergeUnsupported`] for kinds without a built-in
/// schema (custom resources), [`PatchError::PatchNotAnObject`] when the patch
/// is not an object, and the directive errors ([`PatchError::UnknownDirective`],
/// [`PatchError::MissingMergeKey`], [`PatchError::SetElementOrderMismatch`], ...)
/// when the patch is malformed.
///
/// # Caveats
///
/// `$patch: merge` is accepted on maps and list elements as a no-op (it is
/// the default); Kubernetes rejects it there.
pub fn apply_strategic_merge_patch(
    original: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let root = schema::root_or_unsupported(api_version, kind)?;
    apply_with_schema(original, patch, root)
}

/// Applies a strategic merge patch to an object whose schema is `root`.
pub(crate) fn apply_with_schema(
    original: &Value,
    patch: &Value,
    root: &'static Type,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotAnObject {
            patch_type: "strategic merge patch",
            found: describe(patch),
        });
    };
    let Value::Object(original) = original else {
        return Err(PatchError::ObjectNotAnObject {
            found: describe(original),
        });
    };
    merge_map(original.clone(), patch.clone(), Some(root), "").map(Value::Object)
}

/// The path of `key` below `path`, for error messages.
pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `path` as shown to users.
pub(crate) fn shown(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

/// JSON equality that treats `1` and `1.0` as equal, as Go's decoded float64s do.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Whether two values are of the same JSON type (Go's `reflect.TypeOf` check).
pub(crate) fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Merges `patch` into `original`, the value of a map whose schema is `ty`.
pub(crate) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Option<&'static Type>,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, ty, path),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::UnknownDirective {
                    path: shown(path),
                    value: directive.to_string(),
                })
            }
        }
    }
    apply_retain_keys(&mut original, &mut patch, path)?;
    apply_set_element_order(&mut original, &mut patch, ty, path)?;

    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut original, list, value, &key, path)?;
            continue;
        }
        if value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let field = schema::field_of(ty, &key);
        let key_path = child(path, &key);
        match original.get_mut(&key) {
            Some(slot) => {
                let current = std::mem::take(slot);
                match merge_value(Some(current), value, field, &key_path)? {
                    Some(merged) => *slot = merged,
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
            None => {
                if let Some(merged) = merge_value(None, value, field, &key_path)? {
                    original.insert(key, merged);
                }
            }
        }
    }
    Ok(original)
}

/// Merges one non-null patch value into the current value of `field`
/// (absent, or of another type, means "take the patch"). `None` drops the key.
fn merge_value(
    current: Option<Value>,
    patch: Value,
    field: &Field,
    path: &str,
) -> Result<Option<Value>, PatchError> {
    let current = current.filter(|c| same_type(c, &patch));
    Ok(Some(match (current, patch) {
        (Some(Value::Object(o)), Value::Object(p)) => {
            let base = if field.strategy == Strategy::Replace {
                Map::new()
            } else {
                o
            };
            Value::Object(merge_map(base, p, field.ty, path)?)
        }
        (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(o, p, field, path)?),
        (None, Value::Object(p)) => {
            // Kubernetes drops a new map that only carries a delete directive.
            if p.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return Ok(None);
            }
            Value::Object(merge_map(Map::new(), p, field.ty, path)?)
        }
        (None, Value::Array(p)) => Value::Array(merge_list(Vec::new(), p, field, path)?),
        (_, scalar) => scalar,
    }))
}

/// Applies `$retainKeys`: clears the original keys it does not list, after
/// checking that the patch sets no key outside it.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    path: &str,
) -> Result<(), PatchError> {
    let Some(list) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let invalid = || PatchError::InvalidDirectiveValue {
        path: shown(path),
        directive: RETAIN_KEYS.to_owned(),
        expected: "a list of field names",
    };
    let Value::Array(list) = list else {
        return Err(invalid());
    };
    let keys: Vec<String> = list
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(invalid()),
        })
        .collect::<Result<_, _>>()?;
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keys.contains(k) {
            return Err(PatchError::RetainKeysViolation {
                path: shown(path),
                field: k.clone(),
            });
        }
    }
    original.retain(|k, _| keys.contains(k));
    Ok(())
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    pub(crate) fn apply_pod(original: &Value, patch: Value) -> Value {
        apply_strategic_merge_patch(original, &patch, "v1", "Pod").unwrap()
    }

    pub(crate) fn apply_pod_err(original: &Value, patch: Value) -> PatchError {
        apply_strategic_merge_patch(original, &patch, "v1", "Pod").unwrap_err()
    }

    pub(crate) fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect()
    }

    pub(crate) fn two_containers() -> Value {
        pod(json!({"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "proxy:1"},
        ]}))
    }

    #[test]
    fn null_deletes_a_key_and_nulls_in_new_maps_are_dropped() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch =
            json!({"metadata": {"labels": {"a": null}, "annotations": {"x": "1", "y": null}}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "ConfigMap").unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["annotations"], json!({"x": "1"}));
    }

    #[test]
    fn patch_replace_on_a_map_replaces_it_whole() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "ConfigMap").unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
    }

    #[test]
    fn patch_delete_on_a_map_empties_it() {
        let original = json!({"metadata": {"name": "x", "labels": {"a": "1"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "ConfigMap").unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(out["metadata"]["name"], "x");
    }

    #[test]
    fn patch_merge_on_a_map_is_the_default_merge() {
        let original = json!({"metadata": {"labels": {"a": "1"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "ConfigMap").unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn unknown_patch_directive_is_an_error_naming_the_field() {
        let err = apply_pod_err(&two_containers(), json!({"spec": {"$patch": "frobnicate"}}));
        assert_eq!(
            err.to_string(),
            "spec: unknown $patch directive \"frobnicate\"; expected \"replace\", \"delete\" or \"merge\""
        );
        let err = apply_pod_err(
            &two_containers(),
            json!({"spec": {"containers": [{"name": "app", "$patch": 1}]}}),
        );
        assert!(
            matches!(err, PatchError::UnknownDirective { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn retain_keys_clears_the_keys_it_does_not_list() {
        let original = json!({"spec": {"strategy": {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}
        }}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = apply_strategic_merge_patch(&original, &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_refuses_a_patch_setting_an_unlisted_key() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let err =
            apply_strategic_merge_patch(&original, &patch, "apps/v1", "Deployment").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.strategy: field \"rollingUpdate\" is set in the patch but is not listed in $retainKeys"
        );
    }

    #[test]
    fn retain_keys_in_a_volume_switches_its_source() {
        let original = pod(
            json!({"volumes": [{"name": "v", "configMap": {"name": "c"}}, {"name": "w", "emptyDir": {}}]}),
        );
        let out = apply_pod(
            &original,
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}]}}),
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}])
        );
    }

    #[test]
    fn deployment_template_containers_merge_by_name() {
        let original = json!({"spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "fluent"}]
        }}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
        let out = apply_strategic_merge_patch(&original, &patch, "apps/v1", "Deployment").unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx:2"}, {"name": "log", "image": "fluent"}])
        );
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn cron_job_template_containers_merge_by_name_through_the_job_template() {
        let original = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "job", "image": "busybox", "env": [{"name": "X", "value": "1"}]}]
        }}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "job", "env": [{"name": "Y", "value": "2"}]}]
        }}}}}});
        let out = apply_strategic_merge_patch(&original, &patch, "batch/v1", "CronJob").unwrap();
        let container = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "busybox");
        assert_eq!(container["env"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn kubectl_apply_of_a_deployment_changing_image_and_env_var() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                    "env": [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "info"}],
                }], "restartPolicy": "Always"},
            }},
        });
        // What `kubectl apply` sends: the three-way diff with element order directives.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "MODE"}, {"name": "LEVEL"}],
                    "env": [{"name": "LEVEL", "value": "debug"}],
                    "image": "nginx:1.27",
                    "name": "web",
                }],
            }}},
        });
        let out = apply_strategic_merge_patch(&live, &patch, "apps/v1", "Deployment").unwrap();
        let mut expected = live.clone();
        expected["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{...}"});
        let container = &mut expected["spec"]["template"]["spec"]["containers"][0];
        container["image"] = json!("nginx:1.27");
        container["env"][1]["value"] = json!("debug");
        assert_eq!(out, expected);
    }

    #[test]
    fn pdb_selector_is_replaced_whole() {
        let original =
            json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
        let patch = json!({"spec": {"selector": {"matchExpressions": []}}});
        let out =
            apply_strategic_merge_patch(&original, &patch, "policy/v1", "PodDisruptionBudget")
                .unwrap();
        assert_eq!(out["spec"]["selector"], json!({"matchExpressions": []}));
        assert_eq!(out["spec"]["minAvailable"], 1);
    }

    #[test]
    fn new_values_are_stripped_of_directives() {
        let original = json!({"metadata": {"name": "p"}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}],
            "tolerations": [{"$patch": "replace"}, {"key": "k"}],
        }});
        let out = apply_pod(&original, patch);
        assert_eq!(
            out["spec"],
            json!({"containers": [{"name": "a", "env": []}], "tolerations": [{"key": "k"}]})
        );
    }

    #[test]
    fn custom_resources_are_refused() {
        let err = apply_strategic_merge_patch(&json!({}), &json!({}), "example.com/v1", "Widget")
            .unwrap_err();
        assert!(
            matches!(err, PatchError::StrategicMergeUnsupported { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_patch_that_is_not_an_object_is_refused() {
        let err = apply_strategic_merge_patch(&json!({}), &json!([]), "v1", "Pod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a strategic merge patch must be a JSON object, but the request body is a list"
        );
    }

    #[test]
    fn the_original_is_left_untouched() {
        let original = two_containers();
        let copy = original.clone();
        let _ = apply_pod(
            &original,
            json!({"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}),
        );
        assert_eq!(original, copy);
    }
}
