//! Serving: the TCP/TLS accept loop, authentication per request, and the
//! non-resource endpoints (health, version, discovery, OpenAPI, metrics).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kaji_core::ApiError;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;

use crate::handler::{self, error_response, parse_query};
use crate::{discovery, encoding, path, ApiServer, KUBERNETES_VERSION};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Accepts connections on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish for up to five seconds.
///
/// # Errors
/// [`ServeError::Tls`] if the TLS configuration cannot be built.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = match &server.pki {
        Some(pki) => Some(tokio_rustls::TlsAcceptor::from(
            pki.server_config()
                .map_err(|e| ServeError::Tls(e.to_string()))?,
        )),
        None => None,
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let server = server.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    let stream = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let peer: Option<Vec<CertificateDer<'static>>> =
                        stream.get_ref().1.peer_certificates().map(|c| c.to_vec());
                    let peer = Arc::new(peer);
                    let svc = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        let peer = peer.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                handle(server, peer.as_deref(), req).await,
                            )
                        }
                    });
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let svc = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(server, None, req).await) }
                    });
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    server.stopping.send_replace(true);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}

fn text(code: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    text(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(value).expect("JSON serializes"),
    )
}

fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

async fn handle(
    server: Arc<ApiServer>,
    peer: Option<&[CertificateDer<'static>]>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let uri_path = parts.uri.path().to_string();
    if let Some(pki) = &server.pki {
        let auth = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if pki.authenticate(peer, auth).is_none() && !is_public(&uri_path) {
            return error_response(&ApiError::unauthorized());
        }
    }
    if let Err(e) = path::check_escapes(&uri_path) {
        return error_response(&e);
    }
    if let Some(rp) = path::parse(&uri_path).filter(crate::nodeproxy::is_streaming) {
        let req = Request::from_parts(parts, body);
        return match crate::nodeproxy::stream(&server, &rp, req).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        };
    }
    // A declared length over the limit is refused without waiting for all of
    // it: a body that can never be accepted is drained for a bounded time
    // only (so that an HTTP/1 client still reads the 413), and not at all
    // past the drain limit.
    if let Some(n) =
        declared_length(&parts.headers).filter(|n| *n > encoding::MAX_BODY_BYTES as u64)
    {
        if n <= DRAIN_LIMIT as u64 {
            let _ = tokio::time::timeout(Duration::from_secs(5), read_body(body)).await;
        }
        return error_response(&encoding::too_large());
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    route(&server, &parts, &uri_path, body, started).await
}

/// Serves one authenticated request whose body has been read in full, to
/// the resource handler or a non-resource endpoint.
async fn route(
    server: &Arc<ApiServer>,
    parts: &http::request::Parts,
    uri_path: &str,
    body: Bytes,
    started: Instant,
) -> Response<Body> {
    let query = parse_query(parts.uri.query());
    if let Some(rp) = path::parse(uri_path) {
        let method = parts.method.clone();
        let (resp, verb) = handler::serve(server, &method, rp, query, &parts.headers, body).await;
        tracing::debug!(%method, path = %uri_path, code = resp.status().as_u16(), verb, elapsed_ms = started.elapsed().as_millis() as u64, "request");
        return resp;
    }
    let resp = non_resource(server, parts, uri_path, body).await;
    server.metrics.observe(
        parts.method.as_str(),
        &uri_path_label(uri_path),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// Serves one request whose body is already in memory, as [`serve`] would
/// after authentication, without a connection: for in-process fuzzing and
/// tests. Node-proxy streaming requests (exec, attach, port-forward, logs
/// with follow) need a connection and are answered 400 here.
#[doc(hidden)]
pub async fn handle_buffered(server: &Arc<ApiServer>, req: Request<Bytes>) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let uri_path = parts.uri.path().to_string();
    if let Err(e) = path::check_escapes(&uri_path) {
        return error_response(&e);
    }
    if path::parse(&uri_path)
        .filter(crate::nodeproxy::is_streaming)
        .is_some()
    {
        return error_response(&ApiError::bad_request(
            "streaming requests need a connection",
        ));
    }
    if body.len() > encoding::MAX_BODY_BYTES {
        return error_response(&encoding::too_large());
    }
    route(server, &parts, &uri_path, body, started).await
}

/// How much of an oversized body is read (and dropped) before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The `Content-Length` the client declared, if any and well-formed.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the body up to [`encoding::MAX_BODY_BYTES`]. An oversized body is
/// still drained (up to a bound) so that an HTTP/1 client reads our 413
/// instead of a reset connection.
async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= encoding::MAX_BODY_BYTES {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > encoding::MAX_BODY_BYTES {
        return Err(encoding::too_large());
    }
    Ok(buf.freeze())
}

fn uri_path_label(path: &str) -> String {
    if path.starts_with("/openapi") {
        "openapi".into()
    } else {
        path.to_string()
    }
}

async fn non_resource(
    server: &ApiServer,
    parts: &http::request::Parts,
    path: &str,
    _body: Bytes,
) -> Response<Body> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return error_response(&ApiError::method_not_allowed(
            "only GET is served on this path",
        ));
    }
    let accept = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => {
            let verbose = parts.uri.query().is_some_and(|q| q.contains("verbose"));
            if verbose {
                let name = segs[0];
                text(StatusCode::OK, "text/plain; charset=utf-8", format!("[+]ping ok\n[+]etcd ok\n[+]poststarthook/bootstrap-namespaces ok\n{name} check passed\n"))
            } else {
                text(StatusCode::OK, "text/plain; charset=utf-8", "ok")
            }
        }
        ["version"] => json_response(&serde_json::json!({
            "major": KUBERNETES_VERSION.0,
            "minor": KUBERNETES_VERSION.1,
            "gitVersion": format!("v{}.{}.0-kaji.{}", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1, env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
        })),
        ["metrics"] => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            server.metrics.render(),
        ),
        ["api"] if discovery::wants_aggregated(accept) => {
            aggregated(discovery::aggregated(&server.served(), true))
        }
        ["apis"] if discovery::wants_aggregated(accept) => {
            aggregated(discovery::aggregated(&server.served(), false))
        }
        ["api"] => json_response(&discovery::api_versions(&server.server_address)),
        ["apis"] => json_response(&discovery::api_group_list(&server.served())),
        ["api", v] => discovery::api_resource_list(&server.served(), "", v)
            .map_or_else(not_found, |d| json_response(&d)),
        ["apis", g] => {
            discovery::api_group(&server.served(), g).map_or_else(not_found, |d| json_response(&d))
        }
        ["apis", g, v] => discovery::api_resource_list(&server.served(), g, v)
            .map_or_else(not_found, |d| json_response(&d)),
        ["openapi", "v2"] => openapi_v2(server, accept.contains("protobuf")),
        ["openapi", "v3"] => openapi_v3_index(server),
        ["openapi", "v3", "api", v] => openapi_gv(server, "", v),
        ["openapi", "v3", "apis", g, v] => openapi_gv(server, g, v),
        _ => not_found(),
    }
}

