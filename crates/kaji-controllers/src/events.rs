//! An event recorder writing core/v1 Events, as client-go's `record.EventRecorder`.
//!
//! Controllers report what they did to an object (`SuccessfulCreate`,
//! `FailedDelete`, ...) as Events, which `kubectl get events` and
//! `kubectl describe` show. Events are written as `v1` Events (not
//! `events.k8s.io/v1`, which kaji stores separately), in the involved object's
//! namespace (`default` for cluster-scoped objects), named
//! `<object>.<unique hex>` like client-go's.
//!
//! Identical events (same involved object, type, reason and message, from the
//! same component and host) seen again within [`AGGREGATION_WINDOW`] of the last
//! one are folded into the existing Event by patching its `count` and
//! `lastTimestamp`, as client-go's event correlator does.
//!
//! As client-go's correlator, two limits keep a busy controller from
//! flooding the API: once [`AGGREGATE_AFTER`] events of one reason with
//! different messages were seen about one object within the window, the
//! rest are folded into one `(combined from similar events): …` Event; and
//! each component may send at most [`SPAM_BURST`] events and count updates
//! about one object, then one per [`SPAM_REFILL`]; the others are dropped.
//! A ReplicaSet scaled to 10,000 thus gets a few dozen Events, not 10,000.
//!
//! Recording never fails or blocks the caller for long: errors are logged and
//! each call is bounded by [`RECORD_TIMEOUT`]. This module owns only the Events
//! it writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use tokio::time::Instant;

/// Identical events within this long of the last one are aggregated.
pub const AGGREGATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The longest one [`EventRecorder::record`] call may take.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// How many distinct events the aggregation cache remembers (client-go's
/// `maxLruCacheEntries`).
const CACHE_CAPACITY: usize = 4096;

/// Different messages of one reason about one object before further ones
/// are combined (client-go's `defaultAggregateMaxEvents`).
pub const AGGREGATE_AFTER: usize = 10;

/// The prefix of a combined Event's message (client-go's `EventAggregatorByReasonMessageFunc`).
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// Events and count updates a component may send about one object at once
/// (client-go's `defaultSpamBurst`)...
pub const SPAM_BURST: u32 = 25;

/// ...after which it may send one more per this long (`defaultSpamQPS`, 1/300).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);

/// An Event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something may need attention.
    Warning,
}

impl EventType {
    /// The API's spelling: `Normal` or `Warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A reference to `obj` for [`EventRecorder::record`]: kube's
/// [`Resource::object_ref`] plus `resourceVersion`, as client-go's
/// `reference.GetReference`.
pub fn object_reference<K: Resource>(obj: &K, dt: &K::DynamicType) -> ObjectReference {
    ObjectReference {
        resource_version: obj.meta().resource_version.clone(),
        ..obj.object_ref(dt)
    }
}

/// What makes two events identical (client-go's `getEventKey`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    api_version: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    field_path: Option<String>,
    type_: EventType,
    reason: String,
    /// `None` for the combined Event of a reason.
    message: Option<String>,
}

/// Who sent an event about which object: what the spam filter counts by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ObjectKey {
    api_version: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

/// The messages seen recently for one reason about one object.
#[derive(Debug)]
struct Similar {
    messages: std::collections::HashSet<String>,
    last: Instant,
}

