//! [`Pki`]: the loaded (or freshly generated) material of `DATA_DIR/pki/`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::authn::{self, UserInfo, ADMIN_USER};
use crate::files::{create_private_dir, read_optional, write_private_atomic};
use crate::issue::{self, CaState, Pair};
use crate::{kubeconfig, PkiError};

const CA: &str = "ca";
const SERVING: &str = "apiserver";
const ADMIN: &str = "admin";
const TOKEN_FILE: &str = "admin.token";

/// The cluster's certificate authority, serving and admin certificates and
/// admin bearer token, as stored under `DATA_DIR/pki/`:
///
/// | file | holds |
/// | --- | --- |
/// | `ca.crt`, `ca.key` | the CA (ECDSA P-256, ten years) |
/// | `apiserver.crt`, `apiserver.key` | the serving certificate (one year) |
/// | `admin.crt`, `admin.key` | the `kaji-admin` client certificate, `O=system:masters` (one year) |
/// | `admin.token` | the admin bearer token (32 random bytes, base64url) |
///
/// Every file is mode 0600 in a 0700 directory, and replaced atomically.
pub struct Pki {
    dir: PathBuf,
    ca: Pair,
    ca_der: CertificateDer<'static>,
    serving: Pair,
    admin: Pair,
    token: String,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("serving_sans", &self.serving_sans())
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads `data_dir/pki/*` if present, generating whatever is missing.
    ///
    /// # Guarantees
    /// - Without a CA on disk, everything is generated afresh: a CA, a
    ///   serving certificate for `localhost`, `127.0.0.1`, `::1`, the machine
    ///   hostname and `extra_sans`, the admin client certificate and the
    ///   admin token.
    /// - An existing CA is kept. A serving or admin certificate is reissued
    ///   (with a new key, by the same CA) when it is unreadable, does not
    ///   match its key, was not signed by the CA, has less than 30 days left,
    ///   or — for the serving certificate — lacks one of the names above.
    ///   A CA with less than 30 days left is replaced, with everything else.
    /// - The token is kept once written.
    ///
    /// `extra_sans` are IP addresses (IPv6 optionally bracketed) or DNS
    /// names, without ports; empty entries and the unspecified addresses
    /// `0.0.0.0` and `::` are ignored, since they are not names to dial.
    ///
    /// # Caveats
    /// Meant for one process per data directory. Two processes generating at
    /// once cannot corrupt a file (writes are atomic), but may leave leaves
    /// signed by a CA that lost the race; the next load reissues those.
    ///
    /// # Errors
    /// [`PkiError::InvalidSan`] for an `extra_sans` entry that is not a name;
    /// [`PkiError::Invalid`] for a CA on disk that cannot sign (delete
    /// `ca.crt` and `ca.key` to start over); [`PkiError::Io`] when the files
    /// cannot be read or written.
    pub fn load_or_create(data_dir: &Path, extra_sans: &[String]) -> Result<Pki, PkiError> {
        let dir = data_dir.join("pki");
        create_private_dir(&dir)?;
        let wanted = issue::wanted_sans(extra_sans)?;

        let (ca, ca_is_new) = match load_pair(&dir, CA)? {
            Some(ca) => match issue::check_ca(&ca) {
                Ok(CaState::Good) => (ca, false),
                Ok(CaState::Expiring) => {
                    tracing::warn!(dir = %dir.display(), "CA expires soon; generating a new one");
                    (store_pair(&dir, CA, issue::new_ca()?)?, true)
                }
                Err(reason) => {
                    return Err(PkiError::invalid(
                        dir.join(format!("{CA}.crt")),
                        "CA key pair",
                        reason,
                    ))
                }
            },
            None => {
                tracing::info!(dir = %dir.display(), "generating a new cluster CA");
                (store_pair(&dir, CA, issue::new_ca()?)?, true)
            }
        };
        let ca_der = issue::first_cert_der(&ca.cert_pem).map_err(|reason| {
            PkiError::invalid(dir.join(format!("{CA}.crt")), "certificate", reason)
        })?;

        let serving = load_leaf(&dir, SERVING, ca_is_new, &ca_der, Some(&wanted), || {
            issue::serving_cert(&ca, &wanted)
        })?;
        let admin = load_leaf(&dir, ADMIN, ca_is_new, &ca_der, None, || {
            issue::admin_cert(&ca)
        })?;
        let token = load_or_create_token(&dir)?;

        Ok(Pki {
            dir,
            ca,
            ca_der,
            serving,
            admin,
            token,
        })
    }

