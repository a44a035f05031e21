//! WATCH: initial events, then store changes translated into ADDED /
//! MODIFIED / DELETED as seen through the request's selectors.
//!
//! Every watch of a collection sees the same store changes. Each change is
//! decoded once per registry (a small bounded cache keyed by revision and
//! key) and its objects shared as `Arc<Value>`; the JSON line of an event
//! is built at most once per (change, event type) and shared as [`Bytes`].
//! Only selector filtering happens per watch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use kaji_core::ApiError;
use kaji_store::{EventType, KeyValue, Revision, StoreError};
use serde::Serialize;
use serde_json::{json, Value};

use crate::list::{parse_rv, WatchOptions};
use crate::registry::{internal, Registry};

/// Watch events in revision order.
pub type WatchEventStream = BoxStream<'static, WatchItem>;

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl WatchKind {
    /// The event's `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Added => "ADDED",
            WatchKind::Modified => "MODIFIED",
            WatchKind::Deleted => "DELETED",
            WatchKind::Bookmark => "BOOKMARK",
            WatchKind::Error => "ERROR",
        }
    }
}

/// One watch event: `{"type": kind, "object": object}`. Events about the
/// same store change share their object, and those of the same type share
/// their encoded line, between all watches of a registry.
#[derive(Clone, Debug)]
pub struct WatchItem {
    pub kind: WatchKind,
    pub object: Arc<Value>,
    line: Arc<OnceLock<Bytes>>,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    object: &'a Value,
}

impl WatchItem {
    /// An event of its own (shares nothing).
    pub fn new(kind: WatchKind, object: Value) -> WatchItem {
        WatchItem {
            kind,
            object: Arc::new(object),
            line: Arc::default(),
        }
    }

    /// The event as a `{"type": ..., "object": ...}` value.
    pub fn to_value(&self) -> Value {
        json!({"type": self.kind.as_str(), "object": *self.object})
    }

    /// `metadata.resourceVersion` of the object, when it has one.
    pub fn resource_version(&self) -> Option<i64> {
        self.object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok())
    }

    /// The event as one JSON line (`{"type":...,"object":...}\n`), the same
    /// bytes as `serde_json::to_vec(&self.to_value())` plus a newline. Built
    /// once and shared by every watch that sees this change as this type.
    pub fn json_line(&self) -> Bytes {
        self.line
            .get_or_init(|| {
                let mut line = serde_json::to_vec(&Line {
                    kind: self.kind.as_str(),
                    object: &self.object,
                })
                .unwrap_or_default();
                line.push(b'\n');
                Bytes::from(line)
            })
            .clone()
    }

    /// Whether the two events share their encoded line.
    pub fn shares_line_with(&self, other: &WatchItem) -> bool {
        Arc::ptr_eq(&self.line, &other.line)
    }
}

fn event(kind: WatchKind, object: Value) -> WatchItem {
    WatchItem::new(kind, object)
}

/// The `ERROR` event a watch ends with when its revision is gone.
pub(crate) fn error_event(err: &ApiError) -> WatchItem {
    event(WatchKind::Error, err.to_status())
}

/// At most this many revisions stay decoded…
///
/// Watchers of one collection read the same change within moments of each
/// other, so a short window shares nearly every decode; one that falls
/// further behind decodes for itself. A decoded `Value` takes several times
/// its stored bytes, so the window is kept small: per watched collection.
const CACHED_REVISIONS: usize = 512;
/// …and at most this many stored bytes (objects before and after) behind them.
const CACHED_BYTES: usize = 1 << 20;

/// One store change, decoded.
struct Change {
    /// The object as events about this change carry it: after a put, the
    /// new object; after a delete, the previous object at the deletion
    /// revision. `None` when it does not decode.
    object: Option<Arc<Value>>,
    /// The object before the change (to tell ADDED / MODIFIED / DELETED).
    prev: Option<Arc<Value>>,
    /// Encoded lines, one per event type (ADDED, MODIFIED, DELETED).
    lines: [Arc<OnceLock<Bytes>>; 3],
}

impl Change {
    fn item(&self, kind: WatchKind) -> Option<WatchItem> {
        let slot = match kind {
            WatchKind::Added => 0,
            WatchKind::Modified => 1,
            WatchKind::Deleted => 2,
            WatchKind::Bookmark | WatchKind::Error => return None,
        };
        Some(WatchItem {
            kind,
            object: self.object.clone()?,
            line: self.lines[slot].clone(),
        })
    }
}

type Slot = Arc<OnceLock<Change>>;

/// Recently decoded changes, shared by all watches of one registry.
#[derive(Default)]
pub(crate) struct Decoded {
    inner: Mutex<DecodedInner>,
}

#[derive(Default)]
struct DecodedInner {
    /// Changes by revision, then key (a revision may change several keys).
    by_revision: HashMap<Revision, (usize, Vec<(String, Slot)>)>,
    /// Revisions in the order they were first decoded, for eviction.
    order: VecDeque<Revision>,
    bytes: usize,
}

