//! The four patch types, each run on an (original object, patch) pair so
//! that the merge logic runs, not only the parser.

use kaji_apiserver::parsers::decode_body;
use serde_json::Value;

use crate::split_two;

/// The time every fuzzed write is stamped with.
const NOW: &str = "2024-01-01T00:00:00Z";

/// The live object: JSON, as the store holds it. Not an object (the server
/// never patches one) gives `None`.
fn original(data: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(data)
        .ok()
        .filter(Value::is_object)
}

/// `apiVersion` and `kind` of an object, defaulting to a Pod's.
fn type_of(obj: &Value) -> (String, String) {
    let field = |name: &str, default: &str| {
        obj.get(name)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    (field("apiVersion", "v1"), field("kind", "Pod"))
}

/// An RFC 6902 JSON patch (`application/json-patch+json`) on an object.
pub fn json_patch(data: &[u8]) {
    let (live, patch) = split_two(data);
    let Some(live) = original(live) else { return };
    let Ok(patch) = decode_body("application/json-patch+json", patch) else {
        return;
    };
    let _ = kaji_patch::apply_json_patch(&live, &patch);
}

/// An RFC 7386 merge patch (`application/merge-patch+json`) on an object.
pub fn merge_patch(data: &[u8]) {
    let (live, patch) = split_two(data);
    let Some(live) = original(live) else { return };
    let Ok(patch) = decode_body("application/merge-patch+json", patch) else {
        return;
    };
    let _ = kaji_patch::apply_merge_patch(&live, &patch);
}

/// A strategic merge patch (`application/strategic-merge-patch+json`) on an
/// object, with the merge keys of the object's `apiVersion` and `kind`.
pub fn strategic_merge_patch(data: &[u8]) {
    let (live, patch) = split_two(data);
    let Some(live) = original(live) else { return };
    let Ok(patch) = decode_body("application/strategic-merge-patch+json", patch) else {
        return;
    };
    let (api_version, kind) = type_of(&live);
    let _ = kaji_patch::apply_strategic_merge_patch(&live, &patch, &api_version, &kind);
}

/// Server-side apply (`application/apply-patch+yaml`): the first part is the
/// live object (empty for a create), the second the applied YAML; also
/// records the applied object as an update, as create and update do.
pub fn apply(data: &[u8]) {
    let (live, applied) = split_two(data);
    let live = if live.is_empty() {
        None
    } else {
        match original(live) {
            Some(v) => Some(v),
            None => return,
        }
    };
    let Ok(applied) = decode_body("application/apply-patch+yaml", applied) else {
        return;
    };
    let (api_version, kind) = type_of(&applied);
    let manager = kaji_apply::FieldManager::new("fuzz", &api_version, &kind, NOW);
    let force = data.len() % 2 == 1;
    if let Ok(out) = manager.apply(live.as_ref(), &applied, force) {
        let _ = kaji_apply::FieldManager::new("other", &api_version, &kind, NOW).apply(
            Some(&out.object),
            &applied,
            !force,
        );
    }
    if applied.is_object() {
        manager.update(live.as_ref(), &applied);
    }
}
