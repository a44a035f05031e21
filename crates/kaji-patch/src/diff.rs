//! Computing a two-way strategic merge patch, as Kubernetes'
//! `CreateTwoWayMergePatch` does (with `$setElementOrder`).
//!
//! The patch holds what `modified` adds or changes, `null` for removed map
//! keys, `$patch: delete` elements for removed items of lists merged by key,
//! `$deleteFromPrimitiveList/<list>` for removed plain values,
//! `$setElementOrder/<list>` whenever a merged list changed, and `$retainKeys`
//! for structs tagged `retainKeys`.

use serde_json::{Map, Value};

use crate::error::{describe, PatchError};
use crate::schema::{self, Field, Strategy, Type};
use crate::strategic::{
    child, json_eq, same_type, shown, DELETE_FROM_PRIMITIVE_LIST, DIRECTIVE, RETAIN_KEYS,
    SET_ELEMENT_ORDER,
};

/// Computes the strategic merge patch that turns `original` into `modified`,
/// two objects of a built-in kind.
///
/// # Guarantees
///
/// For objects whose merged lists have unique merge keys and no `null`
/// values, `apply_strategic_merge_patch(original, &patch, ..) == modified`.
/// An empty object means there is nothing to change.
///
/// # Errors
///
/// [`PatchError::StrategicMergeUnsupported`] for kinds without a built-in
/// schema, [`PatchError::ObjectNotAnObject`] when either side is not an
/// object, and [`PatchError::MissingMergeKey`] /
/// [`PatchError::MixedListElements`] for lists that cannot be merged.
pub fn create_strategic_merge_patch(
    original: &Value,
    modified: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let root = schema::root_or_unsupported(api_version, kind)?;
    diff_with_schema(original, modified, root)
}

/// Computes the two-way patch between two objects whose schema is `root`.
pub(crate) fn diff_with_schema(
    original: &Value,
    modified: &Value,
    root: &'static Type,
) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(modified)) = (original, modified) else {
        let bad = if original.is_object() {
            modified
        } else {
            original
        };
        return Err(PatchError::ObjectNotAnObject {
            found: describe(bad),
        });
    };
    diff_maps(original, modified, Some(root), false, "").map(Value::Object)
}

/// The patch between two maps of schema `ty`; `retain_keys` adds `$retainKeys`.
fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    ty: Option<&'static Type>,
    retain_keys: bool,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    let mut patch = Map::new();
    for (key, new) in modified {
        let Some(old) = original.get(key) else {
            patch.insert(key.clone(), new.clone());
            continue;
        };
        if !same_type(old, new) {
            patch.insert(key.clone(), new.clone());
            continue;
        }
        let field = schema::field_of(ty, key);
        let key_path = child(path, key);
        match (old, new) {
            (Value::Object(old), Value::Object(new)) => {
                if field.strategy == Strategy::Replace {
                    if old != new {
                        patch.insert(key.clone(), Value::Object(new.clone()));
                    }
                    continue;
                }
                let retain = field.strategy == Strategy::RetainKeys;
                let sub = diff_maps(old, new, field.ty, retain, &key_path)?;
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(old), Value::Array(new)) => {
                diff_list_field(key, old, new, field, &key_path, &mut patch)?;
            }
            _ => {
                if !json_eq(old, new) {
                    patch.insert(key.clone(), new.clone());
                }
            }
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    if retain_keys {
        let mut keys: Vec<&String> = modified
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k)
            .collect();
        let clears = original
            .iter()
            .any(|(k, v)| !v.is_null() && !modified.contains_key(k));
        if !keys.is_empty() && (!patch.is_empty() || clears) {
            keys.sort();
            let keys = keys.into_iter().map(|k| Value::String(k.clone())).collect();
            patch.insert(RETAIN_KEYS.to_owned(), Value::Array(keys));
        }
    }
    Ok(patch)
}

