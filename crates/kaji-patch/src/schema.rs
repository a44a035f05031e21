//! The strategic merge schema of the built-in kinds: which lists merge, by
//! which key, and which structs are replaced or keep only the patched keys.
//!
//! This is a compact transcription of the `patchStrategy` / `patchMergeKey`
//! struct tags of `k8s.io/api` and `k8s.io/apimachinery` (ObjectMeta). Only
//! fields that carry a tag, or lead to one, are listed; everything else has
//! the default behaviour: maps merge key by key, lists are replaced whole.
//! Lists Kubernetes declares `atomic` that people often expect to merge
//! (tolerations, resizePolicy, Endpoints subsets, EndpointSlice endpoints)
//! are listed as [`atomic`] to make that choice visible.

/// A struct of the Kubernetes API, reduced to the fields that matter for
/// strategic merge patch.
#[derive(Debug)]
pub(crate) struct Type {
    /// The Go type name, for documentation and debugging.
    #[allow(dead_code)]
    pub(crate) name: &'static str,
    /// The fields with a patch strategy, or leading to one.
    pub(crate) fields: &'static [Field],
}

/// One JSON field of a [`Type`].
#[derive(Debug)]
pub(crate) struct Field {
    /// The JSON name.
    pub(crate) name: &'static str,
    /// How the field is patched.
    pub(crate) strategy: Strategy,
    /// The schema of the value; for a list, of each element. `None` when no
    /// field below has a patch strategy.
    pub(crate) ty: Option<&'static Type>,
}

/// How a field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: a map merges key by key, a list is replaced whole.
    Default,
    /// `patchStrategy:"replace"` on a struct: the struct is replaced whole.
    Replace,
    /// `patchStrategy:"retainKeys"` on a struct: it merges, and a two-way diff
    /// sends `$retainKeys` so that keys the modified object dropped are cleared.
    RetainKeys,
    /// `patchStrategy:"merge"` on a list: lists of objects merge by `key`,
    /// lists of plain values merge as ordered sets (`key` is `None`).
    /// `retain_keys` is set for `"merge,retainKeys"`.
    MergeList {
        /// The `patchMergeKey`, for lists of objects.
        key: Option<&'static str>,
        /// Whether elements get `$retainKeys` in two-way diffs.
        retain_keys: bool,
    },
}

/// The behaviour of a field the schema does not know.
pub(crate) const UNKNOWN_FIELD: Field = Field {
    name: "",
    strategy: Strategy::Default,
    ty: None,
};

/// Looks `name` up in an optional type: unknown types know no fields.
pub(crate) fn field_of(ty: Option<&'static Type>, name: &str) -> &'static Field {
    match ty {
        Some(t) => t
            .fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or(&UNKNOWN_FIELD),
        None => &UNKNOWN_FIELD,
    }
}

const fn nested(name: &'static str, ty: &'static Type) -> Field {
    Field {
        name,
        strategy: Strategy::Default,
        ty: Some(ty),
    }
}

const fn merge_by(name: &'static str, key: &'static str, ty: Option<&'static Type>) -> Field {
    Field {
        name,
        strategy: Strategy::MergeList {
            key: Some(key),
            retain_keys: false,
        },
        ty,
    }
}

const fn merge_retaining_by(
    name: &'static str,
    key: &'static str,
    ty: Option<&'static Type>,
) -> Field {
    Field {
        name,
        strategy: Strategy::MergeList {
            key: Some(key),
            retain_keys: true,
        },
        ty,
    }
}

const fn set(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::MergeList {
            key: None,
            retain_keys: false,
        },
        ty: None,
    }
}

/// A list replaced whole. Same as leaving the field out; listed for clarity.
const fn atomic(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Default,
        ty: None,
    }
}

const fn replace(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Replace,
        ty: None,
    }
}

const fn retain(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::RetainKeys,
        ty: None,
    }
}

const fn conditions() -> Field {
    merge_by("conditions", "type", None)
}

// ---- k8s.io/apimachinery meta/v1 ----

static OBJECT_META: Type = Type {
    name: "ObjectMeta",
    fields: &[
        merge_by("ownerReferences", "uid", None),
        set("finalizers"),
        atomic("managedFields"),
    ],
};

