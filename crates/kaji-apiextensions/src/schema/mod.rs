//! The structural schema of one CRD version, acting on objects.
//!
//! A [`StructuralSchema`] is built once per served version from its
//! `schema.openAPIV3Schema` and then validates ([`StructuralSchema::validate`]),
//! defaults ([`StructuralSchema::apply_defaults`]) and prunes
//! ([`StructuralSchema::prune`]) custom objects the way Kubernetes'
//! apiextensions-apiserver does (kube-openapi's validator, the structural
//! defaulting and pruning algorithms, list-type and embedded-resource checks).
//! Whether a schema is acceptable at all is [`crate::crd`]'s business; the
//! structural checks it needs live in the private `structural` module here.

use kaji_core::Cause;
use regex::Regex;
use serde_json::{Map, Value};

mod formats;
pub(crate) mod structural;
mod validate;

/// The fields of `ObjectMeta`: what an embedded resource's `metadata` keeps
/// when pruned.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// The fields every resource carries besides its schema.
const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug, Clone)]
pub(crate) enum Additional {
    /// `additionalProperties: true|false`.
    Allows(bool),
    /// `additionalProperties: {schema}`.
    Schema(Box<Node>),
}

/// One node of a schema, read leniently from JSON (a wrong shape reads as
/// absent; [`crate::crd::validate`] reports wrong shapes).
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub ty: String,
    pub format: String,
    pub nullable: bool,
    pub int_or_string: bool,
    pub preserve_unknown: bool,
    pub embedded: bool,
    pub properties: Vec<(String, Node)>,
    pub additional: Option<Additional>,
    pub items: Option<Box<Node>>,
    pub required: Vec<String>,
    pub enum_values: Option<Vec<Value>>,
    pub pattern: Option<String>,
    pub regex: Option<Regex>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub unique_items: bool,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    pub default: Option<Value>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
}

fn count(v: Option<&Value>) -> Option<u64> {
    v.and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
}

fn flag(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn nodes(v: Option<&Value>) -> Vec<Node> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(Node::parse).collect())
        .unwrap_or_default()
}

impl Node {
    /// Reads a node; anything that is not an object reads as an empty node.
    pub fn parse(v: &Value) -> Node {
        let Some(m) = v.as_object() else {
            return Node::default();
        };
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let pattern = m.get("pattern").and_then(Value::as_str).map(String::from);
        let regex = pattern.as_deref().and_then(|p| Regex::new(p).ok());
        Node {
            ty: text("type"),
            format: text("format"),
            nullable: flag(m, "nullable"),
            int_or_string: flag(m, "x-kubernetes-int-or-string"),
            preserve_unknown: flag(m, "x-kubernetes-preserve-unknown-fields"),
            embedded: flag(m, "x-kubernetes-embedded-resource"),
            properties: m
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.iter().map(|(k, v)| (k.clone(), Node::parse(v))).collect())
                .unwrap_or_default(),
            additional: match m.get("additionalProperties") {
                Some(Value::Bool(b)) => Some(Additional::Allows(*b)),
                Some(v @ Value::Object(_)) => Some(Additional::Schema(Box::new(Node::parse(v)))),
                _ => None,
            },
            items: m
                .get("items")
                .filter(|v| v.is_object())
                .map(|v| Box::new(Node::parse(v))),
            required: m
                .get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            enum_values: m.get("enum").and_then(Value::as_array).cloned(),
            pattern,
            regex,
            maximum: m.get("maximum").and_then(Value::as_f64),
            exclusive_maximum: flag(m, "exclusiveMaximum"),
            minimum: m.get("minimum").and_then(Value::as_f64),
            exclusive_minimum: flag(m, "exclusiveMinimum"),
            multiple_of: m.get("multipleOf").and_then(Value::as_f64),
            max_length: count(m.get("maxLength")),
            min_length: count(m.get("minLength")),
            max_items: count(m.get("maxItems")),
            min_items: count(m.get("minItems")),
            unique_items: flag(m, "uniqueItems"),
            max_properties: count(m.get("maxProperties")),
            min_properties: count(m.get("minProperties")),
            default: m.get("default").cloned(),
            all_of: nodes(m.get("allOf")),
            any_of: nodes(m.get("anyOf")),
            one_of: nodes(m.get("oneOf")),
            not: m
                .get("not")
                .filter(|v| v.is_object())
                .map(|v| Box::new(Node::parse(v))),
            list_type: m
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .map(String::from),
            list_map_keys: m
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The schema of property `name`, if declared.
    pub fn property(&self, name: &str) -> Option<&Node> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, n)| n)
    }

    /// The schema of the additional properties, if a schema is given.
    pub fn additional_schema(&self) -> Option<&Node> {
        match &self.additional {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }
}

