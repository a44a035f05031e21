//! Printers for core/v1 kinds other than Pod: Namespace, Service, Endpoints,
//! ConfigMap, Secret, ServiceAccount, Node and Event (core/v1 and
//! events.k8s.io).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::duration::{age, since, timestamp};
use crate::fields::{
    arr_at, format_labels, i64_at, join_host_port, map_len, name, opt_i64_at, or, str_at,
};
use crate::{col, wide, Column, Printer, AGE, NAME};

pub(crate) const NAMESPACE: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", "The status of the namespace"),
        AGE,
    ],
    namespace_cells,
);

fn namespace_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/status/phase")),
        age(obj, now),
    ]
}

pub(crate) const SERVICE: Printer = Printer::new(
    &[
        NAME,
        col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
        col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
        col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
        col("Port(s)", "string", "The list of ports that are exposed by this service."),
        AGE,
        wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
    ],
    service_cells,
);

fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // The apiserver defaults type to ClusterIP; tolerate objects stored without it.
    let svc_type = or(str_at(obj, "/spec/type"), "ClusterIP");
    // clusterIPs[0] is what Kubernetes prints; fall back to the singular field
    // for objects stored before clusterIPs was filled in.
    let cluster_ip = arr_at(obj, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(obj, "/spec/clusterIP"));
    let ports: Vec<String> = arr_at(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i64_at(p, "/port");
            let protocol = or(str_at(p, "/protocol"), "TCP");
            match i64_at(p, "/nodePort") {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(obj),
        Value::from(svc_type),
        Value::from(or(cluster_ip, "<none>")),
        Value::from(service_external_ip(obj, svc_type)),
        Value::from(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        age(obj, now),
        Value::from(format_labels(obj.pointer("/spec/selector"))),
    ]
}

/// `getServiceExternalIP` with `wide` set, as the server-side printer calls it.
fn service_external_ip(obj: &Value, svc_type: &str) -> String {
    let external_ips: Vec<&str> = arr_at(obj, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match svc_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = Vec::new();
            for ingress in arr_at(obj, "/status/loadBalancer/ingress") {
                let ip = or(str_at(ingress, "/ip"), str_at(ingress, "/hostname"));
                if !ip.is_empty() && !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            ips.extend(external_ips);
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => str_at(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(crate) const ENDPOINTS: Printer = Printer::new(
    &[
        NAME,
        col(
            "Endpoints",
            "string",
            "The set of all endpoints is the union of all subsets.",
        ),
        AGE,
    ],
    endpoints_cells,
);

fn endpoints_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), Value::from(format_endpoints(obj)), age(obj, now)]
}

/// `formatEndpoints` for all ports: at most three `ip:port`, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    const MAXIMUM: usize = 3;
    let subsets = arr_at(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = arr_at(subset, "/addresses");
        let ports = arr_at(subset, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for address in addresses {
                if list.len() == MAXIMUM {
                    break;
                }
                list.push(str_at(address, "/ip").to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAXIMUM {
                    break;
                }
                list.push(join_host_port(
                    str_at(address, "/ip"),
                    i64_at(port, "/port"),
                ));
            }
        }
    }
    let joined = list.join(",");
    if count > MAXIMUM {
        format!("{joined} + {} more...", count - MAXIMUM)
    } else {
        joined
    }
}

pub(crate) const CONFIG_MAP: Printer = Printer::new(
    &[
        NAME,
        col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."),
        AGE,
    ],
    config_map_cells,
);

fn config_map_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let data = map_len(obj, "/data") + map_len(obj, "/binaryData");
    vec![name(obj), Value::from(data), age(obj, now)]
}

pub(crate) const SECRET: Printer = Printer::new(
    &[
        NAME,
        col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
        col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
        AGE,
    ],
    secret_cells,
);

fn secret_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        // The apiserver defaults type to Opaque.
        Value::from(or(str_at(obj, "/type"), "Opaque")),
        Value::from(map_len(obj, "/data")),
        age(obj, now),
    ]
}

pub(crate) const SERVICE_ACCOUNT: Printer = Printer::new(
    &[
        NAME,
        col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
        AGE,
    ],
    service_account_cells,
);

fn service_account_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let secrets = i64::try_from(arr_at(obj, "/secrets").len()).unwrap_or(i64::MAX);
    vec![name(obj), Value::from(secrets), age(obj, now)]
}

