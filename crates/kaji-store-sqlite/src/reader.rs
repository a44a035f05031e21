//! Reads on a small pool of connections of their own, so they never wait for the writer.
//!
//! Each read runs in one read transaction: WAL gives it a snapshot, so the
//! revision it reports and the rows it returns agree.

use std::sync::Arc;

use kaji_store::{KeyValue, ListOptions, ListResult, Result, Revision, StoreError};
use rusqlite::{params_from_iter, Connection, OptionalExtension, Transaction};

use crate::schema::{self, db_err, Row, ROW_COLUMNS};
use crate::Shared;

/// Runs `f` with a pooled reader connection on tokio's blocking pool.
pub(crate) async fn run<T, F>(shared: Arc<Shared>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    // The blocking task holds a permit while it holds a connection, which
    // bounds open reader connections even if the caller stops waiting.
    let permit = shared
        .reader_permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| StoreError::Closed)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let pooled = shared
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => schema::connect_reader(&shared.path)?,
        };
        let result = f(&mut conn);
        shared
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        result
    })
    .await
    .map_err(|e| StoreError::backend("sqlite reader task failed", e))?
}

/// Starts a read transaction: one snapshot for every statement of the read.
fn snapshot(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction().map_err(db_err("begin read"))
}

/// Resolves the revision to read at, rejecting compacted and future ones.
fn read_revision(tx: &Transaction<'_>, revision: Option<Revision>) -> Result<Revision> {
    let (current, compacted) = schema::head(tx)?;
    match revision {
        None | Some(0) => Ok(current),
        Some(r) if r > current => Err(StoreError::FutureRevision {
            requested: r,
            current,
        }),
        Some(r) if r < compacted => Err(StoreError::Compacted {
            requested: r,
            compacted,
        }),
        Some(r) => Ok(r),
    }
}

pub(crate) fn get(
    conn: &mut Connection,
    key: &str,
    revision: Option<Revision>,
) -> Result<(Option<KeyValue>, Revision)> {
    let tx = snapshot(conn)?;
    let at = read_revision(&tx, revision)?;
    let row = tx
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM kv WHERE name = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1"
        ))
        .and_then(|mut s| s.query_row((key.as_bytes(), at), Row::read).optional())
        .map_err(db_err("get"))?;
    Ok((row.and_then(Row::into_kv), at))
}

/// SQL selecting, per key in `name` order, the newest row at or below a revision.
///
/// Walks the `(name, id)` index in key order and stops at the limit, so a page
/// costs its own size, not the size of the prefix.
fn latest_rows_sql(select: &str, lower_inclusive: bool, has_end: bool, tail: &str) -> String {
    let lower = if lower_inclusive { ">=" } else { ">" };
    let end = if has_end { "AND kv.name < ?2" } else { "" };
    format!(
        "SELECT {select} FROM kv WHERE kv.name {lower} ?1 {end} \
         AND kv.id = (SELECT MAX(h.id) FROM kv AS h WHERE h.name = kv.name AND h.id <= ?3) \
         AND kv.deleted = 0 {tail}"
    )
}

pub(crate) fn list(
    conn: &mut Connection,
    prefix: &str,
    options: &ListOptions,
) -> Result<ListResult> {
    let tx = snapshot(conn)?;
    let at = read_revision(&tx, options.revision)?;
    let (start, end) = schema::prefix_range(prefix);
    let (lower, inclusive) = match &options.start_after {
        Some(after) if after.as_bytes() >= start.as_slice() => (after.as_bytes().to_vec(), false),
        _ => (start, true),
    };
    let limit = options.limit.filter(|l| *l > 0);
    // One extra row tells whether more remain.
    let sql_limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX - 1) + 1);
    let sql = latest_rows_sql(
        &ROW_COLUMNS
            .split(", ")
            .map(|c| format!("kv.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        inclusive,
        end.is_some(),
        "ORDER BY kv.name LIMIT ?4",
    );
    let params: Vec<rusqlite::types::Value> = vec![
        lower.into(),
        end.unwrap_or_default().into(),
        at.into(),
        sql_limit.into(),
    ];
    let mut stmt = tx.prepare_cached(&sql).map_err(db_err("prepare list"))?;
    let mut kvs = stmt
        .query_map(params_from_iter(params), Row::read)
        .and_then(|rows| {
            rows.filter_map(|r| r.map(Row::into_kv).transpose())
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("list"))?;
    let more = limit.is_some_and(|l| kvs.len() > l);
    if let Some(l) = limit {
        kvs.truncate(l);
    }
    Ok(ListResult {
        kvs,
        revision: at,
        more,
    })
}

pub(crate) fn count(conn: &mut Connection, prefix: &str) -> Result<i64> {
    let tx = snapshot(conn)?;
    let (current, _) = schema::head(&tx)?;
    let (start, end) = schema::prefix_range(prefix);
    let sql = latest_rows_sql("COUNT(*)", true, end.is_some(), "");
    let params: Vec<rusqlite::types::Value> =
        vec![start.into(), end.unwrap_or_default().into(), current.into()];
    tx.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params_from_iter(params), |r| r.get(0)))
        .map_err(db_err("count"))
}
