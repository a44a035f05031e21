//! The service account controller against a real in-process API server.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kaji_testenv::{eventually, TestEnv};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use serde_json::json;

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), kaji_controllers::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn start() -> (TestEnv, Client, AbortOnDrop) {
    let env = TestEnv::start().await;
    let client = env.client();
    let controller = tokio::spawn(kaji_controllers::serviceaccount::run(client.clone()));
    (env, client, AbortOnDrop(controller))
}

async fn create_namespace(client: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .expect("namespace created");
}

async fn default_account(client: &Client, ns: &str) -> ServiceAccount {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    eventually(&format!("a default service account in {ns}"), || async {
        accounts
            .get_opt("default")
            .await
            .expect("GET service account")
    })
    .await
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account() {
    let (_env, client, _controller) = start().await;
    // The system namespaces exist before the controller starts.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        default_account(&client, ns).await;
    }
    create_namespace(&client, "team-a").await;
    let account = default_account(&client, "team-a").await;
    assert_eq!(account.metadata.namespace.as_deref(), Some("team-a"));
    assert!(
        account.secrets.is_none(),
        "no token secret since Kubernetes 1.24"
    );
}

#[tokio::test]
async fn a_deleted_default_service_account_is_recreated() {
    let (_env, client, _controller) = start().await;
    create_namespace(&client, "team-b").await;
    let first = default_account(&client, "team-b").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-b");
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .expect("service account deleted");
    eventually("the default service account to come back", || async {
        let again = accounts
            .get_opt("default")
            .await
            .expect("GET service account")?;
        (again.metadata.uid != first.metadata.uid).then_some(())
    })
    .await;
}

#[tokio::test]
async fn other_service_accounts_are_left_alone() {
    let (_env, client, _controller) = start().await;
    create_namespace(&client, "team-c").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-c");
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "builder"}})).unwrap(),
        )
        .await
        .expect("service account created");
    default_account(&client, "team-c").await;
    accounts
        .delete("builder", &DeleteParams::default())
        .await
        .expect("service account deleted");
    // Deleting another account triggers nothing: the default one stays, the other stays gone.
    default_account(&client, "team-c").await;
    assert!(accounts.get_opt("builder").await.unwrap().is_none());
}

#[tokio::test]
async fn terminating_namespaces_get_no_new_service_account() {
    let (_env, client, _controller) = start().await;
    create_namespace(&client, "doomed").await;
    default_account(&client, "doomed").await;
    // Without the namespace controller the namespace stays Terminating.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("doomed", &DeleteParams::default())
        .await
        .expect("namespace deletion accepted");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .expect("service account deleted");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(accounts.get_opt("default").await.unwrap().is_none());
}
