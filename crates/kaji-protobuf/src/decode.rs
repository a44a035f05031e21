//! Protobuf message bytes → Kubernetes JSON, driven by the generated schema.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::error::ProtobufError;
use crate::schema::{Field, Kind, Label, Message};
use crate::special;
use crate::wire::{Raw, Reader};

/// String fields where an explicit `""` means something (a Go `*string` set to empty), so
/// it is kept; every other empty string is dropped, as Go's `omitempty` would.
const KEEP_EMPTY_STRING: &[(&str, &str)] = &[
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "storageClassName",
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "volumeAttributesClassName",
    ),
];

/// Go non-pointer integers where zero means "unset" and Go always writes the zero: dropped
/// when zero, as Go's `omitempty` would. Extend only with fields that are not pointers in Go.
const DROP_ZERO: &[(&str, &str)] = &[(
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "generation",
)];

thread_local! {
    /// Whether an embedded protobuf object (a `RawExtension`) is being decoded.
    static NESTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Decodes the bytes of one `msg` into a JSON object.
pub(crate) fn message(
    msg: &'static Message,
    buf: &[u8],
) -> Result<Map<String, Value>, ProtobufError> {
    let mut obj = Map::new();
    into_object(msg, buf, &mut obj)?;
    Ok(obj)
}

/// Decodes the bytes of one `msg` into `obj`, adding to what is there (protobuf merges a
/// message that appears twice; embedded Go structs write into their parent).
fn into_object(
    msg: &'static Message,
    buf: &[u8],
    obj: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    let mut reader = Reader::new(buf);
    while let Some((tag, raw)) = reader.next_field().map_err(ProtobufError::malformed)? {
        let Ok(i) = msg.fields.binary_search_by_key(&tag, |f| f.tag) else {
            continue; // Unknown fields are skipped, as Go does.
        };
        let field = &msg.fields[i];
        field_value(msg, field, raw, obj).map_err(|e| e.within(field.json))?;
    }
    Ok(())
}

fn field_value(
    msg: &'static Message,
    field: &'static Field,
    raw: Raw<'_>,
    obj: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    match (field.label, field.kind) {
        (Label::Single, Kind::Inline(inner)) => into_object(inner, expect_len(raw)?, obj),
        (Label::Single, Kind::Message(inner)) => {
            let bytes = expect_len(raw)?;
            match obj.get_mut(field.json) {
                Some(Value::Object(existing)) => into_object(inner, bytes, existing),
                _ => {
                    obj.insert(
                        field.json.to_string(),
                        Value::Object(message(inner, bytes)?),
                    );
                    Ok(())
                }
            }
        }
        (Label::Single, kind) => {
            match value(kind, raw)? {
                Some(Value::String(s))
                    if s.is_empty()
                        && matches!(kind, Kind::String)
                        && !KEEP_EMPTY_STRING.contains(&(msg.name, field.json)) =>
                {
                    obj.remove(field.json);
                }
                Some(v) if v.as_i64() == Some(0) && DROP_ZERO.contains(&(msg.name, field.json)) => {
                    obj.remove(field.json);
                }
                Some(v) => {
                    obj.insert(field.json.to_string(), v);
                }
                None => {
                    obj.remove(field.json);
                }
            }
            Ok(())
        }
        (Label::Repeated, kind) => {
            let items = obj
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = items else {
                return Err(ProtobufError::malformed(
                    "field is both repeated and single",
                ));
            };
            match (kind, raw) {
                // Packed repeated scalars: a run of varints in one length-delimited field.
                (Kind::Int32 | Kind::Int64 | Kind::Bool, Raw::Len(bytes)) => {
                    let mut r = Reader::new(bytes);
                    while !r.is_empty() {
                        let v = r.varint().map_err(ProtobufError::malformed)?;
                        items.push(scalar_varint(kind, v));
                    }
                }
                _ => {
                    let index = items.len();
                    let v = value(kind, raw).map_err(|e| e.within(&format!("[{index}]")))?;
                    items.push(v.unwrap_or(Value::Null));
                }
            }
            Ok(())
        }
        (Label::Map, kind) => {
            let entry = expect_len(raw)?;
            let mut key = String::new();
            let mut val = None;
            let mut r = Reader::new(entry);
            while let Some((tag, raw)) = r.next_field().map_err(ProtobufError::malformed)? {
                match tag {
                    1 => key = utf8(expect_len(raw)?)?,
                    2 => val = Some(value(kind, raw).map_err(|e| e.within(&format!("[{key:?}]")))?),
                    _ => {}
                }
            }
            let val = match val.flatten() {
                Some(v) => v,
                None => zero(kind),
            };
            let map = obj
                .entry(field.json)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = map {
                map.insert(key, val);
            }
            Ok(())
        }
    }
}

/// One value of `kind`; `None` when the value means "absent" (a zero `Time`, an empty
/// `RawExtension`).
fn value(kind: Kind, raw: Raw<'_>) -> Result<Option<Value>, ProtobufError> {
    Ok(Some(match kind {
        Kind::String => Value::String(utf8(expect_len(raw)?)?),
        Kind::Bool | Kind::Int32 | Kind::Int64 => match raw {
            Raw::Varint(v) => scalar_varint(kind, v),
            other => return Err(wrong_wire("varint", other)),
        },
        Kind::Double => {
            match raw {
                Raw::Fixed64(bits) => {
                    let f = f64::from_bits(bits);
                    Value::Number(Number::from_f64(f).ok_or_else(|| {
                        ProtobufError::malformed(format!("{f} is not a JSON number"))
                    })?)
                }
                other => return Err(wrong_wire("fixed64", other)),
            }
        }
        Kind::Bytes => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(expect_len(raw)?))
        }
        Kind::Message(inner) | Kind::Inline(inner) => {
            Value::Object(message(inner, expect_len(raw)?)?)
        }
        Kind::Time | Kind::MicroTime => {
            let (mut seconds, mut nanos, mut present) = (0i64, 0i32, false);
            let mut r = Reader::new(expect_len(raw)?);
            while let Some((tag, raw)) = r.next_field().map_err(ProtobufError::malformed)? {
                match (tag, raw) {
                    (1, Raw::Varint(v)) => (seconds, present) = (v as i64, true),
                    (2, Raw::Varint(v)) => (nanos, present) = (v as i32, true),
                    _ => {}
                }
            }
            if !present {
                return Ok(None); // Go writes the zero time as an empty message; JSON omits it.
            }
            let micros = matches!(kind, Kind::MicroTime);
            Value::String(
                special::format_time(seconds, nanos, micros).map_err(ProtobufError::malformed)?,
            )
        }
        Kind::Duration => {
            let mut ns = 0i64;
            let mut r = Reader::new(expect_len(raw)?);
            while let Some((tag, raw)) = r.next_field().map_err(ProtobufError::malformed)? {
                if let (1, Raw::Varint(v)) = (tag, raw) {
                    ns = v as i64;
                }
            }
            Value::String(special::format_duration(ns))
        }
        Kind::Quantity => {
            let mut s = None;
            let mut r = Reader::new(expect_len(raw)?);
            while let Some((tag, raw)) = r.next_field().map_err(ProtobufError::malformed)? {
                if tag == 1 {
                    s = Some(utf8(expect_len(raw)?)?);
                }
            }
            Value::String(
                s.filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0".to_string()),
            )
        }
        Kind::IntOrString => {
            let (mut ty, mut int, mut string) = (0u64, 0i32, String::new());
            let mut r = Reader::new(expect_len(raw)?);
            while let Some((tag, raw)) = r.next_field().map_err(ProtobufError::malformed)? {
                match (tag, raw) {
                    (1, Raw::Varint(v)) => ty = v,
                    (2, Raw::Varint(v)) => int = v as i32,
                    (3, raw) => string = utf8(expect_len(raw)?)?,
                    _ => {}
                }
            }
            if ty == 1 {
                Value::String(string)
            } else {
                Value::from(int)
            }
        }
        Kind::RawExtension | Kind::FieldsV1 => {
            let mut bytes: &[u8] = &[];
            let mut r = Reader::new(expect_len(raw)?);
            while let Some((tag, raw)) = r.next_field().map_err(ProtobufError::malformed)? {
                if tag == 1 {
                    bytes = expect_len(raw)?;
                }
            }
            if bytes.is_empty() {
                return Ok(None);
            }
            if bytes.starts_with(crate::MAGIC) {
                // An embedded object that was itself written as protobuf: one level only, so a
                // hostile body cannot nest envelopes until the stack runs out.
                if NESTED.with(|n| n.replace(true)) {
                    return Err(ProtobufError::malformed(
                        "protobuf object nested in a nested object",
                    ));
                }
                let inner = crate::decode(bytes);
                NESTED.with(|n| n.set(false));
                inner?
            } else {
                serde_json::from_slice(bytes).map_err(|e| {
                    ProtobufError::malformed(format!("embedded object is not JSON: {e}"))
                })?
            }
        }
        Kind::StringList => {
            let mut items = Vec::new();
            let mut r = Reader::new(expect_len(raw)?);
            while let Some((tag, raw)) = r.next_field().map_err(ProtobufError::malformed)? {
                if tag == 1 {
                    items.push(Value::String(utf8(expect_len(raw)?)?));
                }
            }
            Value::Array(items)
        }
    }))
}

