//! Planning a Service's EndpointSlices (pure, no IO): which slices to
//! create, update in place and delete so the slices hold exactly the
//! desired endpoints, as Kubernetes' `reconcileByPortMapping` does.
//!
//! Existing slices keep the endpoints that are still desired (refreshed);
//! leftover endpoints fill slices that change anyway, then one unchanged
//! slice if they all fit, then new slices of at most
//! [`MAX_ENDPOINTS_PER_SLICE`]. A slice that would be deleted is reused for
//! a slice that would be created, and a service with no endpoints keeps
//! one empty placeholder slice.

use std::collections::{BTreeMap, VecDeque};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::desired::{endpoint_id, port_key, PortGroup, PortKey};
use super::legacy::inherited_labels;

/// At most this many endpoints per slice (Kubernetes' default `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Label naming a slice's service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming a slice's manager.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The only address type this controller writes.
pub const ADDRESS_TYPE: &str = "IPv4";

/// The writes that bring a service's slices to the desired state.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices (with `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Existing slices, rewritten in place (carrying their `resourceVersion`).
    pub update: Vec<EndpointSlice>,
    /// Existing slices no longer needed.
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The labels every slice of `svc` carries: the service's own (minus the
/// reserved ones) plus the service name and the manager.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = inherited_labels(svc);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

/// The controller owner reference from a slice to its service.
pub fn owner_reference(svc: &Service) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone()?,
        uid: svc.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn owned_by(slice: &EndpointSlice, uid: &str) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

fn new_slice(
    svc: &Service,
    owner: &OwnerReference,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name)),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints,
        ports: Some(ports),
    }
}

/// Plans the writes turning `existing` (every slice labelled for this
/// service and manager) into `desired`. Slices not owned by this very
/// service (same name, older uid) or of another address type are deleted.
///
/// # Guarantees
/// Deterministic for a given input; never plans a write for a slice that
/// already says what is wanted.
pub fn plan(
    svc: &Service,
    owner: &OwnerReference,
    mut existing: Vec<EndpointSlice>,
    desired: BTreeMap<PortKey, PortGroup>,
    max: usize,
) -> Plan {
    let max = max.max(1);
    let labels = slice_labels(svc);
    let mut plan = Plan::default();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut by_key: BTreeMap<PortKey, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(&slice, &owner.uid) && slice.address_type == ADDRESS_TYPE {
            let key = port_key(slice.ports.as_deref().unwrap_or_default());
            by_key.entry(key).or_default().push(slice);
        } else {
            plan.delete.push(slice);
        }
    }

    let mut kept = 0;
    for (key, group) in desired {
        let mut wanted: BTreeMap<_, Endpoint> = group
            .endpoints
            .into_iter()
            .map(|ep| (endpoint_id(&ep), ep))
            .collect();
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        for mut slice in by_key.remove(&key).unwrap_or_default() {
            let mut dirty = false;
            let mut endpoints = Vec::new();
            for ep in std::mem::take(&mut slice.endpoints) {
                match wanted.remove(&endpoint_id(&ep)) {
                    Some(want) => {
                        dirty |= want != ep;
                        endpoints.push(want);
                    }
                    None => dirty = true,
                }
            }
            slice.endpoints = endpoints;
            if slice.ports.as_ref() != Some(&group.ports) {
                dirty = true;
                slice.ports = Some(group.ports.clone());
            }
            if slice.metadata.labels.as_ref() != Some(&labels) {
                dirty = true;
                slice.metadata.labels = Some(labels.clone());
            }
            if slice.endpoints.is_empty() {
                plan.delete.push(slice);
            } else if dirty {
                changed.push(slice);
            } else {
                unchanged.push(slice);
            }
        }

        let mut rest: VecDeque<Endpoint> = wanted.into_values().collect();
        for slice in &mut changed {
            while slice.endpoints.len() < max {
                let Some(ep) = rest.pop_front() else { break };
                slice.endpoints.push(ep);
            }
        }
        if !rest.is_empty() {
            // All the rest into one unchanged slice, the fullest that fits.
            unchanged.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
            if let Some(i) = unchanged
                .iter()
                .position(|s| s.endpoints.len() + rest.len() <= max)
            {
                let mut slice = unchanged.remove(i);
                slice.endpoints.extend(rest.drain(..));
                changed.push(slice);
            }
        }
        while !rest.is_empty() {
            let chunk: Vec<Endpoint> = rest.drain(..rest.len().min(max)).collect();
            plan.create
                .push(new_slice(svc, owner, group.ports.clone(), chunk));
        }
        kept += changed.len() + unchanged.len();
        plan.update.extend(changed);
    }
    plan.delete.extend(by_key.into_values().flatten());

    // Rewrite slices headed for deletion instead of creating new ones.
    let mut reusable: Vec<usize> = (0..plan.delete.len())
        .filter(|&i| owned_by(&plan.delete[i], &owner.uid))
        .collect();
    reusable.reverse();
    let mut reused = Vec::new();
    for fresh in std::mem::take(&mut plan.create) {
        match reusable.pop() {
            Some(i) => {
                plan.update.push(reuse(&plan.delete[i], fresh));
                reused.push(i);
            }
            None => plan.create.push(fresh),
        }
    }
    plan.delete = std::mem::take(&mut plan.delete)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !reused.contains(i))
        .map(|(_, s)| s)
        .collect();

    // No endpoints at all: keep (or create) one empty placeholder slice.
    if kept == 0 && plan.create.is_empty() && plan.update.is_empty() {
        let placeholder = new_slice(svc, owner, Vec::new(), Vec::new());
        match plan.delete.iter().position(|s| owned_by(s, &owner.uid)) {
            Some(i) => {
                let current = plan.delete.remove(i);
                if !is_placeholder(&current, &labels) {
                    plan.update.push(reuse(&current, placeholder));
                }
            }
            None => plan.create.push(placeholder),
        }
    }
    plan
}