/// The structural schema of one CRD version (its `schema.openAPIV3Schema`).
///
/// # Guarantees
/// Never panics, whatever JSON it is built from: a malformed node reads as
/// an empty schema (which validates anything and prunes everything below it).
#[derive(Debug, Clone)]
pub struct StructuralSchema {
    root: Node,
}

impl StructuralSchema {
    /// Builds the schema of one version from its `openAPIV3Schema`, which is
    /// assumed to have been accepted by [`crate::crd::validate`].
    pub fn new(open_api_v3_schema: &Value) -> Self {
        StructuralSchema {
            root: Node::parse(open_api_v3_schema),
        }
    }

    /// Every way `obj` fails the schema, as Kubernetes reports it: field
    /// paths relative to the object root (`spec.replicas`,
    /// `spec.items[2].name`, and `spec.labels.foo` for a map value, as
    /// kube-openapi names them), messages as `kubectl` prints them.
    ///
    /// Also checks `x-kubernetes-list-type: set|map` uniqueness and that
    /// `x-kubernetes-embedded-resource` objects carry `apiVersion` and `kind`.
    ///
    /// # Caveats
    /// `metadata` at the root is checked only against what the schema says
    /// of it (at most `name`/`generateName`); ObjectMeta itself is the
    /// registry's. The `metadata` of embedded resources is not validated as
    /// ObjectMeta. `x-kubernetes-validations` rules are [`crate::rules`]'.
    pub fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate::validate(&self.root, obj, None)
    }

    /// Sets `default`s: an absent property with a default is set when its
    /// parent object exists, and so is a `null` where the schema is not
    /// `nullable`; recurses into properties, `items` and
    /// `additionalProperties` (whose nulls are defaulted too).
    pub fn apply_defaults(&self, obj: &mut Value) {
        apply_defaults(obj, Some(&self.root));
    }

    /// Removes fields the schema does not specify (except below
    /// `x-kubernetes-preserve-unknown-fields`) and returns their paths,
    /// sorted, in Kubernetes' form for `unknown field "…"` warnings
    /// (`spec.foo`, `spec.items[0].bar`; no leading dot).
    ///
    /// `apiVersion`, `kind` and `metadata` are kept at the root (metadata
    /// is the registry's) and at `x-kubernetes-embedded-resource` nodes,
    /// whose `metadata` is cut down to ObjectMeta's fields. Like
    /// Kubernetes' decoder, also drops `null`s the schema does not allow
    /// and has no default for (not reported as unknown).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        prune(obj, Some(&self.root), true, "", &mut unknown);
        prune_nulls(obj, Some(&self.root));
        unknown.sort();
        unknown
    }

    /// The root node, for the CRD checks.
    #[allow(dead_code)]
    pub(crate) fn root(&self) -> &Node {
        &self.root
    }
}

// ---------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------

fn non_nullable_null(v: &Value, s: Option<&Node>) -> bool {
    v.is_null() && s.is_some_and(|s| !s.nullable)
}

