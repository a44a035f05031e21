//! Content negotiation: decoding request bodies (JSON, YAML) and choosing the
//! response shape (plain object, Table, PartialObjectMetadata; JSON or YAML).

use http::HeaderMap;
use kaji_core::ApiError;
use serde_json::{json, Value};

/// Largest request body accepted, as etcd's default request limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How a response object should be shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The object itself.
    Object,
    /// A `meta.k8s.io/v1 Table`.
    Table,
    /// `PartialObjectMetadata` (lists: `PartialObjectMetadataList`).
    Metadata,
}

/// The wire format of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/vnd.kubernetes.protobuf`, for clients that accept nothing else.
    Protobuf,
}

/// What the client accepts, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Shape.
    pub view: View,
    /// Format.
    pub format: Format,
}

/// Resolves the `Accept` header to the first representation we can produce.
///
/// # Errors
/// 406 when nothing acceptable can be produced.
pub fn negotiate(headers: &HeaderMap) -> Result<Negotiated, ApiError> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if accept.is_empty() {
        return Ok(Negotiated {
            view: View::Object,
            format: Format::Json,
        });
    }
    for candidate in accept.split(',') {
        let mut parts = candidate.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut as_, mut g) = (None, None);
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = Some(v.trim().to_string()),
                    "g" => g = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let format = match media.as_str() {
            "application/json" | "*/*" | "application/*" | "application/json-seq" => Format::Json,
            "application/yaml" => Format::Yaml,
            kaji_protobuf::CONTENT_TYPE => Format::Protobuf,
            _ => continue,
        };
        let view = match (as_.as_deref(), g.as_deref()) {
            (None, _) => View::Object,
            (Some("Table"), Some("meta.k8s.io")) => View::Table,
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                View::Metadata
            }
            _ => continue,
        };
        return Ok(Negotiated { view, format });
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (asked for {accept:?})"
    )))
}

/// The media type of a request body: JSON when none is given (as
/// kube-apiserver assumes); a header without a media type before its
/// parameters (`;;;`) is returned whole, which no decoder accepts (415).
pub fn content_type(headers: &HeaderMap) -> String {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return "application/json".into();
    };
    let value = String::from_utf8_lossy(value.as_bytes())
        .trim()
        .to_ascii_lowercase();
    if value.is_empty() {
        return "application/json".into();
    }
    match value.split(';').next().map(str::trim) {
        Some(media) if !media.is_empty() => media.to_string(),
        _ => value,
    }
}

/// The dotted paths (`metadata.name`, `spec.containers[0].image`) of the
/// fields that occur more than once in one object of a JSON body; empty for
/// other media types and for bodies that do not parse (their decoding
/// reports those).
pub fn duplicate_fields(media: &str, body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    /// Where the walk is: a chain of keys and indexes on the stack, turned
    /// into a dotted path only for a duplicate, so a clean body (nearly
    /// every one) costs no path strings.
    enum Step<'a> {
        Root,
        Key(&'a Step<'a>, &'a str),
        Index(&'a Step<'a>, usize),
    }
    impl Step<'_> {
        fn path(&self) -> String {
            match self {
                Step::Root => String::new(),
                Step::Key(Step::Root, key) => (*key).to_string(),
                Step::Key(parent, key) => format!("{}.{key}", parent.path()),
                Step::Index(parent, i) => format!("{}[{i}]", parent.path()),
            }
        }
    }

    struct Walk<'a> {
        at: &'a Step<'a>,
        found: &'a RefCell<Vec<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            for i in 0.. {
                let at = Step::Index(self.at, i);
                let seed = Walk {
                    at: &at,
                    found: self.found,
                };
                if seq.next_element_seed(seed)?.is_none() {
                    break;
                }
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let at = Step::Key(self.at, &key);
                if seen.contains(&key) {
                    self.found.borrow_mut().push(at.path());
                }
                map.next_value_seed(Walk {
                    at: &at,
                    found: self.found,
                })?;
                seen.insert(key);
            }
            Ok(())
        }
    }

    if !matches!(
        media,
        "" | "application/json"
            | "*/*"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
    ) {
        return Vec::new();
    }
    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let walk = Walk {
        at: &Step::Root,
        found: &found,
    };
    if walk.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    found.into_inner()
}

