//! Keeping the webhook configurations current: list, then watch from the
//! list's revision, and list again whenever the watch ends or fails.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use kaji_registry::{ListOptions, Registry, WatchKind, WatchOptions};
use serde_json::Value;

use crate::config::Phase;
use crate::Webhooks;

/// How long to wait before listing again after a failure.
const RETRY: Duration = Duration::from_millis(500);

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Runs until the [`Webhooks`] it feeds is dropped.
pub async fn keep_current(webhooks: Weak<Webhooks>, registry: Arc<Registry>, phase: Phase) {
    loop {
        let Some(this) = webhooks.upgrade() else {
            return;
        };
        let list = match registry.list(None, &ListOptions::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, ?phase, "listing webhook configurations");
                drop(this);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let items: Vec<Value> = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        this.replace_all(phase, items.iter().map(|o| (name_of(o), o)));
        let rv = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        drop(this);
        let opts = WatchOptions {
            resource_version: rv,
            ..WatchOptions::default()
        };
        let mut events = match registry.watch(None, opts).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, ?phase, "watching webhook configurations");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(event) = events.next().await {
            let Some(this) = webhooks.upgrade() else {
                return;
            };
            let object = &*event.object;
            match event.kind {
                WatchKind::Added | WatchKind::Modified => {
                    this.put(phase, name_of(object), Some(object))
                }
                WatchKind::Deleted => this.put(phase, name_of(object), None),
                WatchKind::Error => {
                    tracing::debug!(?phase, status = %object, "webhook configuration watch ended");
                    break;
                }
                _ => {}
            }
        }
        tokio::time::sleep(RETRY / 5).await;
    }
}
