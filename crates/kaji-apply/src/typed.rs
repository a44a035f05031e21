//! Walks over JSON values guided by their [`Shape`]: the field set of a
//! value, the comparison of two values, the merge of an applied
//! configuration into a live object, and the removal of one field.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::path::{compact, Path, PathElement};
use crate::schema::{Shape, View, ATOMIC};
use crate::set::Set;

/// How a value is walked.
enum Node<'v, 's> {
    /// Owned whole: a scalar, null, or an atomic value.
    Leaf,
    /// An object owned field by field.
    Struct(&'v Map<String, Value>, &'s Shape),
    /// An associative or set list: elements with their path element.
    List(Vec<(PathElement, &'v Value)>, &'s Shape),
}

/// Classifies `v`. Errors name a list whose elements cannot be identified
/// (a missing key field, a duplicate element, a non-object element).
fn node<'v, 's>(v: &'v Value, shape: &'s Shape) -> Result<Node<'v, 's>, String> {
    match (v, shape.view()) {
        (Value::Object(map), View::Struct) => Ok(Node::Struct(map, shape)),
        (Value::Array(items), View::Map(keys, elem)) => {
            Ok(Node::List(elements(items, Some(&keys))?, elem))
        }
        (Value::Array(items), View::Set) => Ok(Node::List(elements(items, None)?, &ATOMIC)),
        _ => Ok(Node::Leaf),
    }
}

/// The elements of a keyed or set list with their path elements.
/// `keys` are those of an associative list, `None` for a set.
fn elements<'v>(
    items: &'v [Value],
    keys: Option<&[(&str, Option<&str>)]>,
) -> Result<Vec<(PathElement, &'v Value)>, String> {
    let mut out = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for item in items {
        let pe = match keys {
            Some(keys) => {
                let Value::Object(obj) = item else {
                    return Err(format!("associative list element is not an object: {item}"));
                };
                let mut pairs = Vec::with_capacity(keys.len());
                for (name, default) in keys {
                    let value = match (obj.get(*name), default) {
                        (Some(v), _) if !v.is_null() => compact(v),
                        (_, Some(default)) => default.to_string(),
                        _ => {
                            return Err(format!(
                                "associative list element omits key field {name:?}: {item}"
                            ))
                        }
                    };
                    pairs.push((name.to_string(), value));
                }
                pairs.sort();
                PathElement::Key(pairs)
            }
            None => PathElement::Value(compact(item)),
        };
        if !seen.insert(pe.clone()) {
            return Err(format!("duplicate entries for {}", pe.fields_key()));
        }
        out.push((pe, item));
    }
    Ok(out)
}

/// Like [`node`], but a list that cannot be keyed is owned whole, as
/// Kubernetes tolerates such lists in stored objects.
fn lenient<'v, 's>(v: &'v Value, shape: &'s Shape) -> Node<'v, 's> {
    node(v, shape).unwrap_or(Node::Leaf)
}

/// The fields `v` sets, as structured-merge-diff's `ToFieldSet`: scalars,
/// atomic values, empty objects, nulls and list elements are members.
///
/// # Errors
/// A list whose elements cannot be identified.
pub(crate) fn field_set(v: &Value, shape: &Shape) -> Result<Set, String> {
    let mut out = Set::default();
    collect(v, shape, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn collect(v: &Value, shape: &Shape, path: &mut Path, out: &mut Set) -> Result<(), String> {
    match node(v, shape)? {
        Node::Leaf => out.insert(path),
        Node::Struct(map, shape) => {
            for (k, child) in map {
                path.push(PathElement::Field(k.clone()));
                collect(child, shape.field(k), path, out)?;
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                    out.insert(path);
                }
                path.pop();
            }
        }
        Node::List(items, elem) => {
            for (pe, child) in items {
                path.push(pe);
                collect(child, elem, path, out)?;
                out.insert(path);
                path.pop();
            }
        }
    }
    Ok(())
}

/// What changed between two values, as structured-merge-diff's `Compare`.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    /// Paths present only in the new value (objects and lists included).
    pub(crate) added: Set,
    /// Leaves present in both with different values.
    pub(crate) modified: Set,
    /// Paths present only in the old value.
    pub(crate) removed: Set,
}

/// Compares `old` with `new`.
///
/// Objects directly under the root (`spec`, `status`, `metadata`) are
/// never added or removed themselves (only what they hold), as
/// Kubernetes' typed objects always carry them.
pub(crate) fn compare(old: &Value, new: &Value, shape: &Shape) -> Comparison {
    let mut out = Comparison::default();
    diff(Some(old), Some(new), shape, &mut Vec::new(), &mut out);
    out
}

