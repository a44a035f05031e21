//! One reservation key per allocated value, so that any number of API
//! servers sharing a store never hand out the same value twice.
//!
//! A value is reserved by creating `<prefix><value>` if absent (the store's
//! create is atomic, like etcd's); the key's value names the owner. Freeing
//! deletes the key at the revision it was read at, and only if the owner is
//! still the expected one, so a late release never frees someone else's value.

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound, Utc};
use kaji_store::{KeyValue, ListOptions, Store, StoreError};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::range::{PortRange, ServiceCidr};

/// Where cluster IP reservations live.
pub const SERVICE_IPS_PREFIX: &str = "/registry/ranges/serviceips/";
/// Where node port reservations live.
pub const NODE_PORTS_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Random probes before falling back to listing what is taken.
const PROBES: usize = 8;
/// Listing rounds before giving up on a range that keeps filling under us.
const LIST_ROUNDS: usize = 8;

/// Why a value could not be reserved.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Somebody else holds the value.
    #[error("already allocated")]
    Taken,
    /// No free value is left.
    #[error("range is full")]
    Full,
    /// The store failed.
    #[error("reservation store failure: {0}")]
    Store(#[source] StoreError),
}

/// Who holds a reserved value: the body of a reservation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// Always `Service` today; kept so the keys read on their own.
    pub kind: String,
    /// The owner's namespace.
    pub namespace: String,
    /// The owner's name.
    pub name: String,
    /// The owner's uid: what ownership is decided by.
    pub uid: String,
    /// When the key was written (repair leaves young keys alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_at: Option<DateTime<Utc>>,
}

