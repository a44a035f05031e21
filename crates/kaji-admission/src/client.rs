//! Calling a webhook: one HTTPS POST of an AdmissionReview, the server
//! verified against the webhook's `caBundle`, bounded by its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where one call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as shown in errors (`https://host:port/path`).
    pub url: String,
    /// What to connect to: a host name or IP.
    pub connect_host: String,
    /// The TCP port.
    pub port: u16,
    /// The name the server certificate must carry.
    pub server_name: String,
    /// The request target: path and query.
    pub path_and_query: String,
    /// The `Host` header.
    pub authority: String,
}

impl Endpoint {
    /// The endpoint of a `clientConfig.url`, with `timeout` added to its
    /// query as Kubernetes does.
    ///
    /// # Errors
    /// A description of what is wrong with the URL.
    pub fn from_url(url: &str, timeout_seconds: u64) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "invalid url {url:?}: 'https' is the only allowed URL scheme"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("invalid url {url:?}: host must be specified"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(443);
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        let path_and_query = format!("{path}?timeout={timeout_seconds}s");
        Ok(Endpoint {
            url: format!("https://{}{path_and_query}", authority.as_str()),
            connect_host: host.clone(),
            port,
            server_name: host,
            path_and_query,
            authority: authority.as_str().to_string(),
        })
    }

    /// The endpoint of a Service reached at `address` (an endpoint IP, or
    /// the service's DNS name), verified as `<name>.<namespace>.svc`.
    pub fn for_service(
        namespace: &str,
        name: &str,
        path: &str,
        address: &str,
        port: u16,
        service_port: u16,
        timeout_seconds: u64,
    ) -> Self {
        let host = format!("{name}.{namespace}.svc");
        let path = if path.is_empty() { "/" } else { path };
        let path_and_query = format!("{path}?timeout={timeout_seconds}s");
        let authority = format!("{host}:{service_port}");
        Endpoint {
            url: format!("https://{authority}{path_and_query}"),
            connect_host: address.to_string(),
            port,
            server_name: host,
            path_and_query,
            authority,
        }
    }
}

/// Why a call did not produce a response body.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No TCP connection (refused, unreachable, unresolvable).
    #[error("Post \"{url}\": dial tcp {address}: {source}")]
    Connect {
        /// The URL called.
        url: String,
        /// `host:port` dialled.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted or mismatched certificate).
    #[error("Post \"{url}\": tls: {source}")]
    Tls {
        /// The URL called.
        url: String,
        /// The handshake error.
        #[source]
        source: std::io::Error,
    },
    /// The `caBundle` held no usable certificate, or the server name is invalid.
    #[error("Post \"{url}\": {message}")]
    Config {
        /// The URL called.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The HTTP exchange failed.
    #[error("Post \"{url}\": {source}")]
    Http {
        /// The URL called.
        url: String,
        /// The protocol error.
        #[source]
        source: hyper::Error,
    },
    /// No answer within `timeoutSeconds`.
    #[error("Post \"{url}\": context deadline exceeded")]
    Timeout {
        /// The URL called.
        url: String,
    },
    /// The webhook answered with a status outside 2xx.
    #[error("the server responded with the status code {code} but did not return more information ({body})")]
    Status {
        /// The HTTP status.
        code: u16,
        /// The start of the body.
        body: String,
    },
}

/// TLS configurations by CA bundle, built once each.
#[derive(Default)]
pub struct Client {
    configs: Mutex<HashMap<Option<Vec<u8>>, Arc<ClientConfig>>>,
}

/// Where the machine's trusted roots usually are, for webhooks without a
/// `caBundle`.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

impl Client {
    fn config(&self, ca_bundle: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
        let key = ca_bundle.map(<[u8]>::to_vec);
        if let Some(config) = self.configs.lock().expect("not poisoned").get(&key) {
            return Ok(config.clone());
        }
        let mut roots = RootCertStore::empty();
        let pem = match ca_bundle {
            Some(pem) => pem.to_vec(),
            None => SYSTEM_ROOTS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .unwrap_or_default(),
        };
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            // Certificates rustls cannot use are skipped, as Go's pool does.
            let _ = roots.add(cert);
        }
        if ca_bundle.is_some() && roots.is_empty() {
            return Err("caBundle holds no valid PEM certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.configs
            .lock()
            .expect("not poisoned")
            .insert(key, config.clone());
        Ok(config)
    }

    /// POSTs `body` to `endpoint` and returns the response body, all within
    /// `timeout`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        ca_bundle: Option<&[u8]>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        match tokio::time::timeout(timeout, self.exchange(endpoint, ca_bundle, body)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                url: endpoint.url.clone(),
            }),
        }
    }

    async fn exchange(
        &self,
        endpoint: &Endpoint,
        ca_bundle: Option<&[u8]>,
        body: Vec<u8>,
    ) -> Result<Bytes, CallError> {
        let url = endpoint.url.clone();
        let config = self
            .config(ca_bundle)
            .map_err(|message| CallError::Config {
                url: url.clone(),
                message,
            })?;
        let server_name =
            ServerName::try_from(endpoint.server_name.clone()).map_err(|e| CallError::Config {
                url: url.clone(),
                message: format!("invalid server name {:?}: {e}", endpoint.server_name),
            })?;
        let address = if endpoint.connect_host.contains(':') {
            format!("[{}]:{}", endpoint.connect_host, endpoint.port)
        } else {
            format!("{}:{}", endpoint.connect_host, endpoint.port)
        };
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|source| CallError::Connect {
                url: url.clone(),
                address: address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|source| CallError::Tls {
                url: url.clone(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|source| CallError::Http {
                    url: url.clone(),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
        let request = http::Request::post(&endpoint.path_and_query)
            .header(http::header::HOST, &endpoint.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .expect("a request from valid parts");
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| CallError::Http {
                url: url.clone(),
                source,
            })?;
        let code = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|source| CallError::Http {
                url: url.clone(),
                source,
            })?
            .to_bytes();
        if !(200..300).contains(&code) {
            let shown: String = String::from_utf8_lossy(&bytes).chars().take(256).collect();
            return Err(CallError::Status { code, body: shown });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_endpoints_with_the_timeout_in_the_query() {
        let e = Endpoint::from_url("https://127.0.0.1:8443/validate", 5).unwrap();
        assert_eq!(e.connect_host, "127.0.0.1");
        assert_eq!(e.port, 8443);
        assert_eq!(e.path_and_query, "/validate?timeout=5s");
        assert_eq!(e.url, "https://127.0.0.1:8443/validate?timeout=5s");
        let e = Endpoint::from_url("https://hooks.example.com", 10).unwrap();
        assert_eq!((e.port, e.path_and_query.as_str()), (443, "/?timeout=10s"));
        assert!(Endpoint::from_url("http://x/", 10).is_err());
    }

    #[test]
    fn services_are_verified_by_their_service_name() {
        let e = Endpoint::for_service("ns", "hook", "/m", "10.0.0.5", 9443, 443, 10);
        assert_eq!(e.server_name, "hook.ns.svc");
        assert_eq!(e.url, "https://hook.ns.svc:443/m?timeout=10s");
        assert_eq!((e.connect_host.as_str(), e.port), ("10.0.0.5", 9443));
    }
}
