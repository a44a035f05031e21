//! Leader election on a Lease against a real in-process API server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kaji_controllers::leader::{run_when_leader, LeaderElectionConfig, LeaderElector};
use kaji_controllers::Error;
use kaji_testenv::eventually;
use kaji_testenv::TestEnv;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::task::JoinHandle;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

/// A 2 s lease, 1 s renew deadline, 200 ms retry period.
fn config(lease: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_namespace: "kube-system".to_string(),
        lease_name: lease.to_string(),
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

/// Which candidates are running their work right now, and how often each started.
#[derive(Clone, Default)]
struct Board {
    running: Arc<Mutex<Vec<String>>>,
    starts: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

impl Board {
    fn running(&self) -> Vec<String> {
        self.running.lock().unwrap().clone()
    }
}

/// Removes its candidate from the board when the work is dropped.
struct Running(Board, String);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.lock().unwrap().retain(|id| id != &self.1);
    }
}

/// Work that marks `id` as running on `board` until it is dropped.
fn work(
    board: &Board,
    id: &str,
) -> impl FnMut() -> futures::future::BoxFuture<'static, Result<(), Error>> {
    let (board, id) = (board.clone(), id.to_string());
    move || {
        let (board, id) = (board.clone(), id.clone());
        Box::pin(async move {
            let at_once = {
                let mut running = board.running.lock().unwrap();
                running.push(id.clone());
                running.len()
            };
            board.starts.fetch_add(1, Ordering::SeqCst);
            board.most_at_once.fetch_max(at_once, Ordering::SeqCst);
            let _running = Running(board, id);
            std::future::pending::<()>().await;
            Ok(())
        })
    }
}

fn spawn_candidate(
    client: &Client,
    cfg: LeaderElectionConfig,
    board: &Board,
) -> JoinHandle<Result<(), Error>> {
    let work = work(board, &cfg.identity);
    tokio::spawn(run_when_leader(client.clone(), cfg, work))
}

async fn lease(client: &Client, name: &str) -> Lease {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases.get(name).await.expect("lease exists")
}

