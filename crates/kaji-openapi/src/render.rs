//! Renders the schemas and the operation model as a swagger 2.0 document or
//! as one OpenAPI 3.0 document per group version.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::paths::{
    self, Body, Operation, Param, PathItem, CUSTOM_PATCH_TYPES, PATCH_TYPES, PRODUCES,
};
use crate::schemas::{self, Definitions, GVK_EXTENSION, REF_PREFIX};

/// `info.version` of every document: the Kubernetes release kaji emulates.
const INFO_VERSION: &str = "v1.32.0";

fn info() -> Value {
    json!({"title": "Kubernetes", "version": INFO_VERSION})
}

/// The OpenAPI 3.0 document for one group version, or `None` if nothing is
/// served there.
pub(crate) fn v3(
    defs: &Definitions,
    items: &[&PathItem],
    group: &str,
    version: &str,
) -> Option<Value> {
    let items: Vec<&PathItem> = items
        .iter()
        .copied()
        .filter(|i| i.group == group && i.version == version)
        .collect();
    if items.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for item in &items {
        let mut path = Map::new();
        for op in &item.operations {
            path.insert(op.method.key().into(), v3_operation(op));
        }
        path.insert(
            "parameters".into(),
            item.params.iter().map(v3_param).collect(),
        );
        paths.insert(item.path.clone(), Value::Object(path));
    }
    let mut components = Map::new();
    for name in reachable(defs, items.iter().copied()) {
        if let Some(schema) = defs.get(&name) {
            components.insert(name, v3_schema(schema.clone()));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": components},
    }))
}

/// The swagger 2.0 document for every group version.
pub(crate) fn v2(defs: &Definitions, items: &[&PathItem]) -> Value {
    let mut paths = Map::new();
    for item in items {
        let mut path = Map::new();
        for op in &item.operations {
            path.insert(op.method.key().into(), v2_operation(op));
        }
        path.insert(
            "parameters".into(),
            item.params.iter().map(v2_param).collect(),
        );
        paths.insert(item.path.clone(), Value::Object(path));
    }
    let definitions: Map<String, Value> = reachable(defs, items.iter().copied())
        .into_iter()
        .filter_map(|name| {
            let schema = defs.get(&name)?.clone();
            Some((name, v2_schema(schema)))
        })
        .collect();
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
    })
}

/// The v3 index: `{"paths": {"api/v1": {"serverRelativeURL": ...}}}`.
pub(crate) fn v3_index(items: &[&PathItem], base_hash: impl Fn(&str) -> String) -> Value {
    let mut index = Map::new();
    for (group, version) in paths::group_versions(items.iter().copied()) {
        let key = paths::index_key(group, version);
        let url = format!("/openapi/v3/{key}?hash={}", base_hash(&key));
        index.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({"paths": index})
}

/// Names of every schema the operations refer to, closed over `$ref`s.
fn reachable<'a>(
    defs: &Definitions,
    items: impl Iterator<Item = &'a PathItem>,
) -> BTreeSet<String> {
    let mut pending: Vec<String> = Vec::new();
    for item in items {
        for op in &item.operations {
            pending.extend(op.responses.iter().map(|(_, s)| s.clone()));
            pending.push(schemas::STATUS.to_string());
            match &op.body {
                Some(Body::Object(s)) => pending.push(s.clone()),
                Some(Body::Patch | Body::CustomPatch) => pending.push(schemas::PATCH.to_string()),
                Some(Body::DeleteOptions) => pending.push(schemas::DELETE_OPTIONS.to_string()),
                None => {}
            }
            if op.action == "list" {
                pending.push(schemas::WATCH_EVENT.to_string());
            }
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = defs.get(&name) {
            schemas::for_each_ref(schema, &mut |target| {
                if !seen.contains(target) {
                    pending.push(target.to_string());
                }
            });
        }
    }
    seen
}

/// v3 shape: a `$ref` with siblings (a property's description) becomes
/// `allOf: [{$ref}]` beside them, as Kubernetes publishes it.
fn v3_schema(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for child in map.values_mut() {
                    walk(child);
                }
                if map.len() > 1 {
                    if let Some(Value::String(_)) = map.get("$ref") {
                        let target = map.remove("$ref").unwrap_or_default();
                        map.insert("allOf".into(), json!([{"$ref": target}]));
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// v2 shape: refs point into `#/definitions/`.
fn v2_schema(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        Value::String(target) if key == "$ref" => {
                            if let Some(name) = target.strip_prefix(REF_PREFIX) {
                                *target = format!("#/definitions/{name}");
                            }
                        }
                        _ => walk(child),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

fn v3_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn v2_ref(name: &str) -> Value {
    json!({"$ref": format!("#/definitions/{name}")})
}

fn v3_param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": if p.in_path { "path" } else { "query" },
        "description": p.description,
        "schema": {"type": p.ty.name(), "uniqueItems": true},
    });
    if p.in_path {
        v["required"] = true.into();
    }
    v
}

fn v2_param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": if p.in_path { "path" } else { "query" },
        "description": p.description,
        "type": p.ty.name(),
        "uniqueItems": true,
    });
    if p.in_path {
        v["required"] = true.into();
    }
    v
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "",
    }
}

