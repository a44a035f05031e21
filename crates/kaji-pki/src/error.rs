//! The one error type of this crate.

use std::path::PathBuf;

/// Why loading, generating or using the cluster's PKI failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A PKI or kubeconfig file (or its directory) could not be read, written
    /// or renamed into place.
    #[error("{action} {path}")]
    Io {
        /// What was being done: "reading", "writing", "creating directory", ...
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },

    /// A file on disk does not hold what it should (no PEM block, a
    /// certificate that does not parse, an unreadable key).
    #[error("{path} is not a valid {what}: {reason}")]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// What the file should hold: "certificate", "private key", ...
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A key pair or certificate could not be generated or signed.
    #[error("generating the {what}")]
    Generate {
        /// Which item: "CA certificate", "serving certificate", ...
        what: &'static str,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },

    /// A requested subject alternative name is neither an IP address nor a
    /// valid DNS name.
    #[error("invalid subject alternative name {san:?}: {reason}")]
    InvalidSan {
        /// The name as given.
        san: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// rustls refused the certificate material when building a TLS config.
    #[error("building the TLS configuration")]
    Tls {
        /// The underlying rustls error.
        #[source]
        source: rustls::Error,
    },

    /// The client-certificate verifier could not be built from the CA.
    #[error("building the client certificate verifier")]
    ClientVerifier {
        /// The underlying rustls error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },

    /// The kubeconfig could not be serialized.
    #[error("serializing the kubeconfig")]
    Kubeconfig {
        /// The underlying YAML error.
        #[source]
        source: serde_yaml::Error,
    },
}

impl PkiError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        PkiError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        path: impl Into<PathBuf>,
        what: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        PkiError::Invalid {
            path: path.into(),
            what,
            reason: reason.into(),
        }
    }
}
