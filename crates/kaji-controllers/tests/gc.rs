//! The garbage collector against a real in-process API server: background,
//! dangling, multi-owner, foreground and orphan deletion.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kaji_testenv::TestEnv;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);

/// A running environment with the collector spawned; aborts it on drop.
struct Env {
    env: TestEnv,
    gc: tokio::task::JoinHandle<Result<(), kaji_controllers::Error>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.gc.abort();
    }
}

async fn start() -> Env {
    let env = TestEnv::start().await;
    let gc = tokio::spawn(kaji_controllers::gc::run(env.client()));
    Env { env, gc }
}

fn cms(env: &Env) -> Api<ConfigMap> {
    Api::namespaced(env.env.client(), NS)
}

fn secrets(env: &Env) -> Api<Secret> {
    Api::namespaced(env.env.client(), NS)
}

fn owned_by(owner: &ConfigMap) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.metadata.name.clone().expect("name"),
        uid: owner.metadata.uid.clone().expect("uid"),
        block_owner_deletion: Some(true),
        ..OwnerReference::default()
    }
}

fn meta(name: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        owner_references: (!owners.is_empty()).then_some(owners),
        ..ObjectMeta::default()
    }
}

async fn create_cm(env: &Env, name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
    let cm = ConfigMap {
        metadata: meta(name, owners),
        ..ConfigMap::default()
    };
    cms(env)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap")
}

async fn create_secret(env: &Env, name: &str, owners: Vec<OwnerReference>) -> Secret {
    let s = Secret {
        metadata: meta(name, owners),
        ..Secret::default()
    };
    secrets(env)
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret")
}

/// Polls `check` until it holds, failing the test after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(WAIT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("get").is_none()
}

fn delete_with(policy: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy),
        ..DeleteParams::default()
    }
}

#[tokio::test]
async fn gc_background_deletion_of_an_owner_removes_its_dependents() {
    let env = start().await;
    let owner = create_cm(&env, "owner", vec![]).await;
    create_secret(&env, "dep-secret", vec![owned_by(&owner)]).await;
    create_cm(&env, "dep-cm", vec![owned_by(&owner)]).await;

    cms(&env)
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");

    eventually("both dependents are collected", || async {
        gone(&secrets(&env), "dep-secret").await && gone(&cms(&env), "dep-cm").await
    })
    .await;
}

#[tokio::test]
async fn gc_collects_a_dependent_whose_owner_never_existed() {
    let env = start().await;
    let phantom = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "never".into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        ..OwnerReference::default()
    };
    create_cm(&env, "orphaned", vec![phantom]).await;

    eventually("the dangling dependent is collected", || async {
        gone(&cms(&env), "orphaned").await
    })
    .await;
}

#[tokio::test]
async fn gc_treats_an_owner_with_the_same_name_but_another_uid_as_absent() {
    let env = start().await;
    let first = create_cm(&env, "reborn", vec![]).await;
    let stale = owned_by(&first);
    cms(&env)
        .delete("reborn", &DeleteParams::default())
        .await
        .expect("delete");
    create_cm(&env, "reborn", vec![]).await;
    create_cm(&env, "dep", vec![stale]).await;

    eventually(
        "the dependent of the old incarnation is collected",
        || async { gone(&cms(&env), "dep").await },
    )
    .await;
    assert!(!gone(&cms(&env), "reborn").await, "the new owner stays");
}

#[tokio::test]
async fn gc_keeps_a_dependent_while_one_of_two_owners_remains() {
    let env = start().await;
    let a = create_cm(&env, "owner-a", vec![]).await;
    let b = create_cm(&env, "owner-b", vec![]).await;
    create_secret(&env, "shared", vec![owned_by(&a), owned_by(&b)]).await;
    // A control dependent of `a` alone shows the collector has acted.
    create_secret(&env, "only-a", vec![owned_by(&a)]).await;

    cms(&env)
        .delete("owner-a", &DeleteParams::background())
        .await
        .expect("delete a");

    eventually("the sole dependent of a is collected", || async {
        gone(&secrets(&env), "only-a").await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shared = secrets(&env).get_opt("shared").await.expect("get");
    assert!(
        shared.is_some(),
        "a dependent with a remaining owner survives"
    );

    cms(&env)
        .delete("owner-b", &DeleteParams::background())
        .await
        .expect("delete b");
    eventually("the shared dependent goes with its last owner", || async {
        gone(&secrets(&env), "shared").await
    })
    .await;
}

#[tokio::test]
async fn gc_foreground_deletion_removes_dependents_before_the_owner() {
    let env = start().await;
    let owner = create_cm(&env, "fg-owner", vec![]).await;
    let dep = create_cm(&env, "fg-dep", vec![owned_by(&owner)]).await;
    create_secret(&env, "fg-grandchild", vec![owned_by(&dep)]).await;

    cms(&env)
        .delete("fg-owner", &delete_with(PropagationPolicy::Foreground))
        .await
        .expect("delete owner");

    // The owner must outlive its dependents: whenever it is seen gone, they
    // must be gone already.
    eventually("the owner is gone", || async {
        if !gone(&cms(&env), "fg-owner").await {
            return false;
        }
        assert!(
            gone(&cms(&env), "fg-dep").await,
            "owner went before its dependent"
        );
        assert!(
            gone(&secrets(&env), "fg-grandchild").await,
            "owner went before a grandchild"
        );
        true
    })
    .await;
}

#[tokio::test]
async fn gc_foreground_deletion_waits_while_a_dependent_is_held_by_a_finalizer() {
    let env = start().await;
    let owner = create_cm(&env, "held-owner", vec![]).await;
    let mut dep_meta = meta("held-dep", vec![owned_by(&owner)]);
    dep_meta.finalizers = Some(vec!["example.com/hold".into()]);
    let dep = ConfigMap {
        metadata: dep_meta,
        ..ConfigMap::default()
    };
    cms(&env)
        .create(&PostParams::default(), &dep)
        .await
        .expect("create dep");

    cms(&env)
        .delete("held-owner", &delete_with(PropagationPolicy::Foreground))
        .await
        .expect("delete owner");

    eventually("the dependent is being deleted", || async {
        let dep = cms(&env).get("held-dep").await.expect("get dep");
        dep.metadata.deletion_timestamp.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = cms(&env)
        .get("held-owner")
        .await
        .expect("owner still there");
    assert!(held.metadata.deletion_timestamp.is_some());

    let release = serde_json::json!({"metadata": {"finalizers": null}});
    cms(&env)
        .patch(
            "held-dep",
            &Default::default(),
            &kube::api::Patch::Merge(release),
        )
        .await
        .expect("release dep");
    eventually("the owner goes once its dependent has", || async {
        gone(&cms(&env), "held-owner").await
    })
    .await;
}

#[tokio::test]
async fn gc_orphan_deletion_keeps_the_dependent_and_strips_its_owner_reference() {
    let env = start().await;
    let owner = create_cm(&env, "or-owner", vec![]).await;
    let other = create_cm(&env, "or-other", vec![]).await;
    create_secret(&env, "or-dep", vec![owned_by(&owner), owned_by(&other)]).await;

    cms(&env)
        .delete("or-owner", &delete_with(PropagationPolicy::Orphan))
        .await
        .expect("delete owner");

    eventually("the orphaning owner is gone", || async {
        gone(&cms(&env), "or-owner").await
    })
    .await;
    let dep = secrets(&env)
        .get("or-dep")
        .await
        .expect("the dependent survives");
    let uids: Vec<String> = dep
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(
        uids,
        [other.metadata.uid.expect("uid")],
        "only the other owner remains"
    );
}