fn holder(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

fn transitions(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(-1)
}

async fn wait_running(board: &Board, id: &str) {
    eventually(&format!("{id} to run the work"), || async {
        board.running().contains(&id.to_string()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn leader_only_one_of_two_electors_runs_the_work() {
    let env = TestEnv::start().await;
    let client = env.client();
    let board = Board::default();
    let a = spawn_candidate(&client, config("one-of-two", "a"), &board);
    let b = spawn_candidate(&client, config("one-of-two", "b"), &board);
    let leader = eventually("a leader", || async { board.running().first().cloned() }).await;
    // Several lease durations of renewals: the leader keeps it, nobody else starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(board.running(), vec![leader.clone()]);
    assert_eq!(board.starts.load(Ordering::SeqCst), 1);
    assert_eq!(board.most_at_once.load(Ordering::SeqCst), 1);
    let lease = lease(&client, "one-of-two").await;
    assert_eq!(holder(&lease), Some(leader));
    assert_eq!(transitions(&lease), 0);
    a.abort();
    b.abort();
}

#[tokio::test]
async fn leader_a_killed_leader_is_replaced_once_its_lease_expires() {
    let env = TestEnv::start().await;
    let client = env.client();
    let board = Board::default();
    let a = spawn_candidate(&client, config("killed", "a"), &board);
    wait_running(&board, "a").await;
    let b = spawn_candidate(&client, config("killed", "b"), &board);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        board.running(),
        vec!["a".to_string()],
        "b must wait while a renews"
    );

    // A kill: the task is dropped without releasing the lease.
    a.abort();
    let _ = a.await;
    let last_renewal = lease(&client, "killed")
        .await
        .spec
        .unwrap()
        .renew_time
        .unwrap()
        .0;
    wait_running(&board, "b").await;

    let lease = lease(&client, "killed").await;
    let spec = lease.spec.clone().unwrap();
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(transitions(&lease), 1);
    let acquired = spec.acquire_time.unwrap().0;
    assert!(
        acquired.duration_since(last_renewal) >= k8s_openapi::jiff::SignedDuration::from_secs(2),
        "taken over at {acquired}, before a's lease (renewed {last_renewal}) expired"
    );
    assert_eq!(board.most_at_once.load(Ordering::SeqCst), 1);
    b.abort();
}

#[tokio::test]
async fn leader_a_released_lease_is_taken_over_at_once() {
    let env = TestEnv::start().await;
    let client = env.client();
    let board = Board::default();
    // A 10 s lease: waiting for expiry would take far longer than the bound below.
    let long = |id: &str| LeaderElectionConfig {
        lease_duration: Duration::from_secs(10),
        renew_deadline: Duration::from_secs(5),
        ..config("released", id)
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let a = tokio::spawn(LeaderElector::new(client.clone(), long("a")).run_until(
        work(&board, "a"),
        async {
            let _ = stopped.await;
        },
    ));
    wait_running(&board, "a").await;
    stop.send(()).unwrap();
    a.await.unwrap().expect("a clean shutdown");
    assert!(board.running().is_empty(), "a's work stopped");

    let released = lease(&client, "released").await;
    let spec = released.spec.clone().unwrap();
    assert_eq!(holder(&released), None);
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(transitions(&released), 0);

    let started = std::time::Instant::now();
    let b = spawn_candidate(&client, long("b"), &board);
    wait_running(&board, "b").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?} to take a released lease over",
        started.elapsed()
    );
    let lease = lease(&client, "released").await;
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(transitions(&lease), 1);
    assert_eq!(lease.spec.unwrap().lease_duration_seconds, Some(10));
    b.abort();
}

#[tokio::test]
async fn leader_work_that_finishes_returns_its_result_and_releases_the_lease() {
    let env = TestEnv::start().await;
    let client = env.client();
    let result = tokio::time::timeout(
        WAIT,
        run_when_leader(client.clone(), config("finishing", "a"), || async {
            Err(Error::MissingField("on purpose"))
        }),
    )
    .await
    .expect("returns once the work finishes");
    assert!(
        matches!(result, Err(Error::MissingField("on purpose"))),
        "{result:?}"
    );
    assert_eq!(holder(&lease(&client, "finishing").await), None);
}

#[tokio::test]
async fn leader_the_lease_looks_like_kubernetes() {
    let env = TestEnv::start().await;
    let client = env.client();
    let board = Board::default();
    let a = spawn_candidate(&client, config("fields", "a"), &board);
    wait_running(&board, "a").await;
    let first = lease(&client, "fields").await;
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0));
    let acquired = spec.acquire_time.clone().expect("acquireTime");
    let renewed = spec.renew_time.clone().expect("renewTime");
    assert!(renewed >= acquired);

    // MicroTime on the wire: RFC 3339 with microseconds, in UTC.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "kube-system",
        &kube::api::ApiResource::erase::<Lease>(&()),
    );
    let raw = raw.get("fields").await.unwrap();
    for field in ["acquireTime", "renewTime"] {
        let value = raw.data["spec"][field].as_str().unwrap().to_string();
        let (_, fraction) = value
            .split_once('.')
            .unwrap_or_else(|| panic!("{field}: {value}"));
        assert_eq!(fraction.len(), 7, "{field}: {value}");
        assert!(fraction.ends_with('Z'), "{field}: {value}");
    }

    // Renewals move renewTime and keep acquireTime.
    let later = eventually("a renewal", || async {
        let l = lease(&client, "fields").await;
        (l.spec.as_ref()?.renew_time.as_ref()? > &renewed).then_some(l)
    })
    .await;
    let spec = later.spec.unwrap();
    assert_eq!(spec.acquire_time, Some(acquired));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    a.abort();
}

#[tokio::test]
async fn leader_work_stops_when_another_holder_is_observed_and_restarts_when_won_back() {
    let env = TestEnv::start().await;
    let client = env.client();
    let board = Board::default();
    let a = spawn_candidate(&client, config("intruded", "a"), &board);
    wait_running(&board, "a").await;

    // Someone else writes itself in as the holder (and then never renews).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut lease = leases.get("intruded").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".to_string());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    // Retry on conflicts with a's renewals.
    loop {
        match leases
            .replace("intruded", &PostParams::default(), &lease)
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let fresh = leases.get("intruded").await.unwrap();
                lease.metadata.resource_version = fresh.metadata.resource_version;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eventually("a to stop its work", || async {
        board.running().is_empty().then_some(())
    })
    .await;

    // The intruder never renews: a wins the lease back and starts the work again.
    wait_running(&board, "a").await;
    assert_eq!(board.starts.load(Ordering::SeqCst), 2);
    let lease = leases.get("intruded").await.unwrap();
    assert_eq!(holder(&lease).as_deref(), Some("a"));
    a.abort();
}

#[tokio::test]
async fn leader_work_stops_when_renewal_fails_past_the_deadline() {
    let env = TestEnv::start().await;
    let client = env.client();
    let board = Board::default();
    let a = spawn_candidate(&client, config("unreachable", "a"), &board);
    wait_running(&board, "a").await;
    // The API server goes away: every renewal fails.
    let gone = std::time::Instant::now();
    drop(env);
    eventually("a to stop its work", || async {
        board.running().is_empty().then_some(())
    })
    .await;
    assert!(
        gone.elapsed() < Duration::from_secs(2),
        "work ran {:?} after the server went away, past the 2 s lease",
        gone.elapsed()
    );
    a.abort();
}
