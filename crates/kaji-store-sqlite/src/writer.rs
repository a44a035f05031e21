//! The single writer thread and its group commit.
//!
//! Every write request queues here. The thread takes all pending requests,
//! applies them in one transaction (each gets its own revision and its own
//! result), commits once, and only then publishes the revision, sends the
//! events to watchers and answers the callers. One fsync thus acknowledges a
//! whole batch, and nothing is visible or acknowledged before it is durable.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use kaji_store::{KeyValue, Result, Revision, StoreError, WatchEvent};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use crate::schema::{Row, COMPACT_KEY, ROW_COLUMNS};
use crate::{Batch, Shared};

/// Upper bounds on one transaction, so a commit cannot grow without limit.
const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 64 << 20;

/// A write the caller asked for.
#[derive(Debug)]
pub(crate) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

impl Op {
    fn value_len(&self) -> usize {
        match self {
            Op::Create { value, .. } | Op::Update { value, .. } => value.len(),
            Op::Delete { .. } | Op::Compact { .. } => 0,
        }
    }
}

/// What a successful write produced.
#[derive(Debug)]
pub(crate) enum Done {
    Put(KeyValue),
    Deleted(Revision, KeyValue),
    Compacted,
}

/// One queued write and where to send its result.
pub(crate) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Done>>,
}

/// Starts the writer thread. It exits once every request sender is dropped.
pub(crate) fn spawn(
    conn: Connection,
    queue: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    events: broadcast::Sender<Batch>,
    revision: Revision,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kaji-store-sqlite-writer".into())
        .spawn(move || {
            Writer {
                conn,
                shared,
                events,
                revision,
            }
            .run(queue)
        })
        .map_err(|e| StoreError::backend("spawn sqlite writer thread", e))
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    events: broadcast::Sender<Batch>,
    /// Last committed revision.
    revision: Revision,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Request>) {
        while let Ok(first) = queue.recv() {
            let mut bytes = first.op.value_len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(request) => {
                        bytes += request.op.value_len();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            tracing::trace!(writes = batch.len(), bytes, "sqlite store group commit");
            self.commit_batch(batch);
        }
        tracing::debug!("sqlite store writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        match self.apply(ops) {
            Ok(Applied {
                results,
                events,
                revision,
                compacted,
            }) => {
                // Revision first, then events: a watcher that reads the revision
                // after subscribing is sure to receive every later event.
                self.revision = revision;
                self.shared.revision.store(revision, Ordering::Release);
                if let Some(point) = compacted {
                    self.shared.compacted.store(point, Ordering::Release);
                }
                if !events.is_empty() {
                    // No receivers just means nobody is watching.
                    let _ = self.events.send(Arc::new(events));
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that gave up waiting is not an error.
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite store batch failed; failing every write in it");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend {
                        message: "sqlite: write batch failed".into(),
                        source: Some(Box::new(e.clone())),
                    }));
                }
            }
        }
    }

    /// Applies `ops` in one committed transaction. An `Err` means nothing was written.
    fn apply(&mut self, ops: Vec<Op>) -> Result<Applied, rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut applied = Applied {
            results: Vec::with_capacity(ops.len()),
            events: Vec::with_capacity(ops.len()),
            revision: self.revision,
            compacted: None,
        };
        for op in ops {
            let result = match op {
                Op::Create { key, value } => create(&tx, &mut applied, key, value),
                Op::Update {
                    key,
                    value,
                    expected,
                } => update(&tx, &mut applied, key, value, expected),
                Op::Delete { key, expected } => delete(&tx, &mut applied, key, expected),
                Op::Compact { revision } => compact(&tx, &mut applied, revision),
            }?;
            applied.results.push(result);
        }
        tx.commit()?;
        Ok(applied)
    }
}

/// The outcome of one transaction.
struct Applied {
    results: Vec<Result<Done>>,
    events: Vec<WatchEvent>,
    /// Revision after the writes applied so far.
    revision: Revision,
    /// The new compaction point, if the batch compacted.
    compacted: Option<Revision>,
}

