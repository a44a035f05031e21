//! Per-resource behaviour: what a kind does on create and update, how it is
//! validated, which fields it can be selected by. The generic registry calls
//! these hooks and implements every verb once.

use std::sync::Arc;

use kaji_core::validation;
use kaji_core::{Cause, ResourceInfo};
use serde_json::Value;

use crate::allocate::Allocator;
use crate::defaults;
use crate::validate;

/// Per-resource hooks, in the shape of Kubernetes' `RESTCreateStrategy` /
/// `RESTUpdateStrategy`.
pub trait Strategy: Send + Sync + 'static {
    /// The resource this strategy serves.
    fn info(&self) -> &'static ResourceInfo;

    /// Fills defaults into a new or updated object (idempotent).
    fn default(&self, _obj: &mut Value) {}

    /// Clears what a client may not set on create (for kinds with a status
    /// subresource: the status).
    fn prepare_for_create(&self, obj: &mut Value) {
        if self.info().has_status {
            if let Some(map) = obj.as_object_mut() {
                map.remove("status");
            }
        }
    }

    /// On the main endpoint, an update may not change status: keep the old one.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if self.info().has_status {
            if let Some(map) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => {
                        map.insert("status".into(), s.clone());
                    }
                    None => {
                        map.remove("status");
                    }
                }
            }
        }
    }

    /// Validates a whole object (create and update).
    fn validate(&self, obj: &Value) -> Vec<Cause>;

    /// Validates the transition from `old` to `new` (immutable fields).
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Everything checked on an update of the main resource: by default the
    /// whole object, then the transition. Kinds whose checks depend on the
    /// old object (CEL rules ratchet on unchanged values) replace this.
    fn validate_for_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        causes.extend(self.validate_update(new, old));
        causes
    }

    /// Whether `generation` is tracked (bumped on every spec change).
    fn tracks_generation(&self) -> bool {
        self.info().has_status
    }

    /// The value of a selectable field, or `None` if the field is not supported.
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        common_field(obj, field)
    }

    /// What reserves values this kind's objects hold (Service cluster IPs
    /// and node ports), if anything does.
    fn allocator(&self) -> Option<&dyn Allocator> {
        None
    }

    /// Removes the fields a kind without a built-in typed model does not
    /// know (a custom resource's schema pruning), returning their paths
    /// (`.spec.foo`) for "unknown field" warnings. Built-in kinds are pruned
    /// through their typed model instead.
    fn prune(&self, _obj: &mut Value) -> Vec<String> {
        Vec::new()
    }

    /// Finalizers a deletion adds, so that the kind's own cleanup runs
    /// before the object goes (a CRD's objects are deleted first).
    fn finalizers_on_delete(&self) -> &'static [&'static str] {
        &[]
    }

    /// Adjusts an object as read from the store, before anyone sees it
    /// (custom resources: served version and read-time defaults).
    fn on_read(&self, _obj: &mut Value) {}

    /// Adjusts an object about to be stored (custom resources: the storage
    /// version).
    fn to_storage(&self, _obj: &mut Value) {}

    /// The schema server-side apply merges with, for kinds kaji-apply does
    /// not know (custom resources: `x-kubernetes-list-type` and map keys).
    fn apply_schema(&self) -> Option<&kaji_apply::Schema> {
        None
    }

    /// Where the `/scale` subresource reads and writes, for kinds whose
    /// replicas are not at `spec.replicas` with a `spec.selector`.
    fn scale_paths(&self) -> Option<&ScalePaths> {
        None
    }
}

/// Where a kind keeps what its `/scale` subresource shows, as JSON pointers
/// (a CRD's `specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// Desired replicas, e.g. `/spec/replicas`.
    pub spec_replicas: String,
    /// Observed replicas, e.g. `/status/replicas`.
    pub status_replicas: String,
    /// The label selector, serialized as a string, e.g. `/status/selector`.
    pub label_selector: Option<String>,
}

/// `metadata.name` and `metadata.namespace`, selectable on every kind.
pub fn common_field(obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => Some(str_at(obj, "/metadata/name")),
        "metadata.namespace" => Some(str_at(obj, "/metadata/namespace")),
        _ => None,
    }
}

