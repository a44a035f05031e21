//! JSON to CEL values, typed by the schema node a value sits at.
//!
//! Mirrors how Kubernetes exposes a custom resource to rules: objects with
//! `properties` become maps keyed by the (escaped) property names, maps
//! (`additionalProperties`) keep their keys, arrays become lists, `integer`
//! is `int`, `number` is `double`, strings with format `date`/`date-time`
//! are timestamps, `duration` durations and `byte` bytes. Absent fields stay
//! absent so `has(self.x)` works. At the root of a resource (and of an
//! `x-kubernetes-embedded-resource`) `apiVersion`, `kind` and only
//! `metadata.name` / `metadata.generateName` are visible.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::Value as Cel;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::Value;

/// CEL keywords a property name is escaped from (`__{name}__`).
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The CEL name of property `name`, or `None` if it cannot be named in CEL
/// (it must match `[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*`).
pub(crate) fn escape(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first = chars.next()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/');
    if !(first.is_ascii_alphabetic() || matches!(first, '_' | '.' | '-' | '/'))
        || !chars.all(allowed)
    {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("__") {
            out.push_str("__underscores__");
            rest = &rest[2..];
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// The `type` of a schema node, "" when it has none (int-or-string,
/// preserve-unknown-fields).
pub(crate) fn type_name(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Whether values at `schema` are the root of an embedded resource.
pub(crate) fn is_embedded(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-embedded-resource")
}

/// The schema of property `name` (not escaped) of an object node.
pub(crate) fn property<'s>(schema: &'s Value, name: &str) -> Option<&'s Value> {
    schema.get("properties")?.get(name)
}

/// The `additionalProperties` schema of a map node, if it is one.
pub(crate) fn additional(schema: &Value) -> Option<&Value> {
    schema.get("additionalProperties").filter(|s| s.is_object())
}

/// The `items` schema of an array node.
pub(crate) fn items(schema: &Value) -> Option<&Value> {
    schema.get("items").filter(|s| s.is_object())
}

/// Converts `value` as it sits at `schema`; `root` marks the root of a
/// resource (the custom resource itself or an embedded one).
pub(crate) fn to_cel(value: &Value, schema: Option<&Value>, root: bool) -> Cel {
    let Some(schema) = schema else {
        return untyped(value);
    };
    let root = root || is_embedded(schema);
    if flag(schema, "x-kubernetes-int-or-string") {
        return untyped(value);
    }
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match type_name(schema) {
            "number" => Cel::Float(n.as_f64().unwrap_or_default()),
            "integer" => match n.as_i64() {
                Some(i) => Cel::Int(i),
                None => match n.as_u64() {
                    Some(u) => Cel::UInt(u),
                    None => Cel::Float(n.as_f64().unwrap_or_default()),
                },
            },
            _ => untyped(value),
        },
        Value::String(s) => string(s, schema),
        Value::Array(list) => {
            let item_schema = items(schema);
            Cel::List(Arc::new(
                list.iter().map(|v| to_cel(v, item_schema, false)).collect(),
            ))
        }
        Value::Object(object) => {
            let mut map = HashMap::new();
            if let Some(values) = additional(schema) {
                for (k, v) in object {
                    map.insert(Key::from(k.as_str()), to_cel(v, Some(values), false));
                }
            } else if schema.get("properties").is_some() || root {
                for (k, v) in object {
                    if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    let (Some(name), Some(prop)) = (escape(k), property(schema, k)) else {
                        continue;
                    };
                    map.insert(Key::from(name), to_cel(v, Some(prop), false));
                }
                if root {
                    for k in ["apiVersion", "kind"] {
                        if let Some(Value::String(s)) = object.get(k) {
                            map.insert(Key::from(k), Cel::from(s.as_str()));
                        }
                    }
                    if let Some(Value::Object(meta)) = object.get("metadata") {
                        let mut visible = HashMap::new();
                        for k in ["name", "generateName"] {
                            if let Some(Value::String(s)) = meta.get(k) {
                                visible.insert(Key::from(k), Cel::from(s.as_str()));
                            }
                        }
                        map.insert(Key::from("metadata"), map_value(visible));
                    }
                }
            } else {
                // x-kubernetes-preserve-unknown-fields without properties:
                // the object is exposed as it is.
                return untyped(value);
            }
            map_value(map)
        }
    }
}

fn map_value(map: HashMap<Key, Cel>) -> Cel {
    Cel::Map(Map { map: Arc::new(map) })
}

fn string(s: &str, schema: &Value) -> Cel {
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    let converted = match format {
        "date-time" => DateTime::parse_from_rfc3339(s).ok().map(Cel::Timestamp),
        "date" => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Cel::Timestamp(Utc.from_utc_datetime(&t).fixed_offset())),
        "duration" => parse_duration(s).map(Cel::Duration),
        "byte" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .ok()
                .map(|b| Cel::Bytes(Arc::new(b)))
        }
        _ => None,
    };
    converted.unwrap_or_else(|| Cel::from(s))
}

