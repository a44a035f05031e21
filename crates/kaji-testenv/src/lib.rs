//! envtest for kaji: a real API server (every registry, the real HTTP
//! stack) on an in-memory store, in-process on a loopback port, started in
//! milliseconds. Controller tests drive it with kube-rs exactly as they would
//! a cluster. It owns nothing but test wiring and must not be used outside tests.

use std::sync::Arc;

use kaji_store::{MemoryStore, Store};

/// A running in-process API server; stops when dropped.
pub struct TestEnv {
    /// The server's base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The store behind it, for assertions on raw state.
    pub store: Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
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
            stop: Some(stop),
        }
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
}
