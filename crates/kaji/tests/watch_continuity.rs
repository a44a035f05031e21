//! Watch continuity across API server restarts: a watcher that resumes from
//! its last resourceVersion sees every change exactly once, in order.
//!
//! One watcher follows the test's ConfigMaps as client-go's reflector does:
//! it lists once, then watches from the list's resourceVersion, and whenever
//! its watch ends (timeout, connection lost, server restarted) it watches
//! again from the last resourceVersion it saw; only a 410 Gone makes it
//! list again. Meanwhile writers create, update (compare-and-swap) and
//! delete ConfigMaps, and `kaji up` on one data dir is restarted four
//! times, alternately with SIGTERM and SIGKILL. Each writer keeps the exact
//! sequence of its committed writes: acknowledged ones with their
//! resourceVersions, and those whose answer the restart swallowed, settled
//! by reading the object back from the next server.
//!
//! The watcher must have seen, per writer, exactly that sequence (same
//! objects, values and resourceVersions, nothing twice, nothing missing),
//! with resourceVersions strictly increasing over the whole watch; after a
//! 410 and relist only a subsequence is required (the gap is then explicit).
//! Its final view must equal a fresh list.

mod common;

use common::up::Server;

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::Client;

const WRITERS: usize = 3;
const LABEL: &str = "kaji-watch-test";
/// Bound on any single API call.
const CALL: Duration = Duration::from_secs(10);
/// Bound on the whole test's waiting for the server or the watcher.
const LIMIT: Duration = Duration::from_secs(50);

fn random(below: u64) -> u64 {
    RandomState::new().build_hasher().finish() % below.max(1)
}

// ---------------------------------------------------------------------------
// The server process.

/// The current server's client and generation (`None` while it is down:
/// set before every signal, so an error seen while the same generation is
/// still current is a real error, not the restart's doing).
#[derive(Default)]
struct Conn {
    current: RwLock<Option<(u64, Client)>>,
    /// Set when the test gives up; every wait returns at once.
    abort: AtomicBool,
}

impl Conn {
    fn set(&self, value: Option<(u64, Client)>) {
        *self.current.write().unwrap() = value;
    }

    fn generation(&self) -> Option<u64> {
        self.current.read().unwrap().as_ref().map(|(g, _)| *g)
    }