/// The JSON of a map value that was left off the wire.
fn zero(kind: Kind) -> Value {
    match kind {
        Kind::Bool => Value::Bool(false),
        Kind::Int32 | Kind::Int64 | Kind::Double | Kind::IntOrString => Value::from(0),
        Kind::Message(_) | Kind::Inline(_) => Value::Object(Map::new()),
        Kind::Quantity => Value::String("0".to_string()),
        Kind::StringList => Value::Array(Vec::new()),
        Kind::Time | Kind::MicroTime | Kind::RawExtension | Kind::FieldsV1 => Value::Null,
        Kind::Duration => Value::String("0s".to_string()),
        Kind::String | Kind::Bytes => Value::String(String::new()),
    }
}

fn scalar_varint(kind: Kind, v: u64) -> Value {
    match kind {
        Kind::Bool => Value::Bool(v != 0),
        Kind::Int32 => Value::from(v as i32),
        _ => Value::from(v as i64),
    }
}

fn expect_len<'a>(raw: Raw<'a>) -> Result<&'a [u8], ProtobufError> {
    match raw {
        Raw::Len(bytes) => Ok(bytes),
        other => Err(wrong_wire("length-delimited", other)),
    }
}

fn wrong_wire(expected: &str, got: Raw<'_>) -> ProtobufError {
    ProtobufError::malformed(format!(
        "expected a {expected} value, found {}",
        got.wire_name()
    ))
}

fn utf8(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ProtobufError::malformed("string is not valid UTF-8"))
}
