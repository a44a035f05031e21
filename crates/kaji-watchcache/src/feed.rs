//! The feed: one task that keeps the cache in step with the inner store.
//!
//! An explicit state machine: *listing* (list every cached prefix at one
//! revision R, swap it in) → *watching* (one inner watch on the empty
//! prefix from R+1, applied in batches) → on a watch error, *resuming*
//! (watch again from the cache's revision + 1, which keeps continuity and
//! the cache's watchers) and only if that history is compacted away,
//! *listing* again (which drops every cache watcher with `WatchLagged`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kaji_store::{KeyValue, ListOptions, Revision, StoreError, WatchEvent, WatchStream};

use crate::Shared;

/// Events applied under one lock acquisition, at most.
const MAX_BATCH: usize = 512;
/// Keys per page when (re-)listing the inner store.
const LIST_PAGE: usize = 5000;
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs until the cache is dropped (the task is aborted).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let stream = match connect(&shared).await {
            Ok(stream) => {
                backoff = MIN_BACKOFF;
                stream
            }
            Err(error) => {
                // A failed resume keeps the cache ready: its state is still
                // exact as of its revision, and consistent reads wait or fall back.
                tracing::warn!(%error, ?backoff, "watch cache cannot reach the inner store; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let error = pump(&shared, stream).await;
        tracing::debug!(%error, "watch cache feed interrupted; resuming");
    }
}

/// Resumes from the cache's revision when it has continuity, else re-lists.
async fn connect(shared: &Shared) -> Result<WatchStream, StoreError> {
    if let Some(revision) = shared.resumable_revision() {
        match shared.inner.watch("", revision + 1).await {
            Ok(stream) => {
                shared.stats.count_resume();
                return Ok(stream);
            }
            Err(StoreError::Compacted { .. }) => {
                tracing::info!(revision, "watch cache history compacted away; re-listing");
                shared.set_unready();
            }
            Err(e) => return Err(e),
        }
    }
    loop {
        let (kvs, revision) = list_all(shared).await?;
        match shared.inner.watch("", revision + 1).await {
            Ok(stream) => {
                shared.install(kvs, revision);
                return Ok(stream);
            }
            // Compacted between the list and the watch: list again.
            Err(StoreError::Compacted { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Lists every cached prefix at one revision.
async fn list_all(shared: &Shared) -> Result<(BTreeMap<String, KeyValue>, Revision), StoreError> {
    'again: loop {
        let mut at: Option<Revision> = None;
        let mut kvs = BTreeMap::new();
        for prefix in &shared.prefixes {
            let mut after: Option<String> = None;
            loop {
                let page = shared
                    .inner
                    .list(
                        prefix,
                        ListOptions {
                            revision: at,
                            start_after: after.take(),
                            limit: Some(LIST_PAGE),
                        },
                    )
                    .await;
                let page = match page {
                    Ok(page) => page,
                    // Compacted while paging at a pinned revision: start over at the latest.
                    Err(StoreError::Compacted { .. }) => continue 'again,
                    Err(e) => return Err(e),
                };
                at = Some(page.revision);
                after = page.kvs.last().map(|kv| kv.key.clone());
                kvs.extend(page.kvs.into_iter().map(|kv| (kv.key.clone(), kv)));
                if !page.more {
                    break;
                }
            }
        }
        let revision = match at {
            Some(r) => r,
            None => shared.inner.current_revision().await?,
        };
        return Ok((kvs, revision));
    }
}

/// Applies events in batches until the inner watch fails or ends; returns why.
async fn pump(shared: &Shared, mut stream: WatchStream) -> StoreError {
    let mut batch: Vec<WatchEvent> = Vec::with_capacity(MAX_BATCH);
    loop {
        let mut stop = match stream.next().await {
            Some(Ok(event)) => {
                batch.push(event);
                None
            }
            Some(Err(e)) => Some(e),
            None => Some(StoreError::Closed),
        };
        while stop.is_none() && batch.len() < MAX_BATCH {
            match stream.next().now_or_never() {
                Some(Some(Ok(event))) => batch.push(event),
                Some(Some(Err(e))) => stop = Some(e),
                Some(None) => stop = Some(StoreError::Closed),
                None => break,
            }
        }
        if !batch.is_empty() {
            shared.apply(&mut batch);
        }
        if let Some(e) = stop {
            return e;
        }
    }
}
