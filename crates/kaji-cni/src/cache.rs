//! Attachment records: what each sandbox's ADD returned, kept on disk.
//!
//! The spec asks runtimes to hand a plugin the ADD result again on CHECK
//! and DEL (as `prevResult`), with the same configuration; keeping both on
//! disk also lets a restarted agent answer a repeated attach and tear down
//! pods it attached before (libcni keeps the same kind of cache).

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conf::NetworkList;

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading, writing or listing failed.
    #[error("attachment record {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying cause.
        #[source]
        source: io::Error,
    },
    /// A record does not parse (hand-edited or from another version).
    #[error("attachment record {} is corrupt: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

/// One attached sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Attachment {
    pub sandbox_id: String,
    pub netns: PathBuf,
    /// The pod CIDR it was attached under.
    pub pod_cidr: String,
    pub ip: Ipv4Addr,
    pub network: NetworkList,
    pub network_result: Value,
    pub loopback: NetworkList,
    pub loopback_result: Value,
}

/// The directory of records, one `<sandbox id>.json` each.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    fn path(&self, sandbox_id: &str) -> PathBuf {
        // Sandbox ids are validated as CNI container ids: plain file names.
        self.dir.join(format!("{sandbox_id}.json"))
    }

    /// The record for `sandbox_id`, if it is attached.
    pub fn load(&self, sandbox_id: &str) -> Result<Option<Attachment>, CacheError> {
        let path = self.path(sandbox_id);
        match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CacheError::Io { path, source }),
        }
    }

    /// Writes the record, replacing any older one atomically.
    pub fn store(&self, record: &Attachment) -> Result<(), CacheError> {
        let path = self.path(&record.sandbox_id);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let tmp = self.dir.join(format!(".{}.tmp", record.sandbox_id));
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Forgets `sandbox_id`; succeeds if there was no record.
    pub fn remove(&self, sandbox_id: &str) -> Result<(), CacheError> {
        let path = self.path(sandbox_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(CacheError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every record.
    pub fn list(&self) -> Result<Vec<Attachment>, CacheError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CacheError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| CacheError::Io {
                    path: self.dir.clone(),
                    source,
                })?
                .path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !is_record {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| CacheError::Io {
                path: path.clone(),
                source,
            })?;
            records.push(parse(&path, &bytes)?);
        }
        Ok(records)
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Attachment, CacheError> {
    serde_json::from_slice(bytes).map_err(|source| CacheError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str) -> Attachment {
        let cidr = "10.1.0.0/24".parse().unwrap();
        Attachment {
            sandbox_id: id.to_string(),
            netns: PathBuf::from(format!("/run/netns/{id}")),
            pod_cidr: "10.1.0.0/24".to_string(),
            ip: Ipv4Addr::new(10, 1, 0, 2),
            network: NetworkList::pod_network("kaji", "kaji0", &cidr, Path::new("/x")),
            network_result: json!({ "cniVersion": "1.0.0" }),
            loopback: NetworkList::loopback(),
            loopback_result: json!({ "cniVersion": "1.0.0" }),
        }
    }

    #[test]
    fn a_stored_record_loads_back_lists_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("attachments"));
        assert_eq!(cache.load("a").unwrap(), None);
        assert!(cache.list().unwrap().is_empty());

        cache.store(&record("a")).unwrap();
        cache.store(&record("b")).unwrap();
        assert_eq!(cache.load("a").unwrap(), Some(record("a")));
        assert_eq!(cache.list().unwrap().len(), 2);

        cache.remove("a").unwrap();
        cache.remove("a").unwrap();
        assert_eq!(cache.load("a").unwrap(), None);
        assert_eq!(cache.list().unwrap(), vec![record("b")]);
    }

    #[test]
    fn a_corrupt_record_is_an_error_rather_than_a_detached_pod() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        std::fs::write(dir.path().join("x.json"), "{").unwrap();
        assert!(matches!(cache.load("x"), Err(CacheError::Corrupt { .. })));
        assert!(matches!(cache.list(), Err(CacheError::Corrupt { .. })));
    }
}