pub(crate) const NODE: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", "Kubelet Version reported by the node."),
        wide("Internal-IP", "string", "List of addresses reachable to the node."),
        wide("External-IP", "string", "List of addresses reachable to the node."),
        wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
        wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
        wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
    ],
    node_cells,
);

const LABEL_NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_LABEL_ROLE: &str = "kubernetes.io/role";

fn node_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Only the Ready condition counts; the last one of that type wins.
    let ready = arr_at(obj, "/status/conditions")
        .iter()
        .rfind(|c| str_at(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let role = match k.strip_prefix(LABEL_NODE_ROLE_PREFIX) {
                Some(role) => role,
                None if k == NODE_LABEL_ROLE => v.as_str().unwrap_or_default(),
                None => "",
            };
            if !role.is_empty() {
                roles.push(role);
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let address = |kind: &str| -> String {
        arr_at(obj, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == kind)
            .map_or("<none>", |a| str_at(a, "/address"))
            .to_string()
    };
    let info = |field: &str| -> Value {
        Value::from(or(
            str_at(obj, &format!("/status/nodeInfo/{field}")),
            "<unknown>",
        ))
    };
    vec![
        name(obj),
        Value::from(status.join(",")),
        Value::from(roles),
        age(obj, now),
        Value::from(str_at(obj, "/status/nodeInfo/kubeletVersion")),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: crate::NAME_DOC,
        priority: 1,
    },
];

pub(crate) const EVENT: Printer = Printer::new(EVENT_COLUMNS, core_event_cells);

/// events.k8s.io Events are printed by converting them to core/v1 Events.
pub(crate) const EVENTS_K8S_IO_EVENT: Printer =
    Printer::new(EVENT_COLUMNS, events_k8s_io_event_cells);

/// The fields of an Event the printer reads, whichever API it came from.
struct EventView<'a> {
    first_timestamp: Option<&'a Value>,
    last_timestamp: Option<&'a Value>,
    count: Option<i64>,
    regarding: Option<&'a Value>,
    message: &'a str,
    source_component: &'a str,
    source_host: &'a str,
    reporting_controller: &'a str,
}

fn core_event_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let view = EventView {
        first_timestamp: obj.pointer("/firstTimestamp"),
        last_timestamp: obj.pointer("/lastTimestamp"),
        count: opt_i64_at(obj, "/count"),
        regarding: obj.pointer("/involvedObject"),
        message: str_at(obj, "/message"),
        source_component: str_at(obj, "/source/component"),
        source_host: str_at(obj, "/source/host"),
        reporting_controller: str_at(obj, "/reportingComponent"),
    };
    event_cells(obj, &view, now)
}

fn events_k8s_io_event_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let view = EventView {
        first_timestamp: obj.pointer("/deprecatedFirstTimestamp"),
        last_timestamp: obj.pointer("/deprecatedLastTimestamp"),
        count: opt_i64_at(obj, "/deprecatedCount"),
        regarding: obj.pointer("/regarding"),
        message: str_at(obj, "/note"),
        source_component: str_at(obj, "/deprecatedSource/component"),
        source_host: str_at(obj, "/deprecatedSource/host"),
        reporting_controller: str_at(obj, "/reportingController"),
    };
    event_cells(obj, &view, now)
}

fn event_cells(obj: &Value, view: &EventView<'_>, now: DateTime<Utc>) -> Vec<Value> {
    let first = match timestamp(view.first_timestamp) {
        Some(t) => since(Some(t), now),
        None => since(timestamp(obj.pointer("/eventTime")), now),
    };
    let mut last = match timestamp(view.last_timestamp) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = view.count.unwrap_or(0);
    if obj.pointer("/series").is_some_and(Value::is_object) {
        last = since(timestamp(obj.pointer("/series/lastObservedTime")), now);
        count = i64_at(obj, "/series/count");
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }

    let regarding = view.regarding.unwrap_or(&Value::Null);
    let kind = str_at(regarding, "/kind").to_lowercase();
    let target = match str_at(regarding, "/name") {
        "" => kind,
        object_name => format!("{kind}/{object_name}"),
    };
    let component = or(view.source_component, view.reporting_controller);
    let host = or(view.source_host, str_at(obj, "/reportingInstance"));
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        Value::from(last),
        Value::from(str_at(obj, "/type")),
        Value::from(str_at(obj, "/reason")),
        Value::from(target),
        Value::from(str_at(regarding, "/fieldPath")),
        Value::from(source),
        Value::from(view.message.trim()),
        Value::from(first),
        Value::from(count),
        name(obj),
    ]
}

