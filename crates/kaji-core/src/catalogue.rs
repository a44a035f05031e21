//! The built-in resources kaji serves, as discovery describes them.

/// Whether a resource lives in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Lives in a namespace.
    Namespaced,
    /// Cluster-wide.
    Cluster,
}

/// One resource (a kind at a group/version) as served by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version, e.g. "v1".
    pub version: &'static str,
    /// Kind, e.g. "ConfigMap".
    pub kind: &'static str,
    /// Plural resource name used in URLs, e.g. "configmaps".
    pub plural: &'static str,
    /// Singular name, e.g. "configmap".
    pub singular: &'static str,
    /// Short names for kubectl, e.g. ["cm"].
    pub short_names: &'static [&'static str],
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Categories, e.g. ["all"].
    pub categories: &'static [&'static str],
    /// Subresources served, e.g. ["status", "scale"].
    pub subresources: &'static [&'static str],
    /// Whether the kind has a `status` stanza separated by the /status subresource.
    pub has_status: bool,
}

/// Verbs every built-in resource serves.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// True for namespaced resources.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// Store key prefix for all objects of this resource (ends with '/').
    pub fn key_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }
}

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $scope:ident, [$($cat:expr),*], [$($sub:expr),*], $status:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            scope: Scope::$scope,
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
            has_status: $status,
        }
    };
}

#[rustfmt::skip]
static BUILTIN: &[ResourceInfo] = &[
    res!("", "v1", "Namespace", "namespaces", "namespace", ["ns"], Cluster, [], ["status", "finalize"], true),
    res!("", "v1", "Pod", "pods", "pod", ["po"], Namespaced, ["all"], ["status", "binding", "log", "exec", "attach", "portforward"], true),
    res!("", "v1", "Service", "services", "service", ["svc"], Namespaced, ["all"], ["status"], true),
    res!("", "v1", "Endpoints", "endpoints", "endpoints", ["ep"], Namespaced, [], [], false),
    res!("", "v1", "ConfigMap", "configmaps", "configmap", ["cm"], Namespaced, [], [], false),
    res!("", "v1", "Secret", "secrets", "secret", [], Namespaced, [], [], false),
    res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", ["sa"], Namespaced, [], [], false),
    res!("", "v1", "Node", "nodes", "node", ["no"], Cluster, [], ["status"], true),
    res!("", "v1", "Event", "events", "event", ["ev"], Namespaced, [], [], false),
    res!("apps", "v1", "Deployment", "deployments", "deployment", ["deploy"], Namespaced, ["all"], ["status", "scale"], true),
    res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", ["rs"], Namespaced, ["all"], ["status", "scale"], true),
    res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", ["sts"], Namespaced, ["all"], ["status", "scale"], true),
    res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", ["ds"], Namespaced, ["all"], ["status"], true),
    res!("batch", "v1", "Job", "jobs", "job", [], Namespaced, ["all"], ["status"], true),
    res!("batch", "v1", "CronJob", "cronjobs", "cronjob", ["cj"], Namespaced, ["all"], ["status"], true),
    res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", [], Namespaced, [], [], false),
    res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", [], Namespaced, [], [], false),
    res!("events.k8s.io", "v1", "Event", "events", "event", ["ev"], Namespaced, [], [], false),
    res!("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", [], Cluster, ["api-extensions"], [], false),
    res!("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "validatingwebhookconfiguration", [], Cluster, ["api-extensions"], [], false),
    res!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", ["crd", "crds"], Cluster, ["api-extensions"], ["status"], true),
];

/// The owned form of a [`ResourceInfo`], for resources defined at run time
/// (custom resources).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedResourceInfo {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names.
    pub short_names: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Categories.
    pub categories: Vec<String>,
    /// Subresources served.
    pub subresources: Vec<String>,
    /// Whether `status` is a separate subresource.
    pub has_status: bool,
}

/// A `'static` [`ResourceInfo`] for a resource defined at run time.
///
/// Registries and discovery hand out `&'static ResourceInfo`; interning
/// keeps that one shape for custom resources. Each distinct definition is
/// allocated once and reused, so memory grows with the number of distinct
/// CRD versions ever served, not with how often they are re-read.
pub fn intern(info: OwnedResourceInfo) -> &'static ResourceInfo {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static INTERNED: OnceLock<Mutex<HashMap<OwnedResourceInfo, &'static ResourceInfo>>> =
        OnceLock::new();
    let mut table = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = table.get(&info) {
        return found;
    }
    let leak_str = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let leak_list = |l: &[String]| -> &'static [&'static str] {
        Box::leak(
            l.iter()
                .map(|s| leak_str(s))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    };
    let interned: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
        group: leak_str(&info.group),
        version: leak_str(&info.version),
        kind: leak_str(&info.kind),
        plural: leak_str(&info.plural),
        singular: leak_str(&info.singular),
        short_names: leak_list(&info.short_names),
        scope: info.scope,
        categories: leak_list(&info.categories),
        subresources: leak_list(&info.subresources),
        has_status: info.has_status,
    }));
    table.insert(info, interned);
    interned
}

/// Every built-in resource, grouped by API group in discovery order.
pub fn builtin() -> &'static [ResourceInfo] {
    BUILTIN
}

/// Looks up a built-in resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks up a built-in resource by apiVersion and kind.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    BUILTIN
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_the_same_definition_twice_gives_the_same_info() {
        let info = OwnedResourceInfo {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            short_names: vec!["wd".into()],
            scope: Scope::Namespaced,
            categories: vec![],
            subresources: vec!["status".into()],
            has_status: true,
        };
        let a = intern(info.clone());
        let b = intern(info.clone());
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.short_names, &["wd"]);
        let c = intern(OwnedResourceInfo {
            version: "v2".into(),
            ..info
        });
        assert_eq!(c.version, "v2");
    }

    #[test]
    fn plurals_are_unique_within_a_group_version() {
        for a in builtin() {
            let same = builtin()
                .iter()
                .filter(|b| b.group == a.group && b.version == a.version && b.plural == a.plural)
                .count();
            assert_eq!(same, 1, "{}", a.plural);
        }
    }

    #[test]
    fn core_and_group_prefixes_follow_kubernetes_layout() {
        assert_eq!(
            find("", "v1", "pods").unwrap().key_prefix(),
            "/registry/pods/"
        );
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().key_prefix(),
            "/registry/apps/deployments/"
        );
        assert_eq!(
            find_kind("apps/v1", "ReplicaSet").unwrap().plural,
            "replicasets"
        );
    }
}