/// Any status (or object) whose only tagged field is `conditions`, merged by `type`.
static CONDITIONS: Type = Type {
    name: "ConditionsStatus",
    fields: &[conditions()],
};

// ---- core/v1: pods and templates ----

static CONTAINER: Type = Type {
    name: "Container",
    fields: &[
        merge_by("ports", "containerPort", None),
        merge_by("env", "name", None),
        merge_by("volumeMounts", "mountPath", None),
        merge_by("volumeDevices", "devicePath", None),
        atomic("resizePolicy"),
    ],
};

static POD_SPEC: Type = Type {
    name: "PodSpec",
    fields: &[
        merge_retaining_by("volumes", "name", None),
        merge_by("initContainers", "name", Some(&CONTAINER)),
        merge_by("containers", "name", Some(&CONTAINER)),
        merge_by("ephemeralContainers", "name", Some(&CONTAINER)),
        merge_by("imagePullSecrets", "name", None),
        merge_by("hostAliases", "ip", None),
        merge_by("topologySpreadConstraints", "topologyKey", None),
        merge_by("schedulingGates", "name", None),
        merge_retaining_by("resourceClaims", "name", None),
        atomic("tolerations"),
    ],
};

static POD_STATUS: Type = Type {
    name: "PodStatus",
    fields: &[
        conditions(),
        merge_by("hostIPs", "ip", None),
        merge_by("podIPs", "ip", None),
        merge_retaining_by("resourceClaimStatuses", "name", None),
        atomic("containerStatuses"),
        atomic("initContainerStatuses"),
        atomic("ephemeralContainerStatuses"),
    ],
};

static POD_TEMPLATE_SPEC: Type = Type {
    name: "PodTemplateSpec",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC)],
};

/// The spec of ReplicaSet, StatefulSet, DaemonSet, Job and ReplicationController:
/// the tagged fields are all under `template`.
static WORKLOAD_SPEC: Type = Type {
    name: "WorkloadSpec",
    fields: &[nested("template", &POD_TEMPLATE_SPEC)],
};

static DEPLOYMENT_SPEC: Type = Type {
    name: "DeploymentSpec",
    fields: &[nested("template", &POD_TEMPLATE_SPEC), retain("strategy")],
};

static JOB_TEMPLATE_SPEC: Type = Type {
    name: "JobTemplateSpec",
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &WORKLOAD_SPEC),
    ],
};

