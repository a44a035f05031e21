//! Subresources served by the node a pod runs on: `pods/log` is relayed,
//! streaming, from the node agent's `/containerLogs` endpoint, found through
//! the Node's address and `status.daemonEndpoints`.
//!
//! Like kube-apiserver without `--kubelet-certificate-authority`, the
//! agent's serving certificate is not verified: agents make their own
//! self-signed certificates and nothing here has a CA for them yet.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use kaji_core::ApiError;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::handler::Query;
use crate::ApiServer;

/// The kubelet port Kubernetes assumes when a Node does not say.
const DEFAULT_AGENT_PORT: u16 = 10250;

/// How long connecting to an agent may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The query parameters `kubectl logs` sends that the agent understands.
const LOG_PARAMETERS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// `GET pods/{name}/log`: the container's log, streamed from its node.
pub(crate) async fn pod_log(
    server: &Arc<ApiServer>,
    ns: &str,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let pods = server
        .registry("", "v1", "pods")
        .ok_or_else(ApiError::no_route)?;
    let pod = pods.get(Some(ns), name).await?;
    let container = log_container(&pod, name, q.get("container").map(String::as_str))?;
    for numeric in ["tailLines", "sinceSeconds", "limitBytes"] {
        if let Some(v) = q.get(numeric) {
            if v.parse::<i64>().map_or(true, |n| n < 0) {
                return Err(ApiError::bad_request(format!(
                    "invalid {numeric}: {v:?} must be a non-negative integer"
                )));
            }
        }
    }
    let (host, port) = pod_agent(server, &pod, name).await?;
    let query = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for key in LOG_PARAMETERS {
            if let Some(v) = q.get(*key) {
                query.append_pair(key, v);
            }
        }
        query.finish()
    };
    let path = format!(
        "/containerLogs/{}/{}/{}?{query}",
        encode_segment(ns),
        encode_segment(name),
        encode_segment(&container),
    );
    let upstream = get(&host, port, &path).await?;
    if !upstream.status().is_success() {
        return Err(upstream_error(upstream).await);
    }
    let body = Body::new(upstream.into_body().map_err(axum::Error::new));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

/// The container whose log is asked for: named, or the pod's only one.
fn log_container(pod: &Value, pod_name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Where the node's agent listens: its InternalIP (else Hostname, else
/// ExternalIP) and its advertised port.
fn agent_address(node: &Value) -> Option<(String, u16)> {
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    let host = ["InternalIP", "Hostname", "ExternalIP"]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a["type"] == *kind)
                .and_then(|a| a["address"].as_str())
                .filter(|a| !a.is_empty())
        })?
        .to_string();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_AGENT_PORT);
    Some((host, port))
}

fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An HTTP/1 connection to an agent over TLS, able to upgrade.
async fn connect(
    authority: &str,
    host: &str,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>, String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|e| format!("dial tcp: {e}"))?
        .map_err(|e| format!("dial tcp: {e}"))?;
    let server_name =
        ServerName::try_from(host.to_string()).map_err(|e| format!("invalid server name: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(kaji_pki::insecure_client_config())
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls handshake: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "agent connection ended");
        }
    });
    Ok(sender)
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One request to an agent, returning the response with its body unread.
async fn send(
    host: &str,
    port: u16,
    request: http::request::Builder,
    path: &str,
) -> Result<Response<hyper::body::Incoming>, ApiError> {
    let authority = authority(host, port);
    let failed = |e: String| ApiError::internal(format!("Get \"https://{authority}{path}\": {e}"));
    let mut sender = connect(&authority, host).await.map_err(failed)?;
    let req = request
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| failed(e.to_string()))
}

/// One HTTPS GET to an agent, returning the response with its body unread.
async fn get(
    host: &str,
    port: u16,
    path: &str,
) -> Result<Response<hyper::body::Incoming>, ApiError> {
    send(host, port, http::Request::get(path), path).await
}

/// Reads an agent's refusal into a Status with its code, as Kubernetes
/// relays a kubelet's.
async fn upstream_error(upstream: Response<hyper::body::Incoming>) -> ApiError {
    let status = upstream.status();
    let body = upstream
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)])
        .trim()
        .to_string();
    ApiError::from_upstream(status.as_u16(), text)
}

