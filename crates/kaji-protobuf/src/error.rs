//! The one error type of this crate.

/// Why a body could not be decoded or an object could not be encoded.
///
/// The messages are written for users: the API server shows them in a
/// `400 Bad Request` Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with the Kubernetes protobuf magic `k8s\0`.
    #[error("protobuf body does not start with the Kubernetes magic prefix \"k8s\\x00\"")]
    MissingMagic,
    /// The `runtime.Unknown` envelope names no apiVersion or no kind (decode), or the
    /// JSON object has no string `apiVersion` or `kind` (encode).
    #[error("protobuf object has no {0}")]
    MissingTypeMeta(&'static str),
    /// The envelope's `contentEncoding` is set (for example `gzip`); only plain bodies are read.
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    /// The kind has no protobuf schema here: it is not built in (custom resources have no
    /// protobuf form) or not one of the kinds this crate knows.
    #[error("kind {kind:?} of apiVersion {api_version:?} has no protobuf encoding in this server; send JSON instead")]
    UnknownKind {
        /// The envelope's or object's apiVersion.
        api_version: String,
        /// The envelope's or object's kind.
        kind: String,
    },
    /// The bytes are not a valid protobuf message of the expected type (truncated, bad
    /// varint, wrong wire type, invalid UTF-8, embedded JSON that does not parse).
    #[error("invalid protobuf at {path}: {reason}")]
    Malformed {
        /// Where in the object, as a JSON path such as `spec.template.spec.containers[0]`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A JSON value cannot be encoded: wrong JSON type for the field or a badly formatted
    /// value (time, duration, base64, number out of range).
    #[error("cannot encode {path} as protobuf: {reason}")]
    InvalidValue {
        /// Where in the object, as a JSON path such as `spec.replicas`.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl ProtobufError {
    /// Prefixes the error's path with `segment` (a field name or `[index]`), on the way up.
    pub(crate) fn within(self, segment: &str) -> Self {
        let join = |path: String| {
            if path.is_empty() {
                segment.to_string()
            } else if path.starts_with('[') {
                format!("{segment}{path}")
            } else {
                format!("{segment}.{path}")
            }
        };
        match self {
            ProtobufError::Malformed { path, reason } => ProtobufError::Malformed {
                path: join(path),
                reason,
            },
            ProtobufError::InvalidValue { path, reason } => ProtobufError::InvalidValue {
                path: join(path),
                reason,
            },
            other => other,
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        ProtobufError::Malformed {
            path: String::new(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        ProtobufError::InvalidValue {
            path: String::new(),
            reason: reason.into(),
        }
    }
}
