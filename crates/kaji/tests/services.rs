//! End-to-end: Service cluster IPs and node ports, with the real kubectl
//! against a real `kaji up`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::Cluster;

fn cluster_ip(c: &Cluster, name: &str) -> String {
    c.kubectl(&["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"])
        .success()
        .to_string()
}

fn in_default_range(ip: &str) -> bool {
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let (n, base) = (
        u32::from(ip),
        u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)),
    );
    n > base && n < base + (1 << 20) - 1
}

#[test]
fn the_kubernetes_service_has_the_first_ip_of_the_range() {
    let c = Cluster::start();
    let svc = c.kubectl(&["get", "svc", "kubernetes", "-o", "json"]);
    let svc: serde_json::Value = serde_json::from_str(svc.success()).unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(svc["spec"]["clusterIPs"], serde_json::json!(["10.96.0.1"]));
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["name"], "https");
    assert_eq!(port["port"], 443);
    assert_eq!(port["protocol"], "TCP");
    assert_eq!(port["targetPort"], c.port());
    assert_eq!(svc["metadata"]["labels"]["component"], "apiserver");
    assert_eq!(svc["metadata"]["labels"]["provider"], "kubernetes");
    let table = c.kubectl(&["get", "svc", "kubernetes", "--no-headers"]);
    let cols: Vec<&str> = table.success().split_whitespace().collect();
    assert_eq!(
        cols[..5],
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
}

#[test]
fn services_created_concurrently_get_distinct_ips_in_range() {
    let c = Arc::new(Cluster::start());
    // Four kubectl processes creating 50 Services each, at once.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || {
                let manifests: Vec<String> = (0..50)
                    .map(|i| {
                        format!(
                            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s-{w}-{i}\nspec:\n  selector: {{app: s}}\n  ports:\n  - port: 80\n"
                        )
                    })
                    .collect();
                c.kubectl_stdin(&["create", "-f", "-"], Some(&manifests.join("---\n")))
                    .success()
                    .to_string();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let out = c.kubectl(&[
        "get",
        "svc",
        "-o",
        "jsonpath={range .items[*]}{.spec.clusterIP}{\"\\n\"}{end}",
    ]);
    let ips: Vec<&str> = out.success().lines().collect();
    assert_eq!(ips.len(), 201, "200 and the kubernetes service");
    let unique: HashSet<&str> = ips.iter().copied().collect();
    assert_eq!(unique.len(), 201, "an IP was handed out twice");
    assert!(ips.iter().all(|ip| in_default_range(ip)), "{ips:?}");
}

#[test]
fn a_requested_ip_is_honoured_until_deleted_and_bad_ones_are_refused() {
    let c = Cluster::start();
    c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "dns",
        "--clusterip=10.96.0.10",
        "--tcp=53:53",
    ])
    .success();
    assert_eq!(cluster_ip(&c, "dns"), "10.96.0.10");

    let taken = c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "dns2",
        "--clusterip=10.96.0.10",
        "--tcp=53:53",
    ]);
    let err = taken.failure();
    assert!(err.contains("spec.clusterIPs"), "{err}");
    assert!(err.contains("provided IP is already allocated"), "{err}");

    let far = c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "far",
        "--clusterip=10.0.0.1",
        "--tcp=80:80",
    ]);
    let err = far.failure();
    assert!(
        err.contains(
            "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        ),
        "{err}"
    );

    c.kubectl(&["delete", "svc", "dns"]).success();
    c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "dns2",
        "--clusterip=10.96.0.10",
        "--tcp=53:53",
    ])
    .success();
    assert_eq!(cluster_ip(&c, "dns2"), "10.96.0.10");
}

#[test]
fn headless_and_external_name_services_get_no_ip() {
    let c = Cluster::start();
    c.kubectl(&["create", "service", "clusterip", "db", "--clusterip=None"])
        .success();
    assert_eq!(cluster_ip(&c, "db"), "None");
    c.kubectl(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=example.com",
    ])
    .success();
    assert_eq!(cluster_ip(&c, "ext"), "");
    let row = c.kubectl(&["get", "svc", "ext", "--no-headers"]);
    let cols: Vec<&str> = row.success().split_whitespace().collect();
    assert_eq!(cols[..4], ["ext", "ExternalName", "<none>", "example.com"]);
}

#[test]
fn a_node_port_service_shows_its_allocated_port() {
    let c = Cluster::start();
    c.kubectl(&["create", "service", "nodeport", "web", "--tcp=80:8080"])
        .success();
    let row = c.kubectl(&["get", "svc", "web", "--no-headers"]);
    let cols: Vec<&str> = row.success().split_whitespace().collect();
    assert_eq!(cols[1], "NodePort");
    assert!(in_default_range(cols[2]), "{cols:?}");
    let port: u16 = cols[4]
        .strip_prefix("80:")
        .and_then(|p| p.strip_suffix("/TCP"))
        .unwrap_or_else(|| panic!("PORT(S) is {}", cols[4]))
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&port), "{port}");

    let taken = c.kubectl(&[
        "create",
        "service",
        "nodeport",
        "web2",
        "--tcp=80:8080",
        &format!("--node-port={port}"),
    ]);
    assert!(taken
        .failure()
        .contains("provided port is already allocated"));
    let far = c.kubectl(&[
        "create",
        "service",
        "nodeport",
        "web3",
        "--tcp=80:8080",
        "--node-port=8080",
    ]);
    assert!(far.failure().contains(
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    ));

    // Back to ClusterIP: the port is cleared and free for another service.
    c.kubectl(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ])
    .success();
    let ports = c.kubectl(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    assert_eq!(ports.success(), "");
    c.kubectl(&[
        "create",
        "service",
        "nodeport",
        "web2",
        "--tcp=80:8080",
        &format!("--node-port={port}"),
    ])
    .success();
}