    /// Waits (bounded) for a server of generation above `after`.
    async fn newer_than(&self, after: u64) -> Option<(u64, Client)> {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline && !self.abort.load(Ordering::SeqCst) {
            if let Some((g, c)) = self.current.read().unwrap().as_ref() {
                if *g > after {
                    return Some((*g, c.clone()));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Objects, events and the writers' logs.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Added,
    Modified,
    Deleted,
}

/// One committed change, as a writer knows it or the watcher saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    kind: Kind,
    name: String,
    value: String,
    /// Unknown for a delete whose answer a restart swallowed.
    rv: Option<i64>,
}

impl Change {
    fn matches(&self, seen: &Change) -> bool {
        self.kind == seen.kind
            && self.name == seen.name
            && self.value == seen.value
            && self.rv.is_none_or(|rv| Some(rv) == seen.rv)
    }
}

fn config_map(name: &str, value: &str, rv: Option<i64>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(LABEL.to_owned(), "yes".to_owned())].into()),
            resource_version: rv.map(|r| r.to_string()),
            ..Default::default()
        },
        data: Some([("v".to_owned(), value.to_owned())].into()),
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

fn value_of(cm: &ConfigMap) -> String {
    cm.data
        .as_ref()
        .and_then(|d| d.get("v").cloned())
        .unwrap_or_default()
}

enum Op<'a> {
    Create(&'a str, String),
    Replace(&'a str, String, i64),
    /// With the object's last value (a DELETED event carries it).
    Delete(&'a str, String),
}

/// An object's state after a write: its value and resourceVersion, or gone.
type State = Option<(String, i64)>;

struct Shared {
    conn: Conn,
    stop_writers: AtomicBool,
    /// Once set, the watcher stops after seeing this resourceVersion.
    watch_until: AtomicI64,
    /// The watcher has listed and is watching.
    watching: AtomicBool,
    failures: Mutex<Vec<String>>,
    /// Acknowledged writes.
    writes: AtomicUsize,
    /// Writes whose answer a restart swallowed, found committed on reading back.
    settled: AtomicUsize,
}

impl Shared {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    /// Performs `op` and appends it to `log` if it was committed. Returns
    /// the object's state afterwards, or `Err` after a real failure.
    async fn perform(&self, w: usize, log: &mut Vec<Change>, op: Op<'_>) -> Result<State, ()> {
        let Some((generation, client)) = self.conn.newer_than(0).await else {
            self.fail(format!("writer {w}: no server"));
            return Err(());
        };
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let pp = PostParams::default();
        let rv = |cm: ConfigMap| rv_of(&cm);
        let sent = match &op {
            Op::Create(n, v) => {
                tokio::time::timeout(CALL, api.create(&pp, &config_map(n, v, None)))
                    .await
                    .map(|r| r.map(|cm| Some(rv(cm))))
            }
            Op::Replace(n, v, old) => {
                tokio::time::timeout(CALL, api.replace(n, &pp, &config_map(n, v, Some(*old))))
                    .await
                    .map(|r| r.map(|cm| Some(rv(cm))))
            }
            Op::Delete(n, _) => tokio::time::timeout(CALL, api.delete(n, &DeleteParams::default()))
                .await
                .map(|r| r.map(|answer| answer.left().map(rv))),
        };
        let (kind, name, value) = match &op {
            Op::Create(n, v) => (Kind::Added, *n, v.clone()),
            Op::Replace(n, v, _) => (Kind::Modified, *n, v.clone()),
            Op::Delete(n, v) => (Kind::Deleted, *n, v.clone()),
        };
        match sent {
            Ok(Ok(rv)) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                log.push(Change {
                    kind,
                    name: name.to_owned(),
                    value: value.clone(),
                    rv,
                });
                Ok(match (kind, rv) {
                    (Kind::Deleted, _) => None,
                    (_, rv) => Some((value, rv.expect("a written object has a resourceVersion"))),
                })
            }
            Ok(Err(e)) if self.conn.generation() == Some(generation) => {
                self.fail(format!(
                    "writer {w}: {kind:?} {name} failed while the server was up: {e}"
                ));
                Err(())
            }
            Err(_) if self.conn.generation() == Some(generation) => {
                self.fail(format!(
                    "writer {w}: {kind:?} {name} timed out while the server was up"
                ));
                Err(())
            }
            // The server went away with the write in flight: read the
            // object back from the next server to learn whether it landed.
            Ok(Err(_)) | Err(_) => self.settle(w, log, generation, kind, name, value).await,
        }
    }

    async fn settle(
        &self,
        w: usize,
        log: &mut Vec<Change>,
        mut generation: u64,
        kind: Kind,
        name: &str,
        value: String,
    ) -> Result<State, ()> {
        loop {
            let Some((g, client)) = self.conn.newer_than(generation).await else {
                self.fail(format!(
                    "writer {w}: no server came back to settle {kind:?} {name}"
                ));
                return Err(());
            };
            generation = g;
            let api: Api<ConfigMap> = Api::namespaced(client, "default");
            let got = match tokio::time::timeout(CALL, api.get_opt(name)).await {
                Ok(Ok(got)) => got,
                _ if self.conn.generation() == Some(g) => {
                    self.fail(format!(
                        "writer {w}: reading {name} back failed while the server was up"
                    ));
                    return Err(());
                }
                _ => continue, // Restarted again: settle on the next one.
            };
            let now = got.as_ref().map(|cm| (value_of(cm), rv_of(cm)));
            let landed = match (kind, &now) {
                (Kind::Deleted, None) => Some(None),
                (Kind::Deleted, Some(_)) => None,
                (_, Some((v, rv))) if *v == value => Some(Some(*rv)),
                _ => None,
            };
            if let Some(rv) = landed {
                self.settled.fetch_add(1, Ordering::Relaxed);
                log.push(Change {
                    kind,
                    name: name.to_owned(),
                    value,
                    rv,
                });
            }
            return Ok(now);
        }
    }

    /// Cycles: create an object, update the writer's own object, update
    /// the new object, delete it; until told to stop.
    async fn writer(self: Arc<Self>, w: usize) -> Vec<Change> {
        let mut log = Vec::new();
        let own = format!("w{w}-own");
        let mut own_state: State = None;
        for i in 0u32.. {
            if self.stop_writers.load(Ordering::SeqCst) {
                break;
            }
            let c = format!("w{w}-c{i}");
            let Ok(mut c_state) = self
                .perform(w, &mut log, Op::Create(&c, format!("{c}#0")))
                .await
            else {
                break;
            };
            let value = format!("{own}#{i}");
            let op = match &own_state {
                Some((_, rv)) => Op::Replace(&own, value, *rv),
                None => Op::Create(&own, value),
            };
            let Ok(state) = self.perform(w, &mut log, op).await else {
                break;
            };
            own_state = state;
            if let Some((_, rv)) = c_state {
                let op = Op::Replace(&c, format!("{c}#1"), rv);
                let Ok(state) = self.perform(w, &mut log, op).await else {
                    break;
                };
                c_state = state;
            }
            if let Some((value, _)) = c_state {
                if self
                    .perform(w, &mut log, Op::Delete(&c, value))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        log
    }
}

// ---------------------------------------------------------------------------
// The watcher.

#[derive(Default)]
struct Watched {
    changes: Vec<Change>,
    /// The watcher's view of the objects, from its list and events.
    view: BTreeMap<String, (String, i64)>,
    /// Lists after a 410 (the first list not counted).
    relists: usize,
    /// Watches resumed from a resourceVersion on a newer server.
    resumed_across_restarts: usize,
    /// Watches resumed from a resourceVersion on the same server.
    resumed: usize,
    /// Non-410 ERROR events (the watch was resumed after them).
    errors: Vec<String>,
}

impl Shared {
    async fn watcher(self: Arc<Self>) -> Watched {
        let mut out = Watched::default();
        let mut last: Option<i64> = None;
        let mut last_generation = 0;
        let deadline = Instant::now() + LIMIT;
        loop {
            let until = self.watch_until.load(Ordering::SeqCst);
            if until > 0 && last.is_some_and(|l| l >= until) {
                return out;
            }
            if Instant::now() > deadline {
                self.fail(format!("watcher: not done within {LIMIT:?}"));
                return out;
            }
            let Some((g, client)) = self.conn.newer_than(0).await else {
                self.fail("watcher: no server".into());
                return out;
            };
            let api: Api<ConfigMap> = Api::namespaced(client, "default");
            let resuming = last.is_some();
            let from = match last {
                Some(rv) => rv,
                None => {
                    let Ok(Ok(list)) =
                        tokio::time::timeout(CALL, api.list(&ListParams::default().labels(LABEL)))
                            .await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    if self.watching.swap(true, Ordering::SeqCst) {
                        out.relists += 1;
                    }
                    out.view = list
                        .items
                        .iter()
                        .map(|cm| {
                            let name = cm.metadata.name.clone().unwrap_or_default();
                            (name, (value_of(cm), rv_of(cm)))
                        })
                        .collect();
                    let rv = list.metadata.resource_version.as_deref().unwrap_or("0");
                    let rv = rv.parse().expect("list resourceVersion");
                    last = Some(rv);
                    rv
                }
            };
            if resuming && g != last_generation {
                out.resumed_across_restarts += 1;
            } else if resuming {
                out.resumed += 1;
            }
            last_generation = g;
            let wp = WatchParams::default().labels(LABEL).timeout(1);
            let Ok(Ok(stream)) =
                tokio::time::timeout(CALL, api.watch(&wp, &from.to_string())).await
            else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let mut stream = stream.boxed();
            loop {
                let until = self.watch_until.load(Ordering::SeqCst);
                if (until > 0 && last.is_some_and(|l| l >= until)) || Instant::now() > deadline {
                    break;
                }
                let event =
                    match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                        Err(_) => continue,                   // Quiet: check whether we are done.
                        Ok(None) | Ok(Some(Err(_))) => break, // Ended or lost: resume.
                        Ok(Some(Ok(event))) => event,
                    };
                let (kind, cm) = match event {
                    WatchEvent::Added(cm) => (Kind::Added, cm),
                    WatchEvent::Modified(cm) => (Kind::Modified, cm),
                    WatchEvent::Deleted(cm) => (Kind::Deleted, cm),
                    WatchEvent::Bookmark(b) => {
                        if let Ok(rv) = b.metadata.resource_version.parse::<i64>() {
                            last = last.max(Some(rv));
                        }
                        continue;
                    }
                    WatchEvent::Error(status) if status.code == 410 => {
                        last = None; // Gone: list again.
                        break;
                    }
                    WatchEvent::Error(status) => {
                        out.errors.push(format!("{status:?}"));
                        break;
                    }
                };
                let name = cm.metadata.name.clone().unwrap_or_default();
                let rv = rv_of(&cm);
                let value = value_of(&cm);
                if last.is_some_and(|l| rv <= l) {
                    self.fail(format!(
                        "watcher: {kind:?} {name}@{rv} after {} (duplicate or out of order)",
                        last.unwrap_or(0)
                    ));
                }
                last = Some(rv);
                if kind == Kind::Deleted {
                    out.view.remove(&name);
                } else {
                    out.view.insert(name.clone(), (value.clone(), rv));
                }
                out.changes.push(Change {
                    kind,
                    name,
                    value,
                    rv: Some(rv),
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The checks.

/// `seen` must be exactly `log` (or, after a relist, a subsequence of it).
fn compare(w: usize, log: &[Change], seen: &[Change], relisted: bool) -> Option<String> {
    let context = |i: usize, of: &[Change]| {
        of[i.saturating_sub(3)..(i + 3).min(of.len())]
            .iter()
            .map(|c| format!("    {c:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if relisted {
        let mut l = 0;
        for (i, s) in seen.iter().enumerate() {
            while l < log.len() && !log[l].matches(s) {
                l += 1;
            }
            if l == log.len() {
                return Some(format!(
                    "writer {w}: the watcher saw {s:?}, not among the writer's changes (in order); seen:\n{}",
                    context(i, seen)
                ));
            }
            l += 1;
        }
        return None;
    }
    for i in 0..log.len().max(seen.len()) {
        match (log.get(i), seen.get(i)) {
            (Some(l), Some(s)) if l.matches(s) => {}
            (l, s) => {
                return Some(format!(
                    "writer {w}: change {i} of {} committed is {l:?}, but the watcher saw {s:?} ({} changes)\n  committed:\n{}\n  seen:\n{}",
                    log.len(),
                    seen.len(),
                    context(i.min(log.len().saturating_sub(1)), log),
                    context(i.min(seen.len().saturating_sub(1)), seen),
                ));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_watcher_sees_every_change_once_across_restarts() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut server = Server::start(&dir, logs.join("gen-1.log"));
    let shared = Arc::new(Shared {
        conn: Conn::default(),
        stop_writers: AtomicBool::new(false),
        watch_until: AtomicI64::new(0),
        watching: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        writes: AtomicUsize::new(0),
        settled: AtomicUsize::new(0),
    });
    let mut generation = 1;
    shared
        .conn
        .set(Some((generation, common::client(&server.kubeconfig).await)));
    let watcher = tokio::spawn(shared.clone().watcher());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !shared.watching.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the watcher never listed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(shared.clone().writer(w)))
        .collect();

    let mut downtimes = Vec::new();
    let mut written = 0;
    for (i, kill) in [false, true, false, true].into_iter().enumerate() {
        // Restart at a random moment, but only once some writes went through
        // this server, so there is something to resume across.
        tokio::time::sleep(Duration::from_millis(300 + random(800))).await;
        let enough = written + 10;
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.writes.load(Ordering::Relaxed) < enough {
            assert!(Instant::now() < deadline, "restart {i}: writers stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = shared.writes.load(Ordering::Relaxed);
        written = before;
        shared.conn.set(None);
        let stopping = Instant::now();
        if kill {
            server.kill9();
        } else {
            let status = tokio::task::block_in_place(|| server.terminate());
            assert!(status.success(), "kaji up exited with {status} on SIGTERM");
        }
        let stopped = stopping.elapsed();
        tokio::time::sleep(Duration::from_millis(random(300))).await;
        generation += 1;
        let log = logs.join(format!("gen-{generation}.log"));
        server = tokio::task::block_in_place(|| Server::start(&dir, log));
        shared
            .conn
            .set(Some((generation, common::client(&server.kubeconfig).await)));
        downtimes.push(format!(
            "restart {i} ({}): {before} writes before, stopped in {} ms, down {} ms",
            if kill { "SIGKILL" } else { "SIGTERM" },
            stopped.as_millis(),
            stopping.elapsed().as_millis()
        ));
    }
    // Longer than a watch's timeoutSeconds: the watcher also resumes on one server.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shared.stop_writers.store(true, Ordering::SeqCst);
    let mut logs_by_writer = Vec::new();
    for writer in writers {
        let log = tokio::time::timeout(Duration::from_secs(20), writer)
            .await
            .expect("a writer did not stop")
            .expect("writer task");
        logs_by_writer.push(log);
    }

    // A last write the watcher must reach: then it has seen everything before.
    let api: Api<ConfigMap> = Api::namespaced(common::client(&server.kubeconfig).await, "default");
    let sentinel = tokio::time::timeout(
        CALL,
        api.create(&PostParams::default(), &config_map("sentinel", "end", None)),
    )
    .await
    .expect("sentinel create timed out")
    .expect("sentinel create");
    shared.watch_until.store(rv_of(&sentinel), Ordering::SeqCst);
    let watched = tokio::time::timeout(LIMIT, watcher)
        .await
        .inspect_err(|_| shared.conn.abort.store(true, Ordering::SeqCst))
        .expect("the watcher did not finish")
        .expect("watcher task");
    let final_list = tokio::time::timeout(CALL, api.list(&ListParams::default().labels(LABEL)))
        .await
        .expect("final list timed out")
        .expect("final list");

    for d in &downtimes {
        eprintln!("{d}");
    }
    eprintln!(
        "{} writes acknowledged, {} settled after a restart, {} changes watched, {} resumes across restarts, {} on one server, {} relists, errors {:?}, {} ms",
        shared.writes.load(Ordering::Relaxed),
        shared.settled.load(Ordering::Relaxed),
        watched.changes.len(),
        watched.resumed_across_restarts,
        watched.resumed,
        watched.relists,
        watched.errors,
        started.elapsed().as_millis()
    );

    let mut problems = std::mem::take(&mut *shared.failures.lock().unwrap());
    let relisted = watched.relists > 0;
    for (w, log) in logs_by_writer.iter().enumerate() {
        let prefix = format!("w{w}-");
        let seen: Vec<Change> = watched
            .changes
            .iter()
            .filter(|c| c.name.starts_with(&prefix))
            .cloned()
            .collect();
        if log.is_empty() {
            problems.push(format!("writer {w} committed nothing"));
        }
        problems.extend(compare(w, log, &seen, relisted));
    }
    let listed: BTreeMap<String, (String, i64)> = final_list
        .items
        .iter()
        .map(|cm| {
            let name = cm.metadata.name.clone().unwrap_or_default();
            (name, (value_of(cm), rv_of(cm)))
        })
        .collect();
    if listed != watched.view {
        problems.push(format!(
            "the watcher's view differs from a fresh list:\n  view: {:?}\n  list: {listed:?}",
            watched.view
        ));
    }
    if watched.resumed_across_restarts + watched.relists < 4 {
        problems.push(format!(
            "the watcher resumed across only {} of 4 restarts",
            watched.resumed_across_restarts + watched.relists
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
