//! Watch streams: subscribe to the live broadcast, replay history, then go live.
//!
//! The order is what makes them gapless and duplicate-free. The caller
//! subscribes first; then `until`, the committed revision, is read. Every
//! revision up to `until` is in the table, and every later one is broadcast
//! after the subscription (the writer publishes the revision before the
//! events). So the stream replays `[start, until]` from the table in pages,
//! then streams live events, dropping any at or below `until`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use kaji_store::{Result, Revision, StoreError, WatchEvent, WatchStream};
use rusqlite::params_from_iter;
use tokio::sync::broadcast;

use crate::schema::{self, db_err, Row, COMPACT_KEY, ROW_COLUMNS};
use crate::{reader, Batch, Shared};

/// Rows read per replay page, bounding memory when values are large.
const REPLAY_PAGE: i64 = 128;

struct State {
    shared: Arc<Shared>,
    live: broadcast::Receiver<Batch>,
    prefix: String,
    /// Next revision to replay from the table.
    next: Revision,
    /// Last revision replayed from the table; live events must be above it.
    until: Revision,
    /// Live events below this are not asked for (a start in the future).
    start: Revision,
    buffered: VecDeque<WatchEvent>,
    done: bool,
}

/// Builds a watch stream; `live` must have been subscribed before this is called.
pub(crate) async fn start(
    shared: Arc<Shared>,
    live: broadcast::Receiver<Batch>,
    prefix: String,
    start_revision: Revision,
) -> Result<WatchStream> {
    let compacted = shared.compacted.load(Ordering::Acquire);
    if start_revision > 0 && start_revision < compacted {
        return Err(StoreError::Compacted {
            requested: start_revision,
            compacted,
        });
    }
    let until = shared.revision.load(Ordering::Acquire);
    let start = if start_revision <= 0 {
        until + 1
    } else {
        start_revision
    };
    let state = State {
        shared,
        live,
        prefix,
        next: start,
        until,
        start,
        buffered: VecDeque::new(),
        done: false,
    };
    Ok(futures::stream::unfold(state, State::next_item).boxed())
}

impl State {
    async fn next_item(mut self) -> Option<(Result<WatchEvent>, State)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.buffered.pop_front() {
                return Some((Ok(event), self));
            }
            if self.next <= self.until {
                if let Err(e) = self.replay_page().await {
                    self.done = true;
                    return Some((Err(e), self));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => {
                    let floor = self.start.max(self.until + 1);
                    self.buffered.extend(
                        batch
                            .iter()
                            .filter(|e| {
                                e.kv.mod_revision >= floor && e.kv.key.starts_with(&self.prefix)
                            })
                            .cloned(),
                    );
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.done = true;
                    return Some((Err(StoreError::WatchLagged), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the next page of history under the prefix into `buffered`.
    async fn replay_page(&mut self) -> Result<()> {
        let (next, until, prefix) = (self.next, self.until, self.prefix.clone());
        let rows = reader::run(self.shared.clone(), move |conn| {
            let tx = conn.transaction().map_err(db_err("begin replay"))?;
            let compacted: Revision = tx
                .prepare_cached("SELECT COALESCE(MAX(value), 0) FROM meta WHERE name = ?1")
                .and_then(|mut s| s.query_row([COMPACT_KEY], |r| r.get(0)))
                .map_err(db_err("read compaction point"))?;
            // Compaction raced the replay: the history still to send may be gone.
            if next < compacted {
                return Err(StoreError::Compacted {
                    requested: next,
                    compacted,
                });
            }
            let (start, end) = schema::prefix_range(&prefix);
            let end_clause = if end.is_some() { "AND name < ?4" } else { "" };
            let sql = format!(
                "SELECT {ROW_COLUMNS} FROM kv WHERE id >= ?1 AND id <= ?2 AND name >= ?3 \
                 {end_clause} ORDER BY id LIMIT ?5"
            );
            let params: Vec<rusqlite::types::Value> = vec![
                next.into(),
                until.into(),
                start.into(),
                end.unwrap_or_default().into(),
                REPLAY_PAGE.into(),
            ];
            let mut stmt = tx.prepare_cached(&sql).map_err(db_err("prepare replay"))?;
            let rows = stmt
                .query_map(params_from_iter(params), Row::read)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db_err("replay history"))?;
            Ok(rows)
        })
        .await?;
        self.next = match rows.last() {
            Some(last) if rows.len() as i64 == REPLAY_PAGE => last.id + 1,
            _ => self.until + 1,
        };
        self.buffered.extend(rows.into_iter().map(Row::into_event));
        Ok(())
    }
}
