//! Shared setup: a real HTTPS webhook server (rustls, a certificate from a
//! test CA) and registries on an in-memory store whose writes pass through
//! [`Webhooks`].

#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kaji_admission::Webhooks;
use kaji_core::{catalogue, ApiError};
use kaji_registry::{BuiltinStrategy, Outcome, Registry, WriteOptions};
use kaji_store::{MemoryStore, Store};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

/// What a handler answers: the AdmissionReview `response` fields (uid and
/// envelope are added), after an optional delay.
pub type Reply = Pin<Box<dyn Future<Output = Value> + Send>>;
/// A webhook handler: request path and review in, response fields out.
pub type Handler = Arc<dyn Fn(String, Value) -> Reply + Send + Sync>;

/// A CA and a serving certificate for 127.0.0.1, localhost and the
/// Service `hook` in `default` (`hook.default.svc`).
pub struct Certs {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server configuration.
    pub config: Arc<rustls::ServerConfig>,
}

/// A fresh CA and a certificate it signed for the loopback names.
pub fn certs() -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "hook.default.svc".to_string(),
    ])
    .unwrap()
    .signed_by(&leaf_key, &issuer)
    .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    Certs {
        ca_pem: ca_cert.pem(),
        config: Arc::new(config),
    }
}

/// A running webhook server.
pub struct Server {
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// `caBundle` for it: base64 of the CA PEM.
    pub ca_bundle: String,
    /// Every (path, AdmissionReview) received, in order.
    pub seen: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The reviews received on `path`.
    pub fn requests(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// Starts a webhook server on 127.0.0.1:0 answering with `handler`.
pub async fn serve(handler: Handler) -> Server {
    let certs = certs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.config.clone());
    let recorded = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), recorded.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let (handler, seen) = (handler.clone(), seen.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let review: Value =
                                serde_json::from_slice(&body).unwrap_or(Value::Null);
                            seen.lock().unwrap().push((path.clone(), review.clone()));
                            let mut response = handler(path, review.clone()).await;
                            if response.get("uid").is_none() {
                                response["uid"] = review
                                    .pointer("/request/uid")
                                    .cloned()
                                    .unwrap_or(Value::Null);
                            }
                            let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(
                                        serde_json::to_vec(&answer).unwrap(),
                                    )))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        base,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem),
        seen,
        task,
    }
}

/// A handler from a plain function of (path, review).
pub fn handler(f: impl Fn(&str, &Value) -> Value + Send + Sync + 'static) -> Handler {
    let f = Arc::new(f);
    Arc::new(move |path, review| {
        let f = f.clone();
        Box::pin(async move { f(&path, &review) })
    })
}

/// `{"allowed": true}`.
pub fn allowed() -> Value {
    json!({"allowed": true})
}

/// A JSON patch answer.
pub fn patched(ops: Value) -> Value {
    json!({"allowed": true, "patchType": "JSONPatch",
           "patch": base64::engine::general_purpose::STANDARD.encode(ops.to_string())})
}

/// A loopback port nothing listens on.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Registries on one store, writes admitted by `webhooks`.
pub struct Cluster {
    pub store: Arc<MemoryStore>,
    pub webhooks: Arc<Webhooks>,
    pub namespaces: Arc<Registry>,
    pub configmaps: Arc<Registry>,
    pub mutating: Arc<Registry>,
    pub validating: Arc<Registry>,
}

/// A registry for `group`/`plural` on `store`, admitted by `webhooks`.
pub fn registry(
    store: &Arc<MemoryStore>,
    group: &str,
    plural: &str,
    webhooks: &Arc<Webhooks>,
) -> Arc<Registry> {
    let strategy = BuiltinStrategy::new(catalogue::find(group, "v1", plural).unwrap());
    let store: Arc<dyn Store> = store.clone();
    Arc::new(Registry::new(store, Arc::new(strategy)).with_admission(webhooks.clone()))
}

/// A store with namespaces `default` and `prod` (labelled `env: prod`), and
/// the webhook machinery started.
pub async fn cluster() -> Cluster {
    let store = Arc::new(MemoryStore::new());
    let webhooks = Webhooks::new();
    let c = Cluster {
        namespaces: registry(&store, "", "namespaces", &webhooks),
        configmaps: registry(&store, "", "configmaps", &webhooks),
        mutating: registry(
            &store,
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            &webhooks,
        ),
        validating: registry(
            &store,
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            &webhooks,
        ),
        webhooks,
        store,
    };
    for ns in [
        json!({"metadata": {"name": "default"}}),
        json!({"metadata": {"name": "prod", "labels": {"env": "prod"}}}),
    ] {
        c.namespaces
            .create(None, ns, &WriteOptions::default())
            .await
            .unwrap();
    }
    c.webhooks.start(
        c.mutating.clone(),
        c.validating.clone(),
        c.namespaces.clone(),
    );
    c
}

/// A webhook entry calling `url` for every CREATE/UPDATE/DELETE of ConfigMaps.
pub fn hook(name: &str, url: &str, ca_bundle: &str) -> Value {
    json!({"name": name, "clientConfig": {"url": url, "caBundle": ca_bundle},
           "sideEffects": "None", "admissionReviewVersions": ["v1"],
           "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""],
                      "apiVersions": ["v1"], "resources": ["configmaps"]}]})
}

/// A ConfigMap in `ns` with `labels`.
pub fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

impl Cluster {
    /// Creates a configuration (`mutating` or not) and waits until its
    /// webhooks are in effect.
    pub async fn configure(&self, mutating: bool, name: &str, hooks: Vec<Value>) {
        let (registry, kind) = if mutating {
            (&self.mutating, "MutatingWebhookConfiguration")
        } else {
            (&self.validating, "ValidatingWebhookConfiguration")
        };
        let names: Vec<String> = hooks
            .iter()
            .map(|h| h["name"].as_str().unwrap().to_string())
            .collect();
        let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                         "metadata": {"name": name}, "webhooks": hooks});
        registry
            .create(None, obj, &WriteOptions::default())
            .await
            .unwrap();
        self.wait_for(|now| names.iter().all(|n| now.contains(n)))
            .await;
    }

    /// Waits until the webhook names in effect satisfy `ok`.
    pub async fn wait_for(&self, ok: impl Fn(&[String]) -> bool) {
        for _ in 0..500 {
            if ok(&self.webhooks.names()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("webhooks never became {:?}", self.webhooks.names());
    }

    /// Creates a ConfigMap in `ns`.
    pub async fn create(&self, ns: &str, obj: Value) -> Result<Outcome, ApiError> {
        self.configmaps
            .create(Some(ns), obj, &WriteOptions::default())
            .await
    }

    /// Creates a ConfigMap in `ns` as a dry run.
    pub async fn create_dry(&self, ns: &str, obj: Value) -> Result<Outcome, ApiError> {
        let opts = WriteOptions {
            dry_run: true,
            ..WriteOptions::default()
        };
        self.configmaps.create(Some(ns), obj, &opts).await
    }
}