impl Applied {
    /// Appends a row at the next revision and records its event.
    fn append(&mut self, tx: &Transaction<'_>, mut row: Row) -> rusqlite::Result<Row> {
        row.id = self.revision + 1;
        if row.created {
            row.create_revision = row.id;
        }
        tx.prepare_cached(&format!(
            "INSERT INTO kv ({ROW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))?
        .execute((
            row.id,
            row.name.as_bytes(),
            row.created,
            row.deleted,
            row.create_revision,
            row.prev_revision,
            &row.value,
            &row.old_value,
        ))?;
        self.revision = row.id;
        let event = Row {
            name: row.name.clone(),
            value: row.value.clone(),
            old_value: row.old_value.clone(),
            ..row
        };
        self.events.push(event.into_event());
        Ok(row)
    }
}

/// The key as a live row just appended for it.
fn live_kv(row: Row) -> KeyValue {
    KeyValue {
        key: row.name,
        value: row.value,
        create_revision: row.create_revision,
        mod_revision: row.id,
    }
}

/// The newest row of `key`, live or tombstone.
fn latest(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<Row>> {
    tx.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM kv WHERE name = ?1 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row([key.as_bytes()], Row::read)
    .optional()
}

fn create(
    tx: &Transaction<'_>,
    applied: &mut Applied,
    key: String,
    value: Vec<u8>,
) -> rusqlite::Result<Result<Done>> {
    let prev = latest(tx, &key)?;
    if prev.as_ref().is_some_and(|p| !p.deleted) {
        return Ok(Err(StoreError::AlreadyExists { key }));
    }
    let row = applied.append(
        tx,
        Row {
            id: 0,
            name: key,
            created: true,
            deleted: false,
            create_revision: 0,
            // Chaining onto the tombstone keeps (name, prev_revision) unique.
            prev_revision: prev.map_or(0, |p| p.id),
            value,
            old_value: None,
        },
    )?;
    Ok(Ok(Done::Put(live_kv(row))))
}

/// The live current row of `key`, or the error a conditional write reports.
fn current_for(
    tx: &Transaction<'_>,
    key: &str,
    expected: Option<Revision>,
) -> rusqlite::Result<Result<Row>> {
    let Some(current) = latest(tx, key)?.filter(|r| !r.deleted) else {
        return Ok(Err(StoreError::NotFound {
            key: key.to_owned(),
        }));
    };
    match expected {
        Some(expected) if expected != current.id => Ok(Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            current: current.into_kv(),
        })),
        _ => Ok(Ok(current)),
    }
}

fn update(
    tx: &Transaction<'_>,
    applied: &mut Applied,
    key: String,
    value: Vec<u8>,
    expected: Revision,
) -> rusqlite::Result<Result<Done>> {
    let current = match current_for(tx, &key, Some(expected))? {
        Ok(current) => current,
        Err(e) => return Ok(Err(e)),
    };
    let row = applied.append(
        tx,
        Row {
            id: 0,
            name: key,
            created: false,
            deleted: false,
            create_revision: current.create_revision,
            prev_revision: current.id,
            value,
            old_value: Some(current.value),
        },
    )?;
    Ok(Ok(Done::Put(live_kv(row))))
}

fn delete(
    tx: &Transaction<'_>,
    applied: &mut Applied,
    key: String,
    expected: Option<Revision>,
) -> rusqlite::Result<Result<Done>> {
    let current = match current_for(tx, &key, expected)? {
        Ok(current) => current,
        Err(e) => return Ok(Err(e)),
    };
    let row = applied.append(
        tx,
        Row {
            id: 0,
            name: key.clone(),
            created: false,
            deleted: true,
            create_revision: current.create_revision,
            prev_revision: current.id,
            value: Vec::new(),
            old_value: Some(current.value.clone()),
        },
    )?;
    let prev = KeyValue {
        key,
        value: current.value,
        create_revision: current.create_revision,
        mod_revision: current.id,
    };
    Ok(Ok(Done::Deleted(row.id, prev)))
}

/// Deletes every row below `revision` that a row at or below it supersedes,
/// and every tombstone below it, then records the point durably.
fn compact(
    tx: &Transaction<'_>,
    applied: &mut Applied,
    revision: Revision,
) -> rusqlite::Result<Result<Done>> {
    let compacted: Revision = tx
        .prepare_cached("SELECT COALESCE(MAX(value), 0) FROM meta WHERE name = ?1")?
        .query_row([COMPACT_KEY], |r| r.get(0))?;
    if revision > applied.revision {
        return Ok(Err(StoreError::FutureRevision {
            requested: revision,
            current: applied.revision,
        }));
    }
    if revision < compacted {
        return Ok(Err(StoreError::Compacted {
            requested: revision,
            compacted,
        }));
    }
    let removed = tx
        .prepare_cached(
            "DELETE FROM kv WHERE id < ?1 AND (deleted = 1 OR id < \
             (SELECT MAX(h.id) FROM kv AS h WHERE h.name = kv.name AND h.id <= ?1))",
        )?
        .execute([revision])?;
    tx.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute((COMPACT_KEY, revision))?;
    tracing::debug!(revision, removed, "compacted sqlite store");
    applied.compacted = Some(revision);
    Ok(Ok(Done::Compacted))
}
