//! Store benchmark: SqliteStore (group commit) against redb (one durable commit per write).
//!
//! ```text
//! cargo run --release -p kaji-store-sqlite --example store_bench [-- SCALE]
//! ```
//!
//! `SCALE` (default 1.0) multiplies every operation count. Write figures are
//! the median of three alternating runs per engine. Databases live in a
//! temporary directory under `$TMPDIR`; put it on a real disk, since fsync is the
//! cost being measured. Prints a markdown table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaji_store::{ListOptions, Store};
use kaji_store_sqlite::SqliteStore;

const VALUE_LEN: usize = 256;
/// Write workloads run this many times per engine; the median is reported.
const RUNS: usize = 3;
const CONCURRENCY: usize = 64;
const TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("kv");

struct Row {
    engine: &'static str,
    workload: String,
    ops: usize,
    elapsed: Duration,
}

impl Row {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {} | {:.3} | {:.0} | {:.1} |",
            self.engine,
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

/// Sequential then concurrent creates on a fresh SqliteStore.
async fn sqlite_writes(
    dir: &Path,
    n: usize,
    per_task: usize,
    value: &[u8],
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let store = Arc::new(SqliteStore::open(dir.join("writes.db"))?);
    let t = Instant::now();
    for i in 0..n {
        store
            .create(&format!("/seq/{i:08}"), value.to_vec())
            .await?;
    }
    let sequential = t.elapsed();
    let t = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|task| {
            let (store, value) = (store.clone(), value.to_vec());
            tokio::spawn(async move {
                for i in 0..per_task {
                    store
                        .create(&format!("/conc/{task:02}/{i:08}"), value.clone())
                        .await?;
                }
                Ok::<_, kaji_store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((sequential, t.elapsed()))
}

/// The same shape on redb, one durable (default `Immediate`) commit per write.
fn redb_writes(
    dir: &Path,
    n: usize,
    per_task: usize,
    value: &[u8],
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let db = redb::Database::create(dir.join("writes.redb"))?;
    let put = |key: &str| -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?.insert(key, value)?;
        tx.commit()?;
        Ok(())
    };
    let t = Instant::now();
    for i in 0..n {
        put(&format!("/seq/{i:08}"))?;
    }
    let sequential = t.elapsed();
    let t = Instant::now();
    std::thread::scope(|scope| -> Result<(), redb::Error> {
        let handles: Vec<_> = (0..CONCURRENCY)
            .map(|task| {
                let put = &put;
                scope.spawn(move || -> Result<(), redb::Error> {
                    for i in 0..per_task {
                        put(&format!("/conc/{task:02}/{i:08}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("redb writer thread panicked")?;
        }
        Ok(())
    })?;
    Ok((sequential, t.elapsed()))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1.0);
    let value = vec![0xAB_u8; VALUE_LEN];
    let mut rows = Vec::new();

    // Writes: engines alternate, fresh database each run, median of RUNS, so
    // that a noisy disk (shared VM) hurts both engines alike.
    let n = scaled(1000, scale);
    let per_task = scaled(100, scale);
    let (mut sqlite_seq, mut sqlite_conc, mut redb_seq, mut redb_conc) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let dir = tempfile::tempdir()?;
        let (seq, conc) = sqlite_writes(dir.path(), n, per_task, &value).await?;
        sqlite_seq.push(seq);
        sqlite_conc.push(conc);
        let dir = tempfile::tempdir()?;
        let (seq, conc) = redb_writes(dir.path(), n, per_task, &value)?;
        redb_seq.push(seq);
        redb_conc.push(conc);
    }
    let concurrent = format!("{CONCURRENCY}-way concurrent create");
    for (engine, workload, ops, samples) in [
        (
            "sqlite (kaji)",
            "sequential create".to_owned(),
            n,
            sqlite_seq,
        ),
        ("redb", "sequential create".to_owned(), n, redb_seq),
        (
            "sqlite (kaji)",
            concurrent.clone(),
            CONCURRENCY * per_task,
            sqlite_conc,
        ),
        ("redb", concurrent, CONCURRENCY * per_task, redb_conc),
    ] {
        rows.push(Row {
            engine,
            workload,
            ops,
            elapsed: median(samples),
        });
    }

    // Reads on SqliteStore.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("reads.db"))?);
    let range = 10_000;
    let loaders = 16;
    let tasks: Vec<_> = (0..loaders)
        .map(|task| {
            let (store, value) = (store.clone(), value.clone());
            tokio::spawn(async move {
                for i in (task..range).step_by(loaders) {
                    store
                        .create(&format!("/range/{i:08}"), value.clone())
                        .await?;
                }
                Ok::<_, kaji_store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }

    let reads = scaled(10_000, scale);
    let t = Instant::now();
    for i in 0..reads {
        let key = format!("/range/{:08}", (i * 7919) % range);
        let (kv, _) = store.get(&key, None).await?;
        assert!(kv.is_some());
    }
    rows.push(Row {
        engine: "sqlite (kaji)",
        workload: "point get (sequential)".into(),
        ops: reads,
        elapsed: t.elapsed(),
    });

    let lists = scaled(10, scale);
    let t = Instant::now();
    for _ in 0..lists {
        let listed = store.list("/range/", ListOptions::default()).await?;
        assert_eq!(listed.kvs.len(), range);
    }
    rows.push(Row {
        engine: "sqlite (kaji)",
        workload: format!("list of {range} keys"),
        ops: lists,
        elapsed: t.elapsed(),
    });

    let page_size = 500;
    let pages = range / page_size;
    let t = Instant::now();
    let mut after = None;
    for _ in 0..pages {
        let page = store
            .list(
                "/range/",
                ListOptions {
                    start_after: after.take(),
                    limit: Some(page_size),
                    ..ListOptions::default()
                },
            )
            .await?;
        after = page.kvs.last().map(|kv| kv.key.clone());
    }
    rows.push(Row {
        engine: "sqlite (kaji)",
        workload: format!("list of {range} keys, pages of {page_size} (per page)"),
        ops: pages,
        elapsed: t.elapsed(),
    });

    println!("| engine | workload | ops | seconds | ops/s | µs/op |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for row in &rows {
        row.print();
    }
    Ok(())
}