/// Adds to `patch` what turns the list `old` of `key` into `new`.
fn diff_list_field(
    key: &str,
    old: &[Value],
    new: &[Value],
    field: &Field,
    path: &str,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Strategy::MergeList {
        key: merge_key,
        retain_keys,
    } = field.strategy
    else {
        if old != new {
            patch.insert(key.to_owned(), Value::Array(new.to_vec()));
        }
        return Ok(());
    };
    if old.is_empty() {
        if !new.is_empty() {
            patch.insert(key.to_owned(), Value::Array(new.to_vec()));
        }
        return Ok(());
    }
    check_element_types(old, new, path)?;
    let diff = if old[0].is_object() {
        let merge_key =
            merge_key.ok_or_else(|| PatchError::ObjectsInPrimitiveList { path: shown(path) })?;
        diff_lists_of_maps(old, new, merge_key, field.ty, retain_keys, path)?
    } else {
        diff_lists_of_scalars(old, new)
    };
    if !diff.changes.is_empty() {
        patch.insert(key.to_owned(), Value::Array(diff.changes));
    }
    if !diff.deletions.is_empty() {
        patch.insert(
            format!("{DELETE_FROM_PRIMITIVE_LIST}{key}"),
            Value::Array(diff.deletions),
        );
    }
    if !diff.order.is_empty() {
        patch.insert(
            format!("{SET_ELEMENT_ORDER}{key}"),
            Value::Array(diff.order),
        );
    }
    Ok(())
}

/// The parts of a patch for one merged list.
struct ListDiff {
    /// The patch list: added and changed items, then `$patch: delete` items.
    changes: Vec<Value>,
    /// `$deleteFromPrimitiveList` values (plain lists only).
    deletions: Vec<Value>,
    /// `$setElementOrder` entries, empty when the order need not be sent.
    order: Vec<Value>,
}

fn check_element_types(old: &[Value], new: &[Value], path: &str) -> Result<(), PatchError> {
    let first = &old[0];
    if first.is_array() || old.iter().chain(new).any(|v| !same_type(v, first)) {
        return Err(PatchError::MixedListElements { path: shown(path) });
    }
    Ok(())
}

fn diff_lists_of_maps(
    old: &[Value],
    new: &[Value],
    merge_key: &'static str,
    ty: Option<&'static Type>,
    retain_keys: bool,
    path: &str,
) -> Result<ListDiff, PatchError> {
    let key_of = |v: &Value| {
        v.get(merge_key)
            .cloned()
            .ok_or_else(|| PatchError::MissingMergeKey {
                path: shown(path),
                key: merge_key,
                element: v.to_string(),
            })
    };
    let old_keys = old.iter().map(key_of).collect::<Result<Vec<_>, _>>()?;
    let new_keys = new.iter().map(key_of).collect::<Result<Vec<_>, _>>()?;

    let mut changes = Vec::new();
    for (i, (element, key_value)) in new.iter().zip(&new_keys).enumerate() {
        // The n-th item with a given key pairs with the n-th original one,
        // as Kubernetes' sorted walk does for (invalid) duplicate keys.
        let nth = new_keys[..i]
            .iter()
            .filter(|k| json_eq(k, key_value))
            .count();
        let Some(pos) = old_keys
            .iter()
            .enumerate()
            .filter(|(_, k)| json_eq(k, key_value))
            .map(|(pos, _)| pos)
            .nth(nth)
        else {
            changes.push(element.clone());
            continue;
        };
        let (Value::Object(before), Value::Object(after)) = (&old[pos], element) else {
            unreachable!("check_element_types saw only objects");
        };
        let sub = diff_maps(before, after, ty, retain_keys, path)?;
        if !sub.is_empty() {
            let mut item = Map::from_iter([(merge_key.to_owned(), key_value.clone())]);
            item.extend(sub);
            changes.push(Value::Object(item));
        }
    }
    let mut removed: Vec<&Value> = old_keys
        .iter()
        .filter(|k| !new_keys.iter().any(|n| json_eq(n, k)))
        .collect();
    removed.sort_by_key(|k| scalar_text(k));
    removed.dedup_by(|a, b| json_eq(a, b));
    let order_same = old_keys.len() == new_keys.len()
        && old_keys.iter().zip(&new_keys).all(|(a, b)| json_eq(a, b));
    changes.extend(removed.into_iter().map(|k| {
        Value::Object(Map::from_iter([
            (merge_key.to_owned(), k.clone()),
            (DIRECTIVE.to_owned(), Value::String("delete".to_owned())),
        ]))
    }));
    let order = if !changes.is_empty() || !order_same {
        new_keys
            .into_iter()
            .map(|k| Value::Object(Map::from_iter([(merge_key.to_owned(), k)])))
            .collect()
    } else {
        Vec::new()
    };
    Ok(ListDiff {
        changes,
        deletions: Vec::new(),
        order,
    })
}