    /// The rustls configuration the API server listens with: the serving
    /// certificate, ALPN `h2` then `http/1.1`, and client certificates
    /// optional — verified against the CA when offered, so a handshake with
    /// a foreign client certificate fails, while one without a certificate
    /// succeeds (and the request then needs a bearer token).
    ///
    /// # Errors
    /// [`PkiError::Invalid`] when the serving key cannot be read back,
    /// [`PkiError::Tls`] / [`PkiError::ClientVerifier`] when rustls refuses
    /// the material.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|source| PkiError::ClientVerifier { source })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| PkiError::Tls { source })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.cert_der(SERVING, &self.serving)?],
                self.key_der(SERVING, &self.serving)?,
            )
            .map_err(|source| PkiError::Tls { source })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A rustls client configuration that trusts only the cluster CA and
    /// presents the admin client certificate; ALPN `h2` then `http/1.1`.
    /// Meant for in-process clients and tests.
    ///
    /// # Errors
    /// As [`Pki::server_config`].
    pub fn admin_client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| PkiError::Tls { source })?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(
                vec![self.cert_der(ADMIN, &self.admin)?],
                self.key_der(ADMIN, &self.admin)?,
            )
            .map_err(|source| PkiError::Tls { source })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The CA certificate, PEM: what clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The admin client certificate, PEM.
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin.cert_pem
    }

    /// The admin client key, PEM (PKCS#8).
    pub fn admin_key_pem(&self) -> &str {
        &self.admin.key_pem
    }

    /// The admin bearer token: `Authorization: Bearer <token>` authenticates
    /// as `kaji-admin` in `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    /// The directory holding the PKI files (`DATA_DIR/pki`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names the serving certificate covers, DNS names and IP addresses.
    pub fn serving_sans(&self) -> Vec<String> {
        issue::sans_of_pem(&self.serving.cert_pem)
    }

    /// Who a request is from.
    ///
    /// A client certificate wins when it names a user: its subject CN is the
    /// user name and each O a group. Otherwise `authorization` (the
    /// `Authorization` header value) must be `Bearer <admin token>`, compared
    /// in constant time, which authenticates as `kaji-admin` in
    /// `system:masters`. Every authenticated user is also in
    /// `system:authenticated`. `None` means unauthenticated: answer 401.
    ///
    /// # Caveats
    /// `peer_certs` must be the chain rustls verified during a handshake with
    /// [`Pki::server_config`] (as `ServerConnection::peer_certificates`
    /// returns it), never certificates taken from a header or another
    /// unverified source. As defence in depth the leaf's CA signature and
    /// validity period are checked again, which costs a signature
    /// verification per call: callers with many requests per connection may
    /// authenticate once per connection.
    pub fn authenticate(
        &self,
        peer_certs: Option<&[CertificateDer<'static>]>,
        authorization: Option<&str>,
    ) -> Option<UserInfo> {
        if let Some(leaf) = peer_certs.and_then(<[_]>::first) {
            if let Some(user) = authn::user_from_cert(leaf, &self.ca_der) {
                return Some(user);
            }
        }
        let token = authn::bearer_token(authorization?)?;
        authn::constant_time_eq(token.as_bytes(), self.token.as_bytes()).then(UserInfo::admin)
    }

    /// Writes the admin kubeconfig (mode 0600, atomically) and returns its
    /// path: cluster `kaji` at `server_url` with the CA inline, user
    /// `kaji-admin` with the client certificate and key inline (no token),
    /// and context `kaji`, namespace `default`, as the current context.
    ///
    /// `path` is the file to write (conventionally `DATA_DIR/kubeconfig`);
    /// when it is an existing directory, `path/kubeconfig` is written.
    /// Missing parent directories are created.
    ///
    /// # Errors
    /// [`PkiError::Io`] when the file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path, server_url: &str) -> Result<PathBuf, PkiError> {
        let target = if path.is_dir() {
            path.join("kubeconfig")
        } else {
            path.to_path_buf()
        };
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        let yaml = kubeconfig::render(
            server_url,
            &self.ca.cert_pem,
            ADMIN_USER,
            &self.admin.cert_pem,
            &self.admin.key_pem,
        )?;
        write_private_atomic(&target, yaml.as_bytes())?;
        Ok(target)
    }

    fn roots(&self) -> Result<RootCertStore, PkiError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|source| PkiError::Tls { source })?;
        Ok(roots)
    }

    fn cert_der(&self, stem: &str, pair: &Pair) -> Result<CertificateDer<'static>, PkiError> {
        issue::first_cert_der(&pair.cert_pem).map_err(|reason| {
            PkiError::invalid(self.dir.join(format!("{stem}.crt")), "certificate", reason)
        })
    }

    fn key_der(&self, stem: &str, pair: &Pair) -> Result<PrivateKeyDer<'static>, PkiError> {
        let path = || self.dir.join(format!("{stem}.key"));
        rustls_pemfile::private_key(&mut pair.key_pem.as_bytes())
            .map_err(|e| PkiError::invalid(path(), "private key", e.to_string()))?
            .ok_or_else(|| PkiError::invalid(path(), "private key", "no PRIVATE KEY block"))
    }
}