impl Decoded {
    /// The slot for one change, new (empty) if it is not cached.
    fn slot(&self, ev: &kaji_store::WatchEvent) -> Slot {
        let rev = ev.kv.mod_revision;
        let size = ev.kv.value.len() + ev.prev.as_ref().map_or(0, |p| p.value.len());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *inner;
        let slot = match inner.by_revision.get_mut(&rev) {
            Some((bytes, slots)) => {
                if let Some((_, slot)) = slots.iter().find(|(k, _)| *k == ev.kv.key) {
                    return slot.clone();
                }
                let slot = Slot::default();
                slots.push((ev.kv.key.clone(), slot.clone()));
                *bytes += size;
                slot
            }
            None => {
                let slot = Slot::default();
                inner
                    .by_revision
                    .insert(rev, (size, vec![(ev.kv.key.clone(), slot.clone())]));
                inner.order.push_back(rev);
                slot
            }
        };
        inner.bytes += size;
        // Evict the oldest revisions but the newest (callers keep their slots either way).
        while (inner.order.len() > CACHED_REVISIONS || inner.bytes > CACHED_BYTES)
            && inner.order.len() > 1
        {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some((bytes, _)) = inner.by_revision.remove(&old) {
                inner.bytes -= bytes;
            }
        }
        slot
    }
}

