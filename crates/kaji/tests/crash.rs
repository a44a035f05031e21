//! Crash loop of the whole `kaji up`: every acknowledged write survives SIGKILL.
//!
//! Each round starts `kaji up --runtime none` on the SAME data dir, checks
//! what the previous rounds left there, runs concurrent writers through the
//! API (kube-rs over HTTPS with the kubeconfig's client certificate:
//! creates, compare-and-swap updates and deletes of ConfigMaps) and SIGKILLs
//! the server (by its PID) at a random moment. A write counts as
//! acknowledged only once its 2xx response arrived. After every restart:
//!
//! - the server came up and its log shows no panic;
//! - the revision (a list's resourceVersion) did not go backwards: it is at
//!   least every acknowledged resourceVersion and the previous round's list;
//! - every acknowledged write is there with its value and resourceVersion,
//!   or with a later value its writer sent (the one write in flight at the
//!   kill may have landed without its answer); acknowledged deletes stay
//!   deleted;
//! - nothing is half-visible: every object has a complete body (its value
//!   and its padding derived from it), and its value is one some writer sent
//!   for that very name;
//! - new writes get resourceVersions above everything from before the crash.
//!
//! After the last round the server is stopped with SIGTERM and must exit 0.
//! `KAJI_CRASH_ROUNDS` sets the number of rounds (default 5, a few seconds);
//! `scripts/crash-loop.sh` runs 50.

mod common;

use common::up::Server;

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

/// Concurrent writers per round.
const WRITERS: usize = 6;
/// The label every test object carries (and lists select on).
const LABEL: &str = "kaji-crash-test";
/// Bytes of padding derived from each value, so a torn body cannot pass.
const PAD: usize = 600;
/// Bound on any single API call.
const CALL: Duration = Duration::from_secs(10);

fn random(below: u64) -> u64 {
    RandomState::new().build_hasher().finish() % below.max(1)
}