/// Whether a request is for a streaming pod subresource that must be
/// proxied to the node as an upgraded connection.
pub(crate) fn is_streaming(path: &crate::path::ResourcePath) -> bool {
    path.group.is_empty()
        && path.resource == "pods"
        && path.name.is_some()
        && matches!(
            path.subresource.as_deref(),
            Some("exec" | "attach" | "portforward")
        )
}

/// `pods/{name}/exec|attach|portforward`: the client's upgrade request
/// (WebSocket or SPDY) is forwarded to the node agent, and once both sides
/// switch protocols the two connections are spliced together.
pub(crate) async fn stream(
    server: &Arc<ApiServer>,
    path: &crate::path::ResourcePath,
    mut req: http::Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (Some(ns), Some(name), Some(sub)) = (
        path.namespace.as_deref(),
        path.name.as_deref(),
        path.subresource.as_deref(),
    ) else {
        return Err(ApiError::no_route());
    };
    if !req.headers().contains_key(http::header::UPGRADE) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let q = crate::handler::parse_query(req.uri().query());
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let pod = server
        .registry("", "v1", "pods")
        .ok_or_else(ApiError::no_route)?
        .get(Some(ns), name)
        .await?;
    let (host, port) = pod_agent(server, &pod, name).await?;
    let agent_path = if sub == "portforward" {
        format!(
            "/portForward/{}/{}?{raw_query}",
            encode_segment(ns),
            encode_segment(name)
        )
    } else {
        let container = log_container(&pod, name, q.get("container").map(String::as_str))?;
        let verb = if sub == "exec" { "exec" } else { "attach" };
        format!(
            "/{verb}/{}/{}/{}?{raw_query}",
            encode_segment(ns),
            encode_segment(name),
            encode_segment(&container)
        )
    };
    let mut upstream_req = http::Request::builder().method(req.method().clone());
    for (k, v) in req.headers() {
        if k != http::header::AUTHORIZATION && k != http::header::HOST {
            upstream_req = upstream_req.header(k, v);
        }
    }
    let mut upstream = send(&host, port, upstream_req, &agent_path).await?;
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(upstream_error(upstream).await);
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = upstream.headers().clone();
    let client_side = hyper::upgrade::on(&mut req);
    let agent_side = hyper::upgrade::on(&mut upstream);
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client_side, agent_side) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "stream upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut agent = TokioIo::new(agent);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
            tracing::debug!(error = %e, "stream ended");
        }
    });
    Ok(resp)
}

/// The agent address of the node a pod is bound to.
async fn pod_agent(
    server: &Arc<ApiServer>,
    pod: &Value,
    name: &str,
) -> Result<(String, u16), ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let node = server
        .registry("", "v1", "nodes")
        .ok_or_else(ApiError::no_route)?
        .get(None, node_name)
        .await?;
    agent_address(&node).ok_or_else(|| {
        ApiError::bad_request(format!("node {node_name} has no address to reach it at"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"spec": {
            "containers": [{"name": "app"}, {"name": "sidecar"}],
            "initContainers": [{"name": "setup"}],
        }})
    }

    #[test]
    fn a_pod_with_several_containers_needs_a_container_name() {
        let err = log_container(&pod(), "web", None).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "a container name must be specified for pod web, choose one of: [app sidecar] or one of the init containers: [setup]"
        );
    }

    #[test]
    fn a_single_container_is_chosen_and_unknown_names_are_refused() {
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(log_container(&one, "p", None).unwrap(), "only");
        assert_eq!(log_container(&pod(), "p", Some("setup")).unwrap(), "setup");
        let err = log_container(&pod(), "p", Some("nope")).unwrap_err();
        assert_eq!(err.message, "container nope is not valid for pod p");
    }

    #[test]
    fn the_agent_is_reached_at_its_internal_ip_and_advertised_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}},
        }});
        assert_eq!(agent_address(&node), Some(("10.0.0.5".into(), 10251)));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n2"}]}});
        assert_eq!(
            agent_address(&bare),
            Some(("n2".into(), DEFAULT_AGENT_PORT))
        );
        assert_eq!(agent_address(&json!({})), None);
    }
}
