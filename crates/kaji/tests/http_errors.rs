//! Every error code the API promises, checked over raw HTTP with the admin
//! credentials: the body is always a `Status` with the right reason.

mod common;

use common::Cluster;
use http::{Method, Request};

async fn call(
    c: &kube::Client,
    method: Method,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(body)
        .unwrap();
    let resp = c.send(req.map(kube::client::Body::from)).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        code,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn assert_status(got: &(u16, serde_json::Value), code: u16, reason: &str) {
    assert_eq!(got.0, code, "{}", got.1);
    assert_eq!(got.1["kind"], "Status", "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert_eq!(got.1["reason"], reason, "{}", got.1);
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn malformed_oversized_and_unsupported_bodies_are_rejected_cleanly() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    assert_status(
        &call(
            &c,
            Method::POST,
            CMS,
            "application/json",
            b"{not json".to_vec(),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &call(&c, Method::POST, CMS, "text/plain", b"hello".to_vec()).await,
        415,
        "UnsupportedMediaType",
    );
    let huge = format!(
        r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    assert_status(
        &call(&c, Method::POST, CMS, "application/json", huge.into_bytes()).await,
        413,
        "RequestEntityTooLarge",
    );
    let mismatch = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec();
    assert_status(
        &call(&c, Method::POST, CMS, "application/json", mismatch).await,
        400,
        "BadRequest",
    );
    assert_status(
        &call(
            &c,
            Method::PATCH,
            &format!("{CMS}/none"),
            "application/merge-patch+json",
            b"{}".to_vec(),
        )
        .await,
        404,
        "NotFound",
    );
    assert_status(
        &call(&c, Method::PUT, CMS, "application/json", b"{}".to_vec()).await,
        405,
        "MethodNotAllowed",
    );
    // Nothing above left a half-written object behind.
    let (code, list) = call(&c, Method::GET, CMS, "application/json", vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(call(&c, Method::GET, "/readyz", "", vec![]).await.0, 200);
}

#[tokio::test]
async fn invalid_objects_are_422_with_every_cause() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    let bad = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
        "spec":{"replicas":-1,"selector":{"matchLabels":{"app":"a"}},
        "template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c"}]}}}}"#;
    let got = call(
        &c,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        bad.to_vec(),
    )
    .await;
    assert_status(&got, 422, "Invalid");
    let fields: Vec<&str> = got.1["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    for f in [
        "spec.replicas",
        "spec.template.metadata.labels",
        "spec.template.spec.containers[0].image",
    ] {
        assert!(fields.contains(&f), "missing cause {f}: {fields:?}");
    }
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_fields_and_warn_accepts() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    let body =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"f"},"data":{},"bogus":1}"#
            .to_vec();
    let strict = call(
        &c,
        Method::POST,
        &format!("{CMS}?fieldValidation=Strict"),
        "application/json",
        body.clone(),
    )
    .await;
    assert_status(&strict, 400, "BadRequest");
    assert!(
        strict.1["message"]
            .as_str()
            .unwrap()
            .contains(r#"unknown field "bogus""#),
        "{}",
        strict.1
    );
    let warned = call(&c, Method::POST, CMS, "application/json", body).await;
    assert_eq!(warned.0, 201);
    assert!(warned.1.get("bogus").is_none(), "unknown fields are pruned");
}

#[tokio::test]
async fn dry_run_validates_without_writing() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dry"}}"#.to_vec();
    let got = call(
        &c,
        Method::POST,
        &format!("{CMS}?dryRun=All"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(got.0, 201);
    assert_eq!(got.1["metadata"]["name"], "dry");
    assert_status(
        &call(&c, Method::GET, &format!("{CMS}/dry"), "", vec![]).await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn garbage_continue_tokens_are_400() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    let bad = call(
        &c,
        Method::GET,
        &format!("{CMS}?continue=garbage"),
        "",
        vec![],
    )
    .await;
    assert_status(&bad, 400, "BadRequest");
}

#[tokio::test]
async fn protobuf_only_clients_get_protobuf_and_json_clients_get_json() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    let body =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"pb"},"data":{"k":"v"}}"#
            .to_vec();
    assert_eq!(
        call(&c, Method::POST, CMS, "application/json", body)
            .await
            .0,
        201
    );
    let req = Request::get(format!("{CMS}/pb"))
        .header("accept", "application/vnd.kubernetes.protobuf")
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.kubernetes.protobuf"
    );
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&bytes[..4], b"k8s\0");
    let obj = kaji_protobuf::decode(&bytes).unwrap();
    assert_eq!(
        (obj["kind"].as_str(), obj["data"]["k"].as_str()),
        (Some("ConfigMap"), Some("v"))
    );
    assert_status(
        &call_accept(&c, &format!("{CMS}/pb"), "application/cbor").await,
        406,
        "NotAcceptable",
    );
}

#[tokio::test]
async fn watches_end_after_timeout_seconds() {
    let cluster = Cluster::start();
    let c = cluster.client().await;
    let started = std::time::Instant::now();
    let req = Request::get(format!("{CMS}?watch=true&timeoutSeconds=1"))
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        http_body_util::BodyExt::collect(resp.into_body()),
    )
    .await
    .expect("the watch must end by itself");
    body.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

async fn call_accept(c: &kube::Client, uri: &str, accept: &str) -> (u16, serde_json::Value) {
    let req = Request::get(uri)
        .header("accept", accept)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = c.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        code,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