#[cfg(test)]
mod tests {
    use crate::{cells, columns};
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn header(api_version: &str, kind: &str) -> Vec<(&'static str, i32)> {
        columns(api_version, kind)
            .iter()
            .map(|c| (c.name, c.priority))
            .collect()
    }

    #[test]
    fn namespace_should_print_its_phase_and_age() {
        assert_eq!(
            header("v1", "Namespace"),
            [("Name", 0), ("Status", 0), ("Age", 0)]
        );
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": "2024-04-30T12:00:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            cells("v1", "Namespace", &ns, now()),
            [json!("default"), json!("Active"), json!("24h")]
        );
    }

    #[test]
    fn service_columns_should_match_kubernetes() {
        assert_eq!(
            header("v1", "Service"),
            [
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1)
            ]
        );
    }

    #[test]
    fn node_port_service_should_print_node_ports_and_selector() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:30Z"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "ports": [
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "protocol": "UDP"}
                ],
                "selector": {"tier": "front", "app": "web"}
            }
        });
        assert_eq!(
            cells("v1", "Service", &svc, now()),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("2m30s"),
                json!("app=web,tier=front")
            ]
        );
    }

    #[test]
    fn load_balancer_service_should_print_pending_until_it_has_an_ingress() {
        let mut svc = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 443}]}});
        let row = cells("v1", "Service", &svc, now());
        assert_eq!(row[3], json!("<pending>"));
        assert_eq!(row[4], json!("443/TCP"));
        svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}, {"ip": "1.2.3.4"}]}});
        svc["spec"]["externalIPs"] = json!(["5.6.7.8"]);
        assert_eq!(
            cells("v1", "Service", &svc, now())[3],
            json!("1.2.3.4,lb.example.com,5.6.7.8")
        );
    }

    #[test]
    fn headless_and_external_name_services_should_print_like_kubernetes() {
        let headless = json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        let row = cells("v1", "Service", &headless, now());
        assert_eq!(
            row[1..5],
            [
                json!("ClusterIP"),
                json!("None"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        assert_eq!(row[6], json!("<none>"));
        let ext = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        let row = cells("v1", "Service", &ext, now());
        assert_eq!(row[2..4], [json!("<none>"), json!("example.com")]);
    }

    #[test]
    fn endpoints_should_print_at_most_three_addresses_then_a_count() {
        assert_eq!(
            header("v1", "Endpoints"),
            [("Name", 0), ("Endpoints", 0), ("Age", 0)]
        );
        let ep = json!({
            "metadata": {"name": "web"},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                "ports": [{"port": 80}, {"port": 443}]
            }]
        });
        assert_eq!(
            cells("v1", "Endpoints", &ep, now())[1],
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...")
        );
        let headless = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}]}]});
        assert_eq!(
            cells("v1", "Endpoints", &headless, now())[1],
            json!("fd00::1")
        );
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            cells("v1", "Endpoints", &v6, now())[1],
            json!("[fd00::1]:80")
        );
        assert_eq!(
            cells(
                "v1",
                "Endpoints",
                &json!({"metadata": {"name": "x"}}),
                now()
            )[1],
            json!("<none>")
        );
    }

    #[test]
    fn config_map_should_count_data_and_binary_data() {
        assert_eq!(
            header("v1", "ConfigMap"),
            [("Name", 0), ("Data", 0), ("Age", 0)]
        );
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("v1", "ConfigMap", &cm, now())[1], json!(3));
    }

    #[test]
    fn secret_should_print_type_and_data_count() {
        assert_eq!(
            header("v1", "Secret"),
            [("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)]
        );
        let s = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells("v1", "Secret", &s, now())[..3],
            [json!("tls"), json!("kubernetes.io/tls"), json!(2)]
        );
        let bare = json!({"metadata": {"name": "x"}});
        assert_eq!(
            cells("v1", "Secret", &bare, now())[1..3],
            [json!("Opaque"), json!(0)]
        );
    }

    #[test]
    fn service_account_should_count_its_secrets() {
        assert_eq!(
            header("v1", "ServiceAccount"),
            [("Name", 0), ("Secrets", 0), ("Age", 0)]
        );
        let sa = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
        assert_eq!(cells("v1", "ServiceAccount", &sa, now())[1], json!(1));
        assert_eq!(
            cells("v1", "ServiceAccount", &json!({}), now())[1],
            json!(0)
        );
    }

    #[test]
    fn node_columns_should_match_kubernetes() {
        assert_eq!(
            header("v1", "Node"),
            [
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1)
            ]
        );
    }

    #[test]
    fn cordoned_ready_node_should_print_scheduling_disabled_and_sorted_roles() {
        let node = json!({
            "metadata": {
                "name": "n1",
                "creationTimestamp": "2024-04-21T12:00:00Z",
                "labels": {
                    "node-role.kubernetes.io/worker": "",
                    "node-role.kubernetes.io/control-plane": "",
                    "kubernetes.io/role": "worker",
                    "kubernetes.io/hostname": "n1"
                }
            },
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"}
                ],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.33.0",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-18-amd64",
                    "containerRuntimeVersion": "containerd://1.7.13"
                }
            }
        });
        assert_eq!(
            cells("v1", "Node", &node, now()),
            [
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,worker"),
                json!("10d"),
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("containerd://1.7.13")
            ]
        );
    }

    #[test]
    fn node_without_status_should_print_unknown() {
        let node = json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let row = cells("v1", "Node", &node, now());
        assert_eq!(row[1..3], [json!("NotReady"), json!("<none>")]);
        let row = cells("v1", "Node", &json!({"metadata": {"name": "n3"}}), now());
        assert_eq!(row[1], json!("Unknown"));
        assert_eq!(
            row[4..],
            [
                json!(""),
                json!("<none>"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
    }

    #[test]
    fn event_columns_should_match_kubernetes() {
        let expected = [
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1),
        ];
        assert_eq!(header("v1", "Event"), expected);
        assert_eq!(header("events.k8s.io/v1", "Event"), expected);
    }

    #[test]
    fn core_event_should_print_object_source_and_counts() {
        let ev = json!({
            "metadata": {"name": "web-1.17c"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-05-01T11:00:00Z",
            "lastTimestamp": "2024-05-01T11:59:30Z",
            "count": 12,
            "type": "Warning"
        });
        assert_eq!(
            cells("v1", "Event", &ev, now()),
            [
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{web}"),
                json!("kubelet, n1"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(12),
                json!("web-1.17c")
            ]
        );
    }

    #[test]
    fn event_with_only_event_time_should_count_once_and_use_reporting_fields() {
        let ev = json!({
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Node"},
            "eventTime": "2024-05-01T11:59:00.000000Z",
            "reportingComponent": "kaji-scheduler",
            "reportingInstance": "kaji-scheduler-0"
        });
        let row = cells("v1", "Event", &ev, now());
        assert_eq!(row[0], json!("60s"));
        assert_eq!(row[3], json!("node"));
        assert_eq!(row[5], json!("kaji-scheduler, kaji-scheduler-0"));
        assert_eq!(row[7], json!("60s"));
        assert_eq!(row[8], json!(1));
        let row = cells("v1", "Event", &json!({}), now());
        assert_eq!(row[0], json!("<unknown>"));
        assert_eq!(row[3], json!(""));
    }

    #[test]
    fn events_k8s_io_event_should_print_regarding_note_and_series() {
        let ev = json!({
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "note": "Scaled up replica set web-5d4 to 3",
            "reason": "ScalingReplicaSet",
            "type": "Normal",
            "eventTime": "2024-05-01T11:00:00.000000Z",
            "reportingController": "deployment-controller",
            "series": {"count": 4, "lastObservedTime": "2024-05-01T11:58:00.000000Z"}
        });
        assert_eq!(
            cells("events.k8s.io/v1", "Event", &ev, now()),
            [
                json!("2m"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/web"),
                json!(""),
                json!("deployment-controller"),
                json!("Scaled up replica set web-5d4 to 3"),
                json!("60m"),
                json!(4),
                json!("e2")
            ]
        );
    }
}
