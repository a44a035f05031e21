//! The default pod runtime: each container's `command` + `args` run as a
//! host process; images are recorded, never pulled.
//!
//! What a container gets, depending on the host:
//!
//! | | as root | otherwise |
//! |---|---|---|
//! | env | exactly the pod's (plus a default `PATH`) | same |
//! | stdout/stderr | CRI log file, line by line | same |
//! | mounts | private mount namespace, bind mounts (read-only where asked); missing mount points are created on the host | a symlink at a free container path, else skipped with a warning |
//! | limits | one cgroup (v2, or v1 memory + cpu) under `kaji`; OOM kills reported as `OOMKilled` | none |
//! | network | with a [`PodNetwork`]: a network namespace `kaji-<sandbox id prefix>` per sandbox | the host's |
//!
//! Reduced isolation is said in [`RuntimeStatus::message`](kaji_runtime::RuntimeStatus::message). The runtime has
//! no PID or UTS namespace: containers see the host's processes and
//! hostname, and `hostPort` mappings are the pod network's business.
//!
//! # State and restarts
//! Records live under the root directory given to [`ProcessRuntime::new`]
//! (see `state.rs` for the layout). After a restart, every sandbox is
//! listed again with its state, and so is every container: one whose
//! process still runs is `Unknown` (it is not reattached: no exit code, no
//! further log lines) until stopped or removed, which kills its process
//! group and cgroup; one whose process ended meanwhile is `Exited` with
//! exit code 255. Network namespaces and cgroups are found again, so
//! stopping and removing clean them up.
//!
//! This crate owns processes, namespaces, cgroups and the files under its
//! root directory. It must not touch the API server, pod networking beyond
//! creating and deleting namespaces (the [`PodNetwork`] does the rest), or
//! log files once written (the agent reads and deletes them).

mod cgroup;
mod exec;
mod host;
mod launch;
mod runtime;
mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kaji_runtime::{ContainerConfig, ContainerState, PodNetwork, Result, RuntimeError};
use nix::sys::signal::Signal;
use tokio::sync::watch;

use crate::cgroup::{Cgroups, ContainerCgroup};
use crate::host::Host;
use crate::state::{ContainerRecord, SandboxRecord};

/// Knobs of a [`ProcessRuntime`]; the defaults suit a node.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The cgroup every container's cgroup goes under.
    pub cgroup_parent: String,
    /// Where cgroup hierarchies are mounted.
    pub cgroup_mount: PathBuf,
    /// Use namespaces and cgroups when running as root; `false` runs as if
    /// unprivileged (tests use it to cover that mode as root).
    pub isolation: bool,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            cgroup_parent: "kaji".to_owned(),
            cgroup_mount: PathBuf::from("/sys/fs/cgroup"),
            isolation: true,
        }
    }
}

/// Runs containers as host processes. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    root: PathBuf,
    network: Option<Arc<dyn PodNetwork>>,
    host: Host,
    /// Root and isolation wanted.
    privileged: bool,
    cgroups: Option<Cgroups>,
    state: Mutex<State>,
}

#[derive(Default)]
pub(crate) struct State {
    sandboxes: HashMap<String, SandboxRecord>,
    containers: HashMap<String, Container>,
}

pub(crate) struct Container {
    record: ContainerRecord,
    /// The config it was created with (empty after a restart).
    config: ContainerConfig,
    /// A start is under way.
    starting: bool,
    /// Becomes true once the process has exited and its status is recorded.
    exited: Option<watch::Receiver<bool>>,
    /// Held open for containers that asked for stdin.
    stdin: Option<tokio::process::ChildStdin>,
    cgroup: Option<ContainerCgroup>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("root", &self.inner.root)
            .field("privileged", &self.inner.privileged)
            .finish_non_exhaustive()
    }
}

