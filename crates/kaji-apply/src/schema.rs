//! The server-side apply schema of the built-in kinds: which lists are
//! associative (`x-kubernetes-list-type: map`, and by which keys), which are
//! sets, and which structs and maps are atomic.
//!
//! A compact transcription of the `+listType`, `+listMapKey`, `+structType`
//! and `+mapType` markers of `k8s.io/api` and `k8s.io/apimachinery`. Where a
//! field has no `+listType` but a `patchStrategy:"merge"` tag, Kubernetes'
//! schema conversion derives the list type from the tag; so does this table.
//! Everything not listed has the default behaviour of a schema-less value:
//! objects are granular (one field per key), lists are atomic.
//! `metadata` is ObjectMeta for every kind, custom resources included.

use serde_json::Value;

use crate::path::compact;

/// The shape of a value, reduced to what server-side apply needs.
///
/// The built-in kinds are static tables; custom resources get shapes built
/// at run time from their OpenAPI schema ([`Schema`]).
#[derive(Debug)]
pub(crate) enum Shape {
    /// An object whose fields are owned one by one. Listed fields have their
    /// own shape; every other field is [`ANY`].
    Struct(&'static [(&'static str, &'static Shape)]),
    /// A value owned whole: an atomic struct, map or list.
    Atomic,
    /// An associative list: elements are identified by their key fields.
    Map {
        /// The key fields, with the default of a key the element may omit
        /// (as compact JSON).
        keys: &'static [MapKey],
        /// The shape of each element.
        elem: &'static Shape,
    },
    /// A list of scalars, each owned by its value.
    Set,
    /// An object read at run time: its known fields, and the shape of every
    /// other field (`additionalProperties`), [`ANY`] when `None`.
    Fields(Vec<(String, Shape)>, Option<Box<Shape>>),
    /// An associative list read at run time: key fields with their
    /// defaults (compact JSON), and the element shape.
    Keyed(Vec<(String, Option<String>)>, Box<Shape>),
    /// A static shape inside a run-time one.
    Static(&'static Shape),
}

/// One key field of an associative list.
#[derive(Debug)]
pub(crate) struct MapKey {
    /// The field name.
    pub(crate) name: &'static str,
    /// The value used when an element omits it, as compact JSON.
    pub(crate) default: Option<&'static str>,
}

/// What a [`Shape`] means for a walk, whichever table it comes from.
pub(crate) enum View<'s> {
    /// Owned field by field.
    Struct,
    /// Owned whole.
    Atomic,
    /// An associative list: (key field, default) pairs and element shape.
    Map(Vec<(&'s str, Option<&'s str>)>, &'s Shape),
    /// A set list.
    Set,
}

impl Shape {
    /// What this shape means for a walk.
    pub(crate) fn view(&self) -> View<'_> {
        match self {
            Shape::Struct(_) | Shape::Fields(..) => View::Struct,
            Shape::Atomic => View::Atomic,
            Shape::Set => View::Set,
            Shape::Map { keys, elem } => {
                View::Map(keys.iter().map(|k| (k.name, k.default)).collect(), elem)
            }
            Shape::Keyed(keys, elem) => View::Map(
                keys.iter()
                    .map(|(k, d)| (k.as_str(), d.as_deref()))
                    .collect(),
                elem,
            ),
            Shape::Static(s) => s.view(),
        }
    }

    /// The shape of field `name` of a struct of this shape.
    pub(crate) fn field(&self, name: &str) -> &Shape {
        match self {
            Shape::Struct(fields) => fields
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(&ANY, |(_, s)| *s),
            Shape::Fields(fields, other) => fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s)
                .or(other.as_deref())
                .unwrap_or(&ANY),
            Shape::Static(s) => s.field(name),
            _ => &ANY,
        }
    }
}