fn extensions(op: &Operation, out: &mut Map<String, Value>) {
    out.insert("x-kubernetes-action".into(), op.action.into());
    let (g, v, k) = op.gvk;
    out.insert(GVK_EXTENSION.into(), schemas::gvk(g, v, k));
}

/// The media types a patch operation accepts.
fn patch_types(op: &Operation) -> &'static [&'static str] {
    match op.body {
        Some(Body::CustomPatch) => CUSTOM_PATCH_TYPES,
        _ => PATCH_TYPES,
    }
}

fn v3_operation(op: &Operation) -> Value {
    let mut out = Map::new();
    out.insert("tags".into(), json!([op.tag]));
    out.insert("description".into(), op.description.clone().into());
    out.insert("operationId".into(), op.id.clone().into());
    out.insert(
        "parameters".into(),
        op.params.iter().map(v3_param).collect(),
    );
    let body = match &op.body {
        Some(Body::Object(name)) => {
            Some(json!({"content": {"*/*": {"schema": v3_ref(name)}}, "required": true}))
        }
        Some(Body::DeleteOptions) => {
            Some(json!({"content": {"*/*": {"schema": v3_ref(schemas::DELETE_OPTIONS)}}}))
        }
        Some(Body::Patch | Body::CustomPatch) => {
            let content: Map<String, Value> = patch_types(op)
                .iter()
                .map(|t| (t.to_string(), json!({"schema": v3_ref(schemas::PATCH)})))
                .collect();
            Some(json!({"content": content, "required": true}))
        }
        None => None,
    };
    if let Some(body) = body {
        out.insert("requestBody".into(), body);
    }
    let mut responses: BTreeMap<String, Value> = op
        .responses
        .iter()
        .map(|(code, schema)| {
            let content: Map<String, Value> = PRODUCES
                .iter()
                .map(|t| (t.to_string(), json!({"schema": v3_ref(schema)})))
                .collect();
            (
                code.to_string(),
                json!({"description": status_text(*code), "content": content}),
            )
        })
        .collect();
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    out.insert("responses".into(), json!(responses));
    extensions(op, &mut out);
    Value::Object(out)
}

fn v2_operation(op: &Operation) -> Value {
    let mut out = Map::new();
    out.insert("tags".into(), json!([op.tag]));
    out.insert("description".into(), op.description.clone().into());
    out.insert("operationId".into(), op.id.clone().into());
    let consumes: Vec<&str> = match op.body {
        Some(Body::Patch | Body::CustomPatch) => patch_types(op).to_vec(),
        _ => vec!["*/*"],
    };
    out.insert("consumes".into(), json!(consumes));
    out.insert("produces".into(), json!(PRODUCES));
    out.insert("schemes".into(), json!(["https"]));
    let mut params: Vec<Value> = Vec::new();
    match &op.body {
        Some(Body::Object(name)) => {
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": v2_ref(name)}))
        }
        Some(Body::Patch | Body::CustomPatch) => params.push(
            json!({"name": "body", "in": "body", "required": true, "schema": v2_ref(schemas::PATCH)}),
        ),
        Some(Body::DeleteOptions) => {
            params.push(json!({"name": "body", "in": "body", "schema": v2_ref(schemas::DELETE_OPTIONS)}))
        }
        None => {}
    }
    params.extend(op.params.iter().map(v2_param));
    out.insert("parameters".into(), Value::Array(params));
    let mut responses: BTreeMap<String, Value> = op
        .responses
        .iter()
        .map(|(code, schema)| {
            (
                code.to_string(),
                json!({"description": status_text(*code), "schema": v2_ref(schema)}),
            )
        })
        .collect();
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    out.insert("responses".into(), json!(responses));
    extensions(op, &mut out);
    Value::Object(out)
}
