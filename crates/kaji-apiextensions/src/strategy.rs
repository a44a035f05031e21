//! The registry strategies of CRDs and of the custom resources they define.
//!
//! A [`CustomResourceStrategy`] serves one version of one CRD: its schema
//! prunes, defaults and validates, its CEL rules validate, and objects are
//! stored in the CRD's storage version (`conversion: None` only rewrites
//! `apiVersion`). The [`CrdStrategy`] serves CRDs themselves.

use std::sync::{Arc, RwLock};

use kaji_core::catalogue::{self, OwnedResourceInfo, Scope};
use kaji_core::{validation, Cause, ResourceInfo};
use kaji_registry::{common_field, ScalePaths, Strategy};
use serde_json::{json, Value};

use crate::crd;
use crate::rules::Rules;
use crate::schema::StructuralSchema;

/// The finalizer that holds a deleted CRD until all its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Why a CRD version could not be turned into a served resource.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The CRD lacks a field serving needs (it was not validated).
    #[error("the CRD has no {0}")]
    Missing(&'static str),
    /// The version is not one the CRD defines.
    #[error("the CRD defines no version {0:?}")]
    NoSuchVersion(String),
    /// A CEL rule does not compile.
    #[error("a validation rule does not compile: {0}")]
    Rules(String),
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn strings_at(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The versions of a CRD that are served, in the CRD's order.
pub fn served_versions(crd: &Value) -> Vec<String> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The version objects are stored in.
pub fn storage_version(crd: &Value) -> Option<String> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)?
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .map(String::from)
}

/// One version's entry of `spec.versions`.
pub fn version_spec<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
}

/// The resource a CRD version defines, as discovery and registries see it.
///
/// # Errors
/// [`DefinitionError`] when the CRD lacks its group, names or the version.
pub fn resource_info(crd: &Value, version: &str) -> Result<&'static ResourceInfo, DefinitionError> {
    let group = str_at(crd, "/spec/group").ok_or(DefinitionError::Missing("spec.group"))?;
    let plural =
        str_at(crd, "/spec/names/plural").ok_or(DefinitionError::Missing("spec.names.plural"))?;
    let kind =
        str_at(crd, "/spec/names/kind").ok_or(DefinitionError::Missing("spec.names.kind"))?;
    let v = version_spec(crd, version)
        .ok_or_else(|| DefinitionError::NoSuchVersion(version.to_string()))?;
    let mut subresources = Vec::new();
    if v.pointer("/subresources/status").is_some() {
        subresources.push("status".to_string());
    }
    if v.pointer("/subresources/scale").is_some() {
        subresources.push("scale".to_string());
    }
    Ok(catalogue::intern(OwnedResourceInfo {
        group: group.to_string(),
        version: version.to_string(),
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: str_at(crd, "/spec/names/singular")
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase()),
        short_names: strings_at(crd, "/spec/names/shortNames"),
        scope: if str_at(crd, "/spec/scope") == Some("Cluster") {
            Scope::Cluster
        } else {
            Scope::Namespaced
        },
        categories: strings_at(crd, "/spec/names/categories"),
        has_status: subresources.iter().any(|s| s == "status"),
        subresources,
    }))
}

