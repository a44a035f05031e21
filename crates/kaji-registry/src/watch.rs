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
    pub async fn watch(self: &std::sync::Arc<Self>, ns: Option<&str>, opts: WatchOptions) -> Result<WatchEventStream, ApiError> {
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
                if self.selected(&obj, opts.label_selector.as_ref(), opts.field_selector.as_ref()) {
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
                let err = ApiError::expired(format!("too old resource version: {} ({})", requested - 1, requested));
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
                    Err(StoreError::Compacted { requested, .. }) => Some(error_event(&ApiError::expired(
                        format!("too old resource version: {requested}"),
                    ))),
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
        let was = prev.as_ref().is_some_and(|p| self.selected(p, labels, fields));
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
