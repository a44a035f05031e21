//! The store seam: an etcd-shaped, revisioned key-value store.
//!
//! Owns the [`Store`] trait that every backend implements (one global,
//! monotonically increasing revision; compare-and-swap on a key's mod
//! revision; watch from any retained revision; compaction), the in-memory
//! backend used by unit tests, and the [`conformance`] suite every backend
//! must pass. It knows nothing of Kubernetes objects: keys and values are
//! opaque strings and bytes, and it must not grow API-server concerns.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub mod conformance;
pub mod faults;
mod memory;

pub use memory::MemoryStore;

/// A store revision. Revision 0 means "none"; the first write gets 1.
pub type Revision = i64;

/// One key as stored at some revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/configmaps/default/foo`.
    pub key: String,
    /// The stored bytes (empty in a delete event's `kv`).
    pub value: Vec<u8>,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last change to the key (its delete revision in a delete event).
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The key was created or updated; `prev` is `None` for a create.
    Put,
    /// The key was deleted; `kv.mod_revision` is the delete revision and `prev` the last value.
    Delete,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub event_type: EventType,
    /// The key after the change (for deletes: key, empty value, `create_revision` 0,
    /// `mod_revision` = delete revision).
    pub kv: KeyValue,
    /// The key's value before the change, when there was one.
    pub prev: Option<KeyValue>,
}

/// A stream of changes in revision order. It ends only on error or when the store shuts down.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// Options for [`Store::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read as of this revision; `None` reads the latest.
    pub revision: Option<Revision>,
    /// Only keys strictly greater than this one (continuation of a paged list).
    pub start_after: Option<String>,
    /// At most this many keys; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
}

/// The answer of [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Matching keys in ascending key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the list was read at (the store's current revision when reading the latest).
    pub revision: Revision,
    /// True when keys beyond `limit` remain under the prefix.
    pub more: bool,
}

/// Errors every backend reports in these same terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The key does not exist (update or delete of an absent key).
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Compare-and-swap failed: the key's mod revision is not the expected one.
    #[error("key {key} was modified (expected revision {expected})")]
    Conflict {
        /// The key.
        key: String,
        /// The mod revision the caller expected.
        expected: Revision,
        /// The key's current value, if it still exists.
        current: Option<KeyValue>,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction point: revisions below it are gone.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A watcher fell too far behind and was dropped; it must re-list.
    #[error("watcher fell behind and was dropped")]
    WatchLagged,
    /// The store is shutting down or closed.
    #[error("store is closed")]
    Closed,
    /// An option the backend does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Anything from the underlying engine (I/O, corruption, driver errors).
    #[error("backend error: {message}")]
    Backend {
        /// What the engine said.
        message: String,
        /// The engine's error, when it has one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// A backend error with a source.
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An etcd-shaped revisioned key-value store.
///
/// # Guarantees
/// - Every successful write gets a new revision, strictly greater than every
///   earlier one, and is durable (for durable backends) before it returns.
/// - Watches deliver every change under their prefix with revision >= the
///   start revision, exactly once, in revision order, with no gaps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the latest write (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision>;

    /// Reads one key, latest or as of `revision`. Returns the key (if present)
    /// and the revision the read was made at.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] / [`StoreError::FutureRevision`] for a revision out of range.
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)>;

    /// Lists keys that start with `prefix`, in ascending key order.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] / [`StoreError::FutureRevision`] for a revision out of range.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// Counts live keys that start with `prefix`.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Creates `key` if absent. Returns the new key-value.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the key exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces `key` only if its mod revision is `expected_revision`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent, [`StoreError::Conflict`] if modified since.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue>;

    /// Deletes `key`, only if its mod revision is `expected_revision` when given.
    /// Returns the delete revision and the deleted value.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent, [`StoreError::Conflict`] if modified since.
    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)>;

    /// Watches changes under `prefix` with revision >= `start_revision`
    /// (0 means "from now": only changes after the current revision).
    ///
    /// # Errors
    /// [`StoreError::Compacted`] if `start_revision` is below the compaction point.
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream>;

    /// Discards history before `revision` (as etcd does): revisions below it can
    /// no longer be read or watched from; `revision` itself and live keys are kept.
    /// Compaction does not create a revision.
    ///
    /// # Errors
    /// [`StoreError::FutureRevision`] beyond the current revision;
    /// [`StoreError::Compacted`] below the current compaction point.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The current compaction point (0 if never compacted).
    async fn compacted_revision(&self) -> Result<Revision>;
}
