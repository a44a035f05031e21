//! Merging lists: by merge key, as ordered sets of plain values, or
//! replaced whole; the `$patch` list elements, `$setElementOrder` and
//! `$deleteFromPrimitiveList` directives; and the order of the result.

use serde_json::{Map, Value};

use crate::error::PatchError;
use crate::schema::{self, Field, Strategy, Type};
use crate::strategic::{child, json_eq, merge_map, same_type, shown, DIRECTIVE, SET_ELEMENT_ORDER};

/// Merges a patch list into the current list of `field`.
pub(crate) fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &Field,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    match field.strategy {
        Strategy::MergeList { key, .. } => merge_merging_list(original, patch, key, field.ty, path),
        _ => Ok(patch.into_iter().filter_map(without_directives).collect()),
    }
}

/// A value taken whole from the patch: maps holding `$patch` are dropped and
/// `null` map values removed, as Kubernetes does for values it does not merge.
fn without_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let cleaned = m
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .filter_map(|(k, v)| without_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(cleaned))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(without_directives).collect(),
        )),
        other => Some(other),
    }
}

/// Merges a list tagged `patchStrategy: merge`.
fn merge_merging_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&'static str>,
    ty: Option<&'static Type>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !holds_objects(&original, &patch, path)? {
        let server_order = original.clone();
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.into_iter().chain(patch.iter().cloned()) {
            if !merged.iter().any(|m| json_eq(m, &v)) {
                merged.push(v);
            }
        }
        let id = ElementId::Whole;
        let (in_patch, server_only) = partition(merged, &patch, id);
        return Ok(normalize_order(
            in_patch,
            &patch,
            server_only,
            &server_order,
            id,
        ));
    }

    let key = key.ok_or_else(|| PatchError::ObjectsInPrimitiveList { path: shown(path) })?;
    let (base, plain) = split_special_elements(original, patch, key, ty, path)?;
    let id = ElementId::Key(key);
    for element in &base {
        require_key(element, key, path)?;
    }
    let server_order = base.clone();
    let mut merged = base;
    let mut patch_ids = Vec::with_capacity(plain.len());
    for element in plain {
        let Some(key_value) = element.get(key).cloned() else {
            return Err(missing_key(path, key, &Value::Object(element)));
        };
        match merged.iter().position(|m| id.matches(m, &key_value)) {
            Some(pos) => {
                let Value::Object(current) = std::mem::take(&mut merged[pos]) else {
                    unreachable!("holds_objects checked every element");
                };
                merged[pos] = Value::Object(merge_map(current, element, ty, path)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), element, ty, path)?)),
        }
        patch_ids.push(Value::Object(Map::from_iter([(key.to_owned(), key_value)])));
    }
    let (in_patch, server_only) = partition(merged, &patch_ids, id);
    Ok(normalize_order(
        in_patch,
        &patch_ids,
        server_only,
        &server_order,
        id,
    ))
}

/// Whether the elements of both lists are objects; errors when they are of
/// mixed types or lists.
fn holds_objects(original: &[Value], patch: &[Value], path: &str) -> Result<bool, PatchError> {
    let mut all = original.iter().chain(patch);
    let Some(first) = all.next() else {
        return Ok(false);
    };
    if first.is_array() || all.any(|v| !same_type(v, first)) {
        return Err(PatchError::MixedListElements { path: shown(path) });
    }
    Ok(first.is_object())
}

/// The base list and the plain patch elements still to merge into it.
type SplitList = (Vec<Value>, Vec<Map<String, Value>>);

