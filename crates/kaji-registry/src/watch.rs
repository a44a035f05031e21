//! WATCH: initial events, then store changes translated into ADDED /
//! MODIFIED / DELETED as seen through the request's selectors.

use futures::stream::{self, BoxStream, StreamExt};
use kaji_core::ApiError;
use kaji_store::{EventType, StoreError};
use serde_json::{json, Value};

use crate::list::{parse_rv, WatchOptions};
use crate::registry::{internal, Registry};

/// Watch events as `{"type": ..., "object": ...}` values, in revision order.
pub type WatchEventStream = BoxStream<'static, Value>;

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

/// The `ERROR` event a watch ends with when its revision is gone.
pub(crate) fn error_event(err: &ApiError) -> Value {
    event("ERROR", err.to_status())
}

impl Registry {
    /// A BOOKMARK carrying only kind, apiVersion and a resourceVersion.
    pub fn bookmark(&self, rv: i64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event(
            "BOOKMARK",
            json!({"kind": self.info().kind, "apiVersion": self.info().api_version(), "metadata": metadata}),
        )
    }

    /// Starts a watch. With no resourceVersion (or "0", or sendInitialEvents)
    /// the current objects come first as ADDED events.
    ///
    /// # Errors
    /// 400 for bad parameters. A compacted revision is reported as an ERROR
    /// event (410 Expired) inside the stream, as Kubernetes does.
    pub async fn watch(
        self: &std::sync::Arc<Self>,
        ns: Option<&str>,
        opts: WatchOptions,
    ) -> Result<WatchEventStream, ApiError> {
        self.check_fields(opts.field_selector.as_ref())?;
        let prefix = self.prefix(ns);
        let rv = opts.resource_version.as_deref().filter(|rv| !rv.is_empty());
        let initial = opts.send_initial_events || matches!(rv, None | Some("0"));
        let mut first: Vec<Value> = Vec::new();
        let start = if initial {
            let page = self
                .store
                .list(&prefix, kaji_store::ListOptions::default())
                .await
                .map_err(internal)?;
            for kv in &page.kvs {
                let obj = self.decode(kv)?;
                if self.selected(
                    &obj,
                    opts.label_selector.as_ref(),
                    opts.field_selector.as_ref(),
                ) {
                    first.push(event("ADDED", obj));
                }
            }
            if opts.send_initial_events && opts.allow_bookmarks {
                first.push(self.bookmark(page.revision, true));
            }
            page.revision + 1
        } else {
            parse_rv(rv.unwrap_or("0"))? + 1
        };
        let changes = match self.store.watch(&prefix, start).await {
            Ok(s) => s,
            Err(StoreError::Compacted { requested, .. }) => {
                let err = ApiError::expired(format!(
                    "too old resource version: {} ({})",
                    requested - 1,
                    requested
                ));
                return Ok(stream::iter(vec![error_event(&err)]).boxed());
            }
            Err(e) => return Err(internal(e)),
        };
        let this = self.clone();
        let labels = opts.label_selector.clone();
        let fields = opts.field_selector.clone();
        let translated = changes
            .filter_map(move |item| {
                let this = this.clone();
                let out = match item {
                    Err(StoreError::Compacted { requested, .. }) => Some(error_event(
                        &ApiError::expired(format!("too old resource version: {requested}")),
                    )),
                    Err(e) => Some(error_event(&internal(e))),
                    Ok(ev) => this.translate(ev, labels.as_ref(), fields.as_ref()),
                };
                async move { out }
            })
            .boxed();
        Ok(stream::iter(first).chain(translated).boxed())
    }