/// OpenAPI documents are large: rendered once, served as bytes. The
/// built-in documents never change; those that include custom resources
/// are kept for one [`crate::crds::Served::generation`] and rendered again
/// after CRDs change.
#[derive(Default)]
pub(crate) struct OpenApiCache {
    v2: std::sync::OnceLock<Bytes>,
    v3_index: std::sync::OnceLock<Bytes>,
    v3: std::sync::Mutex<std::collections::HashMap<String, Bytes>>,
    custom: std::sync::Mutex<CustomDocs>,
}

/// The documents served for one generation of the custom resources.
#[derive(Default)]
struct CustomDocs {
    /// The generation they were rendered for.
    generation: u64,
    /// By route: `v2`, `v2.pb`, `v3`, `v3/<group>/<version>`.
    docs: std::collections::HashMap<String, Bytes>,
}

fn builtin_doc(cell: &std::sync::OnceLock<Bytes>, render: impl FnOnce() -> Vec<u8>) -> Bytes {
    cell.get_or_init(|| Bytes::from(render())).clone()
}

fn to_json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON serializes"))
}

/// The hash clients use to cache a built-in group version's document: it
/// changes only when the served schema does, i.e. with the kaji version.
fn openapi_hash(gv: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (gv, env!("CARGO_PKG_VERSION")).hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The hash of a document that includes custom resources: of its content,
/// so that it changes with the CRDs (and differs between clusters that
/// once shared an address).
fn content_hash(doc: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The custom resources served now and their generation, read together.
fn served_custom(server: &ApiServer) -> (u64, Vec<kaji_openapi::CustomResource>) {
    let served = server.custom.read().unwrap_or_else(|p| p.into_inner());
    (served.generation(), served.schemas())
}

/// The document kept under `key`, if it was rendered for what is served now.
fn kept(server: &ApiServer, key: &str) -> Option<Bytes> {
    let generation = server
        .custom
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .generation();
    let docs = server
        .openapi
        .custom
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if docs.generation != generation {
        return None;
    }
    docs.docs.get(key).cloned()
}

/// Keeps a document rendered for `generation`, dropping those of older
/// generations; a document older than those kept is not kept.
fn keep(server: &ApiServer, generation: u64, key: String, bytes: Bytes) {
    let mut docs = server
        .openapi
        .custom
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if generation < docs.generation {
        return;
    }
    if generation > docs.generation {
        *docs = CustomDocs {
            generation,
            docs: Default::default(),
        };
    }
    docs.docs.insert(key, bytes);
}

fn openapi_v2(server: &ApiServer, protobuf: bool) -> Response<Body> {
    let (key, content_type) = if protobuf {
        ("v2.pb", kaji_openapi::V2_PROTOBUF_CONTENT_TYPE)
    } else {
        ("v2", "application/json")
    };
    if let Some(bytes) = kept(server, key) {
        return text(StatusCode::OK, content_type, bytes);
    }
    let (generation, custom) = served_custom(server);
    let bytes = match (custom.is_empty(), protobuf) {
        (true, true) => Bytes::from_static(kaji_openapi::v2_protobuf()),
        (true, false) => builtin_doc(&server.openapi.v2, || {
            serde_json::to_vec(&kaji_openapi::v2()).expect("JSON serializes")
        }),
        (false, true) => Bytes::from(kaji_openapi::v2_protobuf_with(&custom)),
        (false, false) => to_json_bytes(&kaji_openapi::v2_with(&custom)),
    };
    keep(server, generation, key.to_string(), bytes.clone());
    text(StatusCode::OK, content_type, bytes)
}

fn openapi_v3_index(server: &ApiServer) -> Response<Body> {
    if let Some(bytes) = kept(server, "v3") {
        return text(StatusCode::OK, "application/json", bytes);
    }
    let (generation, custom) = served_custom(server);
    let bytes = if custom.is_empty() {
        builtin_doc(&server.openapi.v3_index, || {
            serde_json::to_vec(&kaji_openapi::v3_index(openapi_hash)).expect("JSON serializes")
        })
    } else {
        // Custom group versions are hashed by content, so render them now.
        let mut hashes = std::collections::HashMap::new();
        for (info, _) in &custom {
            let key = if info.group.is_empty() {
                format!("api/{}", info.version)
            } else {
                format!("apis/{}/{}", info.group, info.version)
            };
            if hashes.contains_key(&key) {
                continue;
            }
            if let Some(doc) = gv_document(server, info.group, info.version, &custom) {
                hashes.insert(key, content_hash(&doc));
                let route = format!("v3/{}/{}", info.group, info.version);
                keep(server, generation, route, doc);
            }
        }
        to_json_bytes(&kaji_openapi::v3_index_with(&custom, |key| {
            hashes
                .get(key)
                .cloned()
                .unwrap_or_else(|| openapi_hash(key))
        }))
    };
    keep(server, generation, "v3".to_string(), bytes.clone());
    text(StatusCode::OK, "application/json", bytes)
}

fn openapi_gv(server: &ApiServer, group: &str, version: &str) -> Response<Body> {
    let route = format!("v3/{group}/{version}");
    if let Some(bytes) = kept(server, &route) {
        return text(StatusCode::OK, "application/json", bytes);
    }
    let (generation, custom) = served_custom(server);
    match gv_document(server, group, version, &custom) {
        Some(bytes) => {
            keep(server, generation, route, bytes.clone());
            text(StatusCode::OK, "application/json", bytes)
        }
        None => not_found(),
    }
}

/// One group version's v3 document: with its custom resources if it has
/// any, otherwise the (cached) built-in one.
fn gv_document(
    server: &ApiServer,
    group: &str,
    version: &str,
    custom: &[kaji_openapi::CustomResource],
) -> Option<Bytes> {
    if custom
        .iter()
        .any(|(info, _)| info.group == group && info.version == version)
    {
        return kaji_openapi::v3_group_version_with(group, version, custom)
            .map(|doc| to_json_bytes(&doc));
    }
    let key = format!("{group}/{version}");
    let mut docs = server.openapi.v3.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(bytes) = docs.get(&key) {
        return Some(bytes.clone());
    }
    let bytes = to_json_bytes(&kaji_openapi::v3_group_version(group, version)?);
    docs.insert(key, bytes.clone());
    Some(bytes)
}

fn aggregated(value: serde_json::Value) -> Response<Body> {
    let mut r = json_response(&value);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    r
}

fn not_found() -> Response<Body> {
    error_response(&ApiError::no_route())
}
