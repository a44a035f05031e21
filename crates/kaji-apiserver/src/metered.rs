//! A `Store` decorator that records each store call's latency in the
//! server's metrics (`etcd_request_duration_seconds`, as kube-apiserver names it).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use kaji_store::{KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream};

use crate::metrics::Metrics;

/// Times every call to the inner store.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`, reporting into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }

    fn record<T>(&self, operation: &'static str, started: Instant, result: Result<T>) -> Result<T> {
        self.metrics.observe_store(operation, started.elapsed());
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn current_revision(&self) -> Result<Revision> {
        let t = Instant::now();
        let r = self.inner.current_revision().await;
        self.record("current_revision", t, r)
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let t = Instant::now();
        let r = self.inner.get(key, revision).await;
        self.record("get", t, r)
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let t = Instant::now();
        let r = self.inner.list(prefix, options).await;
        self.record("list", t, r)
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let t = Instant::now();
        let r = self.inner.count(prefix).await;
        self.record("count", t, r)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let t = Instant::now();
        let r = self.inner.create(key, value).await;
        self.record("create", t, r)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        let t = Instant::now();
        let r = self.inner.update(key, value, expected_revision).await;
        self.record("update", t, r)
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected_revision).await;
        self.record("delete", t, r)
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        let t = Instant::now();
        let r = self.inner.watch(prefix, start_revision).await;
        self.record("watch", t, r)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.compact(revision).await;
        self.record("compact", t, r)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaji_store::MemoryStore;

    #[tokio::test]
    async fn store_calls_show_up_in_the_exposition() {
        let metrics = Arc::new(Metrics::default());
        let store = MeteredStore::new(Arc::new(MemoryStore::new()), metrics.clone());
        store.create("/a", b"1".to_vec()).await.unwrap();
        store.get("/a", None).await.unwrap();
        let text = metrics.render();
        assert!(
            text.contains(r#"etcd_request_duration_seconds_count{operation="create"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"etcd_request_duration_seconds_count{operation="get"} 1"#),
            "{text}"
        );
    }
}