impl Registry {
    /// A BOOKMARK carrying only kind, apiVersion and a resourceVersion.
    pub fn bookmark(&self, rv: i64, initial_events_end: bool) -> WatchItem {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event(
            WatchKind::Bookmark,
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
        let mut first: Vec<WatchItem> = Vec::new();
        let start = if initial {
            let page = self
                .store
                .list(&prefix, kaji_store::ListOptions::default())
                .await
                .map_err(internal)?;
            // Initial events are this watch's own (each watch lists for itself).
            for kv in &page.kvs {
                let obj = self.decode(kv)?;
                if self.selected(
                    &obj,
                    opts.label_selector.as_ref(),
                    opts.field_selector.as_ref(),
                ) {
                    first.push(event(WatchKind::Added, obj));
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
                let out = match item {
                    Err(StoreError::Compacted { requested, .. }) => Some(error_event(
                        &ApiError::expired(format!("too old resource version: {requested}")),
                    )),
                    Err(e) => Some(error_event(&internal(e))),
                    Ok(ev) => this.translate(&ev, labels.as_ref(), fields.as_ref()),
                };
                async move { out }
            })
            .boxed();
        Ok(stream::iter(first).chain(translated).boxed())
    }

    /// Decodes one change: what every watch needs before its selectors.
    fn decode_change(&self, ev: &kaji_store::WatchEvent) -> Change {
        let decode = |kv: &KeyValue| self.decode(kv).ok();
        let prev = ev.prev.as_ref().and_then(decode);
        let object = match ev.event_type {
            EventType::Put => decode(&ev.kv),
            EventType::Delete => prev.clone().map(|mut obj| {
                obj["metadata"]["resourceVersion"] = ev.kv.mod_revision.to_string().into();
                obj
            }),
        };
        Change {
            object: object.map(Arc::new),
            prev: prev.map(Arc::new),
            lines: Default::default(),
        }
    }

    fn translate(
        &self,
        ev: &kaji_store::WatchEvent,
        labels: Option<&kaji_core::selector::LabelSelector>,
        fields: Option<&kaji_core::selector::FieldSelector>,
    ) -> Option<WatchItem> {
        let slot = self.decoded.slot(ev);
        let change = slot.get_or_init(|| self.decode_change(ev));
        let was = change
            .prev
            .as_ref()
            .is_some_and(|p| self.selected(p, labels, fields));
        let kind = match ev.event_type {
            EventType::Put => {
                let is = self.selected(change.object.as_ref()?, labels, fields);
                match (was, is) {
                    (true, true) => WatchKind::Modified,
                    (false, true) => WatchKind::Added,
                    (true, false) => WatchKind::Deleted,
                    (false, false) => return None,
                }
            }
            EventType::Delete if was => WatchKind::Deleted,
            EventType::Delete => return None,
        };
        change.item(kind)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use kaji_store::{MemoryStore, Store};
    use serde_json::json;

    use crate::{BuiltinStrategy, ListOptions, Registry, WatchKind, WatchOptions, WriteOptions};

    async fn next(events: &mut crate::WatchEventStream) -> crate::WatchItem {
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
        assert_eq!(events[0].kind, WatchKind::Error);
        assert_eq!(events[0].object["code"], 410);
        assert_eq!(events[0].object["reason"], "Expired");
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
            (added.kind, added.object["metadata"]["name"].as_str()),
            (WatchKind::Added, Some("a"))
        );
        let bookmark = next(&mut events).await;
        assert_eq!(bookmark.kind, WatchKind::Bookmark);
        assert_eq!(
            bookmark.object["metadata"]["annotations"]["k8s.io/initial-events-end"],
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
        assert_eq!(next(&mut events).await.kind, WatchKind::Added);
        assert_eq!(next(&mut events).await.kind, WatchKind::Deleted);
    }

    /// Watches of one registry share the decoded objects of a change, and
    /// the encoded line of each event type; selectors still apply per watch.
    #[tokio::test]
    async fn watches_share_each_decoded_change_and_its_encoding() {
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
        let from = |sel: Option<&str>| WatchOptions {
            resource_version: Some(rv.clone()),
            label_selector: sel.map(|s| kaji_core::selector::LabelSelector::parse(s).unwrap()),
            ..Default::default()
        };
        let mut plain = reg.watch(Some("default"), from(None)).await.unwrap();
        let mut other = reg.watch(Some("default"), from(None)).await.unwrap();
        let mut db = reg
            .watch(Some("default"), from(Some("app=db")))
            .await
            .unwrap();
        let mut web = reg
            .watch(Some("default"), from(Some("app=web")))
            .await
            .unwrap();
        // Namespace-wide and all-namespaces watches share too.
        let mut everywhere = reg.watch(None, from(None)).await.unwrap();
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
        reg.delete(Some("default"), "a", &crate::DeleteOptions::default())
            .await
            .unwrap();
        let kinds = |items: &[crate::WatchItem]| items.iter().map(|i| i.kind).collect::<Vec<_>>();
        let mut all = Vec::new();
        for w in [&mut plain, &mut other, &mut everywhere] {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(next(w).await);
            }
            assert_eq!(
                kinds(&got),
                [WatchKind::Modified, WatchKind::Modified, WatchKind::Deleted]
            );
            all.push(got);
        }
        for got in &all[1..] {
            for (a, b) in got.iter().zip(&all[0]) {
                assert!(Arc::ptr_eq(&a.object, &b.object), "one decode per change");
                assert!(a.shares_line_with(b));
                assert_eq!(a.json_line().as_ptr(), b.json_line().as_ptr());
            }
        }
        // to web: ADDED; to db: DELETED (the object with its new labels), then ADDED.
        let w1 = next(&mut web).await;
        let w2 = next(&mut web).await;
        let d1 = next(&mut db).await;
        let d2 = next(&mut db).await;
        assert_eq!(
            [w1.kind, w2.kind, d1.kind, d2.kind],
            [
                WatchKind::Added,
                WatchKind::Deleted,
                WatchKind::Added,
                WatchKind::Deleted
            ]
        );
        let (first, second, delete) = (&all[0][0], &all[0][1], &all[0][2]);
        assert!(Arc::ptr_eq(&w1.object, &first.object));
        assert!(Arc::ptr_eq(&w2.object, &second.object));
        assert!(Arc::ptr_eq(&d1.object, &second.object));
        assert!(Arc::ptr_eq(&d2.object, &delete.object));
        // Same object, other type: its own line.
        assert!(!w1.shares_line_with(first));
        assert!(!w2.shares_line_with(second));
        assert!(d2.shares_line_with(delete));
        assert_eq!(w2.object["metadata"]["labels"]["app"], "db");
        for item in [first, second, delete, &w1, &w2, &d1, &d2] {
            let mut want = serde_json::to_vec(&item.to_value()).unwrap();
            want.push(b'\n');
            assert_eq!(item.json_line(), want);
        }
        assert!(w2
            .json_line()
            .starts_with(br#"{"type":"DELETED","object":{"#));
        // A deleted object carries the deletion revision.
        let rv_of = |i: &crate::WatchItem| i.resource_version().unwrap();
        assert!(rv_of(delete) > rv_of(second));
        assert_eq!(
            delete.object["metadata"]["labels"]["app"],
            second.object["metadata"]["labels"]["app"]
        );
    }

    #[test]
    fn the_decoded_changes_kept_are_bounded_by_count_and_size() {
        use kaji_store::{EventType, KeyValue, WatchEvent};

        use super::{Decoded, CACHED_BYTES, CACHED_REVISIONS};

        let put = |rev: i64, key: &str, len: usize| WatchEvent {
            event_type: EventType::Put,
            kv: KeyValue {
                key: key.into(),
                value: vec![b' '; len],
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        };
        let cache = Decoded::default();
        let first = cache.slot(&put(1, "/a", 10));
        assert!(Arc::ptr_eq(&first, &cache.slot(&put(1, "/a", 10))));
        // Another key changed in the same revision is another change.
        assert!(!Arc::ptr_eq(&first, &cache.slot(&put(1, "/b", 10))));
        for rev in 2..=CACHED_REVISIONS as i64 + 10 {
            cache.slot(&put(rev, "/a", 10));
        }
        let len = |c: &Decoded| c.inner.lock().unwrap().order.len();
        assert_eq!(len(&cache), CACHED_REVISIONS);
        assert!(!Arc::ptr_eq(&first, &cache.slot(&put(1, "/a", 10))));
        // Big objects: fewer of them.
        let big = CACHED_BYTES / 4 + 1;
        for rev in 100_000..100_010 {
            cache.slot(&put(rev, "/big", big));
        }
        let inner = cache.inner.lock().unwrap();
        assert!(inner.bytes <= CACHED_BYTES);
        assert_eq!(inner.order.len(), 3);
        let kept: usize = inner.by_revision.values().map(|(b, _)| b).sum();
        assert_eq!(kept, inner.bytes);
    }
}
