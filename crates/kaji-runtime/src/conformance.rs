//! The conformance suite every [`PodRuntime`] passes.
//!
//! Each check is a public async function taking a fresh runtime and
//! panicking on failure. Checks come in two groups:
//!
//! - `basic`: the bookkeeping every runtime shares (sandbox and container
//!   lifecycles, idempotence, listing, metadata, log files). Containers run
//!   `sleep 3600`, so a process runtime passes too.
//! - `process`: what only runtimes that run real processes can do (exit
//!   codes, env, working directory, mounts, log content, exec, SIGTERM then
//!   SIGKILL). They use `sh`, `env`, `pwd`, `cat` and `sleep` from the host.
//!
//! [`runtime_conformance_tests!`](crate::runtime_conformance_tests) expands
//! into one `#[tokio::test]` per check of the groups named:
//!
//! ```ignore
//! kaji_runtime::runtime_conformance_tests!(async { kaji_runtime::SimulatedRuntime::new() }; basic);
//! ```
//!
//! The factory may also yield `(runtime, guard)`, e.g. a runtime and the
//! temporary directory that must outlive it. Checks write their log files
//! and host directories under a fresh directory in the system temp dir,
//! removed when the check ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::logs::{parse_record, read_log, LogOptions, LogStream};
use crate::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, Mount, PodRuntime,
    PodSandboxConfig, PodSandboxMetadata, RuntimeError, SandboxState,
};

/// What a conformance factory yields: a runtime, possibly with something
/// that must live as long as it (a temporary directory).
pub trait Fixture: Send + Sync {
    /// The runtime under test.
    fn runtime(&self) -> &dyn PodRuntime;
}

impl<R: PodRuntime> Fixture for R {
    fn runtime(&self) -> &dyn PodRuntime {
        self
    }
}

impl<R: PodRuntime, G: Send + Sync> Fixture for (R, G) {
    fn runtime(&self) -> &dyn PodRuntime {
        &self.0
    }
}

/// How long a check waits for a process to reach a state before failing.
const WAIT: Duration = Duration::from_secs(15);

/// Expands into one `#[tokio::test]` per conformance check of the named
/// groups (`basic`, `process`).
///
/// The first argument is an expression evaluating to a future of a fresh
/// [`Fixture`]; it is evaluated once per test.
#[macro_export]
macro_rules! runtime_conformance_tests {
    ($factory:expr; $($group:ident),+ $(,)?) => {
        $( $crate::runtime_conformance_tests!(@group $group; $factory); )+
    };
    (@group basic; $factory:expr) => {
        $crate::runtime_conformance_tests!(@each $factory;
            runtime_reports_its_name_and_readiness,
            sandbox_lifecycle_is_ready_then_not_ready_then_gone,
            container_lifecycle_is_created_running_exited_then_gone,
            containers_need_a_ready_sandbox_and_start_once,
            listing_containers_filters_by_sandbox,
            metadata_attempts_and_labels_round_trip,
            removing_a_sandbox_removes_its_containers,
            stopping_a_sandbox_stops_its_containers,
            log_file_exists_at_log_path,
            unknown_ids_are_not_found,
        );
    };
    (@group process; $factory:expr) => {
        $crate::runtime_conformance_tests!(@each $factory;
            exit_codes_and_reasons_follow_the_process,
            env_is_exactly_what_the_pod_gives,
            working_dir_is_honoured,
            mounts_are_visible_at_their_container_path,
            logs_capture_stdout_and_stderr_separately,
            exec_sync_returns_output_exit_code_and_container_env,
            exec_sync_kills_the_command_after_its_timeout,
            exec_streams_stdin_and_stdout,
            stop_sends_sigterm_then_sigkill_after_grace,
            a_command_that_cannot_run_fails_to_start,
        );
    };
    (@each $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $factory.await;
                $crate::conformance::$check($crate::conformance::Fixture::runtime(&fixture)).await;
            }
        )+
    };
}

