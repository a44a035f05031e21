//! What only the process runtime does: cgroup limits and OOM kills, network
//! namespaces, private read-only mounts, tty and stdin, restarts.
//!
//! Checks marked "root" print a note and pass when not run as root (CI runs
//! as root). Every check removes the sandboxes, cgroups, namespaces and
//! interfaces it made, and kills only processes it started.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kaji_runtime::logs::{parse_record, read_log, LogOptions, LogStream};
use kaji_runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, LinuxResources, Mount,
    PodNetwork, PodRuntime, PodSandboxConfig, PodSandboxMetadata, RuntimeError,
};
use kaji_runtime_process::{ProcessOptions, ProcessRuntime};
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(20);

fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("note: not root; skipping a check that needs namespaces or cgroups");
    }
    root
}

/// A runtime over a fresh state directory; kills what it ran when dropped.
struct Fixture {
    rt: ProcessRuntime,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(network: Option<Arc<dyn PodNetwork>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path().join("pods"), network).unwrap();
        Fixture { rt, dir }
    }

    fn pod(&self, name: &str) -> PodSandboxConfig {
        pod(self.dir.path(), name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.rt.kill_everything();
    }
}

fn pod(dir: &Path, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.to_owned(),
            namespace: "test".to_owned(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        log_directory: dir.join("logs").join(name),
        ..PodSandboxConfig::default()
    }
}

fn container(name: &str, argv: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        },
        command: argv.iter().map(|s| (*s).to_owned()).collect(),
        log_path: PathBuf::from(format!("{name}/0.log")),
        ..ContainerConfig::default()
    }
}

async fn run_container(
    rt: &ProcessRuntime,
    pod: &PodSandboxConfig,
    config: &ContainerConfig,
) -> (String, String) {
    let sandbox = rt.run_pod_sandbox(pod).await.unwrap();
    let id = rt.create_container(&sandbox, config, pod).await.unwrap();
    rt.start_container(&id).await.unwrap();
    (sandbox, id)
}

async fn wait_exited(rt: &ProcessRuntime, id: &str) -> ContainerStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = rt.container_status(id).await.unwrap();
        if s.state == ContainerState::Exited {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} still {:?}", s.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn log_text(path: &Path) -> String {
    String::from_utf8(read_log(path, &LogOptions::default()).await.unwrap()).unwrap()
}

async fn wait_logged(path: &Path, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while !log_text(path).await.contains(needle) {
        assert!(Instant::now() < deadline, "{needle:?} never logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The container's cgroup directory holding `file`, v2 or v1.
fn cgroup_dir(id: &str, v1_controller: &str) -> PathBuf {
    let mount = Path::new("/sys/fs/cgroup");
    if mount.join("cgroup.controllers").is_file() {
        mount.join("kaji").join(id)
    } else {
        mount.join(v1_controller).join("kaji").join(id)
    }
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    if !is_root() {
        return;
    }
    let f = Fixture::new(None);
    let mut config = container("hog", &["sh", "-c", "head -c 209715200 /dev/zero | tail"]);
    config.resources.memory_limit_bytes = Some(50 << 20);
    let (sandbox, id) = run_container(&f.rt, &f.pod("hog"), &config).await;
    let s = wait_exited(&f.rt, &id).await;
    assert_eq!(
        (s.reason.as_str(), s.exit_code),
        ("OOMKilled", Some(137)),
        "{s:?}"
    );
    f.rt.remove_pod_sandbox(&sandbox).await.unwrap();
    assert!(
        !cgroup_dir(&id, "memory").exists(),
        "cgroup removed with the container"
    );
}

#[tokio::test]
async fn cgroup_limits_are_applied_and_removed_with_the_container() {
    if !is_root() {
        return;
    }
    let f = Fixture::new(None);
    let mut config = container("limited", &["sleep", "3600"]);
    config.resources = LinuxResources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit_bytes: Some(64 << 20),
    };
    let (sandbox, id) = run_container(&f.rt, &f.pod("limited"), &config).await;
    let memory = cgroup_dir(&id, "memory");
    let v2 = memory.join("memory.max").exists();
    let limit = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim().to_owned();
    assert_eq!(read(memory.join(limit)), (64u64 << 20).to_string());
    let cpu = cgroup_dir(&id, "cpu");
    if v2 {
        assert_eq!(read(cpu.join("cpu.max")), "50000 100000");
    } else {
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cpu.join("cpu.shares")), "512");
    }
    assert!(
        !read(memory.join("cgroup.procs")).is_empty(),
        "the process joined"
    );
    let cmd = ["cat".to_owned(), "/proc/self/cgroup".to_owned()];
    let out = f.rt.exec_sync(&id, &cmd, WAIT).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&id),
        "exec joins the cgroup"
    );
    f.rt.remove_pod_sandbox(&sandbox).await.unwrap();
    assert!(!memory.exists() && !cpu.exists());
}

