//! Tables for custom resources: a CRD version's `additionalPrinterColumns`,
//! as the apiextensions-apiserver's table convertor
//! (`pkg/registry/customresource/tableconvertor`) serves them.
//!
//! The first column is always `Name`, followed by the version's columns in
//! order; a version without columns gets Kubernetes' default `Age` column.
//! Each column's `jsonPath` is evaluated with kubectl's JSONPath dialect and
//! only its first result is shown; the cell is then typed by the column's
//! `type`, as Kubernetes does:
//! - `string`: the value as client-go's JSONPath prints it: strings as they
//!   are, numbers and booleans as Go's `fmt` prints them, objects and arrays
//!   as Go's compact JSON (sorted keys, HTML-escaped), `null` as
//!   `<no value>`;
//! - `integer`, `number`, `boolean`: the JSON value when it has that type (a
//!   float in an `integer` column is truncated), otherwise `null`;
//! - `date`: the age of an RFC 3339 timestamp (`<unknown>` for an empty
//!   string, `<invalid>` when it does not parse);
//! - any other type: `null`.
//!
//! Nothing found, or an evaluation error, gives a `null` cell, which kubectl
//! prints as `<none>`.
//!
//! The JSONPath evaluator is our own (`custom/jsonpath.rs`) rather than a
//! crate: the maintained crates (`serde_json_path`, `jsonpath-rust`)
//! implement RFC 9535, whose syntax and results differ from client-go's
//! (no leading `$` required, `[?(…)]` filters that fail on mixed-type
//! comparisons, `['a.b']` read as `.a.b`, first-match-only, errors that
//! empty the cell), and those differences are exactly what a column shows.

mod jsonpath;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Number, Value};

use crate::duration::human_duration;
use crate::fields::name;
use crate::{CREATION_DOC, NAME};
use jsonpath::{Item, JsonPath};