fn is_placeholder(slice: &EndpointSlice, labels: &BTreeMap<String, String>) -> bool {
    slice.endpoints.is_empty()
        && slice.ports.as_deref().unwrap_or_default().is_empty()
        && slice.address_type == ADDRESS_TYPE
        && slice.metadata.labels.as_ref() == Some(labels)
}

/// `fresh`'s content under `old`'s identity (name, uid, resourceVersion).
fn reuse(old: &EndpointSlice, fresh: EndpointSlice) -> EndpointSlice {
    let mut metadata = old.metadata.clone();
    metadata.labels = fresh.metadata.labels;
    metadata.owner_references = fresh.metadata.owner_references;
    EndpointSlice {
        metadata,
        address_type: fresh.address_type,
        endpoints: fresh.endpoints,
        ports: fresh.ports,
    }
}

#[cfg(test)]
mod tests {
    use super::super::desired::slice_groups;
    use super::super::desired::tests::{pod, service, svc_port};
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::sync::Arc;

    fn svc() -> Service {
        service(vec![svc_port(
            "web",
            80,
            IntOrString::String("http".into()),
        )])
    }

    fn pods(n: usize, port: i32) -> Vec<Arc<Pod>> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    Some(&format!("10.0.{}.{i}", port % 256)),
                    true,
                    port,
                )
            })
            .collect()
    }

    /// Applies a plan the way the API server would, naming new slices.
    fn apply(mut current: Vec<EndpointSlice>, plan: Plan) -> Vec<EndpointSlice> {
        let gone: Vec<_> = plan
            .delete
            .iter()
            .map(|s| s.metadata.name.clone())
            .collect();
        current.retain(|s| !gone.contains(&s.metadata.name));
        for u in plan.update {
            let slot = current
                .iter_mut()
                .find(|s| s.metadata.name == u.metadata.name)
                .expect("updated slice exists");
            *slot = u;
        }
        for (i, mut c) in plan.create.into_iter().enumerate() {
            c.metadata.name = Some(format!("web-{}-{i}", current.len()));
            c.metadata.uid = c.metadata.name.clone();
            current.push(c);
        }
        current
    }

    fn run(current: Vec<EndpointSlice>, pods: &[Arc<Pod>]) -> Vec<EndpointSlice> {
        let s = svc();
        let owner = owner_reference(&s).unwrap();
        let p = plan(&s, &owner, current.clone(), slice_groups(&s, pods), 100);
        apply(current, p)
    }

    fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
        let mut v: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        v.sort();
        v
    }

    #[test]
    fn endpoints_are_packed_into_slices_of_at_most_100() {
        let slices = run(Vec::new(), &pods(250, 8080));
        assert_eq!(sizes(&slices), [50, 100, 100]);
        for s in &slices {
            assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
            assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(8080));
        }
    }

    #[test]
    fn a_converged_state_plans_nothing() {
        let all = pods(150, 8080);
        let slices = run(Vec::new(), &all);
        let s = svc();
        let owner = owner_reference(&s).unwrap();
        let again = plan(&s, &owner, slices, slice_groups(&s, &all), 100);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_changed_endpoint_updates_its_slice_in_place() {
        let mut all = pods(3, 8080);
        let slices = run(Vec::new(), &all);
        let mut unready = (*all[1]).clone();
        unready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        all[1] = Arc::new(unready);
        let s = svc();
        let owner = owner_reference(&s).unwrap();
        let p = plan(&s, &owner, slices.clone(), slice_groups(&s, &all), 100);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name, slices[0].metadata.name);
    }

    #[test]
    fn a_port_change_reuses_the_old_slice_instead_of_recreating() {
        let slices = run(Vec::new(), &pods(2, 8080));
        let s = svc();
        let owner = owner_reference(&s).unwrap();
        let p = plan(
            &s,
            &owner,
            slices.clone(),
            slice_groups(&s, &pods(2, 9090)),
            100,
        );
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].ports.as_ref().unwrap()[0].port, Some(9090));
    }

    #[test]
    fn no_endpoints_leave_one_placeholder() {
        let s = svc();
        let owner = owner_reference(&s).unwrap();
        let p = plan(&s, &owner, Vec::new(), BTreeMap::new(), 100);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());

        let slices = run(Vec::new(), &pods(120, 8080));
        let p = plan(&s, &owner, slices.clone(), BTreeMap::new(), 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 1));
        let after = apply(slices, p);
        assert_eq!(sizes(&after), [0]);
        assert!(plan(&s, &owner, after, BTreeMap::new(), 100).is_empty());
    }

    #[test]
    fn slices_of_an_older_service_are_deleted() {
        let mut slices = run(Vec::new(), &pods(1, 8080));
        slices[0].metadata.owner_references.as_mut().unwrap()[0].uid = "old".into();
        let s = svc();
        let owner = owner_reference(&s).unwrap();
        let p = plan(&s, &owner, slices, slice_groups(&s, &pods(1, 8080)), 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 1));
    }
}
