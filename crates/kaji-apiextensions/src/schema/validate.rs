//! Validation of a value against a structural schema, as kube-openapi's
//! validator and apiextensions' list-type and embedded-resource checks do it.
//!
//! Paths follow kube-openapi: properties and map values joined with `.`,
//! array items as `[i]`. Messages name that path and say `in body`, exactly
//! as `kubectl` shows them.

use std::collections::HashMap;

use kaji_core::{validation, Cause};
use serde_json::{json, Map, Value};

use super::{formats, go_float, Additional, Node};

/// Every failure of `obj` against `root`. `base` is the field path the
/// value sits at (`None` for an object root; the `default` path when a
/// schema default is checked).
pub(crate) fn validate(root: &Node, obj: &Value, base: Option<&str>) -> Vec<Cause> {
    let mut v = Validator {
        base,
        out: Vec::new(),
    };
    v.value(root, "", obj, true);
    v.out
}

struct Validator<'a> {
    base: Option<&'a str>,
    out: Vec<Cause>,
}

/// The JSON type of a value as kube-openapi infers it (`1.0` is a number).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as Go prints it in a field error (`3` for `3.0`).
fn shown(v: &Value) -> Value {
    if let Some(f) = v.as_f64().filter(|_| v.is_f64()) {
        if f.fract() == 0.0 && f.abs() < 1e15 {
            return json!(f as i64);
        }
    }
    v.clone()
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The format kube-openapi keeps after apiextensions strips the ones CRDs
/// do not validate.
fn effective_format(n: &Node) -> &str {
    if n.format.is_empty() {
        return "";
    }
    let ty = if n.int_or_string { "" } else { n.ty.as_str() };
    match ty {
        "" | "string" if formats::is_supported(&n.format) => &n.format,
        "integer" if n.format == "int32" || n.format == "int64" => &n.format,
        "number" if n.format == "float" || n.format == "double" => &n.format,
        _ => "",
    }
}

/// Whether `f` is an integer as go-openapi's `IsFloat64AJSONInteger` sees it.
fn is_json_integer(f: f64) -> bool {
    if !f.is_finite() {
        return false;
    }
    let diff = (f - f.round()).abs();
    diff == 0.0 || diff / f.abs().max(1.0) < 1e-9
}

impl Validator<'_> {
    /// The field path of an error at kube-openapi path `name`.
    fn field(&self, name: &str) -> String {
        let name = name.trim_start_matches('.');
        match (self.base, name.is_empty()) {
            (Some(b), true) => b.to_string(),
            (None, true) => String::new(),
            (Some(b), false) => format!("{b}.{name}"),
            (None, false) => name.to_string(),
        }
    }

    fn invalid(&mut self, name: &str, value: &Value, detail: String) {
        let field = self.field(name);
        self.out.push(Cause::invalid(field, &shown(value), detail));
    }

    fn type_invalid(&mut self, name: &str, shown_as: &str, type_name: &str) {
        let mut c = Cause::invalid(
            self.field(name),
            &Value::String(shown_as.to_string()),
            format!("{name} in body must be of type {type_name}: {shown_as:?}"),
        );
        c.reason = "FieldValueTypeInvalid";
        self.out.push(c);
    }

    fn too_many(&mut self, name: &str, actual: usize, max: u64) {
        let noun = if max == 1 { "item" } else { "items" };
        self.out.push(Cause {
            reason: "FieldValueTooMany",
            message: format!("Too many: {actual}: must have at most {max} {noun}"),
            field: self.field(name),
        });
    }

    /// A composite (allOf/anyOf/oneOf/not) failure: Kubernetes reports it
    /// at the value's root path with an empty value.
    fn composite(&mut self, detail: String) {
        let field = self.base.unwrap_or("").to_string();
        self.out.push(Cause::invalid(field, &json!(""), detail));
    }

    /// Validates `v` at kube-openapi path `name` against `n`.
    fn value(&mut self, n: &Node, name: &str, v: &Value, is_root: bool) {
        if v.is_null() {
            let typed = n.int_or_string || !n.ty.is_empty();
            if typed && !n.nullable {
                self.type_invalid(name, "null", &type_names(n));
            }
            self.enumeration(n, name, v);
            return;
        }
        self.type_check(n, name, v);
        match v {
            Value::Object(map) => self.object(n, name, map, is_root),
            Value::Array(items) => self.array(n, name, items),
            Value::String(s) => self.string(n, name, s),
            Value::Number(_) => self.number(n, name, v),
            _ => {}
        }
        self.enumeration(n, name, v);
        self.junctors(n, name, v);
    }

    fn type_check(&mut self, n: &Node, name: &str, v: &Value) {
        let allowed: Vec<&str> = if n.int_or_string {
            vec!["integer", "string"]
        } else if n.ty.is_empty() {
            return;
        } else {
            vec![n.ty.as_str()]
        };
        let k = kind(v);
        let float_int = k == "number"
            && v.as_f64().is_some_and(is_json_integer)
            && allowed.contains(&"integer");
        let int_float = k == "integer" && allowed.contains(&"number");
        let format = effective_format(n);
        if !matches!(v, Value::String(_) | Value::Array(_)) && !format.is_empty() {
            let data_format = match k {
                "integer" => "int64",
                "number" => "float64",
                _ => "",
            };
            if !(allowed.contains(&k) || data_format == format || float_int || int_float) {
                self.type_invalid(name, data_format, format);
                return;
            }
        }
        let numeric = allowed.contains(&"number") || allowed.contains(&"integer");
        if !numeric && !format.is_empty() && matches!(v, Value::String(_) | Value::Array(_)) {
            return;
        }
        if !(allowed.contains(&k) || float_int || int_float) {
            self.type_invalid(name, k, &allowed.join(","));
        }
    }

    fn object(&mut self, n: &Node, name: &str, map: &Map<String, Value>, is_root: bool) {
        let len = map.len();
        if let Some(min) = n.min_properties {
            if (len as u64) < min {
                self.invalid(
                    name,
                    &json!(len),
                    format!("{name} in body should have at least {min} properties"),
                );
            }
        }
        if let Some(max) = n.max_properties {
            if len as u64 > max {
                self.too_many(name, len, max);
            }
        }
        match &n.additional {
            Some(Additional::Allows(false)) => {
                for k in map.keys() {
                    if n.property(k).is_none() {
                        self.invalid(
                            name,
                            &json!(k),
                            format!("{name}.{k} in body is a forbidden property"),
                        );
                    }
                }
            }
            Some(Additional::Schema(add)) => {
                for (k, val) in map {
                    if n.property(k).is_none() {
                        self.value(add, &format!("{name}.{k}"), val, false);
                    }
                }
            }
            _ => {}
        }
        for (k, prop) in &n.properties {
            if let Some(val) = map.get(k) {
                self.value(prop, &child(name, k), val, false);
            }
        }
        for k in &n.required {
            if !map.contains_key(k) {
                self.out
                    .push(Cause::required(self.field(&format!("{name}.{k}"))));
            }
        }
        if n.embedded && !is_root {
            self.embedded_resource(name, map);
        }
    }

    /// apiVersion, kind and metadata of an `x-kubernetes-embedded-resource`.
    fn embedded_resource(&mut self, name: &str, map: &Map<String, Value>) {
        let at = |k: &str| self.field(&child(name, k));
        let mut out = Vec::new();
        match map.get("apiVersion") {
            None => out.push(Cause::required(at("apiVersion"))),
            Some(Value::String(s)) if s.is_empty() => out.push(Cause::invalid(
                at("apiVersion"),
                &json!(s),
                "must not be empty",
            )),
            Some(Value::String(s)) if s.matches('/').count() > 1 => out.push(Cause::invalid(
                at("apiVersion"),
                &json!(s),
                format!("unexpected GroupVersion string: {s}"),
            )),
            Some(Value::String(_)) => {}
            Some(other) => out.push(Cause::invalid(at("apiVersion"), other, "must be a string")),
        }
        match map.get("kind") {
            None => out.push(Cause::required(at("kind"))),
            Some(Value::String(s)) if s.is_empty() => {
                out.push(Cause::invalid(at("kind"), &json!(s), "must not be empty"))
            }
            Some(Value::String(s)) => {
                let errs = validation::is_dns1035_label(&s.to_lowercase());
                if !errs.is_empty() {
                    out.push(Cause::invalid(
                        at("kind"),
                        &json!(s),
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            errs.join(",")
                        ),
                    ));
                }
            }
            Some(other) => out.push(Cause::invalid(at("kind"), other, "must be a string")),
        }
        match map.get("metadata") {
            None => {}
            Some(meta @ Value::Object(m)) => {
                let mut meta = meta.clone();
                if m.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    meta["name"] = json!("fakename");
                }
                let namespaced = m
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                let prefix = at("metadata");
                for mut c in
                    validation::object_meta(&meta, namespaced, validation::name_is_path_segment)
                {
                    c.field = match c.field.strip_prefix("metadata") {
                        Some(rest) => format!("{prefix}{rest}"),
                        None => c.field,
                    };
                    out.push(c);
                }
            }
            Some(other) => out.push(Cause::invalid(
                at("metadata"),
                other,
                format!(
                    "json: cannot unmarshal {} into Go value of type v1.ObjectMeta",
                    kind(other)
                ),
            )),
        }
        self.out.extend(out);
    }

    fn array(&mut self, n: &Node, name: &str, items: &[Value]) {
        if let Some(item_schema) = &n.items {
            for (i, item) in items.iter().enumerate() {
                self.value(item_schema, &format!("{name}[{i}]"), item, false);
            }
        }
        let len = items.len();
        if let Some(min) = n.min_items {
            if (len as u64) < min {
                self.invalid(
                    name,
                    &json!(len),
                    format!("{name} in body should have at least {min} items"),
                );
            }
        }
        if let Some(max) = n.max_items {
            if len as u64 > max {
                self.too_many(name, len, max);
            }
        }
        if n.unique_items && !duplicate_indices(items).is_empty() {
            self.invalid(
                name,
                &json!(""),
                format!("{name} in body shouldn't contain duplicates"),
            );
        }
        match n.list_type.as_deref() {
            Some("set") => {
                for i in duplicate_indices(items) {
                    let field = self.field(&format!("{name}[{i}]"));
                    self.out.push(Cause::duplicate(field, &items[i]));
                }
            }
            Some("map") => self.list_map(n, name, items),
            _ => {}
        }
    }

    /// `x-kubernetes-list-type: map`: items are objects, keys are unique.
    fn list_map(&mut self, n: &Node, name: &str, items: &[Value]) {
        for (i, item) in items.iter().enumerate() {
            if !(item.is_object() || item.is_null()) {
                self.invalid(
                    &format!("{name}[{i}]"),
                    item,
                    "must be an object for an array of list-type map".into(),
                );
                return;
            }
        }
        let keys: Vec<Value> = items
            .iter()
            .map(|item| {
                let mut key = Map::new();
                for k in &n.list_map_keys {
                    if let Some(v) = item.get(k) {
                        key.insert(k.clone(), v.clone());
                    }
                }
                Value::Object(key)
            })
            .collect();
        for i in duplicate_indices(&keys) {
            let field = self.field(&format!("{name}[{i}]"));
            self.out.push(Cause::duplicate(field, &keys[i]));
        }
    }

    fn string(&mut self, n: &Node, name: &str, s: &str) {
        let chars = s.chars().count() as u64;
        if let Some(max) = n.max_length {
            if chars > max {
                let unit = if max == 1 { "byte" } else { "bytes" };
                self.out.push(Cause {
                    reason: "FieldValueTooLong",
                    message: format!("Too long: may not be more than {max} {unit}"),
                    field: self.field(name),
                });
            }
        }
        if let Some(min) = n.min_length {
            if chars < min {
                self.invalid(
                    name,
                    &json!(s),
                    format!("{name} in body should be at least {min} chars long"),
                );
            }
        }
        if let Some(pattern) = &n.pattern {
            match &n.regex {
                Some(re) if re.is_match(s) => {}
                Some(_) => self.invalid(
                    name,
                    &json!(s),
                    format!("{name} in body should match '{pattern}'"),
                ),
                None => self.invalid(
                    name,
                    &json!(s),
                    format!("{name} in body should match '{pattern}, but pattern is invalid'"),
                ),
            }
        }
        let format = effective_format(n);
        if !format.is_empty() && !formats::check(format, s) {
            let mut c = Cause::invalid(
                self.field(name),
                &json!(s),
                format!("{name} in body must be of type {format}: {s:?}"),
            );
            c.reason = "FieldValueTypeInvalid";
            self.out.push(c);
        }
    }

    fn number(&mut self, n: &Node, name: &str, v: &Value) {
        let Some(d) = v.as_f64() else { return };
        if let Some(factor) = n.multiple_of {
            if factor <= 0.0 {
                self.invalid(
                    name,
                    &json!(go_float(factor)),
                    format!(
                        "factor MultipleOf declared for {name} must be positive: {}",
                        go_float(factor)
                    ),
                );
            } else {
                let mult = if factor < 1.0 {
                    (1.0 / factor) * d
                } else {
                    d / factor
                };
                if !is_json_integer(mult) {
                    self.invalid(
                        name,
                        v,
                        format!(
                            "{name} in body should be a multiple of {}",
                            go_float(factor)
                        ),
                    );
                }
            }
        }
        if let Some(max) = n.maximum {
            let excl = n.exclusive_maximum;
            if (!excl && d > max) || (excl && d >= max) {
                let how = if excl {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.invalid(
                    name,
                    v,
                    format!("{name} in body should be {how} {}", go_float(max)),
                );
            }
        }
        if let Some(min) = n.minimum {
            let excl = n.exclusive_minimum;
            if (!excl && d < min) || (excl && d <= min) {
                let how = if excl {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.invalid(
                    name,
                    v,
                    format!("{name} in body should be {how} {}", go_float(min)),
                );
            }
        }
    }

    fn enumeration(&mut self, n: &Node, name: &str, v: &Value) {
        let Some(values) = &n.enum_values else { return };
        if values.is_empty() || (!v.is_null() && values.iter().any(|e| enum_equal(e, v))) {
            return;
        }
        let supported: Vec<String> = values
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let refs: Vec<&str> = supported.iter().map(String::as_str).collect();
        let field = self.field(name);
        self.out.push(Cause::not_supported(field, &shown(v), &refs));
    }

    fn junctors(&mut self, n: &Node, name: &str, v: &Value) {
        let base = self.base;
        let run = |s: &Node| {
            let mut sub = Validator {
                base,
                out: Vec::new(),
            };
            sub.value(s, name, v, false);
            sub.out
        };
        if !n.any_of.is_empty() {
            let results: Vec<Vec<Cause>> = n.any_of.iter().map(run).collect();
            if results.iter().all(|r| !r.is_empty()) {
                let best = results.into_iter().min_by_key(Vec::len).unwrap_or_default();
                self.composite(format!(
                    "{name:?} must validate at least one schema (anyOf)"
                ));
                self.out.extend(best);
            }
        }
        if !n.one_of.is_empty() {
            let results: Vec<Vec<Cause>> = n.one_of.iter().map(run).collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != 1 {
                let more = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                self.composite(format!(
                    "{name:?} must validate one and only one schema (oneOf). {more}"
                ));
                if valid == 0 {
                    let best = results.into_iter().min_by_key(Vec::len).unwrap_or_default();
                    self.out.extend(best);
                }
            }
        }
        if !n.all_of.is_empty() {
            let results: Vec<Vec<Cause>> = n.all_of.iter().map(run).collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            for r in results {
                self.out.extend(r);
            }
            if valid != n.all_of.len() {
                let more = if valid == 0 { ". None validated" } else { "" };
                self.composite(format!(
                    "{name:?} must validate all the schemas (allOf){more}"
                ));
            }
        }
        if let Some(not) = &n.not {
            if run(not).is_empty() {
                self.composite(format!("{name:?} must not validate the schema (not)"));
            }
        }
    }
}

/// `integer,string` for int-or-string, else the declared type.
fn type_names(n: &Node) -> String {
    if n.int_or_string {
        "integer,string".into()
    } else {
        n.ty.clone()
    }
}

/// Enum membership: equal JSON, with `1` and `1.0` equal as Go converts.
fn enum_equal(e: &Value, v: &Value) -> bool {
    match (e, v) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => e == v,
    }
}