fn apply_defaults(x: &mut Value, s: Option<&Node>) {
    let Some(s) = s else { return };
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(default) = &prop.default else {
                    continue;
                };
                let set = match map.get(k) {
                    None => true,
                    Some(v) => non_nullable_null(v, Some(prop)),
                };
                if set {
                    map.insert(k.clone(), default.clone());
                }
            }
            let additional = s.additional_schema();
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.property(k) {
                    apply_defaults(v, Some(prop));
                } else if let Some(add) = additional {
                    if non_nullable_null(v, Some(add)) {
                        if let Some(d) = &add.default {
                            *v = d.clone();
                        }
                    }
                    apply_defaults(v, Some(add));
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.items.as_deref();
            for v in items.iter_mut() {
                if non_nullable_null(v, item_schema) {
                    if let Some(d) = item_schema.and_then(|i| i.default.as_ref()) {
                        *v = d.clone();
                    }
                }
                apply_defaults(v, item_schema);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Pruning
// ---------------------------------------------------------------------------

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Prunes `x` against `s` (`None`: nothing is known below here).
fn prune(x: &mut Value, s: Option<&Node>, is_root: bool, path: &str, unknown: &mut Vec<String>) {
    if let Some(s) = s {
        if s.preserve_unknown {
            skip_prune(x, s, is_root, path, unknown);
            return;
        }
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    unknown.push(join_key(path, k));
                }
                map.clear();
                return;
            };
            let embedded = s.embedded || is_root;
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = join_key(path, &k);
                if let Some(prop) = s.property(&k) {
                    if let Some(v) = map.get_mut(&k) {
                        prune(v, Some(prop), false, &child, unknown);
                    }
                } else if let Some(add) = &s.additional {
                    let add = match add {
                        Additional::Schema(n) => Some(n.as_ref()),
                        Additional::Allows(_) => None,
                    };
                    if let Some(v) = map.get_mut(&k) {
                        prune(v, add, false, &child, unknown);
                    }
                } else {
                    unknown.push(child);
                    map.remove(&k);
                }
            }
            if s.embedded && !is_root {
                prune_embedded_metadata(map, path, unknown);
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                prune(v, item_schema, false, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known
/// ones are still pruned by their own schema.
fn skip_prune(x: &mut Value, s: &Node, is_root: bool, path: &str, unknown: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            let embedded = s.embedded || is_root;
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = join_key(path, k);
                if let Some(prop) = s.property(k) {
                    prune(v, Some(prop), false, &child, unknown);
                } else if let Some(add) = s.additional_schema() {
                    prune(v, Some(add), false, &child, unknown);
                }
            }
            if s.embedded && !is_root {
                prune_embedded_metadata(map, path, unknown);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    skip_prune(v, item_schema, false, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Cuts an embedded resource's `metadata` down to ObjectMeta's fields.
fn prune_embedded_metadata(map: &mut Map<String, Value>, path: &str, unknown: &mut Vec<String>) {
    let Some(Value::Object(meta)) = map.get_mut("metadata") else {
        return;
    };
    let prefix = join_key(path, "metadata");
    meta.retain(|k, _| {
        let keep = OBJECT_META_FIELDS.contains(&k.as_str());
        if !keep {
            unknown.push(format!("{prefix}.{k}"));
        }
        keep
    });
}

/// Drops `null`s whose schema is not nullable and has no default (they
/// would fail validation for no reason the client can see).
fn prune_nulls(x: &mut Value, s: Option<&Node>) {
    match x {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let schema = s.and_then(|s| s.property(&k).or_else(|| s.additional_schema()));
                let drop = map.get(&k).is_some_and(|v| {
                    v.is_null() && schema.is_some_and(|n| !n.nullable && n.default.is_none())
                });
                if drop {
                    map.remove(&k);
                } else if let Some(v) = map.get_mut(&k) {
                    prune_nulls(v, schema);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for v in items.iter_mut() {
                prune_nulls(v, item_schema);
            }
        }
        _ => {}
    }
}

/// Go's `%v` for a float64: integers without a fraction, exponents past
/// 1e21 and below 1e-4 in Go's `e+NN` form.
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    if f.fract() == 0.0 {
        format!("{}", f as i128)
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::fixtures::*;
    use serde_json::json;

    #[test]
    fn markdown_view_defaults_fill_an_existing_spec() {
        let s = StructuralSchema::new(&schema_of(MARKDOWN_VIEW));
        let mut obj = json!({"spec": {"markdowns": {}}});
        s.apply_defaults(&mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"markdowns": {}, "replicas": 1, "viewerImage": "peaceiris/mdbook:latest"}})
        );
    }

    #[test]
    fn defaults_do_not_create_a_missing_parent_or_override_values() {
        let s = StructuralSchema::new(&schema_of(MARKDOWN_VIEW));
        let mut obj = json!({"metadata": {"name": "x"}});
        s.apply_defaults(&mut obj);
        assert_eq!(obj, json!({"metadata": {"name": "x"}}));
        let mut obj = json!({"spec": {"replicas": 4, "viewerImage": "mine"}});
        s.apply_defaults(&mut obj);
        assert_eq!(obj, json!({"spec": {"replicas": 4, "viewerImage": "mine"}}));
    }

    #[test]
    fn a_non_nullable_null_gets_the_default_and_a_nullable_one_stays() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "a": {"type": "string", "default": "x"},
            "b": {"type": "string", "nullable": true, "default": "y"},
            "list": {"type": "array", "items": {"type": "object", "properties": {
                "n": {"type": "integer", "default": 7}}}}}}));
        let mut obj = json!({"a": null, "b": null, "list": [{}, {"n": 1}]});
        s.apply_defaults(&mut obj);
        assert_eq!(
            obj,
            json!({"a": "x", "b": null, "list": [{"n": 7}, {"n": 1}]})
        );
    }

    #[test]
    fn pruning_drops_unknown_fields_and_reports_their_paths() {
        let s = StructuralSchema::new(&schema_of(MARKDOWN_VIEW));
        let mut obj = json!({"apiVersion": "view.zoetrope.github.io/v1", "kind": "MarkdownView",
            "metadata": {"name": "x", "whatever": 1},
            "spec": {"markdowns": {"a": "b"}, "replicas": 1, "extra": true, "more": {"deep": 1}},
            "junk": [1]});
        let removed = s.prune(&mut obj);
        assert_eq!(removed, ["junk", "spec.extra", "spec.more"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "view.zoetrope.github.io/v1", "kind": "MarkdownView",
                "metadata": {"name": "x", "whatever": 1},
                "spec": {"markdowns": {"a": "b"}, "replicas": 1}})
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_what_the_schema_does_not_know() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {"spec": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}}}}));
        let mut obj = json!({"spec": {"free": {"x": 1}, "known": {"a": "1", "b": 2}}});
        assert_eq!(s.prune(&mut obj), ["spec.known.b"]);
        assert_eq!(
            obj,
            json!({"spec": {"free": {"x": 1}, "known": {"a": "1"}}})
        );
    }

    #[test]
    fn embedded_resources_keep_type_meta_and_only_object_meta_fields() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {"items": {
            "type": "array", "items": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object"}}}}}}));
        let mut obj = json!({"items": [{"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "bogus": 1}, "spec": {}, "status": {}}]});
        assert_eq!(
            s.prune(&mut obj),
            ["items[0].metadata.bogus", "items[0].status"]
        );
        assert_eq!(
            obj,
            json!({"items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}]})
        );
    }

    #[test]
    fn pruning_drops_nulls_the_schema_cannot_hold() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "string", "nullable": true},
            "c": {"type": "string", "default": "d"}}}));
        let mut obj = json!({"a": null, "b": null, "c": null});
        assert!(s.prune(&mut obj).is_empty());
        assert_eq!(obj, json!({"b": null, "c": null}));
    }

    #[test]
    fn go_prints_floats_its_own_way() {
        assert_eq!(go_float(10.0), "10");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
    }

    #[test]
    fn malformed_schemas_never_panic() {
        for schema in [
            json!(null),
            json!([1]),
            json!({"properties": 3, "items": "x", "required": [1]}),
        ] {
            let s = StructuralSchema::new(&schema);
            let mut obj = json!({"a": [1, {"b": null}]});
            let _ = s.validate(&obj);
            s.apply_defaults(&mut obj);
            let _ = s.prune(&mut obj);
        }
    }
}
