//! What the scheduler precomputes about a pod once per watch event, so that
//! no scheduling cycle re-derives it: requests, host ports, parsed
//! inter-pod affinity terms and priority.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, PodSpec, Toleration};
use kube::core::{Selector, SelectorExt};

use crate::resources::{pod_requests, PodRequests};

/// A host port a container binds: `(hostIP, protocol, hostPort)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host IP; `0.0.0.0` binds every address.
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

/// The wildcard host IP.
const ANY_IP: &str = "0.0.0.0";

impl HostPort {
    /// Whether two host ports cannot both be bound on one node: same
    /// protocol and port, and the same IP or either one the wildcard.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// One pod (anti-)affinity term, parsed: which pods it selects and the
/// topology over which it applies.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// Namespaces the selected pods must be in (besides those the namespace
    /// selector selects).
    pub namespaces: BTreeSet<String>,
    /// Selects further namespaces by their labels; `None` selects none.
    pub namespace_selector: Option<Selector>,
    /// Selects pods by their labels; `None` (an absent selector) selects none.
    pub selector: Option<Selector>,
    /// The node label whose value names the topology domain.
    pub topology_key: String,
}

/// A preferred (scored) affinity term and its weight.
#[derive(Clone, Debug)]
pub struct WeightedAffinityTerm {
    /// The term.
    pub term: AffinityTerm,
    /// Its weight, 1..=100.
    pub weight: i64,
}

