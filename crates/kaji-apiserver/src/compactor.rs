//! Periodic compaction of store history, as kube-apiserver does it: every
//! interval, compact to the revision seen one interval earlier, so clients
//! always have at least one interval of history to resume watches from.

use std::sync::Arc;
use std::time::Duration;

use kaji_store::Store;

/// Kubernetes' default compaction interval.
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(300);

/// Starts the compaction loop; it runs until the runtime shuts down.
pub fn spawn_compactor(store: Arc<dyn Store>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        let mut previous: Option<i64> = None;
        loop {
            ticker.tick().await;
            if let Some(rev) = previous.filter(|r| *r > 0) {
                match store.compact(rev).await {
                    Ok(()) => tracing::debug!(revision = rev, "compacted store history"),
                    // Another API server on the same etcd compacted further.
                    Err(kaji_store::StoreError::Compacted { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, revision = rev, "compaction failed"),
                }
            }
            previous = store.current_revision().await.ok();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaji_store::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn compacts_to_the_revision_seen_one_interval_earlier() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        store.create("/a", b"1".to_vec()).await.unwrap();
        let task = spawn_compactor(store.clone(), Duration::from_secs(300));
        tokio::time::sleep(Duration::from_secs(301)).await;
        let seen = store.current_revision().await.unwrap();
        store.create("/b", b"2".to_vec()).await.unwrap();
        assert_eq!(
            store.compacted_revision().await.unwrap(),
            0,
            "nothing before the first full interval"
        );
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(store.compacted_revision().await.unwrap(), seen);
        task.abort();
    }
}
