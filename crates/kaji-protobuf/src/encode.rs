//! Kubernetes JSON → protobuf message bytes, driven by the generated schema.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::ProtobufError;
use crate::schema::{Kind, Label, Message};
use crate::special;
use crate::wire::{put_double_field, put_len, put_varint_field};

/// Encodes the JSON object `obj` as one `msg`, fields in tag order as Go writes them.
/// JSON fields the schema does not know (`apiVersion`, `kind`, `status` of kinds without
/// one, write-only fields such as a Secret's `stringData`) are left out.
pub(crate) fn message(
    msg: &'static Message,
    obj: &Map<String, Value>,
) -> Result<Vec<u8>, ProtobufError> {
    let mut out = Vec::new();
    for field in msg.fields {
        let at = |e: ProtobufError| e.within(field.json);
        if let Kind::Inline(inner) = field.kind {
            put_len(&mut out, field.tag, &message(inner, obj)?);
            continue;
        }
        let Some(v) = obj.get(field.json).filter(|v| !v.is_null()) else {
            continue;
        };
        match field.label {
            Label::Single => put_value(&mut out, field.tag, field.kind, v).map_err(at)?,
            Label::Repeated => {
                let Value::Array(items) = v else {
                    return Err(at(ProtobufError::invalid(format!(
                        "expected an array, found {}",
                        type_name(v)
                    ))));
                };
                for (i, item) in items.iter().enumerate() {
                    put_value(&mut out, field.tag, field.kind, item)
                        .map_err(|e| at(e.within(&format!("[{i}]"))))?;
                }
            }
            Label::Map => {
                let Value::Object(map) = v else {
                    return Err(at(ProtobufError::invalid(format!(
                        "expected an object, found {}",
                        type_name(v)
                    ))));
                };
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort(); // Go writes map entries in key order.
                for key in keys {
                    let mut entry = Vec::new();
                    put_len(&mut entry, 1, key.as_bytes());
                    put_value(&mut entry, 2, field.kind, &map[key])
                        .map_err(|e| at(e.within(&format!("[{key:?}]"))))?;
                    put_len(&mut out, field.tag, &entry);
                }
            }
        }
    }
    Ok(out)
}

/// Appends field `tag` holding `v` as a `kind`.
fn put_value(out: &mut Vec<u8>, tag: u32, kind: Kind, v: &Value) -> Result<(), ProtobufError> {
    match kind {
        Kind::String => put_len(out, tag, as_str(v)?.as_bytes()),
        Kind::Bool => match v {
            Value::Bool(b) => put_varint_field(out, tag, i64::from(*b)),
            other => return Err(mismatch("a boolean", other)),
        },
        Kind::Int32 => {
            let n = as_i64(v)?;
            let n = i32::try_from(n)
                .map_err(|_| ProtobufError::invalid(format!("{n} does not fit in int32")))?;
            put_varint_field(out, tag, i64::from(n));
        }
        Kind::Int64 => put_varint_field(out, tag, as_i64(v)?),
        Kind::Double => match v.as_f64() {
            Some(f) => put_double_field(out, tag, f),
            None => return Err(mismatch("a number", v)),
        },
        Kind::Bytes => {
            let s = as_str(v)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| ProtobufError::invalid(format!("invalid base64: {e}")))?;
            put_len(out, tag, &bytes);
        }
        Kind::Message(inner) | Kind::Inline(inner) => match v {
            Value::Object(obj) => put_len(out, tag, &message(inner, obj)?),
            other => return Err(mismatch("an object", other)),
        },
        Kind::Time | Kind::MicroTime => {
            let s = as_str(v)?;
            let mut body = Vec::new();
            if !s.is_empty() {
                let (seconds, nanos) = special::parse_time(s).map_err(ProtobufError::invalid)?;
                put_varint_field(&mut body, 1, seconds);
                put_varint_field(&mut body, 2, i64::from(nanos));
            }
            put_len(out, tag, &body);
        }
        Kind::Duration => {
            let ns = special::parse_duration(as_str(v)?).map_err(ProtobufError::invalid)?;
            let mut body = Vec::new();
            put_varint_field(&mut body, 1, ns);
            put_len(out, tag, &body);
        }
        Kind::Quantity => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(mismatch("a quantity string", other)),
            };
            let mut body = Vec::new();
            put_len(&mut body, 1, s.as_bytes());
            put_len(out, tag, &body);
        }
        Kind::IntOrString => {
            let mut body = Vec::new();
            match v {
                Value::String(s) => {
                    put_varint_field(&mut body, 1, 1);
                    put_varint_field(&mut body, 2, 0);
                    put_len(&mut body, 3, s.as_bytes());
                }
                Value::Number(_) => {
                    let n = as_i64(v)?;
                    let n = i32::try_from(n).map_err(|_| {
                        ProtobufError::invalid(format!("{n} does not fit in int32"))
                    })?;
                    put_varint_field(&mut body, 1, 0);
                    put_varint_field(&mut body, 2, i64::from(n));
                    put_len(&mut body, 3, b"");
                }
                other => return Err(mismatch("an integer or a string", other)),
            }
            put_len(out, tag, &body);
        }
        Kind::RawExtension | Kind::FieldsV1 => {
            let raw = serde_json::to_vec(v).map_err(|e| ProtobufError::invalid(e.to_string()))?;
            let mut body = Vec::new();
            put_len(&mut body, 1, &raw);
            put_len(out, tag, &body);
        }
        Kind::StringList => {
            let Value::Array(items) = v else {
                return Err(mismatch("an array of strings", v));
            };
            let mut body = Vec::new();
            for item in items {
                put_len(&mut body, 1, as_str(item)?.as_bytes());
            }
            put_len(out, tag, &body);
        }
    }
    Ok(())
}

fn as_str(v: &Value) -> Result<&str, ProtobufError> {
    v.as_str().ok_or_else(|| mismatch("a string", v))
}

fn as_i64(v: &Value) -> Result<i64, ProtobufError> {
    if let Some(n) = v.as_i64() {
        return Ok(n);
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Ok(f as i64),
        _ => Err(mismatch("an integer", v)),
    }
}

fn mismatch(expected: &str, found: &Value) -> ProtobufError {
    ProtobufError::invalid(format!("expected {expected}, found {}", type_name(found)))
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}
