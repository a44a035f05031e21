//! Custom resources with kube-rs: CRDs created through the typed API,
//! custom objects through discovery and `DynamicObject`, watched with the
//! runtime's watcher, as an operator would.

mod common;

use std::time::Duration;

use common::Cluster;
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::{self, Discovery};
use kube::runtime::{conditions, wait::await_condition, watcher, WatchStreamExt};

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.rs.example.com"},
  "spec": {
    "group": "rs.example.com",
    "scope": "Cluster",
    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
    "versions": [{
      "name": "v1", "served": true, "storage": true,
      "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
          "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
          "size": {"type": "integer", "default": 3}}},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}
    }]
  }
}"#;

#[tokio::test]
async fn kube_rs_discovers_and_drives_a_cluster_scoped_custom_resource() {
    let c = Cluster::start();
    let client = c.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_str(CRD).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds.clone(),
            "widgets.rs.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the CRD is established in time")
    .unwrap();

    let discovery = Discovery::new(client.clone())
        .filter(&["rs.example.com"])
        .run()
        .await
        .unwrap();
    let (resource, caps) = discovery
        .resolve_gvk(&kube::core::GroupVersionKind::gvk(
            "rs.example.com",
            "v1",
            "Widget",
        ))
        .expect("discovery lists the Widget");
    assert_eq!(caps.scope, discovery::Scope::Cluster);
    assert!(
        !caps.subresources.is_empty(),
        "the status subresource is discovered"
    );

    let widgets: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let mut events = watcher(widgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "rs.example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"tags": ["a"]},
    }))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 3);
    let seen = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("the watcher sees the Widget")
        .unwrap()
        .unwrap();
    assert_eq!(seen.metadata.name.as_deref(), Some("w"));

    // Server-side apply from two managers merges the set.
    let pp = |m: &str| PatchParams::apply(m).force();
    widgets
        .patch("w", &pp("one"), &Patch::Apply(serde_json::json!({
            "apiVersion": "rs.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"tags": ["b"]}})))
        .await
        .unwrap();
    let merged = widgets
        .patch("w", &pp("two"), &Patch::Apply(serde_json::json!({
            "apiVersion": "rs.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"tags": ["c"]}})))
        .await
        .unwrap();
    let mut tags: Vec<String> =
        serde_json::from_value(merged.data["spec"]["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"]);

    let status = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["phase"], "Ready");
    assert_eq!(status.metadata.generation, merged.metadata.generation);
}