static CRON_JOB_SPEC: Type = Type {
    name: "CronJobSpec",
    fields: &[nested("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

// ---- core/v1: the rest ----

static SERVICE_SPEC: Type = Type {
    name: "ServiceSpec",
    fields: &[merge_by("ports", "port", None)],
};

static NODE_SPEC: Type = Type {
    name: "NodeSpec",
    fields: &[set("podCIDRs"), atomic("taints")],
};

static NODE_STATUS: Type = Type {
    name: "NodeStatus",
    fields: &[
        conditions(),
        merge_by("addresses", "type", None),
        atomic("images"),
        atomic("volumesAttached"),
    ],
};

// ---- other groups ----

static PDB_SPEC: Type = Type {
    name: "PodDisruptionBudgetSpec",
    fields: &[replace("selector")],
};

static WEBHOOK: Type = Type {
    name: "Webhook",
    fields: &[merge_by("matchConditions", "name", None)],
};

static ADMISSION_POLICY_SPEC: Type = Type {
    name: "ValidatingAdmissionPolicySpec",
    fields: &[
        merge_by("matchConditions", "name", None),
        merge_by("variables", "name", None),
    ],
};

static CSI_NODE_SPEC: Type = Type {
    name: "CSINodeSpec",
    fields: &[merge_by("drivers", "name", None)],
};

static RESOURCE_CLAIM_STATUS: Type = Type {
    name: "ResourceClaimStatus",
    fields: &[merge_by("reservedFor", "uid", None)],
};

// ---- top-level kinds ----

/// Declares a top-level kind: `metadata` is always ObjectMeta.
macro_rules! kind {
    ($static:ident, $name:literal $(, $field:expr)* $(,)?) => {
        static $static: Type = Type {
            name: $name,
            fields: &[nested("metadata", &OBJECT_META) $(, $field)*],
        };
    };
}

kind!(PLAIN_OBJECT, "Object");
kind!(
    POD,
    "Pod",
    nested("spec", &POD_SPEC),
    nested("status", &POD_STATUS)
);
kind!(
    POD_TEMPLATE,
    "PodTemplate",
    nested("template", &POD_TEMPLATE_SPEC)
);
kind!(
    WORKLOAD,
    "Workload",
    nested("spec", &WORKLOAD_SPEC),
    nested("status", &CONDITIONS)
);
kind!(
    DEPLOYMENT,
    "Deployment",
    nested("spec", &DEPLOYMENT_SPEC),
    nested("status", &CONDITIONS)
);
kind!(CRON_JOB, "CronJob", nested("spec", &CRON_JOB_SPEC));
kind!(
    SERVICE,
    "Service",
    nested("spec", &SERVICE_SPEC),
    nested("status", &CONDITIONS)
);
kind!(
    SERVICE_ACCOUNT,
    "ServiceAccount",
    merge_by("secrets", "name", None)
);
kind!(
    NODE,
    "Node",
    nested("spec", &NODE_SPEC),
    nested("status", &NODE_STATUS)
);
kind!(
    WITH_STATUS_CONDITIONS,
    "ObjectWithConditions",
    nested("status", &CONDITIONS)
);
kind!(COMPONENT_STATUS, "ComponentStatus", conditions());
kind!(ENDPOINTS, "Endpoints", atomic("subsets"));
kind!(
    ENDPOINT_SLICE,
    "EndpointSlice",
    atomic("endpoints"),
    atomic("ports")
);
kind!(
    PDB,
    "PodDisruptionBudget",
    nested("spec", &PDB_SPEC),
    nested("status", &CONDITIONS)
);
kind!(
    WEBHOOK_CONFIGURATION,
    "WebhookConfiguration",
    merge_by("webhooks", "name", Some(&WEBHOOK))
);
kind!(
    ADMISSION_POLICY,
    "ValidatingAdmissionPolicy",
    nested("spec", &ADMISSION_POLICY_SPEC),
    nested("status", &CONDITIONS)
);
kind!(CSI_NODE, "CSINode", nested("spec", &CSI_NODE_SPEC));
kind!(
    RESOURCE_CLAIM,
    "ResourceClaim",
    nested("status", &RESOURCE_CLAIM_STATUS)
);

/// Every built-in (apiVersion, kind) with its schema.
static KINDS: &[(&str, &str, &Type)] = &[
    // core/v1
    ("v1", "Pod", &POD),
    ("v1", "PodTemplate", &POD_TEMPLATE),
    ("v1", "ReplicationController", &WORKLOAD),
    ("v1", "Service", &SERVICE),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "Node", &NODE),
    ("v1", "Namespace", &WITH_STATUS_CONDITIONS),
    ("v1", "PersistentVolumeClaim", &WITH_STATUS_CONDITIONS),
    ("v1", "PersistentVolume", &PLAIN_OBJECT),
    ("v1", "ComponentStatus", &COMPONENT_STATUS),
    ("v1", "Endpoints", &ENDPOINTS),
    ("v1", "ConfigMap", &PLAIN_OBJECT),
    ("v1", "Secret", &PLAIN_OBJECT),
    ("v1", "Event", &PLAIN_OBJECT),
    ("v1", "LimitRange", &PLAIN_OBJECT),
    ("v1", "ResourceQuota", &PLAIN_OBJECT),
    ("v1", "Binding", &PLAIN_OBJECT),
    // apps/v1
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("apps/v1", "ReplicaSet", &WORKLOAD),
    ("apps/v1", "StatefulSet", &WORKLOAD),
    ("apps/v1", "DaemonSet", &WORKLOAD),
    ("apps/v1", "ControllerRevision", &PLAIN_OBJECT),
    // batch/v1
    ("batch/v1", "Job", &WORKLOAD),
    ("batch/v1", "CronJob", &CRON_JOB),
    // autoscaling
    ("autoscaling/v1", "Scale", &PLAIN_OBJECT),
    ("autoscaling/v1", "HorizontalPodAutoscaler", &PLAIN_OBJECT),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        &WITH_STATUS_CONDITIONS,
    ),
    // policy/v1
    ("policy/v1", "PodDisruptionBudget", &PDB),
    ("policy/v1", "Eviction", &PLAIN_OBJECT),
    // discovery, coordination, events
    ("discovery.k8s.io/v1", "EndpointSlice", &ENDPOINT_SLICE),
    ("coordination.k8s.io/v1", "Lease", &PLAIN_OBJECT),
    ("events.k8s.io/v1", "Event", &PLAIN_OBJECT),
    // networking
    ("networking.k8s.io/v1", "Ingress", &PLAIN_OBJECT),
    ("networking.k8s.io/v1", "IngressClass", &PLAIN_OBJECT),
    ("networking.k8s.io/v1", "NetworkPolicy", &PLAIN_OBJECT),
    ("networking.k8s.io/v1", "IPAddress", &PLAIN_OBJECT),
    (
        "networking.k8s.io/v1",
        "ServiceCIDR",
        &WITH_STATUS_CONDITIONS,
    ),
    // rbac
    ("rbac.authorization.k8s.io/v1", "Role", &PLAIN_OBJECT),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", &PLAIN_OBJECT),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", &PLAIN_OBJECT),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &PLAIN_OBJECT,
    ),
    // storage
    ("storage.k8s.io/v1", "StorageClass", &PLAIN_OBJECT),
    ("storage.k8s.io/v1", "CSIDriver", &PLAIN_OBJECT),
    ("storage.k8s.io/v1", "CSINode", &CSI_NODE),
    ("storage.k8s.io/v1", "CSIStorageCapacity", &PLAIN_OBJECT),
    ("storage.k8s.io/v1", "VolumeAttachment", &PLAIN_OBJECT),
    ("storage.k8s.io/v1", "VolumeAttributesClass", &PLAIN_OBJECT),
    // scheduling, node, certificates
    ("scheduling.k8s.io/v1", "PriorityClass", &PLAIN_OBJECT),
    ("node.k8s.io/v1", "RuntimeClass", &PLAIN_OBJECT),
    // CertificateSigningRequest conditions are atomic (listType=map, no patch tag).
    (
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &PLAIN_OBJECT,
    ),
    // admission
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        &ADMISSION_POLICY,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        &PLAIN_OBJECT,
    ),
    // flowcontrol
    (
        "flowcontrol.apiserver.k8s.io/v1",
        "FlowSchema",
        &WITH_STATUS_CONDITIONS,
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1",
        "PriorityLevelConfiguration",
        &WITH_STATUS_CONDITIONS,
    ),
    // dynamic resource allocation
    ("resource.k8s.io/v1", "ResourceClaim", &RESOURCE_CLAIM),
    ("resource.k8s.io/v1", "ResourceClaimTemplate", &PLAIN_OBJECT),
    ("resource.k8s.io/v1", "DeviceClass", &PLAIN_OBJECT),
    ("resource.k8s.io/v1", "ResourceSlice", &PLAIN_OBJECT),
    // CRDs themselves are built in; their conditions are atomic.
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &PLAIN_OBJECT,
    ),
    (
        "apiregistration.k8s.io/v1",
        "APIService",
        &WITH_STATUS_CONDITIONS,
    ),
];

