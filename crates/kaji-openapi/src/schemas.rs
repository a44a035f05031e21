//! Component schemas: generated from `k8s-openapi` through `schemars`, then
//! corrected into the shape the Kubernetes API server publishes.
//!
//! `k8s-openapi` already names every schema as Kubernetes does
//! (`io.k8s.api.core.v1.Pod`) and carries the Go doc comments as
//! descriptions. What its generator drops is restored here:
//!
//! - the `x-kubernetes-*` list and map extensions (`patch-merge-key`,
//!   `patch-strategy`, `list-type`, `list-map-keys`, `map-type`) that
//!   strategic merge patch and server-side apply read, from
//!   `extensions.json`, a table extracted from the Kubernetes v1.33 OpenAPI
//!   document for every definition reachable from the catalogue (taken from
//!   `kubernetes-json-schema/v1.33.0-local/_definitions.json`, the copy of
//!   the upstream definitions shipped in the `kubernetes-validate` package;
//!   regenerate it when the catalogue gains kinds);
//! - `required` lists where Rust's non-optional fields made `k8s-openapi`
//!   stricter than Kubernetes (`metadata` on every kind, `name` on
//!   `LocalObjectReference`), from the same table;
//! - `IntOrString` and `Quantity` as `type: string` (with `format:
//!   int-or-string`), as Kubernetes publishes them;
//! - list kinds (`PodList`), which `k8s-openapi` models generically;
//! - `x-kubernetes-group-version-kind` on every kind and list kind.
//!
//! References use the OpenAPI v3 form `#/components/schemas/NAME`; property
//! references keep their `description` beside the `$ref`. The renderers in
//! [`crate::render`] turn that into each document's own shape.

use std::collections::BTreeMap;

use k8s_openapi::api::{admissionregistration, apps, batch, coordination, core, discovery, events};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// Where component schemas live in an OpenAPI v3 document.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

/// The vendor extension naming a schema's or operation's group/version/kind.
pub(crate) const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// `x-kubernetes-*` extensions and `required` corrections, keyed by
/// definition name, then by property name (`""` for the definition itself).
const EXTENSIONS: &str = include_str!("extensions.json");

/// A top-level kind with a schema: the catalogue's kinds plus the types their
/// subresources exchange (`Scale`, `Binding`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KindSchema {
    /// API group, "" for core.
    pub group: &'static str,
    /// Version, e.g. "v1".
    pub version: &'static str,
    /// Kind, e.g. "Pod".
    pub kind: &'static str,
    /// Component schema name, e.g. `io.k8s.api.core.v1.Pod`.
    pub name: String,
}

impl KindSchema {
    /// Component schema name of the kind's list, e.g. `io.k8s.api.core.v1.PodList`.
    pub fn list_name(&self) -> String {
        format!("{}List", self.name)
    }
}

/// Every component schema plus the index of top-level kinds.
#[derive(Debug, Clone)]
pub(crate) struct Schemas {
    /// Definitions by name, refs in v3 form.
    pub definitions: BTreeMap<String, Value>,
    /// Kinds with a GVK extension (list kinds not included).
    pub kinds: Vec<KindSchema>,
}

impl Schemas {
    /// The schema name for a kind, if it is known.
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<&KindSchema> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }
}

/// Meta types the paths refer to directly.
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// `TypeMeta`'s `apiVersion` property description.
pub(crate) const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";

/// `TypeMeta`'s `kind` property description.
pub(crate) const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Where the renderers look component schemas up: the built-in
/// definitions, then those of the custom resources a document includes.
/// Built-in names win, so a custom resource can never replace them.
pub(crate) struct Definitions<'a> {
    /// The built-in definitions.
    pub builtin: &'a BTreeMap<String, Value>,
    /// Custom resources' kind and list schemas, refs in v3 form.
    pub custom: BTreeMap<String, Value>,
}

impl<'a> Definitions<'a> {
    /// Only the built-in definitions.
    pub fn builtin(schemas: &'a Schemas) -> Self {
        Definitions {
            builtin: &schemas.definitions,
            custom: BTreeMap::new(),
        }
    }

    /// The definition named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.builtin.get(name).or_else(|| self.custom.get(name))
    }
}

