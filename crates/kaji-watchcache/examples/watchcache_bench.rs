//! Watch cache benchmark: reads and watch fan-out from the cache against the inner store.
//!
//! ```text
//! cargo run --release -p kaji-watchcache --example watchcache_bench [-- SCALE]
//! ```
//!
//! `SCALE` (default 1.0) multiplies the number of watchers and events. The
//! SQLite database lives in a temporary directory under `$TMPDIR`. Prints a
//! markdown table; for watch rows, "ops" are events delivered to watchers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kaji_store::{ListOptions, MemoryStore, Store, WatchStream};
use kaji_store_sqlite::SqliteStore;
use kaji_watchcache::WatchCache;

const KEYS: usize = 10_000;
const VALUE_LEN: usize = 256;
const WRITERS: usize = 64;
const PREFIX: &str = "/registry/configmaps/";

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Row {
    source: &'static str,
    workload: String,
    ops: usize,
    elapsed: Duration,
}

impl Row {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {} | {:.3} | {:.0} | {:.2} |",
            self.source,
            self.workload,
            self.ops,
            secs,
            self.ops as f64 / secs,
            secs * 1e6 / self.ops as f64,
        );
    }
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale) as usize).max(1)
}

/// Creates `n` keys under `prefix` from [`WRITERS`] concurrent tasks.
async fn fill(store: Arc<dyn Store>, prefix: &str, n: usize) -> Result<(), Error> {
    let value = vec![7u8; VALUE_LEN];
    let tasks = (0..WRITERS).map(|t| {
        let (store, value, prefix) = (store.clone(), value.clone(), prefix.to_owned());
        tokio::spawn(async move {
            for i in (t..n).step_by(WRITERS) {
                store
                    .create(&format!("{prefix}{i:06}"), value.clone())
                    .await?;
            }
            Ok::<_, kaji_store::StoreError>(())
        })
    });
    for task in futures::future::join_all(tasks).await {
        task??;
    }
    Ok(())
}

async fn time_lists(
    source: &'static str,
    store: &dyn Store,
    limit: Option<usize>,
    runs: usize,
) -> Result<Row, Error> {
    let t = Instant::now();
    for _ in 0..runs {
        let page = store
            .list(
                PREFIX,
                ListOptions {
                    limit,
                    ..ListOptions::default()
                },
            )
            .await?;
        assert_eq!(page.kvs.len(), limit.unwrap_or(KEYS));
    }
    let workload = match limit {
        None => format!("list of {KEYS} keys"),
        Some(l) => format!("first page of {l} of {KEYS} keys"),
    };
    Ok(Row {
        source,
        workload,
        ops: runs,
        elapsed: t.elapsed(),
    })
}

async fn time_gets(source: &'static str, store: &dyn Store, n: usize) -> Result<Row, Error> {
    let t = Instant::now();
    for i in 0..n {
        let (kv, _) = store.get(&format!("{PREFIX}{:06}", i % KEYS), None).await?;
        assert!(kv.is_some());
    }
    Ok(Row {
        source,
        workload: "point get (sequential)".into(),
        ops: n,
        elapsed: t.elapsed(),
    })
}

/// Spawns one task per watch stream, each reading `events` events; resolves when all are done.
fn drain_all(
    streams: Vec<WatchStream>,
    events: usize,
) -> impl std::future::Future<Output = Result<(), Error>> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                for _ in 0..events {
                    match w.next().await {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(Error::from(e)),
                        None => return Err("watch ended".into()),
                    }
                }
                Ok(())
            })
        })
        .collect();
    async move {
        for task in futures::future::join_all(tasks).await {
            task??;
        }
        Ok(())
    }
}

/// `watchers` live watches on `store`, then `events` writes through `writer`; timed until
/// every watcher has every event.
async fn time_live_fanout(
    source: &'static str,
    store: Arc<dyn Store>,
    writer: Arc<dyn Store>,
    watchers: usize,
    events: usize,
) -> Result<Row, Error> {
    let prefix = "/registry/pods/";
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        streams.push(store.watch(prefix, 0).await?);
    }
    let t = Instant::now();
    let done = tokio::spawn(drain_all(streams, events));
    // Each run writes its own keys, since they share the inner store.
    let run = writer.current_revision().await?;
    fill(writer, &format!("{prefix}{run}/"), events).await?;
    done.await??;
    Ok(Row {
        source,
        workload: format!("{watchers} live watchers x {events} events"),
        ops: watchers * events,
        elapsed: t.elapsed(),
    })
}

/// `watchers` watches that each replay the last `events` events of the configmaps.
async fn time_replay(
    source: &'static str,
    store: &dyn Store,
    watchers: usize,
    events: usize,
) -> Result<Row, Error> {
    let from = store.current_revision().await? - events as i64 + 1;
    let t = Instant::now();
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        streams.push(store.watch(PREFIX, from).await?);
    }
    drain_all(streams, events).await?;
    Ok(Row {
        source,
        workload: format!("{watchers} watchers replaying {events} past events"),
        ops: watchers * events,
        elapsed: t.elapsed(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1.0);
    let watchers = scaled(1000, scale);
    let events = scaled(1000, scale);
    let dir = tempfile::tempdir()?;

    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("bench.db"))?);
    fill(sqlite.clone(), PREFIX, KEYS).await?;
    let cache = Arc::new(WatchCache::new(sqlite.clone(), &["/registry/"]));
    cache.ready().await;

    println!("| source | workload | ops | seconds | ops/s | µs/op |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    time_lists("sqlite", &*sqlite, None, 10).await?.print();
    time_lists("cache over sqlite", &*cache, None, 10)
        .await?
        .print();
    time_lists("sqlite", &*sqlite, Some(500), 20).await?.print();
    time_lists("cache over sqlite", &*cache, Some(500), 20)
        .await?
        .print();
    time_gets("sqlite", &*sqlite, KEYS).await?.print();
    time_gets("cache over sqlite", &*cache, KEYS).await?.print();

    // The last `events` writes are in the cache's buffer (10,000 events).
    let rewrite = sqlite.clone();
    fill(rewrite, "/registry/configmaps/x", events).await?;
    cache.list(PREFIX, ListOptions::default()).await?;
    time_replay("sqlite", &*sqlite, watchers, events)
        .await?
        .print();
    time_replay("cache over sqlite", &*cache, watchers, events)
        .await?
        .print();

    time_live_fanout("sqlite", sqlite.clone(), sqlite.clone(), watchers, events)
        .await?
        .print();
    time_live_fanout(
        "cache over sqlite",
        cache.clone(),
        sqlite.clone(),
        watchers,
        events,
    )
    .await?
    .print();
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    time_live_fanout("memory", memory.clone(), memory.clone(), watchers, events)
        .await?
        .print();
    let over_memory = Arc::new(WatchCache::new(memory.clone(), &["/registry/"]));
    over_memory.ready().await;
    time_live_fanout("cache over memory", over_memory, memory, watchers, events)
        .await?
        .print();
    let stats = cache.stats();
    eprintln!(
        "cache over sqlite: {} latest reads from memory, {} fell back; {} watches served, {} delegated, {} lagged",
        stats.reads_from_cache,
        stats.reads_from_inner,
        stats.watches_from_cache,
        stats.watches_from_inner,
        stats.watchers_lagged
    );
    Ok(())
}
