//! The Kubernetes REST API over HTTPS.
//!
//! Owns everything HTTP: TLS and authentication, path routing, query
//! parameters, content negotiation (JSON, YAML, Tables), discovery, OpenAPI,
//! health endpoints, metrics and watch streaming. Every verb's semantics live
//! in `kaji-registry`; this crate must not read or write the store directly
//! except through registries.

mod compactor;
mod discovery;
mod encoding;
mod handler;
mod metered;
mod metrics;
mod path;
mod server;

use std::collections::HashMap;
use std::sync::Arc;

use kaji_core::catalogue;
use kaji_pki::Pki;
use kaji_registry::{BuiltinStrategy, Registry, WriteOptions};
use kaji_store::Store;
use serde_json::json;

pub use compactor::{spawn_compactor, DEFAULT_COMPACTION_INTERVAL};
pub use server::{serve, ServeError};

/// The Kubernetes version kaji reports (kubectl picks its matching minor).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "32");

/// Namespaces that exist from the start, as on every Kubernetes cluster.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How the server is reached and secured.
pub struct Config {
    /// Address to listen on.
    pub listen: std::net::SocketAddr,
    /// TLS and credentials; `None` serves plain HTTP with no authentication.
    pub pki: Option<Arc<Pki>>,
}

/// The shared state of a running API server.
pub struct ApiServer {
    registries: HashMap<(String, String, String), Arc<Registry>>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) pki: Option<Arc<Pki>>,
    pub(crate) server_address: String,
    pub(crate) openapi: server::OpenApiCache,
}

impl ApiServer {
    /// Builds registries for every built-in resource over `store`.
    pub fn new(store: Arc<dyn Store>, config: &Config) -> Arc<Self> {
        let metrics = Arc::new(metrics::Metrics::default());
        let store: Arc<dyn Store> = Arc::new(metered::MeteredStore::new(store, metrics.clone()));
        let registries = catalogue::builtin()
            .iter()
            .map(|info| {
                let key = (
                    info.group.to_string(),
                    info.version.to_string(),
                    info.plural.to_string(),
                );
                (
                    key,
                    Arc::new(Registry::new(
                        store.clone(),
                        Arc::new(BuiltinStrategy::new(info)),
                    )),
                )
            })
            .collect();
        Arc::new(ApiServer {
            registries,
            metrics,
            pki: config.pki.clone(),
            server_address: config.listen.to_string(),
            openapi: server::OpenApiCache::default(),
        })
    }

    /// The registry serving `group/version/resource`.
    pub fn registry(&self, group: &str, version: &str, resource: &str) -> Option<Arc<Registry>> {
        self.registries
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
            .cloned()
    }

    /// Creates the system namespaces that do not exist yet.
    ///
    /// # Errors
    /// Any store failure other than "already exists".
    pub async fn bootstrap(&self) -> Result<(), kaji_core::ApiError> {
        let namespaces = self
            .registry("", "v1", "namespaces")
            .expect("namespaces are built in");
        for ns in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match namespaces.create(None, obj, &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
