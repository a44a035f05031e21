//! Field paths: the steps from an object's root to one of its fields, in the
//! two spellings Kubernetes uses — `FieldsV1` keys (`f:spec`,
//! `k:{"name":"nginx"}`, `v:"a"`) and conflict paths (`.spec.containers[name="nginx"]`).

use std::fmt;

use serde_json::Value;

/// One step of a field path.
///
/// The derived order (fields, then keys, then values, then indexes) is the
/// order structured-merge-diff sorts and serializes them in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    /// A field of a struct or an entry of a map: `f:<name>`.
    Field(String),
    /// An element of an associative list, by its key fields: `k:{...}`.
    /// Pairs of (key field, compact JSON value), sorted by key field.
    Key(Vec<(String, String)>),
    /// An element of a set list, by its compact JSON value: `v:<json>`.
    Value(String),
    /// An element of a list by position: `i:<n>` (only read, never produced).
    Index(usize),
}

/// A path: the steps from the root.
pub(crate) type Path = Vec<PathElement>;

impl PathElement {
    /// The `FieldsV1` key of this element.
    pub(crate) fn fields_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(pairs) => {
                let inner: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                    .collect();
                format!("k:{{{}}}", inner.join(","))
            }
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key (other than `.`).
    pub(crate) fn from_fields_key(key: &str) -> Result<PathElement, String> {
        let bad = |why: &str| format!("invalid FieldsV1 key {key:?}: {why}");
        let (prefix, rest) = key.split_once(':').ok_or_else(|| bad("no prefix"))?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => {
                let value: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                let Value::Object(map) = value else {
                    return Err(bad("key is not a JSON object"));
                };
                let mut pairs: Vec<(String, String)> =
                    map.into_iter().map(|(k, v)| (k, compact(&v))).collect();
                pairs.sort();
                Ok(PathElement::Key(pairs))
            }
            "v" => {
                let value: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                Ok(PathElement::Value(compact(&value)))
            }
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| bad("index is not a number")),
            _ => Err(bad("unknown prefix")),
        }
    }
}

impl fmt::Display for PathElement {
    /// The spelling of structured-merge-diff's `PathElement.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(pairs) => {
                let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", inner.join(","))
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.replicas`.
pub(crate) fn display(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Compact JSON, with object keys sorted so equal values spell the same.
pub(crate) fn compact(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = pairs
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), compact(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(compact).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keys_round_trip_with_sorted_compact_keys() {
        for key in [
            "f:replicas",
            r#"k:{"containerPort":80,"protocol":"TCP"}"#,
            r#"v:"example.com/finalizer""#,
            "i:3",
        ] {
            assert_eq!(PathElement::from_fields_key(key).unwrap().fields_key(), key);
        }
        let unsorted = PathElement::from_fields_key(r#"k:{"protocol":"TCP", "port":80}"#).unwrap();
        assert_eq!(unsorted.fields_key(), r#"k:{"port":80,"protocol":"TCP"}"#);
    }

    #[test]
    fn paths_display_like_structured_merge_diff() {
        let path = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(vec![("name".into(), "\"nginx\"".into())]),
            PathElement::Field("image".into()),
        ];
        assert_eq!(display(&path), r#".spec.containers[name="nginx"].image"#);
        assert_eq!(display(&[PathElement::Value("\"a\"".into())]), r#"[="a"]"#);
    }

    #[test]
    fn unknown_prefixes_are_rejected() {
        assert!(PathElement::from_fields_key("x:y").is_err());
        assert!(PathElement::from_fields_key("nocolon").is_err());
        assert!(PathElement::from_fields_key("k:[1]").is_err());
    }
}