/// A value without a schema: JSON as CEL sees it (integral numbers are ints).
pub(crate) fn untyped(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Cel::from(s.as_str()),
        Value::Array(list) => Cel::List(Arc::new(list.iter().map(untyped).collect())),
        Value::Object(object) => map_value(
            object
                .iter()
                .map(|(k, v)| (Key::from(k.as_str()), untyped(v)))
                .collect(),
        ),
    }
}

/// Parses a Go duration ("1h30m", "-1.5s", "300ms", "0").
pub(crate) fn parse_duration(s: &str) -> Option<chrono::Duration> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let (unit, len) = [
            ("ns", 1e0),
            ("us", 1e3),
            ("µs", 1e3),
            ("μs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, scale)| (*scale, u.len()))?;
        nanos += number * unit;
        rest = &rest[len..];
    }
    let nanos = if negative { -nanos } else { nanos };
    Some(chrono::Duration::nanoseconds(nanos as i64))
}

/// A rough size of a JSON value: the number of nodes in it, strings counted
/// by length in chunks of 64 bytes. Used to bound evaluation cost.
pub(crate) fn size(value: &Value) -> u64 {
    match value {
        Value::Array(list) => 1 + list.iter().map(size).sum::<u64>(),
        Value::Object(object) => 1 + object.values().map(size).sum::<u64>(),
        Value::String(s) => 1 + (s.len() as u64) / 64,
        _ => 1,
    }
}

/// The length of the longest list or map in a JSON value.
pub(crate) fn widest(value: &Value) -> u64 {
    match value {
        Value::Array(list) => (list.len() as u64).max(list.iter().map(widest).max().unwrap_or(0)),
        Value::Object(o) => (o.len() as u64).max(o.values().map(widest).max().unwrap_or(0)),
        Value::String(s) => (s.len() as u64) / 64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_names_are_escaped_as_kubernetes_escapes_them() {
        assert_eq!(escape("replicas").as_deref(), Some("replicas"));
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("foo-bar").as_deref(), Some("foo__dash__bar"));
        assert_eq!(escape("a.b/c").as_deref(), Some("a__dot__b__slash__c"));
        assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
        assert_eq!(escape("1abc"), None);
        assert_eq!(escape("a b"), None);
    }

    #[test]
    fn go_durations_parse() {
        let d = |s: &str| parse_duration(s).map(|d| d.num_milliseconds());
        assert_eq!(d("1h30m"), Some(5_400_000));
        assert_eq!(d("-1.5s"), Some(-1_500));
        assert_eq!(d("300ms"), Some(300));
        assert_eq!(d("0"), Some(0));
        assert_eq!(d("5"), None);
        assert_eq!(d("1x"), None);
    }

    #[test]
    fn values_are_typed_by_their_schema() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "number"}, "i": {"type": "integer"},
            "t": {"type": "string", "format": "date-time"},
            "b": {"type": "string", "format": "byte"},
            "ios": {"x-kubernetes-int-or-string": true}
        }});
        let Cel::Map(map) = to_cel(
            &json!({"n": 1, "i": 2.0, "t": "2024-01-01T00:00:00Z", "b": "aGk=", "ios": "50%", "extra": 1}),
            Some(&schema),
            false,
        ) else {
            panic!("an object is a map");
        };
        let get = |k: &str| map.map.get(&Key::from(k)).cloned();
        assert_eq!(get("n"), Some(Cel::Float(1.0)));
        assert_eq!(
            get("i"),
            Some(Cel::Float(2.0)),
            "a non-integral JSON number stays as given"
        );
        assert!(matches!(get("t"), Some(Cel::Timestamp(_))));
        assert_eq!(get("b"), Some(Cel::Bytes(Arc::new(b"hi".to_vec()))));
        assert_eq!(get("ios"), Some(Cel::from("50%")));
        assert_eq!(get("extra"), None, "undeclared fields are not visible");
    }
}