fn diff_lists_of_scalars(old: &[Value], new: &[Value]) -> ListDiff {
    let mut changes: Vec<Value> = Vec::new();
    for v in new {
        if !old.iter().any(|o| json_eq(o, v)) && !changes.iter().any(|c| json_eq(c, v)) {
            changes.push(v.clone());
        }
    }
    let mut deletions: Vec<Value> = old
        .iter()
        .filter(|o| !new.iter().any(|n| json_eq(n, o)))
        .cloned()
        .collect();
    deletions.sort_by_key(scalar_text);
    deletions.dedup_by(|a, b| json_eq(a, b));
    let order = if old != new { new.to_vec() } else { Vec::new() };
    ListDiff {
        changes,
        deletions,
        order,
    }
}

/// A plain value as Go's `fmt.Sprintf("%v")` prints it, for sorting like Kubernetes.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply_strategic_merge_patch;
    use serde_json::json;

    fn diff(original: &Value, modified: &Value, api_version: &str, kind: &str) -> Value {
        create_strategic_merge_patch(original, modified, api_version, kind).unwrap()
    }

    /// Diffs, applies, and checks that the result is `modified`; returns the patch.
    fn round_trip(original: Value, modified: Value, api_version: &str, kind: &str) -> Value {
        let patch = diff(&original, &modified, api_version, kind);
        let applied = apply_strategic_merge_patch(&original, &patch, api_version, kind).unwrap();
        assert_eq!(applied, modified, "patch was {patch:#}");
        patch
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}},
        })
    }

    #[test]
    fn identical_objects_give_an_empty_patch() {
        let d = deployment(json!([{"name": "web", "image": "nginx"}]));
        assert_eq!(diff(&d, &d, "apps/v1", "Deployment"), json!({}));
    }

    #[test]
    fn changed_image_and_env_var_give_the_kubectl_shaped_patch() {
        let original = deployment(json!([{"name": "web", "image": "nginx:1.25", "env": [
            {"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "info"},
        ]}]));
        let modified = deployment(json!([{"name": "web", "image": "nginx:1.27", "env": [
            {"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "debug"},
        ]}]));
        let patch = round_trip(original, modified, "apps/v1", "Deployment");
        assert_eq!(
            patch,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{
                    "name": "web",
                    "$setElementOrder/env": [{"name": "MODE"}, {"name": "LEVEL"}],
                    "env": [{"name": "LEVEL", "value": "debug"}],
                    "image": "nginx:1.27",
                }],
            }}}})
        );
    }

    #[test]
    fn removed_containers_become_delete_directives() {
        let original = deployment(json!([{"name": "a"}, {"name": "c"}, {"name": "b"}]));
        let modified = deployment(json!([{"name": "a"}]));
        let patch = round_trip(original, modified, "apps/v1", "Deployment");
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "$patch": "delete"}, {"name": "c", "$patch": "delete"}])
        );
    }

    #[test]
    fn removed_map_keys_become_nulls() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
        let modified = json!({"metadata": {"labels": {"a": "1"}}});
        let patch = round_trip(original, modified, "v1", "ConfigMap");
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"b": null}}, "data": null})
        );
    }

    #[test]
    fn finalizer_changes_use_delete_from_primitive_list() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let modified = json!({"metadata": {"finalizers": ["c", "d", "a"]}});
        let patch = round_trip(original, modified, "v1", "Secret");
        assert_eq!(
            patch,
            json!({"metadata": {
                "finalizers": ["d"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "$setElementOrder/finalizers": ["c", "d", "a"],
            }})
        );
    }

    #[test]
    fn atomic_lists_are_sent_whole() {
        let original = json!({"spec": {"containers": [{"name": "a"}], "tolerations": [{"key": "x"}, {"key": "y"}]}});
        let modified =
            json!({"spec": {"containers": [{"name": "a"}], "tolerations": [{"key": "y"}]}});
        let patch = round_trip(original, modified, "v1", "Pod");
        assert_eq!(patch, json!({"spec": {"tolerations": [{"key": "y"}]}}));
    }

    #[test]
    fn reordered_containers_send_only_the_order() {
        let original = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let modified = deployment(json!([{"name": "b"}, {"name": "a"}]));
        let patch = round_trip(original, modified, "apps/v1", "Deployment");
        assert_eq!(
            patch,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}})
        );
    }

    #[test]
    fn deployment_strategy_change_sends_retain_keys() {
        let mut original = deployment(json!([{"name": "a"}]));
        original["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
        let mut modified = original.clone();
        modified["spec"]["strategy"] = json!({"type": "Recreate"});
        let patch = round_trip(original, modified, "apps/v1", "Deployment");
        assert_eq!(
            patch["spec"]["strategy"],
            json!({"type": "Recreate", "rollingUpdate": null, "$retainKeys": ["type"]})
        );
    }

    #[test]
    fn volume_source_change_sends_retain_keys_in_the_element() {
        let original = json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}});
        let modified = json!({"spec": {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]}});
        let patch = round_trip(original, modified, "v1", "Pod");
        assert_eq!(
            patch["spec"]["volumes"],
            json!([{"name": "v", "secret": {"secretName": "s"}, "configMap": null, "$retainKeys": ["name", "secret"]}])
        );
    }

    #[test]
    fn round_trips_reproduce_the_modified_object() {
        let cases: Vec<(Value, Value, &str, &str)> = vec![
            // A container added in the middle, another removed, env reordered and changed.
            (
                deployment(json!([
                    {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                    {"name": "b", "image": "b:1"},
                    {"name": "c", "image": "c:1"},
                ])),
                deployment(json!([
                    {"name": "c", "image": "c:2"},
                    {"name": "new", "image": "n:1", "ports": [{"containerPort": 80}]},
                    {"name": "a", "image": "a:1", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]},
                ])),
                "apps/v1",
                "Deployment",
            ),
            // Ports merged by containerPort, volume mounts by mountPath.
            (
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 81}],
                    "volumeMounts": [{"name": "d", "mountPath": "/d"}]}], "volumes": [{"name": "d", "emptyDir": {}}]}}),
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 81, "name": "alt"}],
                    "volumeMounts": [{"name": "d", "mountPath": "/e"}]}], "volumes": [{"name": "d", "emptyDir": {"medium": "Memory"}}]}}),
                "v1",
                "Pod",
            ),
            // Conditions merged by type, status fields changed and removed.
            (
                json!({"status": {"phase": "Pending", "reason": "x", "conditions": [
                    {"type": "PodScheduled", "status": "False"}, {"type": "Ready", "status": "False"}]}}),
                json!({"status": {"phase": "Running", "conditions": [
                    {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"}]}}),
                "v1",
                "Pod",
            ),
            // CronJob: containers deep in the job template.
            (
                json!({"spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": {
                    "containers": [{"name": "j", "args": ["a"]}], "restartPolicy": "Never"}}}}}}),
                json!({"spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {
                    "containers": [{"name": "j", "args": ["b"]}, {"name": "k"}], "restartPolicy": "Never"}}}}}}),
                "batch/v1",
                "CronJob",
            ),
            // Metadata: finalizers, owner references, labels, a list emptied.
            (
                json!({"metadata": {"finalizers": ["x", "y"], "ownerReferences": [{"uid": "1"}, {"uid": "2"}],
                    "labels": {"a": "1"}}, "spec": {"ports": [{"port": 1}, {"port": 2}]}}),
                json!({"metadata": {"finalizers": ["y"], "ownerReferences": [{"uid": "2", "controller": true}],
                    "labels": {"b": "2"}}, "spec": {"ports": []}}),
                "v1",
                "Service",
            ),
            // A list added from nothing and a field whose type changed.
            (
                json!({"metadata": {"name": "n"}, "spec": {"unschedulable": "yes"}}),
                json!({"metadata": {"name": "n", "finalizers": ["f"]}, "spec": {"unschedulable": true, "podCIDRs": ["10.0.0.0/24"]}}),
                "v1",
                "Node",
            ),
        ];
        for (original, modified, api_version, kind) in cases {
            round_trip(original, modified, api_version, kind);
        }
    }

    #[test]
    fn diff_of_a_custom_resource_is_refused() {
        let err = create_strategic_merge_patch(&json!({}), &json!({}), "example.com/v1", "Widget")
            .unwrap_err();
        assert!(
            matches!(err, PatchError::StrategicMergeUnsupported { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn diff_of_a_container_without_a_name_is_an_error() {
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let modified = json!({"spec": {"containers": [{"image": "x"}]}});
        let err = create_strategic_merge_patch(&original, &modified, "v1", "Pod").unwrap_err();
        assert!(
            matches!(err, PatchError::MissingMergeKey { key: "name", .. }),
            "{err:?}"
        );
    }
}
