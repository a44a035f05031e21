//! Watch fan-out over HTTP: many watchers of one collection, in different
//! media types, views and selectors, each get exactly their own view of the
//! same changes, in order, as well-formed lines. The server decodes and
//! encodes each change once and shares the bytes between watchers that see
//! it the same way; this checks that sharing changes nothing a client sees.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Cluster;
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};

const NS: &str = "fan";
const CMS: &str = "/api/v1/namespaces/fan/configmaps";
const JSON: &str = "application/json";
const PROTOBUF_OR_JSON: &str = "application/vnd.kubernetes.protobuf, application/json";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const TABLE: &str = "application/json;as=Table;g=meta.k8s.io;v=v1";
/// Watchers per (query, media type): enough that most lines a watcher gets
/// were encoded for another.
const COPIES: usize = 3;

async fn call(c: &kube::Client, method: Method, uri: &str, ct: &str, body: Value) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct)
        .header("accept", JSON)
        .body(match body {
            Value::Null => kube::client::Body::empty(),
            body => kube::client::Body::from(serde_json::to_vec(&body).unwrap()),
        })
        .unwrap();
    let resp = c.send(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// One open watch: its content type and the raw lines read so far.
struct Watch {
    body: kube::client::Body,
    content_type: String,
    buf: Vec<u8>,
}

impl Watch {
    async fn open(c: &kube::Client, query: &str, accept: &str) -> Watch {
        let req = Request::get(format!("{CMS}?watch=true&timeoutSeconds=120&{query}"))
            .header("accept", accept)
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = c.send(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        Watch {
            body: resp.into_body(),
            content_type,
            buf: Vec::new(),
        }
    }

    /// The next line, raw.
    async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                return self.buf.drain(..=nl).collect();
            }
            let frame = tokio::time::timeout(Duration::from_secs(20), self.body.frame())
                .await
                .expect("timed out waiting for a watch event")
                .expect("the watch ended early")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// The next `n` events about the test's objects (names starting with
    /// `fan-`; controllers write others), and bookmarks, each with its raw line.
    async fn events(&mut self, n: usize) -> Vec<(Value, Vec<u8>)> {
        let mut out = Vec::new();
        while out.len() < n {
            let line = self.line().await;
            assert!(
                line.len() > 1 && !line[..line.len() - 1].contains(&b'\n'),
                "one event per line"
            );
            let ev: Value = serde_json::from_slice(&line).unwrap_or_else(|e| {
                panic!(
                    "not a JSON line ({e}): {:?}",
                    String::from_utf8_lossy(&line)
                )
            });
            assert_eq!(
                ev.as_object()
                    .map(|o| o.keys().map(String::as_str).collect::<Vec<_>>()),
                Some(vec!["type", "object"]),
                "{ev}"
            );
            if name(&ev).starts_with("fan-") || ev["type"] == "BOOKMARK" {
                out.push((ev, line));
            }
        }
        out
    }
}

/// The object an event is about: itself, or a Table's only row's object.
fn inner(ev: &Value) -> &Value {
    match ev["object"]["kind"].as_str() {
        Some("Table") => &ev["object"]["rows"][0]["object"],
        _ => &ev["object"],
    }
}

fn name(ev: &Value) -> &str {
    inner(ev)["metadata"]["name"].as_str().unwrap_or("")
}

fn summary(events: &[(Value, Vec<u8>)]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|(ev, _)| (ev["type"].as_str().unwrap().to_owned(), name(ev).to_owned()))
        .collect()
}

/// (type, name) of the events a watcher should get, in order.
type Expected<'a> = [(&'a str, &'a str)];

fn cm(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": {"app": app}}, "data": {"k": name}})
}

/// What all watchers must agree on, across views.
#[derive(Default)]
struct Seen {
    /// (type, resourceVersion) → the full-object line: the same for every
    /// watcher that sees the change as that type in the full-object view.
    lines: HashMap<(String, i64), Vec<u8>>,
    /// resourceVersion → (name, app label): one change per revision, the
    /// same object in every view.
    objects: HashMap<i64, (String, String)>,
}

