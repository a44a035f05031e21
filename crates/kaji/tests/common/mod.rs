//! Test harness: a real `kaji` process on a temp data dir, driven by real
//! kubectl and by kube-rs.

#![allow(dead_code)]

pub mod up;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `kaji up`, stopped (by its PID) when dropped.
pub struct Cluster {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub url: String,
    _tmp: Option<tempfile::TempDir>,
}

fn kaji_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kaji")
}

impl Cluster {
    /// Starts a cluster on a fresh temp dir and a free loopback port, its
    /// node agent running simulated pods (so tests can run side by side).
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Like [`Cluster::start`], with extra `kaji up` arguments (given last,
    /// so they override the defaults).
    pub fn start_with(extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut c = Cluster::start_in_with(&dir, "127.0.0.1:0", extra);
        c._tmp = Some(tmp);
        c
    }

    /// Starts `kaji up` on `dir`, waiting for its ready line.
    pub fn start_in(dir: &Path, listen: &str) -> Cluster {
        Cluster::start_in_with(dir, listen, &[])
    }

    fn start_in_with(dir: &Path, listen: &str, extra: &[&str]) -> Cluster {
        let mut child = Command::new(kaji_bin())
            .args(["up", "--data-dir"])
            .arg(dir)
            .args(["--listen", listen, "--log", "warn"])
            .args(["--runtime", "simulated", "--agent-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kaji");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut url = None;
        while Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("kaji is ready at ") {
                        url = Some(rest.split_whitespace().next().unwrap_or("").to_string());
                        break;
                    }
                }
                _ => break,
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = url.expect("kaji did not report ready");
        Cluster {
            child: Some(child),
            data_dir: dir.to_path_buf(),
            url,
            _tmp: None,
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Runs kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().expect("kubectl output");
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A kube-rs client for this cluster.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig parses");
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kubeconfig loads");
        kube::Client::try_from(config).expect("client builds")
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    /// Kills with SIGKILL and waits.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What kubectl printed.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn success(&self) -> &str {
        assert!(
            self.ok,
            "kubectl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts failure and returns stderr.
    #[track_caller]
    pub fn failure(&self) -> &str {
        assert!(!self.ok, "kubectl unexpectedly succeeded:\n{}", self.stdout);
        &self.stderr
    }
}

/// `kubectl get ARGS -o jsonpath=…`; `None` while the object is absent.
pub fn get(c: &Cluster, args: &[&str], jsonpath: &str) -> Option<String> {
    let template = format!("jsonpath={jsonpath}");
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", &template]);
    let out = c.kubectl(&all);
    if !out.ok {
        assert!(
            out.stderr.contains("NotFound"),
            "kubectl get: {}",
            out.stderr
        );
        return None;
    }
    Some(out.stdout)
}

// Separate component processes (`kaji apiserver`, `controller-manager`,
// `scheduler`, `agent`), for tests of a cluster spread over processes.

/// Every wait in [`eventually`] is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A process this test started, SIGKILLed (by its PID) when dropped.
pub struct Process(pub Option<Child>);

impl Process {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGKILL to this process and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `kaji apiserver` over plain HTTP on a free loopback port and
/// returns it once it reports ready (it writes `dir/kubeconfig`).
pub fn start_apiserver(dir: &Path) -> Process {
    start_apiserver_with(dir, &[])
}

/// Like [`start_apiserver`], with extra arguments (`--store etcd://…`).
pub fn start_apiserver_with(dir: &Path, extra: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args([
            "apiserver",
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kaji apiserver");
    let stdout = child.stdout.take().expect("stdout");
    let process = Process(Some(child));
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("kaji is ready at "));
    assert!(ready, "kaji apiserver did not report ready");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    process
}

/// Starts a `kaji` component (`controller-manager`, `scheduler`, `agent`)
/// with `args` against the API server of `kubeconfig`.
pub fn component(kubeconfig: &Path, args: &[&str]) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kaji");
    Process(Some(child))
}

pub async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig parses");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kubeconfig loads");
    kube::Client::try_from(config).expect("client builds")
}

/// Polls `probe` every 100 ms until it yields `Some`, for at most [`LIMIT`].
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
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(LIMIT, poll)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
