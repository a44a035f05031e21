//! `metadata.managedFields`: decoding its entries into field sets, and
//! encoding them back in Kubernetes' order.

use chrono::DateTime;
use serde_json::{Map, Value};

use crate::set::Set;

/// The manager name that takes the oldest `Update` entries once there are
/// more than [`MAX_UPDATE_MANAGERS`].
pub const ANCIENT_CHANGES_MANAGER: &str = "ancient-changes";
/// The manager name that owns every field of an object applied to for the
/// first time while it has no managedFields.
pub const BEFORE_FIRST_APPLY_MANAGER: &str = "before-first-apply";
/// The most `Update` entries an object keeps, as Kubernetes.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The operation an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who an entry belongs to. `Apply` entries are not told apart by API
/// version, `Update` entries are — as Kubernetes' manager identifiers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Identity {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    /// Empty for `Apply`.
    pub(crate) api_version: String,
    /// Empty for the main resource.
    pub(crate) subresource: String,
}

impl Identity {
    pub(crate) fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: Option<&str>,
    ) -> Self {
        Identity {
            manager: manager.to_string(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_string(),
            },
            subresource: subresource.unwrap_or_default().to_string(),
        }
    }

    /// How Kubernetes names this manager in conflict messages:
    /// `"kubectl"`, `"kube-controller-manager" using apps/v1`.
    pub(crate) fn describe(&self) -> String {
        let mut out = Value::String(self.manager.clone()).to_string();
        if !self.subresource.is_empty() {
            out.push_str(&format!(
                " with subresource {}",
                Value::String(self.subresource.clone())
            ));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// One decoded entry of `metadata.managedFields`.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) id: Identity,
    /// The API version the field set is expressed in.
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) set: Set,
}

/// The managedFields of an object (absent or null means none).
///
/// # Errors
/// A message when an entry is malformed.
pub(crate) fn decode(object: &Value) -> Result<Vec<Entry>, String> {
    let list = match object.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(format!("metadata.managedFields is not a list: {other}")),
    };
    let mut out: Vec<Entry> = Vec::with_capacity(list.len());
    for raw in list {
        let Value::Object(e) = raw else {
            return Err(format!("managedFields entry is not an object: {raw}"));
        };
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => {
                return Err(format!(
                    "managedFields entry has unknown operation {other:?}"
                ))
            }
        };
        let fields_type = text("fieldsType");
        if !fields_type.is_empty() && fields_type != "FieldsV1" {
            return Err(format!(
                "managedFields entry has unknown fieldsType {fields_type:?}"
            ));
        }
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => Set::default(),
            Some(v) => Set::from_fields_v1(v)?,
        };
        let subresource = Some(text("subresource")).filter(|s| !s.is_empty());
        let id = Identity::new(text("manager"), operation, text("apiVersion"), subresource);
        let time = Some(text("time").to_string()).filter(|t| !t.is_empty());
        match out.iter_mut().find(|x| x.id == id) {
            Some(same) => same.set = same.set.union(&set),
            None => out.push(Entry {
                id,
                api_version: text("apiVersion").to_string(),
                time,
                set,
            }),
        }
    }
    Ok(out)
}

/// Whether `object` asks for its managedFields to be reset: a list holding
/// one empty entry, as Kubernetes reads `managedFields: [{}]`.
pub(crate) fn asks_reset(object: &Value) -> bool {
    matches!(object.pointer("/metadata/managedFields"),
        Some(Value::Array(list)) if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty))
}

fn seconds(time: Option<&String>) -> i64 {
    time.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp())
}

/// Merges the oldest `Update` entries into one `ancient-changes` entry per
/// API version until at most [`MAX_UPDATE_MANAGERS`] remain.
pub(crate) fn cap_updates(entries: &mut Vec<Entry>) {
    let count = |es: &Vec<Entry>| {
        es.iter()
            .filter(|e| e.id.operation == Operation::Update)
            .count()
    };
    while count(entries) > MAX_UPDATE_MANAGERS {
        let oldest = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.id.operation == Operation::Update && e.id.manager != ANCIENT_CHANGES_MANAGER
            })
            .min_by_key(|(_, e)| seconds(e.time.as_ref()))
            .map(|(i, _)| i);
        let Some(i) = oldest else { return };
        let old = entries.remove(i);
        let bucket = Identity::new(
            ANCIENT_CHANGES_MANAGER,
            Operation::Update,
            &old.api_version,
            None,
        );
        match entries.iter_mut().find(|e| e.id == bucket) {
            Some(b) => {
                b.set = b.set.union(&old.set);
                if seconds(old.time.as_ref()) > seconds(b.time.as_ref()) {
                    b.time = old.time;
                }
            }
            None => entries.push(Entry {
                id: bucket,
                api_version: old.api_version,
                time: old.time,
                set: old.set,
            }),
        }
    }
}

/// The entries as `metadata.managedFields`, sorted as Kubernetes sorts
/// them: by operation, time, manager, API version and subresource.
pub(crate) fn encode(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.id.operation,
            seconds(a.time.as_ref()),
            &a.id.manager,
            &a.api_version,
            &a.id.subresource,
        )
            .cmp(&(
                b.id.operation,
                seconds(b.time.as_ref()),
                &b.id.manager,
                &b.api_version,
                &b.id.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), Value::String(e.id.manager.clone()));
                m.insert(
                    "operation".into(),
                    Value::String(e.id.operation.as_str().into()),
                );
                m.insert("apiVersion".into(), Value::String(e.api_version.clone()));
                if let Some(t) = &e.time {
                    m.insert("time".into(), Value::String(t.clone()));
                }
                m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.id.subresource.is_empty() {
                    m.insert(
                        "subresource".into(),
                        Value::String(e.id.subresource.clone()),
                    );
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Sets (or, for no entries, removes) `metadata.managedFields` of `object`.
pub(crate) fn store(object: &mut Value, entries: &[Entry]) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("managedFields".into(), encode(entries));
    }
}

/// `object` without `metadata.managedFields`.
pub(crate) fn without(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.remove("managedFields");
    }
    out
}
