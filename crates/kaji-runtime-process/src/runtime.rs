//! [`PodRuntime`] for [`ProcessRuntime`]: sandboxes, container processes,
//! their exit, stop and removal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use kaji_runtime::logs::{capture, LogStream, LogWriter};
use kaji_runtime::{
    ContainerConfig, ContainerState, ContainerStatus, ExecOutput, ExecSession, PodRuntime,
    PodSandboxConfig, PodSandboxStatus, Result, RuntimeError, RuntimeStatus,
};
use nix::sys::signal::Signal;
use tokio::sync::watch;

use crate::exec::ExecTarget;
use crate::host::{self, signal_group};
use crate::launch::{self, CannotRun, Plan};
use crate::state::{self, ContainerRecord, SandboxRecord};
use crate::{Container, Inner, ProcessRuntime};

/// How long a container may take to die after SIGKILL before stop fails.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// How long output still in the pipes is copied after the main process exits.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long a start waits for the setup script to reach `exec`.
const SETUP_WAIT: Duration = Duration::from_secs(10);

/// Exit code reported when a container could not start (as containerd).
const CANNOT_RUN_EXIT: i32 = 128;

fn not_found(kind: &'static str, id: &str) -> RuntimeError {
    RuntimeError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

impl Inner {
    fn persist_sandbox(&self, record: &SandboxRecord) -> Result<()> {
        let path = state::sandbox_dir(&self.root, &record.id).join("sandbox.json");
        state::write_json(&path, record)
            .map_err(|e| RuntimeError::io(format!("writing {}", path.display()), e))
    }

    fn persist_container(&self, record: &ContainerRecord) {
        let path = state::container_file(&self.root, &record.sandbox_id, &record.id);
        if let Err(e) = state::write_json(&path, record) {
            tracing::warn!(container = %record.id, error = %e, "cannot write container record");
        }
    }

    fn update_sandbox(
        &self,
        id: &str,
        f: impl FnOnce(&mut SandboxRecord),
    ) -> Result<SandboxRecord> {
        let mut state = self.lock();
        let record = state
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| not_found("sandbox", id))?;
        f(record);
        let record = record.clone();
        drop(state);
        self.persist_sandbox(&record)?;
        Ok(record)
    }

    /// Records a start that failed before the process ran.
    fn cannot_run(&self, id: &str, why: &CannotRun, created: Vec<PathBuf>) -> RuntimeError {
        let mut state = self.lock();
        let mut name = id.to_owned();
        if let Some(c) = state.containers.get_mut(id) {
            c.starting = false;
            c.record.created_paths.extend(created);
            c.record
                .exit(CANNOT_RUN_EXIT, "ContainerCannotRun", why.0.clone());
            self.persist_container(&c.record);
            name = c.record.name.clone();
        }
        RuntimeError::Start {
            what: format!("container {name}"),
            source: std::io::Error::other(why.0.clone()),
        }
    }

    /// Waits for a process the runtime did not spawn (found after a
    /// restart) to end; true if it did within `within`.
    async fn wait_gone(pid: i32, start: Option<u64>, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while start.is_some() && state::process_start(pid) == start {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl ProcessRuntime {
    async fn spawn(&self, id: &str) -> Result<()> {
        let inner = &self.inner;
        let (config, record, netns) = {
            let mut state = inner.lock();
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| not_found("container", id))?;
            if c.record.state() != ContainerState::Created || c.starting {
                return Err(RuntimeError::InvalidState(format!(
                    "container {id} was already started"
                )));
            }
            let sandbox = state
                .sandboxes
                .get(&c.record.sandbox_id)
                .filter(|s| s.ready)
                .ok_or_else(|| {
                    RuntimeError::InvalidState(format!("sandbox of container {id} is not ready"))
                })?;
            let netns = sandbox.netns.as_deref().map(host::netns_path);
            let c = state.containers.get_mut(id).expect("checked above");
            c.starting = true;
            (c.config.clone(), c.record.clone(), netns)
        };
        let mut created = Vec::new();
        let cgroup = match &inner.cgroups {
            Some(cgroups) => match cgroups.create(id, &config.resources) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    let why = CannotRun(format!("cannot create cgroup: {e}"));
                    return Err(inner.cannot_run(id, &why, created));
                }
            },
            None => None,
        };
        if let Some(cg) = &cgroup {
            let mut state = inner.lock();
            if let Some(c) = state.containers.get_mut(id) {
                c.cgroup = Some(cg.clone());
                c.record.cgroup_dirs = cg.dirs.clone();
            }
        }
        let default_dir = state::container_dir(&inner.root, &record.sandbox_id, id);
        let marker = default_dir.with_extension("start-error");
        let ready = default_dir.with_extension("ready");
        let plan = Plan {
            host: &inner.host,
            isolate_mounts: inner.privileged && inner.host.can_isolate_mounts(),
            config: &config,
            default_dir: &default_dir,
            cgroup: cgroup.as_ref(),
            netns: netns.as_deref(),
            marker: &marker,
            ready: &ready,
        };
        let (mut command, wrapped) = match launch::prepare(&plan, &mut created) {
            Ok(p) => (p.command, p.wrapped),
            Err(why) => return Err(inner.cannot_run(id, &why, created)),
        };
        let writer = match LogWriter::create(&record.log_path) {
            Ok(w) => Arc::new(w),
            Err(e) => return Err(inner.cannot_run(id, &CannotRun(e.to_string()), created)),
        };
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let why = CannotRun(format!("cannot run {:?}: {e}", config.command));
                return Err(inner.cannot_run(id, &why, created));
            }
        };
        let pid = child.id().map_or(0, |p| p as i32);
        // With a tty everything the process writes is one stream, as in CRI.
        let err_stream = if config.tty {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        };
        let mut captures = Vec::new();
        if let Some(out) = child.stdout.take() {
            captures.push(tokio::spawn(capture(
                out,
                LogStream::Stdout,
                writer.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            captures.push(tokio::spawn(capture(err, err_stream, writer)));
        }
        let (exited_tx, exited_rx) = watch::channel(false);
        let mut exited = exited_rx.clone();
        {
            let mut state = inner.lock();
            if let Some(c) = state.containers.get_mut(id) {
                c.starting = false;
                c.exited = Some(exited_rx);
                c.stdin = child.stdin.take();
                c.record.set_state(ContainerState::Running);
                c.record.started_at = Some(Utc::now());
                c.record.pid = Some(pid);
                c.record.pid_start = state::process_start(pid);
                c.record.created_paths.extend(created);
                inner.persist_container(&c.record);
            }
        }
        let monitor_inner = inner.clone();
        let monitor_id = id.to_owned();
        let monitor_marker = marker.clone();
        tokio::spawn(async move {
            let (inner, id, marker) = (monitor_inner, monitor_id, monitor_marker);
            let status = child.wait().await;
            let code = status.map_or(255, host::exit_code);
            // A container ends with its main process: what it forked goes too.
            signal_group(pid, Signal::SIGKILL);
            if let Some(cg) = &cgroup {
                cg.kill_all();
            }
            // Something that escaped the group may hold the pipes: stop copying after a while.
            let aborts: Vec<_> = captures.iter().map(|c| c.abort_handle()).collect();
            let drained = futures::future::join_all(captures);
            if tokio::time::timeout(DRAIN_WAIT, drained).await.is_err() {
                aborts.iter().for_each(|a| a.abort());
            }
            let setup_failure = std::fs::read_to_string(&marker).ok();
            let (code, reason, message) = match setup_failure {
                Some(why) => (CANNOT_RUN_EXIT, "ContainerCannotRun", why),
                None if cgroup.as_ref().is_some_and(|cg| cg.oom_killed(code)) => {
                    (code, "OOMKilled", String::new())
                }
                None if code == 0 => (code, "Completed", String::new()),
                None => (code, "Error", String::new()),
            };
            {
                let mut state = inner.lock();
                if let Some(c) = state.containers.get_mut(&id) {
                    c.record.exit(code, reason, message);
                    c.stdin = None;
                    inner.persist_container(&c.record);
                }
            }
            let _ = exited_tx.send(true);
        });
        if !wrapped {
            return Ok(());
        }
        // Return once the process is in its cgroup and namespaces, or report
        // why setup failed, as a start error.
        let deadline = Instant::now() + SETUP_WAIT;
        loop {
            if ready.exists() {
                return Ok(());
            }
            if let Ok(why) = std::fs::read_to_string(&marker) {
                let _ = tokio::time::timeout(SETUP_WAIT, exited.wait_for(|done| *done)).await;
                return Err(RuntimeError::Start {
                    what: format!("container {}", config.metadata.name),
                    source: std::io::Error::other(why),
                });
            }
            if *exited.borrow() || Instant::now() >= deadline {
                return Ok(()); // killed during setup, or a very slow host: the status tells
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn exec_target(&self, id: &str) -> Result<ExecTarget> {
        let inner = &self.inner;
        let state = inner.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        if c.record.state() != ContainerState::Running || c.exited.is_none() {
            return Err(RuntimeError::InvalidState(format!(
                "container {id} is not running"
            )));
        }
        let default_dir = state::container_dir(&inner.root, &c.record.sandbox_id, id);
        Ok(ExecTarget {
            container_id: id.to_owned(),
            enter_pid: c.record.pid.filter(|_| inner.privileged),
            cgroup: c.cgroup.clone(),
            env: launch::env(&c.config),
            working_dir: launch::working_dir(&c.config, &default_dir),
        })
    }

    async fn stop_sandbox_network(&self, id: &str, record: &SandboxRecord) -> Result<()> {
        let inner = &self.inner;
        if let Some(name) = &record.netns {
            if record.attached {
                if let Some(network) = &inner.network {
                    network.detach(id, &host::netns_path(name)).await?;
                }
                inner.update_sandbox(id, |s| s.attached = false)?;
            }
            if let Some(ip) = &inner.host.ip {
                host::delete_netns(ip, name).await?;
            }
            inner.update_sandbox(id, |s| s.netns = None)?;
        }
        Ok(())
    }
}

#[async_trait]
impl PodRuntime for ProcessRuntime {
    async fn status(&self) -> RuntimeStatus {
        let inner = &self.inner;
        let host = &inner.host;
        let mut notes = Vec::new();
        if !inner.privileged {
            let who = if host.root {
                "isolation is off"
            } else {
                "not running as root"
            };
            notes.push(format!(
                "{who}: mounts are not isolated (volumes are symlinks where possible) and resource limits are not enforced"
            ));
        } else {
            if !host.can_isolate_mounts() {
                notes.push("unshare, nsenter or mount missing: mounts are not isolated".to_owned());
            }
            if inner.cgroups.is_none() {
                notes.push(
                    "no usable cgroup hierarchy: resource limits are not enforced".to_owned(),
                );
            }
        }
        let netns = inner.privileged && host.can_make_netns();
        let network_ready = match (&inner.network, netns) {
            (Some(n), true) if n.ready() => true,
            (Some(_), true) => {
                notes.push("pod network not ready: no pod CIDR set yet".to_owned());
                false
            }
            (None, _) => {
                notes.push("no pod network configured: pods share the host network".to_owned());
                false
            }
            (Some(_), false) => {
                notes.push(
                    "network namespaces need root and ip/nsenter: pods share the host network"
                        .to_owned(),
                );
                false
            }
        };
        RuntimeStatus {
            name: "kaji-process".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime_ready: host.sh.is_file(),
            network_ready,
            message: notes.join("; "),
        }
    }

    async fn update_pod_cidr(&self, cidr: &str) -> Result<()> {
        match &self.inner.network {
            Some(network) => network.set_pod_cidr(cidr).await,
            None => Ok(()),
        }
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let inner = &self.inner;
        if !config.log_directory.as_os_str().is_empty() {
            std::fs::create_dir_all(&config.log_directory).map_err(|e| {
                RuntimeError::io(format!("creating {}", config.log_directory.display()), e)
            })?;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = state::sandbox_dir(&inner.root, &id);
        std::fs::create_dir_all(dir.join("containers"))
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        let m = &config.metadata;
        let record = SandboxRecord {
            id: id.clone(),
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            attempt: m.attempt,
            created_at: Utc::now(),
            ready: true,
            ip: None,
            labels: config.labels.clone(),
            log_directory: config.log_directory.clone(),
            netns: None,
            attached: false,
        };
        inner.persist_sandbox(&record)?;
        inner.lock().sandboxes.insert(id.clone(), record);
        let network = inner
            .network
            .as_ref()
            .filter(|_| !config.host_network && inner.privileged && inner.host.can_make_netns());
        if let (Some(network), Some(ip_tool)) = (network, &inner.host.ip) {
            let result = async {
                if !network.ready() {
                    return Err(RuntimeError::Network(
                        "pod network not ready: no pod CIDR set yet".to_owned(),
                    ));
                }
                let name = host::netns_name(&id);
                inner.update_sandbox(&id, |s| s.netns = Some(name.clone()))?;
                let path = host::add_netns(ip_tool, &name).await?;
                inner.update_sandbox(&id, |s| s.attached = true)?;
                let ip = network.attach(&id, &config.metadata, &path).await?;
                inner.update_sandbox(&id, |s| s.ip = Some(ip))
            }
            .await;
            if let Err(e) = result {
                if let Err(cleanup) = self.remove_pod_sandbox(&id).await {
                    tracing::warn!(sandbox = %id, error = %cleanup, "cleanup after failed sandbox start");
                }
                return Err(e);
            }
        }
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let inner = &self.inner;
        let containers: Vec<String> = {
            let state = inner.lock();
            if !state.sandboxes.contains_key(id) {
                return Err(not_found("sandbox", id));
            }
            state
                .containers
                .values()
                .filter(|c| c.record.sandbox_id == id)
                .map(|c| c.record.id.clone())
                .collect()
        };
        for c in containers {
            match self.stop_container(&c, Duration::ZERO).await {
                Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let record = inner.update_sandbox(id, |s| s.ready = false)?;
        self.stop_sandbox_network(id, &record).await?;
        inner.update_sandbox(id, |s| s.ip = None)?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let inner = &self.inner;
        if !inner.lock().sandboxes.contains_key(id) {
            return Ok(());
        }
        self.stop_pod_sandbox(id).await?;
        let containers: Vec<String> = {
            let state = inner.lock();
            let of_sandbox = state
                .containers
                .values()
                .filter(|c| c.record.sandbox_id == id);
            of_sandbox.map(|c| c.record.id.clone()).collect()
        };
        for c in containers {
            self.remove_container(&c).await?;
        }
        let dir = state::sandbox_dir(&inner.root, id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io(format!("removing {}", dir.display()), e)),
        }
        inner.lock().sandboxes.remove(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let state = self.inner.lock();
        let record = state
            .sandboxes
            .get(id)
            .ok_or_else(|| not_found("sandbox", id))?;
        Ok(record.status())
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        let mut list: Vec<_> = self
            .inner
            .lock()
            .sandboxes
            .values()
            .map(SandboxRecord::status)
            .collect();
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let inner = &self.inner;
        let log_directory = {
            let state = inner.lock();
            let sandbox = state
                .sandboxes
                .get(sandbox_id)
                .ok_or_else(|| not_found("sandbox", sandbox_id))?;
            if !sandbox.ready {
                return Err(RuntimeError::InvalidState(format!(
                    "sandbox {sandbox_id} is not ready"
                )));
            }
            sandbox.log_directory.clone()
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let log_path = log_directory.join(&config.log_path);
        LogWriter::create(&log_path).map_err(|e| match e {
            kaji_runtime::logs::LogError::Io { path, source } => {
                RuntimeError::io(format!("creating {}", path.display()), source)
            }
            other => RuntimeError::io("creating log file", std::io::Error::other(other)),
        })?;
        let dir = state::container_dir(&inner.root, sandbox_id, &id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        let mut record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox_id.to_owned(),
            name: config.metadata.name.clone(),
            attempt: config.metadata.attempt,
            image: config.image.clone(),
            state: String::new(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: String::new(),
            message: String::new(),
            log_path,
            pid: None,
            pid_start: None,
            cgroup_dirs: Vec::new(),
            created_paths: Vec::new(),
        };
        record.set_state(ContainerState::Created);
        inner.persist_container(&record);
        let container = Container {
            record,
            config: config.clone(),
            starting: false,
            exited: None,
            stdin: None,
            cgroup: None,
        };
        inner.lock().containers.insert(id.clone(), container);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.spawn(id).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let inner = &self.inner;
        let (state, pid, start, exited, cgroup) = {
            let state = inner.lock();
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| not_found("container", id))?;
            let r = &c.record;
            (
                r.state(),
                r.pid,
                r.pid_start,
                c.exited.clone(),
                c.cgroup.clone(),
            )
        };
        let kill_rest = || {
            if let Some(pid) = pid {
                signal_group(pid, Signal::SIGKILL);
            }
            if let Some(cg) = &cgroup {
                cg.kill_all();
            }
        };
        match (state, pid, exited) {
            (ContainerState::Running, Some(pid), Some(exited)) => {
                let first = if grace.is_zero() {
                    Signal::SIGKILL
                } else {
                    Signal::SIGTERM
                };
                signal_group(pid, first);
                let wait = |limit| {
                    let mut rx = exited.clone();
                    async move {
                        tokio::time::timeout(limit, rx.wait_for(|done| *done))
                            .await
                            .is_ok()
                    }
                };
                if !wait(grace).await {
                    kill_rest();
                    if !wait(KILL_WAIT).await {
                        return Err(RuntimeError::io(
                            format!("stopping container {id}"),
                            std::io::Error::other("still running after SIGKILL"),
                        ));
                    }
                }
            }
            (ContainerState::Unknown, Some(pid), _) => {
                // Found after a restart: not our child, so watch /proc instead of waiting.
                signal_group(pid, Signal::SIGTERM);
                if !Inner::wait_gone(pid, start, grace).await {
                    kill_rest();
                    Inner::wait_gone(pid, start, KILL_WAIT).await;
                }
                kill_rest();
                let mut state = inner.lock();
                if let Some(c) = state.containers.get_mut(id) {
                    let message =
                        "the runtime restarted while it ran; stopped, exit status unknown";
                    c.record.exit(255, "Error", message.to_owned());
                    inner.persist_container(&c.record);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let inner = &self.inner;
        if !inner.lock().containers.contains_key(id) {
            return Ok(());
        }
        self.stop_container(id, Duration::ZERO).await?;
        let Some(c) = inner.lock().containers.remove(id) else {
            return Ok(());
        };
        if let Some(cg) = &c.cgroup {
            if let Err(e) = cg.remove() {
                let context = format!("removing cgroup of container {id}");
                inner.lock().containers.insert(id.to_owned(), c);
                return Err(RuntimeError::io(context, e));
            }
        }
        launch::remove_created(&c.record.created_paths);
        let dir = state::container_dir(&inner.root, &c.record.sandbox_id, id);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(dir.with_extension("start-error"));
        let _ = std::fs::remove_file(dir.with_extension("ready"));
        let _ = std::fs::remove_file(state::container_file(&inner.root, &c.record.sandbox_id, id));
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let state = self.inner.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        Ok(c.record.status())
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        let state = self.inner.lock();
        let mut list: Vec<ContainerStatus> = state
            .containers
            .values()
            .filter(|c| sandbox_id.is_none_or(|s| c.record.sandbox_id == s))
            .map(|c| c.record.status())
            .collect();
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        let target = self.exec_target(id)?;
        crate::exec::exec_sync(&self.inner.host, &target, cmd, timeout).await
    }

    async fn exec(&self, id: &str, cmd: &[String], stdin: bool, tty: bool) -> Result<ExecSession> {
        let target = self.exec_target(id)?;
        crate::exec::exec(&self.inner.host, &target, cmd, stdin, tty)
    }
}