/// One additionalPrinterColumn of a CRD version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomColumn {
    /// Human-readable name; kubectl upper-cases it for the header.
    pub name: String,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean`
    /// or `date`.
    pub type_: String,
    /// OpenAPI format hint.
    pub format: String,
    /// What the column shows; empty for Kubernetes' generated description.
    pub description: String,
    /// 0 is shown by default, higher only with `-o wide`.
    pub priority: i32,
    /// The kubectl-style JSONPath, e.g. `.spec.replicas`.
    pub json_path: String,
}

/// The columns Kubernetes serves for a CRD version: its
/// `additionalPrinterColumns`, or when it has none the default `Age` column
/// over `.metadata.creationTimestamp`.
///
/// `version` is a `spec.versions[i]` object or its `additionalPrinterColumns`
/// array (a v1beta1 `JSONPath` key is accepted too).
///
/// # Guarantees
/// Never panics and never returns an empty list. Entries that are not
/// objects are skipped; missing fields read as empty strings or 0, as Go
/// decodes them.
pub fn custom_columns(version: &Value) -> Vec<CustomColumn> {
    let list = if version.is_array() {
        Some(version)
    } else {
        version.get("additionalPrinterColumns")
    };
    let columns: Vec<CustomColumn> = list
        .and_then(Value::as_array)
        .map(|entries| entries.iter().filter_map(column_of).collect())
        .unwrap_or_default();
    if columns.is_empty() {
        return vec![CustomColumn {
            name: "Age".to_string(),
            type_: "date".to_string(),
            format: String::new(),
            description: CREATION_DOC.to_string(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".to_string(),
        }];
    }
    columns
}

fn column_of(entry: &Value) -> Option<CustomColumn> {
    let entry = entry.as_object()?;
    let text = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let json_path = match entry.get("jsonPath").and_then(Value::as_str) {
        Some(path) => path.to_string(),
        None => text("JSONPath"),
    };
    Some(CustomColumn {
        name: text("name"),
        type_: text("type"),
        format: text("format"),
        description: text("description"),
        priority: entry
            .get("priority")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0),
        json_path,
    })
}

/// A `meta.k8s.io/v1 Table` of custom resources, shaped like
/// [`crate::table`]: `Name` and then `columns`, one row per object with its
/// `cells` and the object under `object`; `metadata` is left `{}`.
///
/// `columns` are used as given (pass [`custom_columns`]' result to get the
/// default `Age` column). Ages are computed relative to `now`.
///
/// # Caveats
/// As in Kubernetes, a column whose `jsonPath` does not parse is dropped
/// together with every column after it.
pub fn custom_table(columns: &[CustomColumn], objs: &[Value], now: DateTime<Utc>) -> Value {
    let parsed: Vec<(&CustomColumn, JsonPath)> = columns
        .iter()
        .map_while(|c| JsonPath::parse_column(&c.json_path).ok().map(|p| (c, p)))
        .collect();
    let mut definitions = vec![NAME.to_json()];
    definitions.extend(parsed.iter().map(|(c, _)| {
        let description = if c.description.is_empty() {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                c.json_path
            )
        } else {
            c.description.clone()
        };
        json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format,
            "description": description,
            "priority": c.priority,
        })
    }));
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let mut cells = vec![name(obj)];
            cells.extend(
                parsed
                    .iter()
                    .map(|(c, path)| cell(&c.type_, path.first(obj), now)),
            );
            json!({ "cells": cells, "object": obj })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// `cellForJSONValue`, plus the `string` case that prints through JSONPath.
fn cell(type_: &str, found: Option<Item<'_>>, now: DateTime<Utc>) -> Value {
    let Some(item) = found else {
        return Value::Null;
    };
    match (type_, &item) {
        ("string", _) => Value::from(print_item(&item)),
        ("integer", Item::Json(Value::Number(n))) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64().unwrap_or_default() as i64),
        },
        ("integer", Item::Float(f)) => Value::from(*f as i64),
        ("number", Item::Json(Value::Number(n))) => number(n.as_f64().unwrap_or_default()),
        ("number", Item::Float(f)) => number(*f),
        ("boolean", Item::Json(Value::Bool(b)) | Item::Bool(b)) => Value::Bool(*b),
        ("date", Item::Json(Value::String(s))) => Value::from(date(s, now)),
        ("date", Item::Text(s)) => Value::from(date(s, now)),
        _ => Value::Null,
    }
}

/// A Go `float64` cell: whole values are written as integers, as Go's JSON
/// encoder writes them (`3`, not `3.0`).
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// A `date` cell: `metav1.Time.UnmarshalQueryParameter`, then
/// `ConvertToHumanReadableDateType`.
fn date(s: &str, now: DateTime<Utc>) -> String {
    if s.is_empty() || s == "null" {
        return "<unknown>".to_string();
    }
    // Go's RFC 3339 layout wants an upper-case `T` and `Z`; chrono is laxer.
    let strict = s.as_bytes().get(10) == Some(&b'T') && !s.ends_with('z');
    let Some(t) = DateTime::parse_from_rfc3339(s)
        .ok()
        .filter(|_| strict)
        .map(|t| t.with_timezone(&Utc))
    else {
        return "<invalid>".to_string();
    };
    if Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single() == Some(t) {
        return "<unknown>".to_string();
    }
    human_duration(now.signed_duration_since(t))
}

/// How client-go's `PrintResults` prints one value.
fn print_item(item: &Item<'_>) -> String {
    match item {
        Item::Json(Value::Null) => "<no value>".to_string(),
        Item::Json(Value::String(s)) | Item::Text(s) => s.clone(),
        Item::Json(Value::Bool(b)) | Item::Bool(b) => b.to_string(),
        Item::Json(Value::Number(n)) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_print_float(n.as_f64().unwrap_or_default()),
        },
        Item::Json(v) => {
            let mut out = String::new();
            go_json(v, &mut out);
            out
        }
        Item::Byte(b) => b.to_string(),
        Item::Int(i) => i.to_string(),
        Item::Float(f) => go_print_float(*f),
    }
}

/// Splits Rust's shortest scientific form, `1.5e-7`, into mantissa and
/// exponent.
fn scientific(f: f64) -> (String, i32) {
    let text = format!("{f:e}");
    match text.split_once('e') {
        Some((mantissa, exp)) => (mantissa.to_string(), exp.parse().unwrap_or(0)),
        None => (text, 0),
    }
}

/// Go's `fmt.Sprint(float64)`: `%g` with the fewest digits, in exponent form
/// (`1e+06`) below 1e-4 and from 1e6 up.
fn go_print_float(f: f64) -> String {
    if f == 0.0 {
        return format!("{f}");
    }
    let (mantissa, exp) = scientific(f);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        format!("{f}")
    }
}

/// A float as Go's `encoding/json` writes it: plain, or in exponent form
/// (`1e+21`, `1e-7`) below 1e-6 and from 1e21 up.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (mantissa, exp) = scientific(f);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{}", exp.unsigned_abs())
    } else {
        format!("{f}")
    }
}

/// Go's `json.Marshal` of an unstructured value: compact, object keys
/// sorted, integers as `int64` and other numbers as `float64`.
fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => out.push_str(&go_json_float(n.as_f64().unwrap_or_default())),
        },
        Value::String(s) => go_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(key, out);
                out.push(':');
                go_json(value, out);
            }
            out.push('}');
        }
    }
}

/// A string as Go's `encoding/json` writes it, HTML-escaping included.
fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NAME_DOC;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn crontab_version() -> Value {
        json!({
            "name": "v1",
            "served": true,
            "storage": true,
            "additionalPrinterColumns": [
                {"name": "Spec", "type": "string", "description": "The cron spec defining the interval a CronJob is run", "jsonPath": ".spec.cronSpec"},
                {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
            ]
        })
    }

    fn crontab(name: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": name, "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": spec
        })
    }

    fn col(name: &str, type_: &str, json_path: &str) -> CustomColumn {
        CustomColumn {
            name: name.to_string(),
            type_: type_.to_string(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: json_path.to_string(),
        }
    }

    /// The cells of one object under one column.
    fn cell_of(type_: &str, json_path: &str, obj: &Value) -> Value {
        let t = custom_table(
            &[col("C", type_, json_path)],
            std::slice::from_ref(obj),
            now(),
        );
        t["rows"][0]["cells"][1].clone()
    }

    #[test]
    fn crontab_columns_should_give_name_then_the_crd_columns() {
        let columns = custom_columns(&crontab_version());
        assert_eq!(columns.len(), 3);
        assert_eq!(columns[1], {
            let mut c = col("Replicas", "integer", ".spec.replicas");
            c.description = String::new();
            c
        });
        let t = custom_table(&columns, &[], now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["rows"], json!([]));
        assert_eq!(
            t["columnDefinitions"],
            json!([
                {"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0},
                {"name": "Spec", "type": "string", "format": "", "description": "The cron spec defining the interval a CronJob is run", "priority": 0},
                {"name": "Replicas", "type": "integer", "format": "", "description": "Custom resource definition column (in JSONPath format): .spec.replicas", "priority": 0},
                {"name": "Age", "type": "date", "format": "", "description": "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp", "priority": 0}
            ])
        );
    }

    #[test]
    fn crontab_rows_should_type_their_cells() {
        let objs = [
            crontab(
                "my-new-cron-object",
                json!({"cronSpec": "* * * * */5", "replicas": 1}),
            ),
            crontab("bare", json!({})),
        ];
        let t = custom_table(&custom_columns(&crontab_version()), &objs, now());
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["my-new-cron-object", "* * * * */5", 1, "5m"])
        );
        assert_eq!(t["rows"][0]["object"], objs[0]);
        assert_eq!(t["rows"][1]["cells"], json!(["bare", null, null, "5m"]));
    }

    #[test]
    fn a_version_without_columns_should_get_the_default_age_column() {
        for version in [
            json!({"name": "v1"}),
            json!({"name": "v1", "additionalPrinterColumns": []}),
            json!({"name": "v1", "additionalPrinterColumns": null}),
            json!({"additionalPrinterColumns": [7, "x"]}),
            json!(null),
            json!([]),
        ] {
            let columns = custom_columns(&version);
            assert_eq!(
                columns,
                [CustomColumn {
                    name: "Age".to_string(),
                    type_: "date".to_string(),
                    format: String::new(),
                    description: CREATION_DOC.to_string(),
                    priority: 0,
                    json_path: ".metadata.creationTimestamp".to_string(),
                }],
                "{version}"
            );
        }
        let t = custom_table(
            &custom_columns(&json!({})),
            &[json!({"metadata": {"name": "w", "creationTimestamp": "2024-04-29T12:00:00Z"}})],
            now(),
        );
        assert_eq!(t["columnDefinitions"][1]["description"], CREATION_DOC);
        assert_eq!(t["rows"][0]["cells"], json!(["w", "2d"]));
    }

    #[test]
    fn columns_should_tolerate_missing_and_mistyped_fields() {
        let columns = custom_columns(&json!([
            {"name": "A", "jsonPath": ".a", "priority": 1, "format": "int32"},
            {"name": 5, "priority": "high"},
            {"JSONPath": ".b", "type": "string"}
        ]));
        assert_eq!(columns.len(), 3);
        assert_eq!(
            (columns[0].priority, columns[0].format.as_str()),
            (1, "int32")
        );
        assert_eq!(columns[1], col("", "", ""));
        assert_eq!(columns[2].json_path, ".b");
    }

    #[test]
    fn missing_fields_should_give_null_cells_of_every_type() {
        let obj = json!({"metadata": {"name": "x"}});
        for type_ in ["string", "integer", "number", "boolean", "date"] {
            assert_eq!(
                cell_of(type_, ".spec.missing", &obj),
                Value::Null,
                "{type_}"
            );
        }
        let t = custom_table(&custom_columns(&crontab_version()), &[json!(null)], now());
        assert_eq!(t["rows"][0]["cells"], json!(["", null, null, null]));
    }

    #[test]
    fn filter_columns_should_show_the_matching_condition() {
        let obj = json!({"status": {"conditions": [
            {"type": "Synced", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2024-05-01T11:59:30Z"}
        ]}});
        let ready = r#".status.conditions[?(@.type=="Ready")]"#;
        assert_eq!(cell_of("string", &format!("{ready}.status"), &obj), "False");
        assert_eq!(
            cell_of("date", &format!("{ready}.lastTransitionTime"), &obj),
            "30s"
        );
        let gone = r#".status.conditions[?(@.type=="Gone")].status"#;
        assert_eq!(cell_of("string", gone, &obj), Value::Null);
        // A mixed-type comparison is an error in client-go: no value.
        let mixed = ".status.conditions[?(@.type==1)].status";
        assert_eq!(cell_of("string", mixed, &obj), Value::Null);
    }

    #[test]
    fn multi_valued_paths_should_show_only_the_first_value() {
        let obj = json!({"spec": {"items": [{"name": "a"}, {"name": "b"}], "ports": [80, 443]}});
        assert_eq!(cell_of("string", ".spec.items[*].name", &obj), "a");
        assert_eq!(cell_of("integer", ".spec.ports[*]", &obj), 80);
        assert_eq!(cell_of("string", ".metadata.labels.app", &obj), Value::Null);
    }

    #[test]
    fn cells_of_the_wrong_json_type_should_be_null_except_for_strings() {
        let obj =
            json!({"spec": {"n": 3, "f": 2.75, "b": true, "s": "7", "t": "yesterday", "z": null}});
        assert_eq!(cell_of("integer", ".spec.n", &obj), 3);
        assert_eq!(cell_of("integer", ".spec.f", &obj), 2);
        assert_eq!(cell_of("integer", ".spec.s", &obj), Value::Null);
        assert_eq!(cell_of("number", ".spec.n", &obj), json!(3));
        assert_eq!(cell_of("number", ".spec.f", &obj), json!(2.75));
        assert_eq!(cell_of("boolean", ".spec.b", &obj), true);
        assert_eq!(cell_of("boolean", ".spec.s", &obj), Value::Null);
        assert_eq!(cell_of("date", ".spec.n", &obj), Value::Null);
        assert_eq!(cell_of("date", ".spec.t", &obj), "<invalid>");
        assert_eq!(cell_of("object", ".spec.n", &obj), Value::Null);
        assert_eq!(cell_of("integer", ".spec.z", &obj), Value::Null);
        assert_eq!(cell_of("string", ".spec.z", &obj), "<no value>");
        assert_eq!(cell_of("string", ".spec.n", &obj), "3");
        assert_eq!(cell_of("string", ".spec.f", &obj), "2.75");
        assert_eq!(cell_of("string", ".spec.b", &obj), "true");
    }

    #[test]
    fn string_cells_should_print_objects_as_go_json() {
        let obj = json!({"spec": {"sel": {"z": 1, "a": "<b&c>", "m": [1.5, 1e21, 1e-7, 2.0]}}});
        assert_eq!(
            cell_of("string", ".spec.sel", &obj),
            r#"{"a":"\u003cb\u0026c\u003e","m":[1.5,1e+21,1e-7,2],"z":1}"#
        );
    }

    #[test]
    fn string_cells_should_print_floats_as_go_fmt() {
        assert_eq!(go_print_float(1_000_000.0), "1e+06");
        assert_eq!(go_print_float(123_456.0), "123456");
        assert_eq!(go_print_float(0.0001), "0.0001");
        assert_eq!(go_print_float(0.00001), "1e-05");
        assert_eq!(go_print_float(1.25e100), "1.25e+100");
        assert_eq!(go_print_float(-2.5), "-2.5");
        assert_eq!(go_print_float(0.0), "0");
    }

    #[test]
    fn date_cells_should_follow_metav1_time() {
        assert_eq!(date("", now()), "<unknown>");
        assert_eq!(date("null", now()), "<unknown>");
        assert_eq!(date("0001-01-01T00:00:00Z", now()), "<unknown>");
        assert_eq!(date("2024-05-01T13:55:00+02:00", now()), "5m");
        assert_eq!(date("2024-05-01T11:55:00.5Z", now()), "4m59s");
        assert_eq!(date("2024-05-01 11:55:00Z", now()), "<invalid>");
        assert_eq!(date("2024-05-01T11:55:00z", now()), "<invalid>");
        assert_eq!(date("2024-05-02T12:00:00Z", now()), "<invalid>");
    }

    #[test]
    fn an_unparseable_path_should_drop_it_and_every_later_column() {
        let columns = [
            col("Good", "string", ".spec.a"),
            col("Bad", "string", ".spec[oops]"),
            col("After", "string", ".spec.b"),
        ];
        let obj = json!({"metadata": {"name": "x"}, "spec": {"a": "A", "b": "B"}});
        let t = custom_table(&columns, &[obj], now());
        let names: Vec<&Value> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("Name"), &json!("Good")]);
        assert_eq!(t["rows"][0]["cells"], json!(["x", "A"]));
    }

    #[test]
    fn priority_and_format_should_pass_through_to_the_definition() {
        let mut c = col("Node", "string", ".spec.node");
        c.priority = 1;
        c.format = "hostname".to_string();
        let t = custom_table(&[c], &[], now());
        assert_eq!(t["columnDefinitions"][1]["priority"], 1);
        assert_eq!(t["columnDefinitions"][1]["format"], "hostname");
    }
}