/// Handles the elements of a merging patch list that carry `$patch`:
/// `delete` removes the matching original elements, `replace` makes the rest
/// of the patch list the whole new list. Returns the base list and the plain
/// patch elements still to merge.
fn split_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    ty: Option<&'static Type>,
    path: &str,
) -> Result<SplitList, PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(mut element) = element else {
            return Err(PatchError::MixedListElements { path: shown(path) });
        };
        let Some(directive) = element.get(DIRECTIVE) else {
            plain.push(element);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(key_value) = element.get(key) else {
                    return Err(missing_key(path, key, &Value::Object(element)));
                };
                original.retain(|o| !ElementId::Key(key).matches(o, key_value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                element.shift_remove(DIRECTIVE);
                if !element.is_empty() {
                    plain.push(element);
                }
            }
            _ => {
                return Err(PatchError::UnknownDirective {
                    path: shown(path),
                    value: directive.to_string(),
                })
            }
        }
    }
    if !replace {
        return Ok((original, plain));
    }
    let base = plain
        .into_iter()
        .map(|element| merge_map(Map::new(), element, ty, path).map(Value::Object))
        .collect::<Result<_, _>>()?;
    Ok((base, Vec::new()))
}

fn missing_key(path: &str, key: &'static str, element: &Value) -> PatchError {
    PatchError::MissingMergeKey {
        path: shown(path),
        key,
        element: element.to_string(),
    }
}

fn require_key(element: &Value, key: &'static str, path: &str) -> Result<(), PatchError> {
    if element.get(key).is_some() {
        Ok(())
    } else {
        Err(missing_key(path, key, element))
    }
}

/// How list elements are identified when ordering and matching them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ElementId {
    /// Plain values (and lists of objects without a merge key) by their whole value.
    Whole,
    /// Objects by their merge key.
    Key(&'static str),
}

impl ElementId {
    /// The identity of an element, or `None` when it lacks the merge key.
    fn of(self, v: &Value) -> Option<&Value> {
        match self {
            ElementId::Whole => Some(v),
            ElementId::Key(k) => v.get(k),
        }
    }

    /// Whether `element` has the merge-key value `key_value`.
    fn matches(self, element: &Value, key_value: &Value) -> bool {
        match self {
            ElementId::Whole => json_eq(element, key_value),
            ElementId::Key(k) => element.get(k).is_some_and(|v| json_eq(v, key_value)),
        }
    }

    /// Whether two elements (or order entries) are the same item.
    fn same(self, a: &Value, b: &Value) -> bool {
        match (self.of(a), self.of(b)) {
            (Some(x), Some(y)) => json_eq(x, y),
            _ => false,
        }
    }

    /// The position of `v` in `order`.
    fn index_in(self, order: &[Value], v: &Value) -> Option<usize> {
        order.iter().position(|o| self.same(o, v))
    }
}

/// Splits `merged` into the items present in `by` and the others, keeping order.
fn partition(merged: Vec<Value>, by: &[Value], id: ElementId) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|v| id.index_in(by, v).is_some())
}

/// Kubernetes' `normalizeElementOrder`: sorts the patch items by
/// `patch_order` and the server-only items by `server_order`, then interleaves
/// them, placing a server-only item before a patch item only when both are
/// in `server_order` and it came first there.
fn normalize_order(
    in_patch: Vec<Value>,
    patch_order: &[Value],
    server_only: Vec<Value>,
    server_order: &[Value],
    id: ElementId,
) -> Vec<Value> {
    let right = sorted_by(in_patch, patch_order, id);
    let left = sorted_by(server_only, server_order, id);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (id.index_in(server_order, l), id.index_in(server_order, r)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Stable sort by position in `order`; items not in it go last.
fn sorted_by(mut items: Vec<Value>, order: &[Value], id: ElementId) -> Vec<Value> {
    items.sort_by_key(|v| id.index_in(order, v).unwrap_or(usize::MAX));
    items
}

/// Applies every `$setElementOrder/<list>` of `patch`, merging the list's
/// patch (if any) at the same time and removing both from `patch`.
pub(crate) fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Option<&'static Type>,
    path: &str,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let name = &directive[SET_ELEMENT_ORDER.len()..];
        let invalid = |expected| PatchError::InvalidDirectiveValue {
            path: shown(path),
            directive: directive.clone(),
            expected,
        };
        let Some(Value::Array(order)) = patch.shift_remove(&directive) else {
            return Err(invalid("a list"));
        };
        let field = schema::field_of(ty, name);
        let list_path = child(path, name);
        let id = match field.strategy {
            Strategy::MergeList { key: Some(key), .. } => {
                for entry in &order {
                    require_key(entry, key, &list_path)?;
                }
                ElementId::Key(key)
            }
            _ => ElementId::Whole,
        };
        let original_list = match original.get(name) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(_) => return Err(invalid("paired with a list field")),
        };
        let patch_list = match patch.shift_remove(name) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => return Err(invalid("paired with a list in the patch")),
        };
        if let Some(list) = &patch_list {
            check_patch_follows_order(list, &order, id, &list_path).map_err(|e| {
                e.unwrap_or_else(|| PatchError::SetElementOrderMismatch {
                    path: shown(path),
                    field: name.to_owned(),
                })
            })?;
        }
        let server_order = match (&original_list, &patch_list) {
            (Some(o), Some(p)) => order_reference(o, p, id),
            (o, _) => o.clone().unwrap_or_default(),
        };
        let merged = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(list), None) => list,
            (list, Some(p)) => merge_list(list.unwrap_or_default(), p, field, &list_path)?,
        };
        let (in_order, server_only) = partition(merged, &order, id);
        let ordered = normalize_order(in_order, &order, server_only, &server_order, id);
        original.insert(name.to_owned(), Value::Array(ordered));
    }
    Ok(())
}