/// A token bucket holding up to [`SPAM_BURST`] tokens, refilled one per [`SPAM_REFILL`].
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn full() -> Self {
        Budget {
            tokens: f64::from(SPAM_BURST),
            at: Instant::now(),
        }
    }

    fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let refilled = now.duration_since(self.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        self.tokens = (self.tokens + refilled).min(f64::from(SPAM_BURST));
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// The correlator's memory: messages per reason and object, and the spam
/// budget per object. Both are bounded by [`CACHE_CAPACITY`].
#[derive(Debug, Default)]
struct Correlator {
    similar: HashMap<EventKey, Similar>,
    budgets: HashMap<ObjectKey, Budget>,
}

impl Correlator {
    /// Notes `message` under `key` (whose message is `None`) and returns
    /// whether the event is to be combined with the others of its reason.
    fn combine(&mut self, key: &EventKey, message: &str) -> bool {
        if self.similar.len() >= CACHE_CAPACITY && !self.similar.contains_key(key) {
            self.similar
                .retain(|_, s| s.last.elapsed() < AGGREGATION_WINDOW);
            if self.similar.len() >= CACHE_CAPACITY {
                self.similar.clear();
            }
        }
        let similar = self.similar.entry(key.clone()).or_insert_with(|| Similar {
            messages: std::collections::HashSet::new(),
            last: Instant::now(),
        });
        if similar.last.elapsed() > AGGREGATION_WINDOW {
            similar.messages.clear();
        }
        similar.last = Instant::now();
        if similar.messages.contains(message) {
            return similar.messages.len() >= AGGREGATE_AFTER;
        }
        similar.messages.insert(message.to_string());
        if similar.messages.len() < AGGREGATE_AFTER {
            return false;
        }
        // Keep the set at its threshold, as client-go does.
        if let Some(any) = similar.messages.iter().next().cloned() {
            similar.messages.remove(&any);
        }
        true
    }

    /// Takes one unit of `object`'s budget; `false` means drop the event.
    fn allow(&mut self, object: &ObjectKey) -> bool {
        if self.budgets.len() >= CACHE_CAPACITY && !self.budgets.contains_key(object) {
            // A bucket refilled to the brim is as good as a forgotten one.
            let full = SPAM_REFILL * SPAM_BURST;
            self.budgets.retain(|_, b| b.at.elapsed() < full);
            if self.budgets.len() >= CACHE_CAPACITY {
                self.budgets.clear();
            }
        }
        self.budgets
            .entry(object.clone())
            .or_insert_with(Budget::full)
            .try_take()
    }
}

/// The Event last written for a key.
#[derive(Debug)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

/// One key's slot; its lock serializes recording of identical events.
type Slot = Arc<tokio::sync::Mutex<Option<Seen>>>;

/// Writes core/v1 Events on behalf of one component; clones share the
/// aggregation cache.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    host: Option<String>,
    cache: Arc<Mutex<HashMap<EventKey, Slot>>>,
    correlator: Arc<Mutex<Correlator>>,
}

impl EventRecorder {
    /// A recorder for `component` (e.g. `replicaset-controller`), which becomes
    /// `source.component` and `reportingComponent`.
    pub fn new(client: Client, component: impl Into<String>) -> Self {
        EventRecorder {
            client,
            component: component.into(),
            host: None,
            cache: Arc::new(Mutex::new(HashMap::new())),
            correlator: Arc::default(),
        }
    }

    /// Sets `source.host` and `reportingInstance` (the latter defaults to the
    /// component name).
    #[must_use]
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Records an event about `regarding` (see [`object_reference`]).
    ///
    /// # Guarantees
    /// Never fails: errors are logged. Returns within [`RECORD_TIMEOUT`].
    /// Identical events are recorded one at a time, so counts never go backwards.
    pub async fn record(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let work = self.record_inner(regarding, type_, reason, message);
        if tokio::time::timeout(RECORD_TIMEOUT, work).await.is_err() {
            tracing::warn!(
                component = %self.component,
                object = ?regarding.name,
                %reason,
                "recording an event timed out"
            );
        }
    }

