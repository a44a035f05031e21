//! Real etcd servers for tests: Debian's `etcd` binary (package
//! `etcd-server`, or `$ETCD_BIN`) on free loopback ports in a temporary
//! directory, stopped by PID when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd member process.
pub struct Member {
    /// Its name in the cluster.
    pub name: String,
    /// Its client URL, e.g. `http://127.0.0.1:40123`.
    pub client_url: String,
    child: Option<Child>,
}

impl Member {
    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the member (a crash), waiting for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An etcd cluster of one or more members on loopback.
pub struct EtcdCluster {
    /// The members, in start order.
    pub members: Vec<Member>,
    tls: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster answers.
    ///
    /// # Panics
    /// When etcd cannot be started or does not become ready in 30 s (a test
    /// environment fault: install `etcd-server`).
    pub fn start(size: usize) -> EtcdCluster {
        EtcdCluster::start_inner(size, None)
    }

    /// Like [`EtcdCluster::start`], serving clients over TLS with the
    /// certificate `tls_dir/apiserver.{crt,key}` and requiring client
    /// certificates signed by `tls_dir/ca.crt` (kaji-pki's layout); the
    /// readiness check connects with `tls_dir/admin.{crt,key}`.
    ///
    /// # Panics
    /// As [`EtcdCluster::start`], or when the files cannot be read.
    pub fn start_tls(size: usize, tls_dir: &std::path::Path) -> EtcdCluster {
        EtcdCluster::start_inner(size, Some(tls_dir.to_path_buf()))
    }

    fn start_inner(size: usize, tls: Option<PathBuf>) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let bin = std::env::var_os("ETCD_BIN").unwrap_or_else(|| "etcd".into());
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{i}");
                let client_url = format!("{scheme}://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let data: PathBuf = dir.path().join(&name);
                let log = std::fs::File::create(dir.path().join(format!("{name}.log")))
                    .expect("etcd log file");
                let mut command = Command::new(&bin);
                if let Some(tls) = &tls {
                    command
                        .arg("--cert-file")
                        .arg(tls.join("apiserver.crt"))
                        .arg("--key-file")
                        .arg(tls.join("apiserver.key"))
                        .arg("--trusted-ca-file")
                        .arg(tls.join("ca.crt"))
                        .arg("--client-cert-auth");
                }
                let child = command
                    .args(["--name", &name, "--data-dir"])
                    .arg(&data)
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--log-level", "error"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("etcd starts (apt-get install etcd-server, or set ETCD_BIN)");
                Member {
                    name,
                    client_url,
                    child: Some(child),
                }
            })
            .collect();
        let cluster = EtcdCluster {
            members,
            tls,
            _dir: dir,
        };
        cluster.wait_ready();
        cluster
    }

    /// The `--store` URL naming every member.
    pub fn store_url(&self) -> String {
        let hosts: Vec<&str> = self
            .members
            .iter()
            .map(|m| m.client_url.split("://").nth(1).unwrap_or(""))
            .collect();
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", hosts.join(","))
    }

    /// The store configuration naming every member (with the CA and admin
    /// client certificate for a TLS cluster).
    pub fn config(&self) -> crate::EtcdConfig {
        let mut config = crate::EtcdConfig::from_url(&self.store_url()).expect("a well-formed URL");
        if let Some(tls) = &self.tls {
            let read = |f: &str| std::fs::read(tls.join(f)).expect("a TLS file");
            config.ca_pem = Some(read("ca.crt"));
            config.client_cert_pem = Some((read("admin.crt"), read("admin.key")));
        }
        config
    }

    /// Polls until a write-capable quorum answers. Runs on its own thread
    /// with its own runtime, so callers may be inside a runtime or not.
    fn wait_ready(&self) {
        let config = self.config();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            loop {
                let ready = rt.block_on(async {
                    match crate::EtcdStore::connect(&config).await {
                        Ok(store) => kaji_store::Store::count(&store, "/").await.is_ok(),
                        Err(_) => false,
                    }
                });
                if ready {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd did not become ready in 30 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .join()
        .expect("etcd became ready");
    }
}
