//! Patches without a resourceVersion are retried on conflict, as
//! Kubernetes' GuaranteedUpdate does; one naming a stale version is a 409.

use std::sync::Arc;

use kaji_core::catalogue;
use kaji_patch::PatchType;
use kaji_registry::{BuiltinStrategy, Part, Registry, WriteOptions};
use kaji_store::MemoryStore;
use serde_json::json;

fn registry(store: &Arc<MemoryStore>, plural: &str) -> Registry {
    Registry::new(
        store.clone(),
        Arc::new(BuiltinStrategy::new(
            catalogue::find("", "v1", plural).unwrap(),
        )),
    )
}

async fn config_map() -> Arc<Registry> {
    let store = Arc::new(MemoryStore::new());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    registry(&store, "namespaces")
        .create(None, ns, &WriteOptions::default())
        .await
        .unwrap();
    let cms = Arc::new(registry(&store, "configmaps"));
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    cms.create(Some("default"), cm, &WriteOptions::default())
        .await
        .unwrap();
    cms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_different_fields_all_land() {
    let cms = config_map().await;
    let writers = (0..32).map(|i| {
        let cms = cms.clone();
        tokio::spawn(async move {
            let (kind, patch) = match i % 3 {
                0 => (PatchType::Merge, json!({"data": {format!("k{i}"): "v"}})),
                1 => (
                    PatchType::StrategicMerge,
                    json!({"data": {format!("k{i}"): "v"}}),
                ),
                _ => (
                    PatchType::Json,
                    json!([{"op": "add", "path": format!("/data/k{i}"), "value": "v"}]),
                ),
            };
            cms.patch(
                Some("default"),
                "c",
                kind,
                patch,
                Part::Main,
                &WriteOptions::default(),
            )
            .await
        })
    });
    for w in futures::future::join_all(writers).await {
        w.unwrap()
            .expect("a patch without resourceVersion is retried, not refused");
    }
    let cm = cms.get(Some("default"), "c").await.unwrap();
    assert_eq!(cm["data"].as_object().unwrap().len(), 32);
}

#[tokio::test]
async fn a_patch_naming_a_stale_resource_version_conflicts() {
    let cms = config_map().await;
    let patch = json!({"metadata": {"resourceVersion": "1"}, "data": {"a": "b"}});
    let err = cms
        .patch(
            Some("default"),
            "c",
            PatchType::Merge,
            patch,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, 409);
}