impl Owner {
    /// The owner of a service object, stamped now.
    pub fn of_service(obj: &serde_json::Value) -> Owner {
        let meta = |f: &str| {
            obj.pointer(&format!("/metadata/{f}"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Owner {
            kind: "Service".into(),
            namespace: meta("namespace"),
            name: meta("name"),
            uid: meta("uid"),
            reserved_at: None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let stamped = Owner {
            reserved_at: Some(Utc::now().trunc_subsecs(0)),
            ..self.clone()
        };
        serde_json::to_vec(&stamped).expect("an owner always serializes")
    }

    /// The owner recorded in a reservation key, if it parses.
    pub fn decode(value: &[u8]) -> Option<Owner> {
        serde_json::from_slice(value).ok()
    }
}

/// What a pool hands out.
#[derive(Debug, Clone, Copy)]
enum Members {
    Ips(ServiceCidr),
    Ports(PortRange),
}

/// A range of values and the store keys that reserve them.
#[derive(Debug, Clone)]
pub struct Pool {
    prefix: &'static str,
    members: Members,
}

impl Pool {
    /// The cluster IP pool over `cidr`.
    pub fn ips(cidr: ServiceCidr) -> Pool {
        Pool {
            prefix: SERVICE_IPS_PREFIX,
            members: Members::Ips(cidr),
        }
    }

    /// The node port pool over `range`.
    pub fn ports(range: PortRange) -> Pool {
        Pool {
            prefix: NODE_PORTS_PREFIX,
            members: Members::Ports(range),
        }
    }

    /// The key prefix of this pool's reservations.
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    fn size(&self) -> u64 {
        match self.members {
            Members::Ips(c) => c.size(),
            Members::Ports(p) => p.size(),
        }
    }

    fn static_band(&self) -> u64 {
        match self.members {
            Members::Ips(c) => c.static_band(),
            Members::Ports(p) => p.static_band(),
        }
    }

    fn at(&self, offset: u64) -> String {
        match self.members {
            Members::Ips(c) => c.at(offset).to_string(),
            Members::Ports(p) => p.at(offset).to_string(),
        }
    }

    /// The offset of a value as written in a key or a spec; `None` if it is
    /// malformed or outside the range.
    pub fn offset_of(&self, value: &str) -> Option<u64> {
        match self.members {
            Members::Ips(c) => c.offset_of(value.parse().ok()?),
            Members::Ports(p) => p.offset_of(value.parse().ok()?),
        }
    }

    /// The reservation key of `value`, in its canonical spelling.
    pub fn key(&self, value: &str) -> String {
        let canonical = self
            .offset_of(value)
            .map(|o| self.at(o))
            .unwrap_or_else(|| value.to_string());
        format!("{}{canonical}", self.prefix)
    }

    /// A random value from the dynamic band, reserving nothing (what a dry
    /// run shows).
    pub fn candidate(&self) -> String {
        let (band, size) = (self.static_band(), self.size());
        let lo = if band < size { band } else { 0 };
        self.at(rand::rng().random_range(lo..size))
    }

    /// Reserves `value` for `owner`. Returns its key.
    ///
    /// # Errors
    /// [`PoolError::Taken`] if the key exists, [`PoolError::Store`].
    pub async fn reserve(
        &self,
        store: &dyn Store,
        value: &str,
        owner: &Owner,
    ) -> Result<String, PoolError> {
        let key = self.key(value);
        match store.create(&key, owner.encode()).await {
            Ok(_) => Ok(key),
            Err(StoreError::AlreadyExists { .. }) => Err(PoolError::Taken),
            Err(e) => Err(PoolError::Store(e)),
        }
    }

    /// Reserves a free value for `owner`: random picks from the dynamic band
    /// first, then, once those keep colliding, a scan of what is taken
    /// (dynamic band first, static band last). Returns the value and its key.
    ///
    /// # Errors
    /// [`PoolError::Full`], [`PoolError::Store`].
    pub async fn reserve_next(
        &self,
        store: &dyn Store,
        owner: &Owner,
    ) -> Result<(String, String), PoolError> {
        let (band, size) = (self.static_band(), self.size());
        let dynamic_lo = if band < size { band } else { 0 };
        for _ in 0..PROBES {
            let value = self.at(rand::rng().random_range(dynamic_lo..size));
            match self.reserve(store, &value, owner).await {
                Ok(key) => return Ok((value, key)),
                Err(PoolError::Taken) => continue,
                Err(e) => return Err(e),
            }
        }
        for _ in 0..LIST_ROUNDS {
            let taken = self.taken(store).await.map_err(PoolError::Store)?;
            let start = rand::rng().random_range(0..size);
            let free = scan(start, dynamic_lo, size, &taken)
                .or_else(|| scan(start, 0, dynamic_lo, &taken));
            let Some(offset) = free else {
                return Err(PoolError::Full);
            };
            let value = self.at(offset);
            match self.reserve(store, &value, owner).await {
                Ok(key) => return Ok((value, key)),
                Err(PoolError::Taken) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PoolError::Full)
    }

    /// The offsets reserved right now.
    async fn taken(&self, store: &dyn Store) -> Result<HashSet<u64>, StoreError> {
        Ok(list_all(store, self.prefix)
            .await?
            .iter()
            .filter_map(|kv| self.offset_of(&kv.key[self.prefix.len()..]))
            .collect())
    }
}

/// Every key under `prefix`, read in pages.
pub async fn list_all(store: &dyn Store, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
    let mut out: Vec<KeyValue> = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(
                prefix,
                ListOptions {
                    start_after: after.take(),
                    limit: Some(1000),
                    ..ListOptions::default()
                },
            )
            .await?;
        out.extend(page.kvs);
        match (page.more, out.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => return Ok(out),
        }
    }
}

/// The first offset in `lo..hi` not in `taken`, starting at `start` (or `lo`
/// when `start` is outside) and wrapping around.
fn scan(start: u64, lo: u64, hi: u64, taken: &HashSet<u64>) -> Option<u64> {
    if lo >= hi {
        return None;
    }
    let start = if (lo..hi).contains(&start) { start } else { lo };
    (start..hi).chain(lo..start).find(|o| !taken.contains(o))
}

/// Deletes `key` if `uid` still owns it. Returns whether it was deleted.
///
/// # Errors
/// Store failures other than the key being gone or changed meanwhile.
pub async fn release(store: &dyn Store, key: &str, uid: &str) -> Result<bool, StoreError> {
    let (kv, _) = store.get(key, None).await?;
    let Some(kv) = kv else {
        return Ok(false);
    };
    if Owner::decode(&kv.value).is_some_and(|o| o.uid != uid) {
        return Ok(false);
    }
    match store.delete(key, Some(kv.mod_revision)).await {
        Ok(_) => Ok(true),
        // Changed or gone since the read: no longer ours to free.
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kaji_store::MemoryStore;

    use super::*;

    fn owner(uid: &str) -> Owner {
        Owner {
            kind: "Service".into(),
            namespace: "default".into(),
            name: uid.into(),
            uid: uid.into(),
            reserved_at: None,
        }
    }

    #[tokio::test]
    async fn a_small_range_fills_up_exactly_and_then_reports_full() {
        let store = Arc::new(MemoryStore::new());
        let pool = Pool::ips("10.0.0.0/29".parse().unwrap());
        let mut got = HashSet::new();
        for i in 0..6 {
            let (ip, key) = pool
                .reserve_next(store.as_ref(), &owner(&i.to_string()))
                .await
                .unwrap();
            assert_eq!(key, format!("{SERVICE_IPS_PREFIX}{ip}"));
            assert!(got.insert(ip));
        }
        assert!(matches!(
            pool.reserve_next(store.as_ref(), &owner("x")).await,
            Err(PoolError::Full)
        ));
        let expected: HashSet<String> = (1..=6).map(|i| format!("10.0.0.{i}")).collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn dynamic_picks_stay_out_of_the_static_band_while_there_is_room() {
        let store = Arc::new(MemoryStore::new());
        let pool = Pool::ports(PortRange::default());
        for i in 0..50 {
            let (port, _) = pool
                .reserve_next(store.as_ref(), &owner(&i.to_string()))
                .await
                .unwrap();
            let port: u16 = port.parse().unwrap();
            assert!((30086..=32767).contains(&port), "{port}");
        }
    }

    #[tokio::test]
    async fn release_only_frees_a_key_its_owner_still_holds() {
        let store = Arc::new(MemoryStore::new());
        let pool = Pool::ports(PortRange::default());
        let key = pool
            .reserve(store.as_ref(), "30080", &owner("a"))
            .await
            .unwrap();
        assert!(matches!(
            pool.reserve(store.as_ref(), "30080", &owner("b")).await,
            Err(PoolError::Taken)
        ));
        assert!(!release(store.as_ref(), &key, "b").await.unwrap());
        assert!(release(store.as_ref(), &key, "a").await.unwrap());
        assert!(!release(store.as_ref(), &key, "a").await.unwrap());
        pool.reserve(store.as_ref(), "30080", &owner("b"))
            .await
            .unwrap();
    }

    #[test]
    fn keys_use_the_canonical_spelling_of_a_value() {
        let pool = Pool::ips(ServiceCidr::default());
        assert_eq!(
            pool.key("10.96.0.10"),
            "/registry/ranges/serviceips/10.96.0.10"
        );
        let v6 = Pool::ips("fd00::/112".parse().unwrap());
        assert_eq!(v6.key("fd00:0:0::a"), "/registry/ranges/serviceips/fd00::a");
    }
}
