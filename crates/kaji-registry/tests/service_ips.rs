//! Service cluster IP allocation through the generic registry.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{cluster_ip, in_default_range, server, server_on, service};
use kaji_registry::ServiceRanges;
use kaji_store::{MemoryStore, Store};
use serde_json::json;

#[tokio::test]
async fn a_created_service_gets_a_cluster_ip_in_range_and_single_stack_defaults() {
    let s = server().await;
    let svc = s.create(service("web", json!({}))).await.unwrap();
    let ip = cluster_ip(&svc);
    assert!(in_default_range(ip), "{ip}");
    let spec = &svc["spec"];
    assert_eq!(spec["clusterIPs"], json!([ip]));
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(s.reserved_ips().await, [ip]);
    // What was stored is what was answered.
    let stored = s.services.get(Some("default"), "web").await.unwrap();
    assert_eq!(cluster_ip(&stored), ip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_on_two_api_servers_never_share_an_ip() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // A small range makes collisions between random picks likely.
    let ranges = ServiceRanges {
        cluster_ips: "10.0.0.0/24".parse().unwrap(),
        ..ServiceRanges::default()
    };
    let a = Arc::new(server_on(store.clone(), ranges).await);
    let b = Arc::new(server_on(store.clone(), ranges).await);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.create(service(&format!("svc-{i}"), json!({})))
                .await
                .map(|svc| cluster_ip(&svc).to_string())
        }));
    }
    let mut ips = HashSet::new();
    for t in tasks {
        let ip = t.await.unwrap().unwrap();
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
    }
    assert_eq!(ips.len(), 200);
    let reserved: HashSet<String> = a.reserved_ips().await.into_iter().collect();
    assert_eq!(reserved, ips);
}

#[tokio::test]
async fn a_requested_ip_is_honoured_and_a_taken_one_is_refused() {
    let s = server().await;
    let dns = s
        .create(service("dns", json!({"clusterIP": "10.96.0.10"})))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&dns), "10.96.0.10");
    assert_eq!(dns["spec"]["clusterIPs"], json!(["10.96.0.10"]));
    let err = s
        .create(service("dns2", json!({"clusterIPs": ["10.96.0.10"]})))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert_eq!(err.causes[0].field, "spec.clusterIPs");
    assert_eq!(
        err.message,
        "Service \"dns2\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"
    );
    assert_eq!(s.reserved_ips().await, ["10.96.0.10"]);
}

#[tokio::test]
async fn an_ip_outside_the_range_is_refused_with_the_range_in_the_message() {
    let s = server().await;
    let err = s
        .create(service("far", json!({"clusterIP": "10.0.0.1"})))
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message.ends_with(
            "failed to allocate IP 10.0.0.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        ),
        "{}",
        err.message
    );
    let err = s
        .create(service("bad", json!({"clusterIP": "ten"})))
        .await
        .unwrap_err();
    assert_eq!(err.causes[0].field, "spec.clusterIPs[0]");
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn a_headless_service_stays_headless_and_reserves_nothing() {
    let s = server().await;
    let svc = s
        .create(service("db", json!({"clusterIP": "None"})))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&svc), "None");
    assert_eq!(svc["spec"]["clusterIPs"], json!(["None"]));
    assert!(s.reserved_ips().await.is_empty());
    s.delete("db").await;
}

#[tokio::test]
async fn deleting_a_service_frees_its_ip_for_a_new_request() {
    let s = server().await;
    let ip = cluster_ip(&s.create(service("old", json!({}))).await.unwrap()).to_string();
    assert!(s
        .create(service("new", json!({"clusterIP": ip})))
        .await
        .is_err());
    let (_, gone) = s.delete("old").await;
    assert!(gone);
    assert!(s.reserved_ips().await.is_empty());
    let new = s
        .create(service("new", json!({"clusterIP": ip})))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&new), ip);
}

