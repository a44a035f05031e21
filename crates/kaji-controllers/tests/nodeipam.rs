//! The node IPAM controller against a real in-process API server.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Event, Node};
use kaji_controllers::nodeipam::{run_with, Config};
use kaji_testenv::{eventually, TestEnv};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::json;

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), kaji_controllers::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn start_controller(client: &Client, config: Config) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(run_with(client.clone(), config)))
}

async fn create_node(client: &Client, name: &str, pod_cidr: Option<&str>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = json!({"metadata": {"name": name}});
    if let Some(cidr) = pod_cidr {
        node["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).unwrap(),
        )
        .await
        .expect("node created");
}

async fn delete_node(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete(name, &DeleteParams::default())
        .await
        .expect("node deleted");
}

/// The node's `(podCIDR, podCIDRs)` once it has a range.
async fn cidr_of(client: &Client, name: &str) -> (String, Vec<String>) {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(&format!("node {name} to get a pod CIDR"), || async {
        let spec = nodes.get(name).await.expect("node read").spec?;
        Some((spec.pod_cidr?, spec.pod_cidrs?))
    })
    .await
}

async fn all_cidrs(client: &Client) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default())
        .await
        .expect("nodes listed")
        .items
        .into_iter()
        .filter_map(|n| n.spec?.pod_cidr)
        .collect()
}

#[tokio::test]
async fn every_node_gets_its_own_slash_24_of_the_default_cluster_cidr() {
    let env = TestEnv::start().await;
    let client = env.client();
    let _ipam = start_controller(&client, Config::default());
    let names: Vec<String> = (0..6).map(|i| format!("node-{i}")).collect();
    for name in &names {
        create_node(&client, name, None).await;
    }
    let mut seen = HashSet::new();
    for name in &names {
        let (cidr, cidrs) = cidr_of(&client, name).await;
        assert_eq!(cidrs, vec![cidr.clone()]);
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with(".0/24"),
            "{cidr}"
        );
        assert!(seen.insert(cidr.clone()), "{cidr} handed out twice");
    }
}

#[tokio::test]
async fn ranges_nodes_already_carry_are_respected_and_never_handed_out_again() {
    let env = TestEnv::start().await;
    let client = env.client();
    // Two of the four ranges are taken before the controller starts; one is
    // outside the cluster CIDR altogether.
    create_node(&client, "old-a", Some("10.9.0.0/24")).await;
    create_node(&client, "old-b", Some("10.9.2.0/24")).await;
    create_node(&client, "foreign", Some("192.168.7.0/24")).await;
    let _ipam = start_controller(&client, Config::new("10.9.0.0/22", 24, 64).unwrap());
    create_node(&client, "new-a", None).await;
    create_node(&client, "new-b", None).await;

    let a = cidr_of(&client, "new-a").await.0;
    let b = cidr_of(&client, "new-b").await.0;
    let mut got = [a, b];
    got.sort();
    assert_eq!(got, ["10.9.1.0/24", "10.9.3.0/24"]);
    assert_eq!(cidr_of(&client, "old-a").await.0, "10.9.0.0/24");
    assert_eq!(cidr_of(&client, "foreign").await.0, "192.168.7.0/24");
}

#[tokio::test]
async fn a_deleted_nodes_range_goes_to_a_node_waiting_for_one() {
    let env = TestEnv::start().await;
    let client = env.client();
    let _ipam = start_controller(&client, Config::new("10.9.0.0/23", 24, 64).unwrap());
    create_node(&client, "a", None).await;
    create_node(&client, "b", None).await;
    let range_a = cidr_of(&client, "a").await.0;
    let range_b = cidr_of(&client, "b").await.0;
    assert_ne!(range_a, range_b);

    // The cluster CIDR is full: the third node waits, and is told why.
    create_node(&client, "c", None).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually("a CIDRNotAvailable event", || async {
        let listed = events
            .list(&ListParams::default().fields("involvedObject.name=c"))
            .await
            .expect("events listed");
        listed.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("CIDRNotAvailable")
                && e.message.as_deref() == Some("Node c status is now: CIDRNotAvailable")
        })
    })
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    let c = nodes.get("c").await.expect("node read");
    assert_eq!(c.spec.and_then(|s| s.pod_cidr), None);

    delete_node(&client, "a").await;
    assert_eq!(cidr_of(&client, "c").await.0, range_a);
    let mut all = all_cidrs(&client).await;
    all.sort();
    let mut expected = vec![range_a, range_b];
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn ranges_freed_while_the_controller_was_away_are_reused() {
    let env = TestEnv::start().await;
    let client = env.client();
    let config = Config::new("10.9.0.0/23", 24, 64).unwrap();
    let ipam = start_controller(&client, config.clone());
    create_node(&client, "a", None).await;
    create_node(&client, "b", None).await;
    let range_a = cidr_of(&client, "a").await.0;
    cidr_of(&client, "b").await;
    drop(ipam);

    delete_node(&client, "a").await;
    create_node(&client, "c", None).await;
    let _ipam = start_controller(&client, config);
    assert_eq!(cidr_of(&client, "c").await.0, range_a);
}

#[tokio::test]
async fn dual_stack_nodes_get_one_range_of_each_family() {
    let env = TestEnv::start().await;
    let client = env.client();
    let _ipam = start_controller(
        &client,
        Config::new("10.9.0.0/16,fd00:10::/56", 24, 64).unwrap(),
    );
    create_node(&client, "dual", None).await;
    let (cidr, cidrs) = cidr_of(&client, "dual").await;
    assert_eq!(cidr, "10.9.0.0/24");
    assert_eq!(cidrs, ["10.9.0.0/24", "fd00:10::/64"]);
}