/// A value with no schema: granular objects, atomic lists.
pub(crate) static ANY: Shape = Shape::Struct(&[]);
/// A value owned whole.
pub(crate) static ATOMIC: Shape = Shape::Atomic;
static SET: Shape = Shape::Set;

const fn key(name: &'static str) -> MapKey {
    MapKey {
        name,
        default: None,
    }
}

const PROTOCOL: MapKey = MapKey {
    name: "protocol",
    default: Some("\"TCP\""),
};

static BY_NAME: Shape = Shape::Map {
    keys: &[key("name")],
    elem: &ANY,
};
static BY_TYPE: Shape = Shape::Map {
    keys: &[key("type")],
    elem: &ANY,
};
static BY_UID: Shape = Shape::Map {
    keys: &[key("uid")],
    elem: &ANY,
};
static BY_IP: Shape = Shape::Map {
    keys: &[key("ip")],
    elem: &ANY,
};

// ---- meta/v1 ----

static OBJECT_META: Shape = Shape::Struct(&[
    ("finalizers", &SET),
    ("ownerReferences", &BY_UID),
    ("managedFields", &ATOMIC),
]);

/// `status` of a kind whose conditions are metav1.Condition-like, by type.
static CONDITIONS_STATUS: Shape = Shape::Struct(&[("conditions", &BY_TYPE)]);

// ---- core/v1: containers and pods ----

static CONTAINER_PORTS: Shape = Shape::Map {
    keys: &[key("containerPort"), PROTOCOL],
    elem: &ANY,
};
static RESOURCES: Shape = Shape::Struct(&[("claims", &BY_NAME)]);
static CONTAINER: Shape = Shape::Struct(&[
    ("ports", &CONTAINER_PORTS),
    ("env", &BY_NAME),
    (
        "volumeMounts",
        &Shape::Map {
            keys: &[key("mountPath")],
            elem: &ANY,
        },
    ),
    (
        "volumeDevices",
        &Shape::Map {
            keys: &[key("devicePath")],
            elem: &ANY,
        },
    ),
    ("resources", &RESOURCES),
]);
static CONTAINERS: Shape = Shape::Map {
    keys: &[key("name")],
    elem: &CONTAINER,
};

static NODE_AFFINITY: Shape =
    Shape::Struct(&[("requiredDuringSchedulingIgnoredDuringExecution", &ATOMIC)]);
static AFFINITY: Shape = Shape::Struct(&[("nodeAffinity", &NODE_AFFINITY)]);

static TOPOLOGY_SPREAD: Shape = Shape::Map {
    keys: &[key("topologyKey"), key("whenUnsatisfiable")],
    elem: &Shape::Struct(&[("labelSelector", &ATOMIC)]),
};

static POD_SPEC: Shape = Shape::Struct(&[
    ("volumes", &BY_NAME),
    ("initContainers", &CONTAINERS),
    ("containers", &CONTAINERS),
    ("ephemeralContainers", &CONTAINERS),
    ("imagePullSecrets", &BY_NAME),
    ("hostAliases", &BY_IP),
    ("topologySpreadConstraints", &TOPOLOGY_SPREAD),
    ("schedulingGates", &BY_NAME),
    ("resourceClaims", &BY_NAME),
    ("affinity", &AFFINITY),
    // tolerations, readinessGates, hostIPs: atomic (the default).
]);

static POD_STATUS: Shape = Shape::Struct(&[
    ("conditions", &BY_TYPE),
    ("podIPs", &BY_IP),
    ("resourceClaimStatuses", &BY_NAME),
]);

static POD_TEMPLATE_SPEC: Shape = Shape::Struct(&[("metadata", &OBJECT_META), ("spec", &POD_SPEC)]);

/// Deployment, ReplicaSet, StatefulSet, DaemonSet and Job specs: a
/// LabelSelector (`+structType=atomic`) and a pod template.
static WORKLOAD_SPEC: Shape =
    Shape::Struct(&[("selector", &ATOMIC), ("template", &POD_TEMPLATE_SPEC)]);

