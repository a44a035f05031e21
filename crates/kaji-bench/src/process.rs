//! Starting and stopping the servers under test (`kaji up`, `etcd`) by PID.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A free loopback port (bound, read and released; fine for a benchmark).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// A child process that is stopped by PID when [`Proc::stop`] is called or it is dropped.
#[derive(Debug)]
pub struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to this PID, waits (bounded) for it to exit, then SIGKILLs it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", self.name);
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Resident memory of a process from `/proc/PID/status`: (`VmRSS`, `VmHWM`) in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/PID/status")?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// The `kaji` binary to run: `--kaji`, else `$KAJI_BIN`, else `kaji` next to this executable.
///
/// In the last case, when run by `cargo run` (which sets `$CARGO`), it
/// first builds that binary with the same profile (`cargo build -p kaji`,
/// once per process), so a benchmark never measures a stale `kaji`.
pub fn kaji_binary(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = match arg.or_else(|| std::env::var_os("KAJI_BIN").map(PathBuf::from)) {
        Some(b) => b,
        None => {
            build_kaji_under_cargo()?;
            std::env::current_exe()?
                .parent()
                .context("this executable has no directory")?
                .join("kaji")
        }
    };
    if !bin.is_file() {
        bail!(
            "no kaji binary at {} (build it with `cargo build --release -p kaji`, or pass --kaji)",
            bin.display()
        );
    }
    Ok(bin)
}

/// `cargo build [--release] -p kaji -p kaji-bench` in this workspace, once
/// per process, when this process was started by cargo; nothing otherwise.
/// Both packages, as in the commands the report prints: cargo unifies
/// features per invocation, so building `kaji` alone would compile the
/// crates they share a second time with other features.
fn build_kaji_under_cargo() -> anyhow::Result<()> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    BUILT
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "kaji", "-p", "kaji-bench", "--manifest-path"])
                .arg(&manifest)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            if !cfg!(debug_assertions) {
                cmd.arg("--release");
            }
            eprintln!("building kaji: {cmd:?}");
            match cmd.status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("`cargo build -p kaji -p kaji-bench` failed: {s}")),
                Err(e) => Err(format!("running cargo: {e}")),
            }
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Starts `kaji up` on `data_dir` and a free loopback port; returns once it printed
/// its ready line, with the path of the kubeconfig it wrote.
pub fn start_kaji(bin: &Path, data_dir: &Path) -> anyhow::Result<(Proc, PathBuf)> {
    start_kaji_on(bin, data_dir, "embedded")
}

/// Like [`start_kaji`], on the store `store` names (`embedded` or an
/// `etcd://` URL).
pub fn start_kaji_on(bin: &Path, data_dir: &Path, store: &str) -> anyhow::Result<(Proc, PathBuf)> {
    start_kaji_args(bin, data_dir, "up", &["--store", store])
}

/// Starts `kaji <subcommand> --data-dir DATA_DIR --listen 127.0.0.1:PORT
/// <extra…>` (`up` or `apiserver`, which print the same ready line) on a
/// free loopback port; returns once it printed its ready line, with the
/// path of the kubeconfig it wrote. Its log goes to `DATA_DIR/kaji.log`.
pub fn start_kaji_args(
    bin: &Path,
    data_dir: &Path,
    subcommand: &str,
    extra: &[&str],
) -> anyhow::Result<(Proc, PathBuf)> {
    let port = free_port()?;
    let log = std::fs::File::create(data_dir.join("kaji.log"))?;
    let child = Command::new(bin)
        .args([subcommand, "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut proc = Proc {
        name: "kaji",
        child,
    };
    let stdout = proc.child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("kaji is ready at") {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => eprintln!("{line} (pid {})", proc.pid()),
        Err(_) => {
            let _ = proc.stop_inner();
            bail!(
                "kaji {subcommand} did not print its ready line within {START_TIMEOUT:?}; see {}/kaji.log",
                data_dir.display()
            );
        }
    }
    Ok((proc, data_dir.join("kubeconfig")))
}

/// Starts `bin args…` with stdout discarded and stderr in `log`, e.g. a
/// `kaji scheduler` against a running API server; readiness is the
/// caller's to check.
pub fn spawn_logged(
    name: &'static str,
    bin: &Path,
    args: &[&std::ffi::OsStr],
    log: &Path,
) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc { name, child })
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 12 and 13 after the name.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    // The kernel's USER_HZ is 100 on every Linux architecture Rust targets.
    Ok(Duration::from_millis(total * 10))
}

/// Starts a single-member etcd on loopback ports in `data_dir`; returns it and its client URL.
/// Readiness is the caller's to check (it needs a client).
///
/// etcd runs with its defaults: every raft commit is fsynced to its WAL
/// (concurrent proposals are batched into one fsync) and the backend (bbolt)
/// commits every 100 ms or 10,000 writes.
#[cfg(feature = "etcd")]
pub fn start_etcd(data_dir: &Path) -> anyhow::Result<(Proc, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(data_dir.join("etcd.log"))?;
    let child = Command::new(std::env::var_os("ETCD_BIN").unwrap_or_else(|| "etcd".into()))
        .arg("--data-dir")
        .arg(data_dir.join("etcd"))
        .args(["--name", "bench"])
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting etcd (Debian: apt-get install -y etcd-server)")?;
    Ok((
        Proc {
            name: "etcd",
            child,
        },
        client_url,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_kib_should_read_this_process() {
        let (rss, hwm) = rss_kib(std::process::id()).unwrap();
        assert!(rss > 0 && hwm >= rss);
    }
}
