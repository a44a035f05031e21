//! Encodes a swagger 2.0 JSON document as a gnostic `openapi.v2.Document`
//! protobuf (gnostic-models `openapiv2/OpenAPIv2.proto`), the form kubectl
//! requests from `/openapi/v2`.
//!
//! Only what the documents of this crate contain is encoded: info, paths with
//! their operations, body/query/path parameters and responses, definitions,
//! and every schema keyword swagger 2.0 knows. Vendor extensions (`x-*`) are
//! `NamedAny`s whose value is YAML text; JSON is valid YAML, so the value's
//! JSON serialization is used. Keywords swagger 2.0 lacks (`oneOf`) are
//! dropped, as gnostic's own compiler does.

use serde_json::{Map, Value};

/// A protobuf message under construction.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A string field; proto3 omits empty strings.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// A repeated string element; always written.
    fn string_elem(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn message(&mut self, field: u32, msg: Msg) {
        self.bytes(field, &msg.0);
    }

    fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// Encodes a swagger 2.0 document.
pub(crate) fn encode_document(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    m.string(1, str_of(doc, "swagger"));
    if let Some(info) = doc.get("info") {
        let mut i = Msg::default();
        i.string(1, str_of(info, "title"));
        i.string(2, str_of(info, "version"));
        i.string(3, str_of(info, "description"));
        m.message(2, i);
    }
    if let Some(Value::Object(paths)) = doc.get("paths") {
        let mut p = Msg::default();
        for (path, item) in paths {
            let mut named = Msg::default();
            named.string(1, path);
            named.message(2, path_item(item));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if let Some(Value::Object(defs)) = doc.get("definitions") {
        let mut d = Msg::default();
        for (name, schema_value) in defs {
            d.message(1, named_schema(name, schema_value));
        }
        m.message(9, d);
    }
    vendor_extensions(&mut m, 16, doc);
    m.0
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(m: &mut Msg, field: u32, v: &Value, key: &str) {
    if let Some(Value::Array(items)) = v.get(key) {
        for s in items.iter().filter_map(Value::as_str) {
            m.string_elem(field, s);
        }
    }
}

/// `Any { yaml }` holding `value` as JSON text.
fn any(value: &Value) -> Msg {
    let mut a = Msg::default();
    a.string(2, &value.to_string());
    a
}

fn vendor_extensions(m: &mut Msg, field: u32, v: &Value) {
    let Some(map) = v.as_object() else { return };
    for (key, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Msg::default();
        named.string(1, key);
        named.message(2, any(value));
        m.message(field, named);
    }
}

fn path_item(item: &Value) -> Msg {
    let mut m = Msg::default();
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(method) {
            m.message(field, operation(op));
        }
    }
    if let Some(Value::Array(params)) = item.get("parameters") {
        for p in params {
            m.message(9, parameters_item(p));
        }
    }
    m
}

fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    strings(&mut m, 1, op, "tags");
    m.string(2, str_of(op, "summary"));
    m.string(3, str_of(op, "description"));
    m.string(5, str_of(op, "operationId"));
    strings(&mut m, 6, op, "produces");
    strings(&mut m, 7, op, "consumes");
    if let Some(Value::Array(params)) = op.get("parameters") {
        for p in params {
            m.message(8, parameters_item(p));
        }
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        let mut r = Msg::default();
        for (code, response) in responses {
            let mut resp = Msg::default();
            resp.string(1, str_of(response, "description"));
            if let Some(schema_value) = response.get("schema") {
                let mut item = Msg::default();
                item.message(1, schema(schema_value));
                resp.message(2, item);
            }
            let mut value = Msg::default();
            value.message(1, resp);
            let mut named = Msg::default();
            named.string(1, code);
            named.message(2, value);
            r.message(1, named);
        }
        m.message(9, r);
    }
    strings(&mut m, 10, op, "schemes");
    vendor_extensions(&mut m, 13, op);
    m
}

/// `ParametersItem { parameter: Parameter { body | non_body { query | path } } }`.
fn parameters_item(p: &Value) -> Msg {
    let location = str_of(p, "in");
    let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
    let mut parameter = Msg::default();
    if location == "body" {
        let mut b = Msg::default();
        b.string(1, str_of(p, "description"));
        b.string(2, str_of(p, "name"));
        b.string(3, location);
        b.bool(4, required);
        if let Some(s) = p.get("schema") {
            b.message(5, schema(s));
        }
        vendor_extensions(&mut b, 6, p);
        parameter.message(1, b);
    } else {
        // Query and path sub-schemas share their first fields; they differ
        // in where `type` and the later fields sit.
        let is_path = location == "path";
        let mut s = Msg::default();
        s.bool(1, required);
        s.string(2, location);
        s.string(3, str_of(p, "description"));
        s.string(4, str_of(p, "name"));
        let unique = p
            .get("uniqueItems")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if is_path {
            s.string(5, str_of(p, "type"));
            s.string(6, str_of(p, "format"));
            s.bool(19, unique);
            vendor_extensions(&mut s, 22, p);
        } else {
            s.string(6, str_of(p, "type"));
            s.string(7, str_of(p, "format"));
            s.bool(20, unique);
            vendor_extensions(&mut s, 23, p);
        }
        let mut non_body = Msg::default();
        non_body.message(if is_path { 4 } else { 3 }, s);
        parameter.message(2, non_body);
    }
    let mut item = Msg::default();
    item.message(1, parameter);
    item
}

fn named_schema(name: &str, value: &Value) -> Msg {
    let mut named = Msg::default();
    named.string(1, name);
    named.message(2, schema(value));
    named
}

/// A swagger 2.0 `Schema` message.
fn schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(map) = v.as_object() else {
        return m;
    };
    m.string(1, str_in(map, "$ref"));
    m.string(2, str_in(map, "format"));
    m.string(3, str_in(map, "title"));
    m.string(4, str_in(map, "description"));
    if let Some(d) = map.get("default") {
        m.message(5, any(d));
    }
    for (field, key) in [(6, "multipleOf"), (7, "maximum")] {
        if let Some(x) = map.get(key).and_then(Value::as_f64) {
            m.double(field, x);
        }
    }
    m.bool(8, bool_in(map, "exclusiveMaximum"));
    if let Some(x) = map.get("minimum").and_then(Value::as_f64) {
        m.double(9, x);
    }
    m.bool(10, bool_in(map, "exclusiveMinimum"));
    m.int64(11, int_in(map, "maxLength"));
    m.int64(12, int_in(map, "minLength"));
    m.string(13, str_in(map, "pattern"));
    m.int64(14, int_in(map, "maxItems"));
    m.int64(15, int_in(map, "minItems"));
    m.bool(16, bool_in(map, "uniqueItems"));
    m.int64(17, int_in(map, "maxProperties"));
    m.int64(18, int_in(map, "minProperties"));
    if let Some(Value::Array(required)) = map.get("required") {
        for r in required.iter().filter_map(Value::as_str) {
            m.string_elem(19, r);
        }
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        for e in values {
            m.message(20, any(e));
        }
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut a = Msg::default();
            a.key(2, 0);
            a.varint(u64::from(*b));
            m.message(21, a);
        }
        Some(s @ Value::Object(_)) => {
            let mut a = Msg::default();
            a.message(1, schema(s));
            m.message(21, a);
        }
        _ => {}
    }
    match map.get("type") {
        Some(Value::String(t)) => {
            let mut t_msg = Msg::default();
            t_msg.string_elem(1, t);
            m.message(22, t_msg);
        }
        Some(Value::Array(types)) => {
            let mut t_msg = Msg::default();
            for t in types.iter().filter_map(Value::as_str) {
                t_msg.string_elem(1, t);
            }
            m.message(22, t_msg);
        }
        _ => {}
    }
    match map.get("items") {
        Some(s @ Value::Object(_)) => {
            let mut items = Msg::default();
            items.message(1, schema(s));
            m.message(23, items);
        }
        Some(Value::Array(list)) => {
            let mut items = Msg::default();
            for s in list {
                items.message(1, schema(s));
            }
            m.message(23, items);
        }
        _ => {}
    }
    if let Some(Value::Array(all_of)) = map.get("allOf") {
        for s in all_of {
            m.message(24, schema(s));
        }
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        let mut p = Msg::default();
        for (name, s) in properties {
            p.message(1, named_schema(name, s));
        }
        m.message(25, p);
    }
    m.string(26, str_in(map, "discriminator"));
    m.bool(27, bool_in(map, "readOnly"));
    if let Some(e) = map.get("example") {
        m.message(30, any(e));
    }
    vendor_extensions(&mut m, 31, v);
    m
}

fn str_in<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

fn bool_in(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn int_in(map: &Map<String, Value>, key: &str) -> i64 {
    map.get(key).and_then(Value::as_i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_use_seven_bit_groups() {
        let mut m = Msg::default();
        m.varint(300);
        assert_eq!(m.0, vec![0xac, 0x02]);
    }

    #[test]
    fn document_starts_with_the_swagger_version_field() {
        let bytes =
            encode_document(&json!({"swagger": "2.0", "info": {"title": "K", "version": "v"}}));
        // field 1, wire type 2, length 3, "2.0"; then field 2 (info).
        assert_eq!(&bytes[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(bytes[5], 0x12);
    }

    #[test]
    fn vendor_extensions_are_named_any_with_yaml_text() {
        let mut m = Msg::default();
        vendor_extensions(&mut m, 31, &json!({"x-a": [1], "description": "d"}));
        let text = String::from_utf8_lossy(&m.0);
        assert!(text.contains("x-a") && text.contains("[1]"));
        assert!(!text.contains('d'));
    }
}