/// Generates and post-processes every schema.
pub(crate) fn build() -> Schemas {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| {
            // Raw output; Kubernetes' own shapes are produced by the renderers.
            s.transforms.clear();
            s.meta_schema = None;
        })
        .into_generator();
    let mut kinds = Vec::new();
    register::<core::v1::Namespace>(&mut generator, &mut kinds);
    register::<core::v1::Pod>(&mut generator, &mut kinds);
    register::<core::v1::Service>(&mut generator, &mut kinds);
    register::<core::v1::Endpoints>(&mut generator, &mut kinds);
    register::<core::v1::ConfigMap>(&mut generator, &mut kinds);
    register::<core::v1::Secret>(&mut generator, &mut kinds);
    register::<core::v1::ServiceAccount>(&mut generator, &mut kinds);
    register::<core::v1::Node>(&mut generator, &mut kinds);
    register::<core::v1::Event>(&mut generator, &mut kinds);
    register::<core::v1::Binding>(&mut generator, &mut kinds);
    register::<apps::v1::Deployment>(&mut generator, &mut kinds);
    register::<apps::v1::ReplicaSet>(&mut generator, &mut kinds);
    register::<apps::v1::StatefulSet>(&mut generator, &mut kinds);
    register::<apps::v1::DaemonSet>(&mut generator, &mut kinds);
    register::<batch::v1::Job>(&mut generator, &mut kinds);
    register::<batch::v1::CronJob>(&mut generator, &mut kinds);
    register::<discovery::v1::EndpointSlice>(&mut generator, &mut kinds);
    register::<coordination::v1::Lease>(&mut generator, &mut kinds);
    register::<events::v1::Event>(&mut generator, &mut kinds);
    register::<admissionregistration::v1::MutatingWebhookConfiguration>(&mut generator, &mut kinds);
    register::<admissionregistration::v1::ValidatingWebhookConfiguration>(
        &mut generator,
        &mut kinds,
    );
    register::<apiextensions::v1::CustomResourceDefinition>(&mut generator, &mut kinds);
    register::<k8s_openapi::api::autoscaling::v1::Scale>(&mut generator, &mut kinds);
    generator.subschema_for::<meta::v1::Status>();
    generator.subschema_for::<meta::v1::DeleteOptions>();
    generator.subschema_for::<meta::v1::Patch>();
    generator.subschema_for::<meta::v1::WatchEvent<()>>();
    generator.subschema_for::<meta::v1::ListMeta>();

    let mut definitions: BTreeMap<String, Value> =
        generator.take_definitions(false).into_iter().collect();
    normalize_string_types(&mut definitions);
    apply_extensions(&mut definitions);
    for kind in &kinds {
        if let Some(Value::Object(schema)) = definitions.get_mut(&kind.name) {
            schema.insert(
                GVK_EXTENSION.into(),
                gvk_list(kind.group, kind.version, kind.kind),
            );
        }
        if kind.kind != "Scale" && kind.kind != "Binding" {
            let list = list_schema(kind);
            definitions.insert(kind.list_name(), list);
        }
    }
    Schemas { definitions, kinds }
}

fn register<T>(generator: &mut SchemaGenerator, kinds: &mut Vec<KindSchema>)
where
    T: JsonSchema + k8s_openapi::Resource,
{
    generator.subschema_for::<T>();
    kinds.push(KindSchema {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        name: T::schema_name().into_owned(),
    });
}

/// `[{"group": .., "kind": .., "version": ..}]`, the schema form of the GVK extension.
pub(crate) fn gvk_list(group: &str, version: &str, kind: &str) -> Value {
    json!([gvk(group, version, kind)])
}

/// `{"group": .., "kind": .., "version": ..}`, the operation form of the GVK extension.
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// `IntOrString` and `Quantity` are strings in Kubernetes' documents.
fn normalize_string_types(definitions: &mut BTreeMap<String, Value>) {
    let fixes = [
        (
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            Some("int-or-string"),
        ),
        ("io.k8s.apimachinery.pkg.api.resource.Quantity", None),
    ];
    for (name, format) in fixes {
        if let Some(Value::Object(schema)) = definitions.get_mut(name) {
            schema.remove("x-kubernetes-int-or-string");
            schema.insert("type".into(), "string".into());
            if let Some(format) = format {
                schema.insert("format".into(), format.into());
            }
        }
    }
}

fn apply_extensions(definitions: &mut BTreeMap<String, Value>) {
    let table: Map<String, Value> =
        serde_json::from_str(EXTENSIONS).expect("extensions.json is valid JSON");
    for (name, per_property) in table {
        let Some(Value::Object(schema)) = definitions.get_mut(&name) else {
            continue;
        };
        let Value::Object(per_property) = per_property else {
            continue;
        };
        for (property, extensions) in per_property {
            let Value::Object(extensions) = extensions else {
                continue;
            };
            if property.is_empty() {
                for (key, value) in extensions {
                    if key == "required" {
                        match value {
                            Value::Array(list) if list.is_empty() => {
                                schema.remove("required");
                            }
                            value => {
                                schema.insert(key, value);
                            }
                        }
                    } else {
                        schema.insert(key, value);
                    }
                }
                continue;
            }
            let target = schema
                .get_mut("properties")
                .and_then(|p| p.get_mut(&property))
                .and_then(Value::as_object_mut);
            if let Some(target) = target {
                target.extend(extensions);
            }
        }
    }
}

fn list_schema(kind: &KindSchema) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", kind.kind, kind.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": format!("List of {} objects.", kind.kind),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{}", kind.name)}
            },
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "$ref": format!("{REF_PREFIX}{LIST_META}")
            }
        },
        GVK_EXTENSION: gvk_list(kind.group, kind.version, &format!("{}List", kind.kind)),
    })
}

/// Calls `f` on every `$ref` target name under `value`.
pub(crate) fn for_each_ref(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => {
                        f(target.strip_prefix(REF_PREFIX).unwrap_or(target));
                    }
                    // A property may itself be named "properties" or "$ref"
                    // (JSONSchemaProps); recursion treats it as a schema.
                    _ => for_each_ref(child, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| for_each_ref(v, f)),
        _ => {}
    }
}
