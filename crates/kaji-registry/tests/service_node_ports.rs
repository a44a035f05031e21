//! Service node port allocation through the generic registry.

mod common;

use std::collections::HashSet;

use common::{node_ports, server, service};
use serde_json::json;

fn in_range(port: i64) -> bool {
    (30000..=32767).contains(&port)
}

#[tokio::test]
async fn a_node_port_service_gets_a_port_in_range_for_every_port() {
    let s = server().await;
    let svc = s
        .create(service(
            "np",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
        ))
        .await
        .unwrap();
    let ports = node_ports(&svc);
    assert!(ports.iter().all(|p| in_range(*p)), "{ports:?}");
    assert_ne!(ports[0], ports[1]);
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    let mut reserved = s.reserved_ports().await;
    reserved.sort();
    let mut expected: Vec<String> = ports.iter().map(i64::to_string).collect();
    expected.sort();
    assert_eq!(reserved, expected);
    assert_eq!(s.reserved_ips().await.len(), 1);
}

#[tokio::test]
async fn ports_of_one_number_share_a_node_port() {
    let s = server().await;
    let svc = s
        .create(service(
            "dns",
            json!({"type": "NodePort", "ports": [
                {"name": "udp", "port": 53, "protocol": "UDP"},
                {"name": "tcp", "port": 53, "protocol": "TCP"}
            ]}),
        ))
        .await
        .unwrap();
    let ports = node_ports(&svc);
    assert_eq!(ports[0], ports[1]);
    assert_eq!(s.reserved_ports().await.len(), 1);
}

#[tokio::test]
async fn a_requested_port_is_honoured_and_a_taken_or_far_one_is_refused() {
    let s = server().await;
    let svc = s
        .create(service(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        ))
        .await
        .unwrap();
    assert_eq!(node_ports(&svc), [30080]);

    let err = s
        .create(service(
            "b",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );

    let err = s
        .create(service(
            "c",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "Service \"c\" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // Neither failure kept its cluster IP or any port.
    assert_eq!(s.reserved_ports().await, ["30080"]);
    assert_eq!(s.reserved_ips().await.len(), 1);
}

#[tokio::test]
async fn switching_to_cluster_ip_clears_and_frees_the_node_ports() {
    let s = server().await;
    s.create(service("np", json!({"type": "NodePort"})))
        .await
        .unwrap();
    assert_eq!(s.reserved_ports().await.len(), 1);
    let svc = s
        .merge("np", json!({"spec": {"type": "ClusterIP"}}))
        .await
        .unwrap();
    assert_eq!(node_ports(&svc), [0], "{svc}");
    assert!(svc["spec"].get("externalTrafficPolicy").is_none());
    assert!(s.reserved_ports().await.is_empty());

    let svc = s
        .merge("np", json!({"spec": {"type": "NodePort"}}))
        .await
        .unwrap();
    assert!(in_range(node_ports(&svc)[0]));
    assert_eq!(s.reserved_ports().await.len(), 1);
}

#[tokio::test]
async fn a_node_port_on_a_cluster_ip_service_is_forbidden() {
    let s = server().await;
    let err = s
        .create(service(
            "c",
            json!({"ports": [{"port": 80, "nodePort": 30080}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "Service \"c\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    );
    assert!(s.reserved_ports().await.is_empty());
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn updates_keep_node_ports_the_client_left_out_and_free_dropped_ones() {
    let s = server().await;
    let svc = s
        .create(service(
            "np",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
        ))
        .await
        .unwrap();
    let before = node_ports(&svc);
    // The original manifest again: no node ports in it.
    let svc = s
        .replace(
            "np",
            service(
                "np",
                json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&svc), before);
    // Dropping port b frees its node port.
    let svc = s
        .replace(
            "np",
            service(
                "np",
                json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&svc), [before[0]]);
    assert_eq!(s.reserved_ports().await, [before[0].to_string()]);
}

#[tokio::test]
async fn a_local_load_balancer_also_gets_a_health_check_node_port() {
    let s = server().await;
    let svc = s
        .create(service(
            "lb",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}),
        ))
        .await
        .unwrap();
    let hc = svc["spec"]["healthCheckNodePort"].as_i64().unwrap();
    assert!(in_range(hc));
    assert_eq!(svc["spec"]["allocateLoadBalancerNodePorts"], true);
    let reserved: HashSet<String> = s.reserved_ports().await.into_iter().collect();
    assert!(reserved.contains(&hc.to_string()));
    assert_eq!(reserved.len(), 2);
    s.delete("lb").await;
    assert!(s.reserved_ports().await.is_empty());
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn a_load_balancer_may_opt_out_of_node_ports() {
    let s = server().await;
    let svc = s
        .create(service(
            "lb",
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false}),
        ))
        .await
        .unwrap();
    assert_eq!(node_ports(&svc), [0]);
    assert!(s.reserved_ports().await.is_empty());
}