/// Decodes a JSON or YAML object body.
///
/// # Errors
/// 400 for malformed bodies, 415 for unknown media types, 413 for oversized ones.
pub fn decode_body(media: &str, body: &[u8]) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let value: Value = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/apply-patch+yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?,
        "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
        kaji_protobuf::CONTENT_TYPE => {
            kaji_protobuf::decode(body).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok(value)
}

/// 413 for bodies over [`MAX_BODY_BYTES`].
pub fn too_large() -> ApiError {
    ApiError::too_large(format!(
        "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
    ))
}

/// Renders a value in the negotiated format with its content type. Kinds
/// without a protobuf encoding (Tables, custom resources) fall back to JSON.
pub fn render(format: Format, value: &Value) -> (&'static str, Vec<u8>) {
    match format {
        Format::Protobuf => match kaji_protobuf::encode(value) {
            Ok(bytes) => (kaji_protobuf::CONTENT_TYPE, bytes),
            Err(_) => render(Format::Json, value),
        },
        Format::Json => (
            "application/json",
            serde_json::to_vec(value).expect("JSON values serialize"),
        ),
        Format::Yaml => (
            "application/yaml",
            serde_yaml::to_string(value)
                .unwrap_or_default()
                .into_bytes(),
        ),
    }
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Wraps `objs` in a Table; rows carry the object per `includeObject`.
/// Custom resources print their CRD's `additionalPrinterColumns`
/// (`columns`); built-in kinds their own printers.
pub fn table(
    api_version: &str,
    kind: &str,
    columns: Option<&[kaji_printers::CustomColumn]>,
    objs: &[Value],
    include: &str,
    list_meta: Option<&Value>,
) -> Value {
    let now = chrono::Utc::now();
    let mut t = match columns {
        Some(columns) => kaji_printers::custom_table(columns, objs, now),
        None => kaji_printers::table(api_version, kind, objs, now),
    };
    if let Some(rows) = t.get_mut("rows").and_then(Value::as_array_mut) {
        for (row, obj) in rows.iter_mut().zip(objs) {
            row["object"] = match include {
                "None" => Value::Null,
                "Object" => obj.clone(),
                _ => partial_metadata(obj),
            };
        }
    }
    if let Some(meta) = list_meta {
        t["metadata"] = meta.clone();
    } else if let Some(rv) = objs
        .first()
        .and_then(|o| o.pointer("/metadata/resourceVersion"))
    {
        t["metadata"] = json!({"resourceVersion": rv});
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let n = negotiate(&accept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")).unwrap();
        assert_eq!(
            n,
            Negotiated {
                view: View::Table,
                format: Format::Json
            }
        );
    }

    #[test]
    fn protobuf_is_chosen_when_asked_first_and_unknown_types_are_406() {
        let n = negotiate(&accept("application/vnd.kubernetes.protobuf, */*")).unwrap();
        assert_eq!(n.format, Format::Protobuf);
        assert!(negotiate(&accept("application/cbor")).is_err());
    }

    #[test]
    fn duplicate_fields_are_found_with_their_paths() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"c":[{"x":1,"x":2}]},"k":1}"#;
        assert_eq!(
            duplicate_fields("application/json", body),
            ["metadata.name", "spec.c[0].x"]
        );
        assert!(duplicate_fields("application/json", br#"{"a":{"b":1},"c":{"b":1}}"#).is_empty());
        assert!(duplicate_fields("application/json", b"{broken").is_empty());
        assert!(duplicate_fields("application/yaml", b"a: 1").is_empty());
    }

    #[test]
    fn malformed_content_types_are_not_json() {
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
            content_type(&h)
        };
        assert_eq!(content_type(&HeaderMap::new()), "application/json");
        assert_eq!(ct("Application/JSON; charset=utf-8"), "application/json");
        assert_eq!(ct(";;;"), ";;;");
        assert_eq!(decode_body(&ct(";;;"), b"{}").unwrap_err().code, 415);
    }

    #[test]
    fn yaml_bodies_decode_and_unknown_media_types_are_415() {
        let v = decode_body("application/yaml", b"kind: ConfigMap\ndata:\n  a: b\n").unwrap();
        assert_eq!(v["data"]["a"], "b");
        assert_eq!(decode_body("text/plain", b"x").unwrap_err().code, 415);
        assert_eq!(decode_body("application/json", b"{").unwrap_err().code, 400);
    }
}