/// A `.spec.replicas`-style JSONPath as a JSON pointer.
fn pointer_of(json_path: &str) -> String {
    json_path
        .trim_start_matches('.')
        .split('.')
        .map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Serves one version of one CRD.
pub struct CustomResourceStrategy {
    info: &'static ResourceInfo,
    served_api_version: String,
    storage_api_version: String,
    schema: Option<StructuralSchema>,
    rules: Rules,
    apply_schema: Option<kaji_apply::Schema>,
    scale: Option<ScalePaths>,
    selectable: Vec<(String, String)>,
}

impl CustomResourceStrategy {
    /// The strategy for `version` of an accepted `crd`.
    ///
    /// # Errors
    /// [`DefinitionError`] when the CRD lacks what serving needs.
    pub fn new(crd: &Value, version: &str) -> Result<Self, DefinitionError> {
        let info = resource_info(crd, version)?;
        let v = version_spec(crd, version)
            .ok_or_else(|| DefinitionError::NoSuchVersion(version.to_string()))?;
        let storage = storage_version(crd).ok_or(DefinitionError::Missing("storage version"))?;
        let open_api = v.pointer("/schema/openAPIV3Schema");
        let rules = match open_api {
            Some(s) => Rules::compile(s, "openAPIV3Schema").map_err(|causes| {
                DefinitionError::Rules(
                    causes
                        .iter()
                        .map(|c| format!("{}: {}", c.field, c.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?,
            None => Rules::compile(&json!({}), "openAPIV3Schema")
                .map_err(|_| DefinitionError::Rules(String::new()))?,
        };
        let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
            spec_replicas: pointer_of(str_at(s, "/specReplicasPath").unwrap_or(".spec.replicas")),
            status_replicas: pointer_of(
                str_at(s, "/statusReplicasPath").unwrap_or(".status.replicas"),
            ),
            label_selector: str_at(s, "/labelSelectorPath").map(pointer_of),
        });
        let selectable = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| (p.trim_start_matches('.').to_string(), pointer_of(p)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(CustomResourceStrategy {
            info,
            served_api_version: info.api_version(),
            storage_api_version: format!("{}/{storage}", info.group),
            schema: open_api.map(StructuralSchema::new),
            rules,
            apply_schema: open_api.map(kaji_apply::Schema::from_openapi_v3),
            scale,
            selectable,
        })
    }
}

impl CustomResourceStrategy {
    fn validate_against(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::object_meta(
            obj.get("metadata").unwrap_or(&Value::Null),
            self.info.namespaced(),
            validation::name_is_dns1123_subdomain,
        );
        if let Some(schema) = &self.schema {
            causes.extend(schema.validate(obj));
        }
        // Rules see only schema-valid data, as in Kubernetes.
        if causes.is_empty() && !self.rules.is_empty() {
            causes.extend(self.rules.validate(obj, old));
        }
        causes
    }
}

impl Strategy for CustomResourceStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn default(&self, obj: &mut Value) {
        if let Some(schema) = &self.schema {
            schema.apply_defaults(obj);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        self.validate_against(obj, None)
    }

    /// With the old object, transition rules run and rules that already
    /// failed on an unchanged value do not block the update (Kubernetes'
    /// validation ratcheting).
    fn validate_for_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        self.validate_against(new, Some(old))
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        if let Some(v) = common_field(obj, field) {
            return Some(v);
        }
        let (_, pointer) = self.selectable.iter().find(|(f, _)| f == field)?;
        Some(match obj.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        })
    }

    fn prune(&self, obj: &mut Value) -> Vec<String> {
        match &self.schema {
            Some(schema) => schema.prune(obj),
            None => Vec::new(),
        }
    }

    fn on_read(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), self.served_api_version.clone().into());
        }
        self.default(obj);
    }

    fn to_storage(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), self.storage_api_version.clone().into());
        }
    }

    fn apply_schema(&self) -> Option<&kaji_apply::Schema> {
        self.apply_schema.as_ref()
    }

    fn scale_paths(&self) -> Option<&ScalePaths> {
        self.scale.as_ref()
    }
}

/// The CRDs whose names are accepted, kept by the API server's CRD
/// controller so that a new CRD's names can be checked against them.
pub type AcceptedCrds = Arc<RwLock<Vec<Value>>>;

/// Serves `customresourcedefinitions`.
pub struct CrdStrategy {
    info: &'static ResourceInfo,
    accepted: AcceptedCrds,
}

impl CrdStrategy {
    /// The strategy, checking names against `accepted`.
    pub fn new(accepted: AcceptedCrds) -> Self {
        CrdStrategy {
            info: catalogue::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                .expect("CRDs are built in"),
            accepted,
        }
    }
}