impl Seen {
    fn check(&mut self, what: &str, accept: &str, got: &[(Value, Vec<u8>)]) {
        let mut last = 0i64;
        for (ev, line) in got {
            let kind = ev["type"].as_str().unwrap().to_owned();
            let obj = inner(ev);
            let rv: i64 = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(rv > last, "resourceVersions increase: {what}");
            last = rv;
            if kind == "BOOKMARK" {
                continue;
            }
            let app = obj["metadata"]["labels"]["app"]
                .as_str()
                .unwrap()
                .to_owned();
            let seen = self
                .objects
                .entry(rv)
                .or_insert_with(|| (name(ev).to_owned(), app.clone()));
            assert_eq!(*seen, (name(ev).to_owned(), app), "{what}: at {rv}");
            match accept {
                METADATA => {
                    assert_eq!(obj["kind"], "PartialObjectMetadata", "{what}");
                    assert!(obj.get("data").is_none(), "{what}");
                }
                TABLE => {
                    assert_eq!(ev["object"]["kind"], "Table", "{what}");
                    assert_eq!(ev["object"]["rows"].as_array().map(Vec::len), Some(1));
                    assert_eq!(
                        ev["object"]["metadata"]["resourceVersion"],
                        obj["metadata"]["resourceVersion"]
                    );
                    assert_eq!(obj["kind"], "PartialObjectMetadata", "{what}");
                }
                _ => {
                    assert_eq!(
                        (obj["kind"].as_str(), obj["apiVersion"].as_str()),
                        (Some("ConfigMap"), Some("v1")),
                        "{what}"
                    );
                    assert_eq!(obj["data"]["k"], obj["metadata"]["name"], "{what}");
                    let seen = self
                        .lines
                        .entry((kind.clone(), rv))
                        .or_insert_with(|| line.clone());
                    assert_eq!(
                        String::from_utf8_lossy(seen),
                        String::from_utf8_lossy(line),
                        "{what}: the same event is the same line for every watcher"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_of_one_stream_each_get_their_own_view_in_order() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    call(
        &c,
        Method::POST,
        "/api/v1/namespaces",
        JSON,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    call(&c, Method::POST, CMS, JSON, cm("fan-seed", "seed")).await;
    let list = call(&c, Method::GET, CMS, JSON, Value::Null).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    // Expected (type, name) after the seed, by selector.
    let all = [
        ("ADDED", "fan-a"),
        ("ADDED", "fan-b"),
        ("MODIFIED", "fan-a"),
        ("MODIFIED", "fan-b"),
        ("DELETED", "fan-a"),
        ("DELETED", "fan-b"),
    ];
    // fan-a leaves app=web by a label change (DELETED), fan-b joins it (ADDED).
    let web = [
        ("ADDED", "fan-a"),
        ("DELETED", "fan-a"),
        ("ADDED", "fan-b"),
        ("DELETED", "fan-b"),
    ];
    let not_web = [
        ("ADDED", "fan-b"),
        ("ADDED", "fan-a"),
        ("DELETED", "fan-b"),
        ("DELETED", "fan-a"),
    ];
    let only_a = [
        ("ADDED", "fan-a"),
        ("MODIFIED", "fan-a"),
        ("DELETED", "fan-a"),
    ];
    let from = format!("resourceVersion={rv}");
    let is_web = format!("{from}&labelSelector=app%3Dweb");
    let not_web_q = format!("{from}&labelSelector=app%21%3Dweb");
    let name_a = format!("{from}&fieldSelector=metadata.name%3Dfan-a");
    let views: Vec<(String, &str, &Expected)> = vec![
        (from.clone(), JSON, &all),
        (from.clone(), PROTOBUF_OR_JSON, &all),
        (from.clone(), METADATA, &all),
        (from.clone(), TABLE, &all),
        (format!("{from}&allowWatchBookmarks=true"), JSON, &all),
        (is_web.clone(), JSON, &web),
        (is_web.clone(), PROTOBUF_OR_JSON, &web),
        (is_web, METADATA, &web),
        (not_web_q.clone(), JSON, &not_web),
        (not_web_q, TABLE, &not_web),
        (name_a, JSON, &only_a),
    ];
    let mut watches = Vec::new();
    for _ in 0..COPIES {
        for (query, accept, _) in &views {
            watches.push(Watch::open(&c, query, accept).await);
        }
    }
    // Initial events, then a bookmark, then the same changes.
    let mut initial = Watch::open(
        &c,
        "sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan",
        JSON,
    )
    .await;
    let start = summary(&initial.events(2).await);
    assert_eq!(start[0], ("ADDED".into(), "fan-seed".into()));
    assert_eq!(start[1].0, "BOOKMARK");

    call(&c, Method::POST, CMS, JSON, cm("fan-a", "web")).await;
    call(&c, Method::POST, CMS, JSON, cm("fan-b", "db")).await;
    let merge = "application/merge-patch+json";
    for (name, app) in [("fan-a", "db"), ("fan-b", "web")] {
        let patch = json!({"metadata": {"labels": {"app": app}}});
        call(&c, Method::PATCH, &format!("{CMS}/{name}"), merge, patch).await;
    }
    for name in ["fan-a", "fan-b"] {
        call(
            &c,
            Method::DELETE,
            &format!("{CMS}/{name}"),
            JSON,
            Value::Null,
        )
        .await;
    }

    let mut seen = Seen::default();
    let as_strings = |want: &[(&str, &str)]| -> Vec<(String, String)> {
        want.iter()
            .map(|(t, n)| (t.to_string(), n.to_string()))
            .collect()
    };
    let rest = initial.events(all.len()).await;
    assert_eq!(summary(&rest), as_strings(&all), "sendInitialEvents");
    seen.check("sendInitialEvents", JSON, &rest);
    // The full-object lines, as the unselected watch saw them.
    let full: Vec<Vec<u8>> = rest.into_iter().map(|(_, line)| line).collect();

    for (w, (query, accept, want)) in watches.iter_mut().zip(views.iter().cycle()) {
        let what = format!("{query} ({accept})");
        let got = w.events(want.len()).await;
        assert_eq!(summary(&got), as_strings(want), "{what}");
        assert_eq!(w.content_type, "application/json", "{what}");
        seen.check(&what, accept, &got);
        if want.len() == all.len() && matches!(*accept, JSON | PROTOBUF_OR_JSON) {
            let lines: Vec<Vec<u8>> = got.into_iter().map(|(_, line)| line).collect();
            assert_eq!(lines, full, "{what}");
        } else if want == &&web[..] {
            // A label change out of the selector is a DELETED carrying the new labels.
            assert_eq!(
                inner(&got[1].0)["metadata"]["labels"]["app"],
                "db",
                "{what}"
            );
        }
    }

    // Every revision seen is one of the six changes, and a deletion carries
    // its own revision (not the object's last one).
    assert_eq!(seen.objects.len(), all.len());
    let deletions: Vec<i64> = seen
        .lines
        .keys()
        .filter(|(kind, _)| kind == "DELETED")
        .map(|(_, rv)| *rv)
        .collect();
    let last_put = seen
        .lines
        .keys()
        .filter(|(kind, _)| kind == "MODIFIED")
        .map(|(_, rv)| *rv)
        .max()
        .unwrap();
    // DELETED lines at the two label changes (to app=web and app!=web
    // watchers), and at the two deletions, after every put.
    assert_eq!(deletions.len(), 4, "{deletions:?}");
    assert_eq!(deletions.iter().filter(|rv| **rv > last_put).count(), 2);
}
