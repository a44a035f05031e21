//! End-to-end with kube-rs, exactly as an out-of-tree client would use kaji.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};

/// Bounds every wait on a stream so a missing event fails the test instead of hanging it.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(20), f)
        .await
        .expect("timed out waiting for a watch event")
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"v": value},
    }))
    .unwrap()
}

#[tokio::test]
async fn stale_update_conflicts_and_fresh_update_wins() {
    let c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let mut fresh = created.clone();
    fresh.data = Some(BTreeMap::from([("v".into(), "2".into())]));
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let rv = |o: &ConfigMap| -> u64 {
        o.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(rv(&updated) > rv(&created));
    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("v".into(), "3".into())]));
    match api.replace("a", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["v"], "2");
}

#[tokio::test]
async fn watch_is_ordered_and_resumes_from_a_resource_version() {
    let c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("w", "1"))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match within(stream.try_next()).await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", o.metadata.resource_version.unwrap())),
            WatchEvent::Modified(o) => {
                seen.push(("MODIFIED", o.metadata.resource_version.unwrap()))
            }
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.metadata.resource_version.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|s| s.0).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    let revs: Vec<i64> = seen.iter().map(|s| s.1.parse().unwrap()).collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
    // Resuming from the first event's revision replays exactly what followed it.
    let mut resumed = api
        .watch(&WatchParams::default(), &seen[0].1)
        .await
        .unwrap()
        .boxed();
    match within(resumed.try_next()).await.unwrap().unwrap() {
        WatchEvent::Modified(o) => assert_eq!(o.metadata.resource_version.unwrap(), seen[1].1),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
}

#[tokio::test]
async fn pagination_returns_every_object_once() {
    let c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    for i in 0..25 {
        api.create(&PostParams::default(), &cm(&format!("p-{i:02}"), "x"))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("p-{i:02}")).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let mut obj = cm("held", "1");
    obj.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = api.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    match api.get("held").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("expected the object gone, got {other:?}"),
    }
}

#[tokio::test]
async fn objects_survive_a_restart_and_revisions_keep_growing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_in(tmp.path(), "127.0.0.1:0");
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let before = api
        .create(&PostParams::default(), &cm("keep", "1"))
        .await
        .unwrap();
    c.stop();
    let c = Cluster::start_in(tmp.path(), "127.0.0.1:0");
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let after = api.get("keep").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    let next = api
        .create(&PostParams::default(), &cm("next", "1"))
        .await
        .unwrap();
    let rv = |o: &ConfigMap| {
        o.metadata
            .resource_version
            .clone()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(rv(&next) > rv(&after));
}

#[tokio::test]
async fn kill_9_under_concurrent_writes_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut c = Cluster::start_in(tmp.path(), "127.0.0.1:0");
        let client = c.client().await;
        let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let mut tasks = Vec::new();
        for w in 0..16 {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("r{round}-w{w}-{i}");
                    match api.create(&PostParams::default(), &cm(&name, "v")).await {
                        Ok(o) => acked
                            .lock()
                            .unwrap()
                            .push((name, o.metadata.resource_version.unwrap())),
                        Err(_) => break,
                    }
                }
            }));
        }
        // Kill only once writes are landing (a loaded machine starts slowly),
        // then at a different moment each round.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while acked.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100 + 150 * round)).await;
        c.kill9();
        for t in tasks {
            let _ = t.await;
        }
        let acked = acked.lock().unwrap().clone();
        assert!(
            !acked.is_empty(),
            "round {round}: no write was acknowledged"
        );
        let c = Cluster::start_in(tmp.path(), "127.0.0.1:0");
        let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
        let list = api.list(&ListParams::default()).await.unwrap();
        let present: BTreeMap<String, String> = list
            .items
            .iter()
            .map(|o| {
                (
                    o.metadata.name.clone().unwrap(),
                    o.metadata.resource_version.clone().unwrap(),
                )
            })
            .collect();
        for (name, rv) in &acked {
            assert_eq!(
                present.get(name),
                Some(rv),
                "round {round}: acknowledged {name}@{rv} lost"
            );
        }
        drop(c);
    }
}

