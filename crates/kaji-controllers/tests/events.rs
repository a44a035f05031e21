//! The event recorder against a real in-process API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use kaji_controllers::events::{
    object_reference, EventRecorder, EventType, AGGREGATE_AFTER, COMBINED_PREFIX, RECORD_TIMEOUT,
    SPAM_BURST,
};
use kaji_testenv::TestEnv;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::json;

async fn create_configmap(client: &Client, name: &str) -> ConfigMap {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("valid configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("configmap created")
}

async fn events_about(client: &Client, namespace: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events listed")
        .items
}

#[tokio::test]
async fn events_recording_on_a_configmap_creates_a_core_event() {
    let env = TestEnv::start().await;
    let client = env.client();
    let cm = create_configmap(&client, "settings").await;
    let recorder = EventRecorder::new(client.clone(), "replicaset-controller").with_host("node-1");
    recorder
        .record(
            &object_reference(&cm, &()),
            EventType::Normal,
            "Configured",
            "settings were applied",
        )
        .await;

    let events = events_about(&client, "default", "settings").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    let name = event.metadata.name.as_deref().unwrap();
    let suffix = name
        .strip_prefix("settings.")
        .expect("named <object>.<hex>");
    assert!(
        !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_hexdigit()),
        "{name}"
    );
    assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    let involved = &event.involved_object;
    assert_eq!(involved.api_version.as_deref(), Some("v1"));
    assert_eq!(involved.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(involved.namespace.as_deref(), Some("default"));
    assert_eq!(involved.name.as_deref(), Some("settings"));
    assert_eq!(involved.uid, cm.metadata.uid);
    assert_eq!(involved.resource_version, cm.metadata.resource_version);
    assert_eq!(event.reason.as_deref(), Some("Configured"));
    assert_eq!(event.message.as_deref(), Some("settings were applied"));
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    let source = event.source.as_ref().expect("source");
    assert_eq!(source.component.as_deref(), Some("replicaset-controller"));
    assert_eq!(source.host.as_deref(), Some("node-1"));
    assert_eq!(
        event.reporting_component.as_deref(),
        Some("replicaset-controller")
    );
    assert_eq!(event.reporting_instance.as_deref(), Some("node-1"));
    assert_eq!(event.count, Some(1));
    assert!(event.first_timestamp.is_some());
    assert_eq!(event.first_timestamp, event.last_timestamp);
}

#[tokio::test]
async fn events_recording_the_same_thing_twice_gives_count_two_on_one_event() {
    let env = TestEnv::start().await;
    let client = env.client();
    let cm = create_configmap(&client, "twice").await;
    let recorder = EventRecorder::new(client.clone(), "test-controller");
    let reference = object_reference(&cm, &());
    recorder
        .record(&reference, EventType::Warning, "Failed", "it broke")
        .await;
    // Timestamps have whole seconds: wait for lastTimestamp to move.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    recorder
        .record(&reference, EventType::Warning, "Failed", "it broke")
        .await;

    let events = events_about(&client, "default", "twice").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.count, Some(2));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reporting_instance.as_deref(), Some("test-controller"));
    let (first, last) = (event.first_timestamp.clone(), event.last_timestamp.clone());
    assert!(last > first, "first {first:?}, last {last:?}");
}

#[tokio::test]
async fn events_that_differ_are_recorded_separately() {
    let env = TestEnv::start().await;
    let client = env.client();
    let cm = create_configmap(&client, "differ").await;
    let recorder = EventRecorder::new(client.clone(), "test-controller");
    let reference = object_reference(&cm, &());
    recorder
        .record(&reference, EventType::Normal, "Synced", "one")
        .await;
    recorder
        .record(&reference, EventType::Normal, "Synced", "two")
        .await;
    recorder
        .record(&reference, EventType::Warning, "Synced", "two")
        .await;
    recorder
        .record(&reference, EventType::Normal, "Other", "two")
        .await;
    let events = events_about(&client, "default", "differ").await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events.iter().all(|e| e.count == Some(1)));
}