impl Strategy for CrdStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names.get("kind").and_then(Value::as_str).map(String::from);
            if let Some(kind) = kind {
                names
                    .entry("singular")
                    .or_insert_with(|| kind.to_lowercase().into());
                names
                    .entry("listKind")
                    .or_insert_with(|| format!("{kind}List").into());
            }
        }
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let storage = storage_version(obj);
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "status".into(),
                json!({"storedVersions": storage.into_iter().collect::<Vec<_>>()}),
            );
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let mut status = old.get("status").cloned().unwrap_or(json!({}));
        // A new storage version is recorded as stored, as Kubernetes does.
        if let Some(storage) = storage_version(new) {
            if let Some(stored) = status
                .as_object_mut()
                .map(|s| s.entry("storedVersions").or_insert(json!([])))
                .and_then(Value::as_array_mut)
            {
                if !stored.iter().any(|v| v == storage.as_str()) {
                    stored.push(storage.into());
                }
            }
        }
        if let Some(map) = new.as_object_mut() {
            map.insert("status".into(), status);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = validation::object_meta(
            obj.get("metadata").unwrap_or(&Value::Null),
            false,
            validation::name_is_dns1123_subdomain,
        );
        causes.extend(crd::validate(obj));
        // The structural check already reports some rule problems (an empty
        // rule): one cause per field is enough.
        let compile_errors: Vec<Cause> = rule_compile_errors(obj)
            .into_iter()
            .filter(|e| !causes.iter().any(|c| c.field == e.field))
            .collect();
        causes.extend(compile_errors);
        let name = obj.pointer("/metadata/name");
        let others: Vec<Value> = self
            .accepted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|c| c.pointer("/metadata/name") != name)
            .cloned()
            .collect();
        causes.extend(crd::name_conflicts(obj, &others));
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        crd::validate_update(new, old)
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn finalizers_on_delete(&self) -> &'static [&'static str] {
        &[CLEANUP_FINALIZER]
    }
}

/// Compile errors of every version's CEL rules, at their CRD field paths.
fn rule_compile_errors(crd: &Value) -> Vec<Cause> {
    let Some(versions) = crd.pointer("/spec/versions").and_then(Value::as_array) else {
        return Vec::new();
    };
    versions
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let schema = v.pointer("/schema/openAPIV3Schema")?;
            Rules::compile(
                schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
            )
            .err()
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}},
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size", "labelSelectorPath": ".status.selector"}},
                     "selectableFields": [{"jsonPath": ".spec.color"}],
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "default": 1},
                            "color": {"type": "string"}}},
                        "status": {"type": "object", "properties": {
                            "size": {"type": "integer"}, "selector": {"type": "string"}}}}}}}
                ]
            }
        })
    }

    #[test]
    fn a_crd_version_becomes_a_resource_with_its_subresources() {
        let info = resource_info(&widget_crd(), "v1").unwrap();
        assert_eq!(
            (info.group, info.version, info.plural, info.kind),
            ("example.com", "v1", "widgets", "Widget")
        );
        assert_eq!(info.subresources, &["status", "scale"]);
        assert!(info.has_status && info.namespaced());
        let beta = resource_info(&widget_crd(), "v1beta1").unwrap();
        assert!(beta.subresources.is_empty() && !beta.has_status);
    }

    #[test]
    fn objects_are_stored_in_the_storage_version_and_read_in_the_served_one() {
        let beta = CustomResourceStrategy::new(&widget_crd(), "v1beta1").unwrap();
        let mut obj = json!({"apiVersion": "example.com/v1beta1", "kind": "Widget", "spec": {}});
        beta.to_storage(&mut obj);
        assert_eq!(obj["apiVersion"], "example.com/v1");
        beta.on_read(&mut obj);
        assert_eq!(obj["apiVersion"], "example.com/v1beta1");
    }

    #[test]
    fn reads_fill_defaults_of_the_served_version() {
        let v1 = CustomResourceStrategy::new(&widget_crd(), "v1").unwrap();
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {}});
        v1.on_read(&mut obj);
        assert_eq!(obj["spec"]["size"], 1);
    }

    #[test]
    fn scale_paths_and_selectable_fields_come_from_the_version() {
        let v1 = CustomResourceStrategy::new(&widget_crd(), "v1").unwrap();
        let paths = v1.scale_paths().unwrap();
        assert_eq!(paths.spec_replicas, "/spec/size");
        assert_eq!(paths.label_selector.as_deref(), Some("/status/selector"));
        let obj = json!({"spec": {"color": "blue"}});
        assert_eq!(v1.field_value(&obj, "spec.color").as_deref(), Some("blue"));
        assert_eq!(v1.field_value(&obj, "spec.size"), None);
    }

    #[test]
    fn a_new_crd_records_its_storage_version_and_defaults_its_names() {
        let s = CrdStrategy::new(AcceptedCrds::default());
        let mut crd = widget_crd();
        crd["status"] = json!({"conditions": [{"type": "Established"}]});
        s.prepare_for_create(&mut crd);
        s.default(&mut crd);
        assert_eq!(crd["status"], json!({"storedVersions": ["v1"]}));
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
    }
}