#[tokio::test]
async fn list_watch_stream_via_runtime_watcher_sees_initial_objects() {
    let c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    api.create(&PostParams::default(), &cm("pre", "1"))
        .await
        .unwrap();
    let events = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default());
    let mut objects = kube::runtime::WatchStreamExt::applied_objects(events).boxed();
    let first = within(objects.try_next()).await.unwrap().unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("pre"));
    api.create(&PostParams::default(), &cm("post", "1"))
        .await
        .unwrap();
    let second = within(objects.try_next()).await.unwrap().unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("post"));
}

#[tokio::test]
async fn requests_without_credentials_get_401_status() {
    let c = Cluster::start();
    let ca = std::fs::read(c.data_dir.join("pki/ca.crt")).unwrap();
    let mut config = kube::Config::new(c.url.parse().unwrap());
    config.root_cert = Some(vec![pem_to_der(&ca)]);
    let anon = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(anon, "default");
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 401);
            assert_eq!(s.reason, "Unauthorized");
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn deployment(name: &str) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn status_is_written_only_through_its_subresource_and_spec_bumps_generation() {
    use k8s_openapi::api::apps::v1::Deployment;
    let c = Cluster::start();
    let api: Api<Deployment> = Api::namespaced(c.client().await, "default");
    api.create(&PostParams::default(), &deployment("st"))
        .await
        .unwrap();
    // The main endpoint ignores status.
    api.patch(
        "st",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"replicas": 7}})),
    )
    .await
    .unwrap();
    let d = api.get("st").await.unwrap();
    assert!(d.status.as_ref().and_then(|s| s.replicas).is_none());
    assert_eq!(d.metadata.generation, Some(1));
    // The status subresource writes status and leaves spec and generation alone.
    let patched = api
        .patch_status(
            "st",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"replicas": 7}, "spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().replicas, Some(7));
    assert_eq!(patched.spec.unwrap().replicas, Some(1));
    assert_eq!(patched.metadata.generation, Some(1));
    let scaled = api
        .patch(
            "st",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
}

#[tokio::test]
async fn immutable_selector_and_generate_name() {
    use k8s_openapi::api::apps::v1::Deployment;
    let c = Cluster::start();
    let api: Api<Deployment> = Api::namespaced(c.client().await, "default");
    api.create(&PostParams::default(), &deployment("imm"))
        .await
        .unwrap();
    let change = serde_json::json!({"spec": {"selector": {"matchLabels": {"app": "other"}},
        "template": {"metadata": {"labels": {"app": "other"}}}}});
    match api
        .patch("imm", &PatchParams::default(), &Patch::Merge(change))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("spec.selector") && s.message.contains("field is immutable"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let mut generated = cm("", "1");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let a = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let b = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(a.starts_with("gen-") && a.len() == 9 && a != b, "{a} {b}");
}

#[tokio::test]
async fn binding_sets_the_node_once() {
    use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
    let c = Cluster::start();
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let binding = Binding {
        metadata: kube::api::ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some("node-1".into()),
            ..Default::default()
        },
    };
    let bind = |b: Binding| {
        let client = client.clone();
        async move {
            let req = http::Request::post("/api/v1/namespaces/default/pods/p/binding")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).unwrap())
                .unwrap();
            client.request::<serde_json::Value>(req).await
        }
    };
    bind(binding.clone()).await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let scheduled = bound.status.unwrap().conditions.unwrap();
    assert!(scheduled
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    match bind(binding).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("second binding must conflict, got {other:?}"),
    }
    // Field selectors on pods' spec.nodeName.
    let on_node = pods
        .list(&ListParams::default().fields("spec.nodeName=node-1"))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 1);
    let elsewhere = pods
        .list(&ListParams::default().fields("spec.nodeName=node-2"))
        .await
        .unwrap();
    assert!(elsewhere.items.is_empty());
}

#[tokio::test]
async fn terminating_and_missing_namespaces_refuse_new_objects() {
    use k8s_openapi::api::core::v1::Namespace;
    let c = Cluster::start();
    let client = c.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "doomed"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = nss.get("doomed").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    match api.create(&PostParams::default(), &cm("late", "1")).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("because it is being terminated"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let missing: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    match missing.create(&PostParams::default(), &cm("x", "1")).await {
        Err(kube::Error::Api(s)) => assert_eq!(
            (s.code, s.message.as_str()),
            (404, r#"namespaces "nowhere" not found"#)
        ),
        other => panic!("expected 404, got {other:?}"),
    }
}
