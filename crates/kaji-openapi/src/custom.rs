//! Custom resources: the component schemas and paths of each served
//! CustomResourceDefinition version, shaped as apiextensions-apiserver's
//! OpenAPI builder shapes them.
//!
//! - The kind's schema is the version's `openAPIV3Schema` named
//!   `<reversed group>.<version>.<Kind>` (`com.example.stable.v1.CronTab`),
//!   with `apiVersion`, `kind` and `metadata` (a reference to `ObjectMeta`)
//!   set as properties, the same three added inside every
//!   `x-kubernetes-embedded-resource`, and `x-kubernetes-group-version-kind`.
//!   A version without a schema publishes `{"type": "object"}`.
//! - The list kind (`...CronTabList`) holds `items` of the kind and
//!   `ListMeta`.
//! - For swagger 2.0 the schema is first reduced to what kubectl's v2
//!   validation copes with (no `allOf`/`anyOf`/`oneOf`/`not`, no typed
//!   `nullable` values, nothing below `x-kubernetes-preserve-unknown-fields`);
//!   a schema preserving unknown fields at its root is published as a bare
//!   object, so client-side validation never rejects what the server keeps.
//! - Paths are the built-ins' (every verb, with `fieldValidation`,
//!   `dryRun`, `fieldManager` and `force` on patch, the `status` and `scale`
//!   subresources when served), except that `PATCH` does not accept
//!   strategic merge patch, which custom resources do not take.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::paths::{self, Body, PathItem};
use crate::schemas::{
    self, Schemas, API_VERSION_DESCRIPTION, GVK_EXTENSION, KIND_DESCRIPTION, LIST_META,
    OBJECT_META, REF_PREFIX,
};
use crate::CustomResource;

/// Which document a custom resource's schema goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Swagger 2.0 (`/openapi/v2`).
    V2,
    /// OpenAPI 3.0 (`/openapi/v3/apis/<group>/<version>`).
    V3,
}

/// `metadata`'s description on a custom kind (from `PartialObjectMetadata`).
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// `metadata`'s description on a custom list kind.
const LIST_METADATA_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// `com.example.stable.v1.CronTab`: Kubernetes' schema name for a custom
/// kind (`ToRESTFriendlyName` of `group/version/kind`: the group's dotted
/// parts reversed).
pub(crate) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let group: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", group.join("."))
}

/// The kind and list schemas of every custom resource, refs in v3 form.
pub(crate) fn definitions(resources: &[CustomResource], flavor: Flavor) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (info, schema) in resources {
        let name = definition_name(info.group, info.version, info.kind);
        let list_kind = format!("{}List", info.kind);
        let list = json!({
            "description": format!("{list_kind} is a list of {}", info.kind),
            "required": ["items"],
            "properties": {
                "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
                "items": {
                    "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", info.plural),
                    "type": "array",
                    "items": {"$ref": format!("{REF_PREFIX}{name}")},
                },
                "kind": {"description": KIND_DESCRIPTION, "type": "string"},
                "metadata": {
                    "description": LIST_METADATA_DESCRIPTION,
                    "$ref": format!("{REF_PREFIX}{LIST_META}"),
                },
            },
            GVK_EXTENSION: schemas::gvk_list(info.group, info.version, &list_kind),
        });
        out.insert(format!("{name}List"), list);
        let mut kind = kind_schema(schema, flavor);
        kind[GVK_EXTENSION] = schemas::gvk_list(info.group, info.version, info.kind);
        out.insert(name, kind);
    }
    out
}

/// The paths of every custom resource.
pub(crate) fn paths(resources: &[CustomResource], schemas: &Schemas) -> Vec<PathItem> {
    let mut items = Vec::new();
    for (info, _) in resources {
        let name = definition_name(info.group, info.version, info.kind);
        let list_name = format!("{name}List");
        paths::resource_paths(info, &name, &list_name, schemas, &mut items);
    }
    for op in items.iter_mut().flat_map(|i| i.operations.iter_mut()) {
        if op.body == Some(Body::Patch) {
            op.body = Some(Body::CustomPatch);
        }
    }
    items
}

fn is_true(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// The kind's schema without its GVK extension.
fn kind_schema(schema: &Value, flavor: Flavor) -> Value {
    let Value::Object(root) = schema else {
        return json!({"type": "object"});
    };
    if flavor == Flavor::V2 && is_true(root, "x-kubernetes-preserve-unknown-fields") {
        // kubectl's v2 validation would reject every field but the
        // declared ones; publish no properties at all.
        return json!({"type": "object"});
    }
    let mut schema = schema.clone();
    if flavor == Flavor::V2 {
        to_v2(&mut schema);
    }
    add_embedded_properties(&mut schema, flavor);
    set_type_and_object_meta(&mut schema);
    schema
}

/// Sets `apiVersion`, `kind` and `metadata` properties on an object schema.
fn set_type_and_object_meta(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    let properties = map
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !properties.is_object() {
        *properties = Value::Object(Map::new());
    }
    properties["apiVersion"] = json!({"description": API_VERSION_DESCRIPTION, "type": "string"});
    properties["kind"] = json!({"description": KIND_DESCRIPTION, "type": "string"});
    properties["metadata"] = json!({
        "description": METADATA_DESCRIPTION,
        "$ref": format!("{REF_PREFIX}{OBJECT_META}"),
    });
}

/// Calls `f` on each direct subschema: properties, items, additionalProperties.
fn for_each_child(map: &mut Map<String, Value>, f: &mut impl FnMut(&mut Value)) {
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(&mut *f);
    }
    match map.get_mut("items") {
        Some(items @ Value::Object(_)) => f(items),
        Some(Value::Array(items)) => items.iter_mut().for_each(&mut *f),
        _ => {}
    }
    if let Some(additional @ Value::Object(_)) = map.get_mut("additionalProperties") {
        f(additional);
    }
}