/// The schema of a built-in kind, or `None` when strategic merge patch is
/// not supported for it (custom resources, unknown versions).
/// The schema of a kind, or the error strategic merge answers for kinds it
/// has no schema for.
pub(crate) fn root_or_unsupported(
    api_version: &str,
    kind: &str,
) -> Result<&'static Type, crate::PatchError> {
    root(api_version, kind).ok_or_else(|| crate::PatchError::StrategicMergeUnsupported {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })
}

pub(crate) fn root(api_version: &str, kind: &str) -> Option<&'static Type> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, t)| *t)
}

/// Whether strategic merge patch is supported for this built-in kind.
///
/// The server can use this to answer 415 before reading the object.
pub fn supports_strategic_merge(api_version: &str, kind: &str) -> bool {
    root(api_version, kind).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_field(path: &[&str], api_version: &str, kind: &str) -> &'static Field {
        let mut ty = root(api_version, kind);
        let (last, parents) = path.split_last().unwrap();
        for p in parents {
            ty = field_of(ty, p).ty;
        }
        field_of(ty, last)
    }

    fn key_of(path: &[&str], api_version: &str, kind: &str) -> Option<&'static str> {
        match list_field(path, api_version, kind).strategy {
            Strategy::MergeList { key, .. } => key,
            other => panic!("{path:?} is not a merge list: {other:?}"),
        }
    }

    #[test]
    fn pod_template_lists_merge_by_their_kubernetes_keys_in_every_workload() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("v1", "Pod", &["spec"]),
            ("v1", "PodTemplate", &["template", "spec"]),
            ("v1", "ReplicationController", &["spec", "template", "spec"]),
            ("apps/v1", "Deployment", &["spec", "template", "spec"]),
            ("apps/v1", "ReplicaSet", &["spec", "template", "spec"]),
            ("apps/v1", "StatefulSet", &["spec", "template", "spec"]),
            ("apps/v1", "DaemonSet", &["spec", "template", "spec"]),
            ("batch/v1", "Job", &["spec", "template", "spec"]),
            (
                "batch/v1",
                "CronJob",
                &["spec", "jobTemplate", "spec", "template", "spec"],
            ),
        ];
        for (v, k, prefix) in cases {
            let at = |rest: &[&'static str]| {
                let mut p: Vec<&str> = prefix.to_vec();
                p.extend_from_slice(rest);
                key_of(&p, v, k)
            };
            assert_eq!(at(&["containers"]), Some("name"), "{k}");
            assert_eq!(at(&["initContainers"]), Some("name"), "{k}");
            assert_eq!(at(&["volumes"]), Some("name"), "{k}");
            assert_eq!(at(&["containers", "env"]), Some("name"), "{k}");
            assert_eq!(at(&["containers", "ports"]), Some("containerPort"), "{k}");
            assert_eq!(
                at(&["containers", "volumeMounts"]),
                Some("mountPath"),
                "{k}"
            );
        }
    }

    #[test]
    fn metadata_merges_owner_references_by_uid_and_finalizers_as_a_set() {
        assert_eq!(
            key_of(&["metadata", "ownerReferences"], "v1", "ConfigMap"),
            Some("uid")
        );
        assert_eq!(
            key_of(&["metadata", "finalizers"], "apps/v1", "Deployment"),
            None
        );
    }

    #[test]
    fn tolerations_subsets_and_slice_endpoints_are_atomic() {
        for (path, v, k) in [
            (&["spec", "tolerations"][..], "v1", "Pod"),
            (&["subsets"][..], "v1", "Endpoints"),
            (&["endpoints"][..], "discovery.k8s.io/v1", "EndpointSlice"),
            (&["spec", "containers", "resizePolicy"][..], "v1", "Pod"),
        ] {
            assert_eq!(
                list_field(path, v, k).strategy,
                Strategy::Default,
                "{path:?}"
            );
        }
    }

    #[test]
    fn conditions_merge_by_type_on_every_status_that_declares_it() {
        for (v, k) in [
            ("v1", "Pod"),
            ("v1", "Node"),
            ("v1", "Namespace"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "Job"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ] {
            assert_eq!(key_of(&["status", "conditions"], v, k), Some("type"), "{k}");
        }
        assert_eq!(key_of(&["status", "addresses"], "v1", "Node"), Some("type"));
    }

    #[test]
    fn custom_resources_and_unknown_versions_are_not_supported() {
        assert!(supports_strategic_merge("apps/v1", "Deployment"));
        assert!(!supports_strategic_merge("apps/v1beta1", "Deployment"));
        assert!(!supports_strategic_merge("example.com/v1", "Widget"));
    }

    #[test]
    fn every_kind_is_listed_once() {
        for (i, (v, k, _)) in KINDS.iter().enumerate() {
            assert!(
                !KINDS[i + 1..].iter().any(|(v2, k2, _)| v == v2 && k == k2),
                "{v} {k} listed twice"
            );
        }
    }
}
