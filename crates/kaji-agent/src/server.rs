//! The agent's HTTPS endpoint, the subset of kubelet's server the API server
//! relays to: `/healthz`, `/pods`, `/containerLogs/{ns}/{pod}/{container}`
//! (what `kubectl logs` reads, with kubelet's query parameters) and
//! `/exec/{ns}/{pod}/{container}` over WebSocket (`kubectl exec`). One
//! server answers for every node of the process.
//!
//! Requests are not authenticated: like a kubelet started with anonymous
//! access, anything that reaches the port may read logs and exec. Bind it
//! to an address only the API server reaches.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{FutureExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kaji_runtime::logs::{follow_log, read_log, LogError, LogOptions};
use kaji_runtime::ContainerState;
use tokio::net::TcpListener;

use crate::context::NodeContext;
use crate::pods::runtime_state::PodRuntimeState;

/// What the handlers reach: every node of the process.
pub(crate) struct ServerState {
    pub nodes: Vec<Arc<NodeContext>>,
}

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    (code, [("content-type", "text/plain")], message.into()).into_response()
}

/// The router (exposed for tests that call it without TLS).
pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
        .with_state(state)
}

/// Serves HTTPS on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(state);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(error) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn pods(State(state): State<Arc<ServerState>>) -> Response {
    let items: Vec<Pod> = state
        .nodes
        .iter()
        .flat_map(|n| n.pods())
        .map(|p| p.as_ref().clone())
        .collect();
    let list = serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    });
    axum::Json(list).into_response()
}

/// The pod `ns/name` and the node running it.
fn find_pod(state: &ServerState, ns: &str, name: &str) -> Option<(Arc<NodeContext>, Arc<Pod>)> {
    state.nodes.iter().find_map(|node| {
        node.pods()
            .into_iter()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .map(|p| (node.clone(), p))
    })
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// The options of a `/containerLogs` request.
fn log_options(q: &HashMap<String, String>) -> Result<LogOptions, String> {
    let number = |key: &str| -> Result<Option<i64>, String> {
        q.get(key)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("invalid {key}: {v:?}"))
            })
            .transpose()
    };
    let mut since = None;
    if let Some(s) = number("sinceSeconds")? {
        since = Some(chrono::Utc::now() - chrono::Duration::seconds(s));
    }
    if let Some(t) = q.get("sinceTime") {
        let parsed = chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| format!("invalid sinceTime {t:?}: {e}"))?;
        since = Some(parsed.with_timezone(&chrono::Utc));
    }
    Ok(LogOptions {
        tail: number("tailLines")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        since,
        timestamps: flag(q, "timestamps"),
        limit_bytes: number("limitBytes")?.map(|n| u64::try_from(n).unwrap_or(0)),
        stream: None,
    })
}

async fn container_logs(
    State(state): State<Arc<ServerState>>,
    Path((ns, name, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q: HashMap<String, String> = query_pairs(raw.as_deref()).into_iter().collect();
    let options = match log_options(&q) {
        Ok(o) => o,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let Some((node, pod)) = find_pod(&state, &ns, &name) else {
        return text(StatusCode::NOT_FOUND, format!("pod \"{name}\" not found"));
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let runtime_state = match PodRuntimeState::observe(node.runtime.as_ref(), &uid).await {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let instances = runtime_state.instances(&container);
    let previous = flag(&q, "previous");
    let target = if previous {
        match instances.get(1) {
            Some(c) => (*c).clone(),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{name}\" not found"
                    ),
                )
            }
        }
    } else {
        match instances.first() {
            Some(c) => (*c).clone(),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"),
                )
            }
        }
    };
    let body = if flag(&q, "follow") && !previous && target.state == ContainerState::Running {
        let runtime = node.runtime.clone();
        let id = target.id.clone();
        let exited = async move {
            loop {
                match runtime.container_status(&id).await {
                    Ok(s) if s.state == ContainerState::Running => {}
                    _ => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .boxed();
        let stream =
            follow_log(target.log_path.clone(), options, exited).filter_map(|chunk| async move {
                match chunk {
                    Ok(bytes) => Some(Ok::<_, Infallible>(bytes::Bytes::from(bytes))),
                    Err(LogError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        None
                    }
                    Err(error) => {
                        tracing::debug!(%error, "following a log failed");
                        None
                    }
                }
            });
        Body::from_stream(stream)
    } else {
        match read_log(&target.log_path, &options).await {
            Ok(bytes) => Body::from(bytes),
            // No log file (the simulated runtime may write none): an empty log.
            Err(LogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Body::empty()
            }
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(body)
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "building the response"))
}

/// `kubectl exec` over WebSocket (`v5.channel.k8s.io`/`v4.channel.k8s.io`).
async fn exec(
    State(state): State<Arc<ServerState>>,
    Path((ns, name, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let pairs = query_pairs(raw.as_deref());
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let q: HashMap<String, String> = pairs.into_iter().collect();
    let Ok(ws) = ws else {
        return text(
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade (SPDY is not supported)",
        );
    };
    if command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let Some((node, pod)) = find_pod(&state, &ns, &name) else {
        return text(StatusCode::NOT_FOUND, format!("pod \"{name}\" not found"));
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let runtime_state = match PodRuntimeState::observe(node.runtime.as_ref(), &uid).await {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(target) = runtime_state
        .latest(&container)
        .filter(|c| c.state == ContainerState::Running)
    else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {name}"),
        );
    };
    let session = match node
        .runtime
        .exec(&target.id, &command, flag(&q, "stdin"), flag(&q, "tty"))
        .await
    {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    ws.protocols(kaji_streaming::PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let protocol = socket
                .protocol()
                .and_then(|p| p.to_str().ok())
                .unwrap_or(kaji_streaming::PROTOCOLS[1])
                .to_string();
            kaji_streaming::serve(socket, session, command, &protocol).await;
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_read_kubelets_query_parameters() {
        let q: HashMap<String, String> = [
            ("tailLines", "5"),
            ("timestamps", "true"),
            ("limitBytes", "100"),
            ("sinceTime", "2024-01-02T03:04:05Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = log_options(&q).unwrap();
        assert_eq!(o.tail, Some(5));
        assert!(o.timestamps);
        assert_eq!(o.limit_bytes, Some(100));
        assert_eq!(o.since.unwrap().to_rfc3339(), "2024-01-02T03:04:05+00:00");
        let bad: HashMap<String, String> = [("tailLines".to_string(), "-1".to_string())].into();
        assert!(log_options(&bad).is_err());
    }
}