fn str_at(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The strategy of a built-in kind: defaults and validation by kind.
pub struct BuiltinStrategy {
    info: &'static ResourceInfo,
    allocator: Option<Arc<dyn Allocator>>,
}

impl BuiltinStrategy {
    /// The strategy for one catalogue entry.
    pub fn new(info: &'static ResourceInfo) -> Self {
        BuiltinStrategy {
            info,
            allocator: None,
        }
    }

    /// The same strategy, reserving values through `allocator`.
    pub fn with_allocator(mut self, allocator: Arc<dyn Allocator>) -> Self {
        self.allocator = Some(allocator);
        self
    }
}

impl Strategy for BuiltinStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn default(&self, obj: &mut Value) {
        defaults::apply(self.info.kind, self.info.group, obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        // Namespaces and nodes keep what the creator says about them; the rest start without status.
        match self.info.kind {
            "Namespace" => {
                if let Some(map) = obj.as_object_mut() {
                    map.insert("status".into(), serde_json::json!({"phase": "Active"}));
                }
            }
            "Node" | "CustomResourceDefinition" => {}
            _ if self.info.has_status => {
                if let Some(map) = obj.as_object_mut() {
                    map.remove("status");
                }
            }
            _ => {}
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let name_check: fn(&str, bool) -> Vec<String> = match self.info.kind {
            "Namespace" => validation::name_is_dns1123_label,
            "Service" => validation::name_is_dns1035_label,
            _ => validation::name_is_dns1123_subdomain,
        };
        let mut causes = validation::object_meta(
            obj.get("metadata").unwrap_or(&Value::Null),
            self.info.namespaced(),
            name_check,
        );
        causes.extend(validate::by_kind(self.info.group, self.info.kind, obj));
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        validate::update_by_kind(self.info.group, self.info.kind, new, old)
    }

    fn tracks_generation(&self) -> bool {
        self.info.has_status && !matches!(self.info.kind, "Namespace" | "Node")
    }

    fn allocator(&self) -> Option<&dyn Allocator> {
        self.allocator.as_deref()
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        if let Some(v) = common_field(obj, field) {
            return Some(v);
        }
        let pointer = match (self.info.kind, field) {
            ("Pod", "spec.nodeName") => "/spec/nodeName",
            ("Pod", "spec.restartPolicy") => "/spec/restartPolicy",
            ("Pod", "spec.schedulerName") => "/spec/schedulerName",
            ("Pod", "spec.serviceAccountName") => "/spec/serviceAccountName",
            ("Pod", "spec.hostNetwork") => {
                return Some(
                    obj.pointer("/spec/hostNetwork")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                )
            }
            ("Pod", "status.phase") => "/status/phase",
            ("Pod", "status.podIP") => "/status/podIP",
            ("Pod", "status.nominatedNodeName") => "/status/nominatedNodeName",
            ("Event", "involvedObject.kind") => "/involvedObject/kind",
            ("Event", "involvedObject.namespace") => "/involvedObject/namespace",
            ("Event", "involvedObject.name") => "/involvedObject/name",
            ("Event", "involvedObject.uid") => "/involvedObject/uid",
            ("Event", "involvedObject.apiVersion") => "/involvedObject/apiVersion",
            ("Event", "involvedObject.resourceVersion") => "/involvedObject/resourceVersion",
            ("Event", "involvedObject.fieldPath") => "/involvedObject/fieldPath",
            ("Event", "reason") => "/reason",
            ("Event", "reportingComponent") => "/reportingComponent",
            ("Event", "source") => "/source/component",
            ("Event", "type") => "/type",
            ("Event", "regarding.kind") => "/regarding/kind",
            ("Event", "regarding.name") => "/regarding/name",
            ("Event", "regarding.namespace") => "/regarding/namespace",
            ("Secret", "type") => "/type",
            ("Namespace", "status.phase") => "/status/phase",
            ("Node", "spec.unschedulable") => {
                return Some(
                    obj.pointer("/spec/unschedulable")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                )
            }
            ("ReplicaSet", "status.replicas") => "/status/replicas",
            ("Job", "status.successful") => "/status/succeeded",
            _ => return None,
        };
        Some(str_at(obj, pointer))
    }
}