fn rounds() -> u32 {
    std::env::var("KAJI_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

// ---------------------------------------------------------------------------
// The server process.

// ---------------------------------------------------------------------------
// What was sent and what was acknowledged.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Put(String),
    Delete,
}

/// One object's writes. Each object has one writer, which waits for every
/// answer, so at most the last write is unacknowledged.
#[derive(Debug, Default)]
struct History {
    /// Every write sent, in order.
    sent: Vec<Op>,
    /// How many of `sent` were acknowledged (a prefix).
    acked: usize,
    /// The resourceVersion of the last acknowledged write.
    rv: i64,
}

#[derive(Debug, Default)]
struct Ledger {
    objects: BTreeMap<String, History>,
    /// What went wrong while writing (checked at the end of each round).
    failures: Vec<String>,
}

impl Ledger {
    fn send(&mut self, name: &str, op: Op) {
        self.objects
            .entry(name.to_owned())
            .or_default()
            .sent
            .push(op);
    }

    fn ack(&mut self, name: &str, rv: i64) {
        let h = self.objects.get_mut(name).expect("sent before acked");
        h.acked = h.sent.len();
        h.rv = rv;
    }

    /// The object's last known resourceVersion, if it exists.
    fn current_rv(&self, name: &str) -> Option<i64> {
        let h = self.objects.get(name)?;
        (h.acked > 0 && h.sent[h.acked - 1] != Op::Delete).then_some(h.rv)
    }
}

fn pad(value: &str) -> String {
    value.chars().cycle().take(PAD).collect()
}

fn config_map(name: &str, value: &str, rv: Option<i64>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(LABEL.to_owned(), "yes".to_owned())].into()),
            resource_version: rv.map(|r| r.to_string()),
            ..Default::default()
        },
        data: Some(
            [
                ("v".to_owned(), value.to_owned()),
                ("pad".to_owned(), pad(value)),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

fn rv_of(cm: &ConfigMap) -> i64 {
    cm.metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no numeric resourceVersion on {:?}", cm.metadata.name))
}

// ---------------------------------------------------------------------------
// Writers.

struct Round {
    api: Api<ConfigMap>,
    ledger: Mutex<Ledger>,
    /// Set just before the SIGKILL: errors after it are expected.
    killed: AtomicBool,
    acks: AtomicUsize,
    /// Makes every value unique.
    seq: AtomicUsize,
    round: u32,
    /// Every resourceVersion acknowledged in this round must be above this.
    floor: i64,
}

enum Write<'a> {
    Create(&'a str),
    Replace(&'a str, i64),
    Delete(&'a str),
}

impl Round {
    /// Sends one write, records it as sent, then as acknowledged on 2xx.
    /// `None` when it failed (the writer stops: the server is gone).
    async fn write(&self, w: usize, last: &mut i64, write: Write<'_>) -> Option<i64> {
        let (name, op) = match &write {
            Write::Create(n) | Write::Replace(n, _) => {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                (*n, Op::Put(format!("{n}@r{}#{seq}", self.round)))
            }
            Write::Delete(n) => (*n, Op::Delete),
        };
        self.ledger.lock().unwrap().send(name, op.clone());
        let pp = PostParams::default();
        let result = match (&write, &op) {
            (Write::Create(n), Op::Put(v)) => {
                tokio::time::timeout(CALL, self.api.create(&pp, &config_map(n, v, None)))
                    .await
                    .map(|r| r.map(|cm| rv_of(&cm)))
            }
            (Write::Replace(n, rv), Op::Put(v)) => {
                tokio::time::timeout(CALL, self.api.replace(n, &pp, &config_map(n, v, Some(*rv))))
                    .await
                    .map(|r| r.map(|cm| rv_of(&cm)))
            }
            (_, _) => tokio::time::timeout(CALL, self.api.delete(name, &DeleteParams::default()))
                .await
                .map(|r| {
                    r.map(|e| {
                        e.left()
                            .map(|cm| rv_of(&cm))
                            .expect("DELETE answers the deleted object")
                    })
                }),
        };
        let mut ledger = self.ledger.lock().unwrap();
        match result {
            Ok(Ok(rv)) => {
                ledger.ack(name, rv);
                self.acks.fetch_add(1, Ordering::SeqCst);
                if rv <= self.floor {
                    ledger.failures.push(format!(
                        "writer {w}: {name} acknowledged at resourceVersion {rv}, not above {} from before the crash",
                        self.floor
                    ));
                }
                if rv <= *last {
                    ledger.failures.push(format!(
                        "writer {w}: {name} acknowledged at resourceVersion {rv} after {last}"
                    ));
                }
                *last = rv;
                Some(rv)
            }
            Ok(Err(e)) if !self.killed.load(Ordering::SeqCst) => {
                ledger.failures.push(format!(
                    "writer {w}: {op:?} of {name} failed before the kill: {e}"
                ));
                None
            }
            Err(_) if !self.killed.load(Ordering::SeqCst) => {
                ledger.failures.push(format!(
                    "writer {w}: {op:?} of {name} timed out before the kill"
                ));
                None
            }
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Writes until a write fails: a cycle of a create, a CAS update of
    /// it, another create (kept), a delete of the first, and CAS updates of
    /// the writer's own long-lived object in between.
    async fn writer(self: Arc<Self>, w: usize) {
        let own = format!("own-{w}");
        let mut own_rv = self.ledger.lock().unwrap().current_rv(&own);
        let mut last = self.floor;
        let mut i = 0u32;
        loop {
            let a = format!("a-r{}-w{w}-{i}", self.round);
            let b = format!("b-r{}-w{w}-{i}", self.round);
            let Some(a_rv) = self.write(w, &mut last, Write::Create(&a)).await else {
                return;
            };
            let write = match own_rv {
                Some(rv) => Write::Replace(&own, rv),
                None => Write::Create(&own),
            };
            let Some(rv) = self.write(w, &mut last, write).await else {
                return;
            };
            own_rv = Some(rv);
            for write in [
                Write::Replace(&a, a_rv),
                Write::Create(&b),
                Write::Delete(&a),
            ] {
                if self.write(w, &mut last, write).await.is_none() {
                    return;
                }
            }
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------------
// The checks after a restart.

/// Checks the objects on the restarted server against the ledger, then
/// makes what is there the new baseline. Returns the list's revision.
async fn check_after_restart(api: &Api<ConfigMap>, ledger: &mut Ledger, floor: i64) -> i64 {
    let lp = ListParams::default().labels(LABEL);
    let list = tokio::time::timeout(CALL, api.list(&lp))
        .await
        .expect("list after restart timed out")
        .expect("list after restart");
    let list_rv: i64 = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("list resourceVersion");
    let mut problems = Vec::new();
    if list_rv < floor {
        problems.push(format!(
            "revision went backwards: list at {list_rv} after a crash, but {floor} was acknowledged or listed before"
        ));
    }

    // Every object is whole and carries a value sent for its name.
    let mut seen: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for cm in list.items {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let rv = rv_of(&cm);
        let data = cm.data.clone().unwrap_or_default();
        let value = data.get("v").cloned().unwrap_or_default();
        let whole = data.len() == 2 && data.get("pad") == Some(&pad(&value));
        if !whole {
            problems.push(format!("{name}@{rv} is not a complete body: {data:?}"));
        }
        let sent = ledger
            .objects
            .get(&name)
            .is_some_and(|h| h.sent.contains(&Op::Put(value.clone())));
        if !sent {
            problems.push(format!(
                "{name}@{rv} holds {value:?}, which no writer sent for it"
            ));
        }
        seen.insert(name, (value, rv));
    }

    // Every acknowledged write is there, or a later one of the same writer.
    for (name, h) in &ledger.objects {
        let last_acked = match h.acked.checked_sub(1) {
            Some(i) => format!("{:?}@{}", h.sent[i], h.rv),
            None => "nothing".to_owned(),
        };
        match seen.get(name) {
            Some((value, rv)) => {
                let Some(at) = h.sent.iter().rposition(|op| *op == Op::Put(value.clone())) else {
                    continue; // Reported above.
                };
                if at + 1 < h.acked {
                    problems.push(format!(
                        "lost acknowledged write: {name} holds {value:?}@{rv}, but {last_acked} was acknowledged after it"
                    ));
                } else if at + 1 == h.acked && *rv != h.rv {
                    problems.push(format!(
                        "{name} holds its acknowledged value at resourceVersion {rv}, acknowledged at {}",
                        h.rv
                    ));
                } else if at + 1 > h.acked && h.acked > 0 && *rv <= h.rv {
                    problems.push(format!(
                        "{name} holds an unacknowledged later value at resourceVersion {rv}, not above the acknowledged {}",
                        h.rv
                    ));
                }
            }
            None => {
                let delete_sent = h.sent[h.acked.saturating_sub(1)..].contains(&Op::Delete);
                if h.acked > 0 && !delete_sent {
                    problems.push(format!(
                        "lost acknowledged write: {name} is gone, but {last_acked} was acknowledged"
                    ));
                }
            }
        }
    }
    let unknown: Vec<&String> = seen
        .keys()
        .filter(|n| !ledger.objects.contains_key(*n))
        .collect();
    if !unknown.is_empty() {
        problems.push(format!("objects nobody wrote: {unknown:?}"));
    }
    assert!(
        problems.is_empty(),
        "after restart:\n{}",
        problems.join("\n")
    );

    // What survived the restart is durable from now on: the new baseline.
    ledger.objects.retain(|name, h| {
        match seen.get(name) {
            Some((value, rv)) => {
                *h = History {
                    sent: vec![Op::Put(value.clone())],
                    acked: 1,
                    rv: *rv,
                };
            }
            None if h.acked == 0 => return false, // a create that never landed
            None => {
                *h = History {
                    sent: vec![Op::Delete],
                    acked: 1,
                    rv: h.rv,
                };
            }
        }
        true
    });
    list_rv
}

fn assert_no_panic(server: &Server, when: &str) {
    let log = server.log_text();
    assert!(
        !log.contains("panicked"),
        "kaji up panicked ({when}); log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_of_kaji_up() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let rounds = rounds();
    let started = Instant::now();
    let mut ledger = Ledger::default();
    let mut floor = 0i64;
    for round in 0..=rounds {
        let round_started = Instant::now();
        let mut server = Server::start(&dir, logs.join(format!("round-{round}.log")));
        let client = common::client(&server.kubeconfig).await;
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        floor = check_after_restart(&api, &mut ledger, floor).await;
        let objects = ledger.objects.len();
        if round == rounds {
            // The last start only checks, then stops cleanly.
            let stopping = Instant::now();
            let status = server.terminate();
            assert!(status.success(), "kaji up exited with {status} on SIGTERM");
            assert_no_panic(&server, "clean stop");
            eprintln!(
                "final check: {objects} objects at revision {floor}; SIGTERM stopped it in {} ms",
                stopping.elapsed().as_millis()
            );
            break;
        }

        let state = Arc::new(Round {
            api,
            ledger: Mutex::new(std::mem::take(&mut ledger)),
            killed: AtomicBool::new(false),
            acks: AtomicUsize::new(0),
            seq: AtomicUsize::new(0),
            round,
            floor,
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(state.clone().writer(w)))
            .collect();
        // Kill at a random moment: after 0 to ~250 acknowledged writes, plus
        // a random few milliseconds, so writes are in flight.
        let target = match random(6) {
            0 => 0,
            _ => random(250) as usize,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while state.acks.load(Ordering::SeqCst) < target {
            if Instant::now() > deadline {
                let failures = state.ledger.lock().unwrap().failures.clone();
                panic!(
                    "round {round}: only {} writes acknowledged in 20 s; failures: {failures:#?}",
                    state.acks.load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(random(40))).await;
        state.killed.store(true, Ordering::SeqCst);
        server.kill9();
        assert_no_panic(&server, "before the kill");
        for writer in writers {
            tokio::time::timeout(Duration::from_secs(15), writer)
                .await
                .expect("a writer did not stop after the kill")
                .expect("writer task");
        }
        let acks = state.acks.load(Ordering::SeqCst);
        ledger = std::mem::take(&mut *state.ledger.lock().unwrap());
        assert!(
            ledger.failures.is_empty(),
            "round {round}:\n{}",
            ledger.failures.join("\n")
        );
        // Everything acknowledged bounds the revision the next start must reach.
        let acked_max = ledger.objects.values().map(|h| h.rv).max().unwrap_or(0);
        floor = floor.max(acked_max);
        eprintln!(
            "round {round}: {objects} objects checked, {acks} writes acknowledged (kill after {target}), revision >= {floor}, {} ms",
            round_started.elapsed().as_millis()
        );
    }
    eprintln!("{rounds} rounds in {} ms", started.elapsed().as_millis());
}
