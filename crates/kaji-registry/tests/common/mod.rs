//! Shared setup for the Service allocation tests: "API servers" (a Service
//! registry with its allocator) over one in-memory store.

#![allow(dead_code)]

use std::sync::Arc;

use kaji_core::{catalogue, ApiError};
use kaji_registry::allocate::{NODE_PORTS_PREFIX, SERVICE_IPS_PREFIX};
use kaji_registry::{
    BuiltinStrategy, DeleteOptions, Registry, ServiceAllocator, ServiceRanges, WriteOptions,
};
use kaji_store::{ListOptions, MemoryStore, Store};
use serde_json::{json, Value};

/// One API server's view of Services.
pub struct Server {
    pub services: Arc<Registry>,
    pub allocator: Arc<ServiceAllocator>,
    pub store: Arc<dyn Store>,
}

/// A fresh store with the default ranges.
pub async fn server() -> Server {
    server_on(Arc::new(MemoryStore::new()), ServiceRanges::default()).await
}

/// An API server on `store` (creating `default` if needed).
pub async fn server_on(store: Arc<dyn Store>, ranges: ServiceRanges) -> Server {
    let namespaces = Registry::new(
        store.clone(),
        Arc::new(BuiltinStrategy::new(
            catalogue::find("", "v1", "namespaces").unwrap(),
        )),
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    match namespaces.create(None, ns, &WriteOptions::default()).await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => panic!("creating default: {e}"),
    }
    let allocator = Arc::new(ServiceAllocator::new(store.clone(), ranges));
    let strategy = BuiltinStrategy::new(catalogue::find("", "v1", "services").unwrap())
        .with_allocator(allocator.clone());
    Server {
        services: Arc::new(Registry::new(store.clone(), Arc::new(strategy))),
        allocator,
        store,
    }
}

/// A Service manifest: `spec` plus a selector and, unless given, port 80.
pub fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("ports").is_none() && spec.get("type") != Some(&json!("ExternalName")) {
        spec["ports"] = json!([{"port": 80}]);
    }
    if spec.get("selector").is_none() {
        spec["selector"] = json!({"app": name});
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

impl Server {
    pub async fn create(&self, obj: Value) -> Result<Value, ApiError> {
        self.services
            .create(Some("default"), obj, &WriteOptions::default())
            .await
            .map(|o| o.object)
    }

    pub async fn create_dry(&self, obj: Value) -> Result<Value, ApiError> {
        let opts = WriteOptions {
            dry_run: true,
            ..WriteOptions::default()
        };
        self.services
            .create(Some("default"), obj, &opts)
            .await
            .map(|o| o.object)
    }

    pub async fn merge(&self, name: &str, patch: Value) -> Result<Value, ApiError> {
        self.services
            .patch(
                Some("default"),
                name,
                kaji_patch::PatchType::Merge,
                patch,
                kaji_registry::Part::Main,
                &WriteOptions::default(),
            )
            .await
            .map(|o| o.object)
    }

    pub async fn replace(&self, name: &str, obj: Value) -> Result<Value, ApiError> {
        self.services
            .update(
                Some("default"),
                name,
                obj,
                kaji_registry::Part::Main,
                &WriteOptions::default(),
            )
            .await
            .map(|o| o.object)
    }

    pub async fn delete(&self, name: &str) -> (Value, bool) {
        self.services
            .delete(Some("default"), name, &DeleteOptions::default())
            .await
            .unwrap()
    }

    /// The reserved cluster IPs, in key order.
    pub async fn reserved_ips(&self) -> Vec<String> {
        suffixes(self.store.as_ref(), SERVICE_IPS_PREFIX).await
    }

    /// The reserved node ports, in key order.
    pub async fn reserved_ports(&self) -> Vec<String> {
        suffixes(self.store.as_ref(), NODE_PORTS_PREFIX).await
    }
}

async fn suffixes(store: &dyn Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix, ListOptions::default())
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key[prefix.len()..].to_string())
        .collect()
}

/// `spec.clusterIP` of a Service.
pub fn cluster_ip(svc: &Value) -> &str {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Node ports of a Service's ports, 0 where absent.
pub fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `ip` lies in 10.96.0.0/12 (excluding network and broadcast).
pub fn in_default_range(ip: &str) -> bool {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let n = u32::from(ip);
    let base = u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0));
    n > base && n < base + (1 << 20) - 1
}