    fn translate(
        &self,
        ev: kaji_store::WatchEvent,
        labels: Option<&kaji_core::selector::LabelSelector>,
        fields: Option<&kaji_core::selector::FieldSelector>,
    ) -> Option<Value> {
        let prev = ev.prev.as_ref().and_then(|kv| self.decode(kv).ok());
        let was = prev
            .as_ref()
            .is_some_and(|p| self.selected(p, labels, fields));
        match ev.event_type {
            EventType::Put => {
                let obj = self.decode(&ev.kv).ok()?;
                let is = self.selected(&obj, labels, fields);
                match (was, is) {
                    (true, true) => Some(event("MODIFIED", obj)),
                    (false, true) => Some(event("ADDED", obj)),
                    (true, false) => Some(event("DELETED", obj)),
                    (false, false) => None,
                }
            }
            EventType::Delete => {
                let mut obj = prev.filter(|_| was)?;
                obj["metadata"]["resourceVersion"] = ev.kv.mod_revision.to_string().into();
                Some(event("DELETED", obj))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use kaji_store::{MemoryStore, Store};
    use serde_json::json;

    use crate::{BuiltinStrategy, ListOptions, Registry, WatchOptions, WriteOptions};

    async fn next(events: &mut crate::WatchEventStream) -> serde_json::Value {
        tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .expect("timed out waiting for a watch event")
            .expect("the watch ended early")
    }

    fn configmaps(store: Arc<dyn Store>) -> Arc<Registry> {
        let info = kaji_core::catalogue::find("", "v1", "configmaps").unwrap();
        Arc::new(Registry::new(store, Arc::new(BuiltinStrategy::new(info))))
    }

    async fn with_namespace(store: &Arc<dyn Store>) {
        store
            .create(
                "/registry/namespaces/default",
                br#"{"metadata":{"name":"default"}}"#.to_vec(),
            )
            .await
            .unwrap();
    }

    fn cm(name: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    }

    #[tokio::test]
    async fn watch_from_a_compacted_revision_ends_with_410_expired() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        with_namespace(&store).await;
        let reg = configmaps(store.clone());
        let first = reg
            .create(Some("default"), cm("a"), &WriteOptions::default())
            .await
            .unwrap();
        reg.create(Some("default"), cm("b"), &WriteOptions::default())
            .await
            .unwrap();
        reg.create(Some("default"), cm("c"), &WriteOptions::default())
            .await
            .unwrap();
        // Compaction keeps its own revision: the history after `a` (from `b` on) is gone.
        store
            .compact(store.current_revision().await.unwrap())
            .await
            .unwrap();
        let rv = first.object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let opts = WatchOptions {
            resource_version: Some(rv),
            ..Default::default()
        };
        let events: Vec<_> = reg
            .watch(Some("default"), opts)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "ERROR");
        assert_eq!(events[0]["object"]["code"], 410);
        assert_eq!(events[0]["object"]["reason"], "Expired");
    }

    #[tokio::test]
    async fn continue_tokens_from_before_compaction_are_410() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        with_namespace(&store).await;
        let reg = configmaps(store.clone());
        for n in ["a", "b", "c"] {
            reg.create(Some("default"), cm(n), &WriteOptions::default())
                .await
                .unwrap();
        }
        let page = reg
            .list(
                Some("default"),
                &ListOptions {
                    limit: 1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let token = page["metadata"]["continue"].as_str().unwrap().to_string();
        reg.create(Some("default"), cm("d"), &WriteOptions::default())
            .await
            .unwrap();
        store
            .compact(store.current_revision().await.unwrap())
            .await
            .unwrap();
        let err = reg
            .list(
                Some("default"),
                &ListOptions {
                    limit: 1,
                    continue_token: Some(token),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!((err.code, err.reason), (410, "Expired"));
    }

    #[tokio::test]
    async fn initial_events_end_with_a_bookmark_when_asked() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        with_namespace(&store).await;
        let reg = configmaps(store.clone());
        reg.create(Some("default"), cm("a"), &WriteOptions::default())
            .await
            .unwrap();
        let opts = WatchOptions {
            send_initial_events: true,
            allow_bookmarks: true,
            ..Default::default()
        };
        let mut events = reg.watch(Some("default"), opts).await.unwrap();
        let added = next(&mut events).await;
        assert_eq!(
            (
                added["type"].as_str(),
                added["object"]["metadata"]["name"].as_str()
            ),
            (Some("ADDED"), Some("a"))
        );
        let bookmark = next(&mut events).await;
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(
            bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
    }

    #[tokio::test]
    async fn label_changes_move_objects_in_and_out_of_a_selected_watch() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        with_namespace(&store).await;
        let reg = configmaps(store.clone());
        let created = reg
            .create(Some("default"), cm("a"), &WriteOptions::default())
            .await
            .unwrap();
        let rv = created.object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let sel = kaji_core::selector::LabelSelector::parse("app=web").unwrap();
        let opts = WatchOptions {
            resource_version: Some(rv),
            label_selector: Some(sel),
            ..Default::default()
        };
        let mut events = reg.watch(Some("default"), opts).await.unwrap();
        let patch = |v: &str| json!({"metadata": {"labels": {"app": v}}});
        for v in ["web", "db"] {
            reg.patch(
                Some("default"),
                "a",
                kaji_patch::PatchType::Merge,
                patch(v),
                crate::Part::Main,
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        }
        assert_eq!(next(&mut events).await["type"], "ADDED");
        assert_eq!(next(&mut events).await["type"], "DELETED");
    }
}