static JOB_TEMPLATE: Shape = Shape::Struct(&[("metadata", &OBJECT_META), ("spec", &WORKLOAD_SPEC)]);

// ---- core/v1: the rest ----

static SERVICE_SPEC: Shape = Shape::Struct(&[
    (
        "ports",
        &Shape::Map {
            keys: &[key("port"), PROTOCOL],
            elem: &ANY,
        },
    ),
    ("selector", &ATOMIC),
]);

static NODE_SPEC: Shape = Shape::Struct(&[("podCIDRs", &SET)]);
static NODE_STATUS: Shape = Shape::Struct(&[("conditions", &BY_TYPE), ("addresses", &BY_TYPE)]);

// ---- other groups ----

static WEBHOOK: Shape = Shape::Struct(&[
    ("matchConditions", &BY_NAME),
    ("namespaceSelector", &ATOMIC),
    ("objectSelector", &ATOMIC),
]);

static ADMISSION_POLICY_SPEC: Shape =
    Shape::Struct(&[("matchConditions", &BY_NAME), ("variables", &BY_NAME)]);

// ---- top-level kinds ----

static OBJECT: Shape = Shape::Struct(&[("metadata", &OBJECT_META)]);
static WITH_CONDITIONS: Shape =
    Shape::Struct(&[("metadata", &OBJECT_META), ("status", &CONDITIONS_STATUS)]);
static POD: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &POD_SPEC),
    ("status", &POD_STATUS),
]);
static POD_TEMPLATE: Shape =
    Shape::Struct(&[("metadata", &OBJECT_META), ("template", &POD_TEMPLATE_SPEC)]);
static WORKLOAD: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &WORKLOAD_SPEC),
    ("status", &CONDITIONS_STATUS),
]);
static JOB: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &WORKLOAD_SPEC),
    // JobStatus.conditions is `+listType=atomic`.
]);
static CRON_JOB: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("jobTemplate", &JOB_TEMPLATE)])),
]);
static REPLICATION_CONTROLLER: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Shape::Struct(&[("selector", &ATOMIC), ("template", &POD_TEMPLATE_SPEC)]),
    ),
    ("status", &CONDITIONS_STATUS),
]);
static SERVICE: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &SERVICE_SPEC),
    ("status", &CONDITIONS_STATUS),
]);
static SERVICE_ACCOUNT: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("secrets", &BY_NAME),
    ("imagePullSecrets", &BY_NAME),
]);
static NODE: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &NODE_SPEC),
    ("status", &NODE_STATUS),
]);
static SELECTOR_AND_CONDITIONS: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("selector", &ATOMIC)])),
    ("status", &CONDITIONS_STATUS),
]);
static NETWORK_POLICY: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("podSelector", &ATOMIC)])),
]);
static WEBHOOK_CONFIGURATION: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "webhooks",
        &Shape::Map {
            keys: &[key("name")],
            elem: &WEBHOOK,
        },
    ),
]);
static ADMISSION_POLICY: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &ADMISSION_POLICY_SPEC),
    ("status", &CONDITIONS_STATUS),
]);
static CSI_NODE: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("drivers", &BY_NAME)])),
]);
static RESOURCE_CLAIM: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("status", &Shape::Struct(&[("reservedFor", &BY_UID)])),
]);

