//! What a Service's endpoints should be, computed from the service and its
//! selected pods — pure functions, no IO.
//!
//! Follows Kubernetes' `podToEndpoint`, `getEndpointPorts`, `FindPort` and
//! `ShouldPodBeInEndpoints`: terminal pods and pods without an IPv4 address
//! are left out; a named `targetPort` is looked up per pod, so pods that
//! name their ports differently land in different port groups.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A port set's identity, independent of order: (name, protocol, port,
/// appProtocol) tuples, sorted.
pub type PortKey = Vec<(String, String, i32, String)>;

/// Endpoints sharing one resolved port set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PortGroup {
    /// The resolved ports, in the service's port order.
    pub ports: Vec<EndpointPort>,
    /// The endpoints, sorted by their identity ([`endpoint_id`]).
    pub endpoints: Vec<Endpoint>,
}

/// The key of a port set.
pub fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// An endpoint's identity, as Kubernetes hashes it: its addresses, hostname
/// and target pod. Two endpoints with the same identity are the same
/// backend, possibly in another state.
pub fn endpoint_id(ep: &Endpoint) -> (Vec<String>, String, String, String) {
    let target = ep.target_ref.as_ref();
    (
        ep.addresses.clone(),
        ep.hostname.clone().unwrap_or_default(),
        target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        target.and_then(|t| t.name.clone()).unwrap_or_default(),
    )
}

/// The service's selector, or `None` when it has none (such services are
/// left alone, as in Kubernetes).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// Whether `pod` carries every label of `selector`.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the pod's Ready condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's first IPv4 address (`status.podIPs`, else `status.podIP`).
pub fn ipv4_of(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .find(|ip| ip.parse::<Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// Whether the pod belongs in the service's endpoints at all: not terminal,
/// has an IPv4 address, and (unless `include_terminating`) is not being deleted.
fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !is_terminal(pod)
        && ipv4_of(pod).is_some()
        && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

fn protocol_of(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

/// The pod port a service port targets: a numeric `targetPort` as is (the
/// service port when unset), a named one looked up among the pod's
/// containers' and sidecars' ports of the same protocol. `None` when the
/// name is not found.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol_of(port)
                })
                .map(|p| p.container_port)
        }
    }
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pod's hostname when the service is its subdomain (Kubernetes'
/// `ShouldSetHostname`).
fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_string())
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// The EndpointSlice endpoint for a pod (Kubernetes' `podToEndpoint`):
/// serving = Ready (or `publishNotReadyAddresses`), terminating = being
/// deleted, ready = serving and not terminating.
pub fn slice_endpoint(pod: &Pod, svc: &Service, ip: String) -> Endpoint {
    let serving = publish_not_ready(svc) || is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(svc) || (serving && !terminating);
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, svc),
        node_name: node_name(pod),
        target_ref: Some(target_ref(pod)),
        ..Endpoint::default()
    }
}

/// The service's ports resolved against one pod; ports the pod lacks are skipped.
pub fn slice_ports(pod: &Pod, svc: &Service) -> Vec<EndpointPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            find_port(pod, sp).map(|port| EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(protocol_of(sp).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The desired EndpointSlice endpoints of `svc`, grouped by port set.
/// `pods` are the candidates; only those the selector matches count.
pub fn slice_groups(svc: &Service, pods: &[Arc<Pod>]) -> BTreeMap<PortKey, PortGroup> {
    let mut groups: BTreeMap<PortKey, PortGroup> = BTreeMap::new();
    let Some(selector) = selector(svc) else {
        return groups;
    };
    for pod in pods {
        if !selects(selector, pod) || !should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = ipv4_of(pod) else { continue };
        let ports = slice_ports(pod, svc);
        let group = groups.entry(port_key(&ports)).or_default();
        group.ports = ports;
        group.endpoints.push(slice_endpoint(pod, svc, ip));
    }
    for group in groups.values_mut() {
        group.endpoints.sort_by_key(endpoint_id);
    }
    groups
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    pub(crate) fn service(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("svc-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub(crate) fn svc_port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    pub(crate) fn pod(name: &str, ip: Option<&str>, ready: bool, http_port: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: http_port,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.map(Into::into),
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn numeric_and_named_target_ports_resolve_per_pod() {
        let svc = service(vec![
            svc_port("metrics", 9090, IntOrString::Int(9100)),
            svc_port("web", 80, IntOrString::String("http".into())),
            svc_port("missing", 81, IntOrString::String("nope".into())),
        ]);
        let ports = slice_ports(&pod("a", Some("10.0.0.1"), true, 8080), &svc);
        let got: Vec<_> = ports
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port.unwrap()))
            .collect();
        assert_eq!(got, [("metrics".into(), 9100), ("web".to_string(), 8080)]);
    }

    #[test]
    fn pods_naming_ports_differently_land_in_different_groups() {
        let svc = service(vec![svc_port(
            "web",
            80,
            IntOrString::String("http".into()),
        )]);
        let pods = vec![
            pod("a", Some("10.0.0.1"), true, 8080),
            pod("b", Some("10.0.0.2"), true, 8080),
            pod("c", Some("10.0.0.3"), true, 9000),
        ];
        let groups = slice_groups(&svc, &pods);
        let sizes: Vec<usize> = groups.values().map(|g| g.endpoints.len()).collect();
        assert_eq!(sizes, [2, 1]);
    }

    #[test]
    fn pods_without_ip_terminal_or_unselected_are_left_out() {
        let svc = service(vec![]);
        let mut finished = (*pod("done", Some("10.0.0.4"), false, 1)).clone();
        finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut other = (*pod("other", Some("10.0.0.5"), true, 1)).clone();
        other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let pods = vec![
            pod("no-ip", None, true, 1),
            pod("v6", Some("fd00::1"), true, 1),
            Arc::new(finished),
            Arc::new(other),
            pod("ok", Some("10.0.0.1"), true, 1),
        ];
        let groups = slice_groups(&svc, &pods);
        let all: Vec<_> = groups.values().flat_map(|g| &g.endpoints).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].addresses, ["10.0.0.1"]);
    }

    #[test]
    fn conditions_follow_readiness_and_termination() {
        let svc = service(vec![]);
        let ep = slice_endpoint(&pod("a", None, false, 1), &svc, "10.0.0.1".into());
        let c = ep.conditions.unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(false), Some(false))
        );

        let mut dying = (*pod("b", None, true, 1)).clone();
        dying.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let ep = slice_endpoint(&dying, &svc, "10.0.0.2".into());
        let c = ep.conditions.unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        let target = ep.target_ref.unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.uid.as_deref(), Some("b-uid"));
        assert_eq!(ep.node_name.as_deref(), Some("node-1"));
    }

    #[test]
    fn a_service_without_selector_selects_nothing() {
        let mut svc = service(vec![]);
        svc.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        assert!(selector(&svc).is_none());
        assert!(slice_groups(&svc, &[pod("a", Some("10.0.0.1"), true, 1)]).is_empty());
    }
}
