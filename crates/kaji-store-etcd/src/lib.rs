//! The etcd v3 backend of the [`Store`] seam, for clusters that outgrow one
//! machine: several API servers share one etcd cluster.
//!
//! Owns the mapping of the store's operations onto etcd's API, exactly as
//! kube-apiserver uses it: creates and compare-and-swaps are transactions on
//! a key's create/mod revision, a revision is etcd's own revision, and
//! watches resume from any retained revision. It must not interpret keys
//! or values, and it holds no state of its own beyond the client.
//! [`testing`] starts real etcd processes for tests.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use kaji_store::{
    EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

pub mod testing;

/// Where etcd is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379` (several for a cluster).
    pub endpoints: Vec<String>,
    /// TLS: the CA that signed the servers' certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// TLS client certificate and key (PEM), for etcd's client-cert auth.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl EtcdConfig {
    /// Parses `etcd://host:port[,host:port…]` (plain) or
    /// `etcds://host:port[,…]` (TLS; give the CA and client files
    /// separately), as `--store` takes it.
    ///
    /// # Errors
    /// A message when the URL is not of that shape.
    pub fn from_url(url: &str) -> std::result::Result<Self, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("etcd://") {
            ("http", r)
        } else if let Some(r) = url.strip_prefix("etcds://") {
            ("https", r)
        } else {
            return Err(format!(
                "{url:?} is not an etcd URL (etcd://host:port[,host:port…] or etcds://…)"
            ));
        };
        let endpoints: Vec<String> = rest
            .trim_end_matches('/')
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(format!("{url:?} names no etcd endpoint"));
        }
        Ok(EtcdConfig {
            endpoints,
            ..Default::default()
        })
    }
}

/// A [`Store`] on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

/// How long a connection attempt may take before the store gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl EtcdStore {
    /// Connects to etcd (lazily balanced across the endpoints).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when no endpoint answers.
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if config.ca_pem.is_some() || config.client_cert_pem.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &config.ca_pem {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &config.client_cert_pem {
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| StoreError::backend("connecting to etcd", e))?;
        let store = EtcdStore { client };
        // Fail now, not at the first request, when etcd is unreachable.
        store.current_revision().await?;
        Ok(store)
    }

    async fn current_or_error(&self, requested: Revision, error: etcd_client::Error) -> StoreError {
        let message = error.to_string();
        if message.contains("required revision has been compacted") {
            let compacted = self.compacted_revision().await.unwrap_or(0);
            return StoreError::Compacted {
                requested,
                compacted,
            };
        }
        if message.contains("required revision is a future revision") {
            let current = self.current_revision().await.unwrap_or(0);
            return StoreError::FutureRevision { requested, current };
        }
        StoreError::backend("etcd request failed", error)
    }
}

fn backend(what: &'static str) -> impl FnOnce(etcd_client::Error) -> StoreError {
    move |e| StoreError::backend(what, e)
}

fn kv_of(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or(0)
}

/// The first key after every key starting with `prefix` (etcd's range end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // An empty (or all-0xff) prefix ranges over everything.
    vec![0]
}

