//! TLS for the agent: a self-signed serving certificate (kubelet makes one
//! when it is given none) and a client configuration that accepts any
//! certificate, for HTTPS probes (kubelet does not verify those either).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the serving certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating the certificate failed.
    #[error("generating the agent's certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material.
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Writing the certificate to the data directory failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A serving certificate and its rustls configuration.
pub struct ServingCert {
    /// The certificate, PEM (clients that want to verify the agent trust it).
    pub cert_pem: String,
    /// The server configuration.
    pub config: Arc<rustls::ServerConfig>,
}

/// Makes a self-signed certificate for `names` (DNS names or IPs), writes it
/// to `dir/agent.crt` and `dir/agent.key` as kubelet writes `kubelet.crt`,
/// and builds a server configuration from it.
///
/// # Errors
/// [`TlsError`].
pub fn self_signed(names: Vec<String>, dir: &Path) -> Result<ServingCert, TlsError> {
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    for (file, contents) in [("agent.crt", &cert_pem), ("agent.key", &key_pem)] {
        let path = dir.join(file);
        std::fs::write(&path, contents).map_err(|source| TlsError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServingCert {
        cert_pem,
        config: Arc::new(config),
    })
}
