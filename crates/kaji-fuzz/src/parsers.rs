//! Single-input parsers: request bodies, selectors, quantities, paths and
//! query strings.

use kaji_apiserver::parsers::{decode_body, parse_path, parse_query};
use kaji_core::selector::{escape_field_value, unescape_field_value, FieldSelector, LabelSelector};
use serde_json::{json, Value};

/// The media types a body may be sent as, the first byte choosing one.
const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/vnd.kubernetes.protobuf",
    "",
    "text/plain",
];

/// A request body: the first byte picks the media type, the rest is decoded
/// as the server decodes create, update and patch bodies; what decodes is
/// rendered back as JSON, as responses are.
pub fn body(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let media = MEDIA_TYPES[usize::from(selector) % MEDIA_TYPES.len()];
    if let Ok(value) = decode_body(media, rest) {
        serde_json::to_vec(&value).expect("decoded values serialize");
    }
}

/// Labels the parsed selectors are matched against.
fn sample_labels() -> serde_json::Map<String, Value> {
    match json!({"app": "web", "tier": "front", "env": "prod", "a": "", "x.io/y": "1"}) {
        Value::Object(m) => m,
        _ => unreachable!("an object literal"),
    }
}

/// A `labelSelector` query parameter; what parses must print to a form that
/// parses to the same selector. A JSON `metav1.LabelSelector` goes through
/// the object form too.
pub fn label_selector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(sel) = LabelSelector::parse(&text) {
        let printed = sel.to_string();
        let again = LabelSelector::parse(&printed)
            .unwrap_or_else(|e| panic!("{printed:?} (printed from {text:?}) does not parse: {e}"));
        assert_eq!(again, sel, "{text:?} printed as {printed:?}");
        sel.matches(&sample_labels());
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        if let Ok(sel) = LabelSelector::from_label_selector_json(&value) {
            sel.matches(&sample_labels());
            let _ = LabelSelector::parse(&sel.to_string());
        }
    }
}

/// A `fieldSelector` query parameter; what parses must print to a form that
/// parses to the same selector, and escaping any value must unescape to it.
pub fn field_selector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(sel) = FieldSelector::parse(&text) {
        let printed = sel.to_string();
        let again = FieldSelector::parse(&printed)
            .unwrap_or_else(|e| panic!("{printed:?} (printed from {text:?}) does not parse: {e}"));
        // Terms are a conjunction kept in the order of their raw text (as
        // Kubernetes sorts them), which printing may change: compare as sets.
        let terms = |s: &FieldSelector| {
            let mut t: Vec<String> = s.requirements().iter().map(|r| format!("{r:?}")).collect();
            t.sort();
            t
        };
        assert_eq!(
            terms(&again),
            terms(&sel),
            "{text:?} printed as {printed:?}"
        );
        sel.matches(|f| (f == "metadata.name").then(|| "web".to_string()));
    }
    let escaped = escape_field_value(&text);
    assert_eq!(
        unescape_field_value(&escaped).ok().as_deref(),
        Some(&*text),
        "escaping {text:?} gives {escaped:?}"
    );
}

/// A resource quantity, as the server's validation (`kaji-core`) parses
/// them; what parses must compare consistently with its scaled values.
pub fn quantity(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(q) = kaji_core::validation::quantity(&text) {
        let (milli, units) = (q.milli_value(), q.value());
        assert_eq!(milli.signum(), q.nanos().signum(), "{text:?}");
        assert_eq!(units.signum(), q.nanos().signum(), "{text:?}");
    }
}

/// A request target (`path?query`) as the router splits it: the path into a
/// resource path, the query into parameters.
pub fn resource_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*text, None),
    };
    let _ = parse_path(path);
    let _ = parse_query(query);
    if let Ok(uri) = http::Uri::try_from(&*text) {
        let _ = parse_path(uri.path());
        let _ = parse_query(uri.query());
    }
}
