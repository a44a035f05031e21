//! The Service fields allocation reads and fills: what each type needs,
//! what a client may leave out on update, what a type change drops, and
//! the type-dependent defaults.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Map, Value};

/// Keeps what an update leaves out but the Service was given, so that
/// resubmitting the manifest that created it (without the allocated values)
/// succeeds, as Kubernetes' `patchAllocatedValues` does.
pub(super) fn patch_allocated_values(new: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let old_spec = spec(old).cloned().unwrap_or_default();
        let spec = spec_mut(new);
        for field in ["clusterIP", "clusterIPs"] {
            let empty = match spec.get(field) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            if let (true, Some(v)) = (empty, old_spec.get(field)) {
                spec.insert(field.into(), v.clone());
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let ports_of = |svc: &Value| -> Vec<Value> {
            spec(svc)
                .and_then(|s| s.get("ports"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let old_ports = ports_of(old);
        let mut new_ports = ports_of(new);
        let in_new: BTreeSet<i64> = new_ports.iter().map(node_port).collect();
        // Old node ports by port name; one the new object already uses elsewhere is not reused.
        let by_name: HashMap<&str, i64> = old_ports
            .iter()
            .map(|p| {
                (
                    p.get("name").and_then(Value::as_str).unwrap_or(""),
                    node_port(p),
                )
            })
            .filter(|(_, np)| *np != 0 && !in_new.contains(np))
            .collect();
        for p in &mut new_ports {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            if let (0, Some(&np)) = (node_port(p), by_name.get(name)) {
                p["nodePort"] = json!(np);
            }
        }
        if !new_ports.is_empty() {
            spec_mut(new).insert("ports".into(), Value::Array(new_ports));
        }
    }
    if needs_health_check(old) && needs_health_check(new) {
        let hc = spec(old)
            .and_then(|s| s.get("healthCheckNodePort"))
            .cloned();
        let spec = spec_mut(new);
        if spec
            .get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
        {
            if let Some(hc) = hc {
                spec.insert("healthCheckNodePort".into(), hc);
            }
        }
    }
}

/// Clears what a type change leaves meaningless, when the client carried it
/// over unchanged from the old object (Kubernetes' `dropTypeDependentFields`).
pub(super) fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let old_spec = spec(old).cloned().unwrap_or_default();
    let lost_cluster_ip = needs_cluster_ip(old) && !needs_cluster_ip(new);
    let lost_node_ports = needs_node_ports(old) && !needs_node_ports(new);
    let lost_health_check = needs_health_check(old) && !needs_health_check(new);
    let lost_etp = needs_node_ports(old) && !needs_node_ports(new);
    let lost_lb = svc_type(old) == "LoadBalancer" && svc_type(new) != "LoadBalancer";
    let old_ports = held_ports(old);
    let spec = spec_mut(new);
    let mut drop_if_same = |field: &str| {
        if spec.get(field).is_some() && spec.get(field) == old_spec.get(field) {
            spec.remove(field);
        }
    };
    if lost_cluster_ip {
        drop_if_same("clusterIP");
        drop_if_same("clusterIPs");
    }
    if lost_health_check {
        drop_if_same("healthCheckNodePort");
    }
    if lost_etp {
        drop_if_same("externalTrafficPolicy");
    }
    if lost_lb {
        drop_if_same("allocateLoadBalancerNodePorts");
    }
    if lost_node_ports {
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
                if np != 0 && old_ports.contains(&np) {
                    p.remove("nodePort");
                }
            }
        }
    }
}

/// Service defaults that depend on the type (and on the range's family).
pub(super) fn fill_defaults(svc: &mut Value, family: &str) {
    let ty = svc_type(svc).to_string();
    let spec = spec_mut(svc);
    let mut default = |k: &str, v: Value| {
        if spec.get(k).is_none_or(Value::is_null) {
            spec.insert(k.into(), v);
        }
    };
    default("sessionAffinity", json!("None"));
    if ty == "ExternalName" {
        // No cluster IP, so no family and no internal traffic to route.
        for k in ["ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"] {
            spec.remove(k);
        }
        return;
    }
    default("ipFamilyPolicy", json!("SingleStack"));
    default("ipFamilies", json!([family]));
    default("internalTrafficPolicy", json!("Cluster"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        default("externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default("allocateLoadBalancerNodePorts", json!(true));
    }
    // The generic defaults assume IPv4; on an IPv6 range that is not a request.
    if family == "IPv6" && spec.get("ipFamilies") == Some(&json!(["IPv4"])) {
        spec.insert("ipFamilies".into(), json!([family]));
    }
}

pub(super) fn spec(svc: &Value) -> Option<&Map<String, Value>> {
    svc.get("spec").and_then(Value::as_object)
}

pub(super) fn spec_mut(svc: &mut Value) -> &mut Map<String, Value> {
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    svc["spec"].as_object_mut().expect("spec is an object")
}

pub(super) fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    spec(svc)
        .and_then(|s| s.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(super) fn svc_type(svc: &Value) -> &str {
    match spec_str(svc, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

pub(super) fn needs_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

pub(super) fn needs_node_ports(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

/// Whether ports without a node port get one (a LoadBalancer may opt out).
pub(super) fn allocates_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => spec(svc)
            .and_then(|s| s.get("allocateLoadBalancerNodePorts"))
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

pub(super) fn needs_health_check(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer" && spec_str(svc, "externalTrafficPolicy") == "Local"
}

pub(super) fn node_port(p: &Value) -> i64 {
    p.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

/// The cluster IP a Service holds, if any.
pub(super) fn held_ip(svc: &Value) -> Option<&str> {
    let ip = spec_str(svc, "clusterIP");
    (needs_cluster_ip(svc) && !ip.is_empty() && ip != "None").then_some(ip)
}

/// The node ports (health check included) a Service holds.
pub(super) fn held_ports(svc: &Value) -> BTreeSet<i64> {
    let mut ports = BTreeSet::new();
    if needs_node_ports(svc) {
        if let Some(list) = spec(svc)
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
        {
            ports.extend(list.iter().map(node_port).filter(|p| *p != 0));
        }
    }
    if needs_health_check(svc) {
        let hc = spec(svc)
            .and_then(|s| s.get("healthCheckNodePort"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if hc != 0 {
            ports.insert(hc);
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_without_allocated_values_gets_them_back_by_port_name() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
            "ports": [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30002}]}});
        let mut new = json!({"spec": {"type": "NodePort",
            "ports": [{"name": "b", "port": 81}, {"name": "c", "port": 82, "nodePort": 30001}]}});
        patch_allocated_values(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.5");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.5"]));
        // b keeps its port; a's port went to c explicitly, so nothing else reuses it.
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30002);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30001);
    }

    #[test]
    fn a_type_change_drops_only_what_the_client_carried_over() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30001}]}});
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&mut new, &old);
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.5");

        let mut ext = old.clone();
        ext["spec"]["type"] = json!("ExternalName");
        ext["spec"]["ports"][0]["nodePort"] = json!(30009);
        drop_type_dependent_fields(&mut ext, &old);
        assert!(ext["spec"].get("clusterIP").is_none());
        assert_eq!(
            ext["spec"]["ports"][0]["nodePort"], 30009,
            "a new value is the client's"
        );
    }

    #[test]
    fn defaults_follow_the_type() {
        let mut lb = json!({"spec": {"type": "LoadBalancer"}});
        fill_defaults(&mut lb, "IPv4");
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(lb["spec"]["ipFamilies"], json!(["IPv4"]));
        let mut ext = json!({"spec": {"type": "ExternalName", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}});
        fill_defaults(&mut ext, "IPv4");
        assert_eq!(
            ext["spec"],
            json!({"type": "ExternalName", "sessionAffinity": "None"})
        );
    }
}
