//! The Kubernetes REST API over HTTPS.
//!
//! Owns everything HTTP: TLS and authentication, path routing, query
//! parameters, content negotiation (JSON, YAML, Tables), discovery, OpenAPI,
//! health endpoints, metrics and watch streaming. Every verb's semantics live
//! in `kaji-registry`; this crate must not read or write the store directly
//! except through registries.

mod compactor;
mod crds;
mod discovery;
mod encoding;
mod handler;
mod metered;
mod metrics;
mod nodeproxy;
mod path;
mod server;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kaji_apiextensions::strategy::{AcceptedCrds, CrdStrategy};
use kaji_core::{catalogue, ResourceInfo};
use kaji_pki::Pki;
use kaji_registry::allocate::{DEFAULT_REPAIR_GRACE, DEFAULT_REPAIR_INTERVAL};
use kaji_registry::{BuiltinStrategy, Part, Registry, ServiceAllocator, WriteOptions};
use kaji_store::Store;
use serde_json::json;

pub use compactor::{spawn_compactor, DEFAULT_COMPACTION_INTERVAL};
pub use kaji_registry::allocate::{PortRange, ServiceCidr, ServiceRanges};
#[doc(hidden)]
pub use server::handle_buffered;
pub use server::{serve, ServeError};

/// The parsers the server applies to untrusted request input, exposed for
/// fuzzing (`kaji-fuzz`) only; not a stable API.
#[doc(hidden)]
pub mod parsers {
    pub use crate::encoding::{content_type, decode_body, negotiate, MAX_BODY_BYTES};
    pub use crate::handler::parse_query;
    pub use crate::path::{parse as parse_path, ResourcePath};
}

/// `(group, version, plural)`.
type ResourceKey = (String, String, String);

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
    registries: HashMap<ResourceKey, Arc<Registry>>,
    /// Custom resources, installed and removed as CRDs come and go.
    custom: RwLock<crds::Served>,
    accepted_crds: AcceptedCrds,
    store: Arc<dyn Store>,
    /// What every write (but webhook configurations') passes through.
    admission: Arc<dyn kaji_registry::Admission>,
    webhooks: Arc<kaji_admission::Webhooks>,
    services: Arc<ServiceAllocator>,
    port: u16,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) pki: Option<Arc<Pki>>,
    pub(crate) server_address: String,
    pub(crate) openapi: server::OpenApiCache,
    /// Set when the server starts shutting down: open watches end then, as
    /// kube-apiserver closes them, instead of holding the shutdown up.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
}

impl ApiServer {
    /// Builds registries for every built-in resource over `store`, handing
    /// out Service cluster IPs and node ports from the default ranges.
    pub fn new(store: Arc<dyn Store>, config: &Config) -> Arc<Self> {
        Self::with_service_ranges(store, config, ServiceRanges::default())
    }