/// (API group, kind, shape) of the built-in kinds with list types beyond
/// ObjectMeta's. The version is not consulted: these markers are the same
/// in every served version.
static KINDS: &[(&str, &str, &Shape)] = &[
    ("", "Pod", &POD),
    ("", "PodTemplate", &POD_TEMPLATE),
    ("", "ReplicationController", &REPLICATION_CONTROLLER),
    ("", "Service", &SERVICE),
    ("", "ServiceAccount", &SERVICE_ACCOUNT),
    ("", "Node", &NODE),
    ("", "Namespace", &WITH_CONDITIONS),
    ("", "PersistentVolumeClaim", &WITH_CONDITIONS),
    ("apps", "Deployment", &WORKLOAD),
    ("apps", "ReplicaSet", &WORKLOAD),
    ("apps", "StatefulSet", &WORKLOAD),
    ("apps", "DaemonSet", &WORKLOAD),
    ("batch", "Job", &JOB),
    ("batch", "CronJob", &CRON_JOB),
    ("autoscaling", "HorizontalPodAutoscaler", &WITH_CONDITIONS),
    ("policy", "PodDisruptionBudget", &SELECTOR_AND_CONDITIONS),
    ("networking.k8s.io", "NetworkPolicy", &NETWORK_POLICY),
    ("networking.k8s.io", "ServiceCIDR", &WITH_CONDITIONS),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicy",
        &ADMISSION_POLICY,
    ),
    ("storage.k8s.io", "CSINode", &CSI_NODE),
    ("resource.k8s.io", "ResourceClaim", &RESOURCE_CLAIM),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        &WITH_CONDITIONS,
    ),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        &WITH_CONDITIONS,
    ),
    ("apiregistration.k8s.io", "APIService", &WITH_CONDITIONS),
    (
        "flowcontrol.apiserver.k8s.io",
        "FlowSchema",
        &WITH_CONDITIONS,
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        "PriorityLevelConfiguration",
        &WITH_CONDITIONS,
    ),
];

/// The list and map types of a kind that is not built in — a custom
/// resource — read from its OpenAPI v3 schema (a CRD version's
/// `schema.openAPIV3Schema`).
///
/// Reads `properties`, `additionalProperties`, `items`,
/// `x-kubernetes-list-type` (`map` with `x-kubernetes-list-map-keys` and
/// the keys' `default`s, `set`, `atomic` — the default for lists, as in
/// Kubernetes), `x-kubernetes-map-type: atomic` and
/// `x-kubernetes-preserve-unknown-fields`. `metadata` is always ObjectMeta.
#[derive(Debug)]
pub struct Schema {
    root: Shape,
}

impl Schema {
    /// Builds the schema of a custom resource from its OpenAPI v3 schema.
    pub fn from_openapi_v3(schema: &Value) -> Schema {
        let root = match convert(schema) {
            Shape::Fields(mut fields, other) => {
                fields.retain(|(n, _)| n != "metadata");
                fields.push(("metadata".to_string(), Shape::Static(&OBJECT_META)));
                Shape::Fields(fields, other)
            }
            _ => Shape::Static(&OBJECT),
        };
        Schema { root }
    }

    pub(crate) fn shape(&self) -> &Shape {
        &self.root
    }
}