/// Why a compare-and-swap on `key` failed, from its `or_else` branch (a
/// get of the key): modified since `expected`, or gone.
fn cas_failure(key: &str, expected: Revision, responses: &[TxnOpResponse]) -> StoreError {
    let current = responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().map(kv_of),
        _ => None,
    });
    match current {
        Some(current) => StoreError::Conflict {
            key: key.to_string(),
            expected,
            current: Some(current),
        },
        None => StoreError::NotFound {
            key: key.to_string(),
        },
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .client
            .kv_client()
            .get("\0", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(backend("reading etcd's revision"))?;
        Ok(header_revision(resp.header()))
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let mut options = GetOptions::new();
        if let Some(r) = revision {
            options = options.with_revision(r);
        }
        let resp = match self.client.kv_client().get(key, Some(options)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.current_or_error(revision.unwrap_or(0), e).await),
        };
        let at = revision.unwrap_or_else(|| header_revision(resp.header()));
        Ok((resp.kvs().first().map(kv_of), at))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        // Strictly after `start_after`: the smallest key greater than it,
        // but never before the prefix. etcd refuses an empty key: "\0" is
        // the smallest it takes.
        let mut from = match &options.start_after {
            Some(after) => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k.max(prefix.as_bytes().to_vec())
            }
            None => prefix.as_bytes().to_vec(),
        };
        if from.is_empty() {
            from.push(0);
        }
        let mut get = GetOptions::new().with_range(prefix_end(prefix));
        if let Some(r) = options.revision {
            get = get.with_revision(r);
        }
        if let Some(limit) = options.limit.filter(|l| *l > 0) {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let resp = match self.client.kv_client().get(from, Some(get)).await {
            Ok(resp) => resp,
            Err(e) => {
                return Err(self
                    .current_or_error(options.revision.unwrap_or(0), e)
                    .await)
            }
        };
        Ok(ListResult {
            kvs: resp.kvs().iter().map(kv_of).collect(),
            revision: options
                .revision
                .unwrap_or_else(|| header_revision(resp.header())),
            more: resp.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let resp = self
            .client
            .kv_client()
            .get(
                prefix,
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .map_err(backend("counting keys"))?;
        Ok(resp.count())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(backend("creating a key"))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = header_revision(resp.header());
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                expected_revision,
            )])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(backend("updating a key"))?;
        let responses = resp.op_responses();
        if !resp.succeeded() {
            return Err(cas_failure(key, expected_revision, &responses));
        }
        let rev = header_revision(resp.header());
        let create_revision = responses
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(put) => put.prev_key().map(|p| p.create_revision()),
                _ => None,
            })
            .unwrap_or(rev);
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: rev,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        // Unconditional deletes still need the key to exist: compare on
        // "was created" (create revision > 0).
        let compare = match expected_revision {
            Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(backend("deleting a key"))?;
        let responses = resp.op_responses();
        if !resp.succeeded() {
            return Err(cas_failure(key, expected_revision.unwrap_or(0), &responses));
        }
        let deleted = responses
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(kv_of),
                _ => None,
            })
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
        Ok((header_revision(resp.header()), deleted))
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key();
        // "From now" is pinned to a revision before the watch exists, so a
        // write racing the watch's creation is still seen.
        let start_revision = match start_revision {
            0 => self.current_revision().await? + 1,
            r => r,
        };
        options = options.with_start_revision(start_revision);
        // etcd reports a compacted start only after creating the watch; a
        // read at that revision tells at once (the next revision is a
        // future one to read, yet a fine start for a watch).
        match self.probe(start_revision).await {
            Ok(()) | Err(StoreError::FutureRevision { .. }) => {}
            Err(e) => return Err(e),
        }
        let stream = self
            .client
            .watch_client()
            .watch(prefix, Some(options))
            .await
            .map_err(backend("watching"))?;
        let events = futures::stream::unfold(Some(stream), move |state| async move {
            let mut stream = state?;
            loop {
                return match stream.message().await {
                    Ok(Some(resp)) if resp.canceled() || resp.compact_revision() > 0 => Some((
                        vec![Err(StoreError::Compacted {
                            requested: start_revision,
                            compacted: resp.compact_revision(),
                        })],
                        None,
                    )),
                    Ok(Some(resp)) if resp.events().is_empty() => continue,
                    Ok(Some(resp)) => {
                        let batch = resp.events().iter().filter_map(event_of).map(Ok).collect();
                        Some((batch, Some(stream)))
                    }
                    Ok(None) => None,
                    Err(e) => Some((
                        vec![Err(StoreError::backend("watch stream failed", e))],
                        None,
                    )),
                };
            }
        })
        .flat_map(futures::stream::iter);
        Ok(events.boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        match self.client.kv_client().compact(revision, None).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.current_or_error(revision, e).await),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // etcd does not report its compaction point; a read below it fails,
        // so find the lowest readable revision by bisection.
        let current = self.current_revision().await?;
        if self.readable_at(1).await? {
            return Ok(0);
        }
        let (mut gone, mut kept) = (1, current);
        while kept - gone > 1 {
            let mid = gone + (kept - gone) / 2;
            if self.readable_at(mid).await? {
                kept = mid;
            } else {
                gone = mid;
            }
        }
        Ok(kept)
    }
}

impl EtcdStore {
    /// Whether `revision` can still be read (is not compacted).
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let options = GetOptions::new().with_count_only().with_revision(revision);
        match self.client.kv_client().get("\0", Some(options)).await {
            Ok(_) => Ok(true),
            Err(e)
                if e.to_string()
                    .contains("required revision has been compacted") =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::backend("reading a past revision", e)),
        }
    }

    /// Fails with [`StoreError::Compacted`] or [`StoreError::FutureRevision`]
    /// when `revision` cannot be read.
    async fn probe(&self, revision: Revision) -> Result<()> {
        let options = GetOptions::new().with_count_only().with_revision(revision);
        match self.client.kv_client().get("\0", Some(options)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.current_or_error(revision, e).await),
        }
    }
}

fn event_of(ev: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = kv_of(ev.kv()?);
    let prev = ev.prev_kv().map(kv_of);
    Some(match ev.event_type() {
        etcd_client::EventType::Put => WatchEvent {
            event_type: EventType::Put,
            kv,
            prev,
        },
        etcd_client::EventType::Delete => WatchEvent {
            event_type: EventType::Delete,
            kv: KeyValue {
                create_revision: 0,
                value: Vec::new(),
                ..kv
            },
            prev,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_every_endpoint() {
        let c = EtcdConfig::from_url("etcd://127.0.0.1:2379,127.0.0.1:22379").unwrap();
        assert_eq!(
            c.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        let tls = EtcdConfig::from_url("etcds://etcd.example:2379").unwrap();
        assert_eq!(tls.endpoints, ["https://etcd.example:2379"]);
        assert!(EtcdConfig::from_url("sqlite:///tmp/x").is_err());
        assert!(EtcdConfig::from_url("etcd://").is_err());
    }

    #[test]
    fn a_prefix_ranges_up_to_its_successor() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
