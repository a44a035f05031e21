//! Reconciling reservation keys with the Services that exist, as
//! kube-apiserver's cluster IP and node port repair controllers do.
//!
//! A write that reserved a value and then died (a crash, a dropped request)
//! leaks its key; a Service stored before allocation existed holds values
//! without keys. Repair frees the first and re-reserves the second. A key
//! younger than the grace period is left alone even when no Service holds
//! its value: its write may still be in flight.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::Utc;
use kaji_store::StoreError;
use serde_json::Value;

use super::fields::{held_ip, held_ports};
use super::pool::{list_all, Owner, Pool};
use super::service::ServiceAllocator;

/// How often the API server repairs (kube-apiserver's repair controllers
/// run every 3 minutes).
pub const DEFAULT_REPAIR_INTERVAL: Duration = Duration::from_secs(180);

/// How old an unheld key must be before repair frees it.
pub const DEFAULT_REPAIR_GRACE: Duration = Duration::from_secs(60);

/// Why a repair pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Listing services or reservations, or writing a key, failed.
    #[error("repairing service reservations: {0}")]
    Store(#[from] StoreError),
}

/// What one repair pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Keys freed: no Service holds their value, or not the owner they name.
    pub freed: Vec<String>,
    /// Keys re-created for a Service holding their value without one.
    pub restored: Vec<String>,
    /// Values a human must sort out: held by two Services, or outside the
    /// range (the range changed), each as `ns/name: value (why)`.
    pub conflicts: Vec<String>,
}

/// A Service holding a value.
#[derive(Debug, Clone)]
struct Holder {
    owner: Owner,
    /// The Service's own store key, to check it still exists before restoring.
    key: String,
}

impl ServiceAllocator {
    /// One repair pass over every Service and reservation key. Keys written
    /// less than `grace` ago are never freed.
    ///
    /// # Errors
    /// [`RepairError::Store`] if listing fails; a single key that cannot be
    /// freed or restored is skipped (the next pass retries it).
    pub async fn repair(&self, grace: Duration) -> Result<RepairReport, RepairError> {
        let services = self.list_services().await?;
        let mut ip_holders: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
        let mut port_holders: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
        for (key, svc) in &services {
            let holder = Holder {
                owner: Owner::of_service(svc),
                key: key.clone(),
            };
            if let Some(ip) = held_ip(svc) {
                ip_holders
                    .entry(ip.to_string())
                    .or_default()
                    .push(holder.clone());
            }
            for port in held_ports(svc) {
                port_holders
                    .entry(port.to_string())
                    .or_default()
                    .push(holder.clone());
            }
        }
        let mut report = RepairReport::default();
        self.repair_pool(&self.ips, &ip_holders, grace, &mut report)
            .await?;
        self.repair_pool(&self.ports, &port_holders, grace, &mut report)
            .await?;
        Ok(report)
    }

    async fn list_services(&self) -> Result<Vec<(String, Value)>, StoreError> {
        let prefix = kaji_core::catalogue::find("", "v1", "services")
            .expect("services are built in")
            .key_prefix();
        let mut out = Vec::new();
        for kv in list_all(self.store.as_ref(), &prefix).await? {
            match serde_json::from_slice::<Value>(&kv.value) {
                Ok(svc) => out.push((kv.key, svc)),
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping a corrupt service"),
            }
        }
        Ok(out)
    }

    async fn repair_pool(
        &self,
        pool: &Pool,
        holders: &BTreeMap<String, Vec<Holder>>,
        grace: Duration,
        report: &mut RepairReport,
    ) -> Result<(), RepairError> {
        let store = self.store.as_ref();
        let by_key: HashMap<String, &Vec<Holder>> =
            holders.iter().map(|(v, h)| (pool.key(v), h)).collect();
        // Keys that stay, with the uid they name.
        let mut kept: HashMap<String, String> = HashMap::new();
        for kv in list_all(store, pool.prefix()).await? {
            let owner = Owner::decode(&kv.value);
            let uid = owner.as_ref().map(|o| o.uid.clone()).unwrap_or_default();
            let held = by_key
                .get(&kv.key)
                .is_some_and(|hs| hs.iter().any(|h| h.owner.uid == uid));
            let young = owner
                .and_then(|o| o.reserved_at)
                .and_then(|t| (Utc::now() - t).to_std().ok())
                .is_some_and(|age| age < grace);
            if held || young {
                kept.insert(kv.key, uid);
                continue;
            }
            match store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    tracing::info!(key = %kv.key, "freed a leaked service reservation");
                    report.freed.push(kv.key);
                }
                // Changed since the list: somebody is using it; look again next pass.
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (value, hs) in holders {
            let first = &hs[0];
            let who = |h: &Holder| format!("{}/{}", h.owner.namespace, h.owner.name);
            if pool.offset_of(value).is_none() {
                for h in hs {
                    report
                        .conflicts
                        .push(format!("{}: {value} (outside the range)", who(h)));
                }
                continue;
            }
            if hs.len() > 1 {
                let all: Vec<String> = hs.iter().map(who).collect();
                report.conflicts.push(format!(
                    "{}: {value} (also held by {})",
                    who(first),
                    all[1..].join(", ")
                ));
            }
            let key = pool.key(value);
            match kept.get(&key) {
                Some(uid) if hs.iter().any(|h| h.owner.uid == *uid) => continue,
                Some(_) => {
                    // An in-flight reservation of a value a Service holds.
                    report.conflicts.push(format!(
                        "{}: {value} (reserved by another owner)",
                        who(first)
                    ));
                    continue;
                }
                None => {}
            }
            if !self
                .still_holds(&first.key, &first.owner.uid, pool, value)
                .await?
            {
                continue;
            }
            match pool.reserve(store, value, &first.owner).await {
                Ok(key) => {
                    tracing::info!(%key, service = %who(first), "restored a service reservation");
                    report.restored.push(key);
                }
                Err(e) => tracing::debug!(%key, error = %e, "not restoring a reservation"),
            }
        }
        Ok(())
    }

    /// Whether the Service at `key` (with `uid`) still holds `value`: it may
    /// have been deleted or changed since the list.
    async fn still_holds(
        &self,
        key: &str,
        uid: &str,
        pool: &Pool,
        value: &str,
    ) -> Result<bool, RepairError> {
        let (kv, _) = self.store.get(key, None).await?;
        let Some(svc) = kv.and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok()) else {
            return Ok(false);
        };
        if svc.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
            return Ok(false);
        }
        let wanted = pool.key(value);
        Ok(self.keys_of(&svc).contains(&wanted))
    }
}