#[tokio::test]
async fn removing_the_last_finalizer_frees_the_ip() {
    let s = server().await;
    let mut manifest = service("held", json!({"clusterIP": "10.96.0.20"}));
    manifest["metadata"]["finalizers"] = json!(["example.com/hold"]);
    s.create(manifest).await.unwrap();
    let (_, gone) = s.delete("held").await;
    assert!(!gone);
    assert_eq!(
        s.reserved_ips().await,
        ["10.96.0.20"],
        "kept while finalizing"
    );
    s.merge("held", json!({"metadata": {"finalizers": null}}))
        .await
        .unwrap();
    assert!(s.services.get(Some("default"), "held").await.is_err());
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn an_external_name_service_gets_no_ip_until_its_type_changes() {
    let s = server().await;
    let ext = json!({"type": "ExternalName", "externalName": "example.com"});
    let svc = s.create(service("ext", ext)).await.unwrap();
    assert!(svc["spec"].get("clusterIP").is_none());
    assert!(svc["spec"].get("ipFamilies").is_none());
    assert!(s.reserved_ips().await.is_empty());

    let svc = s
        .merge(
            "ext",
            json!({"spec": {"type": "ClusterIP", "externalName": null, "ports": [{"port": 80}]}}),
        )
        .await
        .unwrap();
    let ip = cluster_ip(&svc).to_string();
    assert!(in_default_range(&ip));
    assert_eq!(s.reserved_ips().await, [ip.as_str()]);

    let svc = s
        .merge(
            "ext",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        )
        .await
        .unwrap();
    assert!(svc["spec"].get("clusterIP").is_none(), "{svc}");
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn a_failed_write_frees_what_it_reserved() {
    let s = server().await;
    // Invalid: two unnamed ports.
    let err = s
        .create(service(
            "bad",
            json!({"clusterIP": "10.96.0.30", "ports": [{"port": 80}, {"port": 81}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert!(s.reserved_ips().await.is_empty());

    // AlreadyExists: the second create's own IP goes back.
    s.create(service("dup", json!({}))).await.unwrap();
    let err = s
        .create(service("dup", json!({"clusterIP": "10.96.0.31"})))
        .await
        .unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(s.reserved_ips().await.len(), 1);
    assert!(!s.reserved_ips().await.contains(&"10.96.0.31".to_string()));
}

#[tokio::test]
async fn a_dry_run_shows_an_ip_but_reserves_nothing() {
    let s = server().await;
    let svc = s.create_dry(service("dry", json!({}))).await.unwrap();
    assert!(in_default_range(cluster_ip(&svc)));
    let svc = s
        .create_dry(service("dry", json!({"clusterIP": "10.96.0.40"})))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&svc), "10.96.0.40");
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn resubmitting_the_manifest_keeps_the_allocated_ip() {
    let s = server().await;
    let ip = cluster_ip(&s.create(service("web", json!({}))).await.unwrap()).to_string();
    let svc = s
        .replace("web", service("web", json!({"ports": [{"port": 8080}]})))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&svc), ip);
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(s.reserved_ips().await, [ip.as_str()]);

    // Changing it is still refused, and reserves nothing.
    let err = s
        .merge(
            "web",
            json!({"spec": {"clusterIP": "10.96.0.50", "clusterIPs": ["10.96.0.50"]}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, 422, "{err}");
    assert_eq!(s.reserved_ips().await, [ip]);
}

#[tokio::test]
async fn dual_stack_requests_are_refused_on_a_single_stack_cluster() {
    let s = server().await;
    let err = s
        .create(service(
            "dual",
            json!({"ipFamilyPolicy": "RequireDualStack"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.causes[0].field, "spec.ipFamilyPolicy");
    let err = s
        .create(service("v6", json!({"ipFamilies": ["IPv6"]})))
        .await
        .unwrap_err();
    assert_eq!(err.causes[0].field, "spec.ipFamilies[0]");
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn an_ipv6_range_hands_out_ipv6_addresses() {
    let ranges = ServiceRanges {
        cluster_ips: "fd00:10:96::/112".parse().unwrap(),
        ..ServiceRanges::default()
    };
    let s = server_on(Arc::new(MemoryStore::new()), ranges).await;
    let svc = s.create(service("web", json!({}))).await.unwrap();
    assert!(cluster_ip(&svc).starts_with("fd00:10:96::"), "{svc}");
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv6"]));
}