/// The list against which Kubernetes places server-only items after a
/// `$setElementOrder` merge: not the original list, but the original list as
/// the merge left it in memory — items removed by `$patch: delete` gone, new
/// items filling the freed places, cut to the original length. This is a Go
/// slice-aliasing effect, but Kubernetes' own tests pin the resulting order
/// down (e.g. "add map and delete map from merging list"), so it is kept.
fn order_reference(original: &[Value], patch: &[Value], id: ElementId) -> Vec<Value> {
    let ElementId::Key(key) = id else {
        return original.to_vec();
    };
    let directive = |v: &Value| v.get(DIRECTIVE).and_then(Value::as_str).map(str::to_owned);
    let deleted: Vec<&Value> = patch
        .iter()
        .filter(|v| directive(v).as_deref() == Some("delete"))
        .filter_map(|v| v.get(key))
        .collect();
    let mut view: Vec<Value> = original
        .iter()
        .filter(|o| !deleted.iter().any(|d| id.matches(o, d)))
        .cloned()
        .collect();
    if !patch
        .iter()
        .any(|v| directive(v).as_deref() == Some("replace"))
    {
        for item in patch {
            if matches!(directive(item).as_deref(), None | Some("merge"))
                && item.get(key).is_some()
                && id.index_in(&view, item).is_none()
            {
                view.push(item.clone());
            }
        }
    }
    view.truncate(original.len());
    view
}

/// Kubernetes' `validatePatchWithSetOrderList`: the plain items of the patch
/// list must appear in `order`, in the same relative order. `Err(None)` means
/// they do not; `Err(Some(e))` reports an item without its merge key.
fn check_patch_follows_order(
    list: &[Value],
    order: &[Value],
    id: ElementId,
    path: &str,
) -> Result<(), Option<PatchError>> {
    let mut next = 0;
    for item in list.iter().filter(|v| v.get(DIRECTIVE).is_none()) {
        if let ElementId::Key(key) = id {
            require_key(item, key, path).map_err(Some)?;
        }
        loop {
            let Some(entry) = order.get(next) else {
                return Err(None);
            };
            next += 1;
            if id.same(item, entry) {
                break;
            }
        }
    }
    Ok(())
}