#[tokio::test]
async fn read_only_mounts_reject_writes_and_stay_private() {
    if !is_root() {
        return;
    }
    let f = Fixture::new(None);
    let volume = f.dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("file"), "content\n").unwrap();
    let at = f.dir.path().join("mnt/ro");
    let script = format!(
        "cat {0}/file; touch {0}/new 2>/dev/null && echo wrote || echo refused; sleep 3600",
        at.display()
    );
    let mut config = container("ro", &["sh", "-c", &script]);
    config.mounts = vec![Mount {
        container_path: at.clone(),
        host_path: volume.clone(),
        read_only: true,
    }];
    let (sandbox, id) = run_container(&f.rt, &f.pod("ro"), &config).await;
    let log = f.rt.container_status(&id).await.unwrap().log_path;
    wait_logged(&log, "refused").await;
    assert_eq!(log_text(&log).await, "content\nrefused\n");
    assert!(!volume.join("new").exists());
    assert!(
        at.is_dir() && !at.join("file").exists(),
        "the bind mount is not on the host"
    );
    let cmd = ["cat".to_owned(), at.join("file").display().to_string()];
    let out = f.rt.exec_sync(&id, &cmd, WAIT).await.unwrap();
    assert_eq!(out.stdout, b"content\n", "exec enters the mount namespace");
    f.rt.remove_pod_sandbox(&sandbox).await.unwrap();
    assert!(
        !f.dir.path().join("mnt").exists(),
        "created mount points are removed"
    );
}

#[tokio::test]
async fn a_mount_failing_during_setup_fails_the_start_as_container_cannot_run() {
    if !is_root() {
        return;
    }
    let f = Fixture::new(None);
    let file = f.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let dir = f.dir.path().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let mut config = container("bad-mount", &["true"]);
    // A file cannot be bind-mounted over a directory.
    config.mounts = vec![Mount {
        container_path: dir,
        host_path: file,
        read_only: false,
    }];
    let pod = f.pod("bad-mount");
    let sandbox = f.rt.run_pod_sandbox(&pod).await.unwrap();
    let id =
        f.rt.create_container(&sandbox, &config, &pod)
            .await
            .unwrap();
    let err = f.rt.start_container(&id).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Start { .. }), "{err}");
    assert!(err.to_string().contains("cannot mount"), "{err}");
    let s = f.rt.container_status(&id).await.unwrap();
    assert_eq!(
        (s.state, s.reason.as_str()),
        (ContainerState::Exited, "ContainerCannotRun")
    );
    assert!(s.message.contains("cannot mount"), "{}", s.message);
    f.rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