impl AffinityTerm {
    /// Parses `term` of a pod in `owner_namespace`. Without namespaces and
    /// namespace selector a term selects pods in the owner's namespace.
    ///
    /// # Errors
    /// A label selector that does not parse.
    pub fn new(owner_namespace: &str, term: &PodAffinityTerm) -> Result<Self, String> {
        let parse = |s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector| {
            Selector::try_from(s.clone()).map_err(|e| e.to_string())
        };
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(owner_namespace.to_string());
        }
        Ok(AffinityTerm {
            namespaces,
            namespace_selector: term.namespace_selector.as_ref().map(parse).transpose()?,
            selector: term.label_selector.as_ref().map(parse).transpose()?,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether `pod` is selected: in one of the namespaces (or in a
    /// namespace whose labels, `namespace_labels`, the namespace selector
    /// matches) and matching the label selector.
    pub fn matches(&self, pod: &PodInfo, namespace_labels: &BTreeMap<String, String>) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(namespace_labels));
        in_namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
    }

    /// The term with the namespaces its namespace selector selects now
    /// folded into `namespaces`, so matching needs no namespace lookups.
    pub fn with_namespaces_resolved(&self, namespaces: &dyn crate::NamespaceLister) -> Self {
        let mut resolved = self.clone();
        if let Some(selector) = resolved.namespace_selector.take() {
            resolved
                .namespaces
                .extend(namespaces.names_matching(&selector));
        }
        resolved
    }
}

/// A pod as the scheduler sees it, computed once per watch event.
#[derive(Debug)]
pub struct PodInfo {
    /// The pod as last observed.
    pub pod: Arc<Pod>,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// The effective resource request.
    pub requests: PodRequests,
    /// Host ports of its containers (and sidecars).
    pub host_ports: Vec<HostPort>,
    /// `requiredDuringScheduling` pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// `requiredDuringScheduling` pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// `preferredDuringScheduling` pod affinity terms.
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    /// `preferredDuringScheduling` pod anti-affinity terms.
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    /// Why an affinity term failed to parse, if one did (the pod then
    /// cannot be scheduled; as an existing pod its terms are ignored).
    pub parse_error: Option<String>,
}

static EMPTY_SPEC: std::sync::LazyLock<PodSpec> = std::sync::LazyLock::new(PodSpec::default);

impl PodInfo {
    /// Precomputes everything about `pod`.
    pub fn new(pod: Pod) -> PodInfo {
        let pod = Arc::new(pod);
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let spec = pod.spec.as_ref().unwrap_or(&EMPTY_SPEC);
        let mut parse_error = None;
        let mut parse = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    AffinityTerm::new(&namespace, t)
                        .map_err(|e| parse_error = Some(e))
                        .ok()
                })
                .collect()
        };
        let affinity = spec.affinity.as_ref();
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_affinity = parse(pod_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = parse(anti_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let mut weighted =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .filter_map(
                        |w| match AffinityTerm::new(&namespace, &w.pod_affinity_term) {
                            Ok(term) => Some(WeightedAffinityTerm {
                                term,
                                weight: i64::from(w.weight),
                            }),
                            Err(e) => {
                                parse_error = Some(e);
                                None
                            }
                        },
                    )
                    .collect::<Vec<_>>()
            };
        let preferred_affinity = weighted(pod_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = weighted(anti_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            requests: pod_requests(spec),
            host_ports: host_ports(spec),
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            parse_error,
            namespace,
            pod: pod.clone(),
        }
    }

    /// The pod's spec (empty if it has none).
    pub fn spec(&self) -> &PodSpec {
        self.pod.spec.as_ref().unwrap_or(&EMPTY_SPEC)
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `spec.nodeName`, if set.
    pub fn node_name(&self) -> Option<&str> {
        self.spec().node_name.as_deref().filter(|n| !n.is_empty())
    }

    /// `spec.tolerations`.
    pub fn tolerations(&self) -> &[Toleration] {
        self.spec().tolerations.as_deref().unwrap_or_default()
    }

    /// Whether the pod is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Whether the pod has any pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }
}

/// The host ports of a pod's containers and restartable init containers.
fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|port| port > 0))
        .map(|p| HostPort {
            ip: p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| ANY_IP.to_string()),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            port: p.host_port.unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> PodInfo {
        PodInfo::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn host_ports_default_to_every_address_and_tcp() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
        ]}}));
        assert_eq!(
            p.host_ports,
            vec![HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
    }

    #[test]
    fn host_ports_conflict_on_the_same_address_or_the_wildcard() {
        let port = |ip: &str, protocol: &str| HostPort {
            ip: ip.into(),
            protocol: protocol.into(),
            port: 80,
        };
        assert!(port("0.0.0.0", "TCP").conflicts_with(&port("10.0.0.1", "TCP")));
        assert!(port("10.0.0.1", "TCP").conflicts_with(&port("10.0.0.1", "TCP")));
        assert!(!port("10.0.0.1", "TCP").conflicts_with(&port("10.0.0.2", "TCP")));
        assert!(!port("0.0.0.0", "TCP").conflicts_with(&port("0.0.0.0", "UDP")));
    }

    #[test]
    fn affinity_terms_default_to_the_owners_namespace_and_nil_selectors_select_nothing() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "web", "labels": {"app": "x"}},
            "spec": {"containers": [], "affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"},
                    {"topologyKey": "zone"},
                ]}}}}),
        );
        let none = BTreeMap::new();
        assert_eq!(p.required_anti_affinity.len(), 2);
        assert!(p.required_anti_affinity[0].matches(&p, &none));
        assert!(!p.required_anti_affinity[1].matches(&p, &none));
        let other = pod(
            json!({"metadata": {"name": "q", "namespace": "db", "labels": {"app": "x"}},
            "spec": {"containers": []}}),
        );
        assert!(!p.required_anti_affinity[0].matches(&other, &none));
    }

    #[test]
    fn an_empty_namespace_selector_selects_every_namespace() {
        let p = pod(json!({"metadata": {"name": "p", "namespace": "web"},
        "spec": {"containers": [], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {}, "namespaceSelector": {}, "topologyKey": "zone"},
            ]}}}}));
        let other =
            pod(json!({"metadata": {"name": "q", "namespace": "db"}, "spec": {"containers": []}}));
        assert!(p.required_affinity[0].matches(&other, &BTreeMap::new()));
    }

    #[test]
    fn a_bad_selector_is_recorded_as_a_parse_error() {
        let p = pod(json!({"metadata": {"name": "p"},
        "spec": {"containers": [], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, "topologyKey": "zone"},
            ]}}}}));
        assert!(p.parse_error.is_some());
        assert!(p.required_affinity.is_empty());
    }
}
