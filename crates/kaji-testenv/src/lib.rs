//! envtest for kaji: a real API server (every registry, the real HTTP
//! stack) on an in-memory store, in-process on a loopback port, started in
//! milliseconds. Controller tests drive it with kube-rs exactly as they would
//! a cluster. It owns nothing but test wiring and must not be used outside tests.
//!
//! [`TestEnv::start_on`] runs the server on a store of the test's choosing
//! (e.g. a fault-injecting one) in a runtime of its own, so that
//! [`TestEnv::restart`] can kill it as a crashed process dies — every
//! connection, watch and background task at once — and start a fresh one on
//! the same address and store, where existing clients reconnect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaji_store::{MemoryStore, Store};

/// The store crate, so that a test can build the store for
/// [`TestEnv::start_on`] (e.g. a `kaji_store::faults::FaultyStore`)
/// without depending on it.
pub use kaji_store;

/// How long [`TestEnv::restart`] keeps trying to rebind the old address and
/// to bootstrap the new server (over a store that may inject faults).
const RESTART_LIMIT: Duration = Duration::from_secs(10);

/// A running in-process API server; stops when dropped.
pub struct TestEnv {
    /// The server's base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The store behind it, for assertions on raw state.
    pub store: Arc<dyn Store>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The runtime of a restartable server ([`TestEnv::start_on`]).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl TestEnv {
    /// Starts a server with the system namespaces created.
    ///
    /// # Panics
    /// If the loopback port cannot be bound (a test environment fault).
    pub async fn start() -> TestEnv {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let config = kaji_apiserver::Config {
            listen: addr,
            pki: None,
        };
        let server = kaji_apiserver::ApiServer::new(store.clone(), &config);
        server.bootstrap().await.expect("system namespaces");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = kaji_apiserver::serve(server, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        TestEnv {
            url: format!("http://{addr}"),
            store,
            addr,
            stop: Some(stop),
            runtime: Mutex::new(None),
        }
    }

    /// Starts a restartable server over `store`, in a runtime of its own,
    /// with the system namespaces created (retrying while the store fails).
    ///
    /// # Panics
    /// If no loopback port can be bound or bootstrapping keeps failing for
    /// ten seconds.
    pub async fn start_on(store: Arc<dyn Store>) -> TestEnv {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let runtime = launch(store.clone(), listener).await;
        TestEnv {
            url: format!("http://{addr}"),
            store,
            addr,
            stop: None,
            runtime: Mutex::new(Some(runtime)),
        }
    }

    /// Kills the server started by [`TestEnv::start_on`] — open connections
    /// and watches break, in-flight requests fail or were already applied —
    /// and starts a new one on the same address and store.
    ///
    /// # Panics
    /// If the env was made by [`TestEnv::start`], or the address cannot be
    /// bound again or the new server not bootstrapped within ten seconds.
    pub async fn restart(&self) {
        self.restart_after(Duration::ZERO).await;
    }

    /// Like [`TestEnv::restart`], leaving the address unserved (connections
    /// refused) for `downtime` in between.
    ///
    /// # Panics
    /// As [`TestEnv::restart`].
    pub async fn restart_after(&self, downtime: Duration) {
        let old = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("only an env made by TestEnv::start_on restarts");
        old.shutdown_background();
        tokio::time::sleep(downtime).await;
        // The old runtime's workers drop the listener as they wind down.
        let deadline = tokio::time::Instant::now() + RESTART_LIMIT;
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("cannot bind {} again: {e}", self.addr)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        let runtime = launch(self.store.clone(), listener).await;
        *self.runtime.lock().unwrap_or_else(|e| e.into_inner()) = Some(runtime);
    }

    /// A kube-rs client for this server.
    ///
    /// # Panics
    /// If the URL does not parse (it always does).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("valid URL"));
        kube::Client::try_from(config).expect("client builds")
    }
}

/// Starts an API server over `store` on `listener` in a new runtime, once
/// bootstrapped. A failed bootstrap (the store may inject faults) discards
/// that runtime, with whatever it had started, and tries again.
async fn launch(store: Arc<dyn Store>, listener: std::net::TcpListener) -> tokio::runtime::Runtime {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("bound address");
    let deadline = tokio::time::Instant::now() + RESTART_LIMIT;
    loop {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kaji-testenv-apiserver")
            .enable_all()
            .build()
            .expect("a runtime for the API server");
        let config = kaji_apiserver::Config {
            listen: addr,
            pki: None,
        };
        let server = kaji_apiserver::ApiServer::new(store.clone(), &config);
        let bootstrap = {
            let server = server.clone();
            runtime.spawn(async move { server.bootstrap().await })
        };
        match bootstrap.await.expect("bootstrap does not panic") {
            Ok(()) => {
                runtime.spawn(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let _ = kaji_apiserver::serve(server, listener, std::future::pending()).await;
                });
                return runtime;
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("bootstrapping the API server kept failing: {e:?}")
            }
            Err(_) => {
                runtime.shutdown_background();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// How long [`eventually`] waits before failing a test.
pub const EVENTUALLY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `probe` every 50 ms until it yields `Some`, and returns that value.
///
/// # Panics
/// After [`EVENTUALLY_LIMIT`], naming `what` — a test waiting on a
/// controller fails instead of hanging.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let poll = async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(EVENTUALLY_LIMIT, poll)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let runtime = self.runtime.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(runtime) = runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, ListParams};

    #[tokio::test]
    async fn a_started_env_serves_the_system_namespaces() {
        let env = TestEnv::start().await;
        let nss: Api<Namespace> = Api::all(env.client());
        let names: Vec<String> = nss
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert!(names.contains(&"kube-system".to_string()), "{names:?}");
    }

    #[tokio::test]
    async fn a_restarted_env_keeps_its_address_and_objects_and_clients_reconnect() {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{PostParams, WatchEvent, WatchParams};

        let env = TestEnv::start_on(Arc::new(MemoryStore::new())).await;
        let url = env.url.clone();
        let cms: Api<ConfigMap> = Api::namespaced(env.client(), "default");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("kept".into());
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let mut events = cms
            .watch(&WatchParams::default().timeout(290), "0")
            .await
            .unwrap()
            .boxed();
        assert!(matches!(
            events.next().await,
            Some(Ok(WatchEvent::Added(_)))
        ));

        env.restart().await;
        assert_eq!(env.url, url);
        // The old server's watch ends with it.
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = events.next().await {}
        });
        ended.await.expect("the watch ends when the server dies");
        let mut attempts = 0;
        let kept = loop {
            attempts += 1;
            match cms.get("kept").await {
                Ok(kept) => break kept,
                Err(e) if attempts < 3 => eprintln!("first request after restart: {e}"),
                Err(e) => panic!("the client does not reconnect: {e}"),
            }
        };
        assert_eq!(kept.metadata.name.as_deref(), Some("kept"));

        env.restart_after(Duration::from_millis(100)).await;
        let nss: Api<Namespace> = Api::all(env.client());
        assert!(nss.get("kube-system").await.is_ok());
    }
}