fn diff(
    old: Option<&Value>,
    new: Option<&Value>,
    shape: &Shape,
    path: &mut Path,
    out: &mut Comparison,
) {
    let o = old.map(|v| lenient(v, shape));
    let n = new.map(|v| lenient(v, shape));
    let is_struct = matches!(&o, Some(Node::Struct(..))) || matches!(&n, Some(Node::Struct(..)));
    let granular = match (&o, &n) {
        (Some(Node::Struct(om, s)), Some(Node::Struct(nm, _))) => {
            for (k, ov) in *om {
                path.push(PathElement::Field(k.clone()));
                diff(Some(ov), nm.get(k), s.field(k), path, out);
                path.pop();
            }
            for (k, nv) in nm.iter().filter(|(k, _)| !om.contains_key(*k)) {
                path.push(PathElement::Field(k.clone()));
                diff(None, Some(nv), s.field(k), path, out);
                path.pop();
            }
            true
        }
        (Some(Node::Struct(m, s)), None) | (None, Some(Node::Struct(m, s))) => {
            let old_side = o.is_some();
            for (k, v) in *m {
                path.push(PathElement::Field(k.clone()));
                let (a, b) = if old_side {
                    (Some(v), None)
                } else {
                    (None, Some(v))
                };
                diff(a, b, s.field(k), path, out);
                path.pop();
            }
            true
        }
        (Some(Node::List(ol, elem)), Some(Node::List(nl, _))) => {
            let new_items: HashMap<&PathElement, &Value> =
                nl.iter().map(|(p, v)| (p, *v)).collect();
            let old_keys: HashSet<&PathElement> = ol.iter().map(|(p, _)| p).collect();
            for (pe, ov) in ol {
                path.push(pe.clone());
                diff(Some(ov), new_items.get(pe).copied(), elem, path, out);
                path.pop();
            }
            for (pe, nv) in nl.iter().filter(|(p, _)| !old_keys.contains(p)) {
                path.push(pe.clone());
                diff(None, Some(nv), elem, path, out);
                path.pop();
            }
            true
        }
        (Some(Node::List(items, elem)), None) | (None, Some(Node::List(items, elem))) => {
            let old_side = o.is_some();
            for (pe, v) in items {
                path.push(pe.clone());
                let (a, b) = if old_side {
                    (Some(*v), None)
                } else {
                    (None, Some(*v))
                };
                diff(a, b, elem, path, out);
                path.pop();
            }
            true
        }
        _ => false,
    };
    match (old, new) {
        (Some(a), Some(b)) if !granular && a != b => out.modified.insert(path),
        (None, Some(_)) if !is_struct || path.len() > 1 => out.added.insert(path),
        (Some(_), None) if !is_struct || path.len() > 1 => out.removed.insert(path),
        _ => {}
    }
}

