//! Shared test wiring: an API server, agents with quick timings, pod
//! builders, waiting on pods, and an HTTPS client for the agent's endpoint.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Event, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaji_agent::{BackoffPolicy, Timings};
use kaji_testenv::eventually;
use kube::api::{Api, ListParams, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub const NS: &str = "default";

/// Timings short enough for tests; CrashLoopBackOff as kubelet's unless
/// `quick_backoff`.
pub fn fast_timings(quick_backoff: bool) -> Timings {
    Timings {
        lease_renew: Duration::from_millis(500),
        node_status_update: Duration::from_millis(500),
        node_status_report: Duration::from_secs(5),
        relist: Duration::from_millis(200),
        resync: Duration::from_secs(2),
        orphan_gc: Duration::from_millis(500),
        object_ttl: Duration::from_millis(200),
        backoff: if quick_backoff {
            BackoffPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(4),
            }
        } else {
            BackoffPolicy::default()
        },
        ..Timings::default()
    }
}

pub fn container(name: &str, command: &[&str]) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox:1.36".into()),
        command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
        ..Container::default()
    }
}

/// A pod already bound to `node` (no scheduler needed).
pub fn pod(name: &str, node: &str, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers,
            termination_grace_period_seconds: Some(5),
            ..PodSpec::default()
        }),
        status: None,
    }
}

pub async fn create(client: &kube::Client, pod: &Pod) -> Pod {
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), pod)
        .await
        .expect("create pod")
}

/// Waits until pod `name` satisfies `check`, returning it.
pub async fn wait_pod(
    client: &kube::Client,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let api = Api::<Pod>::namespaced(client.clone(), NS);
    eventually(&format!("pod {name}: {what}"), || {
        let api = api.clone();
        let check = &check;
        async move { api.get_opt(name).await.ok().flatten().filter(|p| check(p)) }
    })
    .await
}

/// Waits until pod `name` is gone from the API.
pub async fn wait_gone(client: &kube::Client, name: &str) {
    let api = Api::<Pod>::namespaced(client.clone(), NS);
    eventually(&format!("pod {name} deleted"), || {
        let api = api.clone();
        async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn condition(p: &Pod, t: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

pub fn container_status<'a>(
    p: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

pub fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    container_status(p, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

pub fn is_running(p: &Pod, name: &str) -> bool {
    container_status(p, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

/// The runtime id of a container from its `containerID` (`scheme://id`).
pub fn runtime_id(p: &Pod, name: &str) -> Option<String> {
    let id = container_status(p, name)?.container_id.clone()?;
    Some(id.split_once("://")?.1.to_string())
}

/// Events about pod `name` with `reason`.
pub async fn events(client: &kube::Client, name: &str, reason: &str) -> Vec<Event> {
    let api = Api::<Event>::namespaced(client.clone(), NS);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// A TLS connection to the agent on 127.0.0.1:`port`, trusting only its
/// certificate.
pub async fn tls_connect(
    port: u16,
    cert_pem: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("PEM certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust the agent");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the agent");
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the agent")
}

/// GETs `path` from the agent on 127.0.0.1:`port`, trusting only its
/// certificate; returns the status and body.
pub async fn https_get(port: u16, cert_pem: &str, path: &str) -> (u16, String) {
    let tls = tls_connect(port, cert_pem).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", format!("127.0.0.1:{port}"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("agent answers");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    conn.abort();
    (status, String::from_utf8_lossy(&body).into_owned())
}
