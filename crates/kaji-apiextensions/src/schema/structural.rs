//! Whether an `openAPIV3Schema` is acceptable in a CRD: the keywords CRDs
//! allow, structurality, list/map types, and defaults that validate.
//! Messages and paths are apiextensions-apiserver's.

use kaji_core::Cause;
use serde_json::{json, Map, Value};

use super::{validate, Node};

fn forbidden(field: String, detail: &str) -> Cause {
    Cause::forbidden(field, detail)
}

fn required(field: String, detail: &str) -> Cause {
    let mut c = Cause::required(field);
    if !detail.is_empty() {
        c.message = format!("Required value: {detail}");
    }
    c
}

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];
const UNSUPPORTED: &[(&str, &str)] = &[
    ("id", "id is not supported"),
    ("additionalItems", "additionalItems is not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("definitions", "definitions is not supported"),
    ("dependencies", "dependencies is not supported"),
    ("$ref", "$ref is not supported"),
];

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// Every reason the schema at `path` is not acceptable. `status_enabled`
/// restricts the root as Kubernetes does when the status subresource is on.
pub(crate) fn validate_crd_schema(schema: &Value, path: &str, status_enabled: bool) -> Vec<Cause> {
    let Some(root) = schema.as_object() else {
        return vec![Cause::invalid(path, schema, "must be an object")];
    };
    let mut out = Vec::new();
    if status_enabled {
        if let Some(t) = root.get("type").and_then(Value::as_str) {
            if t != "object" {
                out.push(Cause::invalid(
                    format!("{path}.type"),
                    &json!(t),
                    r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
                ));
            }
        }
        const ROOT_ALLOWED: &[&str] = &[
            "description",
            "type",
            "format",
            "title",
            "maximum",
            "exclusiveMaximum",
            "minimum",
            "exclusiveMinimum",
            "maxLength",
            "minLength",
            "pattern",
            "maxItems",
            "minItems",
            "uniqueItems",
            "multipleOf",
            "required",
            "items",
            "properties",
            "externalDocs",
            "example",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-validations",
        ];
        if root.keys().any(|k| !ROOT_ALLOWED.contains(&k.as_str())) {
            out.push(Cause::invalid(
                path,
                schema,
                "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled",
            ));
        }
    }
    if root.get("nullable").and_then(Value::as_bool) == Some(true) {
        out.push(forbidden(
            format!("{path}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut structural = Vec::new();
    node(
        schema,
        path,
        Level::Root,
        Ctx::default(),
        &mut out,
        &mut structural,
    );
    out.extend(structural.iter().cloned());
    if out.is_empty() {
        defaults(schema, path, false, true, &mut out);
    }
    out
}

#[derive(Clone, Copy, Default)]
struct Ctx {
    /// Inside apiVersion/kind/metadata of the root or an embedded resource.
    inside_meta: bool,
    /// Why defaults are forbidden here, if they are.
    no_defaults: Option<&'static str>,
}

fn key(path: &str, k: &str) -> String {
    format!("{path}.properties[{k}]")
}

/// Checks one node of the structural part of the schema.
fn node(v: &Value, path: &str, lvl: Level, ctx: Ctx, out: &mut Vec<Cause>, st: &mut Vec<Cause>) {
    let Some(m) = v.as_object() else {
        out.push(Cause::invalid(path, v, "must be an object"));
        return;
    };
    shapes(m, path, out);
    keywords(m, path, ctx, out);
    let n = Node::parse(v);

    // Structural invariants.
    if n.ty == "array" && !m.contains_key("items") {
        st.push(required(format!("{path}.items"), "must be specified"));
    }
    if m.contains_key("additionalProperties") && lvl == Level::Root {
        st.push(forbidden(
            format!("{path}.additionalProperties"),
            "must not be used at the root",
        ));
    }
    if n.embedded && n.ty != "object" {
        if n.ty.is_empty() {
            st.push(required(
                format!("{path}.type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            st.push(Cause::invalid(
                format!("{path}.type"),
                &json!(n.ty),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if n.ty.is_empty() && !n.int_or_string && !n.preserve_unknown {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        st.push(required(format!("{path}.type"), detail));
    }
    if n.embedded && m.contains_key("additionalProperties") {
        st.push(forbidden(
            format!("{path}.additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !n.ty.is_empty() && n.ty != "object" {
        st.push(Cause::invalid(
            format!("{path}.type"),
            &json!(n.ty),
            "must be object at the root",
        ));
    }
    if n.int_or_string && n.preserve_unknown {
        st.push(Cause::invalid(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if n.int_or_string && n.embedded {
        st.push(Cause::invalid(
            format!("{path}.x-kubernetes-embedded-resource"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let check_meta = lvl == Level::Root || n.embedded;
    for k in ["kind", "apiVersion"] {
        if let Some(p) = n.property(k).filter(|_| check_meta) {
            if p.ty != "string" {
                st.push(Cause::invalid(
                    format!("{}.type", key(path, k)),
                    &json!(p.ty),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = m.get("properties").and_then(|p| p.get("metadata")) {
        metadata_invariants(meta, check_meta, lvl, &key(path, "metadata"), st);
    }
    if n.embedded && !n.preserve_unknown && n.properties.is_empty() {
        st.push(required(format!("{path}.properties"), "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"));
    }
    if let Some(p) = &n.pattern {
        if let Err(e) = regex::Regex::new(p) {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            st.push(Cause::invalid(
                format!("{path}.pattern"),
                &json!(p),
                format!("must be a valid regular expression, but isn't: {first}"),
            ));
        }
    }
    for j in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = m.get(j).and_then(Value::as_array) {
            let skip_int_or_string = j == "anyOf" && is_int_or_string_any_of(list);
            for (i, sub) in list.iter().enumerate() {
                let skip = skip_int_or_string
                    || (j == "allOf"
                        && i == 0
                        && sub
                            .get("anyOf")
                            .and_then(Value::as_array)
                            .is_some_and(|a| is_int_or_string_any_of(a)));
                nested(sub, &format!("{path}.{j}[{i}]"), skip, &n, path, st);
            }
        }
    }
    if let Some(not) = m.get("not") {
        nested(not, &format!("{path}.not"), false, &n, path, st);
    }

    // Children.
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            let mut sub = ctx;
            if (lvl == Level::Root || n.embedded)
                && matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
            {
                sub.inside_meta = true;
                if lvl == Level::Root {
                    sub.no_defaults = Some(match k.as_str() {
                        "metadata" => "in top-level metadata",
                        "apiVersion" => "in top-level apiVersion",
                        _ => "in top-level kind",
                    });
                }
            }
            if lvl == Level::Root && k == "metadata" {
                // Only name/generateName may be restricted; their schemas are
                // checked as fields below.
            }
            node(p, &key(path, k), Level::Field, sub, out, st);
        }
    }
    if let Some(items) = m.get("items").filter(|i| i.is_object()) {
        node(items, &format!("{path}.items"), Level::Item, ctx, out, st);
    }
    if let Some(add) = m.get("additionalProperties").filter(|a| a.is_object()) {
        let mut sub = ctx;
        if ctx.inside_meta {
            sub.no_defaults = Some("inside additionalProperties applying to object metadata");
        }
        node(
            add,
            &format!("{path}.additionalProperties"),
            Level::Field,
            sub,
            out,
            st,
        );
    }
}

/// The JSON types of the keywords (a CRD is user input).
fn shapes(m: &Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
    let at = |k: &str| format!("{path}.{k}");
    for (k, v) in m {
        let want = match k.as_str() {
            "type"
            | "format"
            | "pattern"
            | "description"
            | "title"
            | "x-kubernetes-list-type"
            | "x-kubernetes-map-type" => v.is_string().then_some(()).ok_or("must be a string"),
            "nullable"
            | "uniqueItems"
            | "exclusiveMaximum"
            | "exclusiveMinimum"
            | "x-kubernetes-int-or-string"
            | "x-kubernetes-preserve-unknown-fields"
            | "x-kubernetes-embedded-resource" => {
                v.is_boolean().then_some(()).ok_or("must be a boolean")
            }
            "maxLength" | "minLength" | "maxItems" | "minItems" | "maxProperties"
            | "minProperties" => v
                .is_u64()
                .then_some(())
                .ok_or("must be a non-negative integer"),
            "maximum" | "minimum" | "multipleOf" => {
                v.is_number().then_some(()).ok_or("must be a number")
            }
            "required" | "x-kubernetes-list-map-keys" => v
                .as_array()
                .filter(|a| a.iter().all(Value::is_string))
                .map(|_| ())
                .ok_or("must be a list of strings"),
            "enum" | "allOf" | "anyOf" | "oneOf" | "x-kubernetes-validations" => {
                v.is_array().then_some(()).ok_or("must be a list")
            }
            "properties" => v.is_object().then_some(()).ok_or("must be an object"),
            "not" => v.is_object().then_some(()).ok_or("must be an object"),
            "additionalProperties" => (v.is_object() || v.is_boolean())
                .then_some(())
                .ok_or("must be a boolean or an object"),
            _ => Ok(()),
        };
        if let Err(detail) = want {
            out.push(Cause::invalid(at(k), v, detail));
        }
    }
    if let Some(items) = m.get("items") {
        if items.is_array() {
            out.push(forbidden(
                at("items"),
                "items must be a schema object and not an array",
            ));
        } else if !items.is_object() {
            out.push(Cause::invalid(at("items"), items, "must be an object"));
        }
    }
}

/// specStandardValidator and the per-node checks of Kubernetes'
/// `ValidateCustomResourceDefinitionOpenAPISchema`.
fn keywords(m: &Map<String, Value>, path: &str, ctx: Ctx, out: &mut Vec<Cause>) {
    let at = |k: &str| format!("{path}.{k}");
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    if !ty.is_empty() && !TYPES.contains(&ty) {
        out.push(Cause::not_supported(at("type"), &json!(ty), TYPES));
    }
    if ty == "null" {
        out.push(forbidden(
            at("type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if m.contains_key("default") {
        if let Some(reason) = ctx.no_defaults {
            out.push(forbidden(
                at("default"),
                &format!("must not be set {reason}"),
            ));
        }
    }
    for (k, detail) in UNSUPPORTED {
        if m.get(*k)
            .is_some_and(|v| !v.is_null() && v != &json!({}) && v != &json!(""))
        {
            out.push(forbidden(at(k), detail));
        }
    }
    if ctx.inside_meta && m.get("x-kubernetes-embedded-resource") == Some(&json!(true)) {
        out.push(forbidden(
            at("x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if m.get("uniqueItems") == Some(&json!(true)) {
        out.push(forbidden(
            at("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let has_props = m
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    if has_props
        && matches!(
            m.get("additionalProperties"),
            Some(Value::Object(_)) | Some(Value::Bool(false))
        )
    {
        out.push(forbidden(
            at("additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(false)) {
        out.push(Cause::invalid(
            at("x-kubernetes-preserve-unknown-fields"),
            &json!(false),
            "must be true or undefined",
        ));
    }
    if let Some(map_type) = m.get("x-kubernetes-map-type").and_then(Value::as_str) {
        if ty != "object" {
            type_for(
                out,
                &at("type"),
                ty,
                "must be object if x-kubernetes-map-type is specified",
            );
        }
        if map_type != "atomic" && map_type != "granular" {
            out.push(Cause::not_supported(
                at("x-kubernetes-map-type"),
                &json!(map_type),
                &["atomic", "granular"],
            ));
        }
    }
    list_type(m, path, ty, out);
    if let Some(rules) = m.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, r) in rules.iter().enumerate() {
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or("");
            if rule.trim().is_empty() {
                out.push(required(
                    format!("{path}.x-kubernetes-validations[{i}].rule"),
                    "rule is not specified",
                ));
            }
        }
    }
    // CEL-RULES-HOOK: compiling `x-kubernetes-validations` is
    // `crate::rules::Rules::compile`'s job; the caller of `crd::validate`
    // adds those causes (see `strategy::rule_compile_errors`).
}

fn type_for(out: &mut Vec<Cause>, field: &str, ty: &str, detail: &str) {
    if ty.is_empty() {
        out.push(required(field.to_string(), detail));
    } else {
        out.push(Cause::invalid(field, &json!(ty), detail));
    }
}

/// `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
fn list_type(m: &Map<String, Value>, path: &str, ty: &str, out: &mut Vec<Cause>) {
    let at = |k: &str| format!("{path}.{k}");
    let lt = m.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys: Vec<String> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let items = m.get("items").filter(|i| i.is_object());
    let item_ty = items
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(lt) = lt {
        if ty != "array" {
            type_for(
                out,
                &at("type"),
                ty,
                "must be array if x-kubernetes-list-type is specified",
            );
        } else if lt == "set" {
            if let Some(items) = items {
                let atomic = match item_ty {
                    "array" => items
                        .get("x-kubernetes-list-type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == "atomic"),
                    "object" => {
                        items.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
                    }
                    _ => true,
                };
                if !atomic {
                    let k = if item_ty == "array" {
                        "x-kubernetes-list-type"
                    } else {
                        "x-kubernetes-map-type"
                    };
                    out.push(Cause::invalid(
                        format!("{path}.items.{k}"),
                        items.get("x-kubernetes-list-type").unwrap_or(&Value::Null),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
            }
        }
        if !matches!(lt, "atomic" | "set" | "map") {
            out.push(Cause::not_supported(
                at("x-kubernetes-list-type"),
                &json!(lt),
                &["atomic", "set", "map"],
            ));
        }
    }
    if !keys.is_empty() {
        match lt {
            None => out.push(required(
                at("x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some("map") => {}
            Some(other) => out.push(Cause::invalid(
                at("x-kubernetes-list-type"),
                &json!(other),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    if lt == Some("map") {
        if keys.is_empty() {
            out.push(required(
                at("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match items {
            None => out.push(required(
                at("items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(_) if item_ty != "object" => out.push(Cause::invalid(
                format!("{path}.items.type"),
                &json!(item_ty),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(items) => {
                let keys_value = json!(keys);
                let mut seen = Vec::new();
                for k in &keys {
                    match items.get("properties").and_then(|p| p.get(k)) {
                        Some(p) => {
                            let pt = p.get("type").and_then(Value::as_str).unwrap_or("");
                            if pt == "array" || pt == "object" {
                                out.push(Cause::invalid(
                                    format!("{path}.items.properties[{k}].type"),
                                    &json!(item_ty),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                            let is_required = items
                                .get("required")
                                .and_then(Value::as_array)
                                .is_some_and(|r| r.iter().any(|x| x == k));
                            if !is_required && p.get("default").is_none() {
                                out.push(required(
                                    format!("{path}.items.properties[{k}].default"),
                                    "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                                ));
                            }
                            if p.get("nullable") == Some(&json!(true)) {
                                out.push(forbidden(
                                    format!("{path}.items.properties[{k}].nullable"),
                                    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                                ));
                            }
                        }
                        None => out.push(Cause::invalid(
                            at("x-kubernetes-list-map-keys"),
                            &keys_value,
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(&k) {
                        out.push(Cause::invalid(
                            at("x-kubernetes-list-map-keys"),
                            &keys_value,
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    if let (Some(lt @ ("set" | "map")), Some(items)) = (lt, items) {
        if items.get("nullable") == Some(&json!(true)) {
            out.push(forbidden(
                format!("{path}.items.nullable"),
                &format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
    }
}

/// metadata may only restrict name and generateName at the root, and must
/// be an object wherever resource metadata is.
fn metadata_invariants(
    meta: &Value,
    check_meta: bool,
    lvl: Level,
    path: &str,
    st: &mut Vec<Cause>,
) {
    let ty = meta.get("type").and_then(Value::as_str).unwrap_or("");
    if check_meta && ty != "object" {
        st.push(Cause::invalid(
            format!("{path}.type"),
            &json!(ty),
            "must be object",
        ));
    }
    if lvl != Level::Root {
        return;
    }
    let Some(m) = meta.as_object() else { return };
    let only_names = m
        .get("properties")
        .and_then(Value::as_object)
        .is_none_or(|p| p.keys().all(|k| k == "name" || k == "generateName"));
    let extra = m
        .keys()
        .any(|k| !matches!(k.as_str(), "type" | "default" | "properties"));
    if extra || !only_names {
        st.push(forbidden(
            path.to_string(),
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

fn is_int_or_string_any_of(list: &[Value]) -> bool {
    list.len() == 2 && list[0] == json!({"type": "integer"}) && list[1] == json!({"type": "string"})
}

/// A schema under allOf/anyOf/oneOf/not: value validation only, and every
/// property or items it names must exist in the structural part `s`.
fn nested(v: &Value, path: &str, skip_any_of: bool, s: &Node, s_path: &str, st: &mut Vec<Cause>) {
    let Some(m) = v.as_object() else {
        st.push(Cause::invalid(path, v, "must be an object"));
        return;
    };
    let at = |k: &str| format!("{path}.{k}");
    if m.contains_key("type") && !skip_any_of {
        st.push(forbidden(at("type"), "must be empty to be structural"));
    }
    for (k, detail) in [
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
        (
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ),
        (
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ),
        ("x-kubernetes-validations", "must be empty to be structural"),
    ] {
        if m.contains_key(k) {
            st.push(forbidden(at(k), detail));
        }
    }
    for (k, detail) in [
        ("nullable", "must be false to be structural"),
        (
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        ),
    ] {
        if m.get(k) == Some(&json!(true)) {
            st.push(forbidden(at(k), detail));
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        if props.contains_key("metadata") {
            st.push(forbidden(
                format!("{path}.properties[metadata]"),
                "must not be specified in a nested context",
            ));
        }
        for (k, p) in props {
            let vp = format!("{path}.properties[{k}]");
            match s.property(k) {
                Some(sp) => nested(p, &vp, false, sp, &key(s_path, k), st),
                None if s.additional_schema().is_some() => {}
                None => st.push(required(
                    key(s_path, k),
                    &format!("because it is defined in {vp}"),
                )),
            }
        }
    }
    if let Some(items) = m.get("items") {
        let vp = format!("{path}.items");
        match &s.items {
            Some(si) => nested(items, &vp, false, si, &format!("{s_path}.items"), st),
            None => st.push(required(
                format!("{s_path}.items"),
                &format!("because it is defined in {vp}"),
            )),
        }
    }
    for j in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = m.get(j).and_then(Value::as_array) {
            for (i, sub) in list.iter().enumerate() {
                nested(sub, &format!("{path}.{j}[{i}]"), false, s, s_path, st);
            }
        }
    }
    if let Some(not) = m.get("not") {
        nested(not, &format!("{path}.not"), false, s, s_path, st);
    }
}

/// Every `default` must validate against its schema and have no fields
/// pruning would drop (apiVersion/kind/metadata defaults are forbidden
/// elsewhere and skipped here).
fn defaults(v: &Value, path: &str, inside_meta: bool, is_root: bool, out: &mut Vec<Cause>) {
    let Some(m) = v.as_object() else { return };
    let n = Node::parse(v);
    if let (Some(d), false) = (&n.default, inside_meta) {
        let field = format!("{path}.default");
        let mut pruned = d.clone();
        super::prune(&mut pruned, Some(&n), n.embedded, "", &mut Vec::new());
        if &pruned != d {
            out.push(Cause::invalid(
                field.clone(),
                d,
                "must not have unknown fields",
            ));
        }
        out.extend(validate::validate(&n, d, Some(&field)));
    }
    if let Some(items) = m.get("items") {
        defaults(items, &format!("{path}.items"), inside_meta, false, out);
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            let meta = inside_meta
                || ((n.embedded || is_root)
                    && matches!(k.as_str(), "metadata" | "apiVersion" | "kind"));
            defaults(p, &key(path, k), meta, false, out);
        }
    }
    if let Some(add) = m.get("additionalProperties").filter(|a| a.is_object()) {
        defaults(
            add,
            &format!("{path}.additionalProperties"),
            inside_meta,
            false,
            out,
        );
    }
}