#[tokio::test]
async fn tty_merges_stderr_into_stdout_and_stdin_stays_open_when_asked() {
    let f = Fixture::new(None);
    let mut tty = container("tty", &["sh", "-c", "echo out; echo err >&2"]);
    tty.tty = true;
    let (sandbox, id) = run_container(&f.rt, &f.pod("tty"), &tty).await;
    let s = wait_exited(&f.rt, &id).await;
    let raw = std::fs::read(&s.log_path).unwrap();
    let streams: Vec<LogStream> = raw
        .split_inclusive(|b| *b == b'\n')
        .map(|l| parse_record(l).unwrap().stream)
        .collect();
    assert_eq!(streams, [LogStream::Stdout, LogStream::Stdout]);
    let pod = f.pod("tty");
    let mut open = container("open", &["cat"]);
    open.stdin = true;
    let open = f.rt.create_container(&sandbox, &open, &pod).await.unwrap();
    f.rt.start_container(&open).await.unwrap();
    let closed =
        f.rt.create_container(&sandbox, &container("closed", &["cat"]), &pod)
            .await;
    let closed = closed.unwrap();
    f.rt.start_container(&closed).await.unwrap();
    assert_eq!(
        wait_exited(&f.rt, &closed).await.exit_code,
        Some(0),
        "cat sees EOF"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = f.rt.container_status(&open).await.unwrap();
    assert_eq!(s.state, ContainerState::Running, "stdin is held open");
    f.rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

#[tokio::test]
async fn status_says_what_isolation_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let options = ProcessOptions {
        isolation: false,
        ..ProcessOptions::default()
    };
    let rt = ProcessRuntime::with_options(dir.path(), None, options).unwrap();
    let s = rt.status().await;
    assert_eq!(
        (s.name.as_str(), s.runtime_ready, s.network_ready),
        ("kaji-process", true, false)
    );
    assert!(
        s.message.contains("mounts are not isolated"),
        "{}",
        s.message
    );
    assert!(
        s.message.contains("pods share the host network"),
        "{}",
        s.message
    );
}

/// Processes whose command line holds `marker`, zombies excluded.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn a_restarted_runtime_lists_old_sandboxes_and_kills_their_processes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    // A unique sleep length marks the process (sleep takes fractions).
    let marker = format!(
        "3600.{}",
        uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000
    );
    let (sandbox, long, short) = {
        let (root, dir, marker) = (root.clone(), dir.path().to_owned(), marker.clone());
        // The first runtime lives and dies with its own tokio runtime, as an agent would.
        std::thread::spawn(move || {
            let tokio = tokio::runtime::Runtime::new().unwrap();
            tokio.block_on(async {
                let rt = ProcessRuntime::new(&root, None).unwrap();
                let p = pod(&dir, "old");
                let (sandbox, long) =
                    run_container(&rt, &p, &container("long", &["sleep", &marker])).await;
                let short = container("short", &["sleep", "0.2"]);
                let short = rt.create_container(&sandbox, &short, &p).await.unwrap();
                rt.start_container(&short).await.unwrap();
                (sandbox, long, short)
            })
        })
        .join()
        .unwrap()
    };
    tokio::time::sleep(Duration::from_millis(500)).await; // the short one ends meanwhile
    let rt = ProcessRuntime::new(&root, None).unwrap();
    let _guard = Fixture {
        rt: rt.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    // Where util-linux has setpriv, containers die with the runtime that
    // started them; elsewhere the restarted runtime must kill them.
    let survivors = if std::path::Path::new("/usr/bin/setpriv").exists() {
        0
    } else {
        1
    };
    assert_eq!(processes_with(&marker).len(), survivors);
    let listed = rt.list_pod_sandboxes().await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [sandbox.as_str()]
    );
    // A live leftover is Unknown (not reattached); a dead one Exited.
    let expected = if survivors == 1 {
        ContainerState::Unknown
    } else {
        ContainerState::Exited
    };
    assert_eq!(rt.container_status(&long).await.unwrap().state, expected);
    let s = rt.container_status(&short).await.unwrap();
    assert_eq!((s.state, s.exit_code), (ContainerState::Exited, Some(255)));
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
    assert!(
        processes_with(&marker).is_empty(),
        "removal killed the old process"
    );
    assert!(rt.list_pod_sandboxes().await.unwrap().is_empty());
    assert!(!cgroup_dir(&long, "memory").exists());
    assert!(!cgroup_dir(&short, "memory").exists());
}

/// A test-only pod network: a veth pair per sandbox, the host end
/// 10.213.<n>.<4k+1>/30 and the pod's `eth0` 10.213.<n>.<4k+2>/30.
struct VethNetwork {
    ready: AtomicBool,
    subnet: [u8; 2],
}

