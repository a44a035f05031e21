//! ConfigMaps and Secrets the agent's pods refer to, read through a short
//! time-to-live cache so that resyncing many pods does not read the same
//! object again and again (kubelet's TTL-based configmap/secret manager).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use tokio::time::Instant;

/// Which kind of object holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A ConfigMap (`data` and `binaryData`).
    ConfigMap,
    /// A Secret (`data`).
    Secret,
}

impl SourceKind {
    /// As kubelet names it in "not found" messages.
    pub fn lower(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "configmap",
            SourceKind::Secret => "secret",
        }
    }

    /// As kubelet names it in "couldn't find key" messages.
    pub fn title(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "ConfigMap",
            SourceKind::Secret => "Secret",
        }
    }
}

/// An object's keys and their bytes.
pub type Data = Arc<BTreeMap<String, Vec<u8>>>;

type Key = (SourceKind, String, String);

/// Each object's last answer and when it was read.
type Entries = HashMap<Key, (Instant, Option<Data>)>;

/// Reads ConfigMaps and Secrets, remembering each answer (found or not) for
/// a while; clones share the cache.
#[derive(Clone)]
pub struct ObjectCache {
    client: kube::Client,
    ttl: Duration,
    entries: Arc<Mutex<Entries>>,
}

impl ObjectCache {
    /// A cache whose answers are reused for `ttl`.
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        ObjectCache {
            client,
            ttl,
            entries: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The object's data, or `None` if it does not exist.
    ///
    /// # Errors
    /// The API could not be read (anything but 404).
    pub async fn get(
        &self,
        kind: SourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Data>, kube::Error> {
        let key = (kind, namespace.to_string(), name.to_string());
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, data)) = entries.get(&key) {
                if at.elapsed() < self.ttl {
                    return Ok(data.clone());
                }
            }
        }
        let data = match kind {
            SourceKind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await?
                .map(config_map_data),
            SourceKind::Secret => Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await?
                .map(secret_data),
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(key, (Instant::now(), data.clone()));
        Ok(data)
    }
}

fn config_map_data(cm: ConfigMap) -> Data {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        out.insert(k, v.0);
    }
    Arc::new(out)
}

fn secret_data(secret: Secret) -> Data {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    // stringData is write-only in the API, but honour it if a server echoes it.
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.entry(k).or_insert_with(|| v.into_bytes());
    }
    Arc::new(out)
}