/// Indices of the second occurrence of each value seen more than once.
fn duplicate_indices(items: &[Value]) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let times = seen.entry(canonical(item)).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

/// A key equal for equal JSON values, whatever their object key order.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, String)> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort();
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{k:?}:{v}"))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::crd::fixtures::*;
    use crate::schema::StructuralSchema;
    use serde_json::json;

    fn markdown_view() -> StructuralSchema {
        StructuralSchema::new(&schema_of(MARKDOWN_VIEW))
    }

    fn messages(causes: &[kaji_core::Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_valid_markdown_view_passes() {
        let obj = json!({"apiVersion": "view.zoetrope.github.io/v1", "kind": "MarkdownView",
            "metadata": {"name": "x"},
            "spec": {"markdowns": {"SUMMARY.md": "# Summary"}, "replicas": 3}});
        assert_eq!(markdown_view().validate(&obj), vec![]);
    }

    #[test]
    fn a_string_where_an_integer_belongs_names_the_field_and_type() {
        let obj = json!({"spec": {"markdowns": {}, "replicas": "x"}});
        let causes = markdown_view().validate(&obj);
        assert_eq!(
            messages(&causes),
            [
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
            ]
        );
        assert_eq!(causes[0].reason, "FieldValueTypeInvalid");
    }

    #[test]
    fn a_missing_required_field_is_required() {
        let causes = markdown_view().validate(&json!({"spec": {}}));
        assert_eq!(causes, vec![kaji_core::Cause::required("spec.markdowns")]);
    }

    #[test]
    fn bounds_are_reported_with_the_value() {
        let causes = markdown_view().validate(&json!({"spec": {"markdowns": {}, "replicas": 9}}));
        assert_eq!(
            messages(&causes),
            ["spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5"]
        );
        let causes = markdown_view().validate(&json!({"spec": {"markdowns": {}, "replicas": 0}}));
        assert_eq!(
            messages(&causes),
            ["spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"]
        );
    }

    #[test]
    fn map_values_are_checked_at_their_dotted_path() {
        let causes = markdown_view().validate(&json!({"spec": {"markdowns": {"a.md": 5}}}));
        assert_eq!(
            messages(&causes),
            [
                r#"spec.markdowns.a.md: Invalid value: "integer": spec.markdowns.a.md in body must be of type string: "integer""#
            ]
        );
    }

    #[test]
    fn an_enum_miss_lists_the_supported_values() {
        let causes =
            markdown_view().validate(&json!({"spec": {"markdowns": {}}, "status": "Broken"}));
        assert_eq!(
            messages(&causes),
            [
                r#"status: Unsupported value: "Broken": supported values: "NotReady", "Available", "Healthy""#
            ]
        );
    }

    #[test]
    fn a_pattern_miss_quotes_the_pattern() {
        let s = StructuralSchema::new(&schema_of(CRON_TAB));
        let causes = s.validate(&json!({"spec": {"cronSpec": "every minute"}}));
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.ends_with(
            r"spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"
        ));
        assert!(s
            .validate(&json!({"spec": {"cronSpec": "* * * * */5"}}))
            .is_empty());
    }

    #[test]
    fn lengths_count_characters_and_items() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "name": {"type": "string", "minLength": 3, "maxLength": 4},
            "items": {"type": "array", "maxItems": 3, "minItems": 1, "items": {"type": "string"}},
            "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}}}));
        assert!(s.validate(&json!({"name": "äöü"})).is_empty());
        assert_eq!(
            messages(
                &s.validate(&json!({"name": "ab", "items": [], "labels": {"a": "1", "b": "2"}}))
            ),
            [
                r#"name: Invalid value: "ab": name in body should be at least 3 chars long"#,
                "items: Invalid value: 0: items in body should have at least 1 items",
                "labels: Too many: 2: must have at most 1 item",
            ]
        );
        assert_eq!(
            messages(&s.validate(&json!({"name": "abcde", "items": ["a", "b", "c", "d"]}))),
            [
                "name: Too long: may not be more than 4 bytes",
                "items: Too many: 4: must have at most 3 items",
            ]
        );
    }

    #[test]
    fn array_items_are_checked_at_their_index() {
        let s = StructuralSchema::new(
            &json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "object",
                "required": ["name"], "properties": {"name": {"type": "string"}}}}}}}}),
        );
        let causes = s.validate(&json!({"spec": {"items": [{"name": "a"}, {"name": "b"}, {}]}}));
        assert_eq!(
            causes,
            vec![kaji_core::Cause::required("spec.items[2].name")]
        );
    }

    #[test]
    fn null_needs_nullable() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "string", "nullable": true}}}));
        assert_eq!(
            messages(&s.validate(&json!({"a": null, "b": null}))),
            [r#"a: Invalid value: "null": a in body must be of type string: "null""#]
        );
    }

    #[test]
    fn int_or_string_takes_both_but_nothing_else() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": true}}}));
        assert!(s.validate(&json!({"port": 80})).is_empty());
        assert!(s.validate(&json!({"port": "http"})).is_empty());
        assert_eq!(
            messages(&s.validate(&json!({"port": true}))),
            [
                r#"port: Invalid value: "boolean": port in body must be of type integer,string: "boolean""#
            ]
        );
    }

    #[test]
    fn integral_floats_are_integers_and_fractions_are_not() {
        let s = StructuralSchema::new(
            &json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        );
        assert!(s.validate(&json!({"n": 2.0})).is_empty());
        assert_eq!(
            messages(&s.validate(&json!({"n": 2.5}))),
            [r#"n: Invalid value: "number": n in body must be of type integer: "number""#]
        );
    }

    #[test]
    fn formats_kubernetes_checks_are_enforced() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "custom": {"type": "string", "format": "my-own"}}}));
        assert!(s
            .validate(&json!({"at": "2024-05-01T10:00:00Z", "custom": "x"}))
            .is_empty());
        assert_eq!(
            messages(&s.validate(&json!({"at": "tomorrow"}))),
            [r#"at: Invalid value: "tomorrow": at in body must be of type date-time: "tomorrow""#]
        );
    }

    #[test]
    fn multiple_of_and_exclusive_bounds_are_enforced() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "n": {"type": "number", "multipleOf": 0.5, "maximum": 10, "exclusiveMaximum": true}}}));
        assert!(s.validate(&json!({"n": 9.5})).is_empty());
        assert_eq!(
            messages(&s.validate(&json!({"n": 10}))),
            ["n: Invalid value: 10: n in body should be less than 10"]
        );
        assert_eq!(
            messages(&s.validate(&json!({"n": 0.3}))),
            ["n: Invalid value: 0.3: n in body should be a multiple of 0.5"]
        );
    }

    #[test]
    fn list_sets_and_maps_reject_duplicates() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}));
        assert_eq!(
            messages(&s.validate(&json!({"tags": ["a", "b", "a"],
                "ports": [{"name": "x"}, {"name": "x"}]}))),
            [
                r#"tags[2]: Duplicate value: "a""#,
                r#"ports[1]: Duplicate value: {"name":"x"}"#,
            ]
        );
    }

    #[test]
    fn embedded_resources_need_api_version_and_kind() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {"template": {
            "type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true}}}));
        assert_eq!(
            s.validate(&json!({"template": {"spec": {}}})),
            vec![
                kaji_core::Cause::required("template.apiVersion"),
                kaji_core::Cause::required("template.kind"),
            ]
        );
        assert!(s
            .validate(
                &json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}})
            )
            .is_empty());
    }

    #[test]
    fn junctors_report_like_kube_openapi() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {"a": {
            "type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}], "not": {"minimum": 100}}}}));
        assert!(s.validate(&json!({"a": 11})).is_empty());
        let causes = s.validate(&json!({"a": 5}));
        assert!(messages(&causes).contains(
            &r#": Invalid value: "": "a" must validate at least one schema (anyOf)"#.to_string()
        ));
        assert!(messages(&s.validate(&json!({"a": 100}))).contains(
            &r#": Invalid value: "": "a" must not validate the schema (not)"#.to_string()
        ));
    }

    #[test]
    fn additional_properties_false_forbids_other_keys() {
        let s = StructuralSchema::new(&json!({"type": "object", "properties": {"spec": {
            "type": "object", "additionalProperties": false}}}));
        assert_eq!(
            messages(&s.validate(&json!({"spec": {"x": 1}}))),
            [r#"spec: Invalid value: "x": spec.x in body is a forbidden property"#]
        );
    }
}