async fn ip(args: &[&str]) -> Result<(), RuntimeError> {
    let out = tokio::process::Command::new("ip").args(args).output().await;
    let out = out.map_err(|e| RuntimeError::io("ip", e))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(RuntimeError::Network(format!(
            "ip {}: {err}",
            args.join(" ")
        )))
    }
}

fn host_if(sandbox_id: &str) -> String {
    format!("kt{}", &sandbox_id[..8])
}

#[async_trait]
impl PodNetwork for VethNetwork {
    async fn set_pod_cidr(&self, _cidr: &str) -> kaji_runtime::Result<()> {
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    async fn attach(
        &self,
        sandbox_id: &str,
        _pod: &PodSandboxMetadata,
        netns: &Path,
    ) -> kaji_runtime::Result<IpAddr> {
        let [a, b] = self.subnet;
        let (host, peer) = (host_if(sandbox_id), format!("kp{}", &sandbox_id[..8]));
        let ns = netns.file_name().unwrap().to_str().unwrap();
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]).await?;
        ip(&["link", "set", &peer, "netns", ns]).await?;
        ip(&[
            "addr",
            "add",
            &format!("10.213.{a}.{}/30", b + 1),
            "dev",
            &host,
        ])
        .await?;
        ip(&["link", "set", &host, "up"]).await?;
        ip(&["-n", ns, "link", "set", &peer, "name", "eth0"]).await?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("10.213.{a}.{}/30", b + 2),
            "dev",
            "eth0",
        ])
        .await?;
        ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
        Ok(IpAddr::V4(Ipv4Addr::new(10, 213, a, b + 2)))
    }

    async fn detach(&self, sandbox_id: &str, _netns: &Path) -> kaji_runtime::Result<()> {
        let _ = ip(&["link", "del", &host_if(sandbox_id)]).await; // gone already is fine
        Ok(())
    }
}

#[tokio::test]
async fn a_pod_network_namespace_is_reachable_at_its_ip() {
    if !is_root() {
        return;
    }
    let n = uuid::Uuid::new_v4().as_bytes()[0];
    let network = Arc::new(VethNetwork {
        ready: AtomicBool::new(false),
        subnet: [n, 4 * (n % 60)],
    });
    let f = Fixture::new(Some(network.clone()));
    let pod = f.pod("web");
    let refused = f.rt.run_pod_sandbox(&pod).await;
    assert!(
        matches!(refused, Err(RuntimeError::Network(_))),
        "{refused:?}"
    );
    assert!(
        f.rt.list_pod_sandboxes().await.unwrap().is_empty(),
        "failed sandbox cleaned up"
    );
    f.rt.update_pod_cidr("10.213.0.0/16").await.unwrap();
    assert!(f.rt.status().await.network_ready);
    let server = "use IO::Socket::INET; $| = 1; \
        my $s = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die $!; \
        print \"listening\\n\"; while (my $c = $s->accept) { print $c \"hello from the pod\\n\"; close $c }";
    let (sandbox, id) =
        run_container(&f.rt, &pod, &container("web", &["perl", "-e", server])).await;
    let pod_ip =
        f.rt.pod_sandbox_status(&sandbox)
            .await
            .unwrap()
            .ip
            .expect("pod IP");
    let netns = format!("/run/netns/kaji-{}", &sandbox[..12]);
    assert!(Path::new(&netns).exists());
    wait_logged(
        &f.rt.container_status(&id).await.unwrap().log_path,
        "listening",
    )
    .await;
    let connect = tokio::net::TcpStream::connect((pod_ip, 8080));
    let mut conn = tokio::time::timeout(WAIT, connect).await.unwrap().unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "hello from the pod\n");
    let cmd = ["cat".to_owned(), "/proc/net/dev".to_owned()];
    let out = f.rt.exec_sync(&id, &cmd, WAIT).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("eth0:"),
        "exec enters the netns"
    );
    f.rt.remove_pod_sandbox(&sandbox).await.unwrap();
    assert!(!Path::new(&netns).exists(), "netns deleted");
    assert!(
        !Path::new("/sys/class/net").join(host_if(&sandbox)).exists(),
        "veth deleted"
    );
}