#[tokio::test]
async fn events_flooding_one_object_are_combined_then_dropped() {
    let env = TestEnv::start().await;
    let client = env.client();
    let flooded = object_reference(&create_configmap(&client, "flooded").await, &());
    let other = object_reference(&create_configmap(&client, "other").await, &());
    let recorder = EventRecorder::new(client.clone(), "replicaset-controller");
    let sent = 2 * SPAM_BURST as usize;
    for i in 1..=sent {
        let message = format!("Created pod: web-{i}");
        recorder
            .record(&flooded, EventType::Normal, "SuccessfulCreate", &message)
            .await;
    }
    recorder
        .record(
            &other,
            EventType::Normal,
            "SuccessfulCreate",
            "Created pod: x",
        )
        .await;

    let events = events_about(&client, "default", "flooded").await;
    let (combined, single): (Vec<_>, Vec<_>) = events.iter().partition(|e| {
        e.message
            .as_deref()
            .is_some_and(|m| m.starts_with(COMBINED_PREFIX))
    });
    // The first messages each get an Event; from the AGGREGATE_AFTER-th on
    // they share one, whose count grows until the object's budget is spent.
    assert_eq!(single.len(), AGGREGATE_AFTER - 1, "{events:?}");
    assert!(single.iter().all(|e| e.count == Some(1)));
    assert_eq!(combined.len(), 1, "{events:?}");
    let budget = SPAM_BURST as usize;
    let combined_count = budget - (AGGREGATE_AFTER - 1);
    assert_eq!(
        combined[0].count,
        Some(i32::try_from(combined_count).unwrap())
    );
    assert_eq!(
        combined[0].message.as_deref(),
        Some(format!("{COMBINED_PREFIX}Created pod: web-{budget}").as_str()),
        "the combined Event shows the last message sent"
    );
    // Another object has a budget of its own.
    assert_eq!(events_about(&client, "default", "other").await.len(), 1);
}

#[tokio::test]
async fn events_a_deleted_event_is_recorded_anew() {
    let env = TestEnv::start().await;
    let client = env.client();
    let cm = create_configmap(&client, "deleted").await;
    let recorder = EventRecorder::new(client.clone(), "test-controller");
    let reference = object_reference(&cm, &());
    recorder
        .record(&reference, EventType::Normal, "Synced", "ok")
        .await;
    let first = events_about(&client, "default", "deleted").await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .delete(
            first[0].metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    recorder
        .record(&reference, EventType::Normal, "Synced", "ok")
        .await;
    let again = events_about(&client, "default", "deleted").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].count, Some(1));
    assert_ne!(again[0].metadata.name, first[0].metadata.name);
}

#[tokio::test]
async fn events_about_cluster_scoped_objects_go_to_default() {
    let env = TestEnv::start().await;
    let client = env.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get("kube-public").await.unwrap();
    let recorder = EventRecorder::new(client.clone(), "namespace-controller");
    recorder
        .record(
            &object_reference(&ns, &()),
            EventType::Normal,
            "Seen",
            "hello",
        )
        .await;
    let events = events_about(&client, "default", "kube-public").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].involved_object.kind.as_deref(), Some("Namespace"));
    assert_eq!(events[0].involved_object.namespace, None);
}

#[tokio::test]
async fn events_recording_never_fails_when_the_server_is_gone() {
    let env = TestEnv::start().await;
    let client = env.client();
    let cm = create_configmap(&client, "gone").await;
    let recorder = EventRecorder::new(client.clone(), "test-controller");
    drop(env);
    tokio::time::timeout(
        RECORD_TIMEOUT + Duration::from_secs(5),
        recorder.record(
            &object_reference(&cm, &()),
            EventType::Normal,
            "Synced",
            "ok",
        ),
    )
    .await
    .expect("record returns even when the API is unreachable");
}
