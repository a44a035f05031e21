//! The embedded, durable default [`Store`] backend, on SQLite, in the shape of kine.
//!
//! Owns one database file: a single append-only `kv` table that is both the
//! data and the history (row id = revision; a unique index on
//! `(name, prev_revision)` backs compare-and-swap), plus a `meta` table holding
//! the compaction point. One writer thread applies every queued write in one
//! transaction and commits once (group commit, WAL, `synchronous=FULL`), so a
//! write is acknowledged only once it is fsynced; readers use a small pool of
//! their own connections. It implements the [`kaji_store::Store`] semantics
//! and nothing more: it must not know about Kubernetes objects, and nothing
//! else may open or write its database file while it is open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use kaji_store::{
    KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchEvent, WatchStream,
};
use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot};

mod reader;
mod schema;
mod watch;
mod writer;

use writer::{Done, Op, Request};

/// How many committed batches a watcher may fall behind before it is dropped.
const WATCH_BUFFER: usize = 4096;

/// Reader connections: at most this many reads run at once, each on its own connection.
const READERS: usize = 8;

/// A batch of events from one commit, shared by every watcher.
type Batch = Arc<Vec<WatchEvent>>;

/// State shared by the store, its readers and its watch streams.
struct Shared {
    path: PathBuf,
    /// Idle reader connections.
    readers: Mutex<Vec<Connection>>,
    /// One permit per reader connection that may exist.
    reader_permits: Arc<tokio::sync::Semaphore>,
    /// Last committed revision; set after commit and before publishing.
    revision: AtomicI64,
    /// Last committed compaction point.
    compacted: AtomicI64,
}

/// A [`Store`] in one SQLite database file.
///
/// # Guarantees
/// A write returns only after its transaction is committed and fsynced; many
/// concurrent writes share one commit. Reopening a file resumes at its revision.
///
/// # Caveats
/// A storage error while committing a batch fails every write of that batch.
/// A watcher [`WATCH_BUFFER`] commits behind gets [`StoreError::WatchLagged`].
pub struct SqliteStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    events: broadcast::Sender<Batch>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .field("revision", &self.shared.revision.load(Ordering::Acquire))
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the file cannot be opened or its schema created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = schema::connect_writer(&path)?;
        schema::migrate(&mut conn)?;
        let (revision, compacted) = schema::head(&conn)?;
        let shared = Arc::new(Shared {
            path,
            readers: Mutex::new(Vec::new()),
            reader_permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        });
        let (requests, queue) = mpsc::channel();
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let writer = writer::spawn(conn, queue, shared.clone(), events.clone(), revision)?;
        tracing::debug!(path = %shared.path.display(), revision, compacted, "opened sqlite store");
        Ok(SqliteStore {
            shared,
            requests: Some(requests),
            events,
            writer: Some(writer),
        })
    }

    /// The database file this store writes.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn submit(&self, op: Op) -> Result<Done> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Request { op, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled reader connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        reader::run(self.shared.clone(), f).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit;
        // joining makes a reopen of the same file right after drop see it closed.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("sqlite store writer thread panicked");
            }
        }
    }
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("writer answered {what} with an unexpected outcome"),
        source: None,
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let key = key.to_owned();
        self.read(move |conn| reader::get(conn, &key, revision))
            .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.read(move |conn| reader::list(conn, &prefix, &options))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let prefix = prefix.to_owned();
        self.read(move |conn| reader::count(conn, &prefix)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        match self
            .submit(Op::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Done::Put(kv) => Ok(kv),
            _ => Err(unexpected("create")),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        match self
            .submit(Op::Update {
                key: key.to_owned(),
                value,
                expected: expected_revision,
            })
            .await?
        {
            Done::Put(kv) => Ok(kv),
            _ => Err(unexpected("update")),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        match self
            .submit(Op::Delete {
                key: key.to_owned(),
                expected: expected_revision,
            })
            .await?
        {
            Done::Deleted(revision, prev) => Ok((revision, prev)),
            _ => Err(unexpected("delete")),
        }
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        watch::start(
            self.shared.clone(),
            self.events.subscribe(),
            prefix.to_owned(),
            start_revision,
        )
        .await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(Op::Compact { revision }).await? {
            Done::Compacted => Ok(()),
            _ => Err(unexpected("compact")),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}