impl ProcessRuntime {
    /// A runtime keeping its state under `root` (e.g. `<data-dir>/pods`),
    /// attaching sandboxes to `network` when given; finds the sandboxes and
    /// containers a previous instance left there.
    ///
    /// # Errors
    /// `root` cannot be created.
    pub fn new(root: impl Into<PathBuf>, network: Option<Arc<dyn PodNetwork>>) -> Result<Self> {
        Self::with_options(root, network, ProcessOptions::default())
    }

    /// [`ProcessRuntime::new`] with explicit options.
    ///
    /// # Errors
    /// `root` cannot be created.
    pub fn with_options(
        root: impl Into<PathBuf>,
        network: Option<Arc<dyn PodNetwork>>,
        options: ProcessOptions,
    ) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| RuntimeError::io(format!("creating {}", root.display()), e))?;
        let host = Host::detect();
        let privileged = host.root && options.isolation;
        let cgroups = privileged
            .then(|| Cgroups::detect(&options.cgroup_mount, &options.cgroup_parent))
            .flatten();
        let state = Mutex::new(load_state(&root));
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                root,
                network,
                host,
                privileged,
                cgroups,
                state,
            }),
        })
    }

    /// The directory state is kept in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The network namespaces of the sandboxes this runtime knows, by name.
    pub fn network_namespaces(&self) -> Vec<String> {
        let state = self.inner.lock();
        state
            .sandboxes
            .values()
            .filter_map(|s| s.netns.clone())
            .collect()
    }

    /// SIGKILLs every container process this runtime knows of and deletes
    /// their cgroups and the sandboxes' network namespaces, synchronously,
    /// without waiting for exit statuses or detaching pod networks; records
    /// stay. For test teardown and emergencies, e.g. from a `Drop`.
    pub fn kill_everything(&self) {
        let (containers, netns): (Vec<_>, Vec<_>) = {
            let state = self.inner.lock();
            let containers = state
                .containers
                .values()
                .map(|c| (c.record.pid, c.record.pid_start, c.cgroup.clone()))
                .collect();
            let netns = state
                .sandboxes
                .values()
                .filter_map(|s| s.netns.clone())
                .collect();
            (containers, netns)
        };
        for (pid, start, cgroup) in containers {
            if let Some(pid) = pid.filter(|p| start.is_some() && state::process_start(*p) == start)
            {
                host::signal_group(pid, Signal::SIGKILL);
            }
            if let Some(cgroup) = cgroup {
                cgroup.kill_all();
                let _ = cgroup.remove();
            }
        }
        if let Some(ip) = &self.inner.host.ip {
            for name in netns {
                let _ = std::process::Command::new(ip)
                    .args(["netns", "delete", &name])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Rebuilds state from the records a previous instance left.
fn load_state(root: &Path) -> State {
    let (sandboxes, containers) = state::load(root);
    let mut state = State::default();
    for s in sandboxes {
        state.sandboxes.insert(s.id.clone(), s);
    }
    for mut record in containers {
        if matches!(
            record.state(),
            ContainerState::Running | ContainerState::Unknown
        ) {
            let alive = record.pid.is_some_and(|pid| {
                record.pid_start.is_some() && state::process_start(pid) == record.pid_start
            });
            if alive {
                record.set_state(ContainerState::Unknown);
                record.message = "the runtime restarted while it ran; not reattached".to_owned();
            } else {
                let message = "the runtime restarted while it ran; exit status unknown".to_owned();
                record.exit(255, "Error", message);
                let file = state::container_file(root, &record.sandbox_id, &record.id);
                if let Err(e) = state::write_json(&file, &record) {
                    tracing::warn!(container = %record.id, error = %e, "cannot update record");
                }
            }
        }
        let cgroup = (!record.cgroup_dirs.is_empty()).then(|| ContainerCgroup {
            dirs: record.cgroup_dirs.clone(),
        });
        state.containers.insert(
            record.id.clone(),
            Container {
                record,
                config: ContainerConfig::default(),
                starting: false,
                exited: None,
                stdin: None,
                cgroup,
            },
        );
    }
    state
}
