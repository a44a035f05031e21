//! The legacy `v1/Endpoints` object of a Service, computed as Kubernetes'
//! endpoints controller does (pure, no IO): one (address, port) pair per
//! selected pod and service port, repacked so ports offered by the same
//! addresses share a subset.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};

use super::desired::{find_port, ipv4_of, is_ready, selector, selects};

/// Label telling the EndpointSlice mirroring controller to leave the object alone.
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Label marking objects of a headless service (`clusterIP: None`).
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// Whether the service is headless.
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The service's labels plus the headless marker when it applies (and
/// never when it does not).
pub fn inherited_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    } else {
        labels.remove(HEADLESS);
    }
    labels
}

/// The labels the Endpoints object carries.
pub fn endpoints_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = inherited_labels(svc);
    labels.insert(SKIP_MIRROR.into(), "true".into());
    labels
}

/// An address's identity: IP and target uid.
type AddressKey = (String, String);
/// Addresses offering one port, with their readiness.
type Ready = BTreeMap<AddressKey, bool>;

/// Orders addresses by IP, then target uid.
fn address_key(a: &EndpointAddress) -> AddressKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|t| t.uid.clone())
            .unwrap_or_default(),
    )
}

fn port_sort_key(p: &EndpointPort) -> (String, i32, String) {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
    )
}

/// The Endpoints subsets of `svc`: ready pods (or all, with
/// `publishNotReadyAddresses`) under `addresses`, the others under
/// `notReadyAddresses`. Terminating pods are left out unless
/// `publishNotReadyAddresses` is set.
pub fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let Some(selector) = selector(svc) else {
        return Vec::new();
    };
    let spec = svc.spec.as_ref();
    let tolerate_unready = spec
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let svc_ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();

    // Port (None: the headless "no ports" sentinel) -> address -> ready.
    let mut by_port: Vec<(Option<EndpointPort>, Ready)> = Vec::new();
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    for pod in pods {
        if !selects(selector, pod)
            || matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
            || (!tolerate_unready && pod.metadata.deletion_timestamp.is_some())
        {
            continue;
        }
        let Some(ip) = ipv4_of(pod) else { continue };
        let address = EndpointAddress {
            ip,
            hostname: pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty())
                .filter(|_| {
                    pod.spec.as_ref().and_then(|s| s.subdomain.as_deref())
                        == svc.metadata.name.as_deref()
                        && pod.metadata.namespace == svc.metadata.namespace
                }),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let key = address_key(&address);
        let ready = tolerate_unready || is_ready(pod);
        let mut record = |port: Option<EndpointPort>| {
            let slot = match by_port.iter_mut().find(|(p, _)| *p == port) {
                Some((_, slot)) => slot,
                None => {
                    by_port.push((port, BTreeMap::new()));
                    &mut by_port.last_mut().expect("just pushed").1
                }
            };
            // A ready sighting wins over a not-ready one.
            let entry = slot.entry(key.clone()).or_insert(ready);
            *entry |= ready;
        };
        if svc_ports.is_empty() {
            if is_headless(svc) {
                record(None);
            }
        } else {
            for sp in svc_ports {
                if let Some(port) = find_port(pod, sp) {
                    record(Some(EndpointPort {
                        name: sp.name.clone(),
                        port,
                        protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: sp.app_protocol.clone(),
                    }));
                }
            }
        }
        addresses.insert(key, address);
    }

    // Ports offered by exactly the same (address, readiness) set share a subset.
    let mut by_addresses: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, ready) in by_port {
        let ports = by_addresses.entry(ready.into_iter().collect()).or_default();
        ports.extend(port);
    }
    let mut out: Vec<EndpointSubset> = by_addresses
        .into_iter()
        .map(|(set, mut ports)| {
            ports.sort_by_key(port_sort_key);
            let pick = |want: bool| {
                let list: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .map(|(key, _)| addresses[key].clone())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    out.sort_by_key(|s| {
        let ports: BTreeSet<_> = s.ports.iter().flatten().map(port_sort_key).collect();
        let first = s
            .addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .map(address_key)
            .min();
        (ports, first)
    });
    out
}

/// Whether `current` already says what `svc` wants: same subsets and labels.
pub fn up_to_date(current: &Endpoints, svc: &Service, subsets: &[EndpointSubset]) -> bool {
    current.subsets.as_deref().unwrap_or_default() == subsets
        && current.metadata.labels.clone().unwrap_or_default() == endpoints_labels(svc)
}

#[cfg(test)]
mod tests {
    use super::super::desired::tests::{pod, service, svc_port};
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_share_a_subset_per_port_set() {
        let svc = service(vec![
            svc_port("web", 80, IntOrString::String("http".into())),
            svc_port("admin", 81, IntOrString::Int(9000)),
        ]);
        let pods = vec![
            pod("b", Some("10.0.0.2"), false, 8080),
            pod("a", Some("10.0.0.1"), true, 8080),
            pod("none", None, true, 8080),
        ];
        let got = subsets(&svc, &pods);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(ips(&got[0].addresses), ["10.0.0.1"]);
        assert_eq!(ips(&got[0].not_ready_addresses), ["10.0.0.2"]);
        let ports: Vec<_> = got[0].ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [9000, 8080]);
    }

    #[test]
    fn pods_with_different_named_ports_get_different_subsets() {
        let svc = service(vec![svc_port(
            "web",
            80,
            IntOrString::String("http".into()),
        )]);
        let pods = vec![
            pod("a", Some("10.0.0.1"), true, 8080),
            pod("b", Some("10.0.0.2"), true, 9090),
        ];
        let got = subsets(&svc, &pods);
        assert_eq!(got.len(), 2);
        assert_eq!(ips(&got[0].addresses), ["10.0.0.1"]);
        assert_eq!(ips(&got[1].addresses), ["10.0.0.2"]);
    }

    #[test]
    fn a_portless_service_gets_addresses_only_when_headless() {
        let mut svc = service(vec![]);
        let pods = vec![pod("a", Some("10.0.0.1"), true, 1)];
        assert!(subsets(&svc, &pods).is_empty());
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let got = subsets(&svc, &pods);
        assert_eq!(got.len(), 1);
        assert!(got[0].ports.is_none());
        assert_eq!(
            endpoints_labels(&svc).get(HEADLESS).map(String::as_str),
            Some("")
        );
    }
}
