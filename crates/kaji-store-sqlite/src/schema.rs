//! The database layout, connection settings and row mapping shared by the writer and readers.

use std::path::Path;
use std::time::Duration;

use kaji_store::{EventType, KeyValue, Result, Revision, StoreError, WatchEvent};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// Key of the compaction point in `meta`.
pub(crate) const COMPACT_KEY: &str = "compact_revision";

/// One append-only table: each row is one revision of one key.
///
/// `name` is a BLOB so that prefix ranges compare bytewise, whatever the
/// collation. `value` is empty for a delete; `old_value` is the value the
/// row replaced, so an event carries its previous value even after
/// compaction removed the previous row.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS kv_name_prev_revision ON kv (name, prev_revision);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Columns every row query selects, in the order [`Row::read`] expects.
pub(crate) const ROW_COLUMNS: &str =
    "id, name, created, deleted, create_revision, prev_revision, value, old_value";

/// Maps a SQLite error to the store's backend error, saying what was being done.
pub(crate) fn db_err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(format!("sqlite: {what}"), e)
}

fn open(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db_err("open database"))?;
    // Readers may briefly wait on a checkpoint; the writer never contends with itself.
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(db_err("set busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The writer's connection: WAL, and an fsync at every commit.
pub(crate) fn connect_writer(path: &Path) -> Result<Connection> {
    let conn = open(path)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_err("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend {
            message: format!("sqlite: journal mode is {mode}, WAL required"),
            source: None,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err("set synchronous"))?;
    Ok(conn)
}

/// A reader's connection: never writes.
pub(crate) fn connect_reader(path: &Path) -> Result<Connection> {
    let conn = open(path)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(db_err("set query_only"))?;
    Ok(conn)
}

/// Creates the tables and indexes if they are missing.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(SCHEMA).map_err(db_err("create schema"))
}

/// The current revision and compaction point as seen by `conn`'s transaction.
///
/// The newest row is never compacted away (only rows below the point that a
/// later row supersedes, or tombstones below it), so `MAX(id)` is the revision.
pub(crate) fn head(conn: &Connection) -> Result<(Revision, Revision)> {
    let max_id: Revision = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM kv")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err("read current revision"))?;
    let compacted: Option<Revision> = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut s| s.query_row([COMPACT_KEY], |r| r.get(0)).optional())
        .map_err(db_err("read compaction point"))?;
    let compacted = compacted.unwrap_or(0);
    Ok((max_id.max(compacted), compacted))
}

/// The byte range `[start, end)` of keys under `prefix` (`end` none: unbounded).
pub(crate) fn prefix_range(prefix: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = prefix.as_bytes().to_vec();
    let mut end = start.clone();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (start, Some(end));
        }
    }
    (start, None)
}

/// One row of `kv`.
#[derive(Debug)]
pub(crate) struct Row {
    pub id: Revision,
    pub name: String,
    pub created: bool,
    pub deleted: bool,
    pub create_revision: Revision,
    pub prev_revision: Revision,
    pub value: Vec<u8>,
    pub old_value: Option<Vec<u8>>,
}

impl Row {
    /// Reads a row selected with [`ROW_COLUMNS`].
    pub(crate) fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        let name: Vec<u8> = r.get(1)?;
        let name = String::from_utf8(name).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
        })?;
        Ok(Row {
            id: r.get(0)?,
            name,
            created: r.get(2)?,
            deleted: r.get(3)?,
            create_revision: r.get(4)?,
            prev_revision: r.get(5)?,
            value: r.get(6)?,
            old_value: r.get(7)?,
        })
    }

    /// The key as this row left it (`None` for a tombstone).
    pub(crate) fn into_kv(self) -> Option<KeyValue> {
        (!self.deleted).then_some(KeyValue {
            key: self.name,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.id,
        })
    }

    /// The change this row records.
    pub(crate) fn into_event(self) -> WatchEvent {
        let prev = (!self.created).then(|| KeyValue {
            key: self.name.clone(),
            value: self.old_value.unwrap_or_default(),
            create_revision: self.create_revision,
            mod_revision: self.prev_revision,
        });
        if self.deleted {
            WatchEvent {
                event_type: EventType::Delete,
                kv: KeyValue {
                    key: self.name,
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: self.id,
                },
                prev,
            }
        } else {
            WatchEvent {
                event_type: EventType::Put,
                kv: KeyValue {
                    key: self.name,
                    value: self.value,
                    create_revision: self.create_revision,
                    mod_revision: self.id,
                },
                prev,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_bounds_exactly_the_prefix() {
        assert_eq!(
            prefix_range("/a/"),
            (b"/a/".to_vec(), Some(b"/a0".to_vec()))
        );
        assert_eq!(prefix_range(""), (Vec::new(), None));
    }
}
