//! The cluster's PKI: certificates, credentials and the admin kubeconfig.
//!
//! `kaji-pki` owns the files under `DATA_DIR/pki/` — a private certificate
//! authority, the API server's serving certificate, the `kaji-admin` client
//! certificate and the admin bearer token — and the kubeconfig that points
//! `kubectl` at the cluster. It builds the rustls [`ServerConfig`] the API
//! server listens with, and tells who a request is from the TLS peer
//! certificates and the `Authorization` header ([`Pki::authenticate`]).
//!
//! It must not know HTTP routing, authorization policy or the store: it hands
//! out a [`UserInfo`] and the caller decides what that user may do.
//!
//! [`ServerConfig`]: rustls::ServerConfig

#![warn(missing_docs)]

mod authn;
mod error;
mod files;
mod insecure;
mod issue;
mod kubeconfig;
mod pki;

pub use authn::UserInfo;
pub use error::PkiError;
pub use insecure::insecure_client_config;
pub use pki::Pki;