/// A directory for one check's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("kaji-conformance-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn pod(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: name.to_owned(),
                namespace: "conformance".to_owned(),
                uid: format!("uid-{name}"),
                attempt: 0,
            },
            hostname: name.to_owned(),
            log_directory: self.0.join("logs").join(name),
            ..PodSandboxConfig::default()
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn container(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        },
        image: "busybox:1.36".to_owned(),
        command: strings(command),
        log_path: PathBuf::from(format!("{name}/0.log")),
        ..ContainerConfig::default()
    }
}

fn sleeper(name: &str) -> ContainerConfig {
    container(name, &["sleep", "3600"])
}

async fn run(rt: &dyn PodRuntime, pod: &PodSandboxConfig) -> String {
    let id = rt.run_pod_sandbox(pod).await.expect("run_pod_sandbox");
    assert!(!id.is_empty());
    id
}

/// Creates and starts a container; returns its id.
async fn start(
    rt: &dyn PodRuntime,
    sandbox: &str,
    pod: &PodSandboxConfig,
    config: &ContainerConfig,
) -> String {
    let id = rt
        .create_container(sandbox, config, pod)
        .await
        .expect("create_container");
    rt.start_container(&id).await.expect("start_container");
    id
}

async fn wait_exited(rt: &dyn PodRuntime, id: &str) -> ContainerStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = rt.container_status(id).await.expect("container_status");
        if status.state == ContainerState::Exited {
            return status;
        }
        assert!(Instant::now() < deadline, "{id} still {:?}", status.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the log at `path` has a stdout line containing `needle`.
async fn wait_logged(path: &Path, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = read_log(path, &LogOptions::default()).await {
            if String::from_utf8_lossy(&text).contains(needle) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never logged to {path:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `config` to completion; returns its status and its log as text.
async fn run_to_exit(
    rt: &dyn PodRuntime,
    scratch: &Scratch,
    config: &ContainerConfig,
) -> (ContainerStatus, String) {
    let pod = scratch.pod("once");
    let sandbox = run(rt, &pod).await;
    let id = start(rt, &sandbox, &pod, config).await;
    let status = wait_exited(rt, &id).await;
    let log = read_log(&status.log_path, &LogOptions::default())
        .await
        .expect("read log");
    rt.remove_pod_sandbox(&sandbox).await.expect("remove");
    (status, String::from_utf8(log).expect("utf-8 log"))
}

fn assert_not_found<T: std::fmt::Debug>(result: crate::Result<T>, what: &str) {
    match result {
        Err(RuntimeError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------- basic

/// The runtime names itself and is ready to run pods.
pub async fn runtime_reports_its_name_and_readiness(rt: &dyn PodRuntime) {
    let status = rt.status().await;
    assert!(!status.name.is_empty() && !status.version.is_empty());
    assert!(status.runtime_ready, "{}", status.message);
    if !status.network_ready {
        assert!(
            !status.message.is_empty(),
            "reduced networking is explained"
        );
    }
}

/// run → Ready → stop → NotReady → remove → NotFound; stop and remove are idempotent.
pub async fn sandbox_lifecycle_is_ready_then_not_ready_then_gone(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("life");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let id = run(rt, &pod).await;
    let status = rt.pod_sandbox_status(&id).await.unwrap();
    assert_eq!(status.id, id);
    assert_eq!(status.state, SandboxState::Ready);
    assert!(status.created_at >= before);
    assert!(rt
        .list_pod_sandboxes()
        .await
        .unwrap()
        .iter()
        .any(|s| s.id == id));
    rt.stop_pod_sandbox(&id).await.unwrap();
    assert_eq!(
        rt.pod_sandbox_status(&id).await.unwrap().state,
        SandboxState::NotReady
    );
    rt.stop_pod_sandbox(&id).await.expect("stop is idempotent");
    let listed = rt.list_pod_sandboxes().await.unwrap();
    assert!(listed
        .iter()
        .any(|s| s.id == id && s.state == SandboxState::NotReady));
    rt.remove_pod_sandbox(&id).await.unwrap();
    assert_not_found(rt.pod_sandbox_status(&id).await, "removed sandbox");
    rt.remove_pod_sandbox(&id)
        .await
        .expect("remove is idempotent");
    assert!(!rt
        .list_pod_sandboxes()
        .await
        .unwrap()
        .iter()
        .any(|s| s.id == id));
}

/// create → Created, start → Running, stop with grace → Exited, remove → NotFound.
pub async fn container_lifecycle_is_created_running_exited_then_gone(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("life");
    let sandbox = run(rt, &pod).await;
    let config = sleeper("app");
    let id = rt.create_container(&sandbox, &config, &pod).await.unwrap();
    let created = rt.container_status(&id).await.unwrap();
    assert_eq!(
        (created.id.as_str(), created.sandbox_id.as_str()),
        (id.as_str(), sandbox.as_str())
    );
    assert_eq!(created.state, ContainerState::Created);
    assert_eq!((created.started_at, created.exit_code), (None, None));
    assert!(created.reason.is_empty());
    rt.start_container(&id).await.unwrap();
    let running = rt.container_status(&id).await.unwrap();
    assert_eq!(running.state, ContainerState::Running);
    assert!(running.started_at.is_some() && running.finished_at.is_none());
    rt.stop_container(&id, Duration::from_secs(10))
        .await
        .unwrap();
    let exited = rt.container_status(&id).await.unwrap();
    assert_eq!(
        exited.state,
        ContainerState::Exited,
        "stop returns once exited"
    );
    assert!(exited.exit_code.is_some() && exited.finished_at.is_some());
    assert!(exited.finished_at >= exited.started_at);
    assert!(!exited.reason.is_empty());
    rt.stop_container(&id, Duration::from_secs(10))
        .await
        .expect("stop is idempotent");
    assert_eq!(
        rt.container_status(&id).await.unwrap().exit_code,
        exited.exit_code
    );
    rt.remove_container(&id).await.unwrap();
    assert_not_found(rt.container_status(&id).await, "removed container");
    rt.remove_container(&id)
        .await
        .expect("remove is idempotent");
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// A container cannot be created in a stopped sandbox nor started twice.
pub async fn containers_need_a_ready_sandbox_and_start_once(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("once");
    let sandbox = run(rt, &pod).await;
    let id = start(rt, &sandbox, &pod, &sleeper("app")).await;
    assert!(rt.start_container(&id).await.is_err(), "started twice");
    rt.stop_pod_sandbox(&sandbox).await.unwrap();
    let result = rt.create_container(&sandbox, &sleeper("late"), &pod).await;
    assert!(result.is_err(), "created in a stopped sandbox: {result:?}");
    assert_not_found(
        rt.create_container("no-such-sandbox", &sleeper("x"), &pod)
            .await,
        "create in unknown sandbox",
    );
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// `list_containers(Some(sandbox))` lists only that sandbox's containers.
pub async fn listing_containers_filters_by_sandbox(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let (pa, pb) = (scratch.pod("a"), scratch.pod("b"));
    let (a, b) = (run(rt, &pa).await, run(rt, &pb).await);
    let a1 = rt.create_container(&a, &sleeper("one"), &pa).await.unwrap();
    let a2 = rt.create_container(&a, &sleeper("two"), &pa).await.unwrap();
    let b1 = rt.create_container(&b, &sleeper("one"), &pb).await.unwrap();
    let ids = |list: Vec<ContainerStatus>| {
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let mut want_a = vec![a1.clone(), a2.clone()];
    want_a.sort();
    assert_eq!(ids(rt.list_containers(Some(&a)).await.unwrap()), want_a);
    assert_eq!(
        ids(rt.list_containers(Some(&b)).await.unwrap()),
        vec![b1.clone()]
    );
    assert!(rt
        .list_containers(Some("no-such-sandbox"))
        .await
        .unwrap()
        .is_empty());
    let all = ids(rt.list_containers(None).await.unwrap());
    assert!([&a1, &a2, &b1].iter().all(|id| all.contains(id)));
    for s in [&a, &b] {
        rt.remove_pod_sandbox(s).await.unwrap();
    }
}

/// Pod metadata, attempts, labels, image and log path come back as given.
pub async fn metadata_attempts_and_labels_round_trip(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let mut pod = scratch.pod("meta");
    pod.metadata.attempt = 2;
    pod.labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    let sandbox = run(rt, &pod).await;
    let status = rt.pod_sandbox_status(&sandbox).await.unwrap();
    assert_eq!(status.metadata, pod.metadata);
    assert_eq!(status.labels, pod.labels);
    let mut config = sleeper("app");
    config.metadata.attempt = 3;
    config.log_path = PathBuf::from("app/3.log");
    config.image = "registry.example/app:v1".to_owned();
    let id = rt.create_container(&sandbox, &config, &pod).await.unwrap();
    let c = rt.container_status(&id).await.unwrap();
    assert_eq!(c.metadata, config.metadata);
    assert_eq!(c.image, config.image);
    assert_eq!(c.log_path, pod.log_directory.join("app/3.log"));
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// Removing a sandbox removes (and kills) its containers.
pub async fn removing_a_sandbox_removes_its_containers(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("gone");
    let sandbox = run(rt, &pod).await;
    let running = start(rt, &sandbox, &pod, &sleeper("run")).await;
    let created = rt
        .create_container(&sandbox, &sleeper("idle"), &pod)
        .await
        .unwrap();
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
    for id in [&running, &created] {
        assert_not_found(
            rt.container_status(id).await,
            "container of removed sandbox",
        );
    }
    let all = rt.list_containers(None).await.unwrap();
    assert!(!all.iter().any(|c| c.sandbox_id == sandbox));
}

/// Stopping a sandbox leaves its running containers Exited.
pub async fn stopping_a_sandbox_stops_its_containers(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("stop");
    let sandbox = run(rt, &pod).await;
    let id = start(rt, &sandbox, &pod, &sleeper("app")).await;
    rt.stop_pod_sandbox(&sandbox).await.unwrap();
    let status = rt.container_status(&id).await.unwrap();
    assert_eq!(status.state, ContainerState::Exited);
    assert!(status.exit_code.is_some());
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// A started container's log file exists at `log_directory/log_path`.
pub async fn log_file_exists_at_log_path(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("logs");
    let sandbox = run(rt, &pod).await;
    let id = start(rt, &sandbox, &pod, &sleeper("app")).await;
    let status = rt.container_status(&id).await.unwrap();
    assert_eq!(status.log_path, pod.log_directory.join("app/0.log"));
    assert!(status.log_path.is_file(), "{:?} missing", status.log_path);
    read_log(&status.log_path, &LogOptions::default())
        .await
        .expect("log readable");
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// Status and stop of unknown ids answer NotFound.
pub async fn unknown_ids_are_not_found(rt: &dyn PodRuntime) {
    assert_not_found(
        rt.pod_sandbox_status("no-such-sandbox").await,
        "sandbox status",
    );
    assert_not_found(
        rt.container_status("no-such-container").await,
        "container status",
    );
    assert_not_found(
        rt.stop_container("no-such-container", Duration::ZERO).await,
        "stop container",
    );
    rt.remove_container("no-such-container")
        .await
        .expect("remove unknown container");
    rt.remove_pod_sandbox("no-such-sandbox")
        .await
        .expect("remove unknown sandbox");
}

// -------------------------------------------------------------- process

/// Exit 0 is `Completed`, non-zero `Error`, each with its code.
pub async fn exit_codes_and_reasons_follow_the_process(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let (ok, _) = run_to_exit(rt, &scratch, &container("ok", &["true"])).await;
    assert_eq!((ok.exit_code, ok.reason.as_str()), (Some(0), "Completed"));
    let (bad, _) = run_to_exit(rt, &scratch, &container("bad", &["sh", "-c", "exit 3"])).await;
    assert_eq!((bad.exit_code, bad.reason.as_str()), (Some(3), "Error"));
    let mut args_only = container("args", &[]);
    args_only.args = strings(&["sh", "-c", "exit 5"]);
    let (args, _) = run_to_exit(rt, &scratch, &args_only).await;
    assert_eq!(args.exit_code, Some(5), "args alone are the command");
}

/// The container sees exactly its env, plus a default PATH when it sets none.
pub async fn env_is_exactly_what_the_pod_gives(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let mut config = container("env", &["env"]);
    config.envs = vec![
        ("GREETING".to_owned(), "hello world".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ];
    let (status, log) = run_to_exit(rt, &scratch, &config).await;
    assert_eq!(status.exit_code, Some(0), "{log}");
    let mut names: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["EMPTY", "GREETING", "PATH"], "{log}");
    assert!(log.contains("GREETING=hello world\n"));
    config
        .envs
        .push(("PATH".to_owned(), "/usr/bin:/bin".to_owned()));
    let (_, log) = run_to_exit(rt, &scratch, &config).await;
    assert!(log.contains("PATH=/usr/bin:/bin\n"), "{log}");
}

/// `working_dir` is where the command runs; without one it runs somewhere that exists.
pub async fn working_dir_is_honoured(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let dir = scratch.0.join("work");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = container("pwd", &["pwd"]);
    config.working_dir = dir.to_string_lossy().into_owned();
    let (_, log) = run_to_exit(rt, &scratch, &config).await;
    assert_eq!(
        log.trim_end(),
        dir.canonicalize().unwrap().to_string_lossy()
    );
    let (status, log) = run_to_exit(rt, &scratch, &container("default", &["pwd"])).await;
    assert_eq!(status.exit_code, Some(0));
    assert!(log.starts_with('/'), "{log}");
}

/// A mount's host files appear at its container path (created if missing).
pub async fn mounts_are_visible_at_their_container_path(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let host = scratch.0.join("volume");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("greeting"), "from the host\n").unwrap();
    let at = scratch.0.join("in-container/data");
    let mut config = container("cat", &["cat"]);
    config.args = vec![at.join("greeting").to_string_lossy().into_owned()];
    config.mounts = vec![Mount {
        container_path: at,
        host_path: host,
        read_only: true,
    }];
    let (status, log) = run_to_exit(rt, &scratch, &config).await;
    assert_eq!(
        (status.exit_code, log.as_str()),
        (Some(0), "from the host\n")
    );
}

/// stdout and stderr land in the log as records of their own stream.
pub async fn logs_capture_stdout_and_stderr_separately(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let script = "echo out one; echo err one >&2; printf 'no newline'";
    let (status, _) = run_to_exit(rt, &scratch, &container("split", &["sh", "-c", script])).await;
    let raw = std::fs::read(&status.log_path).unwrap();
    let mut records: Vec<(LogStream, String)> = raw
        .split_inclusive(|b| *b == b'\n')
        .map(|line| parse_record(line).expect("CRI record"))
        .map(|r| (r.stream, String::from_utf8_lossy(r.content).into_owned()))
        .collect();
    records.sort_by_key(|(s, _)| *s == LogStream::Stderr);
    assert_eq!(
        records,
        [
            (LogStream::Stdout, "out one".to_owned()),
            (LogStream::Stdout, "no newline".to_owned()),
            (LogStream::Stderr, "err one".to_owned()),
        ]
    );
}

/// exec_sync returns stdout, stderr and the exit code, with the container's env.
pub async fn exec_sync_returns_output_exit_code_and_container_env(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("exec");
    let sandbox = run(rt, &pod).await;
    let mut config = sleeper("app");
    config.envs = vec![("FOO".to_owned(), "bar".to_owned())];
    let id = start(rt, &sandbox, &pod, &config).await;
    let cmd = strings(&["sh", "-c", "echo \"$FOO\"; echo oops >&2; exit 4"]);
    let out = rt
        .exec_sync(&id, &cmd, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"bar\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.exit_code, 4);
    rt.stop_container(&id, Duration::ZERO).await.unwrap();
    assert!(rt
        .exec_sync(&id, &strings(&["true"]), Duration::from_secs(1))
        .await
        .is_err());
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// exec_sync kills a command still running at its timeout and says so.
pub async fn exec_sync_kills_the_command_after_its_timeout(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("exec");
    let sandbox = run(rt, &pod).await;
    let id = start(rt, &sandbox, &pod, &sleeper("app")).await;
    let started = Instant::now();
    let cmd = strings(&["sleep", "30"]);
    let result = rt.exec_sync(&id, &cmd, Duration::from_millis(300)).await;
    assert!(result.is_err(), "timed-out exec reported {result:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        rt.container_status(&id).await.unwrap().state,
        ContainerState::Running
    );
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// exec streams stdin to the command and its stdout back, then its exit code.
pub async fn exec_streams_stdin_and_stdout(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("exec");
    let sandbox = run(rt, &pod).await;
    let id = start(rt, &sandbox, &pod, &sleeper("app")).await;
    let cmd = strings(&["sh", "-c", "cat; exit 7"]);
    let mut session = rt.exec(&id, &cmd, true, false).await.unwrap();
    let mut stdin = session.stdin.take().expect("stdin requested");
    stdin.write_all(b"ping\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let mut out = Vec::new();
    let read = session.stdout.read_to_end(&mut out);
    tokio::time::timeout(WAIT, read)
        .await
        .expect("stdout ends")
        .unwrap();
    assert_eq!(out, b"ping\n");
    let code = tokio::time::timeout(WAIT, session.exit_code)
        .await
        .expect("exits");
    assert_eq!(code.unwrap(), 7);
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// Stop sends SIGTERM (a handler may exit cleanly) and SIGKILL once grace runs out.
pub async fn stop_sends_sigterm_then_sigkill_after_grace(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("stop");
    let sandbox = run(rt, &pod).await;
    let loop_ = "echo ready; while :; do sleep 0.05; done";
    let polite = format!("trap 'echo bye; exit 0' TERM; {loop_}");
    let stubborn = format!("trap '' TERM; {loop_}");
    let plain = start(rt, &sandbox, &pod, &sleeper("plain")).await;
    let polite = start(
        rt,
        &sandbox,
        &pod,
        &container("polite", &["sh", "-c", &polite]),
    )
    .await;
    let stubborn = start(
        rt,
        &sandbox,
        &pod,
        &container("stubborn", &["sh", "-c", &stubborn]),
    )
    .await;
    for id in [&polite, &stubborn] {
        wait_logged(&rt.container_status(id).await.unwrap().log_path, "ready").await;
    }
    let grace = Duration::from_secs(10);
    rt.stop_container(&plain, grace).await.unwrap();
    let s = rt.container_status(&plain).await.unwrap();
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (Some(143), "Error"),
        "SIGTERM is 128+15"
    );
    rt.stop_container(&polite, grace).await.unwrap();
    let s = rt.container_status(&polite).await.unwrap();
    assert_eq!((s.exit_code, s.reason.as_str()), (Some(0), "Completed"));
    wait_logged(&s.log_path, "bye").await;
    let started = Instant::now();
    let grace = Duration::from_millis(700);
    rt.stop_container(&stubborn, grace).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= grace && waited < grace + WAIT,
        "waited {waited:?}"
    );
    let s = rt.container_status(&stubborn).await.unwrap();
    assert_eq!(s.exit_code, Some(137), "SIGKILL is 128+9");
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}

/// A missing binary or an empty command fails start with `ContainerCannotRun`.
pub async fn a_command_that_cannot_run_fails_to_start(rt: &dyn PodRuntime) {
    let scratch = Scratch::new();
    let pod = scratch.pod("broken");
    let sandbox = run(rt, &pod).await;
    for config in [
        container("missing", &["/nonexistent/kaji/binary"]),
        container("empty", &[]),
    ] {
        let id = rt.create_container(&sandbox, &config, &pod).await.unwrap();
        let err = rt.start_container(&id).await.expect_err("start fails");
        assert!(matches!(err, RuntimeError::Start { .. }), "{err}");
        let s = rt.container_status(&id).await.unwrap();
        assert_eq!(s.state, ContainerState::Exited);
        assert_eq!(s.reason, "ContainerCannotRun");
        assert!(s.exit_code.is_some_and(|c| c != 0));
        assert!(!s.message.is_empty());
    }
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
}
