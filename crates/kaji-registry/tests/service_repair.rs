//! Repair of Service reservations, and reservations across write conflicts.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{cluster_ip, node_ports, server, server_on, service};
use kaji_registry::allocate::{NODE_PORTS_PREFIX, SERVICE_IPS_PREFIX};
use kaji_registry::ServiceRanges;
use kaji_store::{
    KeyValue, ListOptions, ListResult, MemoryStore, Result, Revision, Store, WatchStream,
};
use serde_json::json;

fn orphan(uid: &str) -> Vec<u8> {
    json!({"kind": "Service", "namespace": "default", "name": "gone", "uid": uid,
           "reservedAt": "2020-01-01T00:00:00Z"})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn repair_frees_keys_no_service_holds() {
    let s = server().await;
    let kept = s
        .create(service("kept", json!({"type": "NodePort"})))
        .await
        .unwrap();
    let store = s.store.as_ref();
    store
        .create(&format!("{SERVICE_IPS_PREFIX}10.96.0.99"), orphan("dead"))
        .await
        .unwrap();
    store
        .create(&format!("{NODE_PORTS_PREFIX}31999"), orphan("dead"))
        .await
        .unwrap();
    // A key of a live value naming another owner is a leak too.
    let ip_key = format!("{SERVICE_IPS_PREFIX}{}", cluster_ip(&kept));
    let (kv, _) = store.get(&ip_key, None).await.unwrap();
    store
        .update(&ip_key, orphan("stranger"), kv.unwrap().mod_revision)
        .await
        .unwrap();

    let mut report = s.allocator.repair(Duration::from_secs(60)).await.unwrap();
    report.freed.sort();
    let mut expected = vec![
        format!("{SERVICE_IPS_PREFIX}10.96.0.99"),
        ip_key.clone(),
        format!("{NODE_PORTS_PREFIX}31999"),
    ];
    expected.sort();
    assert_eq!(report.freed, expected);
    assert_eq!(report.restored, [ip_key], "re-reserved for its real holder");
    assert!(report.conflicts.is_empty());
    assert_eq!(s.reserved_ips().await, [cluster_ip(&kept)]);
    assert_eq!(s.reserved_ports().await, [node_ports(&kept)[0].to_string()]);
    // Nothing left to do.
    let again = s.allocator.repair(Duration::from_secs(60)).await.unwrap();
    assert_eq!(again, Default::default());
}

#[tokio::test]
async fn repair_leaves_young_keys_alone_until_the_grace_period_is_over() {
    let s = server().await;
    // A write that reserved and has not landed yet looks exactly like this.
    let young = json!({"kind": "Service", "namespace": "default", "name": "soon",
                       "uid": "in-flight", "reservedAt": chrono::Utc::now()});
    s.store
        .create(
            &format!("{SERVICE_IPS_PREFIX}10.96.0.77"),
            young.to_string().into_bytes(),
        )
        .await
        .unwrap();
    let report = s.allocator.repair(Duration::from_secs(60)).await.unwrap();
    assert!(report.freed.is_empty());
    assert_eq!(s.reserved_ips().await, ["10.96.0.77"]);
    let report = s.allocator.repair(Duration::ZERO).await.unwrap();
    assert_eq!(report.freed.len(), 1);
    assert!(s.reserved_ips().await.is_empty());
}

#[tokio::test]
async fn repair_re_reserves_what_services_hold_without_keys() {
    let s = server().await;
    let svc = s
        .create(service("web", json!({"type": "NodePort"})))
        .await
        .unwrap();
    for key in [
        format!("{SERVICE_IPS_PREFIX}{}", cluster_ip(&svc)),
        format!("{NODE_PORTS_PREFIX}{}", node_ports(&svc)[0]),
    ] {
        s.store.delete(&key, None).await.unwrap();
    }
    assert!(s.reserved_ips().await.is_empty());
    let report = s.allocator.repair(Duration::from_secs(60)).await.unwrap();
    assert_eq!(report.restored.len(), 2);
    // Now nobody else can take the IP.
    let err = s
        .create(service("thief", json!({"clusterIP": cluster_ip(&svc)})))
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn repair_reports_values_outside_a_changed_range() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let old = server_on(store.clone(), ServiceRanges::default()).await;
    old.create(service("web", json!({"clusterIP": "10.96.0.5"})))
        .await
        .unwrap();
    let narrow = ServiceRanges {
        cluster_ips: "10.100.0.0/16".parse().unwrap(),
        ..ServiceRanges::default()
    };
    let new = server_on(store, narrow).await;
    let report = new.allocator.repair(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        report.conflicts,
        ["default/web: 10.96.0.5 (outside the range)"]
    );
    assert!(report.freed.is_empty(), "the key still names its holder");
}

/// A store whose first update of a Service loses a race: another writer
/// touches the object just before.
struct RacingStore {
    inner: MemoryStore,
    raced: AtomicBool,
}

#[async_trait]
impl Store for RacingStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn get(&self, key: &str, rev: Option<Revision>) -> Result<(Option<KeyValue>, Revision)> {
        self.inner.get(key, rev).await
    }
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        self.inner.list(prefix, options).await
    }
    async fn count(&self, prefix: &str) -> Result<i64> {
        self.inner.count(prefix).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        if key.starts_with("/registry/services/") && !self.raced.swap(true, Ordering::SeqCst) {
            let (current, _) = self.inner.get(key, None).await?;
            let current = current.expect("updated keys exist");
            self.inner
                .update(key, current.value, current.mod_revision)
                .await?;
        }
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream> {
        self.inner.watch(prefix, start).await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}

#[tokio::test]
async fn an_update_retried_after_a_conflict_keeps_only_the_ip_it_stored() {
    let store = Arc::new(RacingStore {
        inner: MemoryStore::new(),
        raced: AtomicBool::new(true),
    });
    let s = server_on(store.clone(), ServiceRanges::default()).await;
    s.create(service(
        "ext",
        json!({"type": "ExternalName", "externalName": "example.com"}),
    ))
    .await
    .unwrap();
    store.raced.store(false, Ordering::SeqCst);
    // The first attempt reserves an IP and loses the race; the retry reserves another.
    // (An update without a resourceVersion, so the registry retries.)
    let svc = s.replace("ext", service("ext", json!({}))).await.unwrap();
    assert!(store.raced.load(Ordering::SeqCst));
    assert_eq!(s.reserved_ips().await, [cluster_ip(&svc)]);
}
