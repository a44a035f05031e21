//! Finding where a `clientConfig.service` webhook listens. kaji has no
//! kube-proxy, so a Service's clusterIP leads nowhere; a webhook Service is
//! reached at a ready endpoint of its EndpointSlices (as the API server's
//! `--enable-aggregator-routing` does), and verified by its DNS name.

use std::sync::Arc;

use kaji_core::selector::LabelSelector;
use kaji_registry::{ListOptions, Registry};
use serde_json::Value;

use crate::client::Endpoint;

/// The Service and EndpointSlice registries used to resolve services.
pub struct ServiceResolver {
    /// Services.
    pub services: Arc<Registry>,
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub endpoint_slices: Arc<Registry>,
}

/// What a service target is: `namespace`, `name`, `path`, `port`.
pub struct ServiceRef<'a> {
    /// `service.namespace`.
    pub namespace: &'a str,
    /// `service.name`.
    pub name: &'a str,
    /// `service.path`.
    pub path: &'a str,
    /// `service.port`.
    pub port: u16,
}

/// The endpoint of a service without a resolver: its cluster DNS name,
/// which only works where that name resolves.
pub fn by_dns(svc: &ServiceRef<'_>, timeout_seconds: u64) -> Endpoint {
    let host = format!("{}.{}.svc", svc.name, svc.namespace);
    Endpoint::for_service(
        svc.namespace,
        svc.name,
        svc.path,
        &host,
        svc.port,
        svc.port,
        timeout_seconds,
    )
}

impl ServiceResolver {
    /// A ready endpoint of the service's port.
    ///
    /// # Errors
    /// Why no endpoint could be chosen, as a message.
    pub async fn resolve(
        &self,
        svc: &ServiceRef<'_>,
        timeout_seconds: u64,
    ) -> Result<Endpoint, String> {
        let service = self
            .services
            .get(Some(svc.namespace), svc.name)
            .await
            .map_err(|e| format!("service \"{}/{}\": {}", svc.namespace, svc.name, e.message))?;
        let spec = service.get("spec").cloned().unwrap_or(Value::Null);
        if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
            let host = spec
                .get("externalName")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Ok(Endpoint::for_service(
                svc.namespace,
                svc.name,
                svc.path,
                host,
                svc.port,
                svc.port,
                timeout_seconds,
            ));
        }
        let port = spec
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(svc.port)))
            })
            .ok_or_else(|| {
                format!(
                    "no service port {} found for service \"{}\"",
                    svc.port, svc.name
                )
            })?;
        let port_name = port.get("name").and_then(Value::as_str).unwrap_or("");
        let selector = LabelSelector::parse(&format!("kubernetes.io/service-name={}", svc.name))
            .map_err(|e| e.to_string())?;
        let slices = self
            .endpoint_slices
            .list(
                Some(svc.namespace),
                &ListOptions {
                    label_selector: Some(selector),
                    ..ListOptions::default()
                },
            )
            .await
            .map_err(|e| e.message)?;
        for slice in slices
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(target) = slice
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
                .and_then(|p| p.get("port").and_then(Value::as_u64))
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            let ready = slice
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false))
                .find_map(|e| e.pointer("/addresses/0").and_then(Value::as_str));
            if let Some(address) = ready {
                return Ok(Endpoint::for_service(
                    svc.namespace,
                    svc.name,
                    svc.path,
                    address,
                    target,
                    svc.port,
                    timeout_seconds,
                ));
            }
        }
        Err(format!(
            "service \"{}/{}\" has no ready endpoints for port {}",
            svc.namespace, svc.name, svc.port
        ))
    }
}