    /// Like [`ApiServer::new`], with the service CIDR and node port range
    /// (`--service-cluster-ip-range`, `--service-node-port-range`) given.
    pub fn with_service_ranges(
        store: Arc<dyn Store>,
        config: &Config,
        ranges: ServiceRanges,
    ) -> Arc<Self> {
        let metrics = Arc::new(metrics::Metrics::default());
        let store: Arc<dyn Store> = Arc::new(metered::MeteredStore::new(store, metrics.clone()));
        let services = Arc::new(ServiceAllocator::new(store.clone(), ranges));
        let accepted_crds = AcceptedCrds::default();
        let webhooks = kaji_admission::Webhooks::new();
        let admission: Arc<dyn kaji_registry::Admission> = webhooks.clone();
        let registries: HashMap<ResourceKey, Arc<Registry>> = catalogue::builtin()
            .iter()
            .map(|info| {
                let key = (
                    info.group.to_string(),
                    info.version.to_string(),
                    info.plural.to_string(),
                );
                let strategy: Arc<dyn kaji_registry::Strategy> = match (info.group, info.kind) {
                    ("", "Service") => {
                        Arc::new(BuiltinStrategy::new(info).with_allocator(services.clone()))
                    }
                    ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                        Arc::new(CrdStrategy::new(accepted_crds.clone()))
                    }
                    _ => Arc::new(BuiltinStrategy::new(info)),
                };
                let registry = Registry::new(store.clone(), strategy);
                // As in Kubernetes, webhooks never gate their own configuration.
                let registry = if info.group == "admissionregistration.k8s.io" {
                    registry
                } else {
                    registry.with_admission(admission.clone())
                };
                (key, Arc::new(registry))
            })
            .collect();
        Arc::new(ApiServer {
            registries,
            custom: RwLock::default(),
            accepted_crds,
            store,
            admission,
            webhooks,
            services,
            port: config.listen.port(),
            metrics,
            pki: config.pki.clone(),
            server_address: config.listen.to_string(),
            openapi: server::OpenApiCache::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The registry serving `group/version/resource`, built in or custom.
    pub fn registry(&self, group: &str, version: &str, resource: &str) -> Option<Arc<Registry>> {
        let key = (group.to_string(), version.to_string(), resource.to_string());
        self.registries.get(&key).cloned().or_else(|| {
            self.custom
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .map(|c| c.registry.clone())
        })
    }

    /// The custom resource served at `group/version/resource`, if any.
    pub(crate) fn custom_resource(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<Arc<crds::CustomResource>> {
        let key = (group.to_string(), version.to_string(), resource.to_string());
        self.custom
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
    }

    /// Every resource served now, built-ins first, as discovery lists them.
    pub fn served(&self) -> Vec<&'static ResourceInfo> {
        let mut out: Vec<&'static ResourceInfo> = catalogue::builtin().iter().collect();
        out.extend(
            self.custom
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .infos(),
        );
        out
    }

    /// Creates the system namespaces and the `default/kubernetes` Service
    /// that do not exist yet, repairs Service IP and node port reservations,
    /// and starts repairing them every [`DEFAULT_REPAIR_INTERVAL`] (as
    /// kube-apiserver's repair controllers do).
    ///
    /// # Errors
    /// Any store failure other than "already exists" while creating the
    /// namespaces. Repair and the `kubernetes` Service only log failures:
    /// neither should keep the API from serving.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), kaji_core::ApiError> {
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
        let registry = |g: &str, p: &str| {
            self.registry(g, "v1", p)
                .expect("admission's resources are built in")
        };
        self.webhooks.start(
            registry(
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
            ),
            registry(
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
            ),
            registry("", "namespaces"),
        );
        self.webhooks.resolve_services(
            registry("", "services"),
            registry("discovery.k8s.io", "endpointslices"),
        );
        crds::start(self.clone()).await;
        repair_services(&self.services).await;
        if let Err(e) = self.ensure_kubernetes_service().await {
            tracing::warn!(error = %e, "could not create the kubernetes service");
        }
        let services = self.services.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DEFAULT_REPAIR_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // The first tick is immediate: just repaired.
            loop {
                tick.tick().await;
                repair_services(&services).await;
            }
        });
        Ok(())
    }

    /// The `kubernetes` Service in `default`: the first IP of the service
    /// CIDR, port 443 to this server's port, with no selector (its endpoints
    /// are the API servers themselves).
    async fn ensure_kubernetes_service(&self) -> Result<(), kaji_core::ApiError> {
        let services = self
            .registry("", "v1", "services")
            .expect("services are built in");
        let ip = self.services.ranges().cluster_ips.first().to_string();
        let ports =
            json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}]);
        match services.get(Some("default"), "kubernetes").await {
            Ok(mut current) => {
                // Restarted on another port: follow it.
                if current.pointer("/spec/ports") == Some(&ports) {
                    return Ok(());
                }
                current["spec"]["ports"] = ports;
                services
                    .update(
                        Some("default"),
                        "kubernetes",
                        current,
                        Part::Main,
                        &WriteOptions::default(),
                    )
                    .await
                    .map(drop)
            }
            Err(e) if e.code == 404 => {
                let svc = json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": "kubernetes",
                        "namespace": "default",
                        "labels": {"component": "apiserver", "provider": "kubernetes"},
                    },
                    "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": ports},
                });
                match services
                    .create(Some("default"), svc, &WriteOptions::default())
                    .await
                {
                    Err(e) if e.code == 409 => Ok(()),
                    other => other.map(drop),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// One repair pass, logged.
async fn repair_services(services: &ServiceAllocator) {
    match services.repair(DEFAULT_REPAIR_GRACE).await {
        Ok(report) => {
            for conflict in &report.conflicts {
                tracing::warn!(%conflict, "service IP or node port needs attention; recreate the service");
            }
            if !report.freed.is_empty() || !report.restored.is_empty() {
                tracing::info!(freed = ?report.freed, restored = ?report.restored, "repaired service reservations");
            }
        }
        Err(e) => tracing::warn!(error = %e, "repairing service reservations failed"),
    }
}