/// Merges the applied configuration `config` into `live`: objects and
/// keyed lists merge recursively, everything else is replaced by `config`.
///
/// # Errors
/// A list of `config` whose elements cannot be identified.
pub(crate) fn merge(live: &Value, config: &Value, shape: &Shape) -> Result<Value, String> {
    let c = node(config, shape)?;
    match (lenient(live, shape), c) {
        (Node::Struct(lm, s), Node::Struct(cm, _)) => {
            let mut out = lm.clone();
            for (k, cv) in cm {
                let merged = match lm.get(k) {
                    Some(lv) => merge(lv, cv, s.field(k))?,
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (Node::List(ll, elem), Node::List(cl, _)) => merge_lists(&ll, &cl, elem).map(Value::Array),
        _ => Ok(config.clone()),
    }
}

/// Merges two keyed lists in structured-merge-diff's order: elements of
/// both keep the applied order, live-only elements keep their place.
fn merge_lists(
    lhs: &[(PathElement, &Value)],
    rhs: &[(PathElement, &Value)],
    elem: &Shape,
) -> Result<Vec<Value>, String> {
    let in_lhs: HashMap<&PathElement, &Value> = lhs.iter().map(|(p, v)| (p, *v)).collect();
    let in_rhs: HashSet<&PathElement> = rhs.iter().map(|(p, _)| p).collect();
    let mut shared = rhs
        .iter()
        .map(|(p, _)| p)
        .filter(|p| in_lhs.contains_key(p));
    let mut next_shared = shared.next();
    let mut merged_rhs: HashSet<&PathElement> = HashSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let pe = &lhs[li].0;
            if *pe == rhs[ri].0 {
                out.push(merge(lhs[li].1, rhs[ri].1, elem)?);
                merged_rhs.insert(pe);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if in_rhs.contains(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let pe = &lhs[li].0;
            if !in_rhs.contains(pe) {
                out.push(lhs[li].1.clone());
                li += 1;
                continue;
            }
            if merged_rhs.contains(pe) {
                li += 1;
                continue;
            }
        }
        if ri < rhs.len() {
            let (pe, rv) = &rhs[ri];
            merged_rhs.insert(pe);
            out.push(match in_lhs.get(pe) {
                Some(lv) => merge(lv, rv, elem)?,
                None => (*rv).clone(),
            });
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(out)
}

/// Removes the field at `path` from `v`. Objects and lists left empty by
/// the removal go too, unless `owned` holds a path at or below them. A key
/// field of a list element that stays is never removed.
pub(crate) fn remove(v: &mut Value, shape: &Shape, path: &[PathElement], owned: &Set) {
    remove_at(v, shape, path, 0, owned);
}

fn remove_at(v: &mut Value, shape: &Shape, path: &[PathElement], depth: usize, owned: &Set) {
    let Some(pe) = path.get(depth) else { return };
    let last = depth + 1 == path.len();
    match (v, shape.view()) {
        (Value::Object(map), View::Struct) => {
            let PathElement::Field(name) = pe else { return };
            if last {
                map.remove(name);
                return;
            }
            let Some(child) = map.get_mut(name) else {
                return;
            };
            remove_at(child, shape.field(name), path, depth + 1, owned);
            let emptied = match child {
                Value::Object(m) => m.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            if emptied && !owned.has_at_or_below(&path[..=depth]) {
                map.remove(name);
            }
        }
        (Value::Array(items), view @ (View::Map(..) | View::Set)) => {
            let keys = match &view {
                View::Map(keys, _) => Some(keys.as_slice()),
                _ => None,
            };
            let Some(i) = elements(items, keys)
                .ok()
                .and_then(|list| list.iter().position(|(p, _)| p == pe))
            else {
                return;
            };
            if last {
                items.remove(i);
                return;
            }
            if let View::Map(keys, elem) = view {
                let key_field = matches!(&path[depth + 1],
                    PathElement::Field(f) if keys.iter().any(|(k, _)| k == f));
                if key_field && depth + 2 == path.len() {
                    return;
                }
                remove_at(&mut items[i], elem, path, depth + 1, owned);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::path::display;
    use crate::schema::root;

    fn printed(set: &Set) -> Vec<String> {
        set.paths().iter().map(|p| display(p)).collect()
    }

    #[test]
    fn keyed_lists_merge_in_the_applied_order_and_keep_live_only_elements_in_place() {
        let shape = root("v1", "Pod");
        let names = |v: &Value| -> Vec<String> {
            v["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        let pod = |names: &[&str]| json!({"spec": {"containers": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}});
        let merged = merge(&pod(&["a", "b", "c"]), &pod(&["c", "a"]), shape).unwrap();
        assert_eq!(names(&merged), ["b", "c", "a"]);
        let merged = merge(&pod(&["a", "b"]), &pod(&["a", "x"]), shape).unwrap();
        assert_eq!(names(&merged), ["a", "b", "x"]);
    }

    #[test]
    fn compare_reports_added_nodes_modified_leaves_and_removed_elements() {
        let shape = root("v1", "Pod");
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [
            {"name": "x", "image": "1"}, {"name": "y", "image": "1"}]}});
        let new = json!({"metadata": {"labels": {"a": "2"}, "annotations": {"n": "v"}},
            "spec": {"containers": [{"name": "x", "image": "2"}]}});
        let c = compare(&old, &new, shape);
        assert_eq!(
            printed(&c.added),
            [".metadata.annotations", ".metadata.annotations.n"]
        );
        assert_eq!(
            printed(&c.modified),
            [".metadata.labels.a", ".spec.containers[name=\"x\"].image"]
        );
        assert_eq!(
            printed(&c.removed),
            [
                ".spec.containers[name=\"y\"]",
                ".spec.containers[name=\"y\"].image",
                ".spec.containers[name=\"y\"].name"
            ]
        );
    }

    #[test]
    fn removing_the_last_field_removes_unowned_empty_parents_but_never_key_fields() {
        let shape = root("v1", "Pod");
        let mut v = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "x", "image": "i"}]}});
        let f = |s: &str| PathElement::Field(s.into());
        let x = PathElement::Key(vec![("name".into(), "\"x\"".into())]);
        remove(
            &mut v,
            shape,
            &[f("metadata"), f("labels"), f("a")],
            &Set::default(),
        );
        assert!(v.get("metadata").is_none(), "{v}");
        remove(
            &mut v,
            shape,
            &[f("spec"), f("containers"), x.clone(), f("name")],
            &Set::default(),
        );
        remove(
            &mut v,
            shape,
            &[f("spec"), f("containers"), x, f("image")],
            &Set::default(),
        );
        assert_eq!(v["spec"], json!({"containers": [{"name": "x"}]}));
    }

    #[test]
    fn lists_without_identifiable_elements_are_errors_in_applied_config_and_atomic_when_stored() {
        let shape = root("v1", "Pod");
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a", "image": "i"}]}});
        assert!(field_set(&dup, shape).is_err());
        let c = compare(
            &dup,
            &json!({"spec": {"containers": [{"name": "a"}]}}),
            shape,
        );
        assert_eq!(printed(&c.modified), [".spec.containers"]);
    }
}