/// Inside every `x-kubernetes-embedded-resource`, adds the `apiVersion`,
/// `kind` and `metadata` properties and requires `apiVersion` and `kind`
/// (not in v2 where the embedded object preserves unknown fields: its
/// properties were dropped).
fn add_embedded_properties(schema: &mut Value, flavor: Flavor) {
    let Value::Object(map) = schema else {
        return;
    };
    for_each_child(map, &mut |child| add_embedded_properties(child, flavor));
    if flavor == Flavor::V2 && is_true(map, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if !is_true(map, "x-kubernetes-embedded-resource") {
        return;
    }
    set_type_and_object_meta(schema);
    let Value::Object(map) = schema else {
        return;
    };
    let required = map
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(required) = required {
        for name in ["kind", "apiVersion"] {
            if !required.iter().any(|r| r == name) {
                required.push(name.into());
            }
        }
    }
}

/// Reduces a structural schema to what kubectl's OpenAPI v2 handling copes
/// with, as Kubernetes' `ToStructuralOpenAPIV2` does.
fn to_v2(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    for key in ["allOf", "anyOf", "oneOf", "not"] {
        map.remove(key);
    }
    // Required properties that may be null cannot be required in v2.
    let nullable: Vec<String> = match map.get("properties") {
        Some(Value::Object(properties)) => properties
            .iter()
            .filter(|(_, p)| p.get("nullable") == Some(&Value::Bool(true)))
            .map(|(name, _)| name.clone())
            .collect(),
        _ => Vec::new(),
    };
    if !nullable.is_empty() {
        if let Some(Value::Array(required)) = map.get_mut("required") {
            required.retain(|r| !r.as_str().is_some_and(|r| nullable.iter().any(|n| n == r)));
            if required.is_empty() {
                map.remove("required");
            }
        }
    }
    if map.remove("nullable") == Some(Value::Bool(true)) {
        // Untyped values break in kubectl if items or properties are set.
        map.remove("type");
        map.remove("items");
        map.remove("properties");
    }
    if is_true(map, "x-kubernetes-preserve-unknown-fields") {
        map.remove("items");
        map.remove("properties");
    }
    if map.get("type") == Some(&Value::from("array")) && !map.contains_key("items") {
        map.remove("type");
    }
    for_each_child(map, &mut to_v2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_names_reverse_the_group() {
        assert_eq!(
            definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
        assert_eq!(
            definition_name("widgets", "v1beta1", "W"),
            "widgets.v1beta1.W"
        );
    }

    #[test]
    fn v2_drops_what_kubectl_cannot_validate() {
        let mut schema = json!({
            "type": "object",
            "required": ["a", "b"],
            "properties": {
                "a": {"type": "string", "nullable": true},
                "b": {"type": "integer", "anyOf": [{"type": "integer"}]},
                "c": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                      "properties": {"d": {"type": "string"}}},
                "e": {"type": "array", "items": {"type": "object", "nullable": true,
                      "properties": {"f": {"type": "string"}}}},
            },
        });
        to_v2(&mut schema);
        assert_eq!(schema["required"], json!(["b"]));
        assert_eq!(schema["properties"]["a"], json!({}));
        assert_eq!(schema["properties"]["b"], json!({"type": "integer"}));
        assert!(schema["properties"]["c"].get("properties").is_none());
        assert_eq!(schema["properties"]["e"]["items"], json!({}));
        assert_eq!(schema["properties"]["e"]["type"], "array");
    }

    #[test]
    fn embedded_resources_get_type_and_object_meta() {
        let schema = json!({
            "type": "object",
            "properties": {"template": {
                "type": "object",
                "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true,
            }},
        });
        let v3 = kind_schema(&schema, Flavor::V3);
        let template = &v3["properties"]["template"];
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
        assert_eq!(
            template["properties"]["metadata"]["$ref"],
            format!("{REF_PREFIX}{OBJECT_META}")
        );
        let v2 = kind_schema(&schema, Flavor::V2);
        assert!(v2["properties"]["template"].get("properties").is_none());
        assert!(v2["properties"]["metadata"].is_object());
    }

    #[test]
    fn a_root_preserving_unknown_fields_is_a_bare_object_in_v2_only() {
        let schema = json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"spec": {"type": "object"}},
        });
        assert_eq!(kind_schema(&schema, Flavor::V2), json!({"type": "object"}));
        let v3 = kind_schema(&schema, Flavor::V3);
        assert!(v3["properties"]["spec"].is_object());
        assert!(v3["properties"]["kind"].is_object());
        assert_eq!(
            kind_schema(&Value::Null, Flavor::V3),
            json!({"type": "object"})
        );
    }
}