fn convert(s: &Value) -> Shape {
    let ext = |k: &str| s.get(k).and_then(Value::as_str);
    let is_array = ext("type") == Some("array") || s.get("items").is_some();
    if is_array {
        return match ext("x-kubernetes-list-type") {
            Some("set") => Shape::Set,
            Some("map") => {
                let items = s.get("items").unwrap_or(&Value::Null);
                let keys = s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|k| {
                        let default = items
                            .pointer(&format!("/properties/{k}/default"))
                            .map(compact);
                        (k.to_string(), default)
                    })
                    .collect();
                Shape::Keyed(keys, Box::new(convert(items)))
            }
            _ => Shape::Atomic,
        };
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    let is_object = ext("type") == Some("object") || props.is_some() || additional.is_some();
    if !is_object {
        // Scalars, and schema-less values (preserve-unknown-fields).
        return Shape::Fields(Vec::new(), None);
    }
    if matches!(ext("x-kubernetes-map-type"), Some("atomic")) {
        return Shape::Atomic;
    }
    let fields = props
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), convert(v)))
        .collect();
    Shape::Fields(fields, additional.map(|a| Box::new(convert(a))))
}
/// The shape of objects of `api_version`/`kind`: the table's for built-in
/// kinds, ObjectMeta plus schema-less fields for everything else.
pub(crate) fn root(api_version: &str, kind: &str) -> &'static Shape {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map_or(&OBJECT, |(_, _, s)| *s)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(api_version: &str, kind: &str, path: &[&str]) -> &'static Shape {
        let mut shape = root(api_version, kind);
        for name in path {
            shape = match shape {
                Shape::Map { elem, .. } => elem.field(name),
                other => other.field(name),
            };
        }
        shape
    }

    fn keys(shape: &Shape) -> Vec<&'static str> {
        match shape {
            Shape::Map { keys, .. } => keys.iter().map(|k| k.name).collect(),
            other => panic!("not an associative list: {other:?}"),
        }
    }

    #[test]
    fn pod_template_lists_are_keyed_like_kubernetes_in_every_workload() {
        let spec = ["spec", "template", "spec"];
        let ports = at(
            "apps/v1",
            "Deployment",
            &[&spec[..], &["containers", "ports"]].concat(),
        );
        assert_eq!(keys(ports), ["containerPort", "protocol"]);
        let env = at(
            "apps/v1",
            "StatefulSet",
            &[&spec[..], &["containers", "env"]].concat(),
        );
        assert_eq!(keys(env), ["name"]);
        let tsc = at(
            "batch/v1",
            "Job",
            &[&spec[..], &["topologySpreadConstraints"]].concat(),
        );
        assert_eq!(keys(tsc), ["topologyKey", "whenUnsatisfiable"]);
        assert_eq!(
            keys(at("v1", "Service", &["spec", "ports"])),
            ["port", "protocol"]
        );
    }

    #[test]
    fn metadata_is_known_for_custom_resources_too() {
        assert!(matches!(
            at("example.com/v1", "Widget", &["metadata", "finalizers"]),
            Shape::Set
        ));
        assert_eq!(
            keys(at(
                "example.com/v1",
                "Widget",
                &["metadata", "ownerReferences"]
            )),
            ["uid"]
        );
        assert!(matches!(
            at("example.com/v1", "Widget", &["spec", "items"]),
            Shape::Struct(&[])
        ));
    }

    #[test]
    fn selectors_tolerations_and_job_conditions_are_atomic() {
        assert!(matches!(
            at("apps/v1", "Deployment", &["spec", "selector"]),
            Shape::Atomic
        ));
        assert!(matches!(
            at("v1", "Service", &["spec", "selector"]),
            Shape::Atomic
        ));
        // Lists with no entry are atomic: they are walked as ANY.
        assert!(matches!(
            at("v1", "Pod", &["spec", "tolerations"]),
            Shape::Struct(&[])
        ));
        assert!(matches!(
            at("batch/v1", "Job", &["status", "conditions"]),
            Shape::Struct(&[])
        ));
        assert_eq!(
            keys(at("apps/v1", "Deployment", &["status", "conditions"])),
            ["type"]
        );
    }

    #[test]
    fn custom_resource_schemas_give_list_types_and_keep_object_meta() {
        let schema = Schema::from_openapi_v3(&json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {"type": "object", "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string", "default": "TCP"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                        "additionalProperties": {"type": "string"}}
                }}
            }
        }));
        let spec = schema.shape().field("spec");
        match spec.field("ports").view() {
            View::Map(keys, _) => assert_eq!(keys, [("port", None), ("protocol", Some("\"TCP\""))]),
            _ => panic!("ports is not a map list"),
        }
        assert!(matches!(spec.field("tags").view(), View::Set));
        assert!(matches!(spec.field("args").view(), View::Atomic));
        assert!(matches!(spec.field("selector").view(), View::Atomic));
        let meta = schema.shape().field("metadata");
        assert!(matches!(meta.field("finalizers").view(), View::Set));
    }
}