    async fn record_inner(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let Some(object) = regarding.name.as_deref().filter(|n| !n.is_empty()) else {
            tracing::warn!(%reason, "cannot record an event about an object without a name");
            return;
        };
        let mut key = EventKey {
            api_version: regarding.api_version.clone(),
            kind: regarding.kind.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
            field_path: regarding.field_path.clone(),
            type_,
            reason: reason.to_string(),
            message: None,
        };
        let about = ObjectKey {
            api_version: regarding.api_version.clone(),
            kind: regarding.kind.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
        };
        let (combined, allowed) = {
            // A poisoned correlator only loses what it remembered; keep going.
            let mut correlator = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
            let combined = correlator.combine(&key, message);
            (combined, correlator.allow(&about))
        };
        if !allowed {
            tracing::debug!(component = %self.component, %object, %reason, "too many events about one object: dropping this one");
            return;
        }
        let message = if combined {
            format!("{COMBINED_PREFIX}{message}")
        } else {
            key.message = Some(message.to_string());
            message.to_string()
        };
        let message = message.as_str();
        let slot = self.slot(key);
        let mut seen = slot.lock().await;
        let now = Timestamp::now();
        if let Some(s) = seen
            .as_mut()
            .filter(|s| s.last.elapsed() < AGGREGATION_WINDOW)
        {
            let count = s.count.saturating_add(1);
            let events: Api<Event> = Api::namespaced(self.client.clone(), &s.namespace);
            // The message too: a combined Event shows the latest one.
            let patch = json!({"count": count, "lastTimestamp": Time(now), "message": message});
            match events
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    s.count = count;
                    s.last = Instant::now();
                    return;
                }
                // Deleted (or expired) meanwhile: start a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => {
                    tracing::warn!(event = %s.name, %error, "failed to update an event");
                    return;
                }
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", unique_suffix())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(type_.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Event::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match events.create(&PostParams::default(), &event).await {
            Ok(created) => {
                *seen = Some(Seen {
                    namespace,
                    name: created.metadata.name.unwrap_or_default(),
                    count: created.count.unwrap_or(1),
                    last: Instant::now(),
                });
            }
            Err(error) => tracing::warn!(%object, %reason, %error, "failed to record an event"),
        }
    }

    /// The slot for `key`, made room for if the cache is full.
    fn slot(&self, key: EventKey) -> Slot {
        // A poisoned cache only loses aggregation; keep going.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = cache.get(&key) {
            return slot.clone();
        }
        if cache.len() >= CACHE_CAPACITY {
            evict(&mut cache);
        }
        cache.entry(key).or_default().clone()
    }
}

/// Drops stale unused entries; if none are stale, any unused ones.
fn evict(cache: &mut HashMap<EventKey, Slot>) {
    let stale = |slot: &Slot| match slot.try_lock() {
        Ok(seen) => seen
            .as_ref()
            .is_none_or(|s| s.last.elapsed() >= AGGREGATION_WINDOW),
        Err(_) => false,
    };
    cache.retain(|_, slot| !stale(slot));
    if cache.len() >= CACHE_CAPACITY {
        cache.retain(|_, slot| slot.try_lock().is_err());
    }
}

/// A hex suffix unique within this process and unlikely to collide across
/// processes: the wall clock in nanoseconds, bumped past the last one used.
fn unique_suffix() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(0);
    now.max(previous.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_suffixes_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(unique_suffix()));
        }
    }

    fn key(reason: &str) -> EventKey {
        EventKey {
            api_version: Some("apps/v1".into()),
            kind: Some("ReplicaSet".into()),
            namespace: Some("default".into()),
            name: Some("web".into()),
            uid: Some("u1".into()),
            field_path: None,
            type_: EventType::Normal,
            reason: reason.into(),
            message: None,
        }
    }

    #[test]
    fn events_of_one_reason_are_combined_from_the_tenth_different_message() {
        let mut correlator = Correlator::default();
        let created = key("SuccessfulCreate");
        for i in 1..AGGREGATE_AFTER {
            assert!(!correlator.combine(&created, &format!("Created pod: web-{i}")));
        }
        // A message seen already is not a new one.
        assert!(!correlator.combine(&created, "Created pod: web-1"));
        for i in AGGREGATE_AFTER..AGGREGATE_AFTER + 5 {
            assert!(correlator.combine(&created, &format!("Created pod: web-{i}")));
        }
        // Another reason about the same object counts on its own.
        assert!(!correlator.combine(&key("SuccessfulDelete"), "Deleted pod: web-1"));
    }

    #[test]
    fn events_budget_allows_a_burst_per_object_then_drops() {
        let mut correlator = Correlator::default();
        let object = |name: &str| ObjectKey {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: None,
        };
        for _ in 0..SPAM_BURST {
            assert!(correlator.allow(&object("a")));
        }
        assert!(!correlator.allow(&object("a")));
        assert!(correlator.allow(&object("b")));
    }

    #[test]
    fn events_budget_refills_one_per_period() {
        let mut budget = Budget::full();
        while budget.try_take() {}
        budget.at -= SPAM_REFILL;
        assert!(budget.try_take());
        assert!(!budget.try_take());
    }

    #[test]
    fn events_types_are_spelled_as_the_api_spells_them() {
        assert_eq!(EventType::Normal.as_str(), "Normal");
        assert_eq!(EventType::Warning.as_str(), "Warning");
    }
}