/// Loads `stem.crt` + `stem.key`; `None` when either is missing (a crash
/// between the two writes leaves one alone, and it is regenerated).
fn load_pair(dir: &Path, stem: &str) -> Result<Option<Pair>, PkiError> {
    let cert = read_optional(&dir.join(format!("{stem}.crt")))?;
    let key = read_optional(&dir.join(format!("{stem}.key")))?;
    match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Ok(Some(Pair { cert_pem, key_pem })),
        (None, None) => Ok(None),
        _ => {
            tracing::warn!(dir = %dir.display(), stem, "incomplete key pair on disk; regenerating it");
            Ok(None)
        }
    }
}

/// Writes the key first, then the certificate, and hands the pair back.
fn store_pair(dir: &Path, stem: &str, pair: Pair) -> Result<Pair, PkiError> {
    write_private_atomic(&dir.join(format!("{stem}.key")), pair.key_pem.as_bytes())?;
    write_private_atomic(&dir.join(format!("{stem}.crt")), pair.cert_pem.as_bytes())?;
    Ok(pair)
}

fn load_leaf(
    dir: &Path,
    stem: &str,
    ca_is_new: bool,
    ca_der: &[u8],
    wanted: Option<&BTreeSet<issue::San>>,
    issue: impl FnOnce() -> Result<Pair, PkiError>,
) -> Result<Pair, PkiError> {
    if !ca_is_new {
        if let Some(pair) = load_pair(dir, stem)? {
            match issue::check_leaf(&pair, ca_der, wanted) {
                Ok(()) => return Ok(pair),
                Err(reason) => {
                    tracing::info!(dir = %dir.display(), stem, %reason, "reissuing certificate");
                }
            }
        }
    }
    store_pair(dir, stem, issue()?)
}

fn load_or_create_token(dir: &Path) -> Result<String, PkiError> {
    let path = dir.join(TOKEN_FILE);
    if let Some(token) = read_optional(&path)? {
        let token = token.trim();
        if !token.is_empty() {
            return Ok(token.to_owned());
        }
        tracing::warn!(path = %path.display(), "empty admin token file; generating a new token");
    }
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    write_private_atomic(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}