/// Applies `$deleteFromPrimitiveList/<list>`: removes every listed value from
/// the original list, whatever the list's strategy. A missing list stays missing.
pub(crate) fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    name: &str,
    to_delete: Value,
    directive: &str,
    path: &str,
) -> Result<(), PatchError> {
    let Value::Array(to_delete) = to_delete else {
        return Err(PatchError::InvalidDirectiveValue {
            path: shown(path),
            directive: directive.to_owned(),
            expected: "a list",
        });
    };
    if let Some(Value::Array(list)) = original.get_mut(name) {
        list.retain(|v| !to_delete.iter().any(|d| json_eq(d, v)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::strategic::tests::{apply_pod, apply_pod_err, names, pod, two_containers};
    use crate::{apply_strategic_merge_patch, PatchError};
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_keep_the_other_containers() {
        let out = apply_pod(
            &two_containers(),
            json!({"spec": {"containers": [{"name": "sidecar", "image": "proxy:2"}]}}),
        );
        let containers = &out["spec"]["containers"];
        assert_eq!(names(containers), ["app", "sidecar"]);
        assert_eq!(containers[1]["image"], "proxy:2");
        assert_eq!(containers[0]["image"], "app:1");
    }

    #[test]
    fn env_merges_by_name_inside_a_merged_container() {
        let out = apply_pod(
            &two_containers(),
            json!({"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "3"}]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
        );
    }

    #[test]
    fn new_list_items_without_set_element_order_go_before_server_only_items_like_kubernetes() {
        let out = apply_pod(
            &two_containers(),
            json!({"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}),
        );
        assert_eq!(
            names(&out["spec"]["containers"]),
            ["debug", "app", "sidecar"]
        );
    }

    #[test]
    fn patched_items_keep_their_original_place_among_server_only_items() {
        let original = pod(json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}));
        let out = apply_pod(
            &original,
            json!({"spec": {"containers": [{"name": "b", "image": "x"}, {"name": "d"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["a", "b", "d", "c"]);
    }

    #[test]
    fn ports_merge_by_container_port() {
        let original = pod(json!({"containers": [{"name": "app", "ports": [
            {"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}
        ]}]}));
        let out = apply_pod(
            &original,
            json!({"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443, "protocol": "TCP"}]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https", "protocol": "TCP"}])
        );
    }

    #[test]
    fn volumes_merge_by_name_and_volume_mounts_by_mount_path() {
        let original = pod(json!({
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        }));
        let out = apply_pod(
            &original,
            json!({"spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
                "containers": [{"name": "app", "volumeMounts": [
                    {"mountPath": "/data", "readOnly": true},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                ]}],
            }}),
        );
        assert_eq!(names(&out["spec"]["volumes"]), ["cfg", "data"]);
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "data", "mountPath": "/data", "readOnly": true}, {"name": "cfg", "mountPath": "/etc/cfg"}])
        );
    }

    #[test]
    fn finalizers_merge_as_a_set_without_duplicates() {
        let original = json!({"metadata": {"name": "cm", "finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "ConfigMap").unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let original = json!({"metadata": {"ownerReferences": [
            {"uid": "1", "kind": "ReplicaSet", "name": "rs"},
        ]}});
        let patch = json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}]}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "Pod").unwrap();
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "1", "kind": "ReplicaSet", "name": "rs", "controller": true}])
        );
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let original = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False"},
        ]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let out = apply_pod(&original, patch);
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}])
        );
        assert_eq!(out["status"]["phase"], "Pending");
    }

    #[test]
    fn node_addresses_and_conditions_merge_by_type() {
        let original = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
            "conditions": [{"type": "Ready", "status": "False"}],
        }});
        let patch = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}],
        }});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "Node").unwrap();
        assert_eq!(
            out["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}])
        );
        assert_eq!(
            out["status"]["conditions"][0],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn service_ports_merge_by_port() {
        let original =
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "Service").unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
    }

    #[test]
    fn lists_without_a_merge_strategy_are_replaced_whole() {
        let original = pod(json!({
            "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
            "containers": [{"name": "app", "args": ["--x", "--y"]}],
        }));
        let out = apply_pod(
            &original,
            json!({"spec": {
                "tolerations": [{"key": "c", "operator": "Exists"}],
                "containers": [{"name": "app", "args": ["--z"]}],
            }}),
        );
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "c", "operator": "Exists"}])
        );
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["--z"]));
    }

    #[test]
    fn endpoint_slice_endpoints_and_endpoints_subsets_are_replaced_whole() {
        let original =
            json!({"endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        let patch = json!({"endpoints": [{"addresses": ["10.0.0.3"]}]});
        let out =
            apply_strategic_merge_patch(&original, &patch, "discovery.k8s.io/v1", "EndpointSlice")
                .unwrap();
        assert_eq!(out["endpoints"], json!([{"addresses": ["10.0.0.3"]}]));

        let original = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        let patch = json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "Endpoints").unwrap();
        assert_eq!(out["subsets"], json!([{"addresses": [{"ip": "10.0.0.2"}]}]));
    }

    #[test]
    fn patch_delete_in_a_list_element_removes_the_matching_element() {
        let out = apply_pod(
            &two_containers(),
            json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["app"]);
    }

    #[test]
    fn patch_replace_in_a_list_element_replaces_the_whole_list() {
        let out = apply_pod(
            &two_containers(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
    }

    #[test]
    fn patch_merge_in_a_list_element_is_the_default_merge() {
        let out = apply_pod(
            &two_containers(),
            json!({"spec": {"containers": [{"$patch": "merge"}, {"name": "app", "image": "app:2"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["app", "sidecar"]);
        assert_eq!(out["spec"]["containers"][0]["image"], "app:2");
    }

    #[test]
    fn delete_from_primitive_list_removes_the_values() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "Secret").unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
    }

    #[test]
    fn delete_from_primitive_list_of_a_missing_list_adds_nothing() {
        let original = json!({"metadata": {"name": "x"}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "Secret").unwrap();
        assert_eq!(out, original);
    }

    #[test]
    fn set_element_order_reorders_a_merged_list() {
        let original = pod(json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}));
        let out = apply_pod(
            &original,
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["c", "a", "b"]);
    }

    #[test]
    fn set_element_order_places_new_items_where_it_says() {
        let original = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let out = apply_pod(
            &original,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "new"}, {"name": "b"}],
                "containers": [{"name": "new", "image": "x"}],
            }}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["a", "new", "b"]);
        assert!(out["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn set_element_order_keeps_server_only_items_near_their_neighbours() {
        // Kubernetes' "set elements order in a list with server-only items 3".
        let original = pod(json!({"containers": [
            {"name": "1"}, {"name": "2"}, {"name": "7"}, {"name": "9"}, {"name": "8"}, {"name": "3"}, {"name": "4"},
        ]}));
        let out = apply_pod(
            &original,
            json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]}}),
        );
        assert_eq!(
            names(&out["spec"]["containers"]),
            ["2", "1", "7", "9", "8", "4", "3"]
        );
    }

    #[test]
    fn set_element_order_with_a_deleted_and_an_added_item_keeps_server_only_items_before_the_new_one(
    ) {
        // kubectl apply removing "old" and adding "new" while the server added "extra".
        let original =
            pod(json!({"containers": [{"name": "old"}, {"name": "main"}, {"name": "extra"}]}));
        let out = apply_pod(
            &original,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "main"}, {"name": "new"}],
                "containers": [{"name": "new"}, {"name": "old", "$patch": "delete"}],
            }}),
        );
        assert_eq!(names(&out["spec"]["containers"]), ["main", "extra", "new"]);
    }

    #[test]
    fn set_element_order_orders_primitive_lists() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "d", "a"],
            "finalizers": ["d"],
            "$deleteFromPrimitiveList/finalizers": ["b"],
        }});
        let out = apply_strategic_merge_patch(&original, &patch, "v1", "Secret").unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "d", "a"]));
    }

    #[test]
    fn set_element_order_that_contradicts_the_patch_list_is_an_error() {
        let original = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let err = apply_pod_err(
            &original,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b"}, {"name": "a"}],
            }}),
        );
        assert!(
            matches!(err, PatchError::SetElementOrderMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("spec: "), "{err}");
    }

    #[test]
    fn missing_merge_key_is_an_error_naming_the_list() {
        let err = apply_pod_err(
            &two_containers(),
            json!({"spec": {"containers": [{"image": "x"}]}}),
        );
        assert_eq!(
            err.to_string(),
            "spec.containers: list element {\"image\":\"x\"} does not contain the merge key \"name\""
        );
    }

    #[test]
    fn mixed_element_types_in_a_merging_list_are_an_error() {
        let original = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!({"metadata": {"finalizers": [1]}});
        let err = apply_strategic_merge_patch(&original, &patch, "v1", "Secret").unwrap_err();
        assert!(
            matches!(err, PatchError::MixedListElements { .. }),
            "{err:?}"
        );
    }
}
