//! Durability under `kill -9`: every acknowledged write survives the writer's death.
//!
//! The parent test re-executes this test binary, filtered to `crash_child`,
//! with [`DB_ENV`] set. The child writes concurrently and prints each write
//! only after the store acknowledged it; the parent SIGKILLs it at a random
//! moment, reopens the database and checks every acknowledged write is there.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kaji_store::Store;
use kaji_store_sqlite::SqliteStore;

/// Set in the child only: the database path to write to.
const DB_ENV: &str = "KAJI_STORE_CRASH_DB";
/// Set in the child only: the round number, so each round writes fresh keys.
const ROUND_ENV: &str = "KAJI_STORE_CRASH_ROUND";
const ROUNDS: u32 = 5;
const WRITERS: usize = 32;

fn random(below: u64) -> u64 {
    RandomState::new().build_hasher().finish() % below
}

/// The child: writes until killed, printing `ack <key> <revision>` after each Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let (Ok(path), Ok(round)) = (std::env::var(DB_ENV), std::env::var(ROUND_ENV)) else {
        return; // Only meaningful when run by the parent below.
    };
    let store = Arc::new(SqliteStore::open(path).expect("child open"));
    let tasks = (0..WRITERS).map(|task| {
        let store = store.clone();
        let round = round.clone();
        tokio::spawn(async move {
            let own = format!("/crash/{round}/{task:02}/own");
            let mut own_rev = store
                .create(&own, vec![0])
                .await
                .expect("create")
                .mod_revision;
            ack(&own, own_rev);
            for i in 0u32.. {
                // Alternate fresh keys and CAS updates of one key.
                if i % 2 == 0 {
                    let key = format!("/crash/{round}/{task:02}/{i:06}");
                    let kv = store.create(&key, vec![7; 256]).await.expect("create");
                    ack(&key, kv.mod_revision);
                } else {
                    let kv = store
                        .update(&own, i.to_be_bytes().to_vec(), own_rev)
                        .await
                        .expect("update");
                    own_rev = kv.mod_revision;
                    ack(&own, own_rev);
                }
            }
        })
    });
    let all = futures::future::join_all(tasks);
    // The parent kills us long before this; never linger if it does not.
    let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
}

fn ack(key: &str, revision: i64) {
    // One write(2) per line: a line in the pipe is complete or absent.
    let mut out = std::io::stdout().lock();
    let line = format!("ack {key} {revision}\n");
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// Runs one child to its death and returns the writes it acknowledged, in order.
async fn kill_child_after_some_acks(path: &str, round: u32) -> Vec<(String, i64)> {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DB_ENV, path)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let acks = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (acks, count) = (acks.clone(), count.clone());
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                // A line cut short by the kill was never fully printed: not an ack.
                let parsed = line
                    .strip_suffix('\n')
                    .and_then(|l| l.strip_prefix("ack "))
                    .and_then(|l| l.split_once(' '))
                    .map(|(k, r)| (k.to_owned(), r.parse::<i64>().expect("revision")));
                if let Some(ack) = parsed {
                    acks.lock().unwrap().push(ack);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                line.clear();
            }
        })
    };
    let target = 50 + random(400) as usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "child acknowledged too few writes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(random(30))).await;
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    reader.join().expect("stdout reader");
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let path_str = path.to_str().unwrap().to_owned();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let acks = kill_child_after_some_acks(&path_str, round).await;
        let store = SqliteStore::open(&path).expect("reopen after kill -9");
        let current = store.current_revision().await.unwrap();

        // Each writer's acknowledged revisions are strictly increasing, and
        // every acknowledged write reads back at its revision.
        let mut last_per_task: HashMap<String, i64> = HashMap::new();
        for (key, rev) in &acks {
            assert!(
                *rev <= current,
                "acked {key}@{rev} beyond current {current}"
            );
            let task = key.rsplit_once('/').map(|(t, _)| t.to_owned()).unwrap();
            let last = last_per_task.insert(task, *rev).unwrap_or(0);
            assert!(*rev > last, "revisions of one writer went backwards");
            let (kv, _) = store.get(key, Some(*rev)).await.unwrap();
            let kv = kv.unwrap_or_else(|| panic!("acknowledged {key}@{rev} lost"));
            assert_eq!(kv.mod_revision, *rev, "{key}");
        }

        // The log has no holes: every revision from the compaction point is there, once.
        let from = store.compacted_revision().await.unwrap().max(1);
        let mut history = store.watch("", from).await.unwrap();
        let mut expected = from;
        while expected <= current {
            let event = tokio::time::timeout(Duration::from_secs(5), history.next())
                .await
                .expect("replay stalled")
                .expect("replay ended")
                .expect("replay error");
            assert_eq!(event.kv.mod_revision, expected);
            expected += 1;
        }

        // Compact now and then, so a kill also hits a store with a compaction point.
        if round % 2 == 1 {
            store.compact(current / 2).await.unwrap();
        }
        let compacted = store.compacted_revision().await.unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.current_revision().await.unwrap(), current);
        assert_eq!(reopened.compacted_revision().await.unwrap(), compacted);
        eprintln!(
            "round {round}: {} acks, revision {current}, compacted {compacted}",
            acks.len()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}
