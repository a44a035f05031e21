//! The namespace lifecycle controller against a real in-process API server.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kaji_testenv::eventually;
use kaji_testenv::TestEnv;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

async fn create_namespace(client: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": name}})),
    )
    .await
    .expect("namespace created");
}

async fn create_configmap(client: &Client, ns: &str, name: &str, finalizers: &[&str]) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = json!({
        "metadata": {"name": name, "finalizers": finalizers},
        "data": {"k": "v"},
    });
    cms.create(&PostParams::default(), &from(cm))
        .await
        .expect("configmap created");
}

async fn delete_namespace(client: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete(name, &DeleteParams::default())
        .await
        .expect("namespace deletion accepted");
}

/// Waits until the namespace is gone (GET answers 404).
async fn namespace_gone(client: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    eventually(&format!("namespace {name} to be deleted"), || async {
        nss.get_opt(name)
            .await
            .expect("GET namespace")
            .is_none()
            .then_some(())
    })
    .await;
}

async fn names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter_map(|o| o.meta().name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts a server and the controller; the controller stops when the handle drops.
async fn start() -> (TestEnv, Client, AbortOnDrop) {
    let env = TestEnv::start().await;
    let client = env.client();
    let controller = tokio::spawn(kaji_controllers::namespace::run(client.clone()));
    (env, client, AbortOnDrop(controller))
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), kaji_controllers::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_content_and_then_the_namespace() {
    let (_env, client, _controller) = start().await;
    create_namespace(&client, "doomed").await;
    create_namespace(&client, "bystander").await;
    create_configmap(&client, "doomed", "one", &[]).await;
    create_configmap(&client, "doomed", "two", &[]).await;
    create_configmap(&client, "bystander", "kept", &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "doomed");
    secrets
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "s"}, "stringData": {"p": "w"}})),
        )
        .await
        .expect("secret created");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "doomed");
    let deployment = json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    });
    deployments
        .create(&PostParams::default(), &from(deployment))
        .await
        .expect("deployment created");

    delete_namespace(&client, "doomed").await;
    namespace_gone(&client, "doomed").await;

    let doomed_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    assert_eq!(names(&doomed_cms).await, Vec::<String>::new());
    assert_eq!(names(&secrets).await, Vec::<String>::new());
    assert_eq!(names(&deployments).await, Vec::<String>::new());
    let bystander_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bystander");
    assert!(names(&bystander_cms).await.contains(&"kept".to_string()));
    let nss: Api<Namespace> = Api::all(client.clone());
    let bystander = nss.get("bystander").await.expect("bystander still there");
    assert!(bystander.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn a_finalizer_on_content_keeps_the_namespace_terminating_until_it_is_removed() {
    let (_env, client, _controller) = start().await;
    create_namespace(&client, "held").await;
    create_namespace(&client, "neighbour").await;
    create_configmap(&client, "held", "pinned", &["example.com/hold"]).await;
    create_configmap(&client, "held", "loose", &[]).await;
    create_configmap(&client, "neighbour", "pinned", &["example.com/hold"]).await;

    delete_namespace(&client, "held").await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = eventually("the content-remaining condition", || async {
        let ns = nss.get("held").await.expect("namespace still there");
        let remaining = ns
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "NamespaceContentRemaining" && c.status == "True");
        remaining.then_some(ns)
    })
    .await;
    let status = ns.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Terminating"));
    let conditions = status.conditions.expect("conditions");
    let condition = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("{kind} in {conditions:?}"))
    };
    let content = condition("NamespaceContentRemaining");
    assert_eq!(content.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        content.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    let finalizers = condition("NamespaceFinalizersRemaining");
    assert_eq!(finalizers.status, "True");
    assert_eq!(
        finalizers.message.as_deref(),
        Some(
            "Some content in the namespace has finalizers remaining: \
             example.com/hold in 1 resource instances"
        )
    );
    assert_eq!(
        ns.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()])
    );

    let held: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    assert_eq!(names(&held).await, vec!["pinned".to_string()]);
    let pinned = held.get("pinned").await.expect("pinned configmap lingers");
    assert!(pinned.metadata.deletion_timestamp.is_some());

    // The namespace stays while the finalizer holds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(nss.get_opt("held").await.expect("GET").is_some());

    held.patch(
        "pinned",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizer removed");
    namespace_gone(&client, "held").await;
    assert_eq!(names(&held).await, Vec::<String>::new());

    let neighbour: Api<ConfigMap> = Api::namespaced(client.clone(), "neighbour");
    let untouched = neighbour
        .get("pinned")
        .await
        .expect("neighbour's configmap");
    assert!(untouched.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn an_empty_namespace_is_finalized_and_live_namespaces_are_left_alone() {
    let (_env, client, _controller) = start().await;
    create_namespace(&client, "empty").await;
    create_namespace(&client, "alive").await;
    delete_namespace(&client, "empty").await;
    namespace_gone(&client, "empty").await;

    let nss: Api<Namespace> = Api::all(client.clone());
    let alive = nss.get("alive").await.expect("live namespace");
    assert!(alive.metadata.deletion_timestamp.is_none());
    assert_eq!(
        alive.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()])
    );
    assert!(alive.status.and_then(|s| s.conditions).is_none());
}

#[tokio::test]
async fn two_controllers_racing_on_one_namespace_are_harmless() {
    let (_env, client, _first) = start().await;
    let _second = AbortOnDrop(tokio::spawn(kaji_controllers::namespace::run(
        client.clone(),
    )));
    create_namespace(&client, "raced").await;
    for i in 0..5 {
        create_configmap(&client, "raced", &format!("cm-{i}"), &[]).await;
    }
    delete_namespace(&client, "raced").await;
    namespace_gone(&client, "raced").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "raced");
    assert_eq!(names(&cms).await, Vec::<String>::new());
}
