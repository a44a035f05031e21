//! A whole request through the in-process API server: method, path, query,
//! headers and body, routed and served over a memory store.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use kaji_apiserver::{ApiServer, Config};
use kaji_store::{MemoryStore, Store};

/// How long a response body is read before giving up on it: watches stream
/// until their timeout, and a long-running response is not a hang.
const BODY_READ_LIMIT: Duration = Duration::from_millis(50);

/// The server every request goes to, bootstrapped once (system namespaces,
/// the `kubernetes` Service), with its runtime.
fn server() -> &'static (tokio::runtime::Runtime, Arc<ApiServer>) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, Arc<ApiServer>)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime starts");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let config = Config {
            listen: ([127, 0, 0, 1], 0).into(),
            pki: None,
        };
        let server = runtime.block_on(async {
            let server = ApiServer::new(store, &config);
            server
                .bootstrap()
                .await
                .expect("bootstrap on a memory store");
            server
        });
        (runtime, server)
    })
}

/// Reads an HTTP/1-shaped request: a `METHOD target` line, `Name: value`
/// header lines, an empty line, then the body. `None` when the method or
/// target is not one an HTTP server would accept.
fn parse(data: &[u8]) -> Option<Request<Bytes>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?;
    let mut words = first.splitn(3, |&b| b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let target = http::Uri::try_from(words.next()?).ok()?;
    let mut req = Request::builder().method(method).uri(target);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            req = req.header(n, v);
        }
    }
    req.body(Bytes::copy_from_slice(body)).ok()
}

/// One request, served as the server serves it after authentication; the
/// response body is read (up to a time limit) so rendering runs too.
pub fn request(data: &[u8]) {
    serve(data);
}

/// Serves `data` as a request; the response status, `None` when it is not
/// a request an HTTP server would accept.
fn serve(data: &[u8]) -> Option<u16> {
    let req = parse(data)?;
    let (runtime, server) = server();
    Some(runtime.block_on(async {
        let resp = kaji_apiserver::handle_buffered(server, req).await;
        let status = resp.status().as_u16();
        let _ = tokio::time::timeout(BODY_READ_LIMIT, resp.into_body().collect()).await;
        status
    }))
}

#[cfg(test)]
mod tests {
    use super::serve;

    #[test]
    fn requests_reach_the_registries_and_errors_are_statuses() {
        let create = b"POST /api/v1/namespaces/default/configmaps\nContent-Type: application/json\n\n{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"unit\"}}";
        assert_eq!(serve(create), Some(201));
        assert_eq!(
            serve(b"GET /api/v1/namespaces/default/configmaps/unit"),
            Some(200)
        );
        assert_eq!(
            serve(b"GET /api/v1/namespaces/default/configmaps?labelSelector=a%20in%20("),
            Some(400)
        );
        assert_eq!(serve(b"G(T /"), None);
    }
}
